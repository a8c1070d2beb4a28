# loopkernel's build and test entry points. A newcomer needs two:
#   make run    build the command and run the main job (policies + hello example)
#   make test   install test dependencies, vet, race-test everything, fuzz briefly
# CI runs exactly `make test` (.ci/run).

GO        ?= go
BIN       := bin/loopkernel
# The command is built static (no cgo: pure-Go DNS and user lookups) because
# it re-executes itself for every out-of-process back-end: a dynamically
# linked binary pays for the dynamic loader and glibc's thread set-up on every
# plugin start, and a plugin start is mostly this fixed cost
# (`make bench-start`). Tests keep cgo: -race needs it.
BUILD_ENV := CGO_ENABLED=0
# The whole suite on 2 shared cores must stay well under 15 minutes; this
# bounds one package's binary so a hung test fails with a stack dump instead.
TEST_TIMEOUT ?= 10m
TESTFLAGS    ?=

# Short fuzz runs (`make fuzz-smoke`, part of `make test`): each entry is
# PACKAGE:FUZZTARGET. Append yours, e.g. FUZZ += ./sdk/dataplane:FuzzDecodeRequest
FUZZTIME ?= 5s
FUZZ :=
FUZZ += ./sdk/dataplane:FuzzDecodeRequest
FUZZ += ./sdk/dataplane:FuzzDecodeReply
FUZZ += ./sdk/dataplane:FuzzParseRights
FUZZ += ./sdk/dataplane:FuzzDecodeCallMsg
FUZZ += ./sdk/dataplane:FuzzDecodeAddrinfos
FUZZ += ./plugins/resolver:FuzzParseServices
FUZZ += ./plugins/resolver:FuzzParseAnswer
FUZZ += ./plugins/resolver:FuzzParseResolvConf
FUZZ += ./plugins/resolver:FuzzParseHosts
FUZZ += ./plugins/executor:FuzzEnvelope
FUZZ += ./plugins/executor:FuzzWorkerFrames
FUZZ += ./streams:FuzzReaduntil
FUZZ += ./internal/serve:FuzzParseRequest
FUZZ += ./internal/echobench:FuzzParseKiB
FUZZ += ./sdk/proactorplane:FuzzParseEntry
FUZZ += ./sdk/proactorplane:FuzzParseResult
FUZZ += ./sdk/proactorplane:FuzzParseFrame
FUZZ += ./sdk/proactorplane:FuzzCheckHeader

# Benchmarks (`make bench`): which packages, which benchmarks, how long each.
BENCH_PKGS ?= ./...
BENCH      ?= .
BENCHTIME  ?= 1s

# Pinned protobuf generators; see sdk/proto/control.proto for why these
# versions.
PROTOC_GEN_GO      := google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.6
PROTOC_GEN_GO_GRPC := google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.3.0

.PHONY: all build run test vet fuzz-smoke bench bench-start bench-loop bench-echo generate deps clean

all: build

build:
	$(BUILD_ENV) $(GO) build -o $(BIN) ./cmd/loopkernel

run: build
	$(BIN) policies
	$(BIN) example hello

test: deps vet
	$(GO) test -race -count=1 -timeout $(TEST_TIMEOUT) $(TESTFLAGS) ./...
	$(MAKE) --no-print-directory fuzz-smoke

vet:
	$(GO) vet ./...

# One target at a time: go test accepts a single -fuzz pattern per package.
# Go's fuzzer sometimes ends a -fuzztime run with "context deadline
# exceeded" and no failing input when its own deadline catches a worker
# mid-run (seen on a busy 2-core VM); that run found nothing, so it is retried
# once. A real finding ("Failing input written to ...") fails at once.
fuzz-smoke:
	@set -e; out=$$(mktemp); trap 'rm -f "$$out"' EXIT; for entry in $(FUZZ); do \
		pkg=$${entry%%:*}; target=$${entry#*:}; \
		echo "fuzz-smoke: $$pkg $$target ($(FUZZTIME))"; \
		if ! $(GO) test -run '^$$' -fuzz "^$$target$$" -fuzztime $(FUZZTIME) $$pkg >"$$out" 2>&1; then \
			cat "$$out"; \
			if grep -q 'context deadline exceeded' "$$out" && ! grep -q 'Failing input written' "$$out"; then \
				echo "fuzz-smoke: $$target: the fuzzer's own deadline, no finding; once more"; \
				$(GO) test -run '^$$' -fuzz "^$$target$$" -fuzztime $(FUZZTIME) $$pkg; \
			else exit 1; fi; \
		else cat "$$out"; fi; \
	done

bench:
	$(BUILD_ENV) $(GO) test -run '^$$' -bench '$(BENCH)' -benchmem -benchtime $(BENCHTIME) $(BENCH_PKGS)

# Plugin start and restart-after-SIGKILL, medians with the breakdown by stage
# (see BenchmarkStart in sdk/plugin), built as `make build` builds.
bench-start:
	$(BUILD_ENV) $(GO) test -run '^$$' -bench Start -benchtime $(BENCHTIME) ./sdk/plugin

# Same-run comparisons with the peers (asyncio, uvloop, floor, Go net).
bench-loop: build
	$(BIN) bench loop

bench-echo: build
	$(BIN) bench echo

# Regenerates sdk/proto's Go code with the pinned generators (installed into
# $(go env GOPATH)/bin through the module proxy) and protoc (`make deps`).
generate:
	$(GO) install $(PROTOC_GEN_GO)
	$(GO) install $(PROTOC_GEN_GO_GRPC)
	PATH="$$($(GO) env GOPATH)/bin:$$PATH" $(GO) generate ./sdk/proto/...

deps:
	./scripts/install-deps.sh

clean:
	rm -rf bin

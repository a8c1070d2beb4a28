/*
 * A selector plugin in C, written from WIRE.md alone, to check that the
 * document is enough to interoperate with the Go host. It serves the data
 * plane on descriptor 3 with epoll and exits 0 on goodbye or EOF, 1 on a
 * protocol violation. Test-only: bounded tables, no control plane.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define DP 3
#define MAX_FRAME 65536
#define MAX_FDS 253
#define MAX_REPLY 4095
#define SELF_TOKEN 0xFFFFFFFFFFFFFFFEull
#define MAX_REGS 4096

static uint8_t rbuf[MAX_FRAME + 1], sbuf[MAX_FRAME];
static union {
	struct cmsghdr h;
	char buf[CMSG_SPACE(MAX_FDS * sizeof(int))];
} ctl;
static int epfd, wake_pending;

struct reg { uint64_t tok; int fd; };
static struct reg regs[MAX_REGS];
static int nregs;
struct errrec { uint64_t tok; uint32_t err; };
static struct errrec errs[MAX_REGS];
static int nerrs;

static uint32_t get32(const uint8_t *p) { return p[0] | p[1] << 8 | p[2] << 16 | (uint32_t)p[3] << 24; }
static uint64_t get64(const uint8_t *p) { return get32(p) | (uint64_t)get32(p + 4) << 32; }
static void put32(uint8_t *p, uint32_t v) { for (int i = 0; i < 4; i++) p[i] = v >> (8 * i); }
static void put64(uint8_t *p, uint64_t v) { put32(p, (uint32_t)v); put32(p + 4, v >> 32); }

static void header(uint8_t *b, uint8_t type, uint16_t flags, uint32_t count, uint32_t seq) {
	memcpy(b, "LKDP", 4);
	b[4] = 1;
	b[5] = type;
	b[6] = flags;
	b[7] = flags >> 8;
	put32(b + 8, count);
	put32(b + 12, seq);
}

static void die(const char *why) {
	fprintf(stderr, "cplugin: %s\n", why);
	exit(1);
}

static void sendframe(size_t len) {
	if (send(DP, sbuf, len, MSG_NOSIGNAL) < 0) exit(0); /* host gone */
}

/* recvframe returns the frame length (0 = EOF, -1 = nothing queued) and
 * collects descriptors into fds. */
static ssize_t recvframe(int flags, int *fds, int *nfds) {
	struct iovec iov = {rbuf, sizeof rbuf};
	struct msghdr m = {0};
	m.msg_iov = &iov;
	m.msg_iovlen = 1;
	m.msg_control = ctl.buf;
	m.msg_controllen = sizeof ctl.buf;
	ssize_t n;
	do n = recvmsg(DP, &m, flags | MSG_CMSG_CLOEXEC); while (n < 0 && errno == EINTR);
	if (n < 0 && errno == EAGAIN) return -1;
	if (n < 0) exit(0);
	*nfds = 0;
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c)) {
		if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
			int k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
			memcpy(fds + *nfds, CMSG_DATA(c), k * sizeof(int));
			*nfds += k;
		}
	}
	if (m.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) die("truncated frame");
	if (n > 0 && (n < 16 || memcmp(rbuf, "LKDP", 4) != 0 || rbuf[4] != 1)) die("bad header");
	return n;
}

static int find(uint64_t tok) {
	for (int i = 0; i < nregs; i++)
		if (regs[i].tok == tok) return i;
	return -1;
}

static void fail(uint64_t tok, int err) {
	if (nerrs < MAX_REGS) errs[nerrs++] = (struct errrec){tok, (uint32_t)err};
}

static void drop(int i) {
	epoll_ctl(epfd, EPOLL_CTL_DEL, regs[i].fd, NULL);
	close(regs[i].fd);
	regs[i] = regs[--nregs];
}

static uint32_t to_epoll(uint32_t in) {
	return (in & 1 ? EPOLLIN | EPOLLRDHUP : 0) | (in & 2 ? EPOLLOUT : 0);
}

static void apply(uint32_t count, const int *fds, int nfds) {
	int next = 0;
	for (uint32_t i = 0; i < count; i++) {
		const uint8_t *r = rbuf + 32 + 16 * i;
		uint64_t tok = get64(r);
		uint32_t in = get32(r + 12);
		int at = find(tok);
		struct epoll_event ev = {.events = to_epoll(in), .data.u64 = tok};
		switch (r[8]) {
		case 1: {
			if (next >= nfds) die("register without descriptor");
			int fd = fds[next++];
			if (at >= 0 || nregs == MAX_REGS) { close(fd); if (at >= 0) drop(at); fail(tok, EEXIST); break; }
			if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) < 0) { fail(tok, errno); close(fd); break; }
			regs[nregs++] = (struct reg){tok, fd};
			break;
		}
		case 2:
			if (at < 0) { fail(tok, ENOENT); break; }
			if (epoll_ctl(epfd, EPOLL_CTL_MOD, regs[at].fd, &ev) < 0) { fail(tok, errno); drop(at); }
			break;
		case 3:
			if (at < 0) { fail(tok, ENOENT); break; }
			drop(at);
			break;
		default:
			die("unknown op");
		}
	}
	if (next != nfds) die("surplus descriptors");
}

int main(void) {
	int fds[MAX_FDS];
	int nfds;
	static struct epoll_event evs[MAX_REPLY + 1];

	epfd = epoll_create1(EPOLL_CLOEXEC);
	struct epoll_event self = {.events = EPOLLIN, .data.u64 = SELF_TOKEN};
	if (epfd < 0 || epoll_ctl(epfd, EPOLL_CTL_ADD, DP, &self) < 0) die("epoll");

	for (;;) { /* hello, tolerating earlier wakes */
		ssize_t n = recvframe(0, fds, &nfds);
		if (n == 0) return 0;
		if (rbuf[5] == 0x03) { wake_pending = 1; continue; }
		if (rbuf[5] != 0x01 || n != 16 || nfds) die("expected hello");
		break;
	}
	const char *name = "c-epoll";
	header(sbuf, 0x81, 0, strlen(name), 0);
	put32(sbuf + 16, 0);
	put32(sbuf + 20, 0);
	put64(sbuf + 24, 0);
	memcpy(sbuf + 32, name, strlen(name));
	sendframe(32 + strlen(name));

	for (;;) {
		ssize_t n = recvframe(0, fds, &nfds);
		if (n == 0) return 0;
		uint8_t type = rbuf[5];
		uint16_t flags = rbuf[6] | rbuf[7] << 8;
		uint32_t count = get32(rbuf + 8), seq = get32(rbuf + 12);
		if (type == 0x03) { wake_pending = 1; continue; }
		if (type == 0x04) return 0;
		if (type != 0x02 || (uint64_t)n != 32 + 16ull * count) die("expected request");
		apply(count, fds, nfds);
		if (flags & 1) continue;

		int64_t timeout = (int64_t)get64(rbuf + 16);
		uint32_t maxev = get32(rbuf + 24);
		int ms = timeout < 0 ? -1 : (int)((timeout + 999999) / 1000000);
		if (wake_pending || nerrs) ms = 0;
		wake_pending = 0;
		int k = epoll_wait(epfd, evs, (int)maxev + 1, ms);
		if (k < 0) k = 0;

		uint32_t out = 0, ready = 0, woken = 0;
		for (int i = 0; i < nerrs && out < MAX_REPLY; i++, out++) {
			put64(sbuf + 16 + 16 * out, errs[i].tok);
			put32(sbuf + 24 + 16 * out, 0);
			put32(sbuf + 28 + 16 * out, errs[i].err);
		}
		nerrs = 0;
		for (int i = 0; i < k; i++) {
			if (evs[i].data.u64 == SELF_TOKEN) {
				ssize_t m;
				while ((m = recvframe(MSG_DONTWAIT, fds, &nfds)) > 0) {
					if (rbuf[5] == 0x03) woken = 1;
					else if (rbuf[5] == 0x04) return 0;
					else die("frame while waiting");
				}
				if (m == 0) return 0;
				continue;
			}
			uint32_t e = evs[i].events, r = 0;
			if (e & (EPOLLIN | EPOLLRDHUP)) r |= 1;
			if (e & EPOLLOUT) r |= 2;
			if (e & EPOLLERR) r |= 4;
			if (e & EPOLLHUP) r |= 8;
			if (!r || ready == maxev || out == MAX_REPLY) continue;
			put64(sbuf + 16 + 16 * out, evs[i].data.u64);
			put32(sbuf + 24 + 16 * out, r);
			put32(sbuf + 28 + 16 * out, 0);
			out++;
			ready++;
		}
		header(sbuf, 0x82, woken, out, seq);
		sendframe(16 + 16 * out);
	}
}

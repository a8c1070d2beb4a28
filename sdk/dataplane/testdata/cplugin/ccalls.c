/*
 * A call-plane plugin in C, written from WIRE.md §8 alone, to check that
 * the document is enough to interoperate with the Go host. It serves
 * descriptor 3 as a resolver or an executor, whichever the host's HELLO
 * asks for, answering each call at once (in order, which is one of the
 * orders the protocol allows). Exits 0 on goodbye or EOF, 1 on a protocol
 * violation. Test-only: one message buffer, no control plane.
 *
 * Executor functions: "echo" returns its argument; "fail" fails with the
 * message "failed in C"; anything else is unknown.
 * Resolver: "db.test" is 127.0.0.1 with canonical name "db.test"; any other
 * host does not exist; getnameinfo answers "c-host" and the port in decimal.
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define DP 3
#define MAX_FRAME 65536
#define MAX_MESSAGE (64u << 20)
#define HDR 32
#define CONT 16

static uint8_t frame[MAX_FRAME + 1];
static uint8_t *in, *out;
static int family;

static uint32_t get32(const uint8_t *p) { return p[0] | p[1] << 8 | p[2] << 16 | (uint32_t)p[3] << 24; }
static uint64_t get64(const uint8_t *p) { return get32(p) | (uint64_t)get32(p + 4) << 32; }
static void put16(uint8_t *p, uint16_t v) { p[0] = v; p[1] = v >> 8; }
static void put32(uint8_t *p, uint32_t v) { for (int i = 0; i < 4; i++) p[i] = v >> (8 * i); }
static void put64(uint8_t *p, uint64_t v) { put32(p, (uint32_t)v); put32(p + 4, v >> 32); }

static void die(const char *why) {
	fprintf(stderr, "ccalls: %s\n", why);
	exit(1);
}

static size_t recvframe(void) {
	ssize_t n = recv(DP, frame, sizeof frame, 0);
	if (n <= 0) exit(0); /* host gone */
	return (size_t)n;
}

/* fixed part sizes of §8.4-8.5 for the host-to-plugin messages we accept */
static int fixedlen(int type, int kind) {
	switch (type) {
	case 0x01: case 0x03: case 0x04: case 0x05: return 0;
	case 0x02: return kind == 1 ? 16 : kind == 2 ? 24 : kind == 3 ? 0 : -1;
	}
	return -1;
}

/* recvmsg reassembles one message into in and returns its length. */
static size_t recvmsg_whole(void) {
	size_t n = recvframe();
	if (n < HDR || memcmp(frame, "LKCP", 4) || frame[4] != 1) die("bad header");
	int fl = fixedlen(frame[5], frame[6]);
	if (fl < 0) die("unknown message");
	uint64_t total = HDR + fl + (uint64_t)get32(frame + 16) + get32(frame + 20) + get32(frame + 24);
	if (total > MAX_MESSAGE) die("message too long");
	if ((total <= MAX_FRAME && n != total) || (total > MAX_FRAME && n != MAX_FRAME)) die("bad first frame");
	memcpy(in, frame, n);
	size_t got = n;
	uint64_t id = get64(frame + 8);
	while (got < total) {
		size_t want = total - got < MAX_FRAME - CONT ? total - got : MAX_FRAME - CONT;
		n = recvframe();
		if (n != CONT + want || memcmp(frame, "LKCP", 4) || frame[5] != 0x06 || get64(frame + 8) != id)
			die("bad continuation");
		memcpy(in + got, frame + CONT, want);
		got += want;
	}
	return got;
}

/* sendmsg_whole sends out[0:len] as a first frame and continuations. */
static void sendmsg_whole(size_t len) {
	size_t first = len < MAX_FRAME ? len : MAX_FRAME;
	if (send(DP, out, first, MSG_NOSIGNAL) < 0) exit(0);
	uint64_t id = get64(out + 8);
	for (size_t off = first; off < len;) {
		size_t n = len - off < MAX_FRAME - CONT ? len - off : MAX_FRAME - CONT;
		memcpy(frame, "LKCP", 4);
		frame[4] = 1, frame[5] = 0x06, frame[6] = 0, frame[7] = 0;
		put64(frame + 8, id);
		memcpy(frame + CONT, out + off, n);
		if (send(DP, frame, CONT + n, MSG_NOSIGNAL) < 0) exit(0);
		off += n;
	}
}

/* reply builds a message in out: header, fixed part, fields a, b, c. */
static void reply(int type, int kind, int status, uint64_t id, const void *fixed, size_t fl,
		  const void *a, size_t la, const void *b, size_t lb, const void *c, size_t lc) {
	memcpy(out, "LKCP", 4);
	out[4] = 1, out[5] = type, out[6] = kind, out[7] = status;
	put64(out + 8, id);
	put32(out + 16, la), put32(out + 20, lb), put32(out + 24, lc), put32(out + 28, 0);
	uint8_t *p = out + HDR;
	memcpy(p, fixed, fl), p += fl;
	memcpy(p, a, la), p += la;
	memcpy(p, b, lb), p += lb;
	memcpy(p, c, lc), p += lc;
	sendmsg_whole(p - out);
}

static void call(const uint8_t *m) {
	int kind = m[6];
	uint64_t id = get64(m + 8);
	uint32_t la = get32(m + 16), lb = get32(m + 20);
	if ((family == 1) != (kind != 3)) die("call of the wrong family");
	if (kind == 3) { /* FUNC: a = name, b = argument */
		const uint8_t *name = m + HDR, *arg = name + la;
		if (la == 4 && !memcmp(name, "echo", 4))
			reply(0x82, 3, 0, id, NULL, 0, arg, lb, NULL, 0, NULL, 0);
		else if (la == 4 && !memcmp(name, "fail", 4))
			reply(0x82, 3, 1, id, NULL, 0, "failed in C", 11, NULL, 0, NULL, 0);
		else
			reply(0x82, 3, 2, id, NULL, 0, "no such function", 16, NULL, 0, NULL, 0);
	} else if (kind == 1) { /* GETADDRINFO: fixed 16, a = host, b = port */
		const uint8_t *host = m + HDR + 16;
		if (la == 7 && !memcmp(host, "db.test", 7)) {
			uint8_t count[4], rec[36 + 7];
			put32(count, 1);
			memset(rec, 0, sizeof rec);
			put32(rec, 2), put32(rec + 4, 1), put32(rec + 8, 6); /* AF_INET, SOCK_STREAM, TCP */
			put16(rec + 12, 5432);
			rec[14] = 4, rec[15] = 0;
			put16(rec + 16, 7);
			rec[20] = 127, rec[23] = 1;
			memcpy(rec + 36, "db.test", 7);
			reply(0x82, 1, 0, id, count, 4, rec, sizeof rec, NULL, 0, NULL, 0);
		} else {
			uint8_t flags[4];
			put32(flags, 4); /* not found */
			reply(0x82, 1, 3, id, flags, 4, "no such host", 12, host, la, "c", 1);
		}
	} else { /* GETNAMEINFO: fixed 24 (addr, addr_len, reserved, port, flags) */
		char serv[8];
		int n = snprintf(serv, sizeof serv, "%u", m[HDR + 18] | m[HDR + 19] << 8);
		reply(0x82, 2, 0, id, NULL, 0, "c-host", 6, serv, n, NULL, 0);
	}
}

int main(void) {
	in = malloc(MAX_MESSAGE);
	out = malloc(MAX_MESSAGE);
	if (!in || !out) die("out of memory");
	recvmsg_whole();
	if (in[5] != 0x01) die("first message is not HELLO");
	family = in[6];
	reply(0x81, family, 0, 0, NULL, 0, "c-calls", 7, NULL, 0, NULL, 0);
	for (;;) {
		recvmsg_whole();
		switch (in[5]) {
		case 0x02: call(in); break;
		case 0x03: break; /* CANCEL: every call is already answered */
		case 0x04: reply(0x84, 0, 0, get64(in + 8), NULL, 0, NULL, 0, NULL, 0, NULL, 0); break;
		case 0x05: return 0;
		default: die("unexpected message");
		}
	}
}

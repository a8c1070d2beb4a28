package dataplane

import (
	"context"
	"errors"
	"testing"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"

	"github.com/loopkernel/loopkernel/sdk"
)

// FuzzServe sends one arbitrary frame (with up to three descriptors) to a
// real Serve after the hello, then goodbye. Serve must not panic, must
// return, and must leave no descriptor open.
func FuzzServe(f *testing.F) {
	for _, s := range requestSeeds() {
		f.Add(s, uint8(0))
		f.Add(s, uint8(1))
	}
	f.Add(encRequest(1, fMore, -1, 4, reqRec{1, opRegister, sdk.Read}, reqRec{2, opRegister, 0}), uint8(2))
	f.Add(encRequest(1, 0, -1, 4, reqRec{1, opRegister, sdk.Read}, reqRec{1, opUnregister, 0}), uint8(1))
	f.Fuzz(func(t *testing.T, frame []byte, nfds uint8) {
		if len(frame) > maxFrame+16 {
			return
		}
		sel, err := newTestEpoll()
		if err != nil {
			t.Fatal(err)
		}
		defer sel.Close()
		base := openFDs(t)
		host, pconn, err := Socketpair()
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- Serve(context.Background(), pconn, sel, hclog.NewNullLogger()) }()
		h := newFake(host)
		h.send(t, encHeader(tHello, 0, 0, 0))
		h.read(t)
		var fds []int
		for range nfds % 4 {
			var p [2]int
			if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
				t.Fatal(err)
			}
			fds = append(fds, p[0], p[1])
		}
		// A rejected send (e.g. oversized) is fine: Serve then sees goodbye.
		h.s.send(frame, putRights(make([]byte, oobSpace), fds), 0)
		closeAll(fds)
		h.s.send(encHeader(tGoodbye, 0, 0, 0), nil, 0)
		err = <-done
		if err != nil && !errors.Is(err, ErrProtocol) && !errors.Is(err, ErrPeerGone) {
			t.Fatalf("Serve returned %v", err)
		}
		host.Close()
		pconn.Close()
		if got := openFDs(t); got != base {
			t.Fatalf("%d descriptors open after Serve, want %d", got, base)
		}
	})
}

// FuzzClientReply answers a Client's Wait with arbitrary bytes. Wait must
// not panic, must report only live tokens within the caller's slice, and
// any failure must be an error (ErrProtocol for malformed frames).
func FuzzClientReply(f *testing.F) {
	for _, s := range replySeeds() {
		f.Add(s)
	}
	f.Add(encEvents(1, 0, evRec{sdk.MakeToken(1, 1), sdk.Read, 0}, evRec{sdk.MakeToken(2, 1), 0, 1}))
	f.Fuzz(func(t *testing.T, reply []byte) {
		if len(reply) == 0 || len(reply) > maxFrame {
			return
		}
		c, fake := newFakeClient(t)
		a, _ := pair(t)
		b, _ := pair(t)
		live := map[sdk.Token]bool{sdk.MakeToken(1, 1): true, sdk.MakeToken(2, 1): true}
		c.Register(a, sdk.MakeToken(1, 1), sdk.Read|sdk.Write)
		c.Register(b, sdk.MakeToken(2, 1), sdk.Read)
		done := make(chan struct{})
		go func() {
			defer close(done)
			fake.read(t)
			fake.s.send(reply, nil, 0)
		}()
		evs := make([]sdk.Event, 2)
		n, err := c.Wait(evs, 0)
		<-done
		if err != nil {
			if decoded, derr := decodePluginFrame(reply, 0, 2); derr != nil && !errors.Is(err, ErrProtocol) {
				t.Fatalf("malformed reply (%v) gave %v, want ErrProtocol", derr, err)
			} else if derr == nil && decoded.typ == tEvents && decoded.seq == 1 {
				t.Fatalf("well-formed events reply gave %v", err)
			}
			return
		}
		if n > len(evs) {
			t.Fatalf("n = %d for %d slots", n, len(evs))
		}
		for _, e := range evs[:n] {
			if !live[e.Token] || e.Events == 0 {
				t.Fatalf("reported %v for a token never registered", e)
			}
		}
	})
}

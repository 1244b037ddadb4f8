package apdutest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

// Errors a Replayer returns to the code under test (the test is failed as well).
var (
	ErrMismatch  = errors.New("apdutest: command differs from the transcript")
	ErrExhausted = errors.New("apdutest: command after the end of the transcript")
)

// Replayer answers commands from a transcript. It implements apdu.Transmitter and, with
// Lock, cards.Conn.
type Replayer struct {
	t    testing.TB
	name string

	mu     sync.Mutex
	ex     []Exchange
	next   int
	failed bool
	resets int // Lock calls still to report reset=true
	locked bool
}

// NewReplayer returns a Replayer over ex. name labels messages (a file name). At test
// cleanup, exchanges never used fail the test.
func NewReplayer(t testing.TB, name string, ex []Exchange) *Replayer {
	t.Helper()
	r := &Replayer{t: t, name: name, ex: ex}
	t.Cleanup(r.checkUsed)
	return r
}

// Load parses the transcript at path (relative paths are relative to the test's package
// directory, e.g. "testdata/transcripts/select.apdu") and returns a Replayer over it.
// A missing or malformed file fails the test at once.
func Load(t testing.TB, path string) *Replayer {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatalf("apdutest: %v", err)
	}
	defer f.Close()
	ex, err := Parse(f, filepath.Base(path))
	if err != nil {
		t.Fatal(err)
	}
	return NewReplayer(t, filepath.Base(path), ex)
}

// Transmit checks cmd against the next exchange and returns its response. A differing
// command or one past the end fails the test (t.Errorf, so it is safe from any goroutine)
// and returns ErrMismatch or ErrExhausted; after a failure every call returns an error.
func (r *Replayer) Transmit(ctx context.Context, cmd []byte) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.failed {
		return nil, ErrMismatch
	}
	if r.next >= len(r.ex) {
		r.failed = true
		r.t.Errorf("apdutest: %s: extra command %d after the transcript's %d exchanges:\n  got  %s",
			r.name, r.next+1, len(r.ex), hexAny(cmd, nil))
		return nil, ErrExhausted
	}
	e := r.ex[r.next]
	if ok, at := e.Match(cmd); !ok {
		r.failed = true
		r.t.Errorf("apdutest: %s:%d: command %d differs at byte %d:\n%s", r.name, e.Line, r.next+1, at, diff(e, cmd, at))
		return nil, ErrMismatch
	}
	r.next++
	return append([]byte(nil), e.Resp...), nil
}

// Lock satisfies cards.Conn. It reports reset=true for as many calls as ResetNext asked.
// Nested locking fails the test: drivers take one transaction per operation.
func (r *Replayer) Lock(ctx context.Context) (unlock func(), reset bool, err error) {
	if err := ctx.Err(); err != nil {
		return nil, false, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.locked {
		r.t.Errorf("apdutest: %s: Lock while already locked", r.name)
		return nil, false, fmt.Errorf("apdutest: nested Lock")
	}
	r.locked = true
	if r.resets > 0 {
		r.resets--
		reset = true
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			r.mu.Lock()
			r.locked = false
			r.mu.Unlock()
		})
	}, reset, nil
}

// ResetNext makes the next Lock report that the card was reset.
func (r *Replayer) ResetNext() {
	r.mu.Lock()
	r.resets++
	r.mu.Unlock()
}

// Remaining is the number of exchanges not yet used.
func (r *Replayer) Remaining() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.ex) - r.next
}

func (r *Replayer) checkUsed() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.failed || r.next >= len(r.ex) {
		return
	}
	e := r.ex[r.next]
	r.t.Errorf("apdutest: %s:%d: %d of %d exchanges never used; next expected:\n  want %s",
		r.name, e.Line, len(r.ex)-r.next, len(r.ex), hexAny(e.Cmd, e.Any))
}

package pcsc

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Context is a connection to the PC/SC service. It survives a restart of pcscd: a call
// that finds the service gone or the context invalid establishes a new one once and, when
// repeating the call is harmless (listing, status), repeats it.
//
// A Context holds two PC/SC contexts: one for listing and status, one for Wait, so a
// blocked Wait never delays the others. Each Card gets a PC/SC context of its own, because
// pcsc-lite serialises calls per context and a transaction waiting for another program's
// card would otherwise stall every reader.
type Context struct {
	mu      sync.Mutex
	h       ctxHandle
	valid   bool
	closed  bool
	closing chan struct{} // closed by Close: wakes Wait
	// use is held shared by calls on h in flight (do) and exclusively by Close while it
	// releases h: libpcsclite frees a context's state at release, under any call still
	// waiting for it.
	use sync.RWMutex

	waitMu  sync.Mutex // one Wait at a time; guards wh
	wh      ctxHandle
	whValid bool

	// lastList is the reader list the last Wait returned (guarded by waitMu).
	lastList []string

	// pnpCounts is set once pcscd reported a reader count in the PnP reader's event state
	// (pcsc-lite 2.x, Windows): it then tells us about readers added between two waits,
	// and Wait need not list readers first.
	pnpCounts atomic.Bool
}

// Establish connects to the PC/SC service (SCARD_SCOPE_SYSTEM). With pcscd not running it
// returns an error wrapping ErrNoService whose message says how to start it.
func Establish(ctx context.Context) (*Context, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	h, code := scEstablish()
	if code != codeSuccess {
		return nil, wrap("establish context", code)
	}
	return &Context{h: h, valid: true, closing: make(chan struct{})}, nil
}

// Close releases the contexts and ends a Wait in progress (it returns ErrClosed). Cards
// connected through c stay usable until their own Close. Close is idempotent.
func (c *Context) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	close(c.closing)
	c.mu.Unlock()
	c.use.Lock()
	c.mu.Lock()
	h, valid := c.h, c.valid
	c.valid = false
	c.mu.Unlock()
	var err error
	if valid {
		if code := scRelease(h); code != codeSuccess && !serviceLost(code) {
			err = wrap("release context", code)
		}
	}
	c.use.Unlock()
	c.waitMu.Lock() // Wait has seen closing and returned
	if c.whValid {
		scRelease(c.wh)
		c.whValid = false
	}
	c.waitMu.Unlock()
	return err
}

// handle returns the current context handle, establishing one if an earlier
// re-establishment failed.
func (c *Context) handle() (ctxHandle, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return 0, ErrClosed
	}
	if !c.valid {
		h, code := scEstablish()
		if code != codeSuccess {
			return 0, wrap("establish context", code)
		}
		c.h, c.valid = h, true
	}
	return c.h, nil
}

// reestablish replaces the dead handle old, unless another goroutine already did.
func (c *Context) reestablish(old ctxHandle) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return ErrClosed
	}
	if c.valid && c.h != old {
		return nil
	}
	if c.valid {
		scRelease(old)
		c.valid = false
	}
	h, code := scEstablish()
	if code != codeSuccess {
		return wrap("establish context", code)
	}
	c.h, c.valid = h, true
	return nil
}

// do runs fn on the context handle. When the service was lost it re-establishes the
// context once and runs fn again.
func (c *Context) do(fn func(h ctxHandle) uint32) (uint32, error) {
	c.use.RLock()
	defer c.use.RUnlock()
	h, err := c.handle()
	if err != nil {
		return 0, err
	}
	code := fn(h)
	if serviceLost(code) {
		if err := c.reestablish(h); err != nil {
			return code, err
		}
		if h, err = c.handle(); err != nil {
			return code, err
		}
		code = fn(h)
	}
	return code, nil
}

// Readers lists the readers pcscd knows. No readers is an empty slice and a nil error.
func (c *Context) Readers(ctx context.Context) ([]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var names []string
	code, err := c.do(func(h ctxHandle) uint32 {
		var code uint32
		names, code = scListReaders(h)
		return code
	})
	if err != nil {
		return nil, err
	}
	switch code {
	case codeSuccess:
	case codeNoReaders:
		return []string{}, nil
	default:
		return nil, wrap("list readers", code)
	}
	if names == nil {
		names = []string{}
	}
	return names, nil
}

// Status reports the readers' current state. readers nil means every reader. A reader
// that does not exist comes back with Unknown set.
func (c *Context) Status(ctx context.Context, readers []string) ([]ReaderState, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if readers == nil {
		var err error
		if readers, err = c.Readers(ctx); err != nil {
			return nil, err
		}
	}
	if len(readers) == 0 {
		return []ReaderState{}, nil
	}
	states := make([]scState, len(readers))
	for i, r := range readers {
		states[i] = scState{reader: r, current: stateUnaware}
	}
	code, err := c.do(func(h ctxHandle) uint32 { return scGetStatusChange(h, 0, states) })
	if err != nil {
		return nil, err
	}
	switch code {
	case codeSuccess, codeTimeout:
	case codeUnknownReader:
		return c.statusEach(ctx, readers)
	default:
		return nil, wrap("reader status", code)
	}
	out := make([]ReaderState, len(readers))
	for i, s := range states {
		out[i] = decodeState(s.reader, s.event, s.atr)
	}
	return out, nil
}

// statusEach is Status for a list holding a reader that left (older pcsc-lite fails the
// whole call for it): the known ones are asked, the others marked Unknown.
func (c *Context) statusEach(ctx context.Context, readers []string) ([]ReaderState, error) {
	have, err := c.Readers(ctx)
	if err != nil {
		return nil, err
	}
	var present []string
	for _, r := range readers {
		if slices.Contains(have, r) {
			present = append(present, r)
		}
	}
	got := map[string]ReaderState{}
	if len(present) > 0 && len(present) < len(readers) {
		st, err := c.Status(ctx, present)
		if err != nil {
			return nil, err
		}
		for _, s := range st {
			got[s.Name] = s
		}
	}
	out := make([]ReaderState, len(readers))
	for i, r := range readers {
		if s, ok := got[r]; ok {
			out[i] = s
		} else {
			out[i] = decodeState(r, stateUnknown, nil)
		}
	}
	return out, nil
}

// waitHandle returns the Wait context, establishing it when needed. Called with waitMu.
func (c *Context) waitHandle() (ctxHandle, error) {
	c.mu.Lock()
	closed := c.closed
	c.mu.Unlock()
	if closed {
		return 0, ErrClosed
	}
	if !c.whValid {
		h, code := scEstablish()
		if code != codeSuccess {
			return 0, wrap("establish context", code)
		}
		c.wh, c.whValid = h, true
	}
	return c.wh, nil
}

func (c *Context) dropWaitHandle() {
	if c.whValid {
		scRelease(c.wh)
		c.whValid = false
	}
}

// A cancelled Wait repeats SCardCancel until the blocked call returns: libpcsclite drops a
// cancel that lands before SCardGetStatusChange has registered its wait (it sends none
// while the context is not waiting), and a C_Finalize right after C_Initialize meets that
// window often. The first repeat comes after cancelRetryFirst, then at doubling intervals
// up to cancelRetryMax: a lost cancel costs about a millisecond, not a whole interval.
const (
	cancelRetryFirst = time.Millisecond
	cancelRetryMax   = 50 * time.Millisecond
)

// Wait blocks until a reader is added or removed (the PnP notification reader wakes it),
// or one of the known readers changes: a card inserted or removed, a card swapped between
// two calls (the event counter in Raw differs), a reader turning mute or unavailable. It
// then returns the state of every reader. Changes that do not matter to a slot (another
// program connecting) do not end the wait.
//
// "Added or removed" is judged against the reader list the previous Wait on this Context
// returned, or before the first, against the readers of known: pass the result of
// Status(ctx, nil) or of the previous Wait as known. nil returns at once when there are
// readers. A known reader that is gone returns at once too.
//
// A wake caused by a card costs one SCardGetStatusChange, plus a listing where pcscd does
// not count readers in the PnP state (pcsc-lite before 2.0); a reader added or removed
// adds a status call.
//
// ctx ending returns ctx.Err(); Close returns ErrClosed. When pcscd goes away Wait
// re-establishes once; if the service is back it returns the new state (counters restart,
// so every known card reads as changed), else an error wrapping ErrNoService.
//
// One Wait runs at a time per Context; a second waits for the first.
func (c *Context) Wait(ctx context.Context, known []ReaderState) ([]ReaderState, error) {
	return c.wait(ctx, known, true)
}

// WaitFor blocks until one of the readers in known changes as Wait judges it (card
// inserted, removed or swapped, reader mute or unavailable) or leaves, or ctx ends. Other
// readers coming and going do not wake it. It returns the new states of the readers in
// known, in the same order; one that left has Unknown set. It is Wait for a caller that
// watches some readers only: Wait treats a known list that lacks a reader as a change.
func (c *Context) WaitFor(ctx context.Context, known []ReaderState) ([]ReaderState, error) {
	if len(known) == 0 {
		return nil, fmt.Errorf("pcsc: WaitFor needs at least one reader")
	}
	return c.wait(ctx, known, false)
}

// wait is Wait (all: the reader list matters) and WaitFor (only the known readers).
func (c *Context) wait(ctx context.Context, known []ReaderState, all bool) ([]ReaderState, error) {
	c.waitMu.Lock()
	defer c.waitMu.Unlock()
	// ref is the reader list the caller is taken to know: the one the last Wait returned,
	// or, before any, the readers of known. Comparing with it rather than with known lets
	// a caller watch part of the readers without every Wait returning at once.
	ref := c.lastList
	if ref == nil {
		ref = readerNames(known)
	}
	// The PnP reader's current state carries the reader count we believe in; pcscd
	// (pcsc-lite 2.x, Windows) reports a change when its own count differs.
	pnp := uint32(len(ref)) << 16
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		wh, err := c.waitHandle()
		if err != nil {
			return nil, err
		}
		if all && !c.pnpCounts.Load() {
			// This pcscd only flags readers that come or go during the call: compare
			// the list now, so one added since the caller's snapshot is not missed.
			names, err := c.Readers(ctx)
			if err != nil {
				return nil, err
			}
			if !slices.Equal(names, ref) || !containsAll(names, known) {
				return c.fullStatus(ctx, names)
			}
		}
		states := make([]scState, 0, len(known)+1)
		for _, k := range known {
			states = append(states, scState{reader: k.Name, current: currentState(k)})
		}
		if all {
			states = append(states, scState{reader: pnpReader, current: pnp})
		}
		code := c.blockingStatusChange(ctx, wh, states)
		readersChanged := false
		switch {
		case code == codeSuccess:
		case code == codeTimeout:
			continue
		case code == codeUnknownReader:
			readersChanged = true
		case code == codeCancelled || code == codeSystemCancelled:
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			if c.isClosed() {
				return nil, ErrClosed
			}
			continue
		case serviceLost(code):
			c.dropWaitHandle()
			if _, err := c.waitHandle(); err != nil {
				return nil, err
			}
			if !all {
				return c.Status(ctx, readerNames(known))
			}
			return c.fullStatus(ctx, nil)
		default:
			return nil, wrap("wait for reader change", code)
		}
		if c.isClosed() {
			return nil, ErrClosed
		}
		var now []ReaderState // indexed like known
		if code == codeSuccess {
			if all {
				ev := states[len(known)].event
				if ev>>16 != 0 {
					c.pnpCounts.Store(true)
				}
				if ev&stateChanged != 0 {
					readersChanged = true
					// Follow pcscd's count from here on, so a count kept differently
					// (another platform, another version) cannot make Wait spin.
					pnp = ev &^ (stateChanged | stateIgnore)
				}
			}
			now = make([]ReaderState, len(known))
			for i := range known {
				now[i] = decodeState(known[i].Name, states[i].event, states[i].atr)
				if now[i].Unknown {
					readersChanged = true
				}
			}
		}
		if readersChanged {
			if !all {
				return c.Status(ctx, readerNames(known))
			}
			full, err := c.fullStatus(ctx, nil)
			if err != nil {
				return nil, err
			}
			names := readerNames(full)
			if !slices.Equal(names, ref) || !containsAll(names, known) {
				return full, nil
			}
			now = pick(full, known)
		}
		for i := range now {
			if Changed(known[i], now[i]) {
				if !all {
					return now, nil
				}
				if slices.Equal(readerNames(known), ref) {
					c.lastList = ref
					return now, nil // known is every reader: now is the whole answer
				}
				return c.fullStatus(ctx, nil)
			}
		}
		known = now // only flags a slot ignores moved: wait again from here
	}
}

// fullStatus is Status that remembers the reader list it reports for the next Wait.
// Called with waitMu held.
func (c *Context) fullStatus(ctx context.Context, names []string) ([]ReaderState, error) {
	st, err := c.Status(ctx, names)
	if err == nil {
		c.lastList = readerNames(st)
	}
	return st, err
}

// containsAll reports whether every reader of known is in names.
func containsAll(names []string, known []ReaderState) bool {
	for _, k := range known {
		if !slices.Contains(names, k.Name) {
			return false
		}
	}
	return true
}

// pick returns the states of full for the readers of known, in known's order; all are
// there (the caller checked).
func pick(full, known []ReaderState) []ReaderState {
	out := make([]ReaderState, len(known))
	for i, k := range known {
		for _, f := range full {
			if f.Name == k.Name {
				out[i] = f
				break
			}
		}
	}
	return out
}

func (c *Context) isClosed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed
}

// blockingStatusChange runs SCardGetStatusChange without timeout, cancelled when ctx ends
// or the Context closes.
func (c *Context) blockingStatusChange(ctx context.Context, wh ctxHandle, states []scState) uint32 {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		select {
		case <-done:
			return
		case <-ctx.Done():
		case <-c.closing:
		}
		for d := cancelRetryFirst; ; d = min(2*d, cancelRetryMax) {
			scCancel(wh)
			t := time.NewTimer(d)
			select {
			case <-done:
				t.Stop()
				return
			case <-t.C:
			}
		}
	}()
	code := scGetStatusChange(wh, infinite, states)
	close(done)
	wg.Wait()
	return code
}

// sameReaders reports whether names and the readers of known are the same list, in order.
func sameReaders(names []string, known []ReaderState) bool {
	if len(names) != len(known) {
		return false
	}
	for i := range names {
		if names[i] != known[i].Name {
			return false
		}
	}
	return true
}

func readerNames(s []ReaderState) []string {
	out := make([]string, len(s))
	for i := range s {
		out[i] = s[i].Name
	}
	return out
}

// String names the context for debugging.
func (c *Context) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return fmt.Sprintf("pcsc.Context(closed=%v)", c.closed)
}

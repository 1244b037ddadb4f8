package slotmgr

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// run is the watcher: the only goroutine that reads reader states and changes the
// table's shape. It owns the watch context. It goes on from the read Start made in its
// place (first, with states and seq).
func (m *Manager) run(w *watcher, first readResult, states []ReaderState, seq uint64) {
	defer m.wg.Done()
	defer w.closeCtx()
	w.after(states, seq, first)
	for m.life.Err() == nil {
		w.step()
	}
}

type watcher struct {
	m     *Manager
	wc    Context
	fails int // consecutive failures; reset by a Wait that ends normally
	// freshFails counts new contexts in a row whose first read failed; a read that
	// works resets it.
	freshFails int
	// lastGood is the last read that worked through wc (0: none yet).
	lastGood uint64
	// reqs are the Rescan requests the current step serves; a panic releases them.
	reqs []chan struct{}
	// waited is set once the watcher came to its first Wait (see Options.FirstWait).
	waited bool
}

func (w *watcher) closeCtx() {
	if w.wc != nil {
		w.m.mu.Lock()
		if w.m.wshared == w.wc {
			w.m.wshared = nil
		}
		w.m.mu.Unlock()
		_ = w.wc.Close()
		w.wc = nil
	}
}

// readResult is how a watcher's read ended.
type readResult int

const (
	readOK readResult = iota
	readFailed
	readPanicked
)

// step reads the states, applies them and waits for the next event.
func (w *watcher) step() { w.after(w.read(false)) }

// after follows a read that ended as res: a read that worked is awaited, a panic
// pauses the watcher.
func (w *watcher) after(states []ReaderState, seq uint64, res readResult) {
	switch res {
	case readOK:
		w.await(states, seq)
	case readPanicked:
		w.pause()
	}
}

// recovered ends a step whose backend panicked: the context counts as lost.
func (w *watcher) recovered(r any) {
	m := w.m
	m.opt.Logf("slotmgr: watcher panicked: %v", r)
	w.closeCtx()
	m.lose(fmt.Errorf("slotmgr: watcher panicked: %v", r), w.reqs)
	w.reqs = nil
	w.fails++
}

// read establishes the context if needed, reads the states and applies them (explicit:
// as a Rescan's read, whether one asked or not). A panic in the backend counts as a lost
// context.
func (w *watcher) read(explicit bool) (states []ReaderState, seq uint64, res readResult) {
	m := w.m
	defer func() {
		if r := recover(); r != nil {
			w.recovered(r)
			res = readPanicked
		}
	}()
	fresh := false
	if w.wc == nil {
		if w.fails > 1 {
			w.pause()
			if m.life.Err() != nil {
				m.release(w.reqs)
				w.reqs = nil
				return nil, 0, readFailed
			}
		}
		w.reqs = append(w.reqs, m.takeReqs()...)
		c, err := m.b.Establish(m.life)
		if err != nil {
			reqs := w.reqs
			w.reqs = nil
			if m.life.Err() != nil {
				m.release(reqs)
				return nil, 0, readFailed
			}
			m.opt.Logf("slotmgr: establish: %v", err)
			m.lose(err, reqs)
			w.fails++
			if w.fails < 2 {
				w.fails = 2 // next try after RetryInterval
			}
			return nil, 0, readFailed
		}
		w.wc = c
		w.lastGood = 0
		fresh = true
		if sc, ok := c.(SharedContext); ok && sc.Shared() {
			m.mu.Lock()
			m.wshared = c
			m.mu.Unlock()
		}
	}

	w.reqs = append(w.reqs, m.takeReqs()...)
	reqs := w.reqs
	seq, at := m.beginRead()
	states, err := w.scan()
	if err != nil {
		if m.life.Err() != nil {
			w.reqs = nil
			m.release(reqs)
			return nil, 0, readFailed
		}
		m.opt.Logf("slotmgr: scan: %v", err)
		lastGood := w.lastGood
		w.closeCtx()
		w.fails++
		if fresh {
			w.freshFails++
		}
		if fresh && w.freshFails > 1 {
			// Even a new context fails, and not for the first time in a row (a restart
			// can land between a context's establishment and its first read): answer
			// the Rescans with what we know (nothing).
			w.reqs = nil
			m.lose(err, reqs)
			return nil, 0, readFailed
		}
		// The old context died (a service restart): the next step reads through a new
		// one at once, for the Rescans waiting too. The tokens bound before the last
		// read that worked through it had their connections on the old service: those
		// generations end. The rest of the table stands: a read through another
		// context may have made it since the restart (and the next read ends the
		// generations whose readers no longer read "in use"). Only a new context that
		// fails too says the service is gone.
		m.endConnected(lastGood)
		return nil, 0, readFailed
	}
	w.freshFails, w.lastGood = 0, seq
	w.reqs = reqs
	m.apply(states, seq, at, explicit || len(reqs) > 0)
	m.lookupUSB()
	w.reqs = nil
	m.release(reqs)
	return states, seq, readOK
}

// await follows read seq (states): it lets the binds that read started land, and waits
// for the next event. A panic in the backend counts as a lost context.
func (w *watcher) await(states []ReaderState, seq uint64) {
	m := w.m
	defer func() {
		if r := recover(); r != nil {
			w.recovered(r)
			w.pause()
		}
	}()
	// A bind this read started will change the reader's state (our connection), which
	// the watcher must read before it waits: a short bind is waited for here, rather
	// than a Wait begun now and cancelled as the bind lands.
	m.awaitBinds(bindSettle)
	if !w.waited {
		// The first Wait after Start waits until the application has been there a while:
		// most processes that load a PKCS#11 module (a listing, a signature, ssh-keygen)
		// are done within tens of milliseconds and never need an event; the Wait's own
		// context, its listing, its SCardCancel at C_Finalize and the read a landed bind
		// asks for were a quarter of `pkcs11-tool -L`'s PC/SC calls (34 against 25; 20 now).
		// Nothing is lost meanwhile: C_GetSlotList reads the states itself, a caller of
		// WaitChange (C_WaitForSlotEvent) ends the delay, and the Wait starts from the
		// states read before it, so a change since then wakes it at once.
		w.waited = true
		if m.opt.FirstWait > 0 {
			m.settle(m.opt.FirstWait)
			if m.life.Err() != nil {
				return
			}
		}
	}

	// Wait for the next event, unless a Rescan or a landed bind asks for a read first.
	wctx, cancel := context.WithCancel(m.life)
	if m.opt.Poll > 0 {
		wctx, cancel = context.WithTimeout(m.life, m.opt.Poll)
	}
	defer cancel()
	m.mu.Lock()
	if len(m.reqs) > 0 || m.poke {
		m.mu.Unlock()
		return
	}
	m.stopW = cancel
	m.mu.Unlock()
	_, err := w.wc.Wait(wctx, states)
	m.mu.Lock()
	m.stopW = nil
	m.mu.Unlock()
	switch {
	case err == nil || wctx.Err() != nil:
		w.fails = 0
	default:
		if m.life.Err() != nil {
			return
		}
		// The service failed or restarted under the Wait. Every card we connected before
		// the Wait began had its handle on the old service: those generations end now.
		// The readers stay listed unless the service cannot be reached again (the next
		// step re-establishes at once, and empties the table if it cannot).
		m.opt.Logf("slotmgr: wait: %v", err)
		w.closeCtx()
		m.endConnected(seq)
		w.fails++
	}
}

// bindSettle bounds how long the watcher waits for the binds a read started before it
// waits for events: a bind is a few APDUs; a card slower than that is read again when
// its bind lands, as before.
const bindSettle = 200 * time.Millisecond

// freshRead is the default of Options.Fresh.
const freshRead = 10 * time.Millisecond

// firstWaitDelay is the default of Options.FirstWait.
const firstWaitDelay = 50 * time.Millisecond

// settle waits up to d, or less when a Rescan needs the watcher, a WaitChange caller waits
// for a change, or the manager stops.
func (m *Manager) settle(d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-m.kick: // the Rescan's request is in m.reqs: the step returns to serve it
	case <-m.waiting:
	case <-m.life.Done():
	}
}

// bindsLocked returns the done channels of the binds in flight. m.mu is held.
func (m *Manager) bindsLocked() []chan struct{} {
	var pending []chan struct{}
	for _, s := range m.order {
		if s.inst != nil && s.inst.binding {
			pending = append(pending, s.inst.done)
		}
	}
	return pending
}

// awaitBinds waits up to d for the binds in flight.
func (m *Manager) awaitBinds(d time.Duration) {
	m.mu.Lock()
	pending := m.bindsLocked()
	m.mu.Unlock()
	if len(pending) == 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	for _, done := range pending {
		select {
		case <-done:
		case <-t.C:
			return
		case <-m.life.Done():
			return
		}
	}
}

// endConnected ends the generations of the tokens bound no later than read seq (their
// connections predate a service failure). Tokens bound since are left to the in-use
// check of the next read.
func (m *Manager) endConnected(seq uint64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	dirty := map[*slot]bool{}
	for _, s := range m.order {
		if i := s.inst; i != nil && i.token != nil && i.boundAt <= seq {
			m.opt.Logf("slotmgr: slot %d: connection lost with the service, gen %d ends", s.id, i.gen)
			m.teardown(i)
			s.inst = nil
			dirty[s] = true
		}
	}
	m.bumpLocked(dirty)
}

// scan reads reader names and states through the watch context.
func (w *watcher) scan() ([]ReaderState, error) { return readStates(w.m.life, w.wc) }

// readStates reads reader names and states. A reader can leave between the two reads,
// which may fail Status: that is tried again before the context counts as lost.
func readStates(ctx context.Context, c Context) ([]ReaderState, error) {
	var err error
	for try := 0; try < 3; try++ {
		var names []string
		names, err = c.Readers(ctx)
		if err != nil {
			continue
		}
		if len(names) == 0 {
			return nil, nil
		}
		var st []ReaderState
		st, err = c.Status(ctx, names)
		if err == nil && len(st) != len(names) {
			err = errors.New("slotmgr: backend status count mismatch")
		}
		if err == nil {
			return st, nil
		}
	}
	return nil, err
}

// firstRetry is the first pause after the service failed; pauses double from there up
// to RetryInterval, so a restarted pcscd is found again quickly and a stopped one costs
// one failed connect per RetryInterval.
const firstRetry = 50 * time.Millisecond

// retryDelay is the pause after fails consecutive failures.
func retryDelay(fails int, max time.Duration) time.Duration {
	d := firstRetry
	for i := 2; i < fails && d < max; i++ {
		d *= 2
	}
	return min(d, max)
}

// pause waits before the next try (see retryDelay), or less when a Rescan asks or the
// manager stops.
func (w *watcher) pause() {
	t := time.NewTimer(retryDelay(w.fails, w.m.opt.RetryInterval))
	defer t.Stop()
	select {
	case <-t.C:
	case <-w.m.kick:
	case <-w.m.life.Done():
	}
}

func (m *Manager) takeReqs() []chan struct{} {
	m.mu.Lock()
	defer m.mu.Unlock()
	r := m.reqs
	m.reqs = nil
	m.poke = false
	// Drain a stale kick: these requests are being served now.
	select {
	case <-m.kick:
	default:
	}
	return r
}

func (m *Manager) release(r []chan struct{}) {
	for _, c := range r {
		close(c)
	}
}

// lose handles a broken or missing service: every reader counts as gone and every card
// generation ends (a pcscd restart invalidates all handles). Slots keep their IDs.
func (m *Manager) lose(err error, reqs []chan struct{}) {
	m.mu.Lock()
	m.svcErr = err
	m.applied = m.scans // reads under way describe the lost service
	dirty := map[*slot]bool{}
	for _, s := range m.order {
		m.detachLocked(s, dirty)
	}
	m.bumpLocked(dirty)
	m.mu.Unlock()
	m.release(reqs)
}

func (m *Manager) detachLocked(s *slot, dirty map[*slot]bool) {
	if s.inst != nil {
		m.teardown(s.inst)
		s.inst = nil
		dirty[s] = true
	}
	if s.attached {
		s.attached = false
		s.features = nil
		s.usb, s.usbDue = nil, false
		dirty[s] = true
		m.opt.Logf("slotmgr: slot %d: reader %q gone", s.id, s.reader)
	}
}

// beginRead numbers a read of the reader states about to begin, and says when it began.
func (m *Manager) beginRead() (seq uint64, at time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.scans++
	return m.scans, time.Now()
}

// apply brings the table in line with a full read of the reader states, the seq-th, begun
// at. explicit is true when a Rescan asked for this read (failed binds may be retried
// then).
func (m *Manager) apply(states []ReaderState, seq uint64, at time.Time, explicit bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed || seq <= m.applied {
		return // a later read (the watcher's or a Rescan's) is in already
	}
	m.applied, m.readAt = seq, at
	m.svcErr = nil
	dirty := map[*slot]bool{}
	seen := make(map[string]bool, len(states))
	for _, st := range states {
		if seen[st.Name] || st.Unknown {
			continue
		}
		seen[st.Name] = true
		s := m.byName[st.Name]
		if s == nil {
			s = &slot{id: uint64(len(m.order)) + 1, reader: st.Name}
			m.byName[st.Name] = s
			m.order = append(m.order, s)
			m.opt.Logf("slotmgr: slot %d: reader %q", s.id, s.reader)
		}
		prev := s.state
		wasAttached := s.attached
		if !s.attached {
			s.attached = true
			s.usbDue = !m.opt.NoUSB
			dirty[s] = true
		}
		s.state = st
		m.applyCardLocked(s, prev, wasAttached, st, seq, explicit, dirty)
	}
	for _, s := range m.order {
		if s.attached && !seen[s.reader] {
			m.detachLocked(s, dirty)
		}
	}
	m.bumpLocked(dirty)
}

func (m *Manager) applyCardLocked(s *slot, prev ReaderState, wasAttached bool, st ReaderState, seq uint64, explicit bool, dirty map[*slot]bool) {
	card := st.Present && !st.Empty
	i := s.inst
	if i != nil && (!card || st.EventCount != i.events) {
		m.opt.Logf("slotmgr: slot %d: card removed (gen %d)", s.id, i.gen)
		m.teardown(i)
		s.inst = nil
		i = nil
		dirty[s] = true
	}
	// While we hold a connection the reader reads "in use". A bound card whose reader
	// no longer does, in a read started after the bind landed, lost our connection: the
	// service restarted under us (its event counter starts again and may well show the
	// same count). The card was powered down; treat it as a new insertion.
	if i != nil && i.token != nil && card && !st.InUse && !st.Exclusive && seq > i.boundAt {
		m.opt.Logf("slotmgr: slot %d: connection lost (service restarted?), gen %d ends", s.id, i.gen)
		m.teardown(i)
		s.inst = nil
		i = nil
		dirty[s] = true
	}
	if !card {
		return
	}
	if i == nil {
		m.gen++
		ctx, cancel := context.WithCancel(m.life)
		i = &instance{gen: m.gen, events: st.EventCount, atr: append([]byte(nil), st.ATR...),
			ctx: ctx, cancel: cancel, removed: make(chan struct{})}
		s.inst = i
		dirty[s] = true
		m.opt.Logf("slotmgr: slot %d: card inserted (gen %d, ATR %X)", s.id, i.gen, i.atr)
		switch {
		case st.Mute:
			i.err = ErrCardMute
		case st.Unavailable:
			i.err = ErrReaderUnavailable
		case st.Exclusive:
			i.err = ErrCardInUse // connecting would fail: wait for the holder to let go
		default:
			m.startBindLocked(s, i)
		}
		return
	}
	// The same card as before: retry a bind that failed for a passing reason.
	if i.binding || i.token != nil || i.err == nil {
		return
	}
	if !st.Mute && !st.Unavailable && len(st.ATR) > 0 {
		i.atr = append(i.atr[:0], st.ATR...)
	}
	usable := !st.Mute && !st.Unavailable && !st.Exclusive
	switch {
	case !usable:
		// Mute, unavailable or held by another application: wait.
	case errors.Is(i.err, ErrCardMute) || errors.Is(i.err, ErrReaderUnavailable) || errors.Is(i.err, ErrCardInUse):
		m.startBindLocked(s, i)
		dirty[s] = true
	case permanent(i.err):
	case wasAttached && released(prev, st):
		// Another application let go of the card (it held it when we tried): a fresh try.
		i.attempts = 0
		m.startBindLocked(s, i)
		dirty[s] = true
	case explicit && i.attempts < m.opt.MaxBindAttempts:
		m.startBindLocked(s, i)
		dirty[s] = true
	}
}

// released reports that another application released its exclusive hold on the card
// between two reads. (InUse moves with every connect, ours included, so it is no reason
// to try again.)
func released(a, b ReaderState) bool {
	return a.Exclusive && !b.Exclusive
}

// lookupUSB finds the USB devices of readers attached since the last lookup.
func (m *Manager) lookupUSB() {
	u, ok := m.b.(USBLookup)
	if !ok {
		return
	}
	m.mu.Lock()
	var due []*slot
	var names []string
	for _, s := range m.order {
		if s.usbDue {
			s.usbDue = false
			due = append(due, s)
			names = append(names, s.reader)
		}
	}
	m.mu.Unlock()
	if len(due) == 0 {
		return
	}
	infos := u.USB(names)
	m.mu.Lock()
	defer m.mu.Unlock()
	for k, s := range due {
		if k < len(infos) && s.attached && infos[k] != nil {
			s.usb = infos[k]
		}
	}
}

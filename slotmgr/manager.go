package slotmgr

import (
	"context"
	"errors"
	"sort"
	"sync"
	"time"

	"github.com/p11-card/p11-card/cards"
	"github.com/p11-card/p11-card/pcsc"
)

// Options tune a Manager; the zero value is the production setting.
type Options struct {
	// Bind binds a driver to a connected card; nil means cards.Bind over the registered
	// drivers. Tests put their own here.
	Bind func(ctx context.Context, c cards.Conn, atr []byte) (cards.Token, error)
	// RetryInterval is the longest pause before trying the PC/SC service again after it
	// failed (pcscd down, a context that keeps failing): pauses start at 50ms and double
	// up to it. Rescan tries at once. Default 1s.
	RetryInterval time.Duration
	// Poll, when positive, makes the watcher read the reader states at least that often
	// even when Wait reports nothing: a fallback for a backend whose waits can miss an
	// event. Zero (the default) is purely event-driven.
	Poll time.Duration
	// BindTimeout bounds one bind (context, connect, driver Open: a few APDUs, but the
	// driver's Lock may wait for another application's transaction). Start and Rescan
	// wait for binds, so this also bounds how long a hung card can hold C_Initialize or
	// C_GetSlotList. A bind past it counts as a failed attempt. Default 10s.
	BindTimeout time.Duration
	// MaxBindAttempts bounds the binds of one insertion that fail with an error other
	// than "not recognized" (a sharing violation, a transmission error): each is retried
	// on Rescan or when another application releases an exclusive hold. Default 3.
	MaxBindAttempts int
	// FirstWait is how long after its first read the watcher waits before it starts
	// watching for events, unless a WaitChange caller waits or a Rescan needs it first:
	// a short-lived process (a listing, one signature) is over by then and never pays for
	// the watch. Default 50ms; negative: at once.
	FirstWait time.Duration
	// Fresh is how recent the last read of the reader states may be for Rescan to answer
	// from it without reading again. Applications list the slots right after
	// C_Initialize (whose read is a millisecond old then) and several times in a row;
	// pcscd itself takes longer to see a card come (it polls readers without an
	// interrupt endpoint every 400ms). Default 10ms; negative: Rescan always reads.
	Fresh time.Duration
	// NoPINPad skips the PC/SC part 10 feature request (PIN-pad detection).
	NoPINPad bool
	// NoUSB skips looking up the USB device behind each reader.
	NoUSB bool
	// Logf receives diagnostics: reader names, events, errors; never card data. nil
	// means the "slot" trace category.
	Logf func(format string, args ...any)
}

func (o *Options) defaults() {
	if o.Bind == nil {
		o.Bind = cards.Bind
	}
	if o.RetryInterval <= 0 {
		o.RetryInterval = time.Second
	}
	if o.BindTimeout <= 0 {
		o.BindTimeout = 10 * time.Second
	}
	if o.FirstWait == 0 {
		o.FirstWait = firstWaitDelay
	}
	if o.MaxBindAttempts <= 0 {
		o.MaxBindAttempts = 3
	}
	if o.Fresh == 0 {
		o.Fresh = freshRead
	}
	if o.Logf == nil {
		o.Logf = tracef
	}
}

// SlotInfo is a snapshot of one slot. The Token and Conn it carries belong to generation
// Gen: once the card leaves or is swapped, Conn answers ErrTokenRemoved and Removed is
// closed.
type SlotInfo struct {
	// ID is ≥ 1 and stays with its reader name while the manager lives: a reader that
	// leaves and comes back gets its ID back, and an ID never names another reader.
	ID     uint64
	Reader string
	// Present is true when a driver is bound to the card in the reader (a token).
	Present bool
	// Gen is the card generation: a new value (unique across all slots) for every card
	// insertion or swap, 0 when the reader is empty. A card present but unbound has one
	// too, so a later successful bind keeps it.
	Gen   uint64
	ATR   []byte
	Token cards.Token
	Conn  cards.Conn
	// USB is the USB device behind the reader, when the backend can tell (nil otherwise).
	USB *pcsc.USBInfo
	// PINPad is true when the reader announces PIN verification on its own keypad (PC/SC
	// part 10 FEATURE_VERIFY_PIN_DIRECT or _START). PINVerify and PINModify are the
	// control codes of FEATURE_VERIFY_PIN_DIRECT and FEATURE_MODIFY_PIN_DIRECT (0: none).
	PINPad               bool
	PINVerify, PINModify uint32
	// Err is why a card in the reader has no token: an error wrapping
	// cards.ErrNotRecognized for an unknown card, ErrCardMute, a bind or connect error.
	Err error

	// CardPresent is true when a card is in the reader, bound or not.
	CardPresent bool
	// Binding is true while a driver is being bound to the card.
	Binding bool
	// ReaderGone is true when the reader has left (only Slot reports such slots).
	ReaderGone bool
	// Changed is the change counter (see WaitChange) of the slot's last change.
	Changed uint64
	// Removed is closed when generation Gen ends (card removed or swapped, reader gone,
	// service lost, manager closed); nil when Gen is 0.
	Removed <-chan struct{}
}

// Manager keeps the slot table. Its methods are safe for concurrent use.
type Manager struct {
	b   Backend
	opt Options

	mu      sync.Mutex
	byName  map[string]*slot
	order   []*slot // by ID
	gen     uint64  // last generation handed out
	counter uint64  // change counter, ≥ 1
	changes chan struct{}
	started bool
	closed  bool
	svcErr  error     // last service error; nil while a watch context works
	scans   uint64    // reads of the reader states started so far
	applied uint64    // the latest read applied to the table
	readAt  time.Time // when the read applied last began
	// inline is set while Start reads: the binds that read starts are collected, for
	// Start to run, instead of each going off in a goroutine.
	inline    bool
	collected []func()
	poke      bool // read the states again before the next Wait
	reqs      []chan struct{}
	stopW     context.CancelFunc // cancels the watcher's current Wait
	kick      chan struct{}
	// waiting is closed (once, waitingOnce) when a WaitChange caller first blocks: the
	// watcher's first Wait starts then at the latest (Options.FirstWait).
	waiting     chan struct{}
	waitingOnce sync.Once

	life context.Context
	stop context.CancelFunc
	wg   sync.WaitGroup

	qmu sync.Mutex // serialises Rescan's own reads; guards qc
	qc  Context    // Rescan's context, apart from the watcher's (which sits in Wait)
	// wshared is the watcher's context when it is a SharedContext: Rescan reads through
	// it and opens no context of its own. Guarded by mu; the watcher owns and closes it.
	wshared Context
}

type slot struct {
	id       uint64
	reader   string
	attached bool
	state    ReaderState
	inst     *instance
	changed  uint64
	features *features // nil until read for this attachment
	usb      *pcsc.USBInfo
	usbDue   bool // attached since the last USB lookup
}

// instance is one card insertion in one reader.
type instance struct {
	gen      uint64
	events   int
	atr      []byte
	ctx      context.Context
	cancel   context.CancelFunc
	removed  chan struct{}
	gone     bool
	binding  bool
	done     chan struct{} // closed when the current bind attempt ends
	attempts int
	err      error
	pc       Context
	conn     *conn
	token    cards.Token
	boundAt  uint64 // m.scans when the bind landed: later reads must show our connection
}

// New returns a manager over b; Start begins watching.
func New(b Backend, opts Options) *Manager {
	opts.defaults()
	return &Manager{
		b:       b,
		opt:     opts,
		byName:  map[string]*slot{},
		counter: 1,
		changes: make(chan struct{}),
		kick:    make(chan struct{}, 1),
		waiting: make(chan struct{}),
	}
}

// Start launches the watcher and returns once the readers present now are in the table
// and the cards in them are bound. The PC/SC service being down is not an error: the
// table stays empty and the manager keeps trying. The read and the bind Start makes
// itself are bounded by the service and Options.BindTimeout; ctx bounds the wait for
// the binds beside them (ctx.Err() when it ends first). The goroutines live until Close.
func (m *Manager) Start(ctx context.Context) error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return ErrClosed
	}
	if m.started {
		m.mu.Unlock()
		return errors.New("slotmgr: already started")
	}
	m.started = true
	m.life, m.stop = context.WithCancel(context.WithoutCancel(ctx))
	m.wg.Add(1)
	m.inline = true
	m.mu.Unlock()
	// The watcher's first read, and the binds it starts, run in the caller's goroutine
	// (see "Events and I/O" in the package comment); the watcher goes on from that read.
	w := &watcher{m: m}
	states, seq, res := w.read(true)
	m.mu.Lock()
	binds := m.collected
	m.collected, m.inline = nil, false
	m.mu.Unlock()
	runBeside(binds)
	go m.run(w, res, states, seq)
	err := m.waitBinds(ctx)
	if s, ok := m.b.(Starter); ok {
		s.Started()
	}
	return err
}

// Close stops the goroutines, closes every card connection and context, and wakes
// every WaitChange with ErrClosed. It is idempotent.
func (m *Manager) Close() error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil
	}
	m.closed = true
	if m.stop != nil {
		m.stop()
	}
	close(m.changes)
	// The cards are let go here and now, while the watcher and the binds end (a bind
	// closes what it opened), as Start binds them: in the caller's goroutine.
	var closers []func()
	for _, s := range m.order {
		if s.inst != nil {
			if f := m.endLocked(s.inst); f != nil {
				closers = append(closers, f)
			}
		}
	}
	m.mu.Unlock()
	runBeside(closers)

	m.wg.Wait() // watcher, binds and closers
	m.mu.Lock()
	// Every instance ended above, and a closed manager makes none.
	for _, s := range m.order {
		s.inst, s.attached = nil, false
	}
	for _, r := range m.reqs {
		close(r)
	}
	m.reqs = nil
	m.mu.Unlock()
	m.qmu.Lock()
	m.dropQuery()
	m.qmu.Unlock()
	return nil
}

// Slots lists the slots of the readers attached now, by ID. Readers that left are
// hidden here (Slot still answers for them), so C_GetSlotList never lists a reader
// that is gone; with the PC/SC service down the list is empty.
func (m *Manager) Slots() []SlotInfo {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]SlotInfo, 0, len(m.order))
	for _, s := range m.order {
		if s.attached {
			out = append(out, s.info())
		}
	}
	return out
}

// AllSlots lists every slot the manager has seen, by ID, those of readers that left
// included (ReaderGone): a reader unplugged with its token in it (a YubiKey) is a token
// removal that Slots alone cannot show.
func (m *Manager) AllSlots() []SlotInfo {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]SlotInfo, 0, len(m.order))
	for _, s := range m.order {
		out = append(out, s.info())
	}
	return out
}

// Slot reports one slot, including one whose reader has left (ReaderGone, no card):
// every ID Slots ever returned stays valid while the manager lives.
func (m *Manager) Slot(id uint64) (SlotInfo, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	i := sort.Search(len(m.order), func(i int) bool { return m.order[i].id >= id })
	if i == len(m.order) || m.order[i].id != id {
		return SlotInfo{}, false
	}
	return m.order[i].info(), true
}

// Counter is the current change counter (≥ 1); it grows on every change of the table.
func (m *Manager) Counter() uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.counter
}

// Changes returns a channel that is closed at the next change of the table (then
// replaced): a broadcast. After Close it is closed for good.
func (m *Manager) Changes() <-chan struct{} {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.changes
}

// WaitChange blocks until the change counter exceeds since and returns it. since 0
// returns the current counter at once (the starting point of a wait loop: pass the
// returned value back to wait for the next change; a caller that always passes back
// the last value it got misses no change). It returns ctx.Err() when ctx ends and
// ErrClosed when the manager is closed (C_Finalize waking C_WaitForSlotEvent). What
// changed is in the slots whose Changed exceeds the old value.
func (m *Manager) WaitChange(ctx context.Context, since uint64) (uint64, error) {
	m.mu.Lock()
	for {
		if m.closed {
			m.mu.Unlock()
			return 0, ErrClosed
		}
		if since == 0 || m.counter > since {
			n := m.counter
			m.mu.Unlock()
			return n, nil
		}
		ch := m.changes
		m.mu.Unlock()
		m.waitingOnce.Do(func() { close(m.waiting) })
		select {
		case <-ch:
		case <-ctx.Done():
			return 0, ctx.Err()
		}
		m.mu.Lock()
	}
}

// Rescan reads the readers now (waking the watcher, or trying the service again when
// it is down) and waits until the table reflects that read and the binds it started
// are done. C_GetSlotList calls it. With the service down it returns nil and the table
// stays empty.
func (m *Manager) Rescan(ctx context.Context) error { return m.rescan(ctx) }

// rescan is Rescan.
func (m *Manager) rescan(ctx context.Context) error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return ErrClosed
	}
	if !m.started {
		m.mu.Unlock()
		return errors.New("slotmgr: not started")
	}
	fresh := m.opt.Fresh > 0 && m.svcErr == nil && !m.readAt.IsZero() && time.Since(m.readAt) < m.opt.Fresh
	m.mu.Unlock()
	// A fresh read answers for now (Options.Fresh): only the binds pending are waited for.
	if !fresh && !m.quickScan(ctx) {
		// No working context of our own (service down or failing): have the watcher
		// read, which also tries the service again.
		m.mu.Lock()
		if m.closed {
			m.mu.Unlock()
			return ErrClosed
		}
		t := make(chan struct{})
		m.reqs = append(m.reqs, t)
		if m.stopW != nil {
			m.stopW()
		}
		m.mu.Unlock()
		select {
		case m.kick <- struct{}{}:
		default:
		}
		select {
		case <-t:
		case <-m.life.Done():
			return ErrClosed
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return m.waitBinds(ctx)
}

// waitBinds waits for the binds in flight.
func (m *Manager) waitBinds(ctx context.Context) error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return ErrClosed
	}
	pending := m.bindsLocked()
	m.mu.Unlock()
	for _, d := range pending {
		select {
		case <-d:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// quickScan reads the reader states through Rescan's own context, without disturbing
// the watcher's Wait, and applies them. It reports false when it could not (no service,
// a failing context, the manager closing); the caller then asks the watcher.
func (m *Manager) quickScan(ctx context.Context) (ok bool) {
	m.qmu.Lock()
	defer m.qmu.Unlock()
	defer func() {
		if r := recover(); r != nil {
			m.opt.Logf("slotmgr: rescan panicked: %v", r)
			m.dropQuery()
			ok = false
		}
	}()
	m.mu.Lock()
	closed, down := m.closed, m.svcErr != nil
	m.mu.Unlock()
	if closed || down {
		m.dropQuery()
		return false
	}
	m.mu.Lock()
	c := m.wshared
	m.mu.Unlock()
	borrowed := c != nil
	if borrowed {
		m.dropQuery() // one opened while the watcher had none is no longer needed
	} else {
		if m.qc == nil {
			qc, err := m.b.Establish(ctx)
			if err != nil {
				return false
			}
			m.qc = qc
		}
		c = m.qc
	}
	seq, at := m.beginRead()
	states, err := readStates(ctx, c)
	if err != nil {
		// A borrowed context is the watcher's to mend (it may be closing it now).
		if !borrowed {
			m.dropQuery()
		}
		return false
	}
	m.apply(states, seq, at, true)
	m.lookupUSB()
	return true
}

// dropQuery closes Rescan's context. m.qmu is held.
func (m *Manager) dropQuery() {
	if m.qc != nil {
		_ = m.qc.Close()
		m.qc = nil
	}
}

// ServiceErr is nil while the manager has a working PC/SC context, else the error of the
// last attempt (pcscd down).
func (m *Manager) ServiceErr() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.svcErr
}

func (s *slot) info() SlotInfo {
	in := SlotInfo{ID: s.id, Reader: s.reader, ReaderGone: !s.attached, Changed: s.changed, USB: s.usb}
	if s.features != nil {
		in.PINPad = s.features.pinPad()
		in.PINVerify = s.features.code(featureVerifyPINDirect)
		in.PINModify = s.features.code(featureModifyPINDirect)
	}
	i := s.inst
	if i == nil {
		return in
	}
	in.CardPresent = true
	in.Gen = i.gen
	in.ATR = append([]byte(nil), i.atr...)
	in.Binding = i.binding
	in.Err = i.err
	in.Removed = i.removed
	if i.token != nil {
		in.Present = true
		in.Token = i.token
		in.Conn = i.conn
	}
	return in
}

// bumpLocked advances the counter once for the slots in dirty and wakes the waiters.
func (m *Manager) bumpLocked(dirty map[*slot]bool) {
	if len(dirty) == 0 || m.closed {
		return
	}
	m.counter++
	for s := range dirty {
		s.changed = m.counter
	}
	close(m.changes)
	m.changes = make(chan struct{})
}

// teardown ends an instance: its Conn fails from now on, its bind (if running) is
// cancelled, and its connection is closed in the background. m.mu is held.
func (m *Manager) teardown(i *instance) {
	if f := m.endLocked(i); f != nil {
		go f()
	}
}

// runBeside runs fs, the last in this goroutine and the others beside it.
func runBeside(fs []func()) {
	for k, f := range fs {
		if k < len(fs)-1 {
			go f()
		} else {
			f()
		}
	}
}

// endLocked is teardown but for the closing, which it returns (nil: nothing to close;
// m.wg counts it from now). m.mu is held.
func (m *Manager) endLocked(i *instance) func() {
	if i.gone {
		return nil
	}
	i.gone = true
	i.cancel()
	close(i.removed)
	if i.binding {
		return nil // the bind goroutine closes what it opened
	}
	c, pc := i.conn, i.pc
	i.conn, i.pc, i.token = nil, nil, nil
	if c == nil && pc == nil {
		return nil
	}
	if c != nil {
		c.closed.Store(true)
	}
	m.wg.Add(1)
	return func() {
		defer m.wg.Done()
		defer m.recoverLog("close")
		closeAll(c, pc)
	}
}

func closeAll(c *conn, pc Context) {
	if c != nil {
		c.close()
	}
	if pc != nil {
		_ = pc.Close()
	}
}

func (m *Manager) recoverLog(what string) {
	if r := recover(); r != nil {
		m.opt.Logf("slotmgr: %s panicked: %v", what, r)
	}
}

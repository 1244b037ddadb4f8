package slotmgrtest

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"

	"github.com/p11-card/p11-card/cards/vcard"
	"github.com/p11-card/p11-card/slotmgr"
)

// Errors of the fake, in the roles of the PC/SC ones.
var (
	ErrNoService     = errors.New("slotmgrtest: service not available")
	ErrNoReader      = errors.New("slotmgrtest: unknown reader")
	ErrNoCard        = errors.New("slotmgrtest: no card")
	ErrRemoved       = errors.New("slotmgrtest: card removed")
	ErrInvalidHandle = errors.New("slotmgrtest: invalid handle")
	ErrSharing       = errors.New("slotmgrtest: sharing violation")
)

// Backend is a fake PC/SC service. The zero value is not usable; call New.
type Backend struct {
	mu      sync.Mutex
	up      bool
	epoch   int // service incarnation; contexts of an older one are dead
	readers map[string]*reader
	order   []string // reader names in attach order
	changed chan struct{}
	seq     uint64        // counts changes (notifyLocked)
	idleAt  uint64        // seq at which a Wait last started blocking
	idleN   int           // Waits blocked now
	idle    chan struct{} // closed when a Wait starts blocking

	// EstablishErr, when set, fails Establish while the service is up.
	EstablishErr error
	// ConnectErr, when set, is consulted by Connect.
	ConnectErr func(reader string) error
	// Healing makes contexts survive a service restart, as package pcsc's do (they
	// re-establish inside and a Wait returns the new states); card handles still die.
	// Set it before use.
	Healing bool

	contexts, handles int // open now
	established       int // Establish calls that succeeded
	waits             int // Wait calls
	controls          int // Control calls
}

type reader struct {
	name      string
	card      vcard.Card
	insertion int // identifies the card in the reader; 0 when empty
	events    int
	mute      bool
	exclusive bool
	features  []byte // answer to the part 10 feature request; nil: control fails
	resets    int
	conns     int // open handles to the card now in the reader (SCARD_STATE_INUSE)
}

// New returns a running service with no readers.
func New() *Backend {
	return &Backend{up: true, epoch: 1, readers: map[string]*reader{}, changed: make(chan struct{})}
}

// insertions numbers card insertions across all backends; only identity matters.
var (
	insMu      sync.Mutex
	insertions int
)

func nextInsertion() int {
	insMu.Lock()
	defer insMu.Unlock()
	insertions++
	return insertions
}

func (b *Backend) notifyLocked() {
	b.seq++
	close(b.changed)
	b.changed = make(chan struct{})
}

// Settled returns once a Wait is blocked on the world as it is now: the watcher has
// taken in every change made so far (a service restart included) and waits for the
// next. It returns ctx.Err() if that does not happen first.
func (b *Backend) Settled(ctx context.Context) error {
	b.mu.Lock()
	for {
		if b.idleN > 0 && b.idleAt == b.seq {
			b.mu.Unlock()
			return nil
		}
		if b.idle == nil {
			b.idle = make(chan struct{})
		}
		ch := b.idle
		b.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
		b.mu.Lock()
	}
}

// AddReader attaches a reader (no-op if it is there).
func (b *Backend) AddReader(name string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.readers[name] != nil {
		return
	}
	b.readers[name] = &reader{name: name}
	b.order = append(b.order, name)
	b.notifyLocked()
}

// RemoveReader detaches a reader and the card in it.
func (b *Backend) RemoveReader(name string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.readers[name] == nil {
		return
	}
	delete(b.readers, name)
	for i, n := range b.order {
		if n == name {
			b.order = append(b.order[:i], b.order[i+1:]...)
			break
		}
	}
	b.notifyLocked()
}

// Insert puts c into the reader (replacing a card there, which is a swap).
func (b *Backend) Insert(name string, c vcard.Card) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	r := b.readers[name]
	if r == nil {
		return ErrNoReader
	}
	if r.card != nil {
		r.events++ // removal of the old card
	}
	c.Reset()
	r.card, r.insertion, r.mute, r.conns = c, nextInsertion(), false, 0
	r.events++
	b.notifyLocked()
	return nil
}

// Swap replaces the card in a reader by c in one step: a watcher sees only the event
// counter move (by two), as when a card is swapped between two polls.
func (b *Backend) Swap(name string, c vcard.Card) error { return b.Insert(name, c) }

// Remove takes the card out of a reader.
func (b *Backend) Remove(name string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.removeLocked(name)
}

func (b *Backend) removeLocked(name string) {
	r := b.readers[name]
	if r == nil || r.card == nil {
		return
	}
	r.card, r.insertion, r.mute, r.exclusive, r.conns = nil, 0, false, false, 0
	r.events++
	b.notifyLocked()
}

// SetMute marks the card in a reader as not answering reset (or answering again).
func (b *Backend) SetMute(name string, mute bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if r := b.readers[name]; r != nil && r.card != nil {
		r.mute = mute
		b.notifyLocked()
	}
}

// SetExclusive models another application holding the card exclusively: Connect fails
// with ErrSharing meanwhile.
func (b *Backend) SetExclusive(name string, excl bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if r := b.readers[name]; r != nil && r.card != nil {
		r.exclusive = excl
		b.notifyLocked()
	}
}

// SetFeatures sets the reader's answer to the PC/SC part 10 feature request (nil: the
// control call fails, as on a reader without features).
func (b *Backend) SetFeatures(name string, tlv []byte) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if r := b.readers[name]; r != nil {
		r.features = append([]byte(nil), tlv...)
	}
}

// ResetCard models another application resetting the card: the next Lock on every
// handle reports reset.
func (b *Backend) ResetCard(name string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if r := b.readers[name]; r != nil && r.card != nil {
		r.card.Reset()
		r.resets++
	}
}

// Stop stops the service: every context and handle dies, Establish fails.
func (b *Backend) Stop() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.stopLocked()
}

func (b *Backend) stopLocked() {
	if !b.up {
		return
	}
	b.up = false
	b.epoch++
	b.notifyLocked()
}

// Start restarts the service. Readers and cards stay where they were (a restarted pcscd
// finds the same hardware); event counters start again from zero.
func (b *Backend) Start() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.startLocked()
}

func (b *Backend) startLocked() {
	if b.up {
		return
	}
	b.up = true
	b.epoch++
	for _, r := range b.readers {
		r.events = 0
		r.conns = 0
		if r.card != nil {
			r.card.Reset()
			r.insertion = nextInsertion()
			r.events = 1
		}
	}
	b.notifyLocked()
}

// Restart stops and starts the service in one step: no call sees it down. With
// Healing, contexts live on and only the card handles tell.
func (b *Backend) Restart() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.stopLocked()
	b.startLocked()
}

// Stats reports contexts and card handles open now, and counts of successful
// Establish, Wait and Control calls.
type Stats struct{ Contexts, Handles, Established, Waits, Controls int }

// Stats returns the counters.
func (b *Backend) Stats() Stats {
	b.mu.Lock()
	defer b.mu.Unlock()
	return Stats{b.contexts, b.handles, b.established, b.waits, b.controls}
}

// Establish implements slotmgr.Backend.
func (b *Backend) Establish(ctx context.Context) (slotmgr.Context, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.up {
		return nil, ErrNoService
	}
	if b.EstablishErr != nil {
		return nil, b.EstablishErr
	}
	b.contexts++
	b.established++
	return &fctx{b: b, epoch: b.epoch}, nil
}

type fctx struct {
	b      *Backend
	epoch  int
	closed bool // under b.mu
}

func (c *fctx) checkLocked() error {
	if c.closed {
		return ErrInvalidHandle
	}
	if !c.b.up || (c.epoch != c.b.epoch && !c.b.Healing) {
		return ErrNoService
	}
	return nil
}

func (c *fctx) Readers(ctx context.Context) ([]string, error) {
	c.b.mu.Lock()
	defer c.b.mu.Unlock()
	if err := c.checkLocked(); err != nil {
		return nil, err
	}
	return append([]string{}, c.b.order...), nil
}

func (c *fctx) Status(ctx context.Context, names []string) ([]slotmgr.ReaderState, error) {
	c.b.mu.Lock()
	defer c.b.mu.Unlock()
	if err := c.checkLocked(); err != nil {
		return nil, err
	}
	out := make([]slotmgr.ReaderState, len(names))
	for i, n := range names {
		r := c.b.readers[n]
		if r == nil {
			return nil, fmt.Errorf("%w: %q", ErrNoReader, n)
		}
		out[i] = r.stateLocked()
	}
	return out, nil
}

func (r *reader) stateLocked() slotmgr.ReaderState {
	st := slotmgr.ReaderState{Name: r.name, EventCount: r.events, Empty: r.card == nil}
	if r.card != nil {
		st.Present = true
		st.Mute = r.mute
		st.Exclusive = r.exclusive
		st.InUse = r.exclusive || r.conns > 0
		if !r.mute {
			st.ATR = append([]byte(nil), r.card.ATR()...)
		}
	}
	st.Raw = uint32(r.events) << 16
	if st.Present {
		st.Raw |= 0x20
	} else {
		st.Raw |= 0x10
	}
	if st.Mute {
		st.Raw |= 0x200
	}
	if st.Exclusive {
		st.Raw |= 0x80
	}
	if st.InUse {
		st.Raw |= 0x100
	}
	return st
}

// Wait implements slotmgr.Context: it returns when the reader set differs from the
// names in known or a known reader's state differs, or ctx ends.
func (c *fctx) Wait(ctx context.Context, known []slotmgr.ReaderState) ([]slotmgr.ReaderState, error) {
	c.b.mu.Lock()
	c.b.waits++
	for {
		if err := c.checkLocked(); err != nil {
			c.b.mu.Unlock()
			return nil, err
		}
		if out, moved := c.movedLocked(known); moved {
			c.b.mu.Unlock()
			return out, nil
		}
		ch := c.b.changed
		c.b.idleN++
		c.b.idleAt = c.b.seq
		if c.b.idle != nil {
			close(c.b.idle)
			c.b.idle = nil
		}
		c.b.mu.Unlock()
		var err error
		select {
		case <-ch:
		case <-ctx.Done():
			err = ctx.Err()
		}
		c.b.mu.Lock()
		c.b.idleN--
		if err != nil {
			c.b.mu.Unlock()
			return nil, err
		}
	}
}

func (c *fctx) movedLocked(known []slotmgr.ReaderState) ([]slotmgr.ReaderState, bool) {
	moved := len(known) != len(c.b.order)
	out := make([]slotmgr.ReaderState, 0, len(known))
	for _, k := range known {
		r := c.b.readers[k.Name]
		if r == nil {
			moved = true
			continue
		}
		st := r.stateLocked()
		if st.Raw != k.Raw {
			moved = true
		}
		out = append(out, st)
	}
	return out, moved
}

func (c *fctx) Connect(ctx context.Context, name string) (slotmgr.Card, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	c.b.mu.Lock()
	defer c.b.mu.Unlock()
	if err := c.checkLocked(); err != nil {
		return nil, err
	}
	r := c.b.readers[name]
	if r == nil {
		return nil, ErrNoReader
	}
	if r.card == nil || r.mute {
		return nil, ErrNoCard
	}
	if r.exclusive {
		return nil, ErrSharing
	}
	if c.b.ConnectErr != nil {
		if err := c.b.ConnectErr(name); err != nil {
			return nil, err
		}
	}
	c.b.handles++
	r.conns++
	c.b.notifyLocked()
	return &fcard{ctx: c, reader: r, card: r.card, insertion: r.insertion, epoch: c.b.epoch,
		atr: append([]byte(nil), r.card.ATR()...), resets: r.resets}, nil
}

func (c *fctx) Close() error {
	c.b.mu.Lock()
	defer c.b.mu.Unlock()
	if c.closed {
		return ErrInvalidHandle
	}
	c.closed = true
	c.b.contexts--
	return nil
}

type fcard struct {
	ctx       *fctx
	reader    *reader
	card      vcard.Card
	insertion int
	epoch     int // service incarnation at connect: handles die with the service
	atr       []byte
	resets    int  // under b.mu
	closed    bool // under b.mu
	txMu      sync.Mutex
}

func (k *fcard) checkLocked() error {
	if k.closed {
		return ErrInvalidHandle
	}
	if err := k.ctx.checkLocked(); err != nil {
		return err
	}
	if k.epoch != k.ctx.b.epoch {
		return ErrInvalidHandle
	}
	if k.reader.insertion != k.insertion || k.ctx.b.readers[k.reader.name] != k.reader {
		return ErrRemoved
	}
	return nil
}

func (k *fcard) ATR() []byte { return append([]byte(nil), k.atr...) }

func (k *fcard) Transmit(ctx context.Context, cmd []byte) ([]byte, error) {
	b := k.ctx.b
	b.mu.Lock()
	if err := k.checkLocked(); err != nil {
		b.mu.Unlock()
		return nil, err
	}
	b.mu.Unlock()
	resp, err := k.card.Transmit(ctx, cmd)
	if errors.Is(err, vcard.ErrRemoved) {
		b.mu.Lock()
		if k.reader.insertion == k.insertion {
			b.removeLocked(k.reader.name)
		}
		b.mu.Unlock()
		return nil, ErrRemoved
	}
	return resp, err
}

func (k *fcard) Lock(ctx context.Context) (func(), bool, error) {
	b := k.ctx.b
	b.mu.Lock()
	if err := k.checkLocked(); err != nil {
		b.mu.Unlock()
		return nil, false, err
	}
	reset := k.reader.resets != k.resets
	k.resets = k.reader.resets
	b.mu.Unlock()
	k.txMu.Lock()
	var once sync.Once
	return func() { once.Do(k.txMu.Unlock) }, reset, nil
}

// Control implements slotmgr.Controller with the reader's feature list.
func (k *fcard) Control(ctx context.Context, code uint32, in []byte) ([]byte, error) {
	b := k.ctx.b
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := k.checkLocked(); err != nil {
		return nil, err
	}
	b.controls++
	if k.reader.features == nil || code != 0x42000000+3400 {
		return nil, errors.New("slotmgrtest: control not supported")
	}
	return append([]byte(nil), k.reader.features...), nil
}

func (k *fcard) Close() error {
	b := k.ctx.b
	b.mu.Lock()
	defer b.mu.Unlock()
	if k.closed {
		return ErrInvalidHandle
	}
	k.closed = true
	b.handles--
	if k.epoch == b.epoch && k.reader.insertion == k.insertion && k.reader.conns > 0 {
		k.reader.conns--
		b.notifyLocked()
	}
	return nil
}

// Readers lists the attached readers, sorted (a test convenience).
func (b *Backend) Readers() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := append([]string(nil), b.order...)
	sort.Strings(out)
	return out
}

// Card is a minimal vcard.Card: a fixed ATR, an APDU counter, and a fixed answer
// (9000) to everything unless Answer is set. Tests use it with their own Bind function.
type Card struct {
	mu     sync.Mutex
	atr    []byte
	n      int
	resets int
	// Answer, when set, answers each command.
	Answer func(cmd []byte) ([]byte, error)
}

// NewCard returns a Card with the given ATR.
func NewCard(atr []byte) *Card { return &Card{atr: append([]byte(nil), atr...)} }

// ATR implements vcard.Card.
func (c *Card) ATR() []byte { return append([]byte(nil), c.atr...) }

// Reset implements vcard.Card.
func (c *Card) Reset() {
	c.mu.Lock()
	c.resets++
	c.mu.Unlock()
}

// Transmit implements vcard.Card.
func (c *Card) Transmit(ctx context.Context, cmd []byte) ([]byte, error) {
	c.mu.Lock()
	c.n++
	f := c.Answer
	c.mu.Unlock()
	if f != nil {
		return f(cmd)
	}
	return []byte{0x90, 0x00}, nil
}

// Commands counts the commands the card received.
func (c *Card) Commands() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}

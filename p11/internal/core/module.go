package core

import (
	"context"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/p11-card/p11-card/cards"
	"github.com/p11-card/p11-card/slotmgr"
)

// SlotSource is the slot table core reads: *slotmgr.Manager satisfies it, tests use fakes.
type SlotSource interface {
	Start(ctx context.Context) error
	Close() error
	Slots() []slotmgr.SlotInfo
	Slot(id uint64) (slotmgr.SlotInfo, bool)
	WaitChange(ctx context.Context, since uint64) (uint64, error)
	Rescan(ctx context.Context) error
}

// Options configure a Module.
type Options struct {
	// NewSource makes the slot source at Initialize (nothing runs before that).
	NewSource func() SlotSource
	// NoPKCS1Decrypt switches off CKM_RSA_PKCS decryption (padding-oracle hardening);
	// also set by P11CARD_NO_PKCS1_DECRYPT=1.
	NoPKCS1Decrypt bool
	// PINCache keeps the user PIN in memory while the application is logged in, to log
	// in again when another application reset the card or logged it out (as OpenSC's
	// pin_cache does). Off by default; P11CARD_PIN_CACHE=1 turns it on. A re-login that
	// fails (the PIN was changed) drops the cache and the login: one try at most.
	PINCache bool
	// Description and Manufacturer fill CK_INFO.
	Description, Manufacturer string
	// Version is the library version for CK_INFO.
	Version cards.Version
}

// Module is one application's view of Cryptoki: one per process in the shared library,
// several in tests to model several processes.
type Module struct {
	opts Options

	mu          sync.RWMutex
	initialized bool
	src         SlotSource
	ctx         context.Context
	cancel      context.CancelFunc
	sessions    map[uint64]*session
	objects     map[uint64]*object
	tokens      map[uint64]*tokenState // by slot ID, current generation only
	seen        map[uint64]uint64      // slot ID → generation last reported by WaitForSlotEvent
	waitCounter uint64

	next atomic.Uint64 // handle counter shared by sessions and objects (never 0)
	// sizeQueried: the last C_GetSlotList was a size query (SlotList).
	sizeQueried atomic.Bool
}

// New returns an uninitialised module.
func New(opts Options) *Module {
	if os.Getenv("P11CARD_NO_PKCS1_DECRYPT") == "1" {
		opts.NoPKCS1Decrypt = true
	}
	if os.Getenv("P11CARD_PIN_CACHE") == "1" {
		opts.PINCache = true
	}
	if opts.Description == "" {
		opts.Description = "p11-card PKCS#11 module"
	}
	if opts.Manufacturer == "" {
		opts.Manufacturer = "p11-card"
	}
	return &Module{opts: opts}
}

func (m *Module) handle() uint64 { return m.next.Add(1) }

// Initialize starts the slot source. A second call gives CKR_CRYPTOKI_ALREADY_INITIALIZED.
func (m *Module) Initialize() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.initialized {
		return errRV(CKR_CRYPTOKI_ALREADY_INITIALIZED, "initialize twice")
	}
	var src SlotSource = emptySource{}
	if m.opts.NewSource != nil {
		if s := m.opts.NewSource(); s != nil {
			src = s
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := src.Start(ctx); err != nil {
		// pcscd down is not fatal: the source retries, and until then there are no slots.
		logf("slot source start: %v", err)
	}
	m.src, m.ctx, m.cancel = src, ctx, cancel
	m.sessions = map[uint64]*session{}
	m.objects = map[uint64]*object{}
	m.tokens = map[uint64]*tokenState{}
	m.seen = map[uint64]uint64{}
	for _, s := range src.Slots() {
		if s.Present {
			m.seen[s.ID] = s.Gen
		}
	}
	m.initialized = true
	return nil
}

// Finalize closes every session, stops the slot source and wakes C_WaitForSlotEvent.
func (m *Module) Finalize() error {
	m.mu.Lock()
	if !m.initialized {
		m.mu.Unlock()
		return errRV(CKR_CRYPTOKI_NOT_INITIALIZED, "finalize before initialize")
	}
	m.initialized = false
	src, cancel := m.src, m.cancel
	for _, s := range m.sessions {
		s.closed.Store(true)
	}
	for _, ts := range m.tokens {
		ts.dead = true
		clear(ts.pin)
		ts.pin = nil
	}
	// Fresh empty tables: a call racing with Finalize finds nothing and writes nowhere
	// that matters.
	m.sessions, m.objects, m.tokens = map[uint64]*session{}, map[uint64]*object{}, map[uint64]*tokenState{}
	m.mu.Unlock()
	cancel()
	return src.Close()
}

// Initialized reports whether Initialize ran and Finalize did not.
func (m *Module) Initialized() bool {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.initialized
}

// Info is CK_INFO's content.
type Info struct {
	Manufacturer, Description string
	Version                   cards.Version
}

// Info describes the library.
func (m *Module) Info() (Info, error) {
	if !m.Initialized() {
		return Info{}, errRV(CKR_CRYPTOKI_NOT_INITIALIZED, "not initialized")
	}
	return Info{Manufacturer: m.opts.Manufacturer, Description: m.opts.Description, Version: m.opts.Version}, nil
}

// state returns the source and context under the read lock, or not-initialized.
func (m *Module) state() (SlotSource, context.Context, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if !m.initialized {
		return nil, nil, errRV(CKR_CRYPTOKI_NOT_INITIALIZED, "not initialized")
	}
	return m.src, m.ctx, nil
}

// opCtx is the context of one card operation: it ends at Finalize.
func (m *Module) opCtx() (context.Context, context.CancelFunc, error) {
	_, ctx, err := m.state()
	if err != nil {
		return nil, nil, err
	}
	c, cancel := context.WithTimeout(ctx, 5*time.Minute)
	return c, cancel, nil
}

// emptySource has no slots (no NewSource configured).
type emptySource struct{}

func (emptySource) Start(context.Context) error          { return nil }
func (emptySource) Close() error                         { return nil }
func (emptySource) Slots() []slotmgr.SlotInfo            { return nil }
func (emptySource) Slot(uint64) (slotmgr.SlotInfo, bool) { return slotmgr.SlotInfo{}, false }
func (emptySource) Rescan(context.Context) error         { return nil }
func (emptySource) WaitChange(ctx context.Context, _ uint64) (uint64, error) {
	<-ctx.Done()
	return 0, ctx.Err()
}

package slotmgr

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"sync"
	"sync/atomic"

	"github.com/p11-card/p11-card/cards"
)

// errDriverPanic is a slot's Err when a driver panicked while binding.
var errDriverPanic = errors.New("slotmgr: driver panicked while binding")

// permanent reports bind errors not worth another try for the same insertion: the card
// is not one we know, breaks its specification or crashed its driver. (A bind past
// BindTimeout is not: another application may have held a long transaction, waiting
// for a touch.)
func permanent(err error) bool {
	return errors.Is(err, cards.ErrNotRecognized) || errors.Is(err, cards.ErrBadCard) ||
		errors.Is(err, errDriverPanic)
}

// startBindLocked launches a bind attempt for instance i of slot s. m.mu is held.
func (m *Manager) startBindLocked(s *slot, i *instance) {
	i.binding = true
	i.attempts++
	i.err = nil
	i.done = make(chan struct{})
	wantFeatures := s.features == nil && !m.opt.NoPINPad
	m.wg.Add(1)
	if done := i.done; m.inline {
		m.collected = append(m.collected, func() { m.bind(s, i, done, wantFeatures) })
		return
	}
	go m.bind(s, i, i.done, wantFeatures)
}

// bind connects to the card (through a context of its own unless the backend is a
// Connector) and binds a driver: one driver Open, plus one reader control call for the
// feature list (no APDU).
func (m *Manager) bind(s *slot, i *instance, done chan struct{}, wantFeatures bool) {
	defer m.wg.Done()
	defer close(done)
	var (
		pc     Context
		c      *conn
		tok    cards.Token
		feat   *features
		driver string
		atr    []byte
		reader = s.reader
	)
	err := func() (err error) {
		defer func() {
			if r := recover(); r != nil {
				m.opt.Logf("slotmgr: bind on %q panicked: %v\n%s", reader, r, debug.Stack())
				err = errDriverPanic
			}
		}()
		ctx, cancel := context.WithTimeout(i.ctx, m.opt.BindTimeout)
		defer cancel()
		var card Card
		if cn, ok := m.b.(Connector); ok {
			card, err = cn.Connect(ctx, reader)
		} else {
			if pc, err = m.b.Establish(ctx); err != nil {
				return fmt.Errorf("slotmgr: context: %w", err)
			}
			card, err = pc.Connect(ctx, reader)
		}
		if err != nil {
			return fmt.Errorf("slotmgr: connect %q: %w", reader, err)
		}
		c = &conn{card: card}
		tok, err = m.opt.Bind(ctx, c, card.ATR())
		if err != nil {
			return err
		}
		if tok == nil {
			return errors.New("slotmgr: driver returned no token")
		}
		if wantFeatures {
			feat = readFeatures(ctx, card)
		}
		driver, atr = tok.Info().Driver, card.ATR()
		return nil
	}()

	m.mu.Lock()
	i.binding = false
	if i.gone || err != nil || m.closed {
		if !i.gone && !m.closed {
			i.err = err
			m.opt.Logf("slotmgr: slot %d: no token: %v", s.id, err)
			m.bumpLocked(map[*slot]bool{s: true})
		}
		m.mu.Unlock()
		func() {
			defer m.recoverLog("close")
			closeAll(c, pc)
		}()
		return
	}
	i.pc, i.conn, i.token = pc, c, tok
	i.boundAt = m.scans
	// Our connection changed the reader's state (in use); have the watcher read it, so
	// the state it waits on shows the connection and its loss wakes it.
	m.poke = true
	if m.stopW != nil {
		m.stopW()
	}
	i.atr = append(i.atr[:0], atr...)
	if feat != nil && s.inst == i {
		s.features = feat
	}
	m.opt.Logf("slotmgr: slot %d: token bound (gen %d, %s)", s.id, i.gen, driver)
	m.bumpLocked(map[*slot]bool{s: true})
	m.mu.Unlock()
}

// conn is the cards.Conn a slot hands out: the card's connection until the generation
// ends, ErrTokenRemoved after.
type conn struct {
	mu     sync.RWMutex // held shared by calls in flight, exclusively by close
	closed atomic.Bool
	card   Card
	once   sync.Once
}

func (c *conn) Transmit(ctx context.Context, cmd []byte) ([]byte, error) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.closed.Load() {
		return nil, ErrTokenRemoved
	}
	return c.card.Transmit(ctx, cmd)
}

func (c *conn) Lock(ctx context.Context) (func(), bool, error) {
	c.mu.RLock()
	if c.closed.Load() {
		c.mu.RUnlock()
		return nil, false, ErrTokenRemoved
	}
	unlock, reset, err := c.card.Lock(ctx)
	c.mu.RUnlock()
	if err != nil {
		return nil, false, err
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			c.mu.RLock()
			defer c.mu.RUnlock()
			if !c.closed.Load() {
				unlock()
			}
		})
	}, reset, nil
}

// close fails new calls, waits for those in flight and releases the card.
func (c *conn) close() {
	c.once.Do(func() {
		c.closed.Store(true)
		c.mu.Lock()
		c.mu.Unlock() //nolint:staticcheck // waits for calls in flight
		_ = c.card.Close()
	})
}

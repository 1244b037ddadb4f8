package cards

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
)

var (
	regMu   sync.RWMutex
	drivers []Driver
)

// Register adds a driver; drivers call it from init. Registration order breaks ties.
func Register(d Driver) {
	regMu.Lock()
	defer regMu.Unlock()
	for _, o := range drivers {
		if o.Name() == d.Name() {
			panic("cards: driver registered twice: " + d.Name())
		}
	}
	drivers = append(drivers, d)
}

// Drivers lists the registered drivers in registration order.
func Drivers() []Driver {
	regMu.RLock()
	defer regMu.RUnlock()
	return append([]Driver(nil), drivers...)
}

// Bind finds the driver for the card: drivers whose MatchATR says yes are tried first,
// then those that say maybe; the first Open that succeeds wins. A card no driver takes
// gives an error wrapping ErrNotRecognized. An error other than ErrNotRecognized from a
// driver (the card left, the reader failed) stops the search. Every driver tried runs in
// one transaction: a card the second driver takes (an OpenPGP card tried as PIV first)
// costs no transaction more.
func Bind(ctx context.Context, c Conn, atr []byte) (Token, error) {
	type cand struct {
		d Driver
		m Match
	}
	var cs []cand
	for _, d := range Drivers() {
		if m := d.MatchATR(atr); m != MatchNo {
			cs = append(cs, cand{d, m})
		}
	}
	if len(cs) == 0 {
		return nil, fmt.Errorf("%w (ATR %X)", ErrNotRecognized, atr)
	}
	sort.SliceStable(cs, func(i, j int) bool { return cs[i].m > cs[j].m })
	unlock, reset, err := c.Lock(ctx)
	if err != nil {
		return nil, fmt.Errorf("cards: bind: %w", err)
	}
	p := &bindConn{Conn: c, reset: reset}
	p.held.Store(true)
	defer func() {
		p.held.Store(false)
		unlock()
	}()
	for _, c2 := range cs {
		t, err := c2.d.Open(ctx, p, atr)
		if err == nil {
			return t, nil
		}
		if !errors.Is(err, ErrNotRecognized) {
			return nil, fmt.Errorf("cards: %s: %w", c2.d.Name(), err)
		}
	}
	return nil, fmt.Errorf("%w (ATR %X)", ErrNotRecognized, atr)
}

// bindConn is the Conn the drivers' Open get from Bind, and their tokens keep: while
// Bind runs, Lock is the transaction Bind holds (its unlock does nothing, and reset is
// what Bind's Lock said); after, every Lock is the card's own.
type bindConn struct {
	Conn
	held  atomic.Bool
	reset bool
}

func (b *bindConn) Lock(ctx context.Context) (func(), bool, error) {
	if b.held.Load() {
		return func() {}, b.reset, nil
	}
	return b.Conn.Lock(ctx)
}

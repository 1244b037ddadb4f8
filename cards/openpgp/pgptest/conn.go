package pgptest

import (
	"context"
	"sync"

	"github.com/p11-card/p11-card/cards"
	"github.com/p11-card/p11-card/cards/vcard"
)

// Conn serves a virtual card to a driver in-process: a cards.Conn over any vcard.Card (the
// card itself, or one wrapped by vcard.WithFaults / vcard.WithLog).
type Conn struct {
	card vcard.Card
	txn  chan struct{} // one transaction at a time

	mu      sync.Mutex
	locked  bool
	reset   bool
	removed bool
}

var _ cards.Conn = (*Conn)(nil)

// NewConn connects to card.
func NewConn(card vcard.Card) *Conn { return &Conn{card: card, txn: make(chan struct{}, 1)} }

// Transmit implements apdu.Transmitter. After the card was removed (vcard.ErrRemoved) every
// call fails with vcard.ErrRemoved.
func (c *Conn) Transmit(ctx context.Context, cmd []byte) ([]byte, error) {
	c.mu.Lock()
	removed := c.removed
	c.mu.Unlock()
	if removed {
		return nil, vcard.ErrRemoved
	}
	r, err := c.card.Transmit(ctx, cmd)
	if err == vcard.ErrRemoved {
		c.mu.Lock()
		c.removed = true
		c.mu.Unlock()
	}
	return r, err
}

// Lock implements cards.Conn: transactions exclude each other (a second Lock waits for
// the first unlock or its ctx); reset is true once after ResetCard.
func (c *Conn) Lock(ctx context.Context) (func(), bool, error) {
	select {
	case c.txn <- struct{}{}:
	case <-ctx.Done():
		return nil, false, ctx.Err()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.removed {
		<-c.txn
		return nil, false, vcard.ErrRemoved
	}
	reset := c.reset
	c.reset = false
	c.locked = true
	var once sync.Once
	return func() {
		once.Do(func() {
			c.mu.Lock()
			c.locked = false
			c.mu.Unlock()
			<-c.txn
		})
	}, reset, nil
}

// ResetCard power-cycles the card (as another program's SCardReconnect with reset would);
// the next Lock reports it.
func (c *Conn) ResetCard() {
	c.card.Reset()
	c.mu.Lock()
	c.reset = true
	c.mu.Unlock()
}

// Locked reports whether a transaction is open (tests check that drivers release it).
func (c *Conn) Locked() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.locked
}

package piv

import (
	"context"
	"encoding/hex"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/p11-card/p11-card/apdu"
	"github.com/p11-card/p11-card/cards"
	"github.com/p11-card/p11-card/cards/piv/pivtest"
	"github.com/p11-card/p11-card/cards/vcard"
)

// testConn is a cards.Conn over a virtual card with an APDU counter and a way to make
// the next Lock report a reset (as pcsc does after another process reset the card).
type testConn struct {
	mu        sync.Mutex
	card      vcard.Card
	n         int      // commands transmitted
	ins       []string // "A4", "CB 5FC105", … one per command
	resetNext bool
	locks     int
	locked    bool
}

func (c *testConn) Transmit(ctx context.Context, cmd []byte) ([]byte, error) {
	c.mu.Lock()
	if !c.locked {
		c.mu.Unlock()
		return nil, fmt.Errorf("testConn: transmit outside a transaction")
	}
	c.n++
	c.ins = append(c.ins, describe(cmd))
	c.mu.Unlock()
	return c.card.Transmit(ctx, cmd)
}

func (c *testConn) Lock(ctx context.Context) (func(), bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.locked {
		return nil, false, fmt.Errorf("testConn: nested Lock")
	}
	c.locks++
	c.locked = true
	r := c.resetNext
	if r {
		c.card.Reset()
		c.resetNext = false
	}
	return func() {
		c.mu.Lock()
		c.locked = false
		c.mu.Unlock()
	}, r, nil
}

// count runs f and returns the APDUs it sent and their short descriptions.
func (c *testConn) count(f func()) (int, []string) {
	c.mu.Lock()
	n0, i0 := c.n, len(c.ins)
	c.mu.Unlock()
	f()
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n - n0, append([]string(nil), c.ins[i0:]...)
}

// describe names a command by INS and, for GET DATA, the object.
func describe(cmd []byte) string {
	c, err := apdu.ParseCommand(cmd)
	if err != nil {
		return "??"
	}
	s := fmt.Sprintf("%02X", c.INS)
	switch c.INS {
	case insGetData:
		if len(c.Data) > 2 {
			s += " " + strings.ToUpper(hex.EncodeToString(c.Data[2:]))
		}
	case insGetMetadata, insGeneralAuth, insGenerate, insAttest, 0x20:
		s += fmt.Sprintf(" %02X%02X", c.P1, c.P2)
	}
	return s
}

type fixture struct {
	card *pivtest.Card
	conn *testConn
	tok  *Token
}

func newFixture(t *testing.T, opt pivtest.Options, setup func(c *pivtest.Card)) *fixture {
	t.Helper()
	card, err := pivtest.New(opt)
	if err != nil {
		t.Fatal(err)
	}
	if setup != nil {
		setup(card)
	}
	conn := &testConn{card: card}
	tok, err := Driver{}.Open(context.Background(), conn, card.ATR())
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return &fixture{card: card, conn: conn, tok: tok.(*Token)}
}

func provision(t *testing.T, c *pivtest.Card, slot, alg byte) {
	t.Helper()
	if _, err := c.GenerateInSlot(slot, alg); err != nil {
		t.Fatalf("GenerateInSlot %02X %02X: %v", slot, alg, err)
	}
}

const defaultMgmtHex = "010203040506070801020304050607080102030405060708"

var ctxb = context.Background()

func mustLogin(t *testing.T, tok cards.Token, role cards.Role, secret string) {
	t.Helper()
	if err := tok.Login(ctxb, role, []byte(secret)); err != nil {
		t.Fatalf("Login %v: %v", role, err)
	}
}

// TestObjectsFromCacheNoTransaction: a listing the caches answer whole takes no PC/SC
// transaction; one that must read takes exactly one, and a reset met there is handled.
func TestObjectsFromCacheNoTransaction(t *testing.T) {
	fx := newFixture(t, pivtest.Options{}, func(c *pivtest.Card) {
		if _, err := c.GenerateInSlot(0x9A, pivtest.AlgECCP256); err != nil {
			t.Fatal(err)
		}
	})
	ctx := context.Background()
	locks := func() int { fx.conn.mu.Lock(); defer fx.conn.mu.Unlock(); return fx.conn.locks }
	l0 := locks()
	first, err := fx.tok.Objects(ctx, cards.Filter{})
	if err != nil || len(first) == 0 {
		t.Fatalf("Objects = %d objects, %v", len(first), err)
	}
	if d := locks() - l0; d != 1 {
		t.Errorf("first listing took %d transactions, want 1", d)
	}
	l0 = locks()
	for i := 0; i < 3; i++ {
		n, _ := fx.conn.count(func() {
			again, err := fx.tok.Objects(ctx, cards.Filter{ID: []byte{0x01}})
			if err != nil || len(again) == 0 {
				t.Fatalf("Objects(01) = %d objects, %v", len(again), err)
			}
		})
		if n != 0 {
			t.Errorf("cached listing sent %d APDUs", n)
		}
	}
	if d := locks() - l0; d != 0 {
		t.Errorf("cached listings took %d transactions, want 0", d)
	}
	// After a change the next listing reads again, in one transaction, and a reset
	// reported by that Lock selects PIV first.
	fx.tok.forget(0x9A)
	fx.conn.mu.Lock()
	fx.conn.resetNext = true
	fx.conn.mu.Unlock()
	l0 = locks()
	_, ins := fx.conn.count(func() {
		if _, err := fx.tok.Objects(ctx, cards.Filter{ID: []byte{0x01}}); err != nil {
			t.Fatal(err)
		}
	})
	if d := locks() - l0; d != 1 || len(ins) == 0 || ins[0] != "A4" {
		t.Errorf("re-read: %d transactions, commands %v (want 1, SELECT first)", d, ins)
	}
}

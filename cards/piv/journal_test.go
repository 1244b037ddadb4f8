package piv

import (
	"testing"

	"github.com/p11-card/p11-card/cards"
	"github.com/p11-card/p11-card/cards/piv/pivtest"
)

func hasCert(t *testing.T, tok *Token, slot string) bool {
	t.Helper()
	objs, err := tok.Objects(ctxb, cards.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range objs {
		if o.Handle == slot+"/cert" {
			return true
		}
	}
	return false
}

// TestJournalAcrossApplications: two tokens over one card stand for two processes. What
// one deletes is gone from the other's next listing; a listing with nothing changed
// stays free of APDUs, for the writer too.
func TestJournalAcrossApplications(t *testing.T) {
	a := newFixture(t, pivtest.Options{}, func(c *pivtest.Card) { provision(t, c, 0x9A, pivtest.AlgECCP256) })
	bConn := &testConn{card: a.card}
	bt, err := Driver{}.Open(ctxb, bConn, a.card.ATR())
	if err != nil {
		t.Fatal(err)
	}
	b := bt.(*Token)
	if a.tok.journal == nil || b.journal == nil {
		t.Fatal("journal off")
	}
	if !hasCert(t, a.tok, "9a") || !hasCert(t, b, "9a") {
		t.Fatal("no 9A certificate")
	}
	if n, ins := bConn.count(func() { hasCert(t, b, "9a") }); n != 0 {
		t.Errorf("listing from memory: %d APDUs %v", n, ins)
	}
	mustLogin(t, a.tok, cards.RoleSO, defaultMgmtHex)
	if err := a.tok.DeleteObject(ctxb, "9a/cert"); err != nil {
		t.Fatal(err)
	}
	if n, ins := a.conn.count(func() {
		if hasCert(t, a.tok, "9a") {
			t.Error("the writer still lists the certificate")
		}
	}); n != 0 {
		t.Errorf("the writer read the card again: %d APDUs %v", n, ins)
	}
	if n, _ := bConn.count(func() {
		if hasCert(t, b, "9a") {
			t.Error("the other application still lists the deleted certificate")
		}
	}); n == 0 {
		t.Error("the other application did not read the card again")
	}
	if n, ins := bConn.count(func() { hasCert(t, b, "9a") }); n != 0 {
		t.Errorf("after the re-read: %d APDUs %v", n, ins)
	}
}

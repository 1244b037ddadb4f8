//go:build hwtest

package pcsc_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/p11-card/p11-card/hwtest/rig"
	"github.com/p11-card/p11-card/pcsc"
)

// nineCard answers every command with 9000.
type nineCard struct{}

func (nineCard) ATR() []byte { return []byte{0x3B, 0x80, 0x80, 0x01, 0x01} }
func (nineCard) Reset()      {}
func (nineCard) Transmit(context.Context, []byte) ([]byte, error) {
	return []byte{0x90, 0x00}, nil
}

// TestRigCloseWaitsForAbandonedBegin: a Lock given up while another connection holds the
// transaction leaves SCardBeginTransaction running on its handle. Close then frees
// nothing (libpcsclite would free the state that call uses); when the wait ends, the
// transaction obtained too late is ended and the handles are freed; the card is free for
// the other connection again.
func TestRigCloseWaitsForAbandonedBegin(t *testing.T) {
	r := rig.ForTest(t, rig.Options{Readers: 2})
	ictx, icancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer icancel()
	if err := r.Insert(ictx, 0, nineCard{}); err != nil {
		t.Fatal(err)
	}
	bg := context.Background()
	connect := func() *pcsc.Card {
		t.Helper()
		c, err := pcsc.Establish(bg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		k, err := c.Connect(bg, r.ReaderName(0))
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	a, b := connect(), connect()
	defer a.Close()
	unlockA, _, err := a.Lock(bg)
	if err != nil {
		t.Fatal(err)
	}
	wctx, wcancel := context.WithTimeout(bg, 200*time.Millisecond)
	_, _, err = b.Lock(wctx)
	wcancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Lock while another connection holds the card: %v, want the deadline", err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if b.Freed() {
		t.Fatal("Close freed the handles under SCardBeginTransaction")
	}
	unlockA()
	deadline := time.Now().Add(5 * time.Second)
	for !b.Freed() && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if !b.Freed() {
		t.Fatal("the handles were not freed after the abandoned wait ended")
	}
	lctx, lcancel := context.WithTimeout(bg, 2*time.Second)
	defer lcancel()
	unlock, _, err := a.Lock(lctx)
	if err != nil {
		t.Fatalf("the card stays taken by the abandoned transaction: %v", err)
	}
	unlock()
}

//go:build hwtest

package pcsc_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/p11-card/p11-card/hwtest/rig"
	"github.com/p11-card/p11-card/internal/trace"
	"github.com/p11-card/p11-card/pcsc"
)

// nineCard answers every command with 9000.
type nineCard struct{}

func (nineCard) ATR() []byte { return []byte{0x3B, 0x80, 0x80, 0x01, 0x01} }
func (nineCard) Reset()      {}
func (nineCard) Transmit(context.Context, []byte) ([]byte, error) {
	return []byte{0x90, 0x00}, nil
}

// TestRig runs the tests that need pcscd on one rig: libpcsclite reads the socket's name
// once per process.
func TestRig(t *testing.T) {
	r := rig.ForTest(t, rig.Options{Readers: 2})
	t.Run("CloseWaitsForAbandonedBegin", func(t *testing.T) { closeWaitsForAbandonedBegin(t, r) })
	t.Run("HandleCallsBesideContextChurn", func(t *testing.T) { handleCallsBesideContextChurn(t, r) })
	t.Run("EarlyContexts", func(t *testing.T) { earlyContexts(t, r) })
	t.Run("CloseReleasesTheContext", func(t *testing.T) { closeReleasesTheContext(t, r) })
}

// closeReleasesTheContext: Close is one PC/SC call, the release of the card's context,
// which disconnects its handle. The card is left as it is; a card whose transaction the
// closed handle still held is reset, and another connection learns of it.
func closeReleasesTheContext(t *testing.T, r *rig.Rig) {
	insertNine(t, r, 0)
	bg := context.Background()
	connect := func() *pcsc.Card {
		t.Helper()
		k, err := pcsc.Connect(bg, r.ReaderName(0))
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	other := connect()
	defer other.Close()
	lockOther := func(what string, wantReset bool) {
		t.Helper()
		ctx, cancel := context.WithTimeout(bg, 2*time.Second)
		defer cancel()
		unlock, reset, err := other.Lock(ctx)
		if err != nil {
			t.Fatalf("%s: the other connection's Lock: %v", what, err)
		}
		unlock()
		if reset != wantReset {
			t.Errorf("%s: the other connection saw a reset: %v, want %v", what, reset, wantReset)
		}
	}

	k := connect()
	before := pcsc.Stats()
	if err := k.Close(); err != nil {
		t.Fatal(err)
	}
	if d := pcsc.Stats().Sub(before); d.Total() != 1 || d.Release != 1 || !k.Freed() {
		t.Errorf("Close: %+v (freed %v); want the context's release alone", d, k.Freed())
	}
	lockOther("closed between transactions", false)

	k = connect()
	if _, _, err := k.Lock(bg); err != nil {
		t.Fatal(err)
	}
	if err := k.Close(); err != nil {
		t.Fatal(err)
	}
	lockOther("closed in a transaction", true)
}

// earlyContexts: the contexts the module's first C_Initialize opens in C (OpenEarly) go to
// the next Establish and Connect, and work as any other; the calls after them open their
// own; ReleaseEarly releases those left over, and the next Establish opens a new one.
func earlyContexts(t *testing.T, r *rig.Rig) {
	insertNine(t, r, 0)
	bg := context.Background()
	var tr bytes.Buffer
	trace.SetOutput("pcsc", &tr)
	defer trace.SetOutput("", nil)
	taken := func() int { return strings.Count(tr.String(), "SCardEstablishContext (made in C_Initialize)") }

	pcsc.OpenEarly()
	c, err := pcsc.Establish(bg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Readers(bg); err != nil {
		t.Fatalf("Readers through an early context: %v", err)
	}
	k, err := pcsc.Connect(bg, r.ReaderName(0))
	if err != nil {
		t.Fatalf("Connect through an early context: %v", err)
	}
	defer k.Close()
	if rsp, err := k.Transmit(bg, []byte{0x00, 0xA4, 0x04, 0x00}); err != nil || !bytes.Equal(rsp, []byte{0x90, 0x00}) {
		t.Fatalf("Transmit through an early context: % X, %v", rsp, err)
	}
	if n := taken(); n != 2 {
		t.Fatalf("Establish and Connect took %d early contexts; want 2\n%s", n, tr.String())
	}
	c3, err := pcsc.Establish(bg)
	if err != nil {
		t.Fatal(err)
	}
	c3.Close()
	if n := taken(); n != 2 {
		t.Fatalf("a third Establish took an early context (%d taken); none is left\n%s", n, tr.String())
	}

	pcsc.OpenEarly()
	before := pcsc.Stats()
	pcsc.ReleaseEarly()
	pcsc.ReleaseEarly() // nothing left: no call
	if d := pcsc.Stats().Sub(before); d.Establish != 2 || d.Release != 2 {
		t.Errorf("ReleaseEarly: %d established, %d released; want the 2 left over, each once", d.Establish, d.Release)
	}
	c4, err := pcsc.Establish(bg)
	if err != nil {
		t.Fatal(err)
	}
	c4.Close()
	if n := taken(); n != 2 {
		t.Errorf("an Establish after ReleaseEarly took a released context\n%s", tr.String())
	}
}

// insertNine puts a nineCard in each of the readers, taken out when the test ends.
func insertNine(t *testing.T, r *rig.Rig, readers ...int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, i := range readers {
		if err := r.Insert(ctx, i, nineCard{}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			if err := r.Remove(ctx, i); err != nil {
				t.Error(err)
			}
		})
	}
}

// closeWaitsForAbandonedBegin: a Lock given up while another connection holds the
// transaction leaves SCardBeginTransaction running on its handle. Close then frees
// nothing (libpcsclite would free the state that call uses); when the wait ends, the
// transaction obtained too late is ended and the handles are freed; the card is free for
// the other connection again.
func closeWaitsForAbandonedBegin(t *testing.T, r *rig.Rig) {
	insertNine(t, r, 0)
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

// handleCallsBesideContextChurn: libpcsclite finds a card handle's state by walking
// every context of the process and each context's list of card handles, while
// SCardConnect, SCardDisconnect and SCardReleaseContext change those lists without the
// lock the walk takes. Card calls on one reader beside connections and contexts coming and
// going on another must neither crash the process nor fail.
func handleCallsBesideContextChurn(t *testing.T, r *rig.Rig) {
	insertNine(t, r, 0, 1)
	bg := context.Background()
	const callers, churners = 4, 3
	dur := 3 * time.Second
	stop := time.Now().Add(dur)
	errs := make(chan error, callers+churners)
	calls, churns := make([]int, callers), make([]int, churners)
	for g := range callers {
		go func() {
			errs <- func() error {
				c, err := pcsc.Establish(bg)
				if err != nil {
					return err
				}
				defer c.Close()
				k, err := c.Connect(bg, r.ReaderName(0))
				if err != nil {
					return err
				}
				defer k.Close()
				for time.Now().Before(stop) {
					if _, err := k.Transmit(bg, []byte{0x00, 0xCA, 0x00, 0x00, 0x00}); err != nil {
						return fmt.Errorf("transmit: %w", err)
					}
					calls[g]++
				}
				return nil
			}()
		}()
	}
	for g := range churners {
		go func() {
			errs <- func() error {
				for time.Now().Before(stop) {
					c, err := pcsc.Establish(bg)
					if err != nil {
						return err
					}
					if g > 0 {
						k, err := c.Connect(bg, r.ReaderName(1))
						if err != nil {
							c.Close()
							return fmt.Errorf("connect: %w", err)
						}
						if err := k.Close(); err != nil {
							return err
						}
					}
					if err := c.Close(); err != nil {
						return err
					}
					churns[g]++
				}
				return nil
			}()
		}()
	}
	for range callers + churners {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	t.Logf("%v: transmits %v, contexts (and connections) opened and closed %v", dur, calls, churns)
}

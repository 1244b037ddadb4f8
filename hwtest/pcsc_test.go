//go:build hwtest

package hwtest

import (
	"bytes"
	"context"
	"errors"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/p11-card/p11-card/apdu"
	"github.com/p11-card/p11-card/internal/trace"
	"github.com/p11-card/p11-card/pcsc"
)

// okCard answers 9000 to everything, echoing the command data, and counts resets.
type okCard struct {
	atr    []byte
	resets atomic.Int32
	cmds   atomic.Int32
}

func newOKCard(last byte) *okCard {
	return &okCard{atr: []byte{0x3B, 0x88, 0x80, 0x01, 'p', '1', '1', 'c', 'a', 'r', 'd', last, 0x00}}
}

func (c *okCard) ATR() []byte { return c.atr }
func (c *okCard) Reset()      { c.resets.Add(1) }
func (c *okCard) Transmit(_ context.Context, cmd []byte) ([]byte, error) {
	c.cmds.Add(1)
	r := []byte{}
	if k, err := apdu.ParseCommand(cmd); err == nil {
		r = append(r, k.Data...)
	}
	return append(r, 0x90, 0x00), nil
}

func pcscContext(t *testing.T) *pcsc.Context {
	t.Helper()
	testRig(t)
	c, err := pcsc.Establish(context.Background())
	if err != nil {
		t.Fatalf("Establish: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func stateOf(t *testing.T, states []pcsc.ReaderState, reader string) pcsc.ReaderState {
	t.Helper()
	for _, s := range states {
		if s.Name == reader {
			return s
		}
	}
	t.Fatalf("reader %q not in %v", reader, states)
	return pcsc.ReaderState{}
}

// waitAsync runs Wait in a goroutine; the result arrives on the channel.
type waitResult struct {
	states []pcsc.ReaderState
	err    error
}

func waitAsync(ctx context.Context, c *pcsc.Context, known []pcsc.ReaderState) <-chan waitResult {
	ch := make(chan waitResult, 1)
	go func() {
		s, err := c.Wait(ctx, known)
		ch <- waitResult{s, err}
	}()
	return ch
}

func receive(t *testing.T, ch <-chan waitResult, what string) waitResult {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(15 * time.Second):
		t.Fatalf("Wait did not return after %s", what)
	}
	return waitResult{}
}

func TestPCSCReadersAndStatus(t *testing.T) {
	r := testRig(t)
	c := pcscContext(t)
	ctx := context.Background()
	names, err := c.Readers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < r.Readers(); i++ {
		if !slices.Contains(names, r.ReaderName(i)) {
			t.Errorf("reader %q missing from %q", r.ReaderName(i), names)
		}
	}
	st, err := c.Status(ctx, nil)
	if err != nil || len(st) != len(names) {
		t.Fatalf("Status = %v, %v", st, err)
	}
	for _, s := range st {
		if !s.Empty || s.Present {
			t.Errorf("%v: want empty", s)
		}
	}
	card := newOKCard(1)
	insert(t, 2, card)
	st, err = c.Status(ctx, []string{r.ReaderName(2), "No Such Reader 00 00"})
	if err != nil {
		t.Fatal(err)
	}
	if s := st[0]; !s.Present || !bytes.Equal(s.ATR, card.atr) {
		t.Errorf("after insert: %v", s)
	}
	if !st[1].Unknown {
		t.Errorf("missing reader: %v", st[1])
	}
}

func TestPCSCWaitInsertRemove(t *testing.T) {
	r := testRig(t)
	c := pcscContext(t)
	ctx := context.Background()
	reader := r.ReaderName(2)
	known, err := c.Status(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	ch := waitAsync(ctx, c, known)
	select {
	case res := <-ch:
		t.Fatalf("Wait returned without a change: %v %v", res.states, res.err)
	case <-time.After(300 * time.Millisecond):
	}
	card := newOKCard(2)
	insert(t, 2, card)
	res := receive(t, ch, "insert")
	if res.err != nil {
		t.Fatal(res.err)
	}
	s := stateOf(t, res.states, reader)
	if !s.Present || !bytes.Equal(s.ATR, card.atr) {
		t.Fatalf("after insert: %v", s)
	}
	before := stateOf(t, known, reader)
	if s.EventCount == before.EventCount {
		t.Errorf("event counter unchanged across an insertion: %d", s.EventCount)
	}
	ch = waitAsync(ctx, c, res.states)
	remove(t, 2)
	res = receive(t, ch, "remove")
	if res.err != nil {
		t.Fatal(res.err)
	}
	if s := stateOf(t, res.states, reader); s.Present || !s.Empty || len(s.ATR) != 0 {
		t.Fatalf("after remove: %v", s)
	}
}

func TestPCSCWaitCancelAndClose(t *testing.T) {
	c := pcscContext(t)
	known, err := c.Status(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ch := waitAsync(ctx, c, known)
	time.Sleep(200 * time.Millisecond) // let it block in SCardGetStatusChange
	start := time.Now()
	cancel()
	if res := receive(t, ch, "cancel"); !errors.Is(res.err, context.Canceled) {
		t.Fatalf("Wait after cancel = %v", res.err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("cancel took %v", d)
	}
	// The context still works after a cancelled wait.
	if _, err := c.Readers(context.Background()); err != nil {
		t.Fatalf("Readers after cancel: %v", err)
	}
	ch = waitAsync(context.Background(), c, known)
	time.Sleep(200 * time.Millisecond)
	if err := c.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if res := receive(t, ch, "Close"); !errors.Is(res.err, pcsc.ErrClosed) {
		t.Fatalf("Wait after Close = %v", res.err)
	}
	if _, err := c.Readers(context.Background()); !errors.Is(err, pcsc.ErrClosed) {
		t.Fatalf("Readers after Close = %v", err)
	}
}

// A card pulled and another put in between two waits, with the same ATR, is still seen:
// the event counter moved.
func TestPCSCSwapBetweenWaits(t *testing.T) {
	r := testRig(t)
	c := pcscContext(t)
	ctx := context.Background()
	reader := r.ReaderName(3)
	insert(t, 3, newOKCard(3))
	known, err := c.Status(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	before := stateOf(t, known, reader)
	if !before.Present {
		t.Fatalf("not present: %v", before)
	}
	remove(t, 3)
	insert(t, 3, newOKCard(3)) // same ATR
	res := receive(t, waitAsync(ctx, c, known), "swap")
	if res.err != nil {
		t.Fatal(res.err)
	}
	after := stateOf(t, res.states, reader)
	if !after.Present || !bytes.Equal(after.ATR, before.ATR) {
		t.Fatalf("after swap: %v", after)
	}
	if after.EventCount == before.EventCount || !pcsc.Changed(before, after) {
		t.Fatalf("swap not seen: counter %d → %d", before.EventCount, after.EventCount)
	}
}

func TestPCSCConnectTransmitLock(t *testing.T) {
	r := testRig(t)
	c := pcscContext(t)
	ctx := context.Background()
	card := newOKCard(4)
	insert(t, 2, card)
	start := pcsc.Stats()
	k, err := c.Connect(ctx, r.ReaderName(2))
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	if !bytes.Equal(k.ATR(), card.atr) {
		t.Fatalf("ATR % X, want % X", k.ATR(), card.atr)
	}
	unlock, reset, err := k.Lock(ctx)
	if err != nil || reset {
		t.Fatalf("Lock = %v, %v", reset, err)
	}
	resp, err := k.Transmit(ctx, []byte{0x00, 0xA4, 0x04, 0x00, 0x02, 0xA0, 0x01, 0x00})
	if err != nil || !bytes.Equal(resp, []byte{0xA0, 0x01, 0x90, 0x00}) {
		t.Fatalf("Transmit = % X, %v", resp, err)
	}
	// Through apdu.Exchange, with an extended command the card takes whole.
	big := bytes.Repeat([]byte{0x5A}, 1000)
	data, err := apdu.Do(ctx, k, apdu.Command{INS: 0xDB, P1: 0x3F, P2: 0xFF, Data: big, Ne: 65536}, apdu.Options{Extended: true})
	if err != nil || !bytes.Equal(data, big) {
		t.Fatalf("extended exchange: %d bytes, %v", len(data), err)
	}
	unlock()
	unlock()
	d := pcsc.Stats().Sub(start)
	if d.Transmit != 2 || d.BeginTransaction != 1 || d.EndTransaction != 1 || d.Connect != 1 {
		t.Errorf("call counts %+v", d)
	}
	if _, err := c.Connect(ctx, r.ReaderName(3)); !errors.Is(err, pcsc.ErrNoCard) {
		t.Errorf("Connect to an empty reader = %v, want ErrNoCard", err)
	}
	if _, err := c.Connect(ctx, "No Such Reader 00 00"); !errors.Is(err, pcsc.ErrNoReader) {
		t.Errorf("Connect to a missing reader = %v, want ErrNoReader", err)
	}
	var pe *pcsc.Error
	if _, err := c.Connect(ctx, r.ReaderName(3)); !errors.As(err, &pe) || pe.Code == 0 {
		t.Errorf("raw code not reachable: %v", err)
	}
}

func TestPCSCRemoval(t *testing.T) {
	r := testRig(t)
	c := pcscContext(t)
	ctx := context.Background()
	insert(t, 2, newOKCard(5))
	k, err := c.Connect(ctx, r.ReaderName(2))
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	remove(t, 2)
	if _, err := k.Transmit(ctx, []byte{0x00, 0xCA, 0x00, 0x6E, 0x00}); !errors.Is(err, pcsc.ErrCardRemoved) {
		t.Errorf("Transmit after removal = %v, want ErrCardRemoved", err)
	}
	if _, _, err := k.Lock(ctx); !errors.Is(err, pcsc.ErrCardRemoved) {
		t.Errorf("Lock after removal = %v, want ErrCardRemoved", err)
	}
	if err := k.Close(); err != nil {
		t.Errorf("Close after removal: %v", err)
	}
}

func TestPCSCResetByAnotherConnection(t *testing.T) {
	r := testRig(t)
	ctx := context.Background()
	card := newOKCard(6)
	insert(t, 2, card)
	a, err := pcscContext(t).Connect(ctx, r.ReaderName(2))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := pcscContext(t).Connect(ctx, r.ReaderName(2))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	unlock, reset, err := a.Lock(ctx)
	if err != nil || reset {
		t.Fatalf("first Lock = %v, %v", reset, err)
	}
	unlock()
	resets := card.resets.Load()
	if err := b.Reconnect(ctx, true); err != nil {
		t.Fatalf("Reconnect with reset: %v", err)
	}
	if card.resets.Load() == resets {
		t.Fatal("the virtual card saw no reset")
	}
	if _, err := a.Transmit(ctx, []byte{0x00, 0xCA, 0x00, 0x6E, 0x00}); !errors.Is(err, pcsc.ErrCardReset) {
		t.Errorf("Transmit after another's reset = %v, want ErrCardReset", err)
	}
	unlock, reset, err = a.Lock(ctx)
	if err != nil || !reset {
		t.Fatalf("Lock after reset = %v, %v; want reset", reset, err)
	}
	if _, err := a.Transmit(ctx, []byte{0x00, 0xCA, 0x00, 0x6E, 0x00}); err != nil {
		t.Errorf("Transmit after reconnect: %v", err)
	}
	unlock()
	if unlock, reset, err = a.Lock(ctx); err != nil || reset {
		t.Fatalf("next Lock = %v, %v; want no reset", reset, err)
	}
	unlock()
	// The connection that reset the card hears of it at its next Lock too, once.
	if unlock, reset, err = b.Lock(ctx); err != nil || !reset {
		t.Fatalf("Lock of the resetting connection = %v, %v; want reset", reset, err)
	}
	unlock()
	if unlock, reset, err = b.Lock(ctx); err != nil || reset {
		t.Fatalf("second Lock of the resetting connection = %v, %v; want no reset", reset, err)
	}
	unlock()
}

// A transaction held elsewhere makes Lock wait; ctx ending ends the wait.
func TestPCSCLockWaitsForOtherTransaction(t *testing.T) {
	r := testRig(t)
	ctx := context.Background()
	insert(t, 2, newOKCard(7))
	a, err := pcscContext(t).Connect(ctx, r.ReaderName(2))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := pcscContext(t).Connect(ctx, r.ReaderName(2))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	unlockA, _, err := a.Lock(ctx)
	if err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	if _, _, err := b.Lock(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Lock while another holds the card = %v, want deadline", err)
	}
	unlockA()
	got := make(chan error, 1)
	go func() {
		unlock, _, err := b.Lock(ctx)
		if err == nil {
			unlock()
		}
		got <- err
	}()
	select {
	case err := <-got:
		if err != nil {
			t.Fatalf("Lock after release: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Lock after release did not return")
	}
}

// A Context and a Card survive a pcscd restart: listing and status re-establish the
// context, Wait reports the change, and Lock connects again reporting a reset.
func TestPCSCSurvivesPCSCDRestart(t *testing.T) {
	r := testRig(t)
	c := pcscContext(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	card := newOKCard(8)
	insert(t, 2, card)
	k, err := c.Connect(ctx, r.ReaderName(2))
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	known, err := c.Status(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.RestartPCSCD(ctx); err != nil {
		t.Fatalf("RestartPCSCD: %v", err)
	}
	names, err := c.Readers(ctx)
	if err != nil || !slices.Contains(names, r.ReaderName(2)) {
		t.Fatalf("Readers after restart = %q, %v", names, err)
	}
	res := receive(t, waitAsync(ctx, c, known), "restart")
	if res.err != nil {
		t.Fatalf("Wait after restart: %v", res.err)
	}
	if s := stateOf(t, res.states, r.ReaderName(2)); !s.Present {
		t.Fatalf("after restart: %v", s)
	}
	unlock, reset, err := k.Lock(ctx)
	if err != nil || !reset {
		t.Fatalf("Lock after restart = %v, %v; want reset", reset, err)
	}
	if _, err := k.Transmit(ctx, []byte{0x00, 0xCA, 0x00, 0x6E, 0x00}); err != nil {
		t.Fatalf("Transmit after restart: %v", err)
	}
	unlock()
}

// WaitFor watches some readers only: a card in another reader does not wake it.
func TestPCSCWaitFor(t *testing.T) {
	r := testRig(t)
	c := pcscContext(t)
	ctx := context.Background()
	known, err := c.Status(ctx, []string{r.ReaderName(2)})
	if err != nil {
		t.Fatal(err)
	}
	ch := make(chan waitResult, 1)
	go func() {
		s, err := c.WaitFor(ctx, known)
		ch <- waitResult{s, err}
	}()
	insert(t, 3, newOKCard(9))
	select {
	case res := <-ch:
		t.Fatalf("WaitFor woke for another reader: %v %v", res.states, res.err)
	case <-time.After(500 * time.Millisecond):
	}
	insert(t, 2, newOKCard(10))
	res := receive(t, ch, "insert")
	if res.err != nil || len(res.states) != 1 || !res.states[0].Present || res.states[0].Name != r.ReaderName(2) {
		t.Fatalf("WaitFor = %v, %v", res.states, res.err)
	}
}

// Wait judges readers added or removed against the list its previous call returned, or
// before the first call, against known: nil or a list lacking a reader returns at once, a
// known reader that left too; a caller watching part of the readers after a full Wait
// blocks (without spinning) until one of them changes.
func TestPCSCWaitReaderSetDiffers(t *testing.T) {
	r := testRig(t)
	c := pcscContext(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	all, err := c.Wait(ctx, nil)
	if err != nil || len(all) < r.Readers() {
		t.Fatalf("Wait(nil) = %v, %v", all, err)
	}
	gone := append(slices.Clone(all), pcsc.ReaderState{Name: "Gone Reader 00 00", Empty: true})
	got, err := c.Wait(ctx, gone)
	if err != nil || len(got) != len(all) {
		t.Fatalf("Wait(with a reader that left) = %v, %v", got, err)
	}
	// A fresh Context: a first Wait whose known lacks a reader returns at once.
	fresh := pcscContext(t)
	got, err = fresh.Wait(ctx, all[:len(all)-1])
	if err != nil || len(got) != len(all) {
		t.Fatalf("first Wait(missing a reader) = %v, %v", got, err)
	}
	// After that full answer, watching one reader blocks until it changes.
	var one []pcsc.ReaderState
	for _, s := range got {
		if s.Name == r.ReaderName(2) {
			one = append(one, s)
		}
	}
	before := pcsc.Stats()
	ch := waitAsync(ctx, fresh, one)
	select {
	case res := <-ch:
		t.Fatalf("Wait on one reader returned without a change: %v %v", res.states, res.err)
	case <-time.After(500 * time.Millisecond):
	}
	if d := pcsc.Stats().Sub(before); d.Total() > 10 {
		t.Fatalf("a blocked Wait made %d PC/SC calls: %+v", d.Total(), d)
	}
	card := newOKCard(15)
	insert(t, 2, card)
	res := receive(t, ch, "insert")
	if res.err != nil {
		t.Fatal(res.err)
	}
	if s := stateOf(t, res.states, r.ReaderName(2)); !s.Present || len(res.states) != len(all) {
		t.Fatalf("after insert: %v", res.states)
	}
}

// gaCard answers GENERAL AUTHENTICATE with "decrypted" data in two parts (61xx).
type gaCard struct{ okCard }

func (c *gaCard) Transmit(ctx context.Context, cmd []byte) ([]byte, error) {
	switch {
	case len(cmd) >= 4 && cmd[1] == 0x87:
		return []byte{'S', 'E', 'C', 'R', 'E', 'T', 0x61, 0x03}, nil
	case len(cmd) >= 4 && cmd[1] == 0xC0:
		return []byte{'T', 'W', 'O', 0x90, 0x00}, nil
	}
	return c.okCard.Transmit(ctx, cmd)
}

// The APDU trace never shows a PIN or decrypted data, and does show ordinary traffic.
func TestPCSCTraceRedacts(t *testing.T) {
	r := testRig(t)
	var buf syncBuffer
	trace.SetOutput("apdu,pcsc", &buf)
	t.Cleanup(func() { trace.Setup(os.Getenv("P11CARD_DEBUG"), os.Getenv("P11CARD_DEBUG_FILE")) })
	card := &gaCard{okCard: *newOKCard(11)}
	insert(t, 2, card)
	ctx := context.Background()
	k, err := pcscContext(t).Connect(ctx, r.ReaderName(2))
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	unlock, _, err := k.Lock(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	pin := []byte("918273")
	if _, err := apdu.Do(ctx, k, apdu.Command{INS: 0x20, P2: 0x80, Data: append(pin, 0xFF, 0xFF)}, apdu.Options{}); err != nil {
		t.Fatal(err)
	}
	plain, err := apdu.Do(ctx, k, apdu.Command{INS: 0x87, P1: 0x07, P2: 0x9A, Data: []byte{0x7C, 0x02, 0x82, 0x00}, Ne: 256}, apdu.Options{})
	if err != nil || string(plain) != "SECRETTWO" {
		t.Fatalf("GENERAL AUTHENTICATE = %q, %v", plain, err)
	}
	if _, err := apdu.Do(ctx, k, apdu.Command{INS: 0xCA, P2: 0x6E, Data: []byte{0xAB, 0xCD}}, apdu.Options{}); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, secret := range []string{"39 31 38 32 37 33", "53 45 43", "54 57 4F"} {
		if strings.Contains(out, secret) {
			t.Errorf("trace holds secret bytes %s:\n%s", secret, out)
		}
	}
	for _, want := range []string{"> 00 20 00 80 08 2A 2A 2A 2A 2A 2A 2A 2A", "< 2A 2A 2A 90 00", "> 00 CA 00 6E 02 AB CD", "< AB CD 90 00", "SCardTransmit"} {
		if !strings.Contains(out, want) {
			t.Errorf("trace lacks %q:\n%s", want, out)
		}
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// vpcd offers no part 10 features: no pinpad, and no error for asking.
func TestPCSCFeatures(t *testing.T) {
	r := testRig(t)
	ctx := context.Background()
	insert(t, 2, newOKCard(12))
	k, err := pcscContext(t).Connect(ctx, r.ReaderName(2))
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	before := pcsc.Stats()
	f, err := k.Features(ctx)
	if err != nil || f.PINPad() {
		t.Fatalf("Features = %v, %v", f, err)
	}
	if d := pcsc.Stats().Sub(before); d.Control != 1 {
		t.Errorf("Features cost %+v", d)
	}
}

// BenchmarkPCSCLockTransmit measures one locked exchange through pcscd and vpcd, and
// reports the PC/SC calls it costs (3: begin, transmit, end).
func BenchmarkPCSCLockTransmit(b *testing.B) {
	r := testRig(b)
	insert(b, 2, newOKCard(13))
	ctx := context.Background()
	c, err := pcsc.Establish(ctx)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	k, err := c.Connect(ctx, r.ReaderName(2))
	if err != nil {
		b.Fatal(err)
	}
	defer k.Close()
	cmd := []byte{0x00, 0xCA, 0x00, 0x6E, 0x00}
	before := pcsc.Stats()
	b.ResetTimer()
	for b.Loop() {
		unlock, _, err := k.Lock(ctx)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := k.Transmit(ctx, cmd); err != nil {
			b.Fatal(err)
		}
		unlock()
	}
	b.ReportMetric(float64(pcsc.Stats().Sub(before).Total())/float64(b.N), "pcsc-calls/op")
}

// Control reaches the reader; vpcd answers the feature request with nothing or an error,
// never a crash, and Features agrees with what Control returned.
func TestPCSCControl(t *testing.T) {
	r := testRig(t)
	ctx := context.Background()
	insert(t, 2, newOKCard(14))
	k, err := pcscContext(t).Connect(ctx, r.ReaderName(2))
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	out, err := k.Control(ctx, 0x42000D48, nil)
	var pe *pcsc.Error
	if err != nil && !errors.As(err, &pe) {
		t.Fatalf("Control error without a PC/SC code: %v", err)
	}
	if err == nil && len(out) != 0 {
		t.Logf("vpcd features: % X", out)
	}
	k.Close()
	if _, err := k.Control(ctx, 0x42000D48, nil); !errors.Is(err, pcsc.ErrClosed) {
		t.Fatalf("Control after Close = %v", err)
	}
}

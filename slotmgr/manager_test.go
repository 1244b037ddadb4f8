package slotmgr_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/p11-card/p11-card/cards"
	"github.com/p11-card/p11-card/pcsc"
	"github.com/p11-card/p11-card/slotmgr"
	"github.com/p11-card/p11-card/slotmgr/slotmgrtest"
)

var (
	atrGood    = []byte{0x3B, 0x01, 0x02}
	atrGood2   = []byte{0x3B, 0x01, 0x03}
	atrUnknown = []byte{0x3B, 0xFF}
	atrPanic   = []byte{0x3B, 0xDE, 0xAD}
	atrBlock   = []byte{0x3B, 0xB1, 0x0C}
	atrBadInfo = []byte{0x3B, 0xBA, 0xD1}
)

// badInfoToken's Info panics, as a buggy driver's might.
type badInfoToken struct{ cards.Token }

func (badInfoToken) Info() cards.TokenInfo { panic("driver bug in Info") }

// testToken is a cards.Token that only knows its Info; the slot manager calls nothing else.
type testToken struct {
	cards.Token
	info cards.TokenInfo
}

func (t *testToken) Info() cards.TokenInfo { return t.info }

// binder is a Bind function for tests: it sends one APDU (like a driver's SELECT), binds
// the "good" ATRs, and counts calls. Cards with atrBlock wait for release.
type binder struct {
	mu      sync.Mutex
	calls   int
	perATR  map[string]int
	release chan struct{}
	started chan struct{}
}

func newBinder() *binder {
	return &binder{perATR: map[string]int{}, release: make(chan struct{}), started: make(chan struct{}, 16)}
}

func (b *binder) bind(ctx context.Context, c cards.Conn, atr []byte) (cards.Token, error) {
	b.mu.Lock()
	b.calls++
	b.perATR[string(atr)]++
	b.mu.Unlock()
	switch {
	case bytes.Equal(atr, atrPanic):
		panic("test driver bug")
	case bytes.Equal(atr, atrBlock):
		b.started <- struct{}{}
		select {
		case <-b.release:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	case bytes.Equal(atr, atrBadInfo):
		return badInfoToken{}, nil
	case !bytes.Equal(atr, atrGood) && !bytes.Equal(atr, atrGood2):
		return nil, fmt.Errorf("test: %w", cards.ErrNotRecognized)
	}
	unlock, _, err := c.Lock(ctx)
	if err != nil {
		return nil, err
	}
	defer unlock()
	if _, err := c.Transmit(ctx, []byte{0x00, 0xA4, 0x04, 0x00}); err != nil {
		return nil, err
	}
	return &testToken{info: cards.TokenInfo{Driver: "test", Serial: fmt.Sprintf("%X", atr)}}, nil
}

func (b *binder) count() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.calls
}

type env struct {
	t  *testing.T
	b  *slotmgrtest.Backend
	bd *binder
	m  *slotmgr.Manager
}

// start makes a manager over b (with the test binder unless opt.Bind is set) and checks
// at cleanup that Close released every context and handle.
func start(t *testing.T, b *slotmgrtest.Backend, opt slotmgr.Options) *env {
	t.Helper()
	e := &env{t: t, b: b, bd: newBinder()}
	if opt.Bind == nil {
		opt.Bind = e.bd.bind
	}
	if opt.RetryInterval == 0 {
		opt.RetryInterval = time.Hour // tests drive retries with Rescan
	}
	if opt.Fresh == 0 {
		opt.Fresh = -1 // tests change the readers and Rescan at once (TestRescanFresh: the default)
	}
	opt.Logf = func(format string, args ...any) { t.Logf(format, args...) }
	e.m = slotmgr.New(b, opt)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.m.Start(ctx); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		close(e.bd.release)
		if err := e.m.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		if st := b.Stats(); st.Contexts != 0 || st.Handles != 0 {
			t.Errorf("after Close: %d contexts and %d handles open", st.Contexts, st.Handles)
		}
	})
	return e
}

// waitFor waits (on change notifications, never by sleeping) until pred holds.
func (e *env) waitFor(what string, pred func([]slotmgr.SlotInfo) bool) []slotmgr.SlotInfo {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		n := e.m.Counter()
		s := e.m.Slots()
		if pred(s) {
			return s
		}
		if _, err := e.m.WaitChange(ctx, n); err != nil {
			e.t.Fatalf("waiting for %s: %v; slots: %s", what, err, dump(e.m.Slots()))
		}
	}
}

func dump(s []slotmgr.SlotInfo) string {
	var b strings.Builder
	for _, x := range s {
		fmt.Fprintf(&b, "[%d %q present=%v card=%v gen=%d err=%v] ", x.ID, x.Reader, x.Present, x.CardPresent, x.Gen, x.Err)
	}
	return b.String()
}

func find(s []slotmgr.SlotInfo, reader string) (slotmgr.SlotInfo, bool) {
	for _, x := range s {
		if x.Reader == reader {
			return x, true
		}
	}
	return slotmgr.SlotInfo{}, false
}

func present(reader string) func([]slotmgr.SlotInfo) bool {
	return func(s []slotmgr.SlotInfo) bool { x, ok := find(s, reader); return ok && x.Present }
}

func empty(reader string) func([]slotmgr.SlotInfo) bool {
	return func(s []slotmgr.SlotInfo) bool { x, ok := find(s, reader); return ok && !x.CardPresent }
}

func closed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

func TestStartSeesCardsAlreadyPresent(t *testing.T) {
	b := slotmgrtest.New()
	for _, r := range []string{"Reader A", "Reader B", "Reader C"} {
		b.AddReader(r)
	}
	good := slotmgrtest.NewCard(atrGood)
	if err := b.Insert("Reader A", good); err != nil {
		t.Fatal(err)
	}
	if err := b.Insert("Reader C", slotmgrtest.NewCard(atrUnknown)); err != nil {
		t.Fatal(err)
	}
	e := start(t, b, slotmgr.Options{NoPINPad: true})

	// No waiting: Start returned, so the table is complete.
	s := e.m.Slots()
	if len(s) != 3 {
		t.Fatalf("slots: %s", dump(s))
	}
	for i, want := range []string{"Reader A", "Reader B", "Reader C"} {
		if s[i].ID != uint64(i+1) || s[i].Reader != want {
			t.Errorf("slot %d = %d %q, want %d %q", i, s[i].ID, s[i].Reader, i+1, want)
		}
	}
	a := s[0]
	if !a.Present || a.Token == nil || a.Conn == nil || a.Gen == 0 || !bytes.Equal(a.ATR, atrGood) || a.Err != nil {
		t.Errorf("reader A: %+v", a)
	}
	if a.Token.Info().Driver != "test" {
		t.Errorf("token info: %+v", a.Token.Info())
	}
	if s[1].CardPresent || s[1].Present || s[1].Gen != 0 || s[1].Removed != nil {
		t.Errorf("reader B: %+v", s[1])
	}
	c := s[2]
	if c.Present || !c.CardPresent || c.Token != nil || c.Conn != nil || !errors.Is(c.Err, cards.ErrNotRecognized) || c.Gen == 0 {
		t.Errorf("reader C: %+v", c)
	}
	if a.Gen == c.Gen {
		t.Errorf("two cards share generation %d", a.Gen)
	}
	if n := good.Commands(); n != 1 {
		t.Errorf("binding sent %d APDUs, want 1 (the driver's own)", n)
	}
	if n := e.bd.count(); n != 2 {
		t.Errorf("bind called %d times, want 2", n)
	}
	// Slot agrees with Slots.
	if x, ok := e.m.Slot(1); !ok || x.Gen != a.Gen || !x.Present {
		t.Errorf("Slot(1) = %+v, %v", x, ok)
	}
	if _, ok := e.m.Slot(0); ok {
		t.Error("Slot(0) exists")
	}
	if _, ok := e.m.Slot(4); ok {
		t.Error("Slot(4) exists")
	}
}

// starterBackend is the fake backend with a Starter: started is called by Started.
type starterBackend struct {
	*slotmgrtest.Backend
	started func()
}

func (b starterBackend) Started() { b.started() }

// TestStartTellsStarter: a backend holding resources for the start (the contexts the
// module opens in C_Initialize) hears once that Start is done, after the binds of the
// cards already present, and never again.
func TestStartTellsStarter(t *testing.T) {
	fake := slotmgrtest.New()
	fake.AddReader("Reader A")
	if err := fake.Insert("Reader A", slotmgrtest.NewCard(atrGood)); err != nil {
		t.Fatal(err)
	}
	bd := newBinder()
	defer close(bd.release)
	var calls, boundBefore int
	b := starterBackend{fake, func() { calls++; boundBefore = bd.count() }}
	m := slotmgr.New(b, slotmgr.Options{Bind: bd.bind, NoPINPad: true, RetryInterval: time.Hour, Fresh: -1})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := m.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if calls != 1 || boundBefore != 1 {
		t.Fatalf("Started called %d times, after %d binds; want once, after the card's bind", calls, boundBefore)
	}
	if err := m.Rescan(ctx); err != nil {
		t.Fatal(err)
	}
	if calls != 1 {
		t.Errorf("Started called again after Rescan (%d calls)", calls)
	}
}

func TestInsertRemove(t *testing.T) {
	b := slotmgrtest.New()
	b.AddReader("R")
	e := start(t, b, slotmgr.Options{NoPINPad: true})
	if s := e.m.Slots(); len(s) != 1 || s[0].CardPresent {
		t.Fatalf("slots: %s", dump(s))
	}
	card := slotmgrtest.NewCard(atrGood)
	if err := b.Insert("R", card); err != nil {
		t.Fatal(err)
	}
	s := e.waitFor("token", present("R"))
	x := s[0]
	if x.Gen == 0 || x.Removed == nil || closed(x.Removed) {
		t.Fatalf("inserted: %+v", x)
	}
	if _, err := x.Conn.Transmit(context.Background(), []byte{0, 0xCA, 0, 0}); err != nil {
		t.Fatalf("transmit: %v", err)
	}

	b.Remove("R")
	s = e.waitFor("removal", empty("R"))
	if s[0].Present || s[0].Gen != 0 || s[0].Token != nil {
		t.Errorf("after removal: %+v", s[0])
	}
	if !closed(x.Removed) {
		t.Error("Removed not closed after removal")
	}
	if _, err := x.Conn.Transmit(context.Background(), []byte{0, 0xCA, 0, 0}); !errors.Is(err, slotmgr.ErrTokenRemoved) {
		t.Errorf("old conn transmit: %v, want ErrTokenRemoved", err)
	}
	if _, _, err := x.Conn.Lock(context.Background()); !errors.Is(err, slotmgr.ErrTokenRemoved) {
		t.Errorf("old conn lock: %v, want ErrTokenRemoved", err)
	}

	// Insert again: a new generation.
	if err := b.Insert("R", card); err != nil {
		t.Fatal(err)
	}
	s = e.waitFor("token again", present("R"))
	if s[0].Gen <= x.Gen {
		t.Errorf("generation %d after %d", s[0].Gen, x.Gen)
	}
	if s[0].ID != x.ID {
		t.Errorf("ID moved %d → %d", x.ID, s[0].ID)
	}
}

func TestSwapBetweenPolls(t *testing.T) {
	for _, tc := range []struct {
		name string
		atr  []byte
	}{{"same ATR", atrGood}, {"other ATR", atrGood2}} {
		t.Run(tc.name, func(t *testing.T) {
			b := slotmgrtest.New()
			b.AddReader("R")
			first := slotmgrtest.NewCard(atrGood)
			if err := b.Insert("R", first); err != nil {
				t.Fatal(err)
			}
			e := start(t, b, slotmgr.Options{NoPINPad: true})
			old, _ := find(e.m.Slots(), "R")
			if !old.Present {
				t.Fatalf("not bound: %+v", old)
			}
			second := slotmgrtest.NewCard(tc.atr)
			if err := b.Swap("R", second); err != nil { // never empty in between
				t.Fatal(err)
			}
			s := e.waitFor("new generation", func(s []slotmgr.SlotInfo) bool {
				x, _ := find(s, "R")
				return x.Present && x.Gen != old.Gen
			})
			x, _ := find(s, "R")
			if x.Gen < old.Gen || x.ID != old.ID || !bytes.Equal(x.ATR, tc.atr) {
				t.Errorf("after swap: %+v (old gen %d)", x, old.Gen)
			}
			if !closed(old.Removed) {
				t.Error("old generation's Removed not closed")
			}
			n := second.Commands()
			if _, err := old.Conn.Transmit(context.Background(), []byte{0, 0xB0, 0, 0}); !errors.Is(err, slotmgr.ErrTokenRemoved) {
				t.Errorf("old conn after swap: %v", err)
			}
			if second.Commands() != n {
				t.Error("the old generation's conn reached the new card")
			}
			if e.bd.count() != 2 {
				t.Errorf("bind calls %d, want 2", e.bd.count())
			}
		})
	}
}

func TestReaderUnplugReplugKeepsID(t *testing.T) {
	b := slotmgrtest.New()
	b.AddReader("A")
	b.AddReader("B")
	if err := b.Insert("A", slotmgrtest.NewCard(atrGood)); err != nil {
		t.Fatal(err)
	}
	e := start(t, b, slotmgr.Options{NoPINPad: true})
	a0, _ := find(e.m.Slots(), "A")

	b.RemoveReader("A")
	s := e.waitFor("A gone", func(s []slotmgr.SlotInfo) bool { _, ok := find(s, "A"); return !ok })
	if len(s) != 1 || s[0].ID != 2 || s[0].Reader != "B" {
		t.Fatalf("after unplug: %s", dump(s))
	}
	g, ok := e.m.Slot(a0.ID)
	if !ok || !g.ReaderGone || g.CardPresent || g.Present || g.Reader != "A" {
		t.Errorf("Slot of the gone reader: %+v, %v", g, ok)
	}
	if !closed(a0.Removed) {
		t.Error("unplug did not end the generation")
	}
	all := e.m.AllSlots()
	if len(all) != 2 || all[0].ID != 1 || !all[0].ReaderGone || all[0].Present || all[0].Changed <= a0.Changed || all[1].ReaderGone {
		t.Errorf("AllSlots after unplug: %+v", all)
	}

	b.AddReader("C")
	e.waitFor("C", func(s []slotmgr.SlotInfo) bool { _, ok := find(s, "C"); return ok })
	b.AddReader("A")
	if err := b.Insert("A", slotmgrtest.NewCard(atrGood)); err != nil {
		t.Fatal(err)
	}
	s = e.waitFor("A back", present("A"))
	var ids []uint64
	var names []string
	for _, x := range s {
		ids = append(ids, x.ID)
		names = append(names, x.Reader)
	}
	if fmt.Sprint(ids) != "[1 2 3]" || fmt.Sprint(names) != "[A B C]" {
		t.Errorf("after replug: ids %v names %v", ids, names)
	}
	a1, _ := find(s, "A")
	if a1.Gen <= a0.Gen {
		t.Errorf("replugged card generation %d, old %d", a1.Gen, a0.Gen)
	}
}

func TestServiceDownAtStart(t *testing.T) {
	t.Run("rescan", func(t *testing.T) {
		b := slotmgrtest.New()
		b.AddReader("R")
		if err := b.Insert("R", slotmgrtest.NewCard(atrGood)); err != nil {
			t.Fatal(err)
		}
		b.Stop()
		e := start(t, b, slotmgr.Options{NoPINPad: true})
		if s := e.m.Slots(); len(s) != 0 {
			t.Fatalf("slots with service down: %s", dump(s))
		}
		if e.m.ServiceErr() == nil {
			t.Error("ServiceErr nil with service down")
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := e.m.Rescan(ctx); err != nil {
			t.Fatalf("Rescan with service down: %v", err)
		}
		if s := e.m.Slots(); len(s) != 0 {
			t.Fatalf("slots with service down: %s", dump(s))
		}
		b.Start()
		if err := e.m.Rescan(ctx); err != nil {
			t.Fatal(err)
		}
		// Rescan tried the service again and waited for the bind.
		s := e.m.Slots()
		if len(s) != 1 || !s[0].Present || s[0].ID != 1 {
			t.Fatalf("after service start + Rescan: %s", dump(s))
		}
		if e.m.ServiceErr() != nil {
			t.Errorf("ServiceErr = %v", e.m.ServiceErr())
		}
	})
	t.Run("retry timer", func(t *testing.T) {
		b := slotmgrtest.New()
		b.AddReader("R")
		b.Stop()
		e := start(t, b, slotmgr.Options{NoPINPad: true, RetryInterval: time.Millisecond})
		b.Start()
		e.waitFor("reader after service start", func(s []slotmgr.SlotInfo) bool { return len(s) == 1 })
	})
}

func TestServiceRestart(t *testing.T) {
	b := slotmgrtest.New()
	b.AddReader("A")
	b.AddReader("B")
	if err := b.Insert("A", slotmgrtest.NewCard(atrGood)); err != nil {
		t.Fatal(err)
	}
	e := start(t, b, slotmgr.Options{NoPINPad: true, RetryInterval: time.Millisecond})
	a0, _ := find(e.m.Slots(), "A")

	b.Stop()
	e.waitFor("empty table", func(s []slotmgr.SlotInfo) bool { return len(s) == 0 })
	if !closed(a0.Removed) {
		t.Error("service loss did not end the generation")
	}
	if _, err := a0.Conn.Transmit(context.Background(), []byte{0, 0xCA, 0, 0}); err == nil {
		t.Error("old conn works after service loss")
	}
	b.Start()
	s := e.waitFor("readers back", func(s []slotmgr.SlotInfo) bool { return len(s) == 2 && present("A")(s) })
	a1, _ := find(s, "A")
	b1, _ := find(s, "B")
	if a1.ID != a0.ID || b1.ID != 2 {
		t.Errorf("IDs after restart: A %d B %d", a1.ID, b1.ID)
	}
	// The restarted service counts events from zero again; the generation must still move.
	if a1.Gen == a0.Gen {
		t.Errorf("same generation %d across a service restart", a1.Gen)
	}
	if _, err := a1.Conn.Transmit(context.Background(), []byte{0, 0xCA, 0, 0}); err != nil {
		t.Errorf("new conn: %v", err)
	}
}

// A service restart that no call sees (package pcsc re-establishes its contexts inside)
// still ends the generation: the card was powered down, and the event counter starting
// again may show the very same count.
func TestSilentServiceRestart(t *testing.T) {
	b := slotmgrtest.New()
	b.Healing = true
	b.AddReader("A")
	b.AddReader("B")
	if err := b.Insert("A", slotmgrtest.NewCard(atrGood)); err != nil {
		t.Fatal(err)
	}
	e := start(t, b, slotmgr.Options{NoPINPad: true})
	a0, _ := find(e.m.Slots(), "A")
	b.Restart()
	s := e.waitFor("new generation", func(s []slotmgr.SlotInfo) bool {
		x, _ := find(s, "A")
		return x.Present && x.Gen != a0.Gen
	})
	a1, _ := find(s, "A")
	if a1.ID != a0.ID || !closed(a0.Removed) {
		t.Errorf("after silent restart: %+v (before %+v)", a1, a0)
	}
	if _, err := a1.Conn.Transmit(context.Background(), []byte{0, 0xCA, 0, 0}); err != nil {
		t.Errorf("new conn: %v", err)
	}
	// The table settles: no further generations without a further event.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.m.Rescan(ctx); err != nil {
		t.Fatal(err)
	}
	if x, _ := find(e.m.Slots(), "A"); x.Gen != a1.Gen {
		t.Errorf("generation moved again to %d without an event", x.Gen)
	}
}

func TestBindFailures(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	t.Run("unknown card is not retried", func(t *testing.T) {
		b := slotmgrtest.New()
		b.AddReader("R")
		if err := b.Insert("R", slotmgrtest.NewCard(atrUnknown)); err != nil {
			t.Fatal(err)
		}
		e := start(t, b, slotmgr.Options{NoPINPad: true})
		for i := 0; i < 3; i++ {
			if err := e.m.Rescan(ctx); err != nil {
				t.Fatal(err)
			}
		}
		x, _ := find(e.m.Slots(), "R")
		if x.Present || !x.CardPresent || !errors.Is(x.Err, cards.ErrNotRecognized) {
			t.Errorf("unknown card: %+v", x)
		}
		if e.bd.count() != 1 {
			t.Errorf("bind called %d times for one unknown card", e.bd.count())
		}
		if st := b.Stats(); st.Handles != 0 {
			t.Errorf("%d handles open for an unbound card", st.Handles)
		}
	})

	t.Run("transient error retried on rescan", func(t *testing.T) {
		b := slotmgrtest.New()
		b.AddReader("R")
		boom := errors.New("transmission error")
		var mu sync.Mutex
		failing := true
		b.ConnectErr = func(string) error {
			mu.Lock()
			defer mu.Unlock()
			if failing {
				return boom
			}
			return nil
		}
		if err := b.Insert("R", slotmgrtest.NewCard(atrGood)); err != nil {
			t.Fatal(err)
		}
		e := start(t, b, slotmgr.Options{NoPINPad: true, MaxBindAttempts: 5})
		x, _ := find(e.m.Slots(), "R")
		if x.Present || !errors.Is(x.Err, boom) {
			t.Fatalf("first bind: %+v", x)
		}
		gen := x.Gen
		mu.Lock()
		failing = false
		mu.Unlock()
		if err := e.m.Rescan(ctx); err != nil {
			t.Fatal(err)
		}
		x, _ = find(e.m.Slots(), "R")
		if !x.Present || x.Err != nil || x.Gen != gen {
			t.Errorf("after rescan: %+v (gen was %d)", x, gen)
		}
	})

	t.Run("attempts are bounded", func(t *testing.T) {
		b := slotmgrtest.New()
		b.AddReader("R")
		var mu sync.Mutex
		connects := 0
		b.ConnectErr = func(string) error {
			mu.Lock()
			defer mu.Unlock()
			connects++
			return errors.New("always")
		}
		if err := b.Insert("R", slotmgrtest.NewCard(atrGood)); err != nil {
			t.Fatal(err)
		}
		e := start(t, b, slotmgr.Options{NoPINPad: true, MaxBindAttempts: 2})
		for i := 0; i < 5; i++ {
			if err := e.m.Rescan(ctx); err != nil {
				t.Fatal(err)
			}
		}
		mu.Lock()
		defer mu.Unlock()
		if connects != 2 {
			t.Errorf("%d connects, want 2", connects)
		}
	})

	t.Run("driver panic", func(t *testing.T) {
		b := slotmgrtest.New()
		b.AddReader("R")
		b.AddReader("S")
		if err := b.Insert("R", slotmgrtest.NewCard(atrPanic)); err != nil {
			t.Fatal(err)
		}
		e := start(t, b, slotmgr.Options{NoPINPad: true})
		x, _ := find(e.m.Slots(), "R")
		if x.Present || x.Err == nil || !strings.Contains(x.Err.Error(), "panicked") {
			t.Errorf("panicking driver: %+v", x)
		}
		if err := e.m.Rescan(ctx); err != nil {
			t.Fatal(err)
		}
		if e.bd.count() != 1 {
			t.Errorf("a panicking bind was retried (%d calls)", e.bd.count())
		}
		// The manager keeps working.
		if err := b.Insert("S", slotmgrtest.NewCard(atrGood)); err != nil {
			t.Fatal(err)
		}
		e.waitFor("S", present("S"))
	})

	t.Run("timeout is retried, boundedly", func(t *testing.T) {
		b := slotmgrtest.New()
		b.AddReader("R")
		if err := b.Insert("R", slotmgrtest.NewCard(atrBlock)); err != nil {
			t.Fatal(err)
		}
		e := start(t, b, slotmgr.Options{NoPINPad: true, BindTimeout: time.Millisecond, MaxBindAttempts: 2})
		x, _ := find(e.m.Slots(), "R")
		if x.Present || !errors.Is(x.Err, context.DeadlineExceeded) {
			t.Fatalf("slow card: %+v", x)
		}
		for i := 0; i < 5; i++ {
			if err := e.m.Rescan(ctx); err != nil {
				t.Fatal(err)
			}
		}
		if e.bd.count() != 2 {
			t.Errorf("%d binds, want 2 (MaxBindAttempts)", e.bd.count())
		}
	})

	t.Run("Info panics", func(t *testing.T) {
		b := slotmgrtest.New()
		b.AddReader("R")
		if err := b.Insert("R", slotmgrtest.NewCard(atrBadInfo)); err != nil {
			t.Fatal(err)
		}
		e := start(t, b, slotmgr.Options{NoPINPad: true})
		x, _ := find(e.m.Slots(), "R")
		if x.Present || x.Err == nil {
			t.Errorf("token with a panicking Info: %+v", x)
		}
	})

	t.Run("mute card", func(t *testing.T) {
		b := slotmgrtest.New()
		b.AddReader("R")
		if err := b.Insert("R", slotmgrtest.NewCard(atrGood)); err != nil {
			t.Fatal(err)
		}
		b.SetMute("R", true)
		e := start(t, b, slotmgr.Options{NoPINPad: true})
		x, _ := find(e.m.Slots(), "R")
		if x.Present || !x.CardPresent || !errors.Is(x.Err, slotmgr.ErrCardMute) {
			t.Fatalf("mute: %+v", x)
		}
		if e.bd.count() != 0 {
			t.Error("bound a mute card")
		}
		b.SetMute("R", false)
		e.waitFor("bound after unmute", present("R"))
	})

	t.Run("exclusive elsewhere", func(t *testing.T) {
		b := slotmgrtest.New()
		b.AddReader("R")
		if err := b.Insert("R", slotmgrtest.NewCard(atrGood)); err != nil {
			t.Fatal(err)
		}
		b.SetExclusive("R", true)
		e := start(t, b, slotmgr.Options{NoPINPad: true})
		x, _ := find(e.m.Slots(), "R")
		if x.Present || !errors.Is(x.Err, slotmgr.ErrCardInUse) {
			t.Fatalf("exclusive: %+v", x)
		}
		for i := 0; i < 5; i++ { // C_GetSlotList while it is held: no tries, none wasted
			if err := e.m.Rescan(ctx); err != nil {
				t.Fatal(err)
			}
		}
		if e.bd.count() != 0 {
			t.Errorf("%d binds of a card held exclusively", e.bd.count())
		}
		b.SetExclusive("R", false)
		e.waitFor("bound after release", present("R"))
	})

	t.Run("taken exclusively during a failed bind", func(t *testing.T) {
		// The bind fails (sharing violation) because another application took the card
		// between our read and our connect; its release later brings a fresh try even
		// after the attempts ran out.
		b := slotmgrtest.New()
		b.AddReader("R")
		var mu sync.Mutex
		failing := true
		b.ConnectErr = func(string) error {
			mu.Lock()
			defer mu.Unlock()
			if failing {
				return slotmgrtest.ErrSharing
			}
			return nil
		}
		if err := b.Insert("R", slotmgrtest.NewCard(atrGood)); err != nil {
			t.Fatal(err)
		}
		e := start(t, b, slotmgr.Options{NoPINPad: true, MaxBindAttempts: 1})
		if x, _ := find(e.m.Slots(), "R"); x.Present || !errors.Is(x.Err, slotmgrtest.ErrSharing) {
			t.Fatalf("first bind: %+v", x)
		}
		b.SetExclusive("R", true)
		if err := e.m.Rescan(ctx); err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		failing = false
		mu.Unlock()
		b.SetExclusive("R", false)
		// package pcsc's Wait does not wake for exclusive holds; the next C_GetSlotList
		// (Rescan) sees the release.
		if err := e.m.Rescan(ctx); err != nil {
			t.Fatal(err)
		}
		if x, _ := find(e.m.Slots(), "R"); !x.Present {
			t.Fatalf("after release and Rescan: %+v", x)
		}
	})
}

func TestRemovedWhileBinding(t *testing.T) {
	b := slotmgrtest.New()
	b.AddReader("R")
	e := start(t, b, slotmgr.Options{NoPINPad: true})
	if err := b.Insert("R", slotmgrtest.NewCard(atrBlock)); err != nil {
		t.Fatal(err)
	}
	<-e.bd.started
	x := e.waitFor("binding", func(s []slotmgr.SlotInfo) bool { return s[0].Binding })[0]
	if x.Present || !x.CardPresent {
		t.Errorf("binding: %+v", x)
	}
	b.Remove("R")
	e.waitFor("removal", empty("R"))
	// The bind ends (its context was cancelled) and its token never lands.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.m.Rescan(ctx); err != nil {
		t.Fatal(err)
	}
	if x, _ := find(e.m.Slots(), "R"); x.CardPresent || x.Present {
		t.Errorf("after removal during bind: %+v", x)
	}
}

func TestRescanWaitsForBind(t *testing.T) {
	b := slotmgrtest.New()
	b.AddReader("R")
	e := start(t, b, slotmgr.Options{NoPINPad: true})
	if err := b.Insert("R", slotmgrtest.NewCard(atrBlock)); err != nil {
		t.Fatal(err)
	}
	<-e.bd.started
	done := make(chan error, 1)
	go func() { done <- e.m.Rescan(context.Background()) }()
	select {
	case err := <-done:
		t.Fatalf("Rescan returned during a bind: %v", err)
	default:
	}
	e.bd.release <- struct{}{}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if x, _ := find(e.m.Slots(), "R"); !x.Present {
		t.Errorf("after Rescan: %+v", x)
	}
	// Rescan also ends with its context.
	if err := b.Insert("R", slotmgrtest.NewCard(atrBlock)); err != nil {
		t.Fatal(err)
	}
	<-e.bd.started
	ctx, cancel := context.WithCancel(context.Background())
	go func() { done <- e.m.Rescan(ctx) }()
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("Rescan with cancelled ctx: %v", err)
	}
}

func TestWaitChange(t *testing.T) {
	b := slotmgrtest.New()
	b.AddReader("R")
	e := start(t, b, slotmgr.Options{NoPINPad: true})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	before := e.m.Counter()
	if before == 0 {
		t.Fatal("counter 0")
	}
	// since=0 answers the current counter at once.
	if n, err := e.m.WaitChange(ctx, 0); err != nil || n != before {
		t.Fatalf("WaitChange(0) = %d, %v; counter %d", n, err, before)
	}
	ch := e.m.Changes()
	type res struct {
		n   uint64
		err error
	}
	got := make(chan res, 1)
	go func() { n, err := e.m.WaitChange(ctx, before); got <- res{n, err} }()
	if err := b.Insert("R", slotmgrtest.NewCard(atrGood)); err != nil {
		t.Fatal(err)
	}
	r := <-got
	if r.err != nil || r.n <= before {
		t.Fatalf("WaitChange(%d) = %d, %v", before, r.n, r.err)
	}
	<-ch // the broadcast channel was closed too
	x := e.waitFor("token", present("R"))[0]
	if x.Changed <= before {
		t.Errorf("slot Changed %d not after %d", x.Changed, before)
	}
	// A stale counter returns at once.
	if n, err := e.m.WaitChange(ctx, before); err != nil || n <= before {
		t.Errorf("WaitChange(stale) = %d, %v", n, err)
	}

	// Cancellation returns promptly.
	cctx, ccancel := context.WithCancel(context.Background())
	now := e.m.Counter()
	go func() { n, err := e.m.WaitChange(cctx, now); got <- res{n, err} }()
	ccancel()
	if r := <-got; !errors.Is(r.err, context.Canceled) {
		t.Errorf("cancelled WaitChange = %d, %v", r.n, r.err)
	}

	// Close wakes a waiter with ErrClosed (C_Finalize waking C_WaitForSlotEvent).
	go func() { n, err := e.m.WaitChange(context.Background(), now); got <- res{n, err} }()
	ch = e.m.Changes()
	if err := e.m.Close(); err != nil {
		t.Fatal(err)
	}
	if r := <-got; !errors.Is(r.err, slotmgr.ErrClosed) {
		t.Errorf("WaitChange across Close = %d, %v", r.n, r.err)
	}
	<-ch
	<-e.m.Changes() // stays closed
	if _, err := e.m.WaitChange(ctx, 0); !errors.Is(err, slotmgr.ErrClosed) {
		t.Errorf("WaitChange(0) after Close: %v", err)
	}
	if err := e.m.Rescan(ctx); !errors.Is(err, slotmgr.ErrClosed) {
		t.Errorf("Rescan after Close: %v", err)
	}
	if err := e.m.Start(ctx); !errors.Is(err, slotmgr.ErrClosed) {
		t.Errorf("Start after Close: %v", err)
	}
	if !closed(x.Removed) {
		t.Error("Close did not end the generation")
	}
}

func TestPINPad(t *testing.T) {
	b := slotmgrtest.New()
	b.AddReader("Pad")
	b.AddReader("Plain")
	// FEATURE_VERIFY_PIN_DIRECT (06) and FEATURE_MODIFY_PIN_DIRECT (07), then a
	// triple with a bad length that must be skipped, then a truncated one.
	b.SetFeatures("Pad", []byte{
		0x06, 0x04, 0x42, 0x33, 0x00, 0x06,
		0x07, 0x04, 0x42, 0x33, 0x00, 0x07,
		0x12, 0x02, 0xAA, 0xBB,
		0x0A, 0x04, 0x42,
	})
	for _, r := range []string{"Pad", "Plain"} {
		if err := b.Insert(r, slotmgrtest.NewCard(atrGood)); err != nil {
			t.Fatal(err)
		}
	}
	e := start(t, b, slotmgr.Options{})
	pad, _ := find(e.m.Slots(), "Pad")
	plain, _ := find(e.m.Slots(), "Plain")
	if !pad.PINPad || pad.PINVerify != 0x42330006 || pad.PINModify != 0x42330007 {
		t.Errorf("pad: %+v", pad)
	}
	if plain.PINPad || plain.PINVerify != 0 {
		t.Errorf("plain: %+v", plain)
	}
	if n := b.Stats().Controls; n != 2 {
		t.Errorf("%d control calls, want 2", n)
	}
	// A new card in the same reader does not ask again.
	if err := b.Swap("Pad", slotmgrtest.NewCard(atrGood2)); err != nil {
		t.Fatal(err)
	}
	e.waitFor("swap", func(s []slotmgr.SlotInfo) bool {
		x, _ := find(s, "Pad")
		return x.Present && bytes.Equal(x.ATR, atrGood2)
	})
	if n := b.Stats().Controls; n != 2 {
		t.Errorf("%d control calls after a swap, want 2", n)
	}
	if x, _ := find(e.m.Slots(), "Pad"); !x.PINPad {
		t.Error("PIN pad forgotten after swap")
	}
}

// testDriver is registered in cards to check the default Bind path.
type testDriver struct{}

var atrRegistry = []byte{0x3B, 0x5A, 0x5A}

func (testDriver) Name() string { return "slotmgr-test" }
func (testDriver) MatchATR(atr []byte) cards.Match {
	if bytes.Equal(atr, atrRegistry) {
		return cards.MatchYes
	}
	return cards.MatchNo
}
func (testDriver) Open(ctx context.Context, c cards.Conn, atr []byte) (cards.Token, error) {
	unlock, _, err := c.Lock(ctx)
	if err != nil {
		return nil, err
	}
	defer unlock()
	if _, err := c.Transmit(ctx, []byte{0x00, 0xA4, 0x04, 0x00, 0x01, 0xAA}); err != nil {
		return nil, err
	}
	return &testToken{info: cards.TokenInfo{Driver: "slotmgr-test"}}, nil
}

var registerOnce sync.Once

func TestDefaultBindUsesRegistry(t *testing.T) {
	registerOnce.Do(func() { cards.Register(testDriver{}) })
	b := slotmgrtest.New()
	b.AddReader("R")
	b.AddReader("S")
	card := slotmgrtest.NewCard(atrRegistry)
	other := slotmgrtest.NewCard([]byte{0x3B, 0x00})
	if err := b.Insert("R", card); err != nil {
		t.Fatal(err)
	}
	if err := b.Insert("S", other); err != nil {
		t.Fatal(err)
	}
	m := slotmgr.New(b, slotmgr.Options{NoPINPad: true})
	if err := m.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	x, _ := find(m.Slots(), "R")
	if !x.Present || x.Token.Info().Driver != "slotmgr-test" {
		t.Errorf("registry bind: %+v", x)
	}
	if n := card.Commands(); n != 1 {
		t.Errorf("%d APDUs to bind, want 1", n)
	}
	y, _ := find(m.Slots(), "S")
	if y.Present || !errors.Is(y.Err, cards.ErrNotRecognized) {
		t.Errorf("unknown card: %+v", y)
	}
	if other.Commands() != 0 {
		t.Errorf("%d APDUs to a card no driver matched", other.Commands())
	}
}

// panicky makes the first Readers call of the first context panic.
type panicky struct {
	*slotmgrtest.Backend
	mu   sync.Mutex
	done bool
}

type panickyCtx struct {
	slotmgr.Context
	p *panicky
}

func (p *panicky) Establish(ctx context.Context) (slotmgr.Context, error) {
	c, err := p.Backend.Establish(ctx)
	if err != nil {
		return nil, err
	}
	return panickyCtx{c, p}, nil
}

func (c panickyCtx) Readers(ctx context.Context) ([]string, error) {
	c.p.mu.Lock()
	first := !c.p.done
	c.p.done = true
	c.p.mu.Unlock()
	if first {
		panic("backend bug")
	}
	return c.Context.Readers(ctx)
}

func TestWatcherRecoversPanics(t *testing.T) {
	fb := slotmgrtest.New()
	fb.AddReader("R")
	p := &panicky{Backend: fb}
	m := slotmgr.New(p, slotmgr.Options{NoPINPad: true, RetryInterval: time.Millisecond})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := m.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	for len(m.Slots()) == 0 {
		n := m.Counter()
		if len(m.Slots()) != 0 {
			break
		}
		if _, err := m.WaitChange(ctx, n); err != nil {
			t.Fatalf("no recovery: %v", err)
		}
	}
}

func TestConcurrentUse(t *testing.T) {
	b := slotmgrtest.New()
	readers := []string{"A", "B", "C"}
	for _, r := range readers {
		b.AddReader(r)
	}
	e := start(t, b, slotmgr.Options{NoPINPad: true, RetryInterval: time.Millisecond})
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			ctx := context.Background()
			for {
				select {
				case <-stop:
					return
				default:
				}
				for _, x := range e.m.Slots() {
					if y, ok := e.m.Slot(x.ID); !ok || y.Reader != x.Reader {
						t.Errorf("Slot(%d) = %+v, %v", x.ID, y, ok)
						return
					}
					if x.Present {
						// Use a possibly stale conn: it either works or says removed.
						if _, err := x.Conn.Transmit(ctx, []byte{0, 0xCA, 0, 0}); err != nil &&
							!errors.Is(err, slotmgr.ErrTokenRemoved) && !errors.Is(err, slotmgrtest.ErrRemoved) &&
							!errors.Is(err, slotmgrtest.ErrNoService) && !errors.Is(err, slotmgrtest.ErrInvalidHandle) {
							t.Errorf("transmit: %v", err)
						}
					}
				}
				if g%2 == 0 { // concurrent Rescans race the watcher and each other
					if err := e.m.Rescan(ctx); err != nil {
						t.Errorf("Rescan: %v", err)
						return
					}
				}
			}
		}(g)
	}
	ids := map[string]uint64{}
	for i := 0; i < 60; i++ {
		r := readers[i%len(readers)]
		switch i % 6 {
		case 0, 1:
			_ = b.Insert(r, slotmgrtest.NewCard(atrGood))
		case 2:
			b.Remove(r)
		case 3:
			_ = b.Swap(r, slotmgrtest.NewCard(atrGood2))
		case 4:
			b.RemoveReader(r)
			b.AddReader(r)
		case 5:
			if i%12 == 5 {
				b.Stop()
				b.Start()
			}
		}
		for _, x := range e.m.Slots() {
			if id, ok := ids[x.Reader]; ok && id != x.ID {
				t.Errorf("reader %q moved from slot %d to %d", x.Reader, id, x.ID)
			}
			ids[x.Reader] = x.ID
		}
	}
	close(stop)
	wg.Wait()
	// Settle: a final state every watcher agrees on.
	for _, r := range readers {
		_ = b.Insert(r, slotmgrtest.NewCard(atrGood))
	}
	e.waitFor("all present", func(s []slotmgr.SlotInfo) bool {
		return len(s) == 3 && present("A")(s) && present("B")(s) && present("C")(s)
	})
}

// blind is a backend whose Wait never reports anything (only ctx ends it): the Poll
// fallback must still notice changes.
type blind struct{ *slotmgrtest.Backend }

type blindCtx struct{ slotmgr.Context }

func (b blind) Establish(ctx context.Context) (slotmgr.Context, error) {
	c, err := b.Backend.Establish(ctx)
	if err != nil {
		return nil, err
	}
	return blindCtx{c}, nil
}

func (blindCtx) Wait(ctx context.Context, known []slotmgr.ReaderState) ([]slotmgr.ReaderState, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}

func TestPollFallback(t *testing.T) {
	fb := slotmgrtest.New()
	fb.AddReader("R")
	m := slotmgr.New(blind{fb}, slotmgr.Options{NoPINPad: true, Poll: time.Millisecond, Bind: newBinder().bind})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := m.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if err := fb.Insert("R", slotmgrtest.NewCard(atrGood)); err != nil {
		t.Fatal(err)
	}
	for {
		n := m.Counter()
		if s := m.Slots(); len(s) == 1 && s[0].Present {
			return
		}
		if _, err := m.WaitChange(ctx, n); err != nil {
			t.Fatalf("poll fallback never saw the card: %v", err)
		}
	}
}

// Rescan reads through a context of its own: the watcher's Wait is left alone, and
// nothing reaches the card.
func TestRescanLeavesWatcherAlone(t *testing.T) {
	b := slotmgrtest.New()
	b.AddReader("R")
	card := slotmgrtest.NewCard(atrGood)
	if err := b.Insert("R", card); err != nil {
		t.Fatal(err)
	}
	e := start(t, b, slotmgr.Options{NoPINPad: true})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// Let the watcher settle into its Wait on the bound state.
	if err := e.m.Rescan(ctx); err != nil {
		t.Fatal(err)
	}
	counter, cmds := e.m.Counter(), card.Commands()
	for i := 0; i < 20; i++ {
		if err := e.m.Rescan(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if e.m.Counter() != counter {
		t.Errorf("Rescans without events changed the table (%d → %d)", counter, e.m.Counter())
	}
	if card.Commands() != cmds || e.bd.count() != 1 {
		t.Errorf("Rescan talked to the card: %d commands, %d binds", card.Commands()-cmds, e.bd.count())
	}
	if st := b.Stats(); st.Contexts > 3 {
		t.Errorf("%d contexts open (watcher, Rescan, card)", st.Contexts)
	}
}

func TestConnReportsReset(t *testing.T) {
	b := slotmgrtest.New()
	b.AddReader("R")
	if err := b.Insert("R", slotmgrtest.NewCard(atrGood)); err != nil {
		t.Fatal(err)
	}
	e := start(t, b, slotmgr.Options{NoPINPad: true})
	x, _ := find(e.m.Slots(), "R")
	ctx := context.Background()
	b.ResetCard("R")
	unlock, reset, err := x.Conn.Lock(ctx)
	if err != nil || !reset {
		t.Fatalf("Lock after reset: %v, reset %v", err, reset)
	}
	unlock()
	unlock() // twice is harmless
	if unlock, reset, err = x.Conn.Lock(ctx); err != nil || reset {
		t.Fatalf("second Lock: %v, reset %v", err, reset)
	}
	unlock()
	// A reset by another application is not a new card: same generation.
	if err := e.m.Rescan(ctx); err != nil {
		t.Fatal(err)
	}
	if y, _ := find(e.m.Slots(), "R"); y.Gen != x.Gen || !y.Present {
		t.Errorf("after reset: %+v (gen was %d)", y, x.Gen)
	}
}

// featured wraps the fake so its cards list features the way pcsc.Card does.
type featured struct {
	*slotmgrtest.Backend
	f   pcsc.Features
	err error
}

type featuredCtx struct {
	slotmgr.Context
	b *featured
}

type featuredCard struct {
	slotmgr.Card
	b *featured
}

func (b *featured) Establish(ctx context.Context) (slotmgr.Context, error) {
	c, err := b.Backend.Establish(ctx)
	if err != nil {
		return nil, err
	}
	return featuredCtx{c, b}, nil
}

func (c featuredCtx) Connect(ctx context.Context, r string) (slotmgr.Card, error) {
	k, err := c.Context.Connect(ctx, r)
	if err != nil {
		return nil, err
	}
	return featuredCard{k, c.b}, nil
}

func (k featuredCard) Features(ctx context.Context) (pcsc.Features, error) { return k.b.f, k.b.err }

func TestPINPadFromFeatureReader(t *testing.T) {
	for _, tc := range []struct {
		name   string
		f      pcsc.Features
		err    error
		pad    bool
		verify uint32
	}{
		{"verify direct", pcsc.Features{pcsc.FeatureVerifyPINDirect: 0x42330006, pcsc.FeatureModifyPINDirect: 0x42330007}, nil, true, 0x42330006},
		{"none", pcsc.Features{}, nil, false, 0},
		{"error", nil, errors.New("reader gone"), false, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fb := slotmgrtest.New()
			fb.AddReader("R")
			if err := fb.Insert("R", slotmgrtest.NewCard(atrGood)); err != nil {
				t.Fatal(err)
			}
			m := slotmgr.New(&featured{fb, tc.f, tc.err}, slotmgr.Options{Bind: newBinder().bind})
			if err := m.Start(context.Background()); err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			x, _ := find(m.Slots(), "R")
			if !x.Present || x.PINPad != tc.pad || x.PINVerify != tc.verify {
				t.Errorf("slot: %+v", x)
			}
		})
	}
}

// After Rescan returns, the table shows at least what the service showed when Rescan was
// called, even with other Rescans and the watcher reading at the same time.
func TestRescanIsCurrent(t *testing.T) {
	b := slotmgrtest.New()
	b.AddReader("R")
	b.AddReader("N")
	e := start(t, b, slotmgr.Options{NoPINPad: true})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for g := 0; g < 2; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				if i%2 == 0 {
					_ = b.Insert("N", slotmgrtest.NewCard(atrGood2))
				} else {
					b.Remove("N")
				}
				if err := e.m.Rescan(ctx); err != nil {
					t.Errorf("Rescan: %v", err)
					return
				}
			}
		}()
	}
	for i := 0; i < 100; i++ {
		want := i%2 == 0
		if want {
			if err := b.Insert("R", slotmgrtest.NewCard(atrGood)); err != nil {
				t.Fatal(err)
			}
		} else {
			b.Remove("R")
		}
		if err := e.m.Rescan(ctx); err != nil {
			t.Fatal(err)
		}
		x, _ := find(e.m.Slots(), "R")
		if x.CardPresent != want || x.Present != want {
			t.Fatalf("round %d: after Rescan: %+v, want card %v", i, x, want)
		}
	}
	close(stop)
	wg.Wait()
}

// Rescans racing Close return (nil or ErrClosed), never hang.
func TestRescanRacingClose(t *testing.T) {
	for i := 0; i < 20; i++ {
		b := slotmgrtest.New()
		b.AddReader("R")
		if i%2 == 1 {
			b.Stop() // Rescan goes through the watcher
		}
		m := slotmgr.New(b, slotmgr.Options{NoPINPad: true, Bind: newBinder().bind})
		if err := m.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 4)
		for g := 0; g < 4; g++ {
			go func() { done <- m.Rescan(context.Background()) }()
		}
		if err := m.Close(); err != nil {
			t.Fatal(err)
		}
		for g := 0; g < 4; g++ {
			if err := <-done; err != nil && !errors.Is(err, slotmgr.ErrClosed) {
				t.Errorf("Rescan during Close: %v", err)
			}
		}
		if st := b.Stats(); st.Contexts != 0 || st.Handles != 0 {
			t.Errorf("after Close: %+v", st)
		}
	}
}

// Settled lets a test wait for the watcher itself (no Rescan): once the watcher blocks
// on the current world, the table shows it.
func TestSettled(t *testing.T) {
	b := slotmgrtest.New()
	b.AddReader("R")
	e := start(t, b, slotmgr.Options{NoPINPad: true})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	b.RemoveReader("R")
	if err := b.Settled(ctx); err != nil {
		t.Fatal(err)
	}
	if s := e.m.Slots(); len(s) != 0 {
		t.Errorf("after the watcher settled: %s", dump(s))
	}
	b.AddReader("R")
	if err := b.Settled(ctx); err != nil {
		t.Fatal(err)
	}
	if s := e.m.Slots(); len(s) != 1 || s[0].ID != 1 {
		t.Errorf("after the watcher settled: %s", dump(s))
	}
}

// The watcher starts watching for events only FirstWait after Start, or as soon as
// someone waits for a change; a Rescan meanwhile reads on its own, and Close does not
// wait the delay out.
func TestFirstWaitDelayed(t *testing.T) {
	b := slotmgrtest.New()
	b.AddReader("R")
	if err := b.Insert("R", slotmgrtest.NewCard(atrGood)); err != nil {
		t.Fatal(err)
	}
	e := start(t, b, slotmgr.Options{NoPINPad: true, FirstWait: time.Hour})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	b.AddReader("S")
	if err := e.m.Rescan(ctx); err != nil {
		t.Fatal(err)
	}
	if s := e.m.Slots(); len(s) != 2 || !s[0].Present {
		t.Fatalf("after Rescan: %s", dump(s))
	}
	if n := b.Stats().Waits; n != 0 {
		t.Fatalf("%d Waits before anyone waited for a change", n)
	}
	// A change waited for: the watch begins (Settled: a Wait is blocked on the world as it
	// is), and sees the removal.
	since := e.m.Counter()
	got := make(chan error, 1)
	go func() {
		_, err := e.m.WaitChange(ctx, since)
		got <- err
	}()
	if err := b.Settled(ctx); err != nil {
		t.Fatalf("no Wait after WaitChange: %v", err)
	}
	b.Remove("R")
	if err := <-got; err != nil {
		t.Fatal(err)
	}
	e.waitFor("the removal", empty("R"))

	// A second manager, closed during the delay: Close returns (the cleanup checks that
	// every context was released).
	b2 := slotmgrtest.New()
	b2.AddReader("R")
	e2 := start(t, b2, slotmgr.Options{NoPINPad: true, FirstWait: time.Hour})
	if err := e2.m.Close(); err != nil {
		t.Fatal(err)
	}
	if n := b2.Stats().Waits; n != 0 {
		t.Errorf("%d Waits in a manager closed during the delay", n)
	}
}

// TestRescanFresh: a Rescan within Options.Fresh of the last read answers from it (a card
// inserted since shows at the next read); past it, or with the service down at that read,
// Rescan reads again.
func TestRescanFresh(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rescan := func(e *env) bool {
		t.Helper()
		if err := e.m.Rescan(ctx); err != nil {
			t.Fatal(err)
		}
		x, _ := find(e.m.Slots(), "R")
		return x.Present
	}

	b := slotmgrtest.New()
	b.AddReader("R")
	e := start(t, b, slotmgr.Options{NoPINPad: true, Fresh: time.Hour})
	if err := b.Insert("R", slotmgrtest.NewCard(atrGood)); err != nil {
		t.Fatal(err)
	}
	if rescan(e) {
		t.Error("Rescan within Fresh read the states again")
	}

	b = slotmgrtest.New()
	b.AddReader("R")
	e = start(t, b, slotmgr.Options{NoPINPad: true, Fresh: time.Millisecond})
	time.Sleep(5 * time.Millisecond)
	if err := b.Insert("R", slotmgrtest.NewCard(atrGood)); err != nil {
		t.Fatal(err)
	}
	if !rescan(e) {
		t.Error("Rescan past Fresh answered from the old read")
	}

	b = slotmgrtest.New()
	b.AddReader("R")
	b.Stop()
	e = start(t, b, slotmgr.Options{NoPINPad: true, Fresh: time.Hour})
	b.Start()
	if err := b.Insert("R", slotmgrtest.NewCard(atrGood)); err != nil {
		t.Fatal(err)
	}
	if !rescan(e) {
		t.Error("Rescan with the service down at the last read did not read again")
	}
}

// TestStartBindsInline: the cards Start finds are bound before it returns, the last of
// them in Start's own goroutine (no hand-off for a caller locked to its thread); a card
// that comes later is bound in a goroutine of its own.
func TestStartBindsInline(t *testing.T) {
	b := slotmgrtest.New()
	b.AddReader("R")
	b.AddReader("S")
	if err := b.Insert("R", slotmgrtest.NewCard(atrGood)); err != nil {
		t.Fatal(err)
	}
	if err := b.Insert("S", slotmgrtest.NewCard(atrGood2)); err != nil {
		t.Fatal(err)
	}
	bd := newBinder()
	var mu sync.Mutex
	inStart := map[string]bool{}
	bind := func(ctx context.Context, c cards.Conn, atr []byte) (cards.Token, error) {
		st := make([]byte, 64<<10)
		st = st[:runtime.Stack(st, false)]
		mu.Lock()
		inStart[fmt.Sprintf("%X", atr)] = bytes.Contains(st, []byte("slotmgr.(*Manager).Start("))
		mu.Unlock()
		return bd.bind(ctx, c, atr)
	}
	e := start(t, b, slotmgr.Options{NoPINPad: true, Bind: bind})
	for _, r := range []string{"R", "S"} {
		if x, _ := find(e.m.Slots(), r); !x.Present {
			t.Fatalf("%s not bound when Start returned: %+v", r, x)
		}
	}
	mu.Lock()
	if len(inStart) != 2 || inStart[fmt.Sprintf("%X", atrGood)] == inStart[fmt.Sprintf("%X", atrGood2)] {
		t.Errorf("binds in Start's goroutine: %v, want one of the two", inStart)
	}
	mu.Unlock()

	b.Remove("R")
	if err := e.m.Rescan(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := b.Insert("R", slotmgrtest.NewCard(atrGood)); err != nil {
		t.Fatal(err)
	}
	if err := e.m.Rescan(context.Background()); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if inStart[fmt.Sprintf("%X", atrGood)] {
		t.Error("a card inserted later was bound as in Start")
	}
}

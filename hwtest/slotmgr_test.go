//go:build hwtest

package hwtest

import (
	"context"
	"errors"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/p11-card/p11-card/cards"
	"github.com/p11-card/p11-card/cards/openpgp/pgptest"
	_ "github.com/p11-card/p11-card/cards/piv" // registers the PIV driver
	"github.com/p11-card/p11-card/cards/piv/pivtest"
	"github.com/p11-card/p11-card/cards/vcard"
	"github.com/p11-card/p11-card/pcsc"
	"github.com/p11-card/p11-card/slotmgr"
)

// smReader is the rig reader the slot manager tests use (a "Virtual PCD" one).
const smReader = 2

func smNewPIV(t *testing.T, serial uint32) *pivtest.Card {
	t.Helper()
	c, err := pivtest.New(pivtest.Options{Serial: serial})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// smStart runs a slot manager over the rig's pcscd; Close at cleanup.
func smStart(t *testing.T) *slotmgr.Manager {
	t.Helper()
	testRig(t)
	m := slotmgr.New(slotmgr.NewPCSC(), slotmgr.Options{
		Logf: func(f string, a ...any) { t.Logf(f, a...) },
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := m.Start(ctx); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		if err := m.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return m
}

// smWaitSlots waits (on change notifications, never by sleeping) until pred holds for the
// slot table.
func smWaitSlots(t *testing.T, m *slotmgr.Manager, what string, pred func([]slotmgr.SlotInfo) bool) []slotmgr.SlotInfo {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for {
		n, err := m.WaitChange(ctx, 0)
		if err != nil {
			t.Fatalf("waiting for %s: %v", what, err)
		}
		if s := m.Slots(); pred(s) {
			return s
		}
		if _, err := m.WaitChange(ctx, n); err != nil {
			t.Fatalf("waiting for %s: %v (slots %+v)", what, err, m.Slots())
		}
	}
}

// smWaitSlot waits until the slot of reader name satisfies pred.
func smWaitSlot(t *testing.T, m *slotmgr.Manager, name, what string, pred func(slotmgr.SlotInfo) bool) slotmgr.SlotInfo {
	t.Helper()
	var found slotmgr.SlotInfo
	smWaitSlots(t, m, what+" on "+name, func(s []slotmgr.SlotInfo) bool {
		for _, x := range s {
			if x.Reader == name && pred(x) {
				found = x
				return true
			}
		}
		return false
	})
	return found
}

func smBound(s slotmgr.SlotInfo) bool { return s.Present }

func TestSlotmgrSeesRigReaders(t *testing.T) {
	r := testRig(t)
	card := smNewPIV(t, 11111111)
	insert(t, smReader, card)
	m := smStart(t)
	s := m.Slots()
	if len(s) != r.Readers() {
		t.Fatalf("%d slots, rig has %d readers: %+v", len(s), r.Readers(), s)
	}
	names := map[string]uint64{}
	for i, x := range s {
		if x.ID != uint64(i+1) {
			t.Errorf("slot %d has ID %d", i, x.ID)
		}
		names[x.Reader] = x.ID
	}
	for i := 0; i < r.Readers(); i++ {
		if _, ok := names[r.ReaderName(i)]; !ok {
			t.Errorf("no slot for %q", r.ReaderName(i))
		}
	}
	// Start saw the card already present and bound it.
	x, _ := m.Slot(names[r.ReaderName(smReader)])
	if !x.Present || x.Token == nil || x.Token.Info().Driver != "piv" || x.Gen == 0 {
		t.Fatalf("card present at Start: %+v", x)
	}
	t.Logf("token: %+v PIN pad %v", x.Token.Info(), x.PINPad)
}

func TestSlotmgrInsertRemoveSwap(t *testing.T) {
	r := testRig(t)
	m := smStart(t)
	name := r.ReaderName(smReader)

	log := &vcard.Log{}
	insert(t, smReader, vcard.WithLog(smNewPIV(t, 22222222), log))
	a := smWaitSlot(t, m, name, "token", smBound)
	if a.Token.Info().Driver != "piv" {
		t.Fatalf("driver %q", a.Token.Info().Driver)
	}
	t.Logf("binding a PIV card took %d APDUs", log.Count())

	// A token operation works through the slot's Conn.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := a.Token.PINStatus(ctx, cards.RoleUser); err != nil {
		t.Errorf("PINStatus: %v", err)
	}

	// Swap: remove and insert another card; a new generation, the old Conn is dead.
	remove(t, smReader)
	insert(t, smReader, smNewPIV(t, 33333333))
	b := smWaitSlot(t, m, name, "new token", func(s slotmgr.SlotInfo) bool { return s.Present && s.Gen != a.Gen })
	if b.ID != a.ID || b.Gen <= a.Gen {
		t.Errorf("after swap: ID %d gen %d (was %d, %d)", b.ID, b.Gen, a.ID, a.Gen)
	}
	if b.Token.Info().Serial == a.Token.Info().Serial {
		t.Errorf("same serial %q after swap", b.Token.Info().Serial)
	}
	select {
	case <-a.Removed:
	default:
		t.Error("old generation's Removed still open")
	}
	if _, err := a.Conn.Transmit(ctx, []byte{0x00, 0xCB, 0x3F, 0xFF, 0x00}); !errors.Is(err, slotmgr.ErrTokenRemoved) {
		t.Errorf("old conn after swap: %v", err)
	}
	if _, err := b.Token.PINStatus(ctx, cards.RoleUser); err != nil {
		t.Errorf("PINStatus on the new card: %v", err)
	}

	// Removal-to-event latency, several times (reported, not asserted).
	var lat, afterPCSCD, bindLat []time.Duration
	for i := 0; i < 5; i++ {
		cur := smWaitSlot(t, m, name, "token", smBound)
		t0 := time.Now()
		remove(t, smReader)
		t1 := time.Now() // pcscd reports the reader empty
		<-cur.Removed
		t2 := time.Now()
		lat = append(lat, t2.Sub(t0))
		afterPCSCD = append(afterPCSCD, t2.Sub(t1))
		x := smWaitSlot(t, m, name, "empty", func(s slotmgr.SlotInfo) bool { return !s.CardPresent })
		if x.Present || x.Gen != 0 {
			t.Errorf("after removal: %+v", x)
		}
		if i < 4 {
			insert(t, smReader, smNewPIV(t, uint32(44444440+i)))
			t3 := time.Now() // pcscd reports the card present
			smWaitSlot(t, m, name, "token", smBound)
			bindLat = append(bindLat, time.Since(t3))
		}
	}
	t.Logf("insertion → token bound (after pcscd reported the card): %v", bindLat)
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	t.Logf("removal → slot event latency (socket close to Removed closed): min %v median %v max %v",
		lat[0], lat[len(lat)/2], lat[len(lat)-1])
	t.Logf("event after rig.Remove returned (pcscd reported empty): %v", afterPCSCD)
}

func TestSlotmgrUnknownCard(t *testing.T) {
	r := testRig(t)
	m := smStart(t)
	insert(t, smReader, smUnknownCard{})
	x := smWaitSlot(t, m, r.ReaderName(smReader), "unbound card", func(s slotmgr.SlotInfo) bool {
		return s.CardPresent && !s.Binding && (s.Present || s.Err != nil)
	})
	if x.Present || !errors.Is(x.Err, cards.ErrNotRecognized) {
		t.Errorf("unknown card: %+v", x)
	}
}

func TestSlotmgrPCSCDRestart(t *testing.T) {
	r := testRig(t)
	insert(t, smReader, smNewPIV(t, 55555555))
	m := smStart(t)
	name := r.ReaderName(smReader)
	before := m.Slots()
	a := smWaitSlot(t, m, name, "token", smBound)

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	t0 := time.Now()
	if err := r.RestartPCSCD(ctx); err != nil {
		t.Fatalf("RestartPCSCD: %v", err)
	}
	<-a.Removed // the old generation ended with the old pcscd
	b := smWaitSlot(t, m, name, "token after restart", func(s slotmgr.SlotInfo) bool {
		return s.Present && s.Gen != a.Gen
	})
	t.Logf("token back %v after the restart began", time.Since(t0))
	if b.ID != a.ID {
		t.Errorf("slot ID %d → %d across the restart", a.ID, b.ID)
	}
	smWaitSlots(t, m, "all readers back", func(s []slotmgr.SlotInfo) bool { return len(s) == len(before) })
	ids := map[string]uint64{}
	for _, s := range before {
		ids[s.Reader] = s.ID
	}
	for _, s := range m.Slots() {
		if ids[s.Reader] != s.ID {
			t.Errorf("reader %q: slot %d before the restart, %d after", s.Reader, ids[s.Reader], s.ID)
		}
	}
	if _, err := a.Conn.Transmit(ctx, []byte{0x00, 0xCB, 0x3F, 0xFF, 0x00}); err == nil {
		t.Error("old conn works after pcscd restart")
	}
	if _, err := b.Token.PINStatus(ctx, cards.RoleUser); err != nil {
		t.Errorf("PINStatus after restart: %v", err)
	}
	if m.ServiceErr() != nil {
		t.Errorf("ServiceErr after restart: %v", m.ServiceErr())
	}
}

// smUnknownCard answers every command with 6D00 (no PIV, no OpenPGP applet).
type smUnknownCard struct{}

func (smUnknownCard) ATR() []byte { return []byte{0x3B, 0x02, 0x14, 0x50} }
func (smUnknownCard) Reset()      {}
func (smUnknownCard) Transmit(ctx context.Context, cmd []byte) ([]byte, error) {
	return []byte{0x6A, 0x82}, nil
}

// Rescan (what C_GetSlotList calls) answers for the moment of the call: right after the
// rig reports a change through pcscd, the table shows it without waiting.
func TestSlotmgrRescanIsCurrent(t *testing.T) {
	r := testRig(t)
	m := smStart(t)
	name := r.ReaderName(smReader)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	slotOf := func() slotmgr.SlotInfo {
		for _, s := range m.Slots() {
			if s.Reader == name {
				return s
			}
		}
		t.Fatalf("no slot for %q", name)
		return slotmgr.SlotInfo{}
	}
	for i := 0; i < 3; i++ {
		insert(t, smReader, smNewPIV(t, uint32(66666660+i)))
		if err := m.Rescan(ctx); err != nil {
			t.Fatal(err)
		}
		if s := slotOf(); !s.Present {
			t.Fatalf("round %d: after insert + Rescan: %+v", i, s)
		}
		remove(t, smReader)
		if err := m.Rescan(ctx); err != nil {
			t.Fatal(err)
		}
		if s := slotOf(); s.CardPresent || s.Present {
			t.Fatalf("round %d: after remove + Rescan: %+v", i, s)
		}
	}

	// What a Rescan (each C_GetSlotList) costs when nothing changed.
	insert(t, smReader, smNewPIV(t, 66666669))
	if err := m.Rescan(ctx); err != nil {
		t.Fatal(err)
	}
	held := slotOf()
	const n = 20
	before := pcsc.Stats()
	t0 := time.Now()
	for i := 0; i < n; i++ {
		if err := m.Rescan(ctx); err != nil {
			t.Fatal(err)
		}
	}
	el := time.Since(t0)
	d := pcsc.Stats().Sub(before)
	if d.Transmit != 0 || d.Connect != 0 {
		t.Errorf("Rescan talked to the card: %+v", d)
	}
	// Our connection keeps the reader "in use": no read mistakes it for a lost one.
	if s := slotOf(); !s.Present || s.Gen != held.Gen {
		t.Errorf("generation moved across Rescans without an event: %d → %+v", held.Gen, s)
	}
	t.Logf("Rescan with nothing changed: %v each, %.1f PC/SC calls each (%+v over %d)", el/n, float64(d.Total())/n, d, n)
}

// What Start and the first Rescan (C_Initialize, then C_GetSlotList) cost with a card in
// a reader: the watcher's listing context and the card's own, and at most the watcher's
// Wait context besides. The bind opens no context to connect through, Start reads
// through the watcher, and Rescan through the watcher's listing context.
func TestSlotmgrStartContexts(t *testing.T) {
	r := testRig(t)
	insert(t, smReader, smNewPIV(t, 66666670))
	before := pcsc.Stats()
	m := smStart(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := m.Rescan(ctx); err != nil {
		t.Fatal(err)
	}
	d := pcsc.Stats().Sub(before)
	bound := false
	for _, s := range m.Slots() {
		bound = bound || s.Reader == r.ReaderName(smReader) && s.Present
	}
	if !bound {
		t.Fatalf("no token after Start: %+v", m.Slots())
	}
	if d.Establish > 3 || d.Connect != 1 {
		t.Errorf("Start and Rescan: %d contexts, %d connections; want ≤ 3 and 1 (%+v)", d.Establish, d.Connect, d)
	}
	t.Logf("Start and Rescan: %d PC/SC calls (%+v)", d.Total(), d)
}

// An OpenPGP card in a YubiKey's reader is tried as PIV first (its ATR names the
// YubiKey), and the OpenPGP driver takes it in the same transaction: the bind costs one
// SCardBeginTransaction.
func TestSlotmgrSecondDriverOneTransaction(t *testing.T) {
	testRig(t)
	c, err := pgptest.New(pgptest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	insert(t, smReader, c)
	before := pcsc.Stats()
	m := smStart(t)
	d := pcsc.Stats().Sub(before)
	var model string
	for _, s := range m.Slots() {
		if s.Present {
			model = s.Token.Info().Model
		}
	}
	if !strings.Contains(model, "OpenPGP") {
		t.Fatalf("bound %q: %+v", model, m.Slots())
	}
	if d.BeginTransaction != 1 || d.EndTransaction != 1 {
		t.Errorf("bind: %d transactions begun, %d ended; want 1 (%+v)", d.BeginTransaction, d.EndTransaction, d)
	}
}

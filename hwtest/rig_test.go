//go:build hwtest

package hwtest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/p11-card/p11-card/cards/piv/pivtest"
	"github.com/p11-card/p11-card/cards/vcard"
	"github.com/p11-card/p11-card/pcsc"
)

// rigCard is the simplest card: it holds no application (SELECT answers 6A82, so no
// driver takes it), answers every other command with the command's header and 9000, and
// counts resets.
type rigCard struct {
	atr    []byte
	resets atomic.Int32
	cmds   atomic.Int32
}

func newRigCard() *rigCard {
	return &rigCard{atr: []byte{0x3B, 0x8C, 0x80, 0x01, 0x50, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xAA, 0xBB, 0xCC, 0x46}}
}

func (c *rigCard) ATR() []byte { return c.atr }
func (c *rigCard) Reset()      { c.resets.Add(1) }
func (c *rigCard) Transmit(ctx context.Context, cmd []byte) ([]byte, error) {
	c.cmds.Add(1)
	if len(cmd) < 4 {
		return []byte{0x67, 0x00}, nil
	}
	if cmd[1] == 0xA4 {
		return []byte{0x6A, 0x82}, nil // ISO/IEC 7816-4: file or application not found
	}
	return append(append([]byte(nil), cmd[:4]...), 0x90, 0x00), nil
}

// rigPCSC is a PC/SC context on the shared rig, closed at cleanup.
func rigPCSC(t *testing.T) *pcsc.Context {
	t.Helper()
	testRig(t)
	c, err := pcsc.Establish(context.Background())
	if err != nil {
		t.Fatalf("Establish: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func rigConnect(t *testing.T, c *pcsc.Context, reader string) *pcsc.Card {
	t.Helper()
	k, err := c.Connect(context.Background(), reader)
	if err != nil {
		t.Fatalf("connect %q: %v", reader, err)
	}
	t.Cleanup(func() { k.Close() })
	return k
}

func rigState(t *testing.T, c *pcsc.Context, reader string) pcsc.ReaderState {
	t.Helper()
	st, err := c.Status(context.Background(), []string{reader})
	if err != nil {
		t.Fatalf("status %q: %v", reader, err)
	}
	return st[0]
}

func rigTransmit(k *pcsc.Card, cmd []byte) ([]byte, error) {
	return k.Transmit(context.Background(), cmd)
}

func TestRigReaders(t *testing.T) {
	r := testRig(t)
	sc := rigPCSC(t)
	got, err := sc.Readers(context.Background())
	if err != nil {
		t.Fatalf("ListReaders: %v", err)
	}
	want := []string{yubicoReaderName + " 00 00", yubicoReaderName + " 00 01", vpcdReaderName + " 00 00", vpcdReaderName + " 00 01"}
	for i, w := range want {
		if r.ReaderName(i) != w {
			t.Errorf("ReaderName(%d) = %q, want %q", i, r.ReaderName(i), w)
		}
	}
	if !slices.Equal(got, want) {
		t.Errorf("pcscd lists %q, want %q", got, want)
	}
	out := runTool(t, "opensc-tool", "--list-readers")
	for _, w := range want {
		if !strings.Contains(out, w) {
			t.Errorf("opensc-tool -l does not show %q:\n%s", w, out)
		}
	}
}

func TestRigInsertRemove(t *testing.T) {
	r := testRig(t)
	sc := rigPCSC(t)
	for _, i := range []int{0, 3} {
		reader := r.ReaderName(i)
		c := newRigCard()
		insert(t, i, c)
		if st := rigState(t, sc, reader); !st.Present || !bytes.Equal(st.ATR, c.ATR()) {
			t.Fatalf("after Insert, %q: %v; want present with %X", reader, st, c.ATR())
		}
		// A client program in another process sees it too.
		out := runTool(t, "opensc-tool", "--reader", fmt.Sprint(i), "--atr")
		if !strings.Contains(strings.ToLower(strings.ReplaceAll(out, ":", "")), fmt.Sprintf("%x", c.ATR())) {
			t.Errorf("opensc-tool --atr on reader %d:\n%s", i, out)
		}
		k := rigConnect(t, sc, reader)
		resp, err := rigTransmit(k, []byte{0x00, 0xCA, 0x01, 0x02, 0x00})
		if err != nil || !bytes.Equal(resp, []byte{0x00, 0xCA, 0x01, 0x02, 0x90, 0x00}) {
			t.Errorf("transmit: %X, %v", resp, err)
		}
		k.Close()
		if err := r.Insert(context.Background(), i, newRigCard()); err == nil {
			t.Errorf("second Insert into reader %d succeeded", i)
		}
		remove(t, i)
		if st := rigState(t, sc, reader); !st.Empty {
			t.Errorf("after Remove, %q: %v; want empty", reader, st)
		}
		if r.Present(i) {
			t.Errorf("Present(%d) after Remove", i)
		}
	}
	if err := r.Insert(context.Background(), 4, newRigCard()); err == nil {
		t.Errorf("Insert into reader 4 of 4 succeeded")
	}
}

func TestRigResetControl(t *testing.T) {
	r := testRig(t)
	sc := rigPCSC(t)
	c := newRigCard()
	insert(t, 1, c)
	k := rigConnect(t, sc, r.ReaderName(1))
	before := c.resets.Load()
	if err := k.Reconnect(context.Background(), true); err != nil {
		t.Fatalf("reconnect with reset: %v", err)
	}
	if c.resets.Load() <= before {
		t.Errorf("a reset through pcscd did not reach the card (resets %d → %d)", before, c.resets.Load())
	}
	if _, err := rigTransmit(k, []byte{0x00, 0xA4, 0x04, 0x00, 0x00}); err != nil {
		t.Errorf("transmit after reset: %v", err)
	}
}

func TestRigFaultRemoval(t *testing.T) {
	r := testRig(t)
	sc := rigPCSC(t)
	f := &vcard.Faults{RemoveAt: 2}
	insert(t, 2, vcard.WithFaults(newRigCard(), f))
	k := rigConnect(t, sc, r.ReaderName(2))
	if _, err := rigTransmit(k, []byte{0x00, 0xA4, 0x04, 0x00, 0x00}); err != nil {
		t.Fatalf("first command: %v", err)
	}
	// vpcd turns the closed socket into an empty answer (no status word); a client
	// sees either that or an error, never a response APDU.
	if resp, err := rigTransmit(k, []byte{0x00, 0xA4, 0x04, 0x00, 0x00}); err == nil && len(resp) >= 2 {
		t.Fatalf("the command at which the card leaves was answered: %X", resp)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		if rigState(t, sc, r.ReaderName(2)).Empty {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("pcscd never saw the card leave")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if r.Present(2) {
		t.Errorf("rig says reader 2 still holds the card")
	}
	// The reader takes a card again.
	c := newRigCard()
	if err := r.Insert(ctx, 2, c); err != nil {
		t.Fatalf("insert after removal: %v", err)
	}
	if st := rigState(t, sc, r.ReaderName(2)); !st.Present || !bytes.Equal(st.ATR, c.ATR()) {
		t.Errorf("after re-insert: %v", st)
	}
}

func TestRigRestartPCSCD(t *testing.T) {
	r := testRig(t)
	c := newRigCard()
	insert(t, 0, c)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	start := time.Now()
	if err := r.RestartPCSCD(ctx); err != nil {
		t.Fatalf("RestartPCSCD: %v", err)
	}
	t.Logf("pcscd restarted in %v", time.Since(start).Round(time.Millisecond))
	sc := rigPCSC(t) // contexts from before the restart are dead
	if st := rigState(t, sc, r.ReaderName(0)); !st.Present || !bytes.Equal(st.ATR, c.ATR()) {
		t.Fatalf("after restart: %v", st)
	}
	k := rigConnect(t, sc, r.ReaderName(0))
	if _, err := rigTransmit(k, []byte{0x00, 0xA4, 0x04, 0x00, 0x00}); err != nil {
		t.Errorf("transmit after restart: %v", err)
	}
	if names, err := sc.Readers(context.Background()); err != nil || len(names) != r.Readers() {
		t.Errorf("readers after restart: %q, %v", names, err)
	}
}

// TestRigRoundTrip measures one APDU's round trip through pcscd and vpcd. Without
// TCP_QUICKACK renewed after every read it is ~55 ms (delayed ACKs); it must be far less.
func TestRigRoundTrip(t *testing.T) {
	r := testRig(t)
	sc := rigPCSC(t)
	insert(t, 3, newRigCard())
	k := rigConnect(t, sc, r.ReaderName(3))
	cmd := []byte{0x00, 0xCA, 0x00, 0x00, 0x00}
	for i := 0; i < 10; i++ { // warm up
		rigTransmit(k, cmd)
	}
	const n = 300
	start := time.Now()
	for i := 0; i < n; i++ {
		if _, err := rigTransmit(k, cmd); err != nil {
			t.Fatalf("transmit %d: %v", i, err)
		}
	}
	per := time.Since(start) / n
	t.Logf("APDU round trip through pcscd: %v (mean of %d)", per, n)
	if os.Getenv("P11CARD_RIG_RTT_FILE") != "" {
		os.WriteFile(os.Getenv("P11CARD_RIG_RTT_FILE"), []byte(per.String()+"\n"), 0o644)
	}
	if per > 10*time.Millisecond {
		t.Errorf("APDU round trip %v: delayed ACKs are back (want well under 10 ms)", per)
	}
}

// TestCLIReaders runs `p11-card readers` against the rig.
func TestCLIReaders(t *testing.T) {
	r := testRig(t)
	bin := p11card(t)
	c := newRigCard()
	insert(t, 2, c)
	out := runTool(t, bin, "readers", "--json")
	var doc struct {
		Readers []struct {
			Slot        uint64 `json:"slot"`
			Name        string `json:"name"`
			CardPresent bool   `json:"card_present"`
			ATR         string `json:"atr"`
			Error       string `json:"error"`
		} `json:"readers"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("readers --json: %v\n%s", err, out)
	}
	if len(doc.Readers) != r.Readers() {
		t.Fatalf("%d readers, want %d:\n%s", len(doc.Readers), r.Readers(), out)
	}
	for i, rd := range doc.Readers {
		if rd.Name != r.ReaderName(i) || rd.Slot != uint64(i+1) {
			t.Errorf("reader %d: slot %d %q, want slot %d %q", i, rd.Slot, rd.Name, i+1, r.ReaderName(i))
		}
		if rd.CardPresent != (i == 2) {
			t.Errorf("reader %d: card_present %v", i, rd.CardPresent)
		}
	}
	if got := doc.Readers[2]; got.ATR != fmt.Sprintf("%X", c.ATR()) || !strings.Contains(got.Error, "not recognized") {
		t.Errorf("reader 2: ATR %s error %q", got.ATR, got.Error)
	}
	text := runTool(t, bin, "readers")
	if !strings.Contains(text, "Slot 3  "+r.ReaderName(2)+"\n  card:      present, ATR "+fmt.Sprintf("%X", c.ATR())) {
		t.Errorf("readers:\n%s", text)
	}
}

// TestCLIReadersNoPCSCD: a pcscd that is not there gets a plain message.
func TestCLIReadersNoPCSCD(t *testing.T) {
	bin := p11card(t)
	cmd := exec.Command(bin, "readers")
	cmd.Env = append(os.Environ(), "PCSCLITE_CSOCK_NAME="+filepath.Join(t.TempDir(), "pcscd.comm"))
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "cannot reach the pcscd at PCSCLITE_CSOCK_NAME") || !strings.Contains(string(out), "p11-card rig up") {
		t.Errorf("readers without pcscd: %v\n%s", err, out)
	}
}

// watchProc is a running `p11-card watch --json`.
type watchProc struct {
	events chan map[string]any
	stderr chan string
}

// startWatchProc starts `p11-card watch --json` against the rig and returns once it
// watches; it is interrupted (and must exit 0) when the test ends.
func startWatchProc(t *testing.T, ctx context.Context) *watchProc {
	t.Helper()
	// Its own context: the caller's ends before the cleanup that interrupts it.
	pctx, pcancel := context.WithTimeout(context.Background(), 2*time.Minute)
	cmd := toolCmd(t, pctx, p11card(t), "watch", "--json")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		if err := cmd.Wait(); err != nil {
			t.Errorf("watch after SIGINT: %v", err)
		}
		pcancel()
	})
	w := &watchProc{events: make(chan map[string]any, 256), stderr: make(chan string, 64)}
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			select {
			case w.stderr <- sc.Text():
			default:
			}
		}
	}()
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			var m map[string]any
			if json.Unmarshal(sc.Bytes(), &m) == nil {
				w.events <- m
			}
		}
		close(w.events)
	}()
	select {
	case l := <-w.stderr:
		if !strings.HasPrefix(l, "watching") {
			t.Fatalf("watch said %q", l)
		}
	case <-ctx.Done():
		t.Fatal("watch never started watching")
	}
	return w
}

// want waits for a (not initial) event about reader.
func (w *watchProc) want(t *testing.T, ctx context.Context, event, reader string) map[string]any {
	t.Helper()
	for {
		select {
		case m, ok := <-w.events:
			if !ok {
				t.Fatalf("watch ended before %s", event)
			}
			if m["event"] == event && m["reader"] == reader && m["initial"] == nil {
				return m
			}
		case <-ctx.Done():
			t.Fatalf("no %s event for %q", event, reader)
		}
	}
}

// TestCLIWatch: `p11-card watch --json` reports an insertion and a removal.
func TestCLIWatch(t *testing.T) {
	r := testRig(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	w := startWatchProc(t, ctx)
	c := newRigCard()
	insert(t, 3, c)
	if m := w.want(t, ctx, "card-inserted", r.ReaderName(3)); m["atr"] != fmt.Sprintf("%X", c.ATR()) {
		t.Errorf("insertion event: %v", m)
	}
	remove(t, 3)
	m := w.want(t, ctx, "card-removed", r.ReaderName(3))
	if _, err := time.Parse(time.RFC3339, fmt.Sprint(m["time"])); err != nil {
		t.Errorf("time %v: %v", m["time"], err)
	}
}

// TestCLIWatchPCSCDRestart: watch keeps going when pcscd restarts under it.
func TestCLIWatchPCSCDRestart(t *testing.T) {
	r := testRig(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	w := startWatchProc(t, ctx)
	if err := r.RestartPCSCD(ctx); err != nil {
		t.Fatalf("RestartPCSCD: %v", err)
	}
	insert(t, 1, newRigCard())
	w.want(t, ctx, "card-inserted", r.ReaderName(1))
	remove(t, 1)
	w.want(t, ctx, "card-removed", r.ReaderName(1))
}

// TestCLIReadersPIV: `p11-card readers` tells what a virtual YubiKey is.
func TestCLIReadersPIV(t *testing.T) {
	bin := p11card(t)
	insert(t, 0, pivtest.MustNew(pivtest.Options{Serial: 7654321}))
	out := runTool(t, bin, "readers")
	for _, w := range []string{"token:     Yubico YubiKey 5 (PIV), driver piv", "firmware:  5.7.1", "serial:    7654321"} {
		if !strings.Contains(out, w) {
			t.Errorf("readers lacks %q:\n%s", w, out)
		}
	}
}

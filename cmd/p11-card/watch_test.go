package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"
)

// lineWriter sends every complete line written to it on a channel.
type lineWriter struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	lines chan string
}

func newLineWriter() *lineWriter { return &lineWriter{lines: make(chan string, 100)} }

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	for {
		i := bytes.IndexByte(w.buf.Bytes(), '\n')
		if i < 0 {
			return len(p), nil
		}
		w.lines <- string(w.buf.Next(i + 1)[:i])
	}
}

func (w *lineWriter) next(t *testing.T) string {
	t.Helper()
	select {
	case l := <-w.lines:
		return l
	case <-time.After(10 * time.Second):
		t.Fatal("no line in 10s")
		return ""
	}
}

func fixClock(t *testing.T) {
	old := now
	now = func() time.Time { return time.Date(2026, 11, 22, 8, 0, 0, 0, time.UTC) }
	t.Cleanup(func() { now = old })
}

// startWatch runs `p11-card watch args…` until the test ends and returns its stdout lines
// once it says it is watching.
func startWatch(t *testing.T, args ...string) *lineWriter {
	t.Helper()
	out, errs := newLineWriter(), newLineWriter()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int)
	go func() { done <- run(ctx, &env{stdout: out, stderr: errs}, append([]string{"watch"}, args...)) }()
	t.Cleanup(func() {
		cancel()
		if code := <-done; code != 0 {
			t.Errorf("watch exited %d", code)
		}
	})
	if l := errs.next(t); !strings.HasPrefix(l, "watching for reader and card events") {
		t.Fatalf("stderr: %q", l)
	}
	return out
}

func TestWatchText(t *testing.T) {
	fixClock(t)
	b := fakeService(t)
	out := startWatch(t)
	want := []string{
		"2026-11-22T08:00:00Z  reader (present) slot 1  Yubico YubiKey OTP+FIDO+CCID 00 00",
		"2026-11-22T08:00:00Z  card (present)   slot 1  Yubico YubiKey OTP+FIDO+CCID 00 00  ATR 3B80800101C11E57  clitest: Test Token #42",
		"2026-11-22T08:00:00Z  reader (present) slot 2  Virtual PCD 00 00",
		"2026-11-22T08:00:00Z  card (present)   slot 2  Virtual PCD 00 00  ATR 3B00  (not recognized: no p11-card driver supports this card)",
		"2026-11-22T08:00:00Z  reader (present) slot 3  Virtual PCD 00 01",
	}
	for _, w := range want {
		if l := out.next(t); l != w {
			t.Errorf("got  %q\nwant %q", l, w)
		}
	}
	b.Insert("Virtual PCD 00 01", cliCard{cliTestATR})
	if l := out.next(t); l != "2026-11-22T08:00:00Z  card inserted    slot 3  Virtual PCD 00 01  ATR 3B80800101C11E57  clitest: Test Token #42" {
		t.Errorf("insertion: %q", l)
	}
	b.Remove("Virtual PCD 00 01")
	if l := out.next(t); l != "2026-11-22T08:00:00Z  card removed     slot 3  Virtual PCD 00 01" {
		t.Errorf("removal: %q", l)
	}
}

func TestWatchJSON(t *testing.T) {
	fixClock(t)
	b := fakeService(t)
	out := startWatch(t, "--json")
	decode := func() map[string]any {
		l := out.next(t)
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("not a JSON line: %q", l)
		}
		return m
	}
	for i := 0; i < 5; i++ { // the initial state
		if m := decode(); m["initial"] != true {
			t.Errorf("initial event without initial: %v", m)
		}
	}
	b.Remove("Yubico YubiKey OTP+FIDO+CCID 00 00")
	if m := decode(); m["event"] != "card-removed" || m["slot"] != 1.0 || m["time"] != "2026-11-22T08:00:00Z" {
		t.Errorf("removal: %v", m)
	}
	b.AddReader("Fresh Reader 00 00")
	if m := decode(); m["event"] != "reader-added" || m["reader"] != "Fresh Reader 00 00" || m["initial"] != nil {
		t.Errorf("reader added: %v", m)
	}
	b.Insert("Fresh Reader 00 00", cliCard{cliTestATR})
	m := decode()
	tok, _ := m["token"].(map[string]any)
	if m["event"] != "card-inserted" || m["atr"] != "3B80800101C11E57" || tok["serial"] != "42" {
		t.Errorf("insertion: %v", m)
	}
	// A reader leaving with its card in it (a YubiKey pulled out): card first.
	b.RemoveReader("Fresh Reader 00 00")
	if m := decode(); m["event"] != "card-removed" {
		t.Errorf("want card-removed first: %v", m)
	}
	if m := decode(); m["event"] != "reader-removed" || m["reader"] != "Fresh Reader 00 00" {
		t.Errorf("reader removed: %v", m)
	}
	// A swap between two looks is a removal and an insertion.
	b.Swap("Virtual PCD 00 00", cliCard{cliTestATR})
	if m := decode(); m["event"] != "card-removed" || m["reader"] != "Virtual PCD 00 00" {
		t.Errorf("swap, removal: %v", m)
	}
	if m := decode(); m["event"] != "card-inserted" || m["reader"] != "Virtual PCD 00 00" {
		t.Errorf("swap, insertion: %v", m)
	}
}

func TestWatchNoPCSCD(t *testing.T) {
	b := fakeService(t)
	b.Stop()
	_, errOut, code := runCLI(t, "watch")
	if code != 1 || !strings.Contains(errOut, "cannot reach") || !strings.Contains(errOut, "p11-card rig up") {
		t.Errorf("exit %d: %s", code, errOut)
	}
}

package vcard

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"
)

// echoCard answers every command with its INS byte and 9000, and counts resets.
type echoCard struct {
	mu     sync.Mutex
	resets int
	seen   [][]byte
}

func (c *echoCard) ATR() []byte { return []byte{0x3B, 0x00} }
func (c *echoCard) Reset() {
	c.mu.Lock()
	c.resets++
	c.mu.Unlock()
}
func (c *echoCard) Transmit(ctx context.Context, cmd []byte) ([]byte, error) {
	c.mu.Lock()
	c.seen = append(c.seen, append([]byte(nil), cmd...))
	c.mu.Unlock()
	return []byte{cmd[1], 0x90, 0x00}, nil
}

func cmd(ins byte, data ...byte) []byte {
	b := []byte{0x00, ins, 0x00, 0x80}
	if len(data) > 0 {
		b = append(b, byte(len(data)))
		b = append(b, data...)
	}
	return b
}

func TestFaultsSWAt(t *testing.T) {
	inner := &echoCard{}
	f := &Faults{SWAt: map[int]uint16{2: 0x6982}}
	c := WithFaults(inner, f)
	ctx := context.Background()
	want := [][]byte{{0xA4, 0x90, 0x00}, {0x69, 0x82}, {0xCB, 0x90, 0x00}}
	for i, ins := range []byte{0xA4, 0xCA, 0xCB} {
		got, err := c.Transmit(ctx, cmd(ins))
		if err != nil || !bytes.Equal(got, want[i]) {
			t.Fatalf("command %d: got %X, %v; want %X", i+1, got, err, want[i])
		}
	}
	if len(inner.seen) != 2 {
		t.Errorf("card saw %d commands, want 2 (the faulted one is not passed on)", len(inner.seen))
	}
	if f.Commands() != 3 {
		t.Errorf("Commands = %d, want 3", f.Commands())
	}
}

func TestFaultsRemoveAtCountsOnlySelected(t *testing.T) {
	inner := &echoCard{}
	f := &Faults{Count: PrivateKeyOp, RemoveAt: 2}
	c := WithFaults(inner, f)
	ctx := context.Background()
	seq := []struct {
		ins     byte
		removed bool
	}{{0xA4, false}, {0x87, false}, {0x20, false}, {0x87, true}, {0x87, false}}
	for i, s := range seq {
		_, err := c.Transmit(ctx, cmd(s.ins))
		if s.removed != errors.Is(err, ErrRemoved) {
			t.Fatalf("command %d (INS %02X): err %v, want removed=%v", i+1, s.ins, err, s.removed)
		}
	}
	if f.Commands() != 3 {
		t.Errorf("counted %d private-key commands, want 3", f.Commands())
	}
}

func TestFaultsDelay(t *testing.T) {
	f := &Faults{Delay: 30 * time.Millisecond, DelayIf: INS(0x87)}
	c := WithFaults(&echoCard{}, f)
	ctx := context.Background()
	start := time.Now()
	c.Transmit(ctx, cmd(0xA4))
	if d := time.Since(start); d >= 30*time.Millisecond {
		t.Errorf("unselected command took %v", d)
	}
	start = time.Now()
	c.Transmit(ctx, cmd(0x87))
	if d := time.Since(start); d < 30*time.Millisecond {
		t.Errorf("delayed command took only %v", d)
	}
	// A cancelled context ends the wait.
	f.Set(func(f *Faults) { f.Delay = time.Hour })
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := c.Transmit(cctx, cmd(0x87)); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled delay: err %v", err)
	}
}

func TestFaultsShortCommandsDoNotPanic(t *testing.T) {
	c := WithFaults(&echoCard{}, &Faults{Count: PrivateKeyOp, DelayIf: PrivateKeyOp, Delay: time.Millisecond})
	for _, b := range [][]byte{nil, {0x00}, {0x00, 0x87}} {
		// the inner echo card needs two bytes; only the wrapper is under test here
		if len(b) >= 2 {
			c.Transmit(context.Background(), b)
		} else if PrivateKeyOp(b) {
			t.Errorf("PrivateKeyOp(%X) = true", b)
		}
	}
}

func TestRedact(t *testing.T) {
	pin := []byte{0x00, 0x20, 0x00, 0x80, 0x08, '1', '2', '3', '4', '5', '6', 0xFF, 0xFF}
	got := Redact(pin)
	if bytes.Contains(got, []byte("123456")) || len(got) != len(pin) || !bytes.Equal(got[:5], pin[:5]) {
		t.Errorf("Redact(VERIFY) = %X", got)
	}
	sel := []byte{0x00, 0xA4, 0x04, 0x00, 0x02, 0xA0, 0x00}
	if got := Redact(sel); !bytes.Equal(got, sel) {
		t.Errorf("Redact(SELECT) = %X", got)
	}
}

func TestLog(t *testing.T) {
	l := &Log{Max: 3}
	c := WithLog(WithFaults(&echoCard{}, &Faults{RemoveAt: 5}), l)
	ctx := context.Background()
	c.Transmit(ctx, cmd(0xA4, 0xA0, 0x00))
	c.Transmit(ctx, cmd(0x20, '1', '2', '3', '4', '5', '6'))
	c.Transmit(ctx, cmd(0x87, 0x7C, 0x00))
	c.Transmit(ctx, cmd(0x87, 0x7C, 0x00))
	if _, err := c.Transmit(ctx, cmd(0xCB)); !errors.Is(err, ErrRemoved) {
		t.Fatalf("fifth command: %v", err)
	}
	if l.Count() != 5 {
		t.Errorf("Count = %d, want 5", l.Count())
	}
	es := l.Entries()
	if len(es) != 3 || es[0].N != 3 || es[2].N != 5 {
		t.Fatalf("entries kept: %+v", es)
	}
	if l.CountINS(0x87) != 2 {
		t.Errorf("CountINS(87) = %d", l.CountINS(0x87))
	}
	// Since counts by entry number, whatever Max dropped.
	if s := l.Since(3); len(s) != 2 || s[0].N != 4 || s[1].N != 5 {
		t.Errorf("Since(3) = %+v", s)
	}
	if s := l.Since(1); len(s) != 3 || s[0].N != 3 {
		t.Errorf("Since(1) = %+v (entries 2 and 3 are gone, 3 is kept)", s)
	}
	if s := l.Since(5); len(s) != 0 {
		t.Errorf("Since(5) = %+v", s)
	}
	s := l.String()
	// GENERAL AUTHENTICATE answers are hidden (they may be plaintext).
	if !strings.Contains(s, "> 00870080027C00\n< 2A9000\n") || !strings.Contains(s, "! vcard: card removed") {
		t.Errorf("String:\n%s", s)
	}
	l.Clear()
	if l.Count() != 0 || len(l.Entries()) != 0 {
		t.Errorf("Clear left %d / %d", l.Count(), len(l.Entries()))
	}
}

func TestLogRedactsPIN(t *testing.T) {
	l := &Log{}
	c := WithLog(&echoCard{}, l)
	c.Transmit(context.Background(), cmd(0x20, '9', '8', '7', '6', '5', '4'))
	if s := l.String(); strings.Contains(s, "393837363534") {
		t.Errorf("PIN in log: %s", s)
	}
	if e := l.Entries()[0]; e.Cmd[1] != 0x20 || len(e.Cmd) != 11 {
		t.Errorf("redacted command lost its shape: %X", e.Cmd)
	}
}

func TestWrappersPassResetAndATR(t *testing.T) {
	inner := &echoCard{}
	c := WithLog(WithFaults(inner, &Faults{}), &Log{})
	c.Reset()
	if inner.resets != 1 || !bytes.Equal(c.ATR(), inner.ATR()) {
		t.Errorf("resets %d ATR %X", inner.resets, c.ATR())
	}
}

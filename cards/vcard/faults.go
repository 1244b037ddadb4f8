package vcard

import (
	"context"
	"sync"
	"time"
)

// Faults says what goes wrong, and when, for a card wrapped by WithFaults. Commands are
// counted from 1 in the order they reach Transmit, across resets; only commands that
// Count accepts are counted (nil Count: every command). Fields may be changed between
// commands through Set.
type Faults struct {
	mu sync.Mutex
	n  int

	// Count, when set, picks the commands that are counted (and so can fail).
	Count func(cmd []byte) bool
	// SWAt answers the counted command with this number with the status word instead of
	// passing it to the card.
	SWAt map[int]uint16
	// RemoveAt makes the counted command with this number return ErrRemoved: the card
	// leaves the reader before answering. 0 means never. Only that one command fails,
	// so a card inserted again works.
	RemoveAt int
	// Delay is waited before passing on each command that DelayIf accepts (every
	// command when DelayIf is nil): a slow private-key operation, a touch.
	Delay   time.Duration
	DelayIf func(cmd []byte) bool
}

// Set changes the faults under the lock, for a test that reconfigures a card in use.
func (f *Faults) Set(fn func(f *Faults)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f)
}

// Commands is how many commands were counted so far.
func (f *Faults) Commands() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.n
}

// WithFaults wraps c so that f's faults happen. The wrapper is safe for concurrent use
// when c is.
func WithFaults(c Card, f *Faults) Card { return &faultCard{Card: c, f: f} }

type faultCard struct {
	Card
	f *Faults
}

func (c *faultCard) Transmit(ctx context.Context, cmd []byte) ([]byte, error) {
	f := c.f
	f.mu.Lock()
	counted := f.Count == nil || f.Count(cmd)
	n := 0
	if counted {
		f.n++
		n = f.n
	}
	var delay time.Duration
	if f.Delay > 0 && (f.DelayIf == nil || f.DelayIf(cmd)) {
		delay = f.Delay
	}
	remove := counted && f.RemoveAt > 0 && n == f.RemoveAt
	sw, swFault := uint16(0), false
	if counted {
		sw, swFault = f.SWAt[n]
	}
	f.mu.Unlock()

	if delay > 0 {
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		}
	}
	if remove {
		return nil, ErrRemoved
	}
	if swFault {
		return []byte{byte(sw >> 8), byte(sw)}, nil
	}
	return c.Card.Transmit(ctx, cmd)
}

// INS returns a predicate accepting commands whose instruction byte is one of ins, for
// Faults.Count and Faults.DelayIf.
func INS(ins ...byte) func(cmd []byte) bool {
	set := append([]byte(nil), ins...)
	return func(cmd []byte) bool {
		if len(cmd) < 4 {
			return false
		}
		for _, i := range set {
			if cmd[1] == i {
				return true
			}
		}
		return false
	}
}

// PrivateKeyOp accepts the commands that use a private key: PIV GENERAL AUTHENTICATE (87,
// SP 800-73-4 part 2 §3.2.4), OpenPGP PERFORM SECURITY OPERATION (2A) and INTERNAL
// AUTHENTICATE (88) (OpenPGP card 3.4 §7.2.10-7.2.13).
var PrivateKeyOp = INS(0x87, 0x2A, 0x88)

package rig

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/p11-card/p11-card/pcsc"
)

// pollPeriod is how often pcscd asks vpcd whether a card is present (pcsc-lite's
// PCSCLITE_STATUS_POLL_RATE is 400 ms), with a margin.
const pollPeriod = 900 * time.Millisecond

// talksToRig reports whether this process's libpcsclite is pointed at the rig.
func (r *Rig) talksToRig() bool { return os.Getenv("PCSCLITE_CSOCK_NAME") == r.sock }

// waitState waits until pcscd reports reader i with a card (present) or empty. Without a
// PC/SC view of the rig it waits one polling period for an empty reader and returns at
// once for a present one (the caller saw pcscd power the card up).
func (r *Rig) waitState(ctx context.Context, i int, present bool) error {
	if !r.talksToRig() {
		if present {
			return nil
		}
		select {
		case <-time.After(pollPeriod):
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	reader := r.names[i]
	var last error
	for {
		ok, err := readerState(reader, present)
		if ok {
			return nil
		}
		if err != nil {
			last = err
		}
		select {
		case <-ctx.Done():
			what := "empty"
			if present {
				what = "with a card"
			}
			if last != nil {
				return fmt.Errorf("rig: waiting for pcscd to report reader %q %s: %w (last error: %v)", reader, what, ctx.Err(), last)
			}
			return fmt.Errorf("rig: waiting for pcscd to report reader %q %s: %w", reader, what, ctx.Err())
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// readerState asks pcscd once, then waits up to 200 ms for a change and asks again.
func readerState(reader string, present bool) (bool, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	c, err := pcsc.Establish(ctx)
	if err != nil {
		return false, err
	}
	defer c.Close()
	for ctx.Err() == nil {
		st, err := c.Status(ctx, []string{reader})
		if err != nil {
			return false, err
		}
		s := st[0]
		if s.Unknown {
			return false, fmt.Errorf("pcscd has no reader %q", reader)
		}
		if present && s.Present && !s.Mute && len(s.ATR) > 0 {
			return true, nil
		}
		if !present && s.Empty {
			return true, nil
		}
		wctx, wcancel := context.WithTimeout(ctx, 200*time.Millisecond)
		_, err = c.Wait(wctx, st)
		wcancel()
		if err != nil && !errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
			return false, err
		}
	}
	return false, nil
}

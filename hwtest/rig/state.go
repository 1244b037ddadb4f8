package rig

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/ebfe/scard"
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

// readerState asks pcscd once, blocking up to 200 ms for a change.
func readerState(reader string, present bool) (bool, error) {
	sc, err := scard.EstablishContext()
	if err != nil {
		return false, err
	}
	defer sc.Release()
	rs := []scard.ReaderState{{Reader: reader, CurrentState: scard.StateUnaware}}
	for k := 0; k < 40; k++ {
		err := sc.GetStatusChange(rs, 200*time.Millisecond)
		if err != nil && !errors.Is(err, scard.ErrTimeout) {
			return false, err
		}
		ev := rs[0].EventState
		if ev&scard.StateUnknown != 0 {
			return false, fmt.Errorf("pcscd has no reader %q", reader)
		}
		if present && ev&scard.StatePresent != 0 && ev&scard.StateMute == 0 && len(rs[0].Atr) > 0 {
			return true, nil
		}
		if !present && ev&scard.StateEmpty != 0 {
			return true, nil
		}
		rs[0].CurrentState = ev &^ scard.StateChanged
		if err == nil {
			continue
		}
		return false, nil
	}
	return false, nil
}

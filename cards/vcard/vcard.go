// Package vcard holds what every virtual card shares: the interface the rig serves to pcscd
// through vpcd (and that drivers talk to in-process), fault injection (WithFaults), lying
// responses (WithHostile) and an APDU log (WithLog).
//
// Virtual cards are test instruments: they model real cards (a YubiKey 5 PIV applet, an
// OpenPGP 3.4 applet) closely enough that software we did not write accepts them.
package vcard

import (
	"context"
	"errors"
)

// Card is a virtual smart card.
type Card interface {
	// ATR is the answer to reset the card gives on power-up.
	ATR() []byte
	// Reset models a power cycle or warm reset: selection, login state and other volatile
	// state are dropped; persistent state (keys, PINs, counters, objects) stays.
	Reset()
	// Transmit handles one raw command APDU and returns the raw response, SW included.
	// A card never fails a command with an error; it answers with a status word. The only
	// error is ErrRemoved (from fault injection): the card leaves the reader.
	Transmit(ctx context.Context, cmd []byte) ([]byte, error)
}

// ErrRemoved, returned by Transmit, makes the rig pull the card out of its reader.
var ErrRemoved = errors.New("vcard: card removed")

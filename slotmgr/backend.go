package slotmgr

import (
	"context"
	"errors"

	"github.com/p11-card/p11-card/cards"
	"github.com/p11-card/p11-card/pcsc"
)

// Backend is what the slot manager needs of PC/SC: a way to open contexts. NewPCSC returns
// the pcsc-lite one; slotmgrtest.Backend is an in-process fake for tests.
type Backend interface {
	// Establish opens a resource-manager context. It fails (quickly) when the service is
	// down; the manager retries later.
	Establish(ctx context.Context) (Context, error)
}

// Context is one resource-manager context. The manager keeps one for watching (blocked in
// Wait most of the time) and opens one per connected card, so a long card operation never
// delays event handling and a Wait never delays card I/O. A Context is used by one
// goroutine at a time, except Close, which may be called from any goroutine.
type Context interface {
	// Readers lists the reader names; none is an empty slice and a nil error.
	Readers(ctx context.Context) ([]string, error)
	// Status reads the current state of the named readers, in order.
	Status(ctx context.Context, readers []string) ([]ReaderState, error)
	// Wait blocks until a reader is added or removed, or the state of one of known differs
	// from what known says (the event counter included, so a card swapped between two
	// waits is seen), or ctx ends (then it returns ctx.Err()). The manager only uses the
	// return as a hint and reads Readers and Status afresh.
	Wait(ctx context.Context, known []ReaderState) ([]ReaderState, error)
	// Connect opens a shared connection to the card in reader.
	Connect(ctx context.Context, reader string) (Card, error)
	// Close releases the context; cards connected through it stop working.
	Close() error
}

// SharedContext is implemented by a Context whose Readers and Status may run beside each
// other and beside its Wait (a pcsc.Context keeps a separate PC/SC context for Wait):
// Rescan then reads through the watcher's context instead of opening one of its own.
type SharedContext interface {
	Context
	Shared() bool
}

// Connector is implemented by a Backend that connects to a card without a Context (each
// card of the pcsc-lite backend has a PC/SC context of its own): a bind then opens no
// Context just to connect.
type Connector interface {
	Connect(ctx context.Context, reader string) (Card, error)
}

// Starter is implemented by a Backend that holds resources for the manager's start alone:
// the pcsc-lite backend has the PC/SC contexts the PKCS#11 module opened in C_Initialize
// while the Go runtime was starting. Start calls Started once its first read and the binds
// it began are done, and the backend lets go of what they did not take.
type Starter interface {
	Started()
}

// Card is a connected card.
type Card interface {
	cards.Conn
	// ATR is the answer to reset read at connect time.
	ATR() []byte
	// Close leaves the card as it is (SCARD_LEAVE_CARD; reset if its transaction is still
	// open) and releases the handle.
	Close() error
}

// FeatureReader is implemented by a Card that can list its reader's PC/SC part 10
// features (pcsc.Card does); the manager asks once per reader attachment.
type FeatureReader interface {
	Features(ctx context.Context) (pcsc.Features, error)
}

// Controller is implemented by a Card whose reader accepts raw control commands
// (SCardControl); for a Card without Features the manager sends the part 10 feature
// request (CM_IOCTL_GET_FEATURE_REQUEST) itself and parses the answer.
type Controller interface {
	Control(ctx context.Context, code uint32, in []byte) ([]byte, error)
}

// USBLookup is implemented by a Backend that can tell which USB device is behind a
// reader; the manager asks once per reader attachment, outside any lock.
type USBLookup interface {
	// USB returns, for each reader, its device or nil when unknown.
	USB(readers []string) []*pcsc.USBInfo
}

// ReaderState is one reader's state as the backend reports it (SCARD_READERSTATE).
type ReaderState struct {
	Name        string
	Present     bool // a card is in the reader
	Empty       bool // no card
	Exclusive   bool // another application holds the card exclusively
	InUse       bool // some application is connected
	Mute        bool // a card is there but did not answer reset
	Unavailable bool // the reader cannot be used right now
	Unknown     bool // no reader by this name any more (it left between two reads)
	ATR         []byte
	// EventCount is pcsc-lite's per-reader card event counter (upper 16 bits of
	// dwEventState): it moves on every insertion and removal, so a swap between two reads
	// shows even when both cards have the same ATR.
	EventCount int
	// Raw is the backend's own state word, passed back to Wait as the known state.
	Raw uint32
}

var (
	// ErrClosed is returned by a manager's methods after Close.
	ErrClosed = errors.New("slotmgr: manager closed")
	// ErrTokenRemoved is returned by a slot's Conn once its card has left the reader or
	// was swapped: the Conn of an old generation never reaches a new card.
	ErrTokenRemoved = errors.New("slotmgr: token removed")
	// ErrCardMute is a slot's Err when the card in the reader does not answer reset.
	ErrCardMute = errors.New("slotmgr: card does not answer")
	// ErrReaderUnavailable is a slot's Err when the reader reports itself unavailable.
	ErrReaderUnavailable = errors.New("slotmgr: reader unavailable")
	// ErrCardInUse is a slot's Err while another application holds the card exclusively;
	// the manager binds it once the hold ends (seen on the next read: an event or Rescan).
	ErrCardInUse = errors.New("slotmgr: card in exclusive use by another application")
)

package pcsc

import (
	"strconv"
	"strings"
)

// Reader state flags of SCardGetStatusChange (pcsclite.h; the same values on every
// platform). The upper 16 bits of the event state count card insertions and removals.
const (
	stateUnaware     uint32 = 0x0000
	stateIgnore      uint32 = 0x0001
	stateChanged     uint32 = 0x0002
	stateUnknown     uint32 = 0x0004
	stateUnavailable uint32 = 0x0008
	stateEmpty       uint32 = 0x0010
	statePresent     uint32 = 0x0020
	stateATRMatch    uint32 = 0x0040
	stateExclusive   uint32 = 0x0080
	stateInUse       uint32 = 0x0100
	stateMute        uint32 = 0x0200
	stateUnpowered   uint32 = 0x0400
)

// pnpReader is the pseudo reader whose state changes when a reader is added or removed;
// pcsc-lite keeps the reader count in the upper 16 bits of its event state.
const pnpReader = `\\?PnP?\Notification`

// ReaderState is what PC/SC reports about one reader.
type ReaderState struct {
	Name        string
	Present     bool // a card is in the reader
	Empty       bool // no card
	Exclusive   bool // a program holds the card exclusively
	InUse       bool // a program is connected
	Mute        bool // the card does not answer (bad ATR, broken card)
	Unavailable bool // the reader cannot report (being removed, driver trouble)
	Unknown     bool // no reader by this name (it left)
	Unpowered   bool // the card is present but not powered
	ATR         []byte
	// EventCount counts card insertions and removals in this reader (pcsc-lite, 16 bits).
	// A different count with the same Present value means the card was swapped.
	EventCount int
	// Raw is the event state as PC/SC gave it; Wait passes it back as the current state.
	Raw uint32
}

// decodeState builds a ReaderState from an event state and ATR.
func decodeState(name string, ev uint32, atr []byte) ReaderState {
	s := ReaderState{
		Name:        name,
		Present:     ev&statePresent != 0,
		Empty:       ev&stateEmpty != 0,
		Exclusive:   ev&stateExclusive != 0,
		InUse:       ev&stateInUse != 0,
		Mute:        ev&stateMute != 0,
		Unavailable: ev&stateUnavailable != 0,
		Unknown:     ev&stateUnknown != 0,
		Unpowered:   ev&stateUnpowered != 0,
		EventCount:  int(ev >> 16),
		Raw:         ev,
	}
	if s.Present && len(atr) > 0 {
		s.ATR = append([]byte(nil), atr...)
	}
	return s
}

// currentState is what Wait passes as dwCurrentState for a state seen before: the flags
// and counter, without the one-shot CHANGED bit and never IGNORE.
func currentState(s ReaderState) uint32 {
	return s.Raw &^ (stateChanged | stateIgnore)
}

// Changed reports whether b differs from a in a way a slot cares about: card presence,
// mute/unavailable, the ATR, or the event counter (a swap).
func Changed(a, b ReaderState) bool {
	return a.Present != b.Present || a.Mute != b.Mute || a.Unavailable != b.Unavailable || a.Unknown != b.Unknown ||
		a.EventCount != b.EventCount || string(a.ATR) != string(b.ATR)
}

// String shows the flags, the counter and the ATR.
func (s ReaderState) String() string {
	var b strings.Builder
	b.WriteString(strconv.Quote(s.Name))
	b.WriteByte(' ')
	b.WriteString(stateString(s.Raw))
	if len(s.ATR) > 0 {
		b.WriteString(" ATR ")
		for _, c := range s.ATR {
			b.WriteByte("0123456789ABCDEF"[c>>4])
			b.WriteByte("0123456789ABCDEF"[c&15])
		}
	}
	return b.String()
}

var stateNames = []struct {
	bit  uint32
	name string
}{
	{stateIgnore, "IGNORE"}, {stateChanged, "CHANGED"}, {stateUnknown, "UNKNOWN"},
	{stateUnavailable, "UNAVAILABLE"}, {stateEmpty, "EMPTY"}, {statePresent, "PRESENT"},
	{stateATRMatch, "ATRMATCH"}, {stateExclusive, "EXCLUSIVE"}, {stateInUse, "INUSE"},
	{stateMute, "MUTE"}, {stateUnpowered, "UNPOWERED"},
}

// stateString renders state flags as "PRESENT|INUSE#3" (#n: event counter).
func stateString(ev uint32) string {
	var parts []string
	for _, n := range stateNames {
		if ev&n.bit != 0 {
			parts = append(parts, n.name)
		}
	}
	if len(parts) == 0 {
		parts = append(parts, "UNAWARE")
	}
	s := strings.Join(parts, "|")
	if c := ev >> 16; c != 0 {
		s += "#" + strconv.Itoa(int(c))
	}
	return s
}

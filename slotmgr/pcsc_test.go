package slotmgr

import (
	"errors"
	"testing"

	"github.com/p11-card/p11-card/pcsc"
)

func TestMovedPCSC(t *testing.T) {
	a := pcsc.ReaderState{Name: "A", Present: true, EventCount: 1, ATR: []byte{0x3B, 1}, Raw: 0x10122}
	inUseGone := a
	inUseGone.InUse, inUseGone.Raw = false, 0x10022
	swapped := a
	swapped.EventCount = 3
	for _, tc := range []struct {
		name       string
		known, now []pcsc.ReaderState
		moved      bool
	}{
		{"same", []pcsc.ReaderState{a}, []pcsc.ReaderState{a}, false},
		{"only in-use moved", []pcsc.ReaderState{a}, []pcsc.ReaderState{inUseGone}, false},
		{"swap", []pcsc.ReaderState{a}, []pcsc.ReaderState{swapped}, true},
		{"reader added", []pcsc.ReaderState{a}, []pcsc.ReaderState{a, {Name: "B"}}, true},
		{"reader renamed", []pcsc.ReaderState{a}, []pcsc.ReaderState{{Name: "B"}}, true},
		{"none", nil, nil, false},
	} {
		if got := movedPCSC(tc.known, tc.now); got != tc.moved {
			t.Errorf("%s: moved %v, want %v", tc.name, got, tc.moved)
		}
	}
	if !errors.Is(errRestarted, pcsc.ErrNoService) {
		t.Error("errRestarted does not wrap pcsc.ErrNoService")
	}
	s := fromPCSC(pcsc.ReaderState{Name: "A", Present: true, Unknown: true, EventCount: 2, Raw: 0x20024, ATR: []byte{1}})
	if s.Name != "A" || !s.Present || !s.Unknown || s.EventCount != 2 || s.Raw != 0x20024 || len(s.ATR) != 1 {
		t.Errorf("fromPCSC: %+v", s)
	}
	if b := toPCSC(s); b.Raw != 0x20024 || b.Name != "A" || !b.Unknown {
		t.Errorf("toPCSC: %+v", b)
	}
}

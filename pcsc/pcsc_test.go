package pcsc

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/ebfe/scard"
)

// The hand-written codes and flags agree with the C headers (as ebfe/scard sees them).
func TestConstantsMatchHeaders(t *testing.T) {
	codes := map[uint32]scard.Error{
		codeCancelled: scard.ErrCancelled, codeInvalidHandle: scard.ErrInvalidHandle,
		codeInvalidParameter: scard.ErrInvalidParameter, codeNoMemory: scard.ErrNoMemory,
		codeInsufficientBuffer: scard.ErrInsufficientBuffer, codeUnknownReader: scard.ErrUnknownReader,
		codeTimeout: scard.ErrTimeout, codeSharingViolation: scard.ErrSharingViolation,
		codeNoSmartcard: scard.ErrNoSmartcard, codeProtoMismatch: scard.ErrProtoMismatch,
		codeNotReady: scard.ErrNotReady, codeSystemCancelled: scard.ErrSystemCancelled,
		codeCommError: scard.ErrCommError, codeReaderUnavailable: scard.ErrReaderUnavailable,
		codeNoService: scard.ErrNoService, codeServiceStopped: scard.ErrServiceStopped,
		codeNoReaders: scard.ErrNoReadersAvailable, codeUnsupportedCard: scard.ErrUnsupportedCard,
		codeUnresponsiveCard: scard.ErrUnresponsiveCard, codeUnpoweredCard: scard.ErrUnpoweredCard,
		codeResetCard: scard.ErrResetCard, codeRemovedCard: scard.ErrRemovedCard,
		codeNotTransacted: scard.ErrNotTransacted, codeInternalError: scard.ErrInternalError,
		codeUnknownError: scard.ErrUnknownError,
	}
	for ours, theirs := range codes {
		if ours != uint32(theirs) {
			t.Errorf("%s: 0x%08X, header says 0x%08X", codeName(ours), ours, uint32(theirs))
		}
	}
	flags := map[uint32]scard.StateFlag{
		stateIgnore: scard.StateIgnore, stateChanged: scard.StateChanged, stateUnknown: scard.StateUnknown,
		stateUnavailable: scard.StateUnavailable, stateEmpty: scard.StateEmpty, statePresent: scard.StatePresent,
		stateATRMatch: scard.StateAtrmatch, stateExclusive: scard.StateExclusive, stateInUse: scard.StateInuse,
		stateMute: scard.StateMute, stateUnpowered: scard.StateUnpowered,
	}
	for ours, theirs := range flags {
		if ours != uint32(theirs) {
			t.Errorf("state 0x%X, header says 0x%X", ours, uint32(theirs))
		}
	}
	if protoT0 != uint32(scard.ProtocolT0) || protoT1 != uint32(scard.ProtocolT1) {
		t.Error("protocol constants differ")
	}
}

func TestErrorMapping(t *testing.T) {
	tests := []struct {
		code     uint32
		sentinel error
	}{
		{codeNoService, ErrNoService},
		{codeServiceStopped, ErrNoService},
		{codeNoReaders, ErrNoReader},
		{codeUnknownReader, ErrNoReader},
		{codeReaderUnavailable, ErrNoReader},
		{codeNoSmartcard, ErrNoCard},
		{codeRemovedCard, ErrCardRemoved},
		{codeResetCard, ErrCardReset},
		{codeSharingViolation, ErrSharingViolation},
		{codeTimeout, ErrTimeout},
		{codeUnresponsiveCard, ErrCardUnresponsive},
		{codeUnpoweredCard, ErrCardUnresponsive},
		{codeCommError, nil},
		{0x80100099, nil},
	}
	all := []error{ErrNoService, ErrNoReader, ErrNoCard, ErrCardRemoved, ErrCardReset, ErrSharingViolation, ErrTimeout, ErrCardUnresponsive}
	for _, tt := range tests {
		t.Run(codeName(tt.code), func(t *testing.T) {
			err := wrap("connect \"R\"", tt.code)
			var pe *Error
			if !errors.As(err, &pe) || pe.Code != tt.code {
				t.Fatalf("errors.As *Error: %v", err)
			}
			for _, s := range all {
				if want := s == tt.sentinel; errors.Is(err, s) != want {
					t.Errorf("errors.Is(%v, %v) = %v", err, s, !want)
				}
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, "pcsc: connect \"R\": ") || !strings.Contains(msg, codeName(tt.code)) {
				t.Errorf("message %q", msg)
			}
			if !strings.HasPrefix(pe.Error(), "pcsc: ") {
				t.Errorf("*Error message %q", pe.Error())
			}
		})
	}
	if wrap("x", codeSuccess) != nil {
		t.Fatal("success wrapped")
	}
	if msg := wrap("establish context", codeNoService).Error(); !strings.Contains(msg, "systemctl start pcscd") {
		t.Fatalf("no-service message lacks the advice: %q", msg)
	}
}

func TestCardErrorMapping(t *testing.T) {
	if err := cardError("transmit", codeNoSmartcard); !errors.Is(err, ErrCardRemoved) {
		t.Errorf("no card during transmit: %v", err)
	}
	for _, c := range []uint32{codeInvalidHandle, codeNoService, codeServiceStopped, codeCommError} {
		err := cardError("transmit", c)
		var pe *Error
		if !errors.Is(err, ErrCardReset) || !errors.As(err, &pe) || pe.Code != c {
			t.Errorf("%s: %v", codeName(c), err)
		}
	}
	if err := cardError("transmit", codeRemovedCard); !errors.Is(err, ErrCardRemoved) {
		t.Errorf("removed: %v", err)
	}
}

func TestDecodeState(t *testing.T) {
	atr := []byte{0x3B, 0x8C, 0x80, 0x01}
	tests := []struct {
		name string
		ev   uint32
		atr  []byte
		want ReaderState
	}{
		{"empty", stateEmpty | stateChanged | 3<<16, atr, ReaderState{Empty: true, EventCount: 3}},
		{"present in use", statePresent | stateInUse | 4<<16, atr, ReaderState{Present: true, InUse: true, ATR: atr, EventCount: 4}},
		{"exclusive", statePresent | stateExclusive | stateInUse, atr, ReaderState{Present: true, Exclusive: true, InUse: true, ATR: atr}},
		{"mute", statePresent | stateMute | 1<<16, nil, ReaderState{Present: true, Mute: true, EventCount: 1}},
		{"unavailable", stateUnavailable, nil, ReaderState{Unavailable: true}},
		{"unknown", stateUnknown | stateChanged, nil, ReaderState{Unknown: true}},
		{"unpowered", statePresent | stateUnpowered, atr, ReaderState{Present: true, Unpowered: true, ATR: atr}},
		{"max counter", statePresent | 0xFFFF<<16, atr, ReaderState{Present: true, ATR: atr, EventCount: 0xFFFF}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := decodeState("R", tt.ev, tt.atr)
			tt.want.Name, tt.want.Raw = "R", tt.ev
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("decodeState = %+v\nwant %+v", got, tt.want)
			}
		})
	}
	// The ATR is copied.
	a := []byte{1, 2}
	s := decodeState("R", statePresent, a)
	a[0] = 9
	if s.ATR[0] != 1 {
		t.Fatal("ATR aliases the input")
	}
}

func TestCurrentStateAndChanged(t *testing.T) {
	s := decodeState("R", statePresent|stateChanged|stateInUse|7<<16, []byte{1})
	if cur := currentState(s); cur != statePresent|stateInUse|7<<16 {
		t.Fatalf("currentState = %s", stateString(cur))
	}
	base := decodeState("R", statePresent|7<<16, []byte{1})
	for name, other := range map[string]ReaderState{
		"swap (counter)": decodeState("R", statePresent|9<<16, []byte{1}),
		"removed":        decodeState("R", stateEmpty|8<<16, nil),
		"mute":           decodeState("R", statePresent|stateMute|7<<16, []byte{1}),
		"other ATR":      decodeState("R", statePresent|7<<16, []byte{2}),
	} {
		if !Changed(base, other) {
			t.Errorf("%s: not a change", name)
		}
	}
	if Changed(base, decodeState("R", statePresent|stateInUse|stateChanged|7<<16, []byte{1})) {
		t.Error("another program connecting counts as a change")
	}
}

func TestStateString(t *testing.T) {
	if s := stateString(statePresent | stateInUse | 3<<16); s != "PRESENT|INUSE#3" {
		t.Fatalf("stateString = %q", s)
	}
	if s := stateString(0); s != "UNAWARE" {
		t.Fatalf("stateString(0) = %q", s)
	}
	rs := decodeState("Yubico YubiKey 00 00", statePresent, []byte{0x3B, 0xFD})
	if s := rs.String(); s != `"Yubico YubiKey 00 00" PRESENT ATR 3BFD` {
		t.Fatalf("String = %q", s)
	}
}

func TestSplitMultiString(t *testing.T) {
	for in, want := range map[string][]string{
		"A\x00B 00 00\x00\x00": {"A", "B 00 00"},
		"A\x00\x00":            {"A"},
		"\x00":                 nil,
		"":                     nil,
		"A":                    {"A"},
		"A\x00B":               {"A", "B"},
	} {
		if got := splitMultiString([]byte(in)); !reflect.DeepEqual(got, want) {
			t.Errorf("split(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestSameReaders(t *testing.T) {
	k := []ReaderState{{Name: "A"}, {Name: "B"}}
	if !sameReaders([]string{"A", "B"}, k) || sameReaders([]string{"A"}, k) || sameReaders([]string{"B", "A"}, k) {
		t.Fatal("sameReaders")
	}
	if !sameReaders([]string{}, nil) {
		t.Fatal("empty lists differ")
	}
}

// Card methods check their input before any PC/SC call, so these run without pcscd.
func TestCardInputChecks(t *testing.T) {
	ctx := context.Background()
	k := &Card{reader: "R", proto: protoT1}
	for _, n := range []int{0, 3, maxCommand + 1} {
		if _, err := k.Transmit(ctx, make([]byte, n)); err == nil || !strings.Contains(err.Error(), "command of") {
			t.Errorf("Transmit of %d bytes: %v", n, err)
		}
	}
	raw := &Card{reader: "R", proto: 0x10000} // SCARD_PROTOCOL_RAW
	if _, err := raw.Transmit(ctx, []byte{0, 0xA4, 4, 0}); err == nil || !strings.Contains(err.Error(), "protocol") {
		t.Errorf("raw protocol: %v", err)
	}
	dead := &Card{reader: "R", proto: protoT1, dead: true}
	if _, err := dead.Transmit(ctx, []byte{0, 0xA4, 4, 0}); !errors.Is(err, ErrCardReset) {
		t.Errorf("dead handle: %v", err)
	}
	closed := &Card{reader: "R", proto: protoT1, closed: true}
	if _, err := closed.Transmit(ctx, []byte{0, 0xA4, 4, 0}); !errors.Is(err, ErrClosed) {
		t.Errorf("closed: %v", err)
	}
	if _, _, err := closed.Lock(ctx); !errors.Is(err, ErrClosed) {
		t.Errorf("Lock closed: %v", err)
	}
	if err := closed.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := k.Transmit(cctx, []byte{0, 0xA4, 4, 0}); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v", err)
	}
	if _, _, err := k.Lock(cctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Lock cancelled: %v", err)
	}
}

// TestEstablishNoService runs this binary again pointed at a socket that does not exist
// (libpcsclite reads PCSCLITE_CSOCK_NAME once per process).
func TestEstablishNoService(t *testing.T) {
	if os.Getenv("PCSC_NOSERVICE_CHILD") == "1" {
		before := Stats()
		c, err := Establish(context.Background())
		if c != nil || !errors.Is(err, ErrNoService) {
			t.Fatalf("Establish = %v, %v; want ErrNoService", c, err)
		}
		var pe *Error
		if !errors.As(err, &pe) || (pe.Code != codeNoService && pe.Code != codeServiceStopped) {
			t.Fatalf("raw code: %v", err)
		}
		if !strings.Contains(err.Error(), "pcscd") || !strings.Contains(err.Error(), "start") {
			t.Fatalf("message does not say how to start pcscd: %q", err)
		}
		if d := Stats().Sub(before); d.Establish != 1 || d.Total() != 1 {
			t.Fatalf("stats delta %+v", d)
		}
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestEstablishNoService$", "-test.v")
	cmd.Env = append(os.Environ(), "PCSC_NOSERVICE_CHILD=1",
		"PCSCLITE_CSOCK_NAME="+filepath.Join(t.TempDir(), "no-pcscd.comm"))
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--- PASS: TestEstablishNoService") {
		t.Fatalf("child: %v\n%s", err, out)
	}
}

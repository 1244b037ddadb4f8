package apdu

import (
	"errors"
	"strings"
	"testing"
)

func TestStatusWords(t *testing.T) {
	tests := []struct {
		sw       SW
		sentinel error // nil: no sentinel
		msg      string
	}{
		{0x6700, ErrWrongLength, "wrong length"},
		{0x6982, ErrSecurityStatus, "security status"},
		{0x6983, ErrAuthBlocked, "blocked"},
		{0x6984, ErrConditions, "not usable"},
		{0x6985, ErrConditions, "conditions of use"},
		{0x6986, ErrCommandNotAllowed, "not allowed"},
		{0x6A80, ErrWrongData, "incorrect"},
		{0x6A81, ErrFuncNotSupported, "function not supported"},
		{0x6A82, ErrNotFound, "not found"},
		{0x6A83, ErrNotFound, "record not found"},
		{0x6A84, ErrNoMemory, "memory"},
		{0x6A86, ErrWrongP1P2, "P1-P2"},
		{0x6A88, ErrNotFound, "not found"},
		{0x6B00, ErrWrongP1P2, "P1-P2"},
		{0x6D00, ErrInsNotSupported, "instruction"},
		{0x6E00, ErrClaNotSupported, "class"},
		{0x6883, ErrChainingNotAllowed, "chain"},
		{0x6884, ErrChainingNotAllowed, "chaining"},
		{0x6581, ErrExecution, "memory failure"},
		{0x6400, ErrExecution, "execution"},
		{0x6401, ErrExecution, "execution"},
		{0x6282, nil, "end of file"},
		{0x6F00, nil, "no precise diagnosis"},
		{0x6C10, nil, "transport"},
		{0x1234, nil, "1234"},
	}
	for _, tt := range tests {
		t.Run(tt.sw.String(), func(t *testing.T) {
			err := tt.sw.Err()
			var se *StatusError
			if !errors.As(err, &se) || se.SW != tt.sw {
				t.Fatalf("Err() = %#v, want *StatusError{%v}", err, tt.sw)
			}
			if tt.sentinel != nil && !errors.Is(err, tt.sentinel) {
				t.Errorf("errors.Is(%v, %v) = false", err, tt.sentinel)
			}
			if tt.sentinel == nil && errors.Unwrap(err) != nil {
				t.Errorf("Unwrap = %v, want nil", errors.Unwrap(err))
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, "apdu: status "+tt.sw.String()) || !strings.Contains(msg, tt.msg) {
				t.Errorf("message %q, want prefix %q and %q", msg, "apdu: status "+tt.sw.String(), tt.msg)
			}
			if !errors.Is(err, &StatusError{SW: tt.sw}) || errors.Is(err, &StatusError{SW: tt.sw + 1}) {
				t.Error("Is by status word broken")
			}
		})
	}
}

func TestSWOK(t *testing.T) {
	if err := SWOK.Err(); err != nil {
		t.Fatal(err)
	}
}

func TestVerifyError(t *testing.T) {
	for x := 0; x <= 15; x++ {
		sw := SW(0x63C0 + x)
		var ve *VerifyError
		err := sw.Err()
		if !errors.As(err, &ve) || ve.Retries != x {
			t.Fatalf("%v: Err() = %v, want VerifyError{%d}", sw, err, x)
		}
		if !errors.Is(err, ErrVerifyFailed) {
			t.Errorf("%v does not unwrap to ErrVerifyFailed", sw)
		}
		if errors.Is(err, ErrSecurityStatus) {
			t.Errorf("%v is ErrSecurityStatus", sw)
		}
	}
	// 6300 is a plain warning, not a counter.
	var ve *VerifyError
	if errors.As(SW(0x6300).Err(), &ve) {
		t.Fatal("6300 gave a VerifyError")
	}
}

func TestSWParts(t *testing.T) {
	sw := SW(0x6A82)
	if sw.SW1() != 0x6A || sw.SW2() != 0x82 || sw.String() != "6A82" {
		t.Fatalf("SW1 %02X SW2 %02X String %q", sw.SW1(), sw.SW2(), sw)
	}
}

// Every sentinel carries the package prefix, as the style guide asks.
func TestSentinelMessages(t *testing.T) {
	for _, e := range swTable {
		if e.err != nil && !strings.HasPrefix(e.err.Error(), "apdu: ") {
			t.Errorf("%v: sentinel %q lacks the apdu prefix", e.sw, e.err)
		}
	}
}

package apdu

import (
	"errors"
	"fmt"
)

// SW is a status word: SW1 in the high byte, SW2 in the low byte (ISO/IEC 7816-4 §5.1.3).
type SW uint16

// Status words of ISO/IEC 7816-4 §5.1.3 (tables 5 and 6) that callers test for.
const (
	SWOK                  SW = 0x9000 // normal processing
	SWCorruptedData       SW = 0x6281 // warning: part of returned data may be corrupted
	SWEndOfFile           SW = 0x6282 // warning: end of file or record before Ne bytes
	SWFileDeactivated     SW = 0x6283 // warning: selected file deactivated
	SWExecutionError      SW = 0x6400 // execution error, state of non-volatile memory unchanged
	SWMemoryFailure       SW = 0x6581 // execution error: memory failure
	SWWrongLength         SW = 0x6700 // checking error: wrong length
	SWLogicalChannel      SW = 0x6881 // CLA function: logical channel not supported
	SWSecureMessaging     SW = 0x6882 // CLA function: secure messaging not supported
	SWLastCmdChainExpect  SW = 0x6883 // CLA function: last command of the chain expected
	SWChainingUnsupported SW = 0x6884 // CLA function: command chaining not supported
	SWIncompatibleFile    SW = 0x6981 // command not allowed: incompatible with file structure
	SWSecurityStatus      SW = 0x6982 // command not allowed: security status not satisfied
	SWAuthBlocked         SW = 0x6983 // command not allowed: authentication method blocked
	SWDataInvalid         SW = 0x6984 // command not allowed: reference data not usable
	SWConditions          SW = 0x6985 // command not allowed: conditions of use not satisfied
	SWCommandNotAllowed   SW = 0x6986 // command not allowed: no current EF
	SWWrongData           SW = 0x6A80 // wrong parameters: incorrect data field
	SWFuncNotSupported    SW = 0x6A81 // wrong parameters: function not supported
	SWFileNotFound        SW = 0x6A82 // wrong parameters: file or application not found
	SWRecordNotFound      SW = 0x6A83 // wrong parameters: record not found
	SWNotEnoughMemory     SW = 0x6A84 // wrong parameters: not enough memory space
	SWNcInconsistentTLV   SW = 0x6A85 // wrong parameters: Nc inconsistent with TLV structure
	SWIncorrectP1P2       SW = 0x6A86 // wrong parameters: incorrect P1-P2
	SWNcInconsistentP1P2  SW = 0x6A87 // wrong parameters: Nc inconsistent with P1-P2
	SWRefDataNotFound     SW = 0x6A88 // wrong parameters: referenced data not found
	SWWrongP1P2           SW = 0x6B00 // wrong parameters P1-P2
	SWInsNotSupported     SW = 0x6D00 // instruction code not supported or invalid
	SWClaNotSupported     SW = 0x6E00 // class not supported
	SWUnknown             SW = 0x6F00 // no precise diagnosis
)

// Sentinels a *StatusError unwraps to. A driver adds card-specific meanings by wrapping,
// never by adding words here.
var (
	ErrWrongLength        = errors.New("apdu: wrong length")
	ErrSecurityStatus     = errors.New("apdu: security status not satisfied")
	ErrAuthBlocked        = errors.New("apdu: authentication method blocked")
	ErrConditions         = errors.New("apdu: conditions of use not satisfied")
	ErrWrongData          = errors.New("apdu: incorrect data")
	ErrNotFound           = errors.New("apdu: file or reference data not found")
	ErrNoMemory           = errors.New("apdu: not enough memory")
	ErrWrongP1P2          = errors.New("apdu: incorrect parameters P1-P2")
	ErrInsNotSupported    = errors.New("apdu: instruction not supported")
	ErrClaNotSupported    = errors.New("apdu: class not supported")
	ErrFuncNotSupported   = errors.New("apdu: function not supported")
	ErrCommandNotAllowed  = errors.New("apdu: command not allowed")
	ErrChainingNotAllowed = errors.New("apdu: command chaining not supported")
	ErrExecution          = errors.New("apdu: execution error")
	// ErrVerifyFailed is what a *VerifyError (63Cx) unwraps to.
	ErrVerifyFailed = errors.New("apdu: verification failed")
)

// swTable maps a status word to its sentinel and message. It is the only place a status
// word gets a meaning in this package.
var swTable = []struct {
	sw  SW
	err error
	msg string
}{
	{SWCorruptedData, nil, "part of returned data may be corrupted"},
	{SWEndOfFile, nil, "end of file reached before reading Ne bytes"},
	{SWFileDeactivated, nil, "selected file deactivated"},
	{SWExecutionError, ErrExecution, "execution error"},
	{SWMemoryFailure, ErrExecution, "memory failure"},
	{SWWrongLength, ErrWrongLength, "wrong length"},
	{SWLogicalChannel, ErrClaNotSupported, "logical channel not supported"},
	{SWSecureMessaging, ErrClaNotSupported, "secure messaging not supported"},
	{SWLastCmdChainExpect, ErrChainingNotAllowed, "last command of the chain expected"},
	{SWChainingUnsupported, ErrChainingNotAllowed, "command chaining not supported"},
	{SWIncompatibleFile, ErrCommandNotAllowed, "command incompatible with file structure"},
	{SWSecurityStatus, ErrSecurityStatus, "security status not satisfied"},
	{SWAuthBlocked, ErrAuthBlocked, "authentication method blocked"},
	{SWDataInvalid, ErrConditions, "reference data not usable"},
	{SWConditions, ErrConditions, "conditions of use not satisfied"},
	{SWCommandNotAllowed, ErrCommandNotAllowed, "command not allowed (no current EF)"},
	{SWWrongData, ErrWrongData, "incorrect parameters in the data field"},
	{SWFuncNotSupported, ErrFuncNotSupported, "function not supported"},
	{SWFileNotFound, ErrNotFound, "file or application not found"},
	{SWRecordNotFound, ErrNotFound, "record not found"},
	{SWNotEnoughMemory, ErrNoMemory, "not enough memory space in the file"},
	{SWNcInconsistentTLV, ErrWrongData, "Nc inconsistent with TLV structure"},
	{SWIncorrectP1P2, ErrWrongP1P2, "incorrect parameters P1-P2"},
	{SWNcInconsistentP1P2, ErrWrongData, "Nc inconsistent with parameters P1-P2"},
	{SWRefDataNotFound, ErrNotFound, "referenced data or reference data not found"},
	{SWWrongP1P2, ErrWrongP1P2, "wrong parameters P1-P2"},
	{SWInsNotSupported, ErrInsNotSupported, "instruction code not supported or invalid"},
	{SWClaNotSupported, ErrClaNotSupported, "class not supported"},
	{SWUnknown, nil, "no precise diagnosis"},
}

func lookupSW(sw SW) (error, string, bool) {
	for _, t := range swTable {
		if t.sw == sw {
			return t.err, t.msg, true
		}
	}
	return nil, "", false
}

// StatusError is a status word other than 9000 and 63Cx.
type StatusError struct{ SW SW }

func (e *StatusError) Error() string {
	if _, msg, ok := lookupSW(e.SW); ok {
		return fmt.Sprintf("apdu: status %04X: %s", uint16(e.SW), msg)
	}
	switch e.SW.SW1() {
	case 0x61, 0x6C:
		// Exchange consumes these; seeing one means a caller bypassed it.
		return fmt.Sprintf("apdu: status %04X: unhandled transport status", uint16(e.SW))
	case 0x62, 0x63:
		return fmt.Sprintf("apdu: status %04X: warning", uint16(e.SW))
	case 0x64, 0x65, 0x66:
		return fmt.Sprintf("apdu: status %04X: execution error", uint16(e.SW))
	}
	return fmt.Sprintf("apdu: status %04X", uint16(e.SW))
}

// Unwrap gives the sentinel for the status word, or nil when it has none.
func (e *StatusError) Unwrap() error {
	if err, _, ok := lookupSW(e.SW); ok {
		return err
	}
	if s1 := e.SW.SW1(); s1 == 0x64 || s1 == 0x65 {
		return ErrExecution
	}
	return nil
}

// Is reports whether target is a *StatusError with the same word, so
// errors.Is(err, &apdu.StatusError{SW: apdu.SWFileNotFound}) works.
func (e *StatusError) Is(target error) bool {
	t, ok := target.(*StatusError)
	return ok && t.SW == e.SW
}

// VerifyError is a failed verification with a retry counter (63Cx; ISO/IEC 7816-4 §7.5.6 VERIFY).
// Retries 0 means the reference data is now blocked.
type VerifyError struct{ Retries int }

func (e *VerifyError) Error() string {
	return fmt.Sprintf("apdu: verification failed, %d tries left", e.Retries)
}

// Unwrap gives ErrVerifyFailed.
func (e *VerifyError) Unwrap() error { return ErrVerifyFailed }

// Err turns a status word into nil (9000), *VerifyError (63Cx) or *StatusError.
func (sw SW) Err() error {
	switch {
	case sw == SWOK:
		return nil
	case sw&0xFFF0 == 0x63C0:
		return &VerifyError{Retries: int(sw & 0xF)}
	default:
		return &StatusError{SW: sw}
	}
}

// String is the word as four hex digits, the way specs write it.
func (sw SW) String() string { return fmt.Sprintf("%04X", uint16(sw)) }

// SW1 is the high byte.
func (sw SW) SW1() byte { return byte(sw >> 8) }

// SW2 is the low byte.
func (sw SW) SW2() byte { return byte(sw) }

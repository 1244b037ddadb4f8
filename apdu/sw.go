package apdu

import (
	"errors"
	"fmt"
)

// SW is a status word: SW1 in the high byte, SW2 in the low byte.
type SW uint16

// Status words of ISO/IEC 7816-4 §5.6 that callers test for.
const (
	SWOK                  SW = 0x9000
	SWWrongLength         SW = 0x6700
	SWSecurityStatus      SW = 0x6982
	SWAuthBlocked         SW = 0x6983
	SWDataInvalid         SW = 0x6984
	SWConditions          SW = 0x6985
	SWCommandNotAllowed   SW = 0x6986
	SWWrongData           SW = 0x6A80
	SWFuncNotSupported    SW = 0x6A81
	SWFileNotFound        SW = 0x6A82
	SWRecordNotFound      SW = 0x6A83
	SWNotEnoughMemory     SW = 0x6A84
	SWIncorrectP1P2       SW = 0x6A86
	SWRefDataNotFound     SW = 0x6A88
	SWWrongP1P2           SW = 0x6B00
	SWInsNotSupported     SW = 0x6D00
	SWClaNotSupported     SW = 0x6E00
	SWUnknown             SW = 0x6F00
	SWLastCmdChainExpect  SW = 0x6883
	SWChainingUnsupported SW = 0x6884
)

// Sentinels a StatusError unwraps to.
var (
	ErrWrongLength       = errors.New("wrong length")
	ErrSecurityStatus    = errors.New("security status not satisfied")
	ErrAuthBlocked       = errors.New("authentication method blocked")
	ErrConditions        = errors.New("conditions of use not satisfied")
	ErrWrongData         = errors.New("incorrect data")
	ErrNotFound          = errors.New("file or reference data not found")
	ErrNoMemory          = errors.New("not enough memory")
	ErrWrongP1P2         = errors.New("incorrect parameters P1-P2")
	ErrInsNotSupported   = errors.New("instruction not supported")
	ErrClaNotSupported   = errors.New("class not supported")
	ErrFuncNotSupported  = errors.New("function not supported")
	ErrCommandNotAllowed = errors.New("command not allowed")
)

var swTable = []struct {
	sw  SW
	err error
}{
	{SWWrongLength, ErrWrongLength},
	{SWSecurityStatus, ErrSecurityStatus},
	{SWAuthBlocked, ErrAuthBlocked},
	{SWDataInvalid, ErrConditions},
	{SWConditions, ErrConditions},
	{SWCommandNotAllowed, ErrCommandNotAllowed},
	{SWWrongData, ErrWrongData},
	{SWFuncNotSupported, ErrFuncNotSupported},
	{SWFileNotFound, ErrNotFound},
	{SWRecordNotFound, ErrNotFound},
	{SWRefDataNotFound, ErrNotFound},
	{SWNotEnoughMemory, ErrNoMemory},
	{SWIncorrectP1P2, ErrWrongP1P2},
	{SWWrongP1P2, ErrWrongP1P2},
	{SWInsNotSupported, ErrInsNotSupported},
	{SWClaNotSupported, ErrClaNotSupported},
}

// StatusError is a status word other than 9000.
type StatusError struct{ SW SW }

func (e *StatusError) Error() string {
	for _, t := range swTable {
		if t.sw == e.SW {
			return fmt.Sprintf("apdu: status %04X (%v)", uint16(e.SW), t.err)
		}
	}
	if e.SW&0xFFF0 == 0x63C0 {
		return fmt.Sprintf("apdu: status %04X (verification failed, %d tries left)", uint16(e.SW), e.SW&0xF)
	}
	return fmt.Sprintf("apdu: status %04X", uint16(e.SW))
}

// Unwrap gives the sentinel for the status word, or nil.
func (e *StatusError) Unwrap() error {
	for _, t := range swTable {
		if t.sw == e.SW {
			return t.err
		}
	}
	return nil
}

// VerifyError is a failed verification with a retry counter (63Cx).
type VerifyError struct{ Retries int }

func (e *VerifyError) Error() string {
	return fmt.Sprintf("apdu: verification failed, %d tries left", e.Retries)
}

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

func (sw SW) String() string { return fmt.Sprintf("%04X", uint16(sw)) }

// SW1 and SW2 are the two bytes.
func (sw SW) SW1() byte { return byte(sw >> 8) }
func (sw SW) SW2() byte { return byte(sw) }

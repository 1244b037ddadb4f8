package pcsc

import (
	"errors"
	"fmt"
)

// Error is a raw PC/SC result code (SCARD_E_*, SCARD_W_*, SCARD_F_*). Every error from this
// package that comes from a PC/SC call wraps one; errors.As reaches it.
type Error struct{ Code uint32 }

func (e *Error) Error() string {
	return fmt.Sprintf("pcsc: %s (0x%08X): %s", codeName(e.Code), e.Code, codeText(e.Code))
}

// Sentinels for the PC/SC outcomes callers act on. Each error returned wraps one of them
// (when it applies) and the *Error with the raw code.
var (
	ErrNoService        = errors.New("pcsc: the PC/SC service (pcscd) is not running")
	ErrNoReader         = errors.New("pcsc: reader not found")
	ErrNoCard           = errors.New("pcsc: no card in the reader")
	ErrCardRemoved      = errors.New("pcsc: card removed")
	ErrCardReset        = errors.New("pcsc: card was reset")
	ErrSharingViolation = errors.New("pcsc: card in exclusive use by another program")
	ErrTimeout          = errors.New("pcsc: timeout")
	// ErrCardUnresponsive: the card is mute, unpowered or not supported by the reader.
	ErrCardUnresponsive = errors.New("pcsc: card does not respond")
	// ErrClosed is returned for calls on a closed Context or Card.
	ErrClosed = errors.New("pcsc: use of closed handle")
)

// PC/SC result codes used by name (pcsclite.h; identical on Windows and macOS).
const (
	codeSuccess            uint32 = 0x00000000
	codeCancelled          uint32 = 0x80100002
	codeInvalidHandle      uint32 = 0x80100003
	codeInvalidParameter   uint32 = 0x80100004
	codeNoMemory           uint32 = 0x80100006
	codeInsufficientBuffer uint32 = 0x80100008
	codeUnknownReader      uint32 = 0x80100009
	codeTimeout            uint32 = 0x8010000A
	codeSharingViolation   uint32 = 0x8010000B
	codeNoSmartcard        uint32 = 0x8010000C
	codeProtoMismatch      uint32 = 0x8010000F
	codeNotReady           uint32 = 0x80100010
	codeSystemCancelled    uint32 = 0x80100012
	codeCommError          uint32 = 0x80100013
	codeReaderUnavailable  uint32 = 0x80100017
	codeNoService          uint32 = 0x8010001D
	codeServiceStopped     uint32 = 0x8010001E
	codeNoReaders          uint32 = 0x8010002E
	codeUnsupportedCard    uint32 = 0x80100065
	codeUnresponsiveCard   uint32 = 0x80100066
	codeUnpoweredCard      uint32 = 0x80100067
	codeResetCard          uint32 = 0x80100068
	codeRemovedCard        uint32 = 0x80100069
	codeNotTransacted      uint32 = 0x80100016
	codeInternalError      uint32 = 0x80100001
	codeUnknownError       uint32 = 0x80100014
)

var codeTable = map[uint32]struct {
	name, text string
	sentinel   error
}{
	codeSuccess:            {"SCARD_S_SUCCESS", "success", nil},
	codeInternalError:      {"SCARD_F_INTERNAL_ERROR", "internal error", nil},
	codeCancelled:          {"SCARD_E_CANCELLED", "cancelled", nil},
	codeInvalidHandle:      {"SCARD_E_INVALID_HANDLE", "invalid handle", nil},
	codeInvalidParameter:   {"SCARD_E_INVALID_PARAMETER", "invalid parameter", nil},
	codeNoMemory:           {"SCARD_E_NO_MEMORY", "out of memory", nil},
	codeInsufficientBuffer: {"SCARD_E_INSUFFICIENT_BUFFER", "buffer too small", nil},
	codeUnknownReader:      {"SCARD_E_UNKNOWN_READER", "unknown reader", ErrNoReader},
	codeTimeout:            {"SCARD_E_TIMEOUT", "timeout", ErrTimeout},
	codeSharingViolation:   {"SCARD_E_SHARING_VIOLATION", "sharing violation", ErrSharingViolation},
	codeNoSmartcard:        {"SCARD_E_NO_SMARTCARD", "no card in the reader", ErrNoCard},
	codeProtoMismatch:      {"SCARD_E_PROTO_MISMATCH", "protocol mismatch", ErrCardUnresponsive},
	codeNotReady:           {"SCARD_E_NOT_READY", "reader or card not ready", nil},
	codeSystemCancelled:    {"SCARD_E_SYSTEM_CANCELLED", "cancelled by the system", nil},
	codeCommError:          {"SCARD_F_COMM_ERROR", "communication error with pcscd", nil},
	codeUnknownError:       {"SCARD_F_UNKNOWN_ERROR", "unknown error", nil},
	codeNotTransacted:      {"SCARD_E_NOT_TRANSACTED", "transaction failed", nil},
	codeReaderUnavailable:  {"SCARD_E_READER_UNAVAILABLE", "reader unavailable", ErrNoReader},
	codeNoService:          {"SCARD_E_NO_SERVICE", "service not available", ErrNoService},
	codeServiceStopped:     {"SCARD_E_SERVICE_STOPPED", "service stopped", ErrNoService},
	codeNoReaders:          {"SCARD_E_NO_READERS_AVAILABLE", "no readers available", ErrNoReader},
	codeUnsupportedCard:    {"SCARD_W_UNSUPPORTED_CARD", "card not supported by the reader", ErrCardUnresponsive},
	codeUnresponsiveCard:   {"SCARD_W_UNRESPONSIVE_CARD", "card is mute", ErrCardUnresponsive},
	codeUnpoweredCard:      {"SCARD_W_UNPOWERED_CARD", "card is unpowered", ErrCardUnresponsive},
	codeResetCard:          {"SCARD_W_RESET_CARD", "card was reset", ErrCardReset},
	codeRemovedCard:        {"SCARD_W_REMOVED_CARD", "card was removed", ErrCardRemoved},
}

func codeName(c uint32) string {
	if e, ok := codeTable[c]; ok {
		return e.name
	}
	return fmt.Sprintf("SCARD_0x%08X", c)
}

func codeText(c uint32) string {
	if e, ok := codeTable[c]; ok {
		return e.text
	}
	return "unknown PC/SC result"
}

// codeError carries the sentinel and the raw code; op says what failed.
type codeError struct {
	op       string
	sentinel error
	raw      *Error
	hint     string
}

func (e *codeError) Error() string {
	msg := "pcsc: " + e.op + ": "
	if e.sentinel != nil {
		msg += trimPrefix(e.sentinel.Error())
	} else {
		msg += codeText(e.raw.Code)
	}
	msg += fmt.Sprintf(" (%s)", codeName(e.raw.Code))
	if e.hint != "" {
		msg += "; " + e.hint
	}
	return msg
}

func (e *codeError) Unwrap() []error {
	if e.sentinel == nil {
		return []error{e.raw}
	}
	return []error{e.sentinel, e.raw}
}

func trimPrefix(s string) string {
	const p = "pcsc: "
	if len(s) > len(p) && s[:len(p)] == p {
		return s[len(p):]
	}
	return s
}

// noServiceHint is the plain advice given when pcscd cannot be reached.
const noServiceHint = "start it with `sudo systemctl start pcscd.socket` (or run `sudo pcscd`); " +
	"on Debian/Ubuntu install it with `sudo apt install pcscd`"

// wrap turns a PC/SC result code into an error; nil for success.
func wrap(op string, code uint32) error {
	if code == codeSuccess {
		return nil
	}
	e := &codeError{op: op, raw: &Error{Code: code}}
	if t, ok := codeTable[code]; ok {
		e.sentinel = t.sentinel
	}
	if e.sentinel == ErrNoService {
		e.hint = noServiceHint
	}
	return e
}

// serviceLost reports codes after which a context (and its card handles) is dead: pcscd
// stopped or restarted.
func serviceLost(code uint32) bool {
	return code == codeNoService || code == codeServiceStopped || code == codeInvalidHandle || code == codeCommError
}

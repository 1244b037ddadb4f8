package core

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/p11-card/p11-card/apdu"
	"github.com/p11-card/p11-card/cards"
	"github.com/p11-card/p11-card/pcsc"
	"github.com/p11-card/p11-card/slotmgr"
)

// rvError is an argument or state error that already knows its exact CKR_* code.
type rvError struct {
	rv  uint64
	msg string
}

func (e *rvError) Error() string { return fmt.Sprintf("p11: %s (%s)", e.msg, RVName(e.rv)) }

// errRV makes an error carrying rv.
func errRV(rv uint64, msg string) error { return &rvError{rv: rv, msg: msg} }

// errTable is the ordered mapping from error chains to return values. The first entry
// whose test matches wins; order matters where a chain holds several sentinels.
var errTable = []struct {
	match func(error) bool
	rv    uint64
}{
	{is(context.Canceled), CKR_FUNCTION_CANCELED},
	{is(slotmgr.ErrTokenRemoved), CKR_DEVICE_REMOVED},
	{is(pcsc.ErrCardRemoved), CKR_DEVICE_REMOVED},
	{is(pcsc.ErrNoCard), CKR_DEVICE_REMOVED},
	{is(pcsc.ErrNoReader), CKR_DEVICE_REMOVED},
	{is(slotmgr.ErrClosed), CKR_CRYPTOKI_NOT_INITIALIZED},
	{is(cards.ErrPINBlocked), CKR_PIN_LOCKED},
	{is(apdu.ErrAuthBlocked), CKR_PIN_LOCKED},
	{func(err error) bool {
		var v *apdu.VerifyError
		return errors.As(err, &v) && v.Retries == 0
	}, CKR_PIN_LOCKED},
	{func(err error) bool {
		var v *apdu.VerifyError
		return errors.As(err, &v)
	}, CKR_PIN_INCORRECT},
	{is(cards.ErrPINIncorrect), CKR_PIN_INCORRECT},
	{is(cards.ErrPINLength), CKR_PIN_LEN_RANGE},
	{is(cards.ErrLoginRequired), CKR_USER_NOT_LOGGED_IN},
	{is(apdu.ErrSecurityStatus), CKR_USER_NOT_LOGGED_IN},
	{is(cards.ErrMechanismUnsupported), CKR_KEY_FUNCTION_NOT_PERMITTED},
	{is(cards.ErrKeyNotFound), CKR_KEY_HANDLE_INVALID},
	{is(cards.ErrObjectNotFound), CKR_OBJECT_HANDLE_INVALID},
	{is(cards.ErrInputLength), CKR_DATA_LEN_RANGE},
	{is(cards.ErrBadInput), CKR_DATA_INVALID},
	{is(cards.ErrCardFull), CKR_DEVICE_MEMORY},
	{is(apdu.ErrNoMemory), CKR_DEVICE_MEMORY},
	{is(cards.ErrNotSupported), CKR_FUNCTION_NOT_SUPPORTED},
	{is(cards.ErrNotRecognized), CKR_TOKEN_NOT_RECOGNIZED},
	{is(apdu.ErrWrongData), CKR_DATA_INVALID},
	{is(apdu.ErrWrongLength), CKR_DATA_LEN_RANGE},
	{is(apdu.ErrConditions), CKR_FUNCTION_REJECTED},
	{is(cards.ErrBadCard), CKR_DEVICE_ERROR},
	{is(apdu.ErrMalformed), CKR_DEVICE_ERROR},
	{is(slotmgr.ErrCardMute), CKR_DEVICE_ERROR},
	{is(slotmgr.ErrReaderUnavailable), CKR_DEVICE_ERROR},
	{func(err error) bool {
		var s *apdu.StatusError
		return errors.As(err, &s)
	}, CKR_DEVICE_ERROR},
	{is(context.DeadlineExceeded), CKR_DEVICE_ERROR},
	{is(pcsc.ErrCardReset), CKR_DEVICE_ERROR},
	{is(pcsc.ErrSharingViolation), CKR_DEVICE_ERROR},
	{is(pcsc.ErrTimeout), CKR_DEVICE_ERROR},
	{is(pcsc.ErrCardUnresponsive), CKR_DEVICE_ERROR},
	{is(pcsc.ErrNoService), CKR_DEVICE_ERROR},
	{func(err error) bool {
		var e *pcsc.Error
		return errors.As(err, &e)
	}, CKR_DEVICE_ERROR},
}

func is(target error) func(error) bool {
	return func(err error) bool { return errors.Is(err, target) }
}

var unknownOnce sync.Map // error text → struct{}: log each unknown error chain once

// RV maps an error to its return value: nil is CKR_OK; an *rvError its own code; then the
// ordered table; anything else CKR_FUNCTION_FAILED, logged once with its chain.
func RV(err error) uint64 {
	if err == nil {
		return CKR_OK
	}
	var r *rvError
	if errors.As(err, &r) {
		return r.rv
	}
	for _, e := range errTable {
		if e.match(err) {
			return e.rv
		}
	}
	if _, seen := unknownOnce.LoadOrStore(err.Error(), struct{}{}); !seen {
		logf("unmapped error (CKR_FUNCTION_FAILED): %v", err)
	}
	return CKR_FUNCTION_FAILED
}

// RVName is the spec name of a return value ("CKR_PIN_INCORRECT"), or its hex value.
func RVName(rv uint64) string {
	if n, ok := rvNames[rv]; ok {
		return n
	}
	return fmt.Sprintf("CKR_0x%X", rv)
}

package core

import (
	"context"
	"errors"
	"fmt"
	"maps"
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

// The card's refusals inside a call, held to the codes that call may return (PKCS#11
// 2.40 §5.x lists them per function; heldTo applies them); the card's reason stays in
// the error's text. Inside a private-key operation or a derivation:
//   - A PIN refused inside the call (a PIN-always key's, the cached PIN's, one typed on
//     the PIN pad) is CKR_USER_NOT_LOGGED_IN: the call needs a login that does not hold.
//     C_Sign, C_Decrypt and C_DeriveKey give no PIN codes.
//   - A key the card no longer has, under a running operation, is
//     CKR_OBJECT_HANDLE_INVALID, as for any object that another application deleted
//     under an operation (pkcs11-usage.md §4.3). C_DeriveKey names its key itself, and
//     keeps CKR_KEY_HANDLE_INVALID.
//   - The card refusing the key's algorithm, after C_SignInit or C_DecryptInit took it,
//     is CKR_FUNCTION_FAILED.
//   - Input the card refused is CKR_ENCRYPTED_DATA_* for decryption, and
//     CKR_MECHANISM_PARAM_INVALID for derivation (the peer's point is the parameter).
var (
	pinFailures = map[uint64]uint64{
		CKR_PIN_INCORRECT: CKR_USER_NOT_LOGGED_IN, CKR_PIN_LOCKED: CKR_USER_NOT_LOGGED_IN, CKR_PIN_LEN_RANGE: CKR_USER_NOT_LOGGED_IN,
	}
	signFailures = with(pinFailures, map[uint64]uint64{
		CKR_KEY_HANDLE_INVALID: CKR_OBJECT_HANDLE_INVALID, CKR_KEY_FUNCTION_NOT_PERMITTED: CKR_FUNCTION_FAILED,
	})
	decryptFailures = with(signFailures, map[uint64]uint64{
		CKR_DATA_INVALID: CKR_ENCRYPTED_DATA_INVALID, CKR_DATA_LEN_RANGE: CKR_ENCRYPTED_DATA_LEN_RANGE,
	})
	deriveFailures = with(pinFailures, map[uint64]uint64{
		CKR_DATA_INVALID: CKR_MECHANISM_PARAM_INVALID, CKR_DATA_LEN_RANGE: CKR_MECHANISM_PARAM_INVALID,
	})
	// A listing (C_FindObjectsInit, C_GetAttributeValue and the calls that look up the
	// card's objects) sends only reads: a refusal no read can meet is a broken card. (An
	// object the card does not have is absent from the list, not an error.)
	listingFailures = deviceErrors(CKR_FUNCTION_REJECTED, CKR_FUNCTION_NOT_SUPPORTED, CKR_USER_NOT_LOGGED_IN,
		CKR_PIN_INCORRECT, CKR_PIN_LOCKED, CKR_PIN_LEN_RANGE, CKR_KEY_HANDLE_INVALID, CKR_KEY_FUNCTION_NOT_PERMITTED,
		CKR_OBJECT_HANDLE_INVALID, CKR_DATA_INVALID, CKR_DATA_LEN_RANGE, CKR_TOKEN_NOT_RECOGNIZED)
	// C_Login's PIN codes stay. "Security status not satisfied" in answer to a VERIFY
	// says the secret was not accepted; a VERIFY refused for another reason is a broken
	// card.
	loginFailures = with(deviceErrors(CKR_FUNCTION_REJECTED, CKR_KEY_HANDLE_INVALID, CKR_KEY_FUNCTION_NOT_PERMITTED,
		CKR_OBJECT_HANDLE_INVALID, CKR_TOKEN_NOT_RECOGNIZED), map[uint64]uint64{CKR_USER_NOT_LOGGED_IN: CKR_PIN_INCORRECT})
)

// deviceErrors puts CKR_DEVICE_ERROR in place of each of rvs.
func deviceErrors(rvs ...uint64) map[uint64]uint64 {
	out := map[uint64]uint64{}
	for _, rv := range rvs {
		out[rv] = CKR_DEVICE_ERROR
	}
	return out
}

// with is base and more in one new map.
func with(base, more map[uint64]uint64) map[uint64]uint64 {
	out := maps.Clone(base)
	maps.Copy(out, more)
	return out
}

// heldTo gives err the code failures puts in place of its own, if any.
func heldTo(err error, failures map[uint64]uint64) error {
	if err == nil {
		return nil
	}
	if rv, ok := failures[RV(err)]; ok {
		return errRV(rv, err.Error())
	}
	return err
}

package cards

import (
	"context"
	"errors"
	"fmt"

	"github.com/p11-card/p11-card/apdu"
)

// ISO/IEC 7816-4 instructions shared by the PIV and OpenPGP drivers.
const (
	insSelect        = 0xA4 // ISO/IEC 7816-4 §11.2.2 SELECT
	insVerify        = 0x20 // ISO/IEC 7816-4 §11.5.6 VERIFY
	insChangeRefData = 0x24 // ISO/IEC 7816-4 §11.5.7 CHANGE REFERENCE DATA
	insResetRetry    = 0x2C // ISO/IEC 7816-4 §11.5.10 RESET RETRY COUNTER
	insGetChallenge  = 0x84 // ISO/IEC 7816-4 §11.5.3 GET CHALLENGE
)

// SelectAID selects an application by its DF name (ISO/IEC 7816-4 §11.2.2, P1=04 "select
// by DF name", P2=00 "first occurrence, return FCI") and returns the card's answer
// (FCI or application property template). A missing application gives an error wrapping
// both ErrNotRecognized and the status error.
func SelectAID(ctx context.Context, t apdu.Transmitter, aid []byte, opt apdu.Options) ([]byte, error) {
	r, err := apdu.Exchange(ctx, t, apdu.Command{INS: insSelect, P1: 0x04, P2: 0x00, Data: aid, Ne: apdu.MaxShortNe}, opt)
	if err != nil {
		return nil, err
	}
	if err := r.Err(); err != nil {
		switch r.SW {
		case apdu.SWFileNotFound, apdu.SWFuncNotSupported, apdu.SWInsNotSupported,
			apdu.SWClaNotSupported, apdu.SWIncorrectP1P2, apdu.SWWrongP1P2, apdu.SWWrongData, apdu.SWUnknown:
			return nil, fmt.Errorf("%w: select %X: %w", ErrNotRecognized, aid, err)
		}
		return nil, fmt.Errorf("cards: select %X: %w", aid, err)
	}
	return r.Data, nil
}

// Verify sends VERIFY for the reference ref with the (already formatted) reference data.
// The answer is mapped by AuthError.
func Verify(ctx context.Context, t apdu.Transmitter, ref byte, data []byte, opt apdu.Options) error {
	_, err := apdu.Do(ctx, t, apdu.Command{INS: insVerify, P2: ref, Data: data}, opt)
	return AuthError(err)
}

// VerifyStatus sends VERIFY without data (ISO/IEC 7816-4 §11.5.6: "the card returns the
// verification status"): verified is true on 9000; otherwise retries comes from 63Cx, 0
// when the reference is blocked (6983), -1 when the card does not tell.
func VerifyStatus(ctx context.Context, t apdu.Transmitter, ref byte, opt apdu.Options) (retries int, verified bool, err error) {
	r, err := apdu.Exchange(ctx, t, apdu.Command{INS: insVerify, P2: ref}, opt)
	if err != nil {
		return -1, false, err
	}
	switch {
	case r.SW == apdu.SWOK:
		return -1, true, nil
	case r.SW&0xFFF0 == 0x63C0:
		return int(r.SW & 0xF), false, nil
	case r.SW == apdu.SWAuthBlocked:
		return 0, false, nil
	}
	return -1, false, r.Err()
}

// ResetSecurityStatus sends VERIFY with P1=FF (SP 800-73-4 Part 2 §3.2.1; ISO/IEC 7816-4
// §11.5.6): the reference ref is no longer verified.
func ResetSecurityStatus(ctx context.Context, t apdu.Transmitter, ref byte, opt apdu.Options) error {
	_, err := apdu.Do(ctx, t, apdu.Command{INS: insVerify, P1: 0xFF, P2: ref}, opt)
	return err
}

// ChangeReferenceData sends CHANGE REFERENCE DATA (P1=00: old and new data concatenated,
// both formatted by the caller). The answer is mapped by AuthError.
func ChangeReferenceData(ctx context.Context, t apdu.Transmitter, ref byte, oldNew []byte, opt apdu.Options) error {
	_, err := apdu.Do(ctx, t, apdu.Command{INS: insChangeRefData, P2: ref, Data: oldNew}, opt)
	return AuthError(err)
}

// ResetRetryCounter sends RESET RETRY COUNTER with P1 as given (00: unblocking code and new
// reference data concatenated; 02: new data only, after an administrator verification).
// The answer is mapped by AuthError.
func ResetRetryCounter(ctx context.Context, t apdu.Transmitter, p1, ref byte, data []byte, opt apdu.Options) error {
	_, err := apdu.Do(ctx, t, apdu.Command{INS: insResetRetry, P1: p1, P2: ref, Data: data}, opt)
	return AuthError(err)
}

// GetChallenge asks the card for n random bytes (ISO/IEC 7816-4 §11.5.3). n is 1…256 for
// short APDUs.
func GetChallenge(ctx context.Context, t apdu.Transmitter, n int, opt apdu.Options) ([]byte, error) {
	b, err := apdu.Do(ctx, t, apdu.Command{INS: insGetChallenge, Ne: n}, opt)
	if err != nil {
		return nil, err
	}
	if len(b) != n {
		return nil, fmt.Errorf("%w: GET CHALLENGE returned %d bytes, asked %d", ErrBadCard, len(b), n)
	}
	return b, nil
}

// AuthError maps the answer to a PIN command: 63Cx stays a *apdu.VerifyError (with zero
// tries left it also wraps ErrPINBlocked), 6983 wraps ErrPINBlocked, 6982 wraps
// ErrLoginRequired; other errors pass unchanged (see StatusError for the rest).
func AuthError(err error) error {
	if err == nil {
		return nil
	}
	var ve *apdu.VerifyError
	if errors.As(err, &ve) {
		if ve.Retries == 0 {
			return fmt.Errorf("%w: %w", ErrPINBlocked, err)
		}
		return err
	}
	if errors.Is(err, apdu.ErrAuthBlocked) {
		return fmt.Errorf("%w: %w", ErrPINBlocked, err)
	}
	return StatusError(err)
}

// StatusError adds the card-level sentinel to a status error: 6982 wraps ErrLoginRequired.
// Other errors pass unchanged.
func StatusError(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, apdu.ErrSecurityStatus) && !errors.Is(err, ErrLoginRequired) {
		return fmt.Errorf("%w: %w", ErrLoginRequired, err)
	}
	return err
}

// ATRCaps is what an ATR's historical bytes say about APDU transport (ISO/IEC 7816-4 §8.1.1,
// card capabilities, compact-TLV tag 7, third software function table).
type ATRCaps struct {
	Known      bool // the ATR carries a card-capabilities object
	Chaining   bool // command chaining
	Extended   bool // extended Lc and Le fields
	Historical []byte
}

// ParseATRCaps decodes the ATR's structure (ISO/IEC 7816-3 §8.2) and looks for the card
// capabilities in the historical bytes. A malformed ATR gives the zero value.
func ParseATRCaps(atr []byte) ATRCaps {
	hist := HistoricalBytes(atr)
	caps := ATRCaps{Historical: hist}
	if len(hist) == 0 {
		return caps
	}
	var objs []byte
	switch hist[0] {
	case 0x80:
		objs = hist[1:]
	case 0x00:
		if len(hist) < 4 {
			return caps
		}
		objs = hist[1 : len(hist)-3]
	default:
		return caps
	}
	for len(objs) > 0 {
		tag, n := objs[0]>>4, int(objs[0]&0x0F)
		if 1+n > len(objs) {
			break
		}
		v := objs[1 : 1+n]
		if tag == 7 && n >= 3 {
			caps.Known = true
			caps.Chaining = v[2]&0x80 != 0
			caps.Extended = v[2]&0x40 != 0
		}
		objs = objs[1+n:]
	}
	return caps
}

// HistoricalBytes returns the historical bytes of an ATR (ISO/IEC 7816-3 §8.2.2), nil when
// the ATR is too short for what T0 announces.
func HistoricalBytes(atr []byte) []byte {
	if len(atr) < 2 {
		return nil
	}
	k := int(atr[1] & 0x0F)
	y := atr[1] >> 4
	i := 2
	for {
		for _, bit := range []byte{1, 2, 4} { // TA, TB, TC
			if y&bit != 0 {
				i++
			}
		}
		if y&8 == 0 {
			break
		}
		if i >= len(atr) {
			return nil
		}
		y = atr[i] >> 4
		i++
	}
	if i+k > len(atr) {
		return nil
	}
	return atr[i : i+k : i+k]
}

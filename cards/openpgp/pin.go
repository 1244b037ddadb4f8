package openpgp

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/p11-card/p11-card/apdu"
	"github.com/p11-card/p11-card/cards"
)

// pw names one of the secrets for KDF salts and length limits.
type pw int

const (
	pwPW1 pw = iota
	pwRC
	pwPW3
)

func (p pw) String() string { return [...]string{"PW1", "reset code", "PW3"}[p] }

func (t *Token) limits(p pw) (min, max int) {
	switch p {
	case pwPW1:
		min, max = minPW1, t.ad.PW.PW1Max
	case pwRC:
		min, max = minRC, t.ad.PW.RCMax
	default:
		min, max = minPW3, t.ad.PW.PW3Max
	}
	if max == 0 || t.kdfOn() {
		max = 127 // with a KDF the card limits the hash, not the PIN
	}
	return min, max
}

func (t *Token) kdfOn() bool { return t.kdfLoaded && t.kdf.Active() }

// loadKDF reads the KDF-DO (F9) once per transaction sequence, where the card announces it.
func (t *Token) loadKDF(ctx context.Context) error {
	if t.kdfLoaded {
		return nil
	}
	if !t.ad.Caps.KDF {
		t.kdf, t.kdfLoaded = KDF{}, true
		return nil
	}
	b, err := t.getData(ctx, doKDF)
	switch {
	case err == nil:
		k, err := ParseKDF(b)
		if err != nil {
			return err
		}
		t.kdf = k
	case errors.Is(err, apdu.ErrNotFound):
		t.kdf = KDF{}
	default:
		return fmt.Errorf("openpgp: KDF-DO: %w", err)
	}
	t.kdfLoaded = true
	return nil
}

// encode checks a secret's length and hashes it when the KDF says so.
func (t *Token) encode(ctx context.Context, p pw, secret []byte) ([]byte, error) {
	if err := t.loadKDF(ctx); err != nil {
		return nil, err
	}
	min, max := t.limits(p)
	if len(secret) < min || len(secret) > max {
		return nil, fmt.Errorf("%w: openpgp: %s must be %d to %d bytes", cards.ErrPINLength, p, min, max)
	}
	return t.kdf.derive(secret, int(p)), nil
}

// refRC stands for the reset code where pinErr takes a PW reference: RESET RETRY COUNTER
// checks it under PW1's (81).
const refRC byte = 0

// pinErr gives a PIN command's failure its card-level meaning, keeping the cached retry
// counters current. ref is the PW the command checked, refRC for the reset code.
func (t *Token) pinErr(ctx context.Context, what string, ref byte, err error) error {
	if errors.Is(err, apdu.ErrSecurityStatus) {
		err = t.wrongSecret(ctx, ref, err)
	}
	var ve *apdu.VerifyError
	if errors.As(err, &ve) {
		switch {
		case ve.Retries < 0:
		case ref == pwSign || ref == pwOther:
			t.ad.PW.PW1Retries = ve.Retries
		case ref == pwAdmin:
			t.ad.PW.PW3Retries = ve.Retries
		case ref == refRC:
			t.ad.PW.RCRetries = ve.Retries
		}
		if ve.Retries == 0 {
			return fmt.Errorf("openpgp: %s: %w (%w)", what, cards.ErrPINBlocked, err)
		}
		return fmt.Errorf("openpgp: %s: %w", what, err)
	}
	if errors.Is(err, apdu.ErrAuthBlocked) {
		return fmt.Errorf("openpgp: %s: %w (%w)", what, cards.ErrPINBlocked, err)
	}
	if errors.Is(err, apdu.ErrWrongLength) {
		return fmt.Errorf("openpgp: %s: %w (%w)", what, cards.ErrPINLength, err)
	}
	return fmt.Errorf("openpgp: %s: %w", what, err)
}

// wrongSecret is a PIN command's 6982 as the wrong secret it reports: a YubiKey and a
// Gnuk (the Nitrokey Start) answer a wrong PW so (GnuPG's SW_CHV_WRONG), without the
// counter 63Cx carries. The PW status bytes hold it (one GET DATA, on this failure only,
// as ykman reads them); unreadable, the count is unknown (-1).
func (t *Token) wrongSecret(ctx context.Context, ref byte, err error) error {
	n := -1
	if st, rerr := t.readPW(ctx); rerr == nil {
		t.ad.PW = st
		n = map[byte]int{pwSign: st.PW1Retries, pwOther: st.PW1Retries, pwAdmin: st.PW3Retries, refRC: st.RCRetries}[ref]
	}
	return fmt.Errorf("%w (%w)", &apdu.VerifyError{Retries: n}, err)
}

// verify sends VERIFY for ref (spec 3.4 §7.2.2); the caller holds the lock.
func (t *Token) verify(ctx context.Context, ref byte, pin []byte) error {
	p := pwPW1
	if ref == pwAdmin {
		p = pwPW3
	}
	data, err := t.encode(ctx, p, pin)
	if err != nil {
		return err
	}
	defer wipe(data)
	_, err = apdu.Do(ctx, t.conn, apdu.Command{INS: insVerify, P2: ref, Data: data}, t.opt)
	if err != nil {
		return t.pinErr(ctx, fmt.Sprintf("verify %02X", ref), ref, err)
	}
	t.verified |= pwBit(ref)
	return nil
}

// pwBit is ref's bit in Token.verified.
func pwBit(ref byte) uint8 { return 1 << (ref - pwSign) }

func wipe(b []byte) {
	for i := range b {
		b[i] = 0
	}
}

// PINStatus implements cards.Token from the PW status bytes (C4), one GET DATA: a YubiKey
// answers an empty VERIFY with 6A80, so the counters in C4 are the one source every card
// gives. The card's default retry count (3) is reported as the maximum.
func (t *Token) PINStatus(ctx context.Context, role cards.Role) (cards.PINStatus, error) {
	st, err := t.PINStatuses(ctx, role)
	if err != nil {
		return cards.PINStatus{}, err
	}
	return st[0], nil
}

// PINStatuses implements cards.PINStatuses: C4 holds the counters of PW1, the reset code
// and PW3, so one GET DATA answers for every role.
func (t *Token) PINStatuses(ctx context.Context, roles ...cards.Role) ([]cards.PINStatus, error) {
	if err := pwRoles(roles); err != nil {
		return nil, err
	}
	unlock, err := t.begin(ctx)
	if err != nil {
		return nil, err
	}
	defer unlock()
	st, err := t.readPW(ctx)
	if err != nil {
		return nil, err
	}
	t.ad.PW = st
	return pwStatuses(st, roles), nil
}

// readPW reads the PW status bytes (C4) inside an open transaction.
func (t *Token) readPW(ctx context.Context) (PWStatus, error) {
	b, err := t.getData(ctx, doPWStatus)
	if err != nil {
		return PWStatus{}, fmt.Errorf("openpgp: PW status: %w", err)
	}
	if v, ok, err := apdu.Find(b, doPWStatus); err == nil && ok {
		b = v
	}
	return parsePWStatus(b)
}

// OpenedPINs implements cards.OpenedPINs: Open's application data held the PW status
// bytes (C4 is part of 6E).
func (t *Token) OpenedPINs(roles ...cards.Role) ([]cards.PINStatus, time.Time, bool) {
	o := t.opened
	if o == nil || pwRoles(roles) != nil {
		return nil, time.Time{}, false
	}
	t.opened = nil
	return pwStatuses(o.pw, roles), o.at, true
}

// pwRoles checks that the PW status bytes answer for every role.
func pwRoles(roles []cards.Role) error {
	for _, role := range roles {
		if role != cards.RoleUser && role != cards.RoleSO && role != cards.RolePUK {
			return fmt.Errorf("%w: openpgp: role %s", cards.ErrNotSupported, role)
		}
	}
	return nil
}

// pwStatuses is the state of each role's secret in st.
func pwStatuses(st PWStatus, roles []cards.Role) []cards.PINStatus {
	out := make([]cards.PINStatus, len(roles))
	for i, role := range roles {
		n := map[cards.Role]int{cards.RoleUser: st.PW1Retries, cards.RoleSO: st.PW3Retries, cards.RolePUK: st.RCRetries}[role]
		out[i] = cards.PINStatus{Retries: n, MaxRetries: max(3, n), Blocked: n == 0}
	}
	return out
}

// Login implements cards.Token. RoleUser verifies PW1 for decryption and authentication (82)
// and, unless the card wants the PIN before every signature, for signing (81); RoleSO
// verifies PW3. The reset code is not a login (use Unblock).
func (t *Token) Login(ctx context.Context, role cards.Role, secret []byte) error {
	unlock, err := t.begin(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	switch role {
	case cards.RoleUser:
		if err := t.verify(ctx, pwOther, secret); err != nil {
			return err
		}
		if t.ad.PW.PW1Multi {
			return t.verify(ctx, pwSign, secret)
		}
		return nil
	case cards.RoleSO:
		return t.verify(ctx, pwAdmin, secret)
	}
	return fmt.Errorf("%w: openpgp: login as %s", cards.ErrNotSupported, role)
}

// Logout implements cards.Token: VERIFY with P1=FF (3.x, spec 3.4 §7.2.2) for each PIN
// this token verified (a user login leaves PW3 as another application may have set it);
// cards without it (2.x) are reset by selecting the application again. Nothing verified
// since the last selection: no APDU.
func (t *Token) Logout(ctx context.Context) error {
	unlock, err := t.begin(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	if t.verified == 0 {
		return nil
	}
	if t.ad.AID.Version.Major >= 3 {
		ok := true
		for _, ref := range []byte{pwSign, pwOther, pwAdmin} {
			if t.verified&pwBit(ref) == 0 {
				continue
			}
			if _, err := apdu.Do(ctx, t.conn, apdu.Command{INS: insVerify, P1: 0xFF, P2: ref}, t.opt); err != nil {
				var se *apdu.StatusError
				if !errors.As(err, &se) {
					return fmt.Errorf("openpgp: logout: %w", err)
				}
				ok = false
				break
			}
			t.verified &^= pwBit(ref)
		}
		if ok {
			return nil
		}
	}
	return t.selectApp(ctx)
}

// ChangePIN implements cards.Token. RoleUser and RoleSO use CHANGE REFERENCE DATA
// (spec 3.4 §7.2.3). RolePUK sets the reset code: old is the admin PIN (PW3), verified
// first (unless old is empty: then PW3 must be verified already, as after Login(RoleSO)),
// then PUT DATA D3 writes the new code (an empty new code removes it).
func (t *Token) ChangePIN(ctx context.Context, role cards.Role, old, new []byte) error {
	unlock, err := t.begin(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	switch role {
	case cards.RoleUser, cards.RoleSO:
		p, ref := pwPW1, pwSign
		if role == cards.RoleSO {
			p, ref = pwPW3, pwAdmin
		}
		o, err := t.encode(ctx, p, old)
		if err != nil {
			return err
		}
		defer wipe(o)
		n, err := t.encode(ctx, p, new)
		if err != nil {
			return err
		}
		defer wipe(n)
		data := append(append(make([]byte, 0, len(o)+len(n)), o...), n...)
		defer wipe(data)
		// Whether a card counts the change as a verification is its own affair: Logout
		// resets the PIN either way.
		t.verified |= map[byte]uint8{pwSign: pwBit(pwSign) | pwBit(pwOther), pwAdmin: pwBit(pwAdmin)}[ref]
		if _, err := apdu.Do(ctx, t.conn, apdu.Command{INS: insChangeRef, P2: ref, Data: data}, t.opt); err != nil {
			return t.pinErr(ctx, "change "+p.String(), ref, err)
		}
		return nil
	case cards.RolePUK:
		if len(old) > 0 {
			if err := t.verify(ctx, pwAdmin, old); err != nil {
				return err
			}
		}
		var rc []byte
		if len(new) > 0 {
			if rc, err = t.encode(ctx, pwRC, new); err != nil {
				return err
			}
			defer wipe(rc)
		}
		if err := t.putData(ctx, doResetCode, rc); err != nil {
			return opErr("set reset code", err)
		}
		return nil
	}
	return fmt.Errorf("%w: openpgp: change PIN of %s", cards.ErrNotSupported, role)
}

// Unblock implements cards.Token: RESET RETRY COUNTER (spec 3.4 §7.2.4) with the reset
// code (RolePUK, P1 00) or after verifying PW3 (RoleSO, P1 02). With RoleSO and an empty
// secret PW3 must be verified already (C_InitPIN in an SO session); else the error wraps
// cards.ErrLoginRequired.
func (t *Token) Unblock(ctx context.Context, role cards.Role, secret, newPIN []byte) error {
	unlock, err := t.begin(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	n, err := t.encode(ctx, pwPW1, newPIN)
	if err != nil {
		return err
	}
	defer wipe(n)
	t.verified |= pwBit(pwSign) | pwBit(pwOther) // as for ChangePIN
	switch role {
	case cards.RolePUK:
		rc, err := t.encode(ctx, pwRC, secret)
		if err != nil {
			return err
		}
		defer wipe(rc)
		data := append(append(make([]byte, 0, len(rc)+len(n)), rc...), n...)
		defer wipe(data)
		if _, err := apdu.Do(ctx, t.conn, apdu.Command{INS: insResetRetry, P1: 0x00, P2: pwSign, Data: data}, t.opt); err != nil {
			return t.pinErr(ctx, "unblock with reset code", refRC, err)
		}
	case cards.RoleSO:
		if len(secret) > 0 {
			if err := t.verify(ctx, pwAdmin, secret); err != nil {
				return err
			}
		}
		if _, err := apdu.Do(ctx, t.conn, apdu.Command{INS: insResetRetry, P1: 0x02, P2: pwSign, Data: n}, t.opt); err != nil {
			return opErr("unblock as admin", err)
		}
	default:
		return fmt.Errorf("%w: openpgp: unblock as %s", cards.ErrNotSupported, role)
	}
	t.ad.PW.PW1Retries = 3
	return nil
}

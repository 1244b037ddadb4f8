package piv

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/des"
	"crypto/rand"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/p11-card/p11-card/apdu"
	"github.com/p11-card/p11-card/cards"
	"github.com/p11-card/p11-card/internal/trace"
)

// pinRef is the reference VERIFY uses for the user: the Global PIN when the discovery
// object makes it primary, else the PIV Card Application PIN.
func (t *Token) pinRef() byte {
	if t.disc != nil && t.disc.GlobalPrimary {
		return refGlobalPIN
	}
	return refPIN
}

// formatPIN pads a PIN or PUK to 8 bytes with FF (SP 800-73-4 part 2 §2.4.3).
func formatPIN(dst, pin []byte) ([]byte, error) {
	if len(pin) < 6 || len(pin) > 8 {
		return nil, fmt.Errorf("piv: %w: %d bytes, need 6 to 8", cards.ErrPINLength, len(pin))
	}
	for _, c := range pin {
		if c == 0xFF {
			return nil, fmt.Errorf("piv: %w: byte FF is padding", cards.ErrPINLength)
		}
	}
	out := append(dst, pin...)
	for i := len(pin); i < 8; i++ {
		out = append(out, 0xFF)
	}
	return out, nil
}

func zero(b []byte) {
	for i := range b {
		b[i] = 0
	}
}

// PINStatus reports a secret's state in one APDU: GET METADATA of 80, 81 or 9B on a
// YubiKey 5.3+ (tries left, limit, factory value); otherwise an empty VERIFY for the PIN
// (tries left, verified). The PUK has no status without metadata (Retries -1); the
// management key has no counter. A card that turns out to lack GET METADATA is asked
// with an empty VERIFY from then on; one that takes no empty VERIFY either is asked
// nothing more, and its PIN's state is unknown (Retries -1, no error).
func (t *Token) PINStatus(ctx context.Context, role cards.Role) (cards.PINStatus, error) {
	ref := map[cards.Role]byte{cards.RoleUser: refPIN, cards.RolePUK: refPUK, cards.RoleSO: refMgmt}[role]
	if ref == 0 {
		return cards.PINStatus{}, fmt.Errorf("piv: PIN status of %v: %w", role, cards.ErrNotSupported)
	}
	if !t.hasMeta && (role != cards.RoleUser || t.noPINQuery) {
		return t.unknownPIN(role), nil
	}
	unlock, err := t.begin(ctx)
	if err != nil {
		return cards.PINStatus{Retries: -1}, err
	}
	defer unlock()
	return t.readPINStatus(ctx, role, ref)
}

// unknownPIN is the state of a secret the card tells nothing of: only what this token
// did itself.
func (t *Token) unknownPIN(role cards.Role) cards.PINStatus {
	return cards.PINStatus{Retries: -1, Verified: role == cards.RoleUser && t.userIn || role == cards.RoleSO && t.soIn}
}

// readPINStatus is PINStatus inside a transaction begun already.
func (t *Token) readPINStatus(ctx context.Context, role cards.Role, ref byte) (cards.PINStatus, error) {
	st := cards.PINStatus{Retries: -1}
	if t.hasMeta {
		b, err := t.do(ctx, apdu.Command{INS: insGetMetadata, P2: ref, Ne: t.maxNe()})
		switch {
		case t.metaMissing(err):
			// An empty VERIFY for the user instead.
			if role != cards.RoleUser {
				return t.unknownPIN(role), nil
			}
		case err != nil:
			return st, fmt.Errorf("piv: metadata of %v: %w", role, err)
		default:
			m, err := parseMetadata(b)
			if err != nil {
				return st, err
			}
			st.Default = m.HasDefault && m.Default
			if m.HasRetries {
				st.Retries, st.MaxRetries = m.Retries, m.MaxRetries
				st.Blocked = m.Retries == 0
			}
			if role == cards.RoleUser {
				st.Verified = t.userIn
				t.pinMax = m.MaxRetries
			}
			if role == cards.RoleSO {
				st.Verified = t.soIn
				t.mgmtAlg, t.mgmtMeta = m.Alg, &m
			}
			return st, nil
		}
	}
	if t.noPINQuery {
		return t.unknownPIN(role), nil
	}
	retries, verified, err := cards.VerifyStatus(ctx, tx{t}, t.pinRef(), short)
	switch {
	case isUnsupported(err) || errors.Is(err, apdu.ErrWrongLength) || errors.Is(err, apdu.ErrWrongData):
		// Another application would have been selected away by tx: PIV itself takes no
		// empty VERIFY (it wants the PIN in it).
		t.noPINQuery = true
		trace.Printf("piv", "the card takes no empty VERIFY: its PIN's state is unknown")
		return t.unknownPIN(role), nil
	case err != nil:
		t.reselect = t.reselect || !isStatus(err)
		return st, fmt.Errorf("piv: PIN status: %w", err)
	}
	st.Retries, st.Verified, st.Blocked = retries, verified, retries == 0
	st.MaxRetries = t.pinMax
	if verified {
		st.Retries = -1
	}
	return st, nil
}

type openedPIN struct {
	st cards.PINStatus
	at time.Time
}

// OpenedPINs implements cards.OpenedPINs: Open read the PIN's state in its transaction.
func (t *Token) OpenedPINs(roles ...cards.Role) ([]cards.PINStatus, time.Time, bool) {
	o := t.opened
	if o == nil || len(roles) != 1 || roles[0] != cards.RoleUser {
		return nil, time.Time{}, false
	}
	t.opened = nil
	return []cards.PINStatus{o.st}, o.at, true
}

func isStatus(err error) bool {
	var se *apdu.StatusError
	var ve *apdu.VerifyError
	return errors.As(err, &se) || errors.As(err, &ve)
}

// Login: RoleUser verifies the PIN (VERIFY, 1 APDU); RoleSO authenticates the management
// key given as hex (GENERAL AUTHENTICATE witness/challenge, 2 APDUs, plus GET METADATA of
// 9B once per insertion on a YubiKey 5.3+ to learn the key's algorithm). PIV has no PUK
// login: the PUK only unblocks (Unblock).
func (t *Token) Login(ctx context.Context, role cards.Role, secret []byte) error {
	switch role {
	case cards.RoleUser:
		return t.verifyPIN(ctx, secret, true)
	case cards.RoleSO:
		key, err := parseMgmtKey(secret)
		if err != nil {
			return err
		}
		defer zero(key)
		unlock, err := t.begin(ctx)
		if err != nil {
			return err
		}
		defer unlock()
		t.soIn = false
		if err := t.mgmtAuth(ctx, key); err != nil {
			return err
		}
		t.soIn = true
		return nil
	}
	return fmt.Errorf("piv: login as %v: %w", role, cards.ErrNotSupported)
}

// verifyPIN sends VERIFY, in its own transaction when own.
func (t *Token) verifyPIN(ctx context.Context, pin []byte, own bool) error {
	data, err := formatPIN(make([]byte, 0, 8), pin)
	if err != nil {
		return err
	}
	defer zero(data)
	if own {
		unlock, err := t.begin(ctx)
		if err != nil {
			return err
		}
		defer unlock()
	}
	err = cards.Verify(ctx, tx{t}, t.pinRef(), data, short)
	if err != nil {
		t.userIn = false
		t.reselect = t.reselect || !isStatus(err) && !errors.Is(err, cards.ErrPINBlocked) && !errors.Is(err, cards.ErrLoginRequired)
		return fmt.Errorf("piv: verify PIN: %w", err)
	}
	t.userIn = true
	return nil
}

// parseMgmtKey decodes a management key given as hex (spaces and colons allowed), as
// ykcs11 takes it at C_Login(CKU_SO). It makes no string copy of the secret.
func parseMgmtKey(secret []byte) ([]byte, error) {
	key := make([]byte, 0, 32)
	hi, half := byte(0), false
	for _, c := range secret {
		var v byte
		switch {
		case c == ' ' || c == ':' || c == '\t':
			continue
		case c >= '0' && c <= '9':
			v = c - '0'
		case c >= 'a' && c <= 'f':
			v = c - 'a' + 10
		case c >= 'A' && c <= 'F':
			v = c - 'A' + 10
		default:
			zero(key[:cap(key)])
			return nil, errMgmtKeyFormat
		}
		if !half {
			hi, half = v, true
			continue
		}
		if len(key) == cap(key) {
			zero(key[:cap(key)])
			return nil, errMgmtKeyFormat
		}
		key = append(key, hi<<4|v)
		half = false
	}
	if half || (len(key) != 16 && len(key) != 24 && len(key) != 32) {
		zero(key[:cap(key)])
		return nil, errMgmtKeyFormat
	}
	return key, nil
}

var errMgmtKeyFormat = fmt.Errorf("piv: %w: the management key is 32, 48 or 64 hex digits", cards.ErrPINLength)

// random is the source of our management key challenges.
func (t *Token) random() io.Reader {
	if t.rand != nil {
		return t.rand
	}
	return rand.Reader
}

// mgmtAlgorithm learns the management key's algorithm: GET METADATA of 9B on a YubiKey
// 5.3+ (once), else 3DES (the only one older cards have).
// Without metadata the algorithm is guessed from the key's length (16 bytes AES-128,
// 32 AES-256, 24 3DES and, if the card refuses that, AES-192) and remembered once a
// key was accepted.
func (t *Token) mgmtAlgorithm(ctx context.Context, keyLen int) (alg byte, guessed bool, err error) {
	if t.mgmtAlg != 0 {
		return t.mgmtAlg, false, nil
	}
	if !t.hasMeta {
		switch keyLen {
		case 16:
			return algAES128, true, nil
		case 32:
			return algAES256, true, nil
		}
		return alg3DES, true, nil
	}
	b, err := t.do(ctx, apdu.Command{INS: insGetMetadata, P2: refMgmt, Ne: t.maxNe()})
	if err != nil {
		return 0, false, fmt.Errorf("piv: management key metadata: %w", err)
	}
	m, err := parseMetadata(b)
	if err != nil {
		return 0, false, err
	}
	switch m.Alg {
	case alg3DES, algAES128, algAES192, algAES256:
	default:
		return 0, false, badCard("management key of algorithm %02X", m.Alg)
	}
	t.mgmtAlg, t.mgmtMeta = m.Alg, &m
	return t.mgmtAlg, false, nil
}

func mgmtCipher(alg byte, key []byte) (cipher.Block, error) {
	want := map[byte]int{alg3DES: 24, algAES128: 16, algAES192: 24, algAES256: 32}[alg]
	if len(key) != want {
		return nil, fmt.Errorf("piv: %w: the card's management key has %d bytes, %d given", cards.ErrPINLength, want, len(key))
	}
	if alg == alg3DES {
		return des.NewTripleDESCipher(key)
	}
	return aes.NewCipher(key)
}

// mgmtAuth is mutual authentication with the management key (SP 800-73-4 part 2 §3.2.4
// and appendix A.1; Yubico's 9B): the card's witness decrypted, our challenge encrypted by
// the card and checked. Two APDUs.
func (t *Token) mgmtAuth(ctx context.Context, key []byte) error {
	alg, guessed, err := t.mgmtAlgorithm(ctx, len(key))
	if err != nil {
		return err
	}
	var blk cipher.Block
	var b []byte
	var cmd apdu.Command
	for {
		if blk, err = mgmtCipher(alg, key); err != nil {
			return err
		}
		cmd = apdu.Command{INS: insGeneralAuth, P1: alg, P2: refMgmt, Ne: apdu.MaxShortNe,
			Data: apdu.TLVBytes(tagDynAuth, apdu.TLVBytes(tagWitness))}
		b, err = t.do(ctx, cmd)
		if err != nil && guessed && alg == alg3DES && errors.Is(err, apdu.ErrWrongP1P2) {
			alg, guessed = algAES192, false // a 24-byte key that is not 3DES
			continue
		}
		if err != nil {
			return fmt.Errorf("piv: management key witness: %w", err)
		}
		break
	}
	bs := blk.BlockSize()
	w, err := parseDynAuth(b, tagWitness)
	if err != nil {
		return err
	}
	if len(w) != bs {
		return badCard("witness of %d bytes for a %d-byte block", len(w), bs)
	}
	plain := make([]byte, bs)
	blk.Decrypt(plain, w)
	chal := make([]byte, bs)
	if _, err := io.ReadFull(t.random(), chal); err != nil {
		return err
	}
	// 7C { 80 decrypted witness, 81 our challenge }, as YubiKeys take it (no empty 82).
	cmd.Data = apdu.TLVBytes(tagDynAuth, apdu.TLVBytes(tagWitness, plain), apdu.TLVBytes(tagChallenge, chal))
	b, err = t.do(ctx, cmd)
	if err != nil {
		if errors.Is(err, apdu.ErrSecurityStatus) || errors.Is(err, apdu.ErrWrongData) {
			return fmt.Errorf("piv: management key not accepted: %w: %w", cards.ErrPINIncorrect, &apdu.VerifyError{Retries: -1})
		}
		return fmt.Errorf("piv: management key authentication: %w", err)
	}
	resp, err := parseDynAuth(b, tagResponse)
	if err != nil {
		return err
	}
	want := make([]byte, bs)
	blk.Encrypt(want, chal)
	if subtle.ConstantTimeCompare(resp, want) != 1 {
		return badCard("the card's answer to our challenge is wrong: it does not hold the management key")
	}
	trace.Printf("piv", "management key authenticated (algorithm %02X)", alg)
	t.mgmtAlg = alg
	return nil
}

// ensureAdmin gets management key rights for an admin operation: already there after an SO
// login; else, when the user is logged in and the YubiKey keeps a PIN-protected management
// key (admin data flag, read once per insertion), the key is read from the printed-info
// object and used (1 + 2 APDUs, the key never kept). Otherwise cards.ErrLoginRequired.
func (t *Token) ensureAdmin(ctx context.Context) error {
	if t.soIn {
		return nil
	}
	if !t.userIn || !t.yubico {
		return fmt.Errorf("piv: management key authentication needed: %w", cards.ErrLoginRequired)
	}
	if !t.adminRead {
		b, err := t.readData(ctx, tagAdminData)
		switch {
		case err == nil:
			a, err := parseAdminData(b)
			if err != nil {
				return err
			}
			t.admin = &a
		case errors.Is(err, cards.ErrObjectNotFound):
		default:
			return err
		}
		t.adminRead = true
	}
	if t.admin == nil || !t.admin.MgmtProtected {
		return fmt.Errorf("piv: management key authentication needed: %w", cards.ErrLoginRequired)
	}
	b, err := t.readData(ctx, tagPrinted)
	if err != nil {
		return fmt.Errorf("piv: protected management key: %w", err)
	}
	key, err := parseProtectedMgmtKey(b)
	zero(b)
	if err != nil {
		return err
	}
	defer zero(key)
	trace.Printf("piv", "using the PIN-protected management key for an admin operation")
	if err := t.mgmtAuth(ctx, key); err != nil {
		return fmt.Errorf("piv: protected management key: %w", err)
	}
	t.soIn = true
	return nil
}

// adminErr turns 6982 on an admin command into "management key login needed" and drops
// our idea of being authenticated.
func (t *Token) adminErr(err error) error {
	if errors.Is(err, cards.ErrLoginRequired) {
		t.soIn = false
	}
	return err
}

// Logout drops the PIN's security status (VERIFY with P1 FF, SP 800-73-4 part 2 §3.2.1;
// a card that refuses it is selected again instead) and forgets the management key
// authentication: admin operations need a new SO login. 1 APDU; none when this token sent
// no PIN since the card was last reset (an SO login alone: the PIN's status is another
// application's, and no command ends the management key's authentication).
func (t *Token) Logout(ctx context.Context) error {
	if !t.userIn && !t.pinSent {
		t.soIn = false
		return nil
	}
	unlock, err := t.begin(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	t.userIn, t.soIn, t.pinSent = false, false, false
	if err := cards.ResetSecurityStatus(ctx, tx{t}, t.pinRef(), short); err != nil {
		if !isStatus(err) {
			t.reselect = true
			return fmt.Errorf("piv: logout: %w", err)
		}
		return t.selectApp(ctx)
	}
	return nil
}

// ChangePIN: RoleUser and RolePUK use CHANGE REFERENCE DATA (1 APDU); RoleSO replaces the
// management key (both given as hex): authentication with the old key and Yubico's SET
// MANAGEMENT KEY, keeping the algorithm unless the new key's length needs AES (3 APDUs).
func (t *Token) ChangePIN(ctx context.Context, role cards.Role, old, new []byte) error {
	switch role {
	case cards.RoleUser, cards.RolePUK:
		ref := t.pinRef()
		if role == cards.RolePUK {
			ref = refPUK
		}
		data, err := formatPIN(make([]byte, 0, 16), old)
		if err != nil {
			return err
		}
		defer zero(data)
		if data, err = formatPIN(data, new); err != nil {
			return err
		}
		unlock, err := t.begin(ctx)
		if err != nil {
			return err
		}
		defer unlock()
		t.pinSent = t.pinSent || role == cards.RoleUser
		if err := cards.ChangeReferenceData(ctx, tx{t}, ref, data, short); err != nil {
			if role == cards.RoleUser {
				t.userIn = false
			}
			return fmt.Errorf("piv: change %v: %w", role, err)
		}
		return nil
	case cards.RoleSO:
		if !t.yubico {
			return fmt.Errorf("piv: change management key: %w", cards.ErrNotSupported)
		}
		oldKey, err := parseMgmtKey(old)
		if err != nil {
			return err
		}
		defer zero(oldKey)
		newKey, err := parseMgmtKey(new)
		if err != nil {
			return err
		}
		defer zero(newKey)
		unlock, err := t.begin(ctx)
		if err != nil {
			return err
		}
		defer unlock()
		if err := t.mgmtAuth(ctx, oldKey); err != nil {
			return err
		}
		t.soIn = true
		alg := t.mgmtAlg
		want := map[byte]int{alg3DES: 24, algAES128: 16, algAES192: 24, algAES256: 32}[alg]
		if len(newKey) != want {
			switch len(newKey) {
			case 16:
				alg = algAES128
			case 24:
				alg = algAES192
			case 32:
				alg = algAES256
			}
			if !t.fwAtLeast(5, 4, 0) {
				return fmt.Errorf("piv: %w: firmware %v keeps a 24-byte 3DES management key", cards.ErrPINLength, t.fw)
			}
		}
		data := append([]byte{alg, refMgmt, byte(len(newKey))}, newKey...)
		defer zero(data)
		if _, err := t.do(ctx, apdu.Command{INS: insSetMgmtKey, P1: 0xFF, P2: 0xFF, Data: data}); err != nil {
			return t.adminErr(fmt.Errorf("piv: set management key: %w", err))
		}
		t.mgmtAlg, t.mgmtMeta = alg, nil
		return nil
	}
	return fmt.Errorf("piv: change %v: %w", role, cards.ErrNotSupported)
}

// Unblock sets a new PIN with the PUK (RESET RETRY COUNTER, 1 APDU). PIV has no other
// unblocking secret: other roles give cards.ErrNotSupported.
func (t *Token) Unblock(ctx context.Context, role cards.Role, secret, newPIN []byte) error {
	if role != cards.RolePUK {
		return fmt.Errorf("piv: unblock with %v: %w", role, cards.ErrNotSupported)
	}
	data, err := formatPIN(make([]byte, 0, 16), secret)
	if err != nil {
		return err
	}
	defer zero(data)
	if data, err = formatPIN(data, newPIN); err != nil {
		return err
	}
	unlock, err := t.begin(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	t.pinSent = true
	if err := cards.ResetRetryCounter(ctx, tx{t}, 0x00, refPIN, data, short); err != nil {
		return fmt.Errorf("piv: unblock PIN: %w", err)
	}
	t.userIn = false
	return nil
}

package openpgp

import (
	"context"
	"encoding/asn1"
	"errors"
	"fmt"
	"math/big"

	"github.com/p11-card/p11-card/apdu"
	"github.com/p11-card/p11-card/cards"
)

// opErr gives a private-key operation's failure its card-level meaning.
func opErr(what string, err error) error {
	switch {
	case errors.Is(err, apdu.ErrSecurityStatus):
		return fmt.Errorf("openpgp: %s: %w (%w)", what, cards.ErrLoginRequired, err)
	case errors.Is(err, apdu.ErrAuthBlocked):
		return fmt.Errorf("openpgp: %s: %w (%w)", what, cards.ErrPINBlocked, err)
	case errors.Is(err, apdu.ErrNotFound):
		return fmt.Errorf("openpgp: %s: %w (%w)", what, cards.ErrKeyNotFound, err)
	case errors.Is(err, apdu.ErrWrongLength):
		return fmt.Errorf("openpgp: %s: %w (%w)", what, cards.ErrInputLength, err)
	case errors.Is(err, apdu.ErrWrongData):
		return fmt.Errorf("openpgp: %s: %w (%w)", what, cards.ErrBadInput, err)
	}
	return fmt.Errorf("openpgp: %s: %w", what, err)
}

// key finds slot id with a key in it and its attributes.
func (t *Token) key(id []byte) (KeyRef, AlgoAttr, error) {
	k, ok := keyRefOfID(id)
	if !ok {
		return 0, AlgoAttr{}, fmt.Errorf("%w: openpgp: key id % X", cards.ErrKeyNotFound, id)
	}
	if !t.ad.keyPresent(int(k)) {
		return 0, AlgoAttr{}, fmt.Errorf("%w: openpgp: no %s key", cards.ErrKeyNotFound, k)
	}
	a := t.ad.Algo[k]
	if a.Alg == 0 {
		return 0, AlgoAttr{}, fmt.Errorf("%w: openpgp: %s key of unknown algorithm % X", cards.ErrMechanismUnsupported, k, t.ad.AlgoRaw[k])
	}
	return k, a, nil
}

// Sign implements cards.Token: PSO:COMPUTE DIGITAL SIGNATURE with the SIG key (PW1 81),
// INTERNAL AUTHENTICATE with the AUT key (PW1 82) (spec 3.4 §7.2.10, §7.2.13). The card pads
// RSA itself (PKCS#1 v1.5 over a DigestInfo), so raw RSA is not possible.
func (t *Token) Sign(ctx context.Context, id []byte, scheme cards.SignScheme, in []byte, auth *cards.Auth) ([]byte, error) {
	k, a, err := t.key(id)
	if err != nil {
		return nil, err
	}
	if k == KeyDEC {
		return nil, fmt.Errorf("%w: openpgp: the decryption key does not sign", cards.ErrMechanismUnsupported)
	}
	data := in
	switch {
	case a.Alg == cards.AlgRSA && scheme == cards.SignRSAPKCS1:
		if len(in) == 0 || len(in) > a.Bits/8-11 {
			return nil, fmt.Errorf("%w: openpgp: %d bytes for RSA %d", cards.ErrInputLength, len(in), a.Bits)
		}
	case a.Alg.IsEC() && scheme == cards.SignECDSA:
		if len(in) == 0 {
			return nil, fmt.Errorf("%w: openpgp: empty hash", cards.ErrInputLength)
		}
		if n := coordLen(a.Alg); len(in) > n && a.Alg != cards.AlgECP521 {
			data = in[:n] // leftmost bits of the hash (FIPS 186-4 §6.4)
		} else if len(in) > 66 {
			data = in[:66]
		}
	case a.Alg == cards.AlgEd25519 && scheme == cards.SignEdDSA:
		if len(in) == 0 {
			return nil, fmt.Errorf("%w: openpgp: empty message", cards.ErrInputLength)
		}
	default:
		return nil, fmt.Errorf("%w: openpgp: %s with %s key", cards.ErrMechanismUnsupported, scheme, a.Alg)
	}
	unlock, err := t.begin(ctx)
	if err != nil {
		return nil, err
	}
	defer unlock()
	cmd := apdu.Command{INS: insPSO, P1: 0x9E, P2: 0x9A, Data: data}
	ref := pwSign
	if k == KeyAUT {
		cmd = apdu.Command{INS: insInternalAuth, Data: data}
		ref = pwOther
	}
	if auth != nil {
		if err := t.verify(ctx, ref, auth.PIN); err != nil {
			return nil, err
		}
	}
	sig, err := t.do(ctx, cmd)
	if err != nil {
		return nil, opErr("sign with "+k.String(), err)
	}
	switch {
	case a.Alg == cards.AlgRSA:
		n := (a.Bits + 7) / 8
		if len(sig) == 0 || len(sig) > n {
			return nil, fmt.Errorf("%w: openpgp: RSA signature of %d bytes", cards.ErrBadCard, len(sig))
		}
		return leftPad(sig, n), nil
	case a.Alg.IsEC():
		return ecdsaRaw(sig, coordLen(a.Alg))
	default:
		if len(sig) != 64 {
			return nil, fmt.Errorf("%w: openpgp: Ed25519 signature of %d bytes", cards.ErrBadCard, len(sig))
		}
		return sig, nil
	}
}

// ecdsaRaw returns r‖s at n bytes each: the card's raw form, or a DER signature some
// older cards give.
func ecdsaRaw(sig []byte, n int) ([]byte, error) {
	if len(sig) == 2*n {
		return sig, nil
	}
	var der struct{ R, S *big.Int }
	if rest, err := asn1.Unmarshal(sig, &der); err == nil && len(rest) == 0 && der.R != nil && der.S != nil &&
		der.R.Sign() > 0 && der.S.Sign() > 0 && len(der.R.Bytes()) <= n && len(der.S.Bytes()) <= n {
		out := make([]byte, 2*n)
		der.R.FillBytes(out[:n])
		der.S.FillBytes(out[n:])
		return out, nil
	}
	return nil, fmt.Errorf("%w: openpgp: ECDSA signature of %d bytes", cards.ErrBadCard, len(sig))
}

func leftPad(b []byte, n int) []byte {
	if len(b) >= n {
		return b
	}
	out := make([]byte, n)
	copy(out[n-len(b):], b)
	return out
}

// Decrypt implements cards.Token: PSO:DECIPHER with padding indicator 00 (spec 3.4
// §7.2.11); the card removes the PKCS#1 v1.5 padding, so only DecryptRSAPKCS1 exists.
func (t *Token) Decrypt(ctx context.Context, id []byte, scheme cards.DecryptScheme, in []byte, auth *cards.Auth) ([]byte, error) {
	k, a, err := t.key(id)
	if err != nil {
		return nil, err
	}
	if k != KeyDEC || a.Alg != cards.AlgRSA || scheme != cards.DecryptRSAPKCS1 {
		return nil, fmt.Errorf("%w: openpgp: decrypt (scheme %d) with %s %s key", cards.ErrMechanismUnsupported, scheme, k, a.Alg)
	}
	n := (a.Bits + 7) / 8
	if len(in) == 0 || len(in) > n {
		return nil, fmt.Errorf("%w: openpgp: %d bytes for RSA %d", cards.ErrInputLength, len(in), a.Bits)
	}
	data := append([]byte{0x00}, leftPad(in, n)...)
	unlock, err := t.begin(ctx)
	if err != nil {
		return nil, err
	}
	defer unlock()
	if auth != nil {
		if err := t.verify(ctx, pwOther, auth.PIN); err != nil {
			return nil, err
		}
	}
	out, err := t.do(ctx, apdu.Command{INS: insPSO, P1: 0x80, P2: 0x86, Data: data})
	if err != nil {
		return nil, opErr("decrypt", err)
	}
	// PKCS#1 v1.5 padding takes 11 bytes at least (RFC 8017 §7.2.2).
	if len(out) > n-11 {
		return nil, fmt.Errorf("%w: openpgp: plaintext of %d bytes from RSA %d", cards.ErrBadCard, len(out), a.Bits)
	}
	return out, nil
}

// Derive implements cards.Token: ECDH (or X25519) with the DEC key through PSO:DECIPHER
// with the cipher DO A6 { 7F49 { 86 point } } (spec 3.4 §7.2.11).
func (t *Token) Derive(ctx context.Context, id []byte, peer []byte, auth *cards.Auth) ([]byte, error) {
	k, a, err := t.key(id)
	if err != nil {
		return nil, err
	}
	if k != KeyDEC || !(a.Alg.IsEC() || a.Alg == cards.AlgX25519) {
		return nil, fmt.Errorf("%w: openpgp: derive with %s %s key", cards.ErrMechanismUnsupported, k, a.Alg)
	}
	if a.Alg == cards.AlgX25519 {
		if len(peer) == 33 && peer[0] == 0x40 {
			peer = peer[1:]
		}
		if len(peer) != 32 {
			return nil, fmt.Errorf("%w: openpgp: X25519 peer of %d bytes", cards.ErrInputLength, len(peer))
		}
	} else if len(peer) != 1+2*coordLen(a.Alg) || peer[0] != 0x04 {
		return nil, fmt.Errorf("%w: openpgp: %s peer point of %d bytes", cards.ErrInputLength, a.Alg, len(peer))
	}
	data := apdu.TLVBytes(0xA6, apdu.TLVBytes(doPubKey, apdu.TLVBytes(pkPoint, peer)))
	unlock, err := t.begin(ctx)
	if err != nil {
		return nil, err
	}
	defer unlock()
	if auth != nil {
		if err := t.verify(ctx, pwOther, auth.PIN); err != nil {
			return nil, err
		}
	}
	out, err := t.do(ctx, apdu.Command{INS: insPSO, P1: 0x80, P2: 0x86, Data: data})
	if err != nil {
		return nil, opErr("derive", err)
	}
	if want := coordLen(a.Alg); len(out) != want {
		return nil, fmt.Errorf("%w: openpgp: shared secret of %d bytes", cards.ErrBadCard, len(out))
	}
	return out, nil
}

// Random implements cards.Token with GET CHALLENGE (spec 3.4 §7.2.15), in pieces no longer
// than the card's announced maximum.
func (t *Token) Random(ctx context.Context, n int) ([]byte, error) {
	if !t.ad.Caps.GetChallenge {
		return nil, fmt.Errorf("%w: openpgp: GET CHALLENGE", cards.ErrNotSupported)
	}
	if n < 0 || n > 1<<20 {
		return nil, fmt.Errorf("%w: openpgp: %d random bytes", cards.ErrBadInput, n)
	}
	step := t.ad.Caps.MaxChallenge
	if step <= 0 || step > apdu.MaxShortNe && !t.opt.Extended {
		step = min(max(step, 0), apdu.MaxShortNe)
		if step == 0 {
			step = apdu.MaxShortNe
		}
	}
	unlock, err := t.begin(ctx)
	if err != nil {
		return nil, err
	}
	defer unlock()
	out := make([]byte, 0, n)
	for len(out) < n {
		m := min(step, n-len(out))
		b, err := apdu.Do(ctx, t.conn, apdu.Command{INS: insGetChallenge, Ne: m}, t.opt)
		if err != nil {
			return nil, fmt.Errorf("openpgp: get challenge: %w", err)
		}
		if len(b) == 0 || len(b) > m {
			return nil, fmt.Errorf("%w: openpgp: %d challenge bytes for %d", cards.ErrBadCard, len(b), m)
		}
		out = append(out, b...)
	}
	return out, nil
}

package core

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"math/big"

	"github.com/p11-card/p11-card/cards"
)

// importKey writes a private key given as attributes (C_CreateObject with CKO_PRIVATE_KEY
// and CKA_TOKEN true) to the key location CKA_ID names. The key material is wiped from
// the template afterwards (best effort).
func (m *Module) importKey(s *session, t map[uint64][]byte) (uint64, error) {
	defer func() {
		for _, a := range []uint64{CKA_PRIVATE_EXPONENT, CKA_PRIME_1, CKA_PRIME_2, CKA_EXPONENT_1, CKA_EXPONENT_2, CKA_COEFFICIENT, CKA_VALUE} {
			clear(t[a])
		}
	}()
	id, ok := t[CKA_ID]
	if !ok || len(id) == 0 {
		return 0, errRV(CKR_TEMPLATE_INCOMPLETE, "no CKA_ID (it names the key location)")
	}
	var ks *cards.KeySlot
	slots := s.ts.tok.KeySlots()
	for i := range slots {
		if bytes.Equal(slots[i].ID, id) {
			ks = &slots[i]
		}
	}
	if ks == nil {
		return 0, errRV(CKR_ATTRIBUTE_VALUE_INVALID, "CKA_ID names no key location of this card")
	}
	kt, ok, err := tmplULong(t, CKA_KEY_TYPE)
	if err != nil {
		return 0, err
	}
	if !ok {
		return 0, errRV(CKR_TEMPLATE_INCOMPLETE, "no CKA_KEY_TYPE")
	}
	key, spec, err := privateFromAttrs(kt, t)
	if err != nil {
		return 0, err
	}
	spec.ID = ks.ID
	if aa, err := tmplBool(t, CKA_ALWAYS_AUTHENTICATE, false); err != nil {
		return 0, err
	} else if aa {
		spec.PINPolicy = "always"
	}
	if err := m.io(s.ts, func(ctx context.Context, tok cards.Token) error {
		return tok.ImportKey(ctx, spec, key)
	}); err != nil {
		return 0, err
	}
	objs, err := m.tokenObjects(s.ts, cards.Filter{ID: ks.ID, Kind: cards.KindPrivateKey})
	if err != nil {
		return 0, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if s.ts.dead {
		return 0, errRV(CKR_DEVICE_REMOVED, "token removed")
	}
	for _, o := range objs {
		if bytes.Equal(o.ID, ks.ID) {
			return m.handleLocked(s.ts, o), nil
		}
	}
	return 0, errRV(CKR_DEVICE_ERROR, "imported key not listed by the card")
}

// privateFromAttrs builds a private key from PKCS #11 attributes.
func privateFromAttrs(kt uint64, t map[uint64][]byte) (crypto.PrivateKey, cards.KeyGenSpec, error) {
	need := func(types ...uint64) error {
		for _, a := range types {
			if len(t[a]) == 0 {
				return errRV(CKR_TEMPLATE_INCOMPLETE, "private key component missing")
			}
		}
		return nil
	}
	n := func(a uint64) *big.Int { return new(big.Int).SetBytes(t[a]) }
	switch kt {
	case CKK_RSA:
		if err := need(CKA_MODULUS, CKA_PUBLIC_EXPONENT, CKA_PRIVATE_EXPONENT, CKA_PRIME_1, CKA_PRIME_2); err != nil {
			return nil, cards.KeyGenSpec{}, err
		}
		e := n(CKA_PUBLIC_EXPONENT)
		if !e.IsInt64() || e.Int64() > 1<<31-1 {
			return nil, cards.KeyGenSpec{}, errRV(CKR_ATTRIBUTE_VALUE_INVALID, "public exponent")
		}
		k := &rsa.PrivateKey{PublicKey: rsa.PublicKey{N: n(CKA_MODULUS), E: int(e.Int64())}, D: n(CKA_PRIVATE_EXPONENT), Primes: []*big.Int{n(CKA_PRIME_1), n(CKA_PRIME_2)}}
		k.Precompute()
		if err := k.Validate(); err != nil {
			return nil, cards.KeyGenSpec{}, errRV(CKR_ATTRIBUTE_VALUE_INVALID, "inconsistent RSA key")
		}
		return k, cards.KeyGenSpec{Alg: cards.AlgRSA, Bits: k.N.BitLen()}, nil
	case CKK_EC:
		if err := need(CKA_EC_PARAMS, CKA_VALUE); err != nil {
			return nil, cards.KeyGenSpec{}, err
		}
		alg, ok := algFromECParams(t[CKA_EC_PARAMS])
		c, ok2 := curveEllipse(alg)
		if !ok || !ok2 {
			return nil, cards.KeyGenSpec{}, errRV(CKR_CURVE_NOT_SUPPORTED, "curve")
		}
		size := (c.Params().BitSize + 7) / 8
		if len(t[CKA_VALUE]) > size {
			return nil, cards.KeyGenSpec{}, errRV(CKR_ATTRIBUTE_VALUE_INVALID, "EC private value too long")
		}
		k, err := ecdsa.ParseRawPrivateKey(c, leftPad(t[CKA_VALUE], size))
		if err != nil {
			return nil, cards.KeyGenSpec{}, errRV(CKR_ATTRIBUTE_VALUE_INVALID, "EC private value")
		}
		return k, cards.KeyGenSpec{Alg: alg, Bits: curveBits[alg]}, nil
	case CKK_EC_EDWARDS:
		if len(t[CKA_VALUE]) != ed25519.SeedSize {
			return nil, cards.KeyGenSpec{}, errRV(CKR_ATTRIBUTE_VALUE_INVALID, "Ed25519 private value must be 32 bytes")
		}
		return ed25519.NewKeyFromSeed(t[CKA_VALUE]), cards.KeyGenSpec{Alg: cards.AlgEd25519, Bits: 255}, nil
	case CKK_EC_MONTGOMERY:
		k, err := ecdh.X25519().NewPrivateKey(t[CKA_VALUE])
		if err != nil {
			return nil, cards.KeyGenSpec{}, errRV(CKR_ATTRIBUTE_VALUE_INVALID, "X25519 private value")
		}
		return k, cards.KeyGenSpec{Alg: cards.AlgX25519, Bits: 255}, nil
	}
	return nil, cards.KeyGenSpec{}, errRV(CKR_ATTRIBUTE_VALUE_INVALID, "key type")
}

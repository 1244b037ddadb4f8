package core

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"encoding/asn1"
	"math/big"

	"github.com/p11-card/p11-card/cards"
)

// DeriveKey runs ECDH (CKM_ECDH1_DERIVE, NIST curves and X25519) on the card and stores
// the shared secret as a session secret-key object.
func (m *Module) DeriveKey(h uint64, mech Mechanism, base uint64, tmpl []Attr) (uint64, error) {
	s, err := m.sess(h)
	if err != nil {
		return 0, err
	}
	if mech.Type != CKM_ECDH1_DERIVE {
		return 0, errRV(CKR_MECHANISM_INVALID, "only CKM_ECDH1_DERIVE")
	}
	if _, ok := m.mechanisms(s.ts)[CKM_ECDH1_DERIVE]; !ok {
		return 0, errRV(CKR_MECHANISM_INVALID, "token cannot derive")
	}
	p := mech.ECDH
	if p == nil {
		return 0, errRV(CKR_MECHANISM_PARAM_INVALID, "CK_ECDH1_DERIVE_PARAMS needed")
	}
	if p.KDF != CKD_NULL || len(p.SharedData) != 0 {
		return 0, errRV(CKR_MECHANISM_PARAM_INVALID, "only CKD_NULL without shared data")
	}
	t, err := templateAttrs(tmpl)
	if err != nil {
		return 0, err
	}
	if onTok, err := tmplBool(t, CKA_TOKEN, false); err != nil {
		return 0, err
	} else if onTok {
		return 0, errRV(CKR_TEMPLATE_INCONSISTENT, "derived keys live in the session only")
	}
	if c, ok, err := tmplULong(t, CKA_CLASS); err != nil {
		return 0, err
	} else if ok && c != CKO_SECRET_KEY {
		return 0, errRV(CKR_TEMPLATE_INCONSISTENT, "derived objects are secret keys")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.op != nil || s.find != nil {
		return 0, errRV(CKR_OPERATION_ACTIVE, "operation active")
	}
	o, co, err := m.keyFor(s, base)
	if err != nil {
		return 0, err
	}
	if o.owner != nil || co.Kind != cards.KindPrivateKey || co.Key == nil {
		return 0, errRV(CKR_KEY_TYPE_INCONSISTENT, "needs a card private key")
	}
	k := co.Key
	if !k.Alg.IsEC() && k.Alg != cards.AlgX25519 {
		return 0, errRV(CKR_KEY_TYPE_INCONSISTENT, "not an ECDH key")
	}
	if !k.Derive {
		return 0, errRV(CKR_KEY_FUNCTION_NOT_PERMITTED, "key cannot derive")
	}
	peer, err := peerPoint(k, p.PublicData)
	if err != nil {
		return 0, err
	}
	if k.AlwaysAuth && !s.ts.pinPad {
		return 0, errRV(CKR_USER_NOT_LOGGED_IN, "PIN-always keys cannot derive through Cryptoki")
	}
	var secret []byte
	if err := m.keyOp(s.ts, func(ctx context.Context, tok cards.Token) error {
		var err error
		secret, err = tok.Derive(ctx, co.ID, peer, nil)
		return err
	}); err != nil {
		return 0, heldTo(err, deriveFailures)
	}
	if want := (curveBits[k.Alg] + 7) / 8; len(secret) != want {
		clear(secret)
		return 0, errRV(CKR_DEVICE_ERROR, "card returned a shared secret of the wrong size")
	}
	if n, ok, err := tmplULong(t, CKA_VALUE_LEN); err != nil {
		return 0, err
	} else if ok {
		if n == 0 || n > uint64(len(secret)) {
			return 0, errRV(CKR_ATTRIBUTE_VALUE_INVALID, "CKA_VALUE_LEN larger than the shared secret")
		}
		secret = secret[:n]
	}
	private, err := tmplBool(t, CKA_PRIVATE, true)
	if err != nil {
		return 0, err
	}
	delete(t, CKA_VALUE_LEN)
	t[CKA_VALUE] = secret
	t[CKA_LOCAL] = ckBool(false)
	t[CKA_DERIVE] = ckBool(false)
	if _, ok := t[CKA_KEY_TYPE]; !ok {
		t[CKA_KEY_TYPE] = EncodeULong(CKK_GENERIC_SECRET)
	}
	a := sessionAttrs(CKO_SECRET_KEY, private, t)
	clear(secret)
	return m.addSessionObject(s, a, private)
}

// peerPoint reads the peer's public value: a raw point or one wrapped in a DER OCTET STRING.
func peerPoint(k *cards.KeyInfo, pub []byte) ([]byte, error) {
	want := 0
	switch {
	case k.Alg == cards.AlgX25519:
		want = 32
	case k.Alg.IsEC():
		want = 1 + 2*((curveBits[k.Alg]+7)/8)
	default:
		return nil, errRV(CKR_KEY_TYPE_INCONSISTENT, "not an ECDH key")
	}
	pt := pub
	if len(pub) != want || (k.Alg != cards.AlgX25519 && pub[0] != 4) {
		pt = nil
		if rest, err := asn1.Unmarshal(pub, &pt); err != nil || len(rest) != 0 || len(pt) != want {
			return nil, errRV(CKR_MECHANISM_PARAM_INVALID, "peer public value has the wrong form")
		}
	}
	if k.Alg != cards.AlgX25519 && pt[0] != 4 {
		return nil, errRV(CKR_MECHANISM_PARAM_INVALID, "peer public point not uncompressed")
	}
	// A point off the curve would have the card compute with its private key on another
	// curve (an invalid-curve attack): the NIST curves are checked here. (Go has no
	// Brainpool curves; OpenPGP cards check their own input.)
	if c, ok := nistECDH[k.Alg]; ok {
		if _, err := c.NewPublicKey(pt); err != nil {
			return nil, errRV(CKR_MECHANISM_PARAM_INVALID, "peer public point not on the curve")
		}
	}
	return pt, nil
}

var nistECDH = map[cards.KeyAlg]ecdh.Curve{cards.AlgECP256: ecdh.P256(), cards.AlgECP384: ecdh.P384(), cards.AlgECP521: ecdh.P521()}

// GenerateKeyPair generates a key pair on the card at the location CKA_ID names (the
// first empty one when no CKA_ID is given).
func (m *Module) GenerateKeyPair(h uint64, mech Mechanism, pubTmpl, privTmpl []Attr) (uint64, uint64, error) {
	s, err := m.sess(h)
	if err != nil {
		return 0, 0, err
	}
	if _, ok := m.mechanisms(s.ts)[mech.Type]; !ok {
		return 0, 0, errRV(CKR_MECHANISM_INVALID, "mechanism not supported by this token")
	}
	if err := noParams(mech); err != nil {
		return 0, 0, err
	}
	pt, err := templateAttrs(pubTmpl)
	if err != nil {
		return 0, 0, err
	}
	qt, err := templateAttrs(privTmpl)
	if err != nil {
		return 0, 0, err
	}
	if !s.rw {
		return 0, 0, errRV(CKR_SESSION_READ_ONLY, "read-only session")
	}
	m.mu.RLock()
	login := s.ts.login
	m.mu.RUnlock()
	if login == loginNone {
		return 0, 0, errRV(CKR_USER_NOT_LOGGED_IN, "key generation needs a login")
	}
	spec := cards.KeyGenSpec{}
	switch mech.Type {
	case CKM_RSA_PKCS_KEY_PAIR_GEN:
		spec.Alg = cards.AlgRSA
		bits, ok, err := tmplULong(pt, CKA_MODULUS_BITS)
		if err != nil {
			return 0, 0, err
		}
		if !ok {
			return 0, 0, errRV(CKR_TEMPLATE_INCOMPLETE, "CKA_MODULUS_BITS needed")
		}
		if e, ok := pt[CKA_PUBLIC_EXPONENT]; ok && new(big.Int).SetBytes(e).Cmp(big.NewInt(65537)) != 0 {
			return 0, 0, errRV(CKR_ATTRIBUTE_VALUE_INVALID, "the card uses exponent 65537")
		}
		if bits > 1<<16 {
			return 0, 0, errRV(CKR_KEY_SIZE_RANGE, "modulus size")
		}
		spec.Bits = int(bits)
	case CKM_EC_KEY_PAIR_GEN, CKM_EC_EDWARDS_KEY_PAIR_GEN, CKM_EC_MONTGOMERY_KEY_PAIR_GEN:
		ep, ok := pt[CKA_EC_PARAMS]
		if !ok {
			ep, ok = qt[CKA_EC_PARAMS]
		}
		switch {
		case ok:
			a, known := algFromECParams(ep)
			if !known {
				return 0, 0, errRV(CKR_CURVE_NOT_SUPPORTED, "curve")
			}
			spec.Alg = a
		case mech.Type == CKM_EC_EDWARDS_KEY_PAIR_GEN:
			spec.Alg = cards.AlgEd25519
		case mech.Type == CKM_EC_MONTGOMERY_KEY_PAIR_GEN:
			spec.Alg = cards.AlgX25519
		default:
			return 0, 0, errRV(CKR_TEMPLATE_INCOMPLETE, "CKA_EC_PARAMS needed")
		}
		okAlg := map[uint64]bool{CKM_EC_KEY_PAIR_GEN: spec.Alg.IsEC(), CKM_EC_EDWARDS_KEY_PAIR_GEN: spec.Alg == cards.AlgEd25519, CKM_EC_MONTGOMERY_KEY_PAIR_GEN: spec.Alg == cards.AlgX25519}[mech.Type]
		if !okAlg {
			return 0, 0, errRV(CKR_TEMPLATE_INCONSISTENT, "curve does not fit the mechanism")
		}
	default:
		return 0, 0, errRV(CKR_MECHANISM_INVALID, "not a key-pair mechanism")
	}
	id := pt[CKA_ID]
	if qid, ok := qt[CKA_ID]; ok {
		if id != nil && !bytes.Equal(id, qid) {
			return 0, 0, errRV(CKR_TEMPLATE_INCONSISTENT, "CKA_ID differs between the templates")
		}
		id = qid
	}
	slots := s.ts.tok.KeySlots()
	var ks *cards.KeySlot
	if id == nil {
		privs, err := m.tokenObjects(s.ts, cards.Filter{Kind: cards.KindPrivateKey})
		if err != nil {
			return 0, 0, err
		}
		for i := range slots {
			used := false
			for _, p := range privs {
				used = used || bytes.Equal(p.ID, slots[i].ID)
			}
			if !used {
				ks = &slots[i]
				break
			}
		}
		if ks == nil {
			return 0, 0, errRV(CKR_TEMPLATE_INCOMPLETE, "every key location is used: give CKA_ID")
		}
	} else {
		for i := range slots {
			if bytes.Equal(slots[i].ID, id) {
				ks = &slots[i]
			}
		}
		if ks == nil {
			return 0, 0, errRV(CKR_ATTRIBUTE_VALUE_INVALID, "CKA_ID names no key location of this card")
		}
	}
	spec.ID = ks.ID
	if aa, err := tmplBool(qt, CKA_ALWAYS_AUTHENTICATE, false); err != nil {
		return 0, 0, err
	} else if aa {
		spec.PINPolicy = "always"
	}
	var pubObj cards.Object
	if err := m.io(s.ts, func(ctx context.Context, tok cards.Token) error {
		var err error
		pubObj, err = tok.GenerateKey(ctx, spec)
		return err
	}); err != nil {
		return 0, 0, err
	}
	// The key's two objects only: its certificate is what it was (an old one stays on a
	// YubiKey), and a search reads it when asked.
	var objs []cards.Object
	for _, k := range []cards.Kind{cards.KindPublicKey, cards.KindPrivateKey} {
		o, err := m.tokenObjects(s.ts, cards.Filter{ID: spec.ID, Kind: k})
		if err != nil {
			return 0, 0, err
		}
		objs = append(objs, o...)
	}
	var ph, qh uint64
	m.mu.Lock()
	defer m.mu.Unlock()
	if s.ts.dead {
		return 0, 0, errRV(CKR_DEVICE_REMOVED, "token removed")
	}
	for _, o := range objs {
		if !bytes.Equal(o.ID, spec.ID) {
			continue
		}
		switch o.Kind {
		case cards.KindPublicKey:
			ph = m.handleLocked(s.ts, o)
		case cards.KindPrivateKey:
			qh = m.handleLocked(s.ts, o)
		}
	}
	if ph == 0 {
		ph = m.handleLocked(s.ts, pubObj)
	}
	if qh == 0 {
		return 0, 0, errRV(CKR_DEVICE_ERROR, "generated private key not listed by the card")
	}
	return ph, qh, nil
}

// GenerateRandom reads random bytes from the card, or from the host when the card has no
// generator.
func (m *Module) GenerateRandom(h uint64, n int) ([]byte, error) {
	s, err := m.sess(h)
	if err != nil {
		return nil, err
	}
	if !s.ts.info.HasRandom {
		// No generator on the card (CKF_RNG is not set): the host's CSPRNG answers.
		out := make([]byte, n)
		if _, err := rand.Read(out); err != nil {
			return nil, err
		}
		return out, nil
	}
	out := make([]byte, 0, n)
	for len(out) < n {
		var b []byte
		chunk := min(n-len(out), 255)
		if err := m.io(s.ts, func(ctx context.Context, tok cards.Token) error {
			var err error
			b, err = tok.Random(ctx, chunk)
			return err
		}); err != nil {
			return nil, err
		}
		if len(b) != chunk {
			return nil, errRV(CKR_DEVICE_ERROR, "card returned the wrong number of random bytes")
		}
		out = append(out, b...)
	}
	return out, nil
}

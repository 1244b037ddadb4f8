package piv

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"errors"
	"fmt"

	"github.com/p11-card/p11-card/apdu"
	"github.com/p11-card/p11-card/cards"
)

// keyOp prepares a private key operation inside an open transaction: the slot for the
// CKA_ID key, its key (read if this insertion has not read it yet), and the VERIFY of
// auth's PIN right before the operation.
func (t *Token) keyOp(ctx context.Context, id []byte, auth *cards.Auth) (*slotInfo, *keyState, error) {
	si, ok := slotByID(id)
	if !ok {
		return nil, nil, fmt.Errorf("piv: key %X: %w", id, cards.ErrKeyNotFound)
	}
	if si.slot == 0xF9 {
		return nil, nil, fmt.Errorf("piv: the attestation key F9 signs attestations only: %w", cards.ErrMechanismUnsupported)
	}
	ks, err := t.loadKey(ctx, si)
	if err != nil {
		return nil, nil, err
	}
	if ks == nil {
		return nil, nil, fmt.Errorf("piv: slot %s: %w", si.slot, cards.ErrKeyNotFound)
	}
	if auth != nil && auth.PIN != nil {
		if err := t.verifyPIN(ctx, auth.PIN, false); err != nil {
			return nil, nil, err
		}
	}
	return si, ks, nil
}

// generalAuth sends GENERAL AUTHENTICATE with the key in slot: 7C { 82 empty, tag in }
// (81 for sign and decrypt, 85 for key agreement) and returns 82's value (1 APDU; chained
// or extended for RSA 2048+).
func (t *Token) generalAuth(ctx context.Context, si *slotInfo, alg byte, tag apdu.Tag, in []byte) ([]byte, error) {
	data := apdu.TLVBytes(tagDynAuth, apdu.TLVBytes(tagResponse), apdu.TLVBytes(tag, in))
	// The answer is 7C { 82 result }: ask for a short answer when it fits one.
	ne := apdu.MaxShortNe
	if _, bits, _ := algInfo(alg); bits/8+8 > apdu.MaxShortNe {
		ne = t.maxNe()
	}
	b, err := t.do(ctx, apdu.Command{INS: insGeneralAuth, P1: alg, P2: byte(si.slot), Data: data, Ne: ne})
	if err != nil {
		switch {
		case errors.Is(err, cards.ErrLoginRequired):
			t.userIn = t.userIn && !errors.Is(err, apdu.ErrSecurityStatus)
			return nil, fmt.Errorf("piv: slot %s: %w", si.slot, err)
		case errors.Is(err, apdu.ErrNotFound):
			t.forget(si.slot)
			return nil, fmt.Errorf("piv: slot %s: %w: %w", si.slot, cards.ErrKeyNotFound, err)
		case errors.Is(err, apdu.ErrWrongP1P2):
			// The card takes no such algorithm for this key reference.
			return nil, fmt.Errorf("piv: slot %s: %w: %w", si.slot, cards.ErrMechanismUnsupported, err)
		case errors.Is(err, apdu.ErrWrongData):
			return nil, fmt.Errorf("piv: slot %s: %w: %w", si.slot, cards.ErrBadInput, err)
		}
		return nil, fmt.Errorf("piv: slot %s: %w", si.slot, err)
	}
	return parseDynAuth(b, tagResponse)
}

// Sign signs with the key whose CKA_ID is key. RSA PKCS#1 v1.5 is padded here and sent
// raw; ECDSA takes the hash, truncated or left-padded to the curve size, and the card's DER
// signature comes back as r‖s; EdDSA takes the whole message. One APDU (plus VERIFY when
// auth is given, plus the key's metadata or certificate if this insertion has not read it).
func (t *Token) Sign(ctx context.Context, key []byte, scheme cards.SignScheme, in []byte, auth *cards.Auth) ([]byte, error) {
	unlock, err := t.begin(ctx)
	if err != nil {
		return nil, err
	}
	defer unlock()
	si, ks, err := t.peek(ctx, key)
	if err != nil {
		return nil, err
	}
	ka, bits, _ := algInfo(ks.alg)
	var block []byte
	switch {
	case ka == cards.AlgRSA && scheme == cards.SignRSAPKCS1:
		k := bits / 8
		if len(in) > k-11 {
			return nil, fmt.Errorf("piv: PKCS#1 input of %d bytes for a %d-bit key: %w", len(in), bits, cards.ErrInputLength)
		}
		block = make([]byte, k)
		block[1] = 0x01
		for i := 2; i < k-len(in)-1; i++ {
			block[i] = 0xFF
		}
		copy(block[k-len(in):], in)
	case ka == cards.AlgRSA && scheme == cards.SignRSARaw:
		var err error
		if block, err = rsaBlock(ks, bits, in); err != nil {
			return nil, err
		}
	case ka.IsEC() && scheme == cards.SignECDSA:
		size := (bits + 7) / 8
		if len(in) == 0 {
			return nil, fmt.Errorf("piv: empty hash: %w", cards.ErrInputLength)
		}
		block = in
		if len(block) > size {
			block = block[:size]
		} else if len(block) < size {
			block = append(make([]byte, size-len(block)), block...)
		}
	case ka == cards.AlgEd25519 && scheme == cards.SignEdDSA:
		block = in
	default:
		return nil, fmt.Errorf("piv: %v with a %v key: %w", scheme, ka, cards.ErrMechanismUnsupported)
	}
	if _, _, err := t.keyOp(ctx, key, auth); err != nil {
		return nil, err
	}
	out, err := t.generalAuth(ctx, si, ks.alg, tagChallenge, block)
	if err != nil {
		return nil, err
	}
	switch {
	case ka == cards.AlgRSA:
		if len(out) != bits/8 {
			return nil, badCard("RSA result of %d bytes for a %d-bit key", len(out), bits)
		}
	case ka.IsEC():
		return ecdsaRaw(out, (bits+7)/8)
	case ka == cards.AlgEd25519:
		if len(out) != ed25519.SignatureSize {
			return nil, badCard("Ed25519 signature of %d bytes", len(out))
		}
	}
	return bytes.Clone(out), nil
}

// peek finds the key without verifying anything.
func (t *Token) peek(ctx context.Context, id []byte) (*slotInfo, *keyState, error) {
	return t.keyOp(ctx, id, nil)
}

// rsaBlock left-pads a raw RSA input to the modulus size and checks it is below the modulus.
func rsaBlock(ks *keyState, bits int, in []byte) ([]byte, error) {
	k := bits / 8
	in = bytes.TrimLeft(in, "\x00")
	if len(in) > k {
		return nil, fmt.Errorf("piv: raw RSA input of %d bytes for a %d-bit key: %w", len(in), bits, cards.ErrInputLength)
	}
	block := make([]byte, k)
	copy(block[k-len(in):], in)
	if pub, ok := ks.pub.Key.(*rsa.PublicKey); ok {
		if bytes.Compare(block, pub.N.FillBytes(make([]byte, k))) >= 0 {
			return nil, fmt.Errorf("piv: raw RSA input not below the modulus: %w", cards.ErrBadInput)
		}
	}
	return block, nil
}

// Decrypt is the raw RSA private operation (1 APDU). PIV cards do not remove padding, so
// DecryptRSAPKCS1 gives cards.ErrMechanismUnsupported: the caller unpads DecryptRSARaw's
// block (in constant time).
func (t *Token) Decrypt(ctx context.Context, key []byte, scheme cards.DecryptScheme, in []byte, auth *cards.Auth) ([]byte, error) {
	unlock, err := t.begin(ctx)
	if err != nil {
		return nil, err
	}
	defer unlock()
	si, ks, err := t.peek(ctx, key)
	if err != nil {
		return nil, err
	}
	ka, bits, _ := algInfo(ks.alg)
	if ka != cards.AlgRSA || scheme != cards.DecryptRSARaw {
		return nil, fmt.Errorf("piv: decrypt scheme %d with a %v key: %w", scheme, ka, cards.ErrMechanismUnsupported)
	}
	if len(in) != bits/8 {
		return nil, fmt.Errorf("piv: ciphertext of %d bytes for a %d-bit key: %w", len(in), bits, cards.ErrInputLength)
	}
	block, err := rsaBlock(ks, bits, in)
	if err != nil {
		return nil, err
	}
	if _, _, err := t.keyOp(ctx, key, auth); err != nil {
		return nil, err
	}
	out, err := t.generalAuth(ctx, si, ks.alg, tagChallenge, block)
	if err != nil {
		return nil, err
	}
	if len(out) != bits/8 {
		return nil, badCard("RSA result of %d bytes for a %d-bit key", len(out), bits)
	}
	return bytes.Clone(out), nil
}

// Derive is ECDH (P-256, P-384: peer is an uncompressed point) or X25519 (peer is 32
// bytes): GENERAL AUTHENTICATE with tag 85, 1 APDU. The peer is checked before it is sent.
func (t *Token) Derive(ctx context.Context, key []byte, peer []byte, auth *cards.Auth) ([]byte, error) {
	unlock, err := t.begin(ctx)
	if err != nil {
		return nil, err
	}
	defer unlock()
	si, ks, err := t.peek(ctx, key)
	if err != nil {
		return nil, err
	}
	ka, bits, _ := algInfo(ks.alg)
	switch ka {
	case cards.AlgECP256, cards.AlgECP384:
		curve := elliptic.P256()
		if ka == cards.AlgECP384 {
			curve = elliptic.P384()
		}
		if _, err := ecdsa.ParseUncompressedPublicKey(curve, peer); err != nil {
			return nil, fmt.Errorf("piv: peer point: %w", cards.ErrBadInput)
		}
	case cards.AlgX25519:
		if _, err := ecdh.X25519().NewPublicKey(peer); err != nil {
			return nil, fmt.Errorf("piv: peer key: %w", cards.ErrBadInput)
		}
	default:
		return nil, fmt.Errorf("piv: derive with a %v key: %w", ka, cards.ErrMechanismUnsupported)
	}
	if _, _, err := t.keyOp(ctx, key, auth); err != nil {
		return nil, err
	}
	out, err := t.generalAuth(ctx, si, ks.alg, tagExp, peer)
	if err != nil {
		return nil, err
	}
	if len(out) != (bits+7)/8 {
		return nil, badCard("shared secret of %d bytes", len(out))
	}
	return bytes.Clone(out), nil
}

// GenerateKey makes a key pair in a slot (GENERATE ASYMMETRIC KEY PAIR, 1 APDU, after the
// management key: see ensureAdmin). The slot's cached objects are dropped; the old
// certificate stays on the card until replaced.
func (t *Token) GenerateKey(ctx context.Context, spec cards.KeyGenSpec) (cards.Object, error) {
	si, alg, pol, err := t.keySpec(spec)
	if err != nil {
		return cards.Object{}, err
	}
	unlock, err := t.begin(ctx)
	if err != nil {
		return cards.Object{}, err
	}
	defer unlock()
	if err := t.ensureAdmin(ctx); err != nil {
		return cards.Object{}, err
	}
	tmpl := append(apdu.TLVBytes(0x80, []byte{alg}), pol...)
	b, err := t.do(ctx, apdu.Command{INS: insGenerate, P2: byte(si.slot), Data: apdu.TLVBytes(0xAC, tmpl), Ne: t.maxNe()})
	if err != nil {
		return cards.Object{}, t.keyErr(si, "generate", err)
	}
	t.noteWrite()
	t.keyReplaced(si.slot)
	pub, err := parseGenerated(alg, b)
	if err != nil {
		return cards.Object{}, err
	}
	ks := &keyState{alg: alg, pub: pub, origin: 1, pinPolicy: spec.PINPolicy, touchPolicy: spec.TouchPolicy}
	if ks.pinPolicy == "" {
		ks.pinPolicy = si.defaultPIN
	}
	if ks.touchPolicy == "" {
		ks.touchPolicy = "never"
	}
	c := t.slot(si.slot)
	c.pubRead, c.pub = true, ks
	if t.hasMeta {
		m := metadata{Alg: alg, Origin: 1}
		c.metaRead, c.meta = true, &m // presence is what later look-ups need
	}
	return cards.Object{
		Handle: handle(si.slot, "pub"), Kind: cards.KindPublicKey, ID: []byte{si.id},
		Label: si.label, Key: t.keyInfo(si, ks),
	}, nil
}

// keyErr maps the answer to a key generation or import.
func (t *Token) keyErr(si *slotInfo, what string, err error) error {
	err = t.adminErr(err)
	switch {
	case errors.Is(err, cards.ErrLoginRequired):
	case errors.Is(err, apdu.ErrWrongP1P2), errors.Is(err, apdu.ErrWrongData), errors.Is(err, apdu.ErrFuncNotSupported):
		return fmt.Errorf("piv: %s in slot %s: %w: %w", what, si.slot, cards.ErrMechanismUnsupported, err)
	case errors.Is(err, apdu.ErrNoMemory):
		return fmt.Errorf("piv: %s in slot %s: %w: %w", what, si.slot, cards.ErrCardFull, err)
	}
	return fmt.Errorf("piv: %s in slot %s: %w", what, si.slot, err)
}

// keySpec checks a generation or import request against the slot and firmware and builds
// the policy objects (AA PIN policy, AB touch policy; Yubico).
func (t *Token) keySpec(spec cards.KeyGenSpec) (*slotInfo, byte, []byte, error) {
	si, ok := slotByID(spec.ID)
	if !ok || si.slot == 0xF9 {
		return nil, 0, nil, fmt.Errorf("piv: key location %X: %w", spec.ID, cards.ErrKeyNotFound)
	}
	alg, ok := pivAlg(spec.Alg, spec.Bits)
	if !ok || !t.algSupported(alg) {
		return nil, 0, nil, fmt.Errorf("piv: %v/%d on firmware %v: %w", spec.Alg, spec.Bits, t.fw, cards.ErrMechanismUnsupported)
	}
	var pol []byte
	if spec.PINPolicy != "" || spec.TouchPolicy != "" {
		if !t.yubico {
			return nil, 0, nil, fmt.Errorf("piv: PIN and touch policies: %w", cards.ErrNotSupported)
		}
		p, ok1 := policyByte(pinPolicies, spec.PINPolicy)
		tp, ok2 := policyByte(touchPolicies, spec.TouchPolicy)
		if !ok1 || !ok2 {
			return nil, 0, nil, fmt.Errorf("piv: policy %q/%q: %w", spec.PINPolicy, spec.TouchPolicy, cards.ErrBadInput)
		}
		if p != 0 {
			pol = apdu.AppendTLV(pol, 0xAA, []byte{p})
		}
		if tp != 0 {
			pol = apdu.AppendTLV(pol, 0xAB, []byte{tp})
		}
	}
	return si, alg, pol, nil
}

func (t *Token) algSupported(alg byte) bool {
	switch alg {
	case algRSA1024, algRSA2048, algP256:
		return true
	case algP384:
		return !t.yubico || t.fwAtLeast(4, 0, 0)
	case algRSA3072, algRSA4096, algEd25519, algX25519:
		return t.yubico && t.fwAtLeast(5, 7, 0)
	}
	return false
}

// ImportKey writes a private key to a slot (Yubico IMPORT KEY, 1 APDU after the management
// key): RSA as CRT parts (01 p, 02 q, 03 dP, 04 dQ, 05 qInv), EC as the scalar (06),
// Ed25519 (07) and X25519 (08) as their seeds.
func (t *Token) ImportKey(ctx context.Context, spec cards.KeyGenSpec, key crypto.PrivateKey) error {
	if !t.yubico {
		return fmt.Errorf("piv: import key: %w", cards.ErrNotSupported)
	}
	var body []byte
	switch k := key.(type) {
	case *rsa.PrivateKey:
		if len(k.Primes) != 2 || k.E != 65537 {
			return fmt.Errorf("piv: RSA key with %d primes, exponent %d: %w", len(k.Primes), k.E, cards.ErrMechanismUnsupported)
		}
		spec.Alg, spec.Bits = cards.AlgRSA, k.N.BitLen()
		k.Precompute()
		half := spec.Bits / 16
		for i, v := range [][]byte{k.Primes[0].Bytes(), k.Primes[1].Bytes(), k.Precomputed.Dp.Bytes(), k.Precomputed.Dq.Bytes(), k.Precomputed.Qinv.Bytes()} {
			if len(v) > half {
				return fmt.Errorf("piv: RSA key parts too long: %w", cards.ErrBadInput)
			}
			pad := make([]byte, half)
			copy(pad[half-len(v):], v)
			body = apdu.AppendTLV(body, apdu.Tag(i+1), pad)
			zero(pad)
		}
	case *ecdsa.PrivateKey:
		switch k.Curve {
		case elliptic.P256():
			spec.Alg = cards.AlgECP256
		case elliptic.P384():
			spec.Alg = cards.AlgECP384
		default:
			return fmt.Errorf("piv: curve %s: %w", k.Curve.Params().Name, cards.ErrMechanismUnsupported)
		}
		d, err := k.Bytes()
		if err != nil {
			return fmt.Errorf("piv: EC key: %w", cards.ErrBadInput)
		}
		body = apdu.TLVBytes(0x06, d)
		zero(d)
	case ed25519.PrivateKey:
		if len(k) != ed25519.PrivateKeySize {
			return fmt.Errorf("piv: Ed25519 key: %w", cards.ErrBadInput)
		}
		spec.Alg = cards.AlgEd25519
		body = apdu.TLVBytes(0x07, k.Seed())
	case *ecdh.PrivateKey:
		if k.Curve() != ecdh.X25519() {
			return fmt.Errorf("piv: ECDH key: %w", cards.ErrMechanismUnsupported)
		}
		spec.Alg = cards.AlgX25519
		body = apdu.TLVBytes(0x08, k.Bytes())
	default:
		return fmt.Errorf("piv: key type %T: %w", key, cards.ErrMechanismUnsupported)
	}
	defer zero(body)
	si, alg, pol, err := t.keySpec(spec)
	if err != nil {
		return err
	}
	body = append(body, pol...)
	unlock, err := t.begin(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	if err := t.ensureAdmin(ctx); err != nil {
		return err
	}
	if _, err := t.do(ctx, apdu.Command{INS: insImportKey, P1: alg, P2: byte(si.slot), Data: body}); err != nil {
		return t.keyErr(si, "import", err)
	}
	t.noteWrite()
	t.keyReplaced(si.slot)
	return nil
}

// maxUncompressed is the largest certificate container a YubiKey stores; bigger
// certificates are written gzip-compressed (CertInfo 01).
const maxUncompressed = 3052

// WriteCertificate stores a DER certificate in a slot's certificate object (PUT DATA,
// 1 APDU extended or chained, after the management key).
func (t *Token) WriteCertificate(ctx context.Context, id []byte, der []byte) error {
	si, ok := slotByID(id)
	if !ok {
		return fmt.Errorf("piv: key location %X: %w", id, cards.ErrKeyNotFound)
	}
	if len(der) == 0 || len(der) > maxCertSize {
		return fmt.Errorf("piv: certificate of %d bytes: %w", len(der), cards.ErrBadInput)
	}
	obj, err := encodeCertContainer(der, false)
	if err != nil {
		return err
	}
	if len(obj) > maxUncompressed {
		if obj, err = encodeCertContainer(der, true); err != nil {
			return err
		}
	}
	unlock, err := t.begin(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	if err := t.ensureAdmin(ctx); err != nil {
		return err
	}
	if err := t.writeData(ctx, si.certTag, obj); err != nil {
		if errors.Is(err, apdu.ErrNoMemory) || errors.Is(err, apdu.ErrWrongLength) {
			return fmt.Errorf("%w: %w", cards.ErrCardFull, err)
		}
		return err
	}
	c := t.slot(si.slot)
	c.certRead, c.cert = true, bytes.Clone(der)
	if !t.hasMeta {
		c.pubRead, c.pub = false, nil
	}
	return nil
}

// DeleteObject removes a certificate ("9a/cert": PUT DATA of an empty object) or a data
// container ("data/5fc102"), and, on firmware 5.7, a private key ("9a/priv": Yubico MOVE
// KEY to FF) — 1 APDU after the management key. Public keys and attestations go with their
// key: cards.ErrNotSupported.
func (t *Token) DeleteObject(ctx context.Context, h string) error {
	si, part, tag, err := parseHandle(h)
	if err != nil {
		return err
	}
	switch part {
	case "cert", "data":
	case "priv":
		if !t.yubico || !t.fwAtLeast(5, 7, 0) || si.slot == 0xF9 {
			return fmt.Errorf("piv: delete key %s: %w", si.slot, cards.ErrNotSupported)
		}
	default:
		return fmt.Errorf("piv: delete %s: %w", h, cards.ErrNotSupported)
	}
	unlock, err := t.begin(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	if err := t.ensureAdmin(ctx); err != nil {
		return err
	}
	switch part {
	case "cert":
		if err := t.writeData(ctx, si.certTag, nil); err != nil {
			return err
		}
		c := t.slot(si.slot)
		c.certRead, c.cert = true, nil
		if !t.hasMeta {
			c.pubRead, c.pub = true, nil
		}
	case "data":
		if err := t.writeData(ctx, tag, nil); err != nil {
			return err
		}
		t.data[tag] = &dataCache{read: true}
	case "priv":
		if _, err := t.do(ctx, apdu.Command{INS: insMoveKey, P1: 0xFF, P2: byte(si.slot)}); err != nil {
			err = t.adminErr(err)
			if errors.Is(err, apdu.ErrNotFound) || errors.Is(err, apdu.ErrWrongData) {
				return fmt.Errorf("piv: delete key %s: %w: %w", si.slot, cards.ErrKeyNotFound, err)
			}
			return fmt.Errorf("piv: delete key %s: %w", si.slot, err)
		}
		t.noteWrite()
		c := t.keyReplaced(si.slot)
		c.pubRead, c.metaRead = true, true // known empty
	}
	return nil
}

// Random is not offered: the YubiKey PIV application has no GET CHALLENGE (6D00), and
// the management key's witness is no general-purpose random source.
func (t *Token) Random(ctx context.Context, n int) ([]byte, error) {
	return nil, fmt.Errorf("piv: random: %w", cards.ErrNotSupported)
}

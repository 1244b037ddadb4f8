package core

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/asn1"
	"hash"
	"math/big"
	"slices"

	"github.com/p11-card/p11-card/cards"
)

type opKind int

const (
	opSign opKind = iota + 1
	opVerify
	opEncrypt
	opDecrypt
	opDigest
	opSignRecover
	opVerifyRecover
)

// operation is a session's active cryptographic operation.
type operation struct {
	kind    opKind
	mech    Mechanism
	key     *cards.Object // token key; nil for digests and session public keys
	pub     crypto.PublicKey
	hash    crypto.Hash // hash-and-sign: the hash run in software
	h       hash.Hash
	buf     []byte // single-part mechanisms fed through Update (EdDSA, raw)
	multi   bool
	auth    []byte // context-specific PIN (PIN-always keys)
	authSet bool   // a context-specific login happened (auth nil: PIN pad)
	result  []byte // kept between a size query and the real call
	done    bool   // result is final
}

// setAuth keeps the context-specific PIN; nil means the reader's PIN pad.
func (op *operation) setAuth(pin []byte) {
	op.wipe()
	if pin != nil {
		op.auth = append([]byte{}, pin...)
	}
	op.authSet = true
}

func (op *operation) wipe() {
	clear(op.auth)
	op.auth = nil
	op.authSet = false
}

// endOp ends the session's operation.
func (s *session) endOp() {
	if s.op != nil {
		s.op.wipe()
		s.op = nil
	}
}

// keyFor resolves the key of an Init call: the card object, or a session public key.
func (m *Module) keyFor(s *session, h uint64) (*object, cards.Object, error) {
	o, co, err := m.lookup(s, h)
	if err != nil {
		if RV(err) == CKR_OBJECT_HANDLE_INVALID {
			return nil, co, errRV(CKR_KEY_HANDLE_INVALID, "no such key")
		}
		return nil, co, err
	}
	return o, co, nil
}

// opFlag is the mechanism flag each kind of operation needs.
var opFlag = map[opKind]uint64{opSign: CKF_SIGN, opVerify: CKF_VERIFY, opEncrypt: CKF_ENCRYPT,
	opDecrypt: CKF_DECRYPT, opSignRecover: CKF_SIGN_RECOVER, opVerifyRecover: CKF_VERIFY_RECOVER}

// initOp starts an operation after the common checks; check validates the key.
func (m *Module) initOp(h uint64, kind opKind, mech Mechanism, keyH uint64) error {
	s, err := m.sess(h)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.op != nil || s.find != nil {
		return errRV(CKR_OPERATION_ACTIVE, "operation active")
	}
	op := &operation{kind: kind, mech: mech}
	if kind == opDigest {
		hf, ok := digestMechs[mech.Type]
		if !ok {
			return errRV(CKR_MECHANISM_INVALID, "not a digest mechanism")
		}
		if err := noParams(mech); err != nil {
			return err
		}
		op.hash, op.h = hf, hf.New()
		s.op = op
		return nil
	}
	tokMechs := m.mechanisms(s.ts)
	mi, ok := tokMechs[mech.Type]
	if !ok {
		return errRV(CKR_MECHANISM_INVALID, "mechanism not supported by this token")
	}
	if err := noParams(mech); err != nil {
		return err
	}
	if mi.Flags&opFlag[kind] == 0 {
		return errRV(CKR_MECHANISM_INVALID, "mechanism cannot do this operation")
	}
	o, co, err := m.keyFor(s, keyH)
	if err != nil {
		return err
	}
	if o.owner != nil {
		// A session public key (verify, encrypt).
		if kind != opVerify && kind != opEncrypt && kind != opVerifyRecover {
			return errRV(CKR_KEY_TYPE_INCONSISTENT, "session objects cannot sign or decrypt")
		}
		pub, alg, err := publicFromAttrs(o.attrs)
		if err != nil {
			return err
		}
		op.pub = pub
		op.key = &cards.Object{Kind: cards.KindPublicKey, Key: &cards.KeyInfo{Alg: alg, Public: pub, Sign: true, Decrypt: true, RawRSA: true}}
	} else {
		if co.Key == nil {
			return errRV(CKR_KEY_TYPE_INCONSISTENT, "not a key")
		}
		private := kind == opSign || kind == opDecrypt || kind == opSignRecover
		if private && co.Kind != cards.KindPrivateKey {
			return errRV(CKR_KEY_TYPE_INCONSISTENT, "needs a private key")
		}
		if !private && co.Kind != cards.KindPublicKey && co.Kind != cards.KindPrivateKey {
			return errRV(CKR_KEY_TYPE_INCONSISTENT, "needs a public key")
		}
		k := co.Key
		usage := map[opKind]bool{opSign: k.Sign, opSignRecover: k.Sign, opVerify: k.Sign, opVerifyRecover: k.Sign, opDecrypt: k.Decrypt, opEncrypt: k.Decrypt}[kind]
		if !usage {
			return errRV(CKR_KEY_FUNCTION_NOT_PERMITTED, "key usage does not allow this")
		}
		c := co
		op.key = &c
		op.pub = k.Public
	}
	if !slices.Contains(keyMechanisms(s.ts, op.key.Key), mech.Type) {
		return errRV(CKR_KEY_TYPE_INCONSISTENT, "mechanism does not fit this key")
	}
	if (kind == opVerify || kind == opEncrypt || kind == opVerifyRecover) && op.pub == nil {
		return errRV(CKR_KEY_TYPE_INCONSISTENT, "public key unknown for this curve")
	}
	if err := checkParams(op); err != nil {
		return err
	}
	if kind == opDecrypt && mech.Type == CKM_RSA_PKCS && m.opts.NoPKCS1Decrypt {
		return errRV(CKR_MECHANISM_INVALID, "PKCS#1 v1.5 decryption switched off")
	}
	if hf, ok := rsaPKCSHash[mech.Type]; ok {
		op.hash = hf
	} else if hf, ok := rsaPSSHash[mech.Type]; ok {
		op.hash = hf
	} else if hf, ok := ecdsaHash[mech.Type]; ok {
		op.hash = hf
	}
	if op.hash != 0 {
		op.h = op.hash.New()
	}
	s.op = op
	return nil
}

// noParams rejects parameters given to a mechanism that takes none (the ones the cgo
// layer does not decode: digests, PKCS#1 v1.5, raw RSA, ECDSA, key-pair generation).
// An empty parameter (pParameter set, ulParameterLen 0) is let through, as harmless.
func noParams(mech Mechanism) error {
	if len(mech.Param) > 0 {
		return errRV(CKR_MECHANISM_PARAM_INVALID, "this mechanism takes no parameter")
	}
	return nil
}

// checkParams validates mechanism parameters against the operation and its key, so that
// every parameter error shows at Init (CKR_MECHANISM_PARAM_INVALID is not among the
// return values of C_Sign, C_Verify or C_Encrypt).
func checkParams(op *operation) error {
	t := op.mech.Type
	switch {
	case t == CKM_RSA_PKCS_PSS || rsaPSSHash[t] != 0:
		p := op.mech.PSS
		if p == nil {
			return errRV(CKR_MECHANISM_PARAM_INVALID, "PSS needs CK_RSA_PKCS_PSS_PARAMS")
		}
		hf, ok := hashMech(p.Hash)
		if !ok {
			return errRV(CKR_MECHANISM_PARAM_INVALID, "PSS hash")
		}
		if h2 := rsaPSSHash[t]; h2 != 0 && h2 != hf {
			return errRV(CKR_MECHANISM_PARAM_INVALID, "PSS hash differs from the mechanism's")
		}
		mgf, ok := mgfHash[p.MGF]
		if !ok {
			return errRV(CKR_MECHANISM_PARAM_INVALID, "PSS MGF")
		}
		if p.SaltLen > 1024 {
			return errRV(CKR_MECHANISM_PARAM_INVALID, "PSS salt length")
		}
		// RFC 8017 §9.1.1: emLen >= hLen + sLen + 2, emLen = ceil((modBits-1)/8).
		if k := op.key.Key; k != nil && k.Alg == cards.AlgRSA && (modBits(k)+6)/8 < hf.Size()+int(p.SaltLen)+2 {
			return errRV(CKR_MECHANISM_PARAM_INVALID, "PSS salt too long for this key")
		}
		// Verification runs in Go's crypto/rsa, whose MGF1 uses the message hash.
		if (op.kind == opVerify || op.kind == opVerifyRecover) && mgf != hf {
			return errRV(CKR_MECHANISM_PARAM_INVALID, "PSS verification needs the MGF1 hash to equal the hash")
		}
	case t == CKM_RSA_PKCS_OAEP:
		p := op.mech.OAEP
		if p == nil {
			return errRV(CKR_MECHANISM_PARAM_INVALID, "OAEP needs CK_RSA_PKCS_OAEP_PARAMS")
		}
		hf, ok := hashMech(p.Hash)
		if !ok {
			return errRV(CKR_MECHANISM_PARAM_INVALID, "OAEP hash")
		}
		mgf, ok := mgfHash[p.MGF]
		if !ok {
			return errRV(CKR_MECHANISM_PARAM_INVALID, "OAEP MGF")
		}
		// Encryption runs in Go's crypto/rsa, whose MGF1 uses the label hash.
		if op.kind == opEncrypt && mgf != hf {
			return errRV(CKR_MECHANISM_PARAM_INVALID, "OAEP encryption needs the MGF1 hash to equal the hash")
		}
		if p.Source != 0 && p.Source != CKZ_DATA_SPECIFIED {
			return errRV(CKR_MECHANISM_PARAM_INVALID, "OAEP source")
		}
	}
	return nil
}

// SignInit starts a signature with a card key.
func (m *Module) SignInit(h uint64, mech Mechanism, key uint64) error {
	return m.initOp(h, opSign, mech, key)
}

// VerifyInit starts a verification (in software, with the public key).
func (m *Module) VerifyInit(h uint64, mech Mechanism, key uint64) error {
	return m.initOp(h, opVerify, mech, key)
}

// EncryptInit starts an encryption (in software, with the public key).
func (m *Module) EncryptInit(h uint64, mech Mechanism, key uint64) error {
	return m.initOp(h, opEncrypt, mech, key)
}

// DecryptInit starts a decryption with a card key.
func (m *Module) DecryptInit(h uint64, mech Mechanism, key uint64) error {
	return m.initOp(h, opDecrypt, mech, key)
}

// SignRecoverInit starts a signature with recovery (CKM_RSA_PKCS, CKM_RSA_X_509).
func (m *Module) SignRecoverInit(h uint64, mech Mechanism, key uint64) error {
	if mech.Type != CKM_RSA_PKCS && mech.Type != CKM_RSA_X_509 {
		return errRV(CKR_MECHANISM_INVALID, "sign-recover needs CKM_RSA_PKCS or CKM_RSA_X_509")
	}
	return m.initOp(h, opSignRecover, mech, key)
}

// VerifyRecoverInit starts a verification with recovery (CKM_RSA_PKCS, CKM_RSA_X_509).
func (m *Module) VerifyRecoverInit(h uint64, mech Mechanism, key uint64) error {
	if mech.Type != CKM_RSA_PKCS && mech.Type != CKM_RSA_X_509 {
		return errRV(CKR_MECHANISM_INVALID, "verify-recover needs CKM_RSA_PKCS or CKM_RSA_X_509")
	}
	return m.initOp(h, opVerifyRecover, mech, key)
}

// DigestInit starts a software digest.
func (m *Module) DigestInit(h uint64, mech Mechanism) error {
	return m.initOp(h, opDigest, mech, 0)
}

// activeOp locks the session and returns its operation if it is of kind.
func (m *Module) activeOp(h uint64, kind opKind) (*session, *operation, error) {
	s, err := m.sess(h)
	if err != nil {
		return nil, nil, err
	}
	s.mu.Lock()
	if s.op == nil || s.op.kind != kind {
		s.mu.Unlock()
		return nil, nil, errRV(CKR_OPERATION_NOT_INITIALIZED, "operation not initialized")
	}
	return s, s.op, nil
}

// output finishes an operation producing bytes with the size-query rules: capacity < 0
// is a length query (result kept), a short buffer gives CKR_BUFFER_TOO_SMALL (result
// kept), otherwise the operation ends. compute runs once per operation.
func output(s *session, op *operation, capacity int, compute func() ([]byte, error)) ([]byte, error) {
	if !op.done {
		out, err := compute()
		if err != nil {
			s.endOp()
			return nil, err
		}
		op.result, op.done = out, true
		op.wipe()
	}
	if capacity < 0 {
		return op.result, nil
	}
	if capacity < len(op.result) {
		return op.result, errRV(CKR_BUFFER_TOO_SMALL, "buffer too small")
	}
	out := op.result
	s.endOp()
	return out, nil
}

// Sign signs data in one part.
func (m *Module) Sign(h uint64, data []byte, capacity int) ([]byte, error) {
	s, op, err := m.activeOp(h, opSign)
	if err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	return output(s, op, capacity, func() ([]byte, error) {
		if op.multi {
			return nil, errRV(CKR_OPERATION_ACTIVE, "C_Sign after C_SignUpdate")
		}
		return m.sign(s, op, data, false)
	})
}

// SignUpdate feeds a part of a multi-part signature.
func (m *Module) SignUpdate(h uint64, part []byte) error {
	return m.update(h, opSign, part)
}

func (m *Module) update(h uint64, kind opKind, part []byte) error {
	s, op, err := m.activeOp(h, kind)
	if err != nil {
		return err
	}
	defer s.mu.Unlock()
	if op.done {
		return errRV(CKR_OPERATION_ACTIVE, "operation already finished")
	}
	op.multi = true
	if op.h != nil {
		op.h.Write(part)
		return nil
	}
	switch op.mech.Type {
	case CKM_EDDSA, CKM_RSA_PKCS, CKM_RSA_X_509, CKM_ECDSA, CKM_RSA_PKCS_PSS:
		// Single-part mechanisms fed in parts: buffered, checked at Final.
		if len(op.buf)+len(part) > 1<<20 {
			s.endOp()
			return errRV(CKR_DATA_LEN_RANGE, "message too long")
		}
		op.buf = append(op.buf, part...)
		return nil
	}
	s.endOp()
	return errRV(CKR_FUNCTION_NOT_SUPPORTED, "this mechanism is single-part only")
}

// SignFinal finishes a multi-part signature.
func (m *Module) SignFinal(h uint64, capacity int) ([]byte, error) {
	s, op, err := m.activeOp(h, opSign)
	if err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	return output(s, op, capacity, func() ([]byte, error) { return m.sign(s, op, op.buf, true) })
}

// SignRecover signs data that verify-recover gives back.
func (m *Module) SignRecover(h uint64, data []byte, capacity int) ([]byte, error) {
	s, op, err := m.activeOp(h, opSignRecover)
	if err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	return output(s, op, capacity, func() ([]byte, error) { return m.sign(s, op, data, false) })
}

// modBytes is the RSA modulus length in bytes.
func modBytes(k *cards.KeyInfo) int {
	if pub, ok := k.Public.(*rsa.PublicKey); ok {
		return (pub.N.BitLen() + 7) / 8
	}
	return (k.Bits + 7) / 8
}

func modBits(k *cards.KeyInfo) int {
	if pub, ok := k.Public.(*rsa.PublicKey); ok {
		return pub.N.BitLen()
	}
	return k.Bits
}

// sign computes the signature; final tells that data came through Update (hash state).
func (m *Module) sign(s *session, op *operation, data []byte, final bool) ([]byte, error) {
	k := op.key.Key
	digest := func() []byte {
		if !final {
			op.h.Write(data)
		}
		return op.h.Sum(nil)
	}
	var scheme cards.SignScheme
	var in []byte
	t := op.mech.Type
	switch {
	case t == CKM_RSA_PKCS:
		if len(data) > modBytes(k)-11 {
			return nil, errRV(CKR_DATA_LEN_RANGE, "data too long for PKCS#1 v1.5")
		}
		scheme, in = cards.SignRSAPKCS1, data
	case t == CKM_RSA_X_509:
		if len(data) > modBytes(k) {
			return nil, errRV(CKR_DATA_LEN_RANGE, "data longer than the modulus")
		}
		scheme, in = cards.SignRSARaw, leftPad(data, modBytes(k))
	case rsaPKCSHash[t] != 0:
		scheme, in = cards.SignRSAPKCS1, digestInfo(op.hash, digest())
	case t == CKM_RSA_PKCS_PSS || rsaPSSHash[t] != 0:
		p := op.mech.PSS
		hf, _ := hashMech(p.Hash)
		mHash := data
		if t != CKM_RSA_PKCS_PSS {
			mHash = digest()
		} else if len(data) != hf.Size() {
			return nil, errRV(CKR_DATA_LEN_RANGE, "PSS input must be a hash of the parameter's size")
		}
		em, err := emsaPSSEncode(mHash, modBits(k), hf, mgfHash[p.MGF], int(p.SaltLen))
		if err != nil {
			return nil, errRV(CKR_MECHANISM_PARAM_INVALID, "salt too long for this key")
		}
		scheme, in = cards.SignRSARaw, em
	case t == CKM_ECDSA:
		scheme, in = cards.SignECDSA, data
	case ecdsaHash[t] != 0:
		scheme, in = cards.SignECDSA, digest()
	case t == CKM_EDDSA:
		scheme, in = cards.SignEdDSA, data
	default:
		return nil, errRV(CKR_MECHANISM_INVALID, "not a signature mechanism")
	}
	sig, err := m.privateOp(s, op, func(ctx context.Context, tok cards.Token, auth *cards.Auth) ([]byte, error) {
		return tok.Sign(ctx, op.key.ID, scheme, in, auth)
	})
	if err != nil {
		return nil, err
	}
	return checkSignature(k, scheme, sig)
}

// checkSignature holds a card's answer to the size the mechanism defines: an RSA
// signature is the modulus length (a card dropping leading zeros is padded back), ECDSA
// r‖s twice the field size, Ed25519 64 bytes. Anything else is a broken card.
func checkSignature(k *cards.KeyInfo, scheme cards.SignScheme, sig []byte) ([]byte, error) {
	want := 0
	switch scheme {
	case cards.SignRSAPKCS1, cards.SignRSARaw:
		want = modBytes(k)
		if len(sig) < want && len(sig) > 0 {
			sig = leftPad(sig, want)
		}
	case cards.SignECDSA:
		want = 2 * ((curveBits[k.Alg] + 7) / 8)
	case cards.SignEdDSA:
		want = ed25519.SignatureSize
	}
	if want > 0 && len(sig) != want {
		return nil, errRV(CKR_DEVICE_ERROR, "card returned a signature of the wrong size")
	}
	return sig, nil
}

// privateOp runs f, an operation with op's private key, on the card, with the
// context-specific login the key asks for (authFor); the PIN's copy is wiped after.
func (m *Module) privateOp(s *session, op *operation, f func(ctx context.Context, tok cards.Token, auth *cards.Auth) ([]byte, error)) ([]byte, error) {
	auth, err := m.authFor(s, op)
	if err != nil {
		return nil, err
	}
	if auth != nil {
		defer clear(auth.PIN)
	}
	var out []byte
	err = m.keyOp(s.ts, func(ctx context.Context, tok cards.Token) error {
		var err error
		out, err = f(ctx, tok, auth)
		return err
	})
	if op.kind == opDecrypt {
		return out, heldTo(err, decryptFailures)
	}
	return out, heldTo(err, signFailures)
}

// authFor gives the per-operation PIN of a PIN-always key.
func (m *Module) authFor(s *session, op *operation) (*cards.Auth, error) {
	if !op.key.Key.AlwaysAuth {
		return nil, nil
	}
	if !op.authSet {
		return nil, errRV(CKR_USER_NOT_LOGGED_IN, "this key needs a context-specific login")
	}
	if op.auth == nil {
		return &cards.Auth{}, nil // the PIN pad again, inside the operation
	}
	return &cards.Auth{PIN: append([]byte{}, op.auth...)}, nil
}

// Verify checks a signature in one part (in software, with the public key).
func (m *Module) Verify(h uint64, data, sig []byte) error {
	s, op, err := m.activeOp(h, opVerify)
	if err != nil {
		return err
	}
	defer s.mu.Unlock()
	defer s.endOp()
	if op.multi {
		return errRV(CKR_OPERATION_ACTIVE, "C_Verify after C_VerifyUpdate")
	}
	return verify(op, data, sig, false)
}

// VerifyUpdate feeds a part of a multi-part verification.
func (m *Module) VerifyUpdate(h uint64, part []byte) error { return m.update(h, opVerify, part) }

// VerifyFinal finishes a multi-part verification.
func (m *Module) VerifyFinal(h uint64, sig []byte) error {
	s, op, err := m.activeOp(h, opVerify)
	if err != nil {
		return err
	}
	defer s.mu.Unlock()
	defer s.endOp()
	return verify(op, op.buf, sig, true)
}

var (
	errSigInvalid  = errRV(CKR_SIGNATURE_INVALID, "signature invalid")
	errSigLenRange = errRV(CKR_SIGNATURE_LEN_RANGE, "signature length wrong")
)

func verify(op *operation, data, sig []byte, final bool) error {
	digest := func() []byte {
		if !final {
			op.h.Write(data)
		}
		return op.h.Sum(nil)
	}
	t := op.mech.Type
	switch pub := op.pub.(type) {
	case *rsa.PublicKey:
		k := pub.Size()
		if len(sig) != k {
			return errSigLenRange
		}
		switch {
		case t == CKM_RSA_PKCS:
			if len(data) > k-11 {
				return errRV(CKR_DATA_LEN_RANGE, "data too long")
			}
			if rsa.VerifyPKCS1v15(pub, 0, data, sig) != nil {
				return errSigInvalid
			}
		case t == CKM_RSA_X_509:
			if len(data) > k {
				return errRV(CKR_DATA_LEN_RANGE, "data too long")
			}
			m, ok := rsaPublic(pub.N, pub.E, sig)
			if !ok || !bytes.Equal(m, leftPad(data, k)) {
				return errSigInvalid
			}
		case rsaPKCSHash[t] != 0:
			if rsa.VerifyPKCS1v15(pub, op.hash, digest(), sig) != nil {
				return errSigInvalid
			}
		case t == CKM_RSA_PKCS_PSS || rsaPSSHash[t] != 0:
			p := op.mech.PSS
			hf, _ := hashMech(p.Hash)
			if mgfHash[p.MGF] != hf {
				return errRV(CKR_MECHANISM_PARAM_INVALID, "PSS verification needs the MGF1 hash to equal the hash")
			}
			mHash := data
			if t != CKM_RSA_PKCS_PSS {
				mHash = digest()
			} else if len(data) != hf.Size() {
				return errRV(CKR_DATA_LEN_RANGE, "PSS input must be a hash")
			}
			if rsa.VerifyPSS(pub, hf, mHash, sig, &rsa.PSSOptions{SaltLength: int(p.SaltLen), Hash: hf}) != nil {
				return errSigInvalid
			}
		default:
			return errRV(CKR_MECHANISM_INVALID, "mechanism")
		}
		return nil
	case *ecdsa.PublicKey:
		n := (pub.Curve.Params().BitSize + 7) / 8
		if len(sig) != 2*n {
			return errSigLenRange
		}
		hv := data
		if ecdsaHash[t] != 0 {
			hv = digest()
		}
		r, s := new(big.Int).SetBytes(sig[:n]), new(big.Int).SetBytes(sig[n:])
		if !ecdsa.Verify(pub, hv, r, s) {
			return errSigInvalid
		}
		return nil
	case ed25519.PublicKey:
		if len(sig) != ed25519.SignatureSize {
			return errSigLenRange
		}
		if !ed25519.Verify(pub, data, sig) {
			return errSigInvalid
		}
		return nil
	}
	return errRV(CKR_KEY_TYPE_INCONSISTENT, "cannot verify with this key")
}

// VerifyRecover checks an RSA signature and returns the signed data.
func (m *Module) VerifyRecover(h uint64, sig []byte, capacity int) ([]byte, error) {
	s, op, err := m.activeOp(h, opVerifyRecover)
	if err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	return output(s, op, capacity, func() ([]byte, error) {
		pub, ok := op.pub.(*rsa.PublicKey)
		if !ok {
			return nil, errRV(CKR_KEY_TYPE_INCONSISTENT, "RSA only")
		}
		if len(sig) != pub.Size() {
			return nil, errSigLenRange
		}
		em, ok := rsaPublic(pub.N, pub.E, sig)
		if !ok {
			return nil, errSigInvalid
		}
		if op.mech.Type == CKM_RSA_X_509 {
			return em, nil
		}
		d, ok := pkcs1Type1Unpad(em)
		if !ok {
			return nil, errSigInvalid
		}
		return d, nil
	})
}

// Encrypt encrypts with a public key in software.
func (m *Module) Encrypt(h uint64, data []byte, capacity int) ([]byte, error) {
	s, op, err := m.activeOp(h, opEncrypt)
	if err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	return output(s, op, capacity, func() ([]byte, error) {
		pub, ok := op.pub.(*rsa.PublicKey)
		if !ok {
			return nil, errRV(CKR_KEY_TYPE_INCONSISTENT, "RSA only")
		}
		switch op.mech.Type {
		case CKM_RSA_PKCS:
			if len(data) > pub.Size()-11 {
				return nil, errRV(CKR_DATA_LEN_RANGE, "data too long")
			}
			return rsa.EncryptPKCS1v15(rand.Reader, pub, data)
		case CKM_RSA_X_509:
			if len(data) > pub.Size() {
				return nil, errRV(CKR_DATA_LEN_RANGE, "data too long")
			}
			c, ok := rsaPublic(pub.N, pub.E, leftPad(data, pub.Size()))
			if !ok {
				return nil, errRV(CKR_DATA_INVALID, "data not below the modulus")
			}
			return c, nil
		case CKM_RSA_PKCS_OAEP:
			p := op.mech.OAEP
			hf, _ := hashMech(p.Hash)
			if mgfHash[p.MGF] != hf {
				return nil, errRV(CKR_MECHANISM_PARAM_INVALID, "OAEP encryption needs the MGF1 hash to equal the hash")
			}
			if len(data) > pub.Size()-2*hf.Size()-2 {
				return nil, errRV(CKR_DATA_LEN_RANGE, "data too long")
			}
			return rsa.EncryptOAEP(hf.New(), rand.Reader, pub, data, p.Label)
		}
		return nil, errRV(CKR_MECHANISM_INVALID, "mechanism")
	})
}

// EncryptUpdate ends the operation: RSA encryption is single-part.
func (m *Module) EncryptUpdate(h uint64) error {
	s, _, err := m.activeOp(h, opEncrypt)
	if err != nil {
		return err
	}
	defer s.mu.Unlock()
	s.endOp()
	return errRV(CKR_FUNCTION_NOT_SUPPORTED, "RSA encryption is single-part")
}

// Decrypt decrypts with the card's private key.
func (m *Module) Decrypt(h uint64, data []byte, capacity int) ([]byte, error) {
	s, op, err := m.activeOp(h, opDecrypt)
	if err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	return output(s, op, capacity, func() ([]byte, error) { return m.decrypt(s, op, data) })
}

// DecryptUpdate ends the operation: RSA decryption is single-part.
func (m *Module) DecryptUpdate(h uint64) error {
	s, _, err := m.activeOp(h, opDecrypt)
	if err != nil {
		return err
	}
	defer s.mu.Unlock()
	s.endOp()
	return errRV(CKR_FUNCTION_NOT_SUPPORTED, "RSA decryption is single-part")
}

func (m *Module) decrypt(s *session, op *operation, data []byte) ([]byte, error) {
	k := op.key.Key
	kb := modBytes(k)
	if len(data) != kb {
		return nil, errRV(CKR_ENCRYPTED_DATA_LEN_RANGE, "ciphertext length differs from the modulus")
	}
	scheme := cards.DecryptRSARaw
	if op.mech.Type == CKM_RSA_PKCS && !k.RawRSA {
		scheme = cards.DecryptRSAPKCS1
	}
	out, err := m.privateOp(s, op, func(ctx context.Context, tok cards.Token, auth *cards.Auth) ([]byte, error) {
		return tok.Decrypt(ctx, op.key.ID, scheme, data, auth)
	})
	if err != nil {
		return nil, err
	}
	if scheme == cards.DecryptRSAPKCS1 {
		if len(out) > kb-11 {
			return nil, errRV(CKR_DEVICE_ERROR, "card returned an oversized plaintext")
		}
		return out, nil
	}
	if len(out) > kb {
		return nil, errRV(CKR_DEVICE_ERROR, "card returned an oversized block")
	}
	em := leftPad(out, kb)
	switch op.mech.Type {
	case CKM_RSA_X_509:
		return em, nil
	case CKM_RSA_PKCS:
		return pkcs1Unpad(em, m.kdk(s.ts, op.key.ID)), nil
	case CKM_RSA_PKCS_OAEP:
		p := op.mech.OAEP
		hf, _ := hashMech(p.Hash)
		msg, err := oaepDecode(em, hf, mgfHash[p.MGF], p.Label)
		if err != nil {
			return nil, errRV(CKR_ENCRYPTED_DATA_INVALID, "decryption error")
		}
		return msg, nil
	}
	return nil, errRV(CKR_MECHANISM_INVALID, "mechanism")
}

// kdk is the per-key secret behind implicit rejection: random per process and key.
func (m *Module) kdk(ts *tokenState, id []byte) []byte {
	kdkMu.Lock()
	defer kdkMu.Unlock()
	key := ts.info.Serial + "/" + string(id)
	if k, ok := kdks[key]; ok {
		return k
	}
	k := make([]byte, 32)
	rand.Read(k)
	kdks[key] = k
	return k
}

// Digest hashes data in one part.
func (m *Module) Digest(h uint64, data []byte, capacity int) ([]byte, error) {
	s, op, err := m.activeOp(h, opDigest)
	if err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	return output(s, op, capacity, func() ([]byte, error) {
		if op.multi {
			return nil, errRV(CKR_OPERATION_ACTIVE, "C_Digest after C_DigestUpdate")
		}
		op.h.Write(data)
		return op.h.Sum(nil), nil
	})
}

// DigestUpdate feeds a part of a digest.
func (m *Module) DigestUpdate(h uint64, part []byte) error { return m.update(h, opDigest, part) }

// DigestKey refuses: card keys are never hashed (they do not leave the card).
func (m *Module) DigestKey(h, key uint64) error {
	s, _, err := m.activeOp(h, opDigest)
	if err != nil {
		return err
	}
	defer s.mu.Unlock()
	return errRV(CKR_KEY_INDIGESTIBLE, "card keys cannot be digested")
}

// DigestFinal finishes a digest.
func (m *Module) DigestFinal(h uint64, capacity int) ([]byte, error) {
	s, op, err := m.activeOp(h, opDigest)
	if err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	return output(s, op, capacity, func() ([]byte, error) { return op.h.Sum(nil), nil })
}

// publicFromAttrs builds a public key from a session object's attributes.
func publicFromAttrs(a attrSet) (crypto.PublicKey, cards.KeyAlg, error) {
	class, _ := DecodeULong(a.v[CKA_CLASS])
	kt, ok := DecodeULong(a.v[CKA_KEY_TYPE])
	if class != CKO_PUBLIC_KEY || !ok {
		return nil, 0, errRV(CKR_KEY_TYPE_INCONSISTENT, "not a public key")
	}
	switch kt {
	case CKK_RSA:
		n, e := new(big.Int).SetBytes(a.v[CKA_MODULUS]), new(big.Int).SetBytes(a.v[CKA_PUBLIC_EXPONENT])
		if n.Sign() == 0 || !e.IsInt64() || e.Int64() < 3 || e.Int64() > 1<<31 {
			return nil, 0, errRV(CKR_KEY_TYPE_INCONSISTENT, "bad RSA public key")
		}
		return &rsa.PublicKey{N: n, E: int(e.Int64())}, cards.AlgRSA, nil
	case CKK_EC, CKK_EC_EDWARDS:
		alg, ok := algFromECParams(a.v[CKA_EC_PARAMS])
		if !ok {
			return nil, 0, errRV(CKR_CURVE_NOT_SUPPORTED, "curve")
		}
		var pt []byte
		if _, err := asn1.Unmarshal(a.v[CKA_EC_POINT], &pt); err != nil {
			pt = a.v[CKA_EC_POINT]
		}
		if alg == cards.AlgEd25519 {
			if len(pt) != ed25519.PublicKeySize {
				return nil, 0, errRV(CKR_KEY_TYPE_INCONSISTENT, "bad Ed25519 key")
			}
			return ed25519.PublicKey(pt), alg, nil
		}
		c, ok := curveEllipse(alg)
		if !ok {
			return nil, 0, errRV(CKR_CURVE_NOT_SUPPORTED, "curve")
		}
		x, y := elliptic.Unmarshal(c, pt) //nolint:staticcheck // point validated by Unmarshal
		if x == nil {
			return nil, 0, errRV(CKR_KEY_TYPE_INCONSISTENT, "bad EC point")
		}
		return &ecdsa.PublicKey{Curve: c, X: x, Y: y}, alg, nil
	}
	return nil, 0, errRV(CKR_KEY_TYPE_INCONSISTENT, "key type")
}

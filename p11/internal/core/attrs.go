package core

import (
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha1"
	"encoding/asn1"
	"encoding/binary"
	"math/big"
	"runtime"
	"strconv"
	"time"

	"github.com/p11-card/p11-card/cards"
	"github.com/p11-card/p11-card/internal/cert"
)

// ULongSize is sizeof(CK_ULONG): C unsigned long (8 on 64-bit Linux and macOS, 4 on
// Windows). The cgo layer checks it against the C compiler's answer.
var ULongSize = func() int {
	if runtime.GOOS == "windows" {
		return 4
	}
	return strconv.IntSize / 8
}()

// Attr is one attribute: type and value in the C encoding (CK_ULONG native-endian,
// CK_BBOOL one byte, CK_DATE eight characters).
type Attr struct {
	Type  uint64
	Value []byte
}

// AttrValue is one answer of GetAttributeValue: a value, or RV set to
// CKR_ATTRIBUTE_SENSITIVE or CKR_ATTRIBUTE_TYPE_INVALID.
type AttrValue struct {
	Value []byte
	RV    uint64
}

// EncodeULong encodes a CK_ULONG.
func EncodeULong(v uint64) []byte {
	b := make([]byte, ULongSize)
	if ULongSize == 4 {
		binary.NativeEndian.PutUint32(b, uint32(v))
	} else {
		binary.NativeEndian.PutUint64(b, v)
	}
	return b
}

// DecodeULong decodes a CK_ULONG; ok is false for a wrong length.
func DecodeULong(b []byte) (uint64, bool) {
	switch {
	case len(b) != ULongSize:
		return 0, false
	case ULongSize == 4:
		return uint64(binary.NativeEndian.Uint32(b)), true
	default:
		return binary.NativeEndian.Uint64(b), true
	}
}

func ckBool(b bool) []byte {
	if b {
		return []byte{1}
	}
	return []byte{0}
}

func ckDate(t time.Time) []byte {
	if t.IsZero() {
		return []byte{}
	}
	return []byte(t.UTC().Format("20060102"))
}

// boolAttrs are the attributes compared as truth values when matching templates.
var boolAttrs = map[uint64]bool{
	CKA_TOKEN: true, CKA_PRIVATE: true, CKA_TRUSTED: true, CKA_SENSITIVE: true, CKA_ENCRYPT: true,
	CKA_DECRYPT: true, CKA_WRAP: true, CKA_UNWRAP: true, CKA_SIGN: true, CKA_SIGN_RECOVER: true,
	CKA_VERIFY: true, CKA_VERIFY_RECOVER: true, CKA_DERIVE: true, CKA_EXTRACTABLE: true,
	CKA_LOCAL: true, CKA_NEVER_EXTRACTABLE: true, CKA_ALWAYS_SENSITIVE: true, CKA_MODIFIABLE: true,
	CKA_COPYABLE: true, CKA_DESTROYABLE: true, CKA_ALWAYS_AUTHENTICATE: true, CKA_WRAP_WITH_TRUSTED: true,
}

// attrSet is an object's attributes: values, and the types that exist but are sensitive.
type attrSet struct {
	v         map[uint64][]byte
	sensitive map[uint64]bool
}

func (a attrSet) get(t uint64) AttrValue {
	if a.sensitive[t] {
		return AttrValue{RV: CKR_ATTRIBUTE_SENSITIVE}
	}
	if v, ok := a.v[t]; ok {
		return AttrValue{Value: v}
	}
	return AttrValue{RV: CKR_ATTRIBUTE_TYPE_INVALID}
}

// matches reports whether every template attribute has an equal value in a.
func (a attrSet) matches(tmpl []Attr) bool {
	for _, t := range tmpl {
		if a.sensitive[t.Type] {
			return false
		}
		v, ok := a.v[t.Type]
		if !ok {
			return false
		}
		if boolAttrs[t.Type] && len(t.Value) == 1 && len(v) == 1 {
			if (t.Value[0] != 0) != (v[0] != 0) {
				return false
			}
			continue
		}
		if string(v) != string(t.Value) {
			return false
		}
	}
	return true
}

// Curve object identifiers (RFC 5480, RFC 5639, RFC 8410).
var (
	oidP256     = asn1.ObjectIdentifier{1, 2, 840, 10045, 3, 1, 7}
	oidP384     = asn1.ObjectIdentifier{1, 3, 132, 0, 34}
	oidP521     = asn1.ObjectIdentifier{1, 3, 132, 0, 35}
	oidBP256    = asn1.ObjectIdentifier{1, 3, 36, 3, 3, 2, 8, 1, 1, 7}
	oidBP384    = asn1.ObjectIdentifier{1, 3, 36, 3, 3, 2, 8, 1, 1, 11}
	oidBP512    = asn1.ObjectIdentifier{1, 3, 36, 3, 3, 2, 8, 1, 1, 13}
	oidEd25519  = asn1.ObjectIdentifier{1, 3, 101, 112}
	oidX25519   = asn1.ObjectIdentifier{1, 3, 101, 110}
	curveOIDs   = map[cards.KeyAlg]asn1.ObjectIdentifier{cards.AlgECP256: oidP256, cards.AlgECP384: oidP384, cards.AlgECP521: oidP521, cards.AlgBrainpoolP256: oidBP256, cards.AlgBrainpoolP384: oidBP384, cards.AlgBrainpoolP512: oidBP512, cards.AlgEd25519: oidEd25519, cards.AlgX25519: oidX25519}
	curveByName = map[string]cards.KeyAlg{"edwards25519": cards.AlgEd25519, "curve25519": cards.AlgX25519}
	curveBits   = map[cards.KeyAlg]int{cards.AlgECP256: 256, cards.AlgECP384: 384, cards.AlgECP521: 521, cards.AlgBrainpoolP256: 256, cards.AlgBrainpoolP384: 384, cards.AlgBrainpoolP512: 512, cards.AlgEd25519: 255, cards.AlgX25519: 255}
)

// curveEllipse is the crypto/elliptic curve of a NIST curve. It is a function, not a
// table made at init: the first elliptic.P256() computes the parameters of all four
// NIST curves from their decimal strings, which a process that never parses an EC key
// (pkcs11-tool -L) need not pay for.
func curveEllipse(a cards.KeyAlg) (elliptic.Curve, bool) {
	switch a {
	case cards.AlgECP256:
		return elliptic.P256(), true
	case cards.AlgECP384:
		return elliptic.P384(), true
	case cards.AlgECP521:
		return elliptic.P521(), true
	}
	return nil, false
}

// ecParams is CKA_EC_PARAMS: the DER curve OID.
func ecParams(a cards.KeyAlg) []byte {
	oid, ok := curveOIDs[a]
	if !ok {
		return nil
	}
	b, _ := asn1.Marshal(oid)
	return b
}

// algFromECParams reads CKA_EC_PARAMS: a curve OID or (3.0) a PrintableString name.
func algFromECParams(b []byte) (cards.KeyAlg, bool) {
	var oid asn1.ObjectIdentifier
	if rest, err := asn1.Unmarshal(b, &oid); err == nil && len(rest) == 0 {
		for a, o := range curveOIDs {
			if o.Equal(oid) {
				return a, true
			}
		}
		return 0, false
	}
	var name string
	if rest, err := asn1.Unmarshal(b, &name); err == nil && len(rest) == 0 {
		a, ok := curveByName[name]
		return a, ok
	}
	return 0, false
}

func keyType(a cards.KeyAlg) uint64 {
	switch {
	case a == cards.AlgRSA:
		return CKK_RSA
	case a == cards.AlgEd25519:
		return CKK_EC_EDWARDS
	case a == cards.AlgX25519:
		return CKK_EC_MONTGOMERY
	default:
		return CKK_EC
	}
}

func keyGenMech(a cards.KeyAlg) uint64 {
	switch {
	case a == cards.AlgRSA:
		return CKM_RSA_PKCS_KEY_PAIR_GEN
	case a == cards.AlgEd25519:
		return CKM_EC_EDWARDS_KEY_PAIR_GEN
	case a == cards.AlgX25519:
		return CKM_EC_MONTGOMERY_KEY_PAIR_GEN
	default:
		return CKM_EC_KEY_PAIR_GEN
	}
}

// kindClass maps a card object kind to CKA_CLASS.
func kindClass(k cards.Kind) uint64 {
	switch k {
	case cards.KindCertificate:
		return CKO_CERTIFICATE
	case cards.KindPublicKey:
		return CKO_PUBLIC_KEY
	case cards.KindPrivateKey:
		return CKO_PRIVATE_KEY
	default:
		return CKO_DATA
	}
}

func ulongs(vs ...uint64) []byte {
	var b []byte
	for _, v := range vs {
		b = append(b, EncodeULong(v)...)
	}
	return b
}

// tokenAttrs computes the attributes of a token object. mechs are the mechanisms the
// key allows (CKA_ALLOWED_MECHANISMS); cert is the certificate sharing the key's CKA_ID,
// if any (for CKA_SUBJECT of keys).
func tokenAttrs(o cards.Object, serial string, mechs []uint64, certSubject []byte) attrSet {
	a := attrSet{v: map[uint64][]byte{}, sensitive: map[uint64]bool{}}
	v := a.v
	v[CKA_CLASS] = EncodeULong(kindClass(o.Kind))
	v[CKA_TOKEN] = ckBool(true)
	v[CKA_PRIVATE] = ckBool(o.Private)
	v[CKA_LABEL] = []byte(o.Label)
	v[CKA_MODIFIABLE] = ckBool(o.Modifiable)
	v[CKA_COPYABLE] = ckBool(false)
	v[CKA_DESTROYABLE] = ckBool(o.Destroyable)
	v[CKA_UNIQUE_ID] = []byte(serial + "/" + o.Handle)
	switch o.Kind {
	case cards.KindData:
		v[CKA_APPLICATION] = []byte(o.App)
		v[CKA_OBJECT_ID] = append([]byte{}, o.OID...)
		v[CKA_VALUE] = o.Value
	case cards.KindCertificate:
		v[CKA_ID] = o.ID
		v[CKA_CERTIFICATE_TYPE] = EncodeULong(CKC_X_509)
		v[CKA_TRUSTED] = ckBool(false)
		v[CKA_CERTIFICATE_CATEGORY] = EncodeULong(CK_CERTIFICATE_CATEGORY_TOKEN_USER)
		v[CKA_JAVA_MIDP_SECURITY_DOMAIN] = EncodeULong(CK_SECURITY_DOMAIN_UNSPECIFIED)
		v[CKA_URL] = []byte{}
		v[CKA_HASH_OF_SUBJECT_PUBLIC_KEY] = []byte{}
		v[CKA_HASH_OF_ISSUER_PUBLIC_KEY] = []byte{}
		v[CKA_NAME_HASH_ALGORITHM] = EncodeULong(CKM_SHA_1)
		v[CKA_VALUE] = o.Cert
		sum := sha1.Sum(o.Cert)
		v[CKA_CHECK_VALUE] = sum[:3]
		v[CKA_SUBJECT], v[CKA_ISSUER], v[CKA_SERIAL_NUMBER] = []byte{}, []byte{}, []byte{}
		v[CKA_START_DATE], v[CKA_END_DATE] = []byte{}, []byte{}
		if c, err := cert.Parse(o.Cert); err == nil {
			v[CKA_SUBJECT] = c.RawSubject
			v[CKA_ISSUER] = c.RawIssuer
			v[CKA_SERIAL_NUMBER] = c.RawSerial // as encoded in the certificate
			v[CKA_START_DATE] = ckDate(c.NotBefore)
			v[CKA_END_DATE] = ckDate(c.NotAfter)
		}
	case cards.KindPublicKey, cards.KindPrivateKey:
		k := o.Key
		if k == nil {
			k = &cards.KeyInfo{}
		}
		v[CKA_ID] = o.ID
		v[CKA_KEY_TYPE] = EncodeULong(keyType(k.Alg))
		v[CKA_START_DATE], v[CKA_END_DATE] = []byte{}, []byte{}
		v[CKA_DERIVE] = ckBool(k.Derive)
		v[CKA_LOCAL] = ckBool(k.Local)
		if k.Local {
			v[CKA_KEY_GEN_MECHANISM] = EncodeULong(keyGenMech(k.Alg))
		} else {
			v[CKA_KEY_GEN_MECHANISM] = EncodeULong(CK_UNAVAILABLE_INFORMATION)
		}
		v[CKA_ALLOWED_MECHANISMS] = ulongs(mechs...)
		if certSubject != nil {
			v[CKA_SUBJECT] = certSubject
		} else {
			v[CKA_SUBJECT] = []byte{}
		}
		if spki, err := cert.MarshalPublicKey(k.Public); err == nil {
			v[CKA_PUBLIC_KEY_INFO] = spki
		} else {
			v[CKA_PUBLIC_KEY_INFO] = []byte{}
		}
		isRSA := k.Alg == cards.AlgRSA
		if isRSA {
			if pub, ok := k.Public.(*rsa.PublicKey); ok {
				v[CKA_MODULUS] = pub.N.Bytes()
				v[CKA_PUBLIC_EXPONENT] = big.NewInt(int64(pub.E)).Bytes()
				v[CKA_MODULUS_BITS] = EncodeULong(uint64(pub.N.BitLen()))
			} else if k.Bits > 0 {
				v[CKA_MODULUS_BITS] = EncodeULong(uint64(k.Bits))
			}
		} else {
			v[CKA_EC_PARAMS] = ecParams(k.Alg)
		}
		if o.Kind == cards.KindPublicKey {
			v[CKA_ENCRYPT] = ckBool(isRSA && k.Decrypt)
			v[CKA_VERIFY] = ckBool(k.Sign)
			v[CKA_VERIFY_RECOVER] = ckBool(isRSA && k.Sign)
			v[CKA_WRAP] = ckBool(false)
			v[CKA_TRUSTED] = ckBool(false)
			if !isRSA {
				if pt := ecPoint(k); pt != nil {
					v[CKA_EC_POINT] = pt
				}
			}
		} else {
			v[CKA_SENSITIVE] = ckBool(true)
			v[CKA_ALWAYS_SENSITIVE] = ckBool(true)
			v[CKA_EXTRACTABLE] = ckBool(false)
			v[CKA_NEVER_EXTRACTABLE] = ckBool(true)
			v[CKA_DECRYPT] = ckBool(isRSA && k.Decrypt)
			v[CKA_SIGN] = ckBool(k.Sign)
			v[CKA_SIGN_RECOVER] = ckBool(isRSA && k.Sign)
			v[CKA_UNWRAP] = ckBool(false)
			v[CKA_WRAP_WITH_TRUSTED] = ckBool(false)
			v[CKA_ALWAYS_AUTHENTICATE] = ckBool(k.AlwaysAuth)
			if isRSA {
				for _, t := range []uint64{CKA_PRIVATE_EXPONENT, CKA_PRIME_1, CKA_PRIME_2, CKA_EXPONENT_1, CKA_EXPONENT_2, CKA_COEFFICIENT} {
					a.sensitive[t] = true
				}
			} else {
				a.sensitive[CKA_VALUE] = true
			}
		}
	}
	return a
}

// ecPoint is CKA_EC_POINT: the encoded point wrapped in a DER OCTET STRING.
func ecPoint(k *cards.KeyInfo) []byte {
	pt := k.ECPoint
	if pt == nil {
		switch p := k.Public.(type) {
		case *ecdsa.PublicKey:
			if e, err := p.ECDH(); err == nil {
				pt = e.Bytes()
			}
		case ed25519.PublicKey:
			pt = []byte(p)
		case *ecdh.PublicKey:
			pt = p.Bytes()
		}
	}
	if pt == nil {
		return nil
	}
	b, _ := asn1.Marshal(pt)
	return b
}

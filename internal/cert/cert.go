package cert

import (
	"crypto"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/asn1"
	"errors"
	"fmt"
	"math/big"
	"time"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// Cert is what Parse reads of a certificate. The Raw fields are slices of the input.
type Cert struct {
	Raw        []byte // the Certificate SEQUENCE, without what followed it
	RawTBS     []byte // tbsCertificate, the signed part
	RawSerial  []byte // serialNumber as encoded: INTEGER tag, length and value
	RawIssuer  []byte // issuer Name, the whole SEQUENCE
	RawSubject []byte // subject Name, the whole SEQUENCE
	RawSPKI    []byte // subjectPublicKeyInfo, the whole SEQUENCE

	NotBefore, NotAfter time.Time // zero when the field does not read as a UTCTime or GeneralizedTime

	IsCA bool // basicConstraints with cA set

	// PublicKey is *rsa.PublicKey, *ecdsa.PublicKey, ed25519.PublicKey or
	// *ecdh.PublicKey (X25519); nil for another algorithm or an encoding we refuse.
	PublicKey crypto.PublicKey

	sigAlg    asn1.ObjectIdentifier
	signature []byte
}

// ErrMalformed is wrapped by every Parse error: the certificate's structure is not sound.
var ErrMalformed = errors.New("cert: malformed certificate")

// ErrSignature is wrapped by CheckSignatureFrom's errors.
var ErrSignature = errors.New("cert: signature does not verify")

// Object identifiers (RFC 3279, RFC 4055, RFC 5480, RFC 5758, RFC 8410).
var (
	oidRSA        = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 1}
	oidRSASHA256  = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 11}
	oidRSASHA384  = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 12}
	oidRSASHA512  = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 13}
	oidEC         = asn1.ObjectIdentifier{1, 2, 840, 10045, 2, 1}
	oidECSHA256   = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 2}
	oidECSHA384   = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 3}
	oidECSHA512   = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 4}
	oidP256       = asn1.ObjectIdentifier{1, 2, 840, 10045, 3, 1, 7}
	oidP384       = asn1.ObjectIdentifier{1, 3, 132, 0, 34}
	oidP521       = asn1.ObjectIdentifier{1, 3, 132, 0, 35}
	oidX25519     = asn1.ObjectIdentifier{1, 3, 101, 110}
	oidEd25519    = asn1.ObjectIdentifier{1, 3, 101, 112}
	oidBasicConst = asn1.ObjectIdentifier{2, 5, 29, 19}
)

// maxRSABits bounds the modulus Parse accepts; no card holds a larger key.
const maxRSABits = 16384

// Parse reads a DER certificate. Bytes after the certificate are ignored (Raw tells where
// it ends). It fails, wrapping ErrMalformed, only when the fields it reads are not where
// RFC 5280 puts them; see the package documentation for what it leaves empty instead.
func Parse(der []byte) (*Cert, error) {
	in := cryptobyte.String(der)
	var whole, outer, body, tbs, rest cryptobyte.String
	if !in.ReadASN1Element(&whole, cbasn1.SEQUENCE) {
		return nil, malformed("not a SEQUENCE")
	}
	c := &Cert{Raw: whole}
	outer = whole
	if !outer.ReadASN1(&body, cbasn1.SEQUENCE) || !body.ReadASN1Element(&tbs, cbasn1.SEQUENCE) {
		return nil, malformed("no tbsCertificate")
	}
	c.RawTBS = tbs
	var algID cryptobyte.String
	var sig asn1.BitString
	if !body.ReadASN1(&algID, cbasn1.SEQUENCE) || !algID.ReadASN1ObjectIdentifier(&c.sigAlg) {
		return nil, malformed("no signatureAlgorithm")
	}
	if !body.ReadASN1BitString(&sig) || sig.BitLength%8 != 0 {
		return nil, malformed("no signatureValue")
	}
	c.signature = sig.Bytes

	if !tbs.ReadASN1(&rest, cbasn1.SEQUENCE) {
		return nil, malformed("tbsCertificate")
	}
	var serial, issuer, validity, subject, spki cryptobyte.String
	switch {
	case !rest.SkipOptionalASN1(cbasn1.Tag(0).Constructed().ContextSpecific()):
		return nil, malformed("version")
	case !rest.ReadASN1Element(&serial, cbasn1.INTEGER) || len(serial) < 3:
		return nil, malformed("serialNumber")
	case !rest.SkipASN1(cbasn1.SEQUENCE):
		return nil, malformed("signature")
	case !rest.ReadASN1Element(&issuer, cbasn1.SEQUENCE):
		return nil, malformed("issuer")
	case !rest.ReadASN1(&validity, cbasn1.SEQUENCE):
		return nil, malformed("validity")
	case !rest.ReadASN1Element(&subject, cbasn1.SEQUENCE):
		return nil, malformed("subject")
	case !rest.ReadASN1Element(&spki, cbasn1.SEQUENCE):
		return nil, malformed("subjectPublicKeyInfo")
	}
	c.RawSerial, c.RawIssuer, c.RawSubject, c.RawSPKI = serial, issuer, subject, spki
	c.NotBefore = readTime(&validity)
	c.NotAfter = readTime(&validity)
	c.PublicKey = ParsePublicKey(spki)

	// issuerUniqueID [1] and subjectUniqueID [2] (IMPLICIT BIT STRING), then extensions
	// [3]. A fault from here on leaves IsCA false and fails nothing.
	var exts cryptobyte.String
	var present bool
	if rest.SkipOptionalASN1(cbasn1.Tag(1).ContextSpecific()) &&
		rest.SkipOptionalASN1(cbasn1.Tag(2).ContextSpecific()) &&
		rest.ReadOptionalASN1(&exts, &present, cbasn1.Tag(3).Constructed().ContextSpecific()) && present {
		c.IsCA = readIsCA(exts)
	}
	return c, nil
}

func malformed(what string) error {
	return fmt.Errorf("%w: %s", ErrMalformed, what)
}

// readTime reads the next Time of a Validity; zero when it is neither UTCTime nor
// GeneralizedTime or does not parse (the element is still consumed).
func readTime(s *cryptobyte.String) time.Time {
	var t time.Time
	var el cryptobyte.String
	var tag cbasn1.Tag
	if !s.ReadAnyASN1Element(&el, &tag) {
		return time.Time{}
	}
	switch tag {
	case cbasn1.UTCTime:
		if !el.ReadASN1UTCTime(&t) {
			return time.Time{}
		}
	case cbasn1.GeneralizedTime:
		if !el.ReadASN1GeneralizedTime(&t) {
			return time.Time{}
		}
	}
	return t
}

// readIsCA looks for basicConstraints in an Extensions field; false when it is absent or
// does not parse. Other extensions are not read, so a fault in one costs nothing.
func readIsCA(exts cryptobyte.String) bool {
	var seq cryptobyte.String
	if !exts.ReadASN1(&seq, cbasn1.SEQUENCE) {
		return false
	}
	for !seq.Empty() {
		var ext, value cryptobyte.String
		var oid asn1.ObjectIdentifier
		if !seq.ReadASN1(&ext, cbasn1.SEQUENCE) || !ext.ReadASN1ObjectIdentifier(&oid) {
			return false
		}
		if !oid.Equal(oidBasicConst) {
			continue
		}
		var critical, ca bool
		var bc cryptobyte.String
		if !readOptionalBool(&ext, &critical) || !ext.ReadASN1(&value, cbasn1.OCTET_STRING) ||
			!value.ReadASN1(&bc, cbasn1.SEQUENCE) || !readOptionalBool(&bc, &ca) {
			return false
		}
		return ca
	}
	return false
}

// readOptionalBool reads a BOOLEAN DEFAULT FALSE; false when one is there but does not read.
func readOptionalBool(s *cryptobyte.String, out *bool) bool {
	*out = false
	if !s.PeekASN1Tag(cbasn1.BOOLEAN) {
		return true
	}
	return s.ReadASN1Boolean(out)
}

// ParsePublicKey reads a DER SubjectPublicKeyInfo; nil for an algorithm it does not know
// (see Cert.PublicKey) or a key that does not read.
func ParsePublicKey(spki []byte) crypto.PublicKey {
	in := cryptobyte.String(spki)
	var info, algID cryptobyte.String
	var oid asn1.ObjectIdentifier
	var bits asn1.BitString
	if !in.ReadASN1(&info, cbasn1.SEQUENCE) || !info.ReadASN1(&algID, cbasn1.SEQUENCE) ||
		!algID.ReadASN1ObjectIdentifier(&oid) || !info.ReadASN1BitString(&bits) ||
		bits.BitLength%8 != 0 {
		return nil
	}
	key := bits.Bytes
	switch {
	case oid.Equal(oidRSA):
		// Parameters are NULL by RFC 3279; absent ones are tolerated.
		if k := parseRSA(key); k != nil {
			return k // not a nil *rsa.PublicKey in a non-nil interface
		}
		return nil
	case oid.Equal(oidEC):
		var curveOID asn1.ObjectIdentifier
		if !algID.ReadASN1ObjectIdentifier(&curveOID) {
			return nil // implicit or specified curves: not on any card we serve
		}
		curve := curveOf(curveOID)
		if curve == nil {
			return nil
		}
		pub, err := ecdsa.ParseUncompressedPublicKey(curve, key)
		if err != nil {
			return nil
		}
		return pub
	case oid.Equal(oidEd25519):
		if !algID.Empty() || len(key) != ed25519.PublicKeySize {
			return nil
		}
		return ed25519.PublicKey(append([]byte(nil), key...))
	case oid.Equal(oidX25519):
		if !algID.Empty() {
			return nil
		}
		pub, err := ecdh.X25519().NewPublicKey(key)
		if err != nil {
			return nil
		}
		return pub
	}
	return nil
}

func parseRSA(key []byte) *rsa.PublicKey {
	in := cryptobyte.String(key)
	var seq cryptobyte.String
	n := new(big.Int)
	var e int64
	if !in.ReadASN1(&seq, cbasn1.SEQUENCE) || !in.Empty() ||
		!seq.ReadASN1Integer(n) || !seq.ReadASN1Integer(&e) || !seq.Empty() {
		return nil
	}
	if n.Sign() <= 0 || n.BitLen() > maxRSABits || e < 3 || e > 1<<31-1 || e&1 == 0 {
		return nil
	}
	return &rsa.PublicKey{N: n, E: int(e)}
}

func curveOf(oid asn1.ObjectIdentifier) elliptic.Curve {
	switch {
	case oid.Equal(oidP256):
		return elliptic.P256()
	case oid.Equal(oidP384):
		return elliptic.P384()
	case oid.Equal(oidP521):
		return elliptic.P521()
	}
	return nil
}

func curveOID(c elliptic.Curve) asn1.ObjectIdentifier {
	switch c {
	case elliptic.P256():
		return oidP256
	case elliptic.P384():
		return oidP384
	case elliptic.P521():
		return oidP521
	}
	return nil
}

// CheckSignatureFrom tells whether the key pub signed c: nil when it did, an error
// wrapping ErrSignature when it did not or the algorithm is not one we check.
func (c *Cert) CheckSignatureFrom(pub crypto.PublicKey) error {
	var h crypto.Hash
	isRSA := false
	switch {
	case c.sigAlg.Equal(oidRSASHA256):
		h, isRSA = crypto.SHA256, true
	case c.sigAlg.Equal(oidRSASHA384):
		h, isRSA = crypto.SHA384, true
	case c.sigAlg.Equal(oidRSASHA512):
		h, isRSA = crypto.SHA512, true
	case c.sigAlg.Equal(oidECSHA256):
		h = crypto.SHA256
	case c.sigAlg.Equal(oidECSHA384):
		h = crypto.SHA384
	case c.sigAlg.Equal(oidECSHA512):
		h = crypto.SHA512
	case c.sigAlg.Equal(oidEd25519):
		if k, ok := pub.(ed25519.PublicKey); ok && len(k) == ed25519.PublicKeySize && ed25519.Verify(k, c.RawTBS, c.signature) {
			return nil
		}
		return ErrSignature
	default:
		return fmt.Errorf("%w: signature algorithm %v not checked", ErrSignature, c.sigAlg)
	}
	d := h.New()
	d.Write(c.RawTBS)
	digest := d.Sum(nil)
	switch k := pub.(type) {
	case *rsa.PublicKey:
		if isRSA && rsa.VerifyPKCS1v15(k, h, digest, c.signature) == nil {
			return nil
		}
	case *ecdsa.PublicKey:
		if !isRSA && ecdsa.VerifyASN1(k, digest, c.signature) {
			return nil
		}
	}
	return ErrSignature
}

// MarshalPublicKey writes pub as a DER SubjectPublicKeyInfo: *rsa.PublicKey,
// *ecdsa.PublicKey, ed25519.PublicKey, or *ecdh.PublicKey on X25519, P-256, P-384 or P-521.
func MarshalPublicKey(pub crypto.PublicKey) ([]byte, error) {
	var oid, params asn1.ObjectIdentifier
	var key []byte
	nullParams := false
	switch k := pub.(type) {
	case *rsa.PublicKey:
		if k == nil || k.N == nil || k.N.Sign() <= 0 || k.E <= 0 {
			return nil, errors.New("cert: invalid RSA public key")
		}
		var b cryptobyte.Builder
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddASN1BigInt(k.N)
			b.AddASN1Int64(int64(k.E))
		})
		var err error
		if key, err = b.Bytes(); err != nil {
			return nil, err
		}
		oid, nullParams = oidRSA, true
	case *ecdsa.PublicKey:
		if k == nil {
			return nil, errors.New("cert: nil EC public key")
		}
		if params = curveOID(k.Curve); params == nil {
			return nil, errors.New("cert: unsupported curve")
		}
		var err error
		if key, err = k.Bytes(); err != nil {
			return nil, err
		}
		oid = oidEC
	case ed25519.PublicKey:
		if len(k) != ed25519.PublicKeySize {
			return nil, errors.New("cert: invalid Ed25519 public key")
		}
		oid, key = oidEd25519, k
	case *ecdh.PublicKey:
		if k == nil {
			return nil, errors.New("cert: nil ECDH public key")
		}
		switch k.Curve() {
		case ecdh.X25519():
			oid = oidX25519
		case ecdh.P256():
			oid, params = oidEC, oidP256
		case ecdh.P384():
			oid, params = oidEC, oidP384
		case ecdh.P521():
			oid, params = oidEC, oidP521
		default:
			return nil, errors.New("cert: unsupported curve")
		}
		key = k.Bytes()
	default:
		return nil, errors.New("cert: unsupported public key type")
	}
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddASN1ObjectIdentifier(oid)
			if params != nil {
				b.AddASN1ObjectIdentifier(params)
			}
			if nullParams {
				b.AddASN1NULL()
			}
		})
		b.AddASN1BitString(key)
	})
	return b.Bytes()
}

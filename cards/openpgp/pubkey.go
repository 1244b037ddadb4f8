package openpgp

import (
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha1"
	"encoding/binary"
	"fmt"
	"math/big"

	"github.com/p11-card/p11-card/apdu"
	"github.com/p11-card/p11-card/cards"
)

// Public key template tags inside 7F49 (spec 3.4 §7.2.14).
const (
	pkModulus  apdu.Tag = 0x81
	pkExponent apdu.Tag = 0x82
	pkPoint    apdu.Tag = 0x86
)

// ParsePublicKey decodes a public key template 7F49 (with or without its outer tag) for a
// key with attributes attr and returns the KeyInfo fields it determines.
func ParsePublicKey(b []byte, attr AlgoAttr) (*cards.KeyInfo, error) {
	if v, ok, err := apdu.Find(b, doPubKey); err == nil && ok {
		b = v
	}
	all, err := apdu.ParseAll(b)
	if err != nil {
		return nil, fmt.Errorf("%w: openpgp: public key: %v", cards.ErrBadCard, err)
	}
	get := func(t apdu.Tag) []byte {
		for _, o := range all {
			if o.Tag == t {
				return o.Value
			}
		}
		return nil
	}
	ki := &cards.KeyInfo{Alg: attr.Alg, Bits: attr.Bits}
	switch {
	case attr.Alg == cards.AlgRSA:
		n, e := get(pkModulus), get(pkExponent)
		if len(n) == 0 || len(e) == 0 || len(e) > 8 || len(n) > 2048 {
			return nil, fmt.Errorf("%w: openpgp: RSA public key without modulus or exponent", cards.ErrBadCard)
		}
		N := new(big.Int).SetBytes(n)
		E := new(big.Int).SetBytes(e)
		if !E.IsInt64() || E.Int64() < 3 || E.Int64() > 1<<31-1 || N.Sign() == 0 {
			return nil, fmt.Errorf("%w: openpgp: RSA exponent out of range", cards.ErrBadCard)
		}
		ki.Public = &rsa.PublicKey{N: N, E: int(E.Int64())}
		ki.Bits = N.BitLen()
	case attr.Alg == cards.AlgEd25519 || attr.Alg == cards.AlgX25519:
		p := get(pkPoint)
		if len(p) == 33 && p[0] == 0x40 { // native-point prefix some cards keep
			p = p[1:]
		}
		if len(p) != 32 {
			return nil, fmt.Errorf("%w: openpgp: %s point of %d bytes", cards.ErrBadCard, attr.Alg, len(p))
		}
		ki.ECPoint = clone(p)
		if attr.Alg == cards.AlgEd25519 {
			ki.Public = ed25519.PublicKey(clone(p))
		} else {
			pk, err := ecdh.X25519().NewPublicKey(p)
			if err != nil {
				return nil, fmt.Errorf("%w: openpgp: X25519 point: %v", cards.ErrBadCard, err)
			}
			ki.Public = pk
		}
	case attr.Alg.IsEC():
		p := get(pkPoint)
		cl := coordLen(attr.Alg)
		if len(p) != 1+2*cl || p[0] != 0x04 {
			return nil, fmt.Errorf("%w: openpgp: %s point of %d bytes", cards.ErrBadCard, attr.Alg, len(p))
		}
		ki.ECPoint = clone(p)
		if c := goCurve(attr.Alg); c != nil {
			pub, err := ecdsa.ParseUncompressedPublicKey(c, p)
			if err != nil {
				return nil, fmt.Errorf("%w: openpgp: %s point not on the curve", cards.ErrBadCard, attr.Alg)
			}
			ki.Public = pub
		}
	default:
		return nil, fmt.Errorf("%w: openpgp: algorithm %02X", cards.ErrNotSupported, attr.ID)
	}
	return ki, nil
}

func goCurve(a cards.KeyAlg) elliptic.Curve {
	switch a {
	case cards.AlgECP256:
		return elliptic.P256()
	case cards.AlgECP384:
		return elliptic.P384()
	case cards.AlgECP521:
		return elliptic.P521()
	}
	return nil
}

// Fingerprint computes the OpenPGP v4 fingerprint (RFC 4880 §12.2; RFC 6637 §9, §11 for
// ECC) of a card key with creation time created. The card stores it (C7–C9) so GnuPG and
// others recognise the key.
func Fingerprint(ki *cards.KeyInfo, attr AlgoAttr, created uint32) ([]byte, error) {
	body := []byte{4, byte(created >> 24), byte(created >> 16), byte(created >> 8), byte(created)}
	switch attr.ID {
	case algoRSA:
		pub, ok := ki.Public.(*rsa.PublicKey)
		if !ok {
			return nil, fmt.Errorf("openpgp: fingerprint: no RSA public key")
		}
		body = append(body, algoRSA)
		body = appendMPI(body, pub.N.Bytes())
		body = appendMPI(body, big.NewInt(int64(pub.E)).Bytes())
	case algoECDSA, algoEdDSA, algoECDH:
		if len(ki.ECPoint) == 0 {
			return nil, fmt.Errorf("openpgp: fingerprint: no EC point")
		}
		body = append(body, attr.ID, byte(len(attr.OID)))
		body = append(body, attr.OID...)
		pt := ki.ECPoint
		if attr.Alg == cards.AlgEd25519 || attr.Alg == cards.AlgX25519 {
			pt = append([]byte{0x40}, pt...)
		}
		body = appendMPI(body, pt)
		if attr.ID == algoECDH {
			h, s := kdfParams(attr.Alg)
			body = append(body, 3, 1, h, s)
		}
	default:
		return nil, fmt.Errorf("openpgp: fingerprint: algorithm %02X", attr.ID)
	}
	h := sha1.New()
	var hdr [3]byte
	hdr[0] = 0x99
	binary.BigEndian.PutUint16(hdr[1:], uint16(len(body)))
	h.Write(hdr[:])
	h.Write(body)
	return h.Sum(nil), nil
}

// kdfParams are the hash and key-wrap algorithms of an ECDH key (RFC 6637 §9 defaults).
func kdfParams(a cards.KeyAlg) (hash, sym byte) {
	switch curveBits(a) {
	case 384:
		return 9, 9 // SHA384, AES256
	case 512, 521:
		return 10, 9 // SHA512, AES256
	}
	return 8, 7 // SHA256, AES128
}

func appendMPI(dst, v []byte) []byte {
	for len(v) > 0 && v[0] == 0 {
		v = v[1:]
	}
	bits := 0
	if len(v) > 0 {
		bits = (len(v)-1)*8 + bitLen8(v[0])
	}
	dst = append(dst, byte(bits>>8), byte(bits))
	return append(dst, v...)
}

func bitLen8(b byte) int {
	n := 0
	for b != 0 {
		n++
		b >>= 1
	}
	return n
}

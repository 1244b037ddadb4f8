package piv

import (
	"bytes"
	"compress/gzip"
	"crypto"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"errors"
	"fmt"
	"io"
	"math/big"

	"golang.org/x/crypto/cryptobyte"
	"golang.org/x/crypto/cryptobyte/asn1"

	"github.com/p11-card/p11-card/apdu"
	"github.com/p11-card/p11-card/cards"
)

// Every parser here reads card data: a hostile card is an attacker. They return errors
// wrapping cards.ErrBadCard, never panic, and bound what they allocate.

func badCard(format string, args ...any) error {
	return fmt.Errorf("%w: piv: "+format, append([]any{cards.ErrBadCard}, args...)...)
}

// maxCertSize bounds a decompressed certificate (a YubiKey object holds about 3 KB; a
// gzip bomb must not cost more than this).
const maxCertSize = 64 << 10

// unwrapObject takes the value of the data object template 53 that GET DATA answers
// (SP 800-73-4 part 2 §3.1.2); the discovery object answers 7E itself.
func unwrapObject(b []byte, tag apdu.Tag) ([]byte, error) {
	t, _, err := apdu.ParseTLV(b)
	if err != nil {
		return nil, badCard("data object: %v", err)
	}
	if t.Tag != tag {
		return nil, badCard("data object: tag %s, want %s", t.Tag, tag)
	}
	return t.Value, nil
}

// certContainer is a certificate data object's content (SP 800-73-4 part 1 appendix A,
// tables 10–15, 20–39): 70 certificate, 71 CertInfo, 72 MSCUID (optional), FE error
// detection code.
type certContainer struct {
	DER        []byte
	Compressed bool // CertInfo bit 0: the certificate is gzip-compressed on the card
}

// parseCertContainer decodes the value of tag 53 of a certificate object. An empty
// container (the object was deleted by writing nothing) gives DER nil, no error.
func parseCertContainer(b []byte) (certContainer, error) {
	var c certContainer
	if len(b) == 0 {
		return c, nil
	}
	tl, err := apdu.ParseAll(b)
	if err != nil {
		return c, badCard("certificate object: %v", err)
	}
	var cert []byte
	var info byte
	found := false
	for _, t := range tl {
		switch t.Tag {
		case 0x70:
			cert, found = t.Value, true
		case 0x71:
			if len(t.Value) > 0 {
				info = t.Value[0]
			}
		}
	}
	if !found {
		return c, badCard("certificate object without tag 70")
	}
	if len(cert) == 0 {
		return c, nil
	}
	if info&0x01 != 0 {
		zr, err := gzip.NewReader(bytes.NewReader(cert))
		if err != nil {
			return c, badCard("compressed certificate: %v", err)
		}
		out, err := io.ReadAll(io.LimitReader(zr, maxCertSize+1))
		if err != nil {
			return c, badCard("compressed certificate: %v", err)
		}
		if len(out) > maxCertSize {
			return c, badCard("compressed certificate over %d bytes", maxCertSize)
		}
		c.DER, c.Compressed = certOnly(out), true
		return c, nil
	}
	c.DER = append([]byte(nil), certOnly(cert)...)
	return c, nil
}

// certOnly is b up to the end of the DER SEQUENCE it starts with: a certificate is that
// one element, and bytes after it (cards that pad the container) would break the
// applications that parse CKA_VALUE. b as it is when it does not start with one.
func certOnly(b []byte) []byte {
	s := cryptobyte.String(b)
	var el cryptobyte.String
	if !s.ReadASN1Element(&el, asn1.SEQUENCE) {
		return b
	}
	return el
}

// encodeCertContainer builds the certificate object's value, compressed when compress.
func encodeCertContainer(der []byte, compress bool) ([]byte, error) {
	info := []byte{0x00}
	body := der
	if compress {
		var buf bytes.Buffer
		zw, err := gzip.NewWriterLevel(&buf, gzip.BestCompression)
		if err != nil {
			return nil, err
		}
		if _, err := zw.Write(der); err != nil {
			return nil, err
		}
		if err := zw.Close(); err != nil {
			return nil, err
		}
		body, info = buf.Bytes(), []byte{0x01}
	}
	out := apdu.AppendTLV(nil, 0x70, body)
	out = apdu.AppendTLV(out, 0x71, info)
	return apdu.AppendTLV(out, 0xFE), nil
}

// metadata is the answer to Yubico's GET METADATA (firmware 5.3).
type metadata struct {
	Alg         byte
	HasPolicy   bool
	PINPolicy   byte // 0 default, 1 never, 2 once, 3 always
	TouchPolicy byte // 0 default, 1 never, 2 always, 3 cached
	Origin      byte // 1 generated, 2 imported
	Public      []byte
	HasDefault  bool
	Default     bool
	HasRetries  bool
	MaxRetries  int
	Retries     int
}

func parseMetadata(b []byte) (metadata, error) {
	var m metadata
	tl, err := apdu.ParseAll(b)
	if err != nil {
		return m, badCard("metadata: %v", err)
	}
	for _, t := range tl {
		v := t.Value
		switch t.Tag {
		case 0x01:
			if len(v) != 1 {
				return m, badCard("metadata: algorithm of %d bytes", len(v))
			}
			m.Alg = v[0]
		case 0x02:
			if len(v) != 2 {
				return m, badCard("metadata: policy of %d bytes", len(v))
			}
			m.HasPolicy, m.PINPolicy, m.TouchPolicy = true, v[0], v[1]
		case 0x03:
			if len(v) != 1 {
				return m, badCard("metadata: origin of %d bytes", len(v))
			}
			m.Origin = v[0]
		case 0x04:
			m.Public = v
		case 0x05:
			if len(v) != 1 {
				return m, badCard("metadata: default flag of %d bytes", len(v))
			}
			m.HasDefault, m.Default = true, v[0] != 0
		case 0x06:
			if len(v) != 2 {
				return m, badCard("metadata: retries of %d bytes", len(v))
			}
			m.HasRetries, m.MaxRetries, m.Retries = true, int(v[0]), int(v[1])
		}
	}
	return m, nil
}

// publicKey is a card's public key: the Go key (nil when unknown) and, for EC and the
// Edwards/Montgomery curves, the encoded point.
type publicKey struct {
	Key   crypto.PublicKey
	Point []byte
}

// maxRSABytes bounds an RSA modulus from the card (4096 bits).
const maxRSABytes = 512

// parsePublicKey decodes the public key data objects (SP 800-73-4 part 2 §3.3.2 table 13:
// 81 modulus, 82 exponent; 86 point) for alg.
func parsePublicKey(alg byte, b []byte) (publicKey, error) {
	tl, err := apdu.ParseAll(b)
	if err != nil {
		return publicKey{}, badCard("public key: %v", err)
	}
	get := func(tag apdu.Tag) []byte {
		for _, t := range tl {
			if t.Tag == tag {
				return t.Value
			}
		}
		return nil
	}
	ka, bits, ok := algInfo(alg)
	if !ok {
		return publicKey{}, badCard("public key of unknown algorithm %02X", alg)
	}
	switch ka {
	case cards.AlgRSA:
		n, e := get(0x81), get(0x82)
		n = bytes.TrimLeft(n, "\x00")
		if len(n) == 0 || len(n) > maxRSABytes || len(e) == 0 || len(e) > 4 {
			return publicKey{}, badCard("RSA public key: modulus %d bytes, exponent %d bytes", len(n), len(e))
		}
		nb := new(big.Int).SetBytes(n)
		if nb.BitLen() != bits {
			return publicKey{}, badCard("RSA public key of %d bits for a %d-bit algorithm", nb.BitLen(), bits)
		}
		ev := 0
		for _, c := range e {
			ev = ev<<8 | int(c)
		}
		if ev < 3 || ev&1 == 0 {
			return publicKey{}, badCard("RSA public exponent %d", ev)
		}
		return publicKey{Key: &rsa.PublicKey{N: nb, E: ev}}, nil
	case cards.AlgECP256, cards.AlgECP384:
		p := get(0x86)
		curve := elliptic.P256()
		if ka == cards.AlgECP384 {
			curve = elliptic.P384()
		}
		pub, err := ecdsa.ParseUncompressedPublicKey(curve, p)
		if err != nil {
			return publicKey{}, badCard("EC public key: %v", err)
		}
		return publicKey{Key: pub, Point: append([]byte(nil), p...)}, nil
	case cards.AlgEd25519:
		p := get(0x86)
		if len(p) != ed25519.PublicKeySize {
			return publicKey{}, badCard("Ed25519 public key of %d bytes", len(p))
		}
		return publicKey{Key: ed25519.PublicKey(bytes.Clone(p)), Point: bytes.Clone(p)}, nil
	case cards.AlgX25519:
		p := get(0x86)
		pub, err := ecdh.X25519().NewPublicKey(p)
		if err != nil {
			return publicKey{}, badCard("X25519 public key: %v", err)
		}
		return publicKey{Key: pub, Point: bytes.Clone(p)}, nil
	}
	return publicKey{}, badCard("public key of algorithm %02X", alg)
}

// parseGenerated decodes GENERATE ASYMMETRIC KEY PAIR's answer: template 7F49 holding the
// public key (part 2 §3.3.2).
func parseGenerated(alg byte, b []byte) (publicKey, error) {
	v, err := unwrapObject(b, 0x7F49)
	if err != nil {
		return publicKey{}, err
	}
	return parsePublicKey(alg, v)
}

// chuid holds what we use of the Card Holder Unique Identifier (part 1 appendix A table 9).
type chuid struct {
	FASCN  []byte // 30
	GUID   []byte // 34, 16 bytes
	Expiry string // 35, YYYYMMDD
}

func parseCHUID(b []byte) (chuid, error) {
	var c chuid
	tl, err := apdu.ParseAll(b)
	if err != nil {
		return c, badCard("CHUID: %v", err)
	}
	for _, t := range tl {
		switch t.Tag {
		case 0x30:
			c.FASCN = bytes.Clone(t.Value)
		case 0x34:
			if len(t.Value) != 16 {
				return c, badCard("CHUID: GUID of %d bytes", len(t.Value))
			}
			c.GUID = bytes.Clone(t.Value)
		case 0x35:
			if len(t.Value) == 8 {
				c.Expiry = string(t.Value)
			}
		}
	}
	return c, nil
}

// discovery is the Discovery Object (part 1 §3.3.2, appendix A table 18): 7E { 4F AID,
// 5F2F PIN usage policy }.
type discovery struct {
	// Policy is the PIN usage policy's two bytes.
	Policy [2]byte
	// GlobalPIN: the card has a Global PIN (first byte bit 6, 0x20); GlobalPrimary: the
	// Global PIN is the primary PIN (second byte 0x20).
	GlobalPIN, GlobalPrimary bool
}

func parseDiscovery(b []byte) (discovery, error) {
	var d discovery
	v, err := unwrapObject(b, tagDiscovery)
	if err != nil {
		return d, err
	}
	p, ok, err := apdu.Find(v, 0x5F2F)
	if err != nil {
		return d, badCard("discovery: %v", err)
	}
	if !ok || len(p) < 2 {
		return d, badCard("discovery without PIN usage policy")
	}
	d.Policy = [2]byte{p[0], p[1]}
	d.GlobalPIN = p[0]&0x20 != 0
	d.GlobalPrimary = d.GlobalPIN && p[1] == 0x20
	return d, nil
}

// keyHistory is the Key History Object (part 1 appendix A table 19).
type keyHistory struct {
	OnCard, OffCard int    // C1, C2: retired keys with certificates on and off the card
	URL             string // F3
}

func parseKeyHistory(b []byte) (keyHistory, error) {
	var k keyHistory
	tl, err := apdu.ParseAll(b)
	if err != nil {
		return k, badCard("key history: %v", err)
	}
	for _, t := range tl {
		switch t.Tag {
		case 0xC1, 0xC2:
			if len(t.Value) != 1 || t.Value[0] > 20 {
				return k, badCard("key history: count % X", t.Value)
			}
			if t.Tag == 0xC1 {
				k.OnCard = int(t.Value[0])
			} else {
				k.OffCard = int(t.Value[0])
			}
		case 0xF3:
			k.URL = string(t.Value)
		}
	}
	return k, nil
}

// adminData is Yubico's admin data object (5FFF00): 80 { 81 flags, 82 salt, 83 time }.
type adminData struct {
	PUKBlocked    bool // flags bit 0x01
	MgmtProtected bool // flags bit 0x02: the management key is kept in the printed-info object
	Salt          []byte
}

func parseAdminData(b []byte) (adminData, error) {
	var a adminData
	v, ok, err := apdu.Find(b, 0x80)
	if err != nil {
		return a, badCard("admin data: %v", err)
	}
	if !ok {
		return a, badCard("admin data without tag 80")
	}
	tl, err := apdu.ParseAll(v)
	if err != nil {
		return a, badCard("admin data: %v", err)
	}
	for _, t := range tl {
		switch t.Tag {
		case 0x81:
			if len(t.Value) != 1 {
				return a, badCard("admin data: flags of %d bytes", len(t.Value))
			}
			a.PUKBlocked = t.Value[0]&0x01 != 0
			a.MgmtProtected = t.Value[0]&0x02 != 0
		case 0x82:
			a.Salt = bytes.Clone(t.Value)
		}
	}
	return a, nil
}

// parseProtectedMgmtKey takes the management key from the printed-info object as YubiKey
// tools store it: 88 { 89 key }.
func parseProtectedMgmtKey(b []byte) ([]byte, error) {
	v, ok, err := apdu.FindPath(b, 0x88, 0x89)
	if err != nil {
		return nil, badCard("printed information: %v", err)
	}
	if !ok {
		return nil, errNoProtectedKey
	}
	switch len(v) {
	case 16, 24, 32:
		return bytes.Clone(v), nil
	}
	return nil, badCard("protected management key of %d bytes", len(v))
}

var errNoProtectedKey = errors.New("piv: no protected management key")

// parseDynAuth takes the value of tag within the dynamic authentication template 7C.
func parseDynAuth(b []byte, tag apdu.Tag) ([]byte, error) {
	v, err := unwrapObject(b, tagDynAuth)
	if err != nil {
		return nil, err
	}
	r, ok, err := apdu.Find(v, tag)
	if err != nil {
		return nil, badCard("authentication template: %v", err)
	}
	if !ok {
		return nil, badCard("authentication template without tag %s", tag)
	}
	return r, nil
}

// ecdsaRaw converts an ECDSA-Sig-Value (DER SEQUENCE of two INTEGERs) to r‖s, each
// left-padded to size bytes.
func ecdsaRaw(der []byte, size int) ([]byte, error) {
	var r, s []byte
	in := cryptobyte.String(der)
	var seq cryptobyte.String
	if !in.ReadASN1(&seq, asn1.SEQUENCE) || !in.Empty() {
		return nil, badCard("ECDSA signature is not a DER sequence")
	}
	var rb, sb cryptobyte.String
	if !seq.ReadASN1(&rb, asn1.INTEGER) || !seq.ReadASN1(&sb, asn1.INTEGER) || !seq.Empty() {
		return nil, badCard("ECDSA signature: bad integers")
	}
	r, s = bytes.TrimLeft(rb, "\x00"), bytes.TrimLeft(sb, "\x00")
	if len(r) == 0 || len(s) == 0 || len(r) > size || len(s) > size || rb[0]&0x80 != 0 || sb[0]&0x80 != 0 {
		return nil, badCard("ECDSA signature: integers out of range")
	}
	out := make([]byte, 2*size)
	copy(out[size-len(r):size], r)
	copy(out[2*size-len(s):], s)
	return out, nil
}

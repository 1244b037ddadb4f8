package pgptest

import (
	"bytes"
	"crypto"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"fmt"
	"math/big"

	"github.com/p11-card/p11-card/apdu"
)

var curves = []struct {
	name string
	oid  []byte
}{
	{"p256", []byte{0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x03, 0x01, 0x07}},
	{"p384", []byte{0x2B, 0x81, 0x04, 0x00, 0x22}},
	{"p521", []byte{0x2B, 0x81, 0x04, 0x00, 0x23}},
	{"ed25519", []byte{0x2B, 0x06, 0x01, 0x04, 0x01, 0xDA, 0x47, 0x0F, 0x01}},
	{"x25519", []byte{0x2B, 0x06, 0x01, 0x04, 0x01, 0x97, 0x55, 0x01, 0x05, 0x01}},
}

func curveOf(oid []byte) (string, bool) {
	for _, c := range curves {
		if bytes.Equal(c.oid, oid) {
			return c.name, true
		}
	}
	return "", false
}

func curveName(oid []byte) string { n, _ := curveOf(oid); return n }

func ellipticOf(name string) elliptic.Curve {
	switch name {
	case "p256":
		return elliptic.P256()
	case "p384":
		return elliptic.P384()
	case "p521":
		return elliptic.P521()
	}
	return nil
}

// slotOfCRT maps a control reference template to a key index.
func slotOfCRT(b []byte) (int, bool) {
	if len(b) < 2 {
		return 0, false
	}
	switch b[0] {
	case 0xB6:
		return 0, true
	case 0xB8:
		return 1, true
	case 0xA4:
		return 2, true
	}
	return 0, false
}

func (c *Card) privKey(i int) (crypto.PrivateKey, error) {
	der := c.st.Keys[i]
	if der == nil {
		return nil, errors.New("no key")
	}
	return x509.ParsePKCS8PrivateKey(der)
}

// pubTemplate encodes 7F49 for a private key.
func pubTemplate(k crypto.PrivateKey) []byte {
	switch p := k.(type) {
	case *rsa.PrivateKey:
		return tlv(0x7F49, tlv(0x81, p.N.Bytes()), tlv(0x82, big.NewInt(int64(p.E)).Bytes()))
	case *ecdsa.PrivateKey:
		b, _ := p.PublicKey.Bytes()
		return tlv(0x7F49, tlv(0x86, b))
	case ed25519.PrivateKey:
		return tlv(0x7F49, tlv(0x86, p.Public().(ed25519.PublicKey)))
	case *ecdh.PrivateKey:
		return tlv(0x7F49, tlv(0x86, p.PublicKey().Bytes()))
	}
	return nil
}

func (c *Card) newKey(i int) (crypto.PrivateKey, error) {
	a := c.st.Algo[i]
	if len(a) == 0 {
		return nil, errors.New("no attributes")
	}
	switch a[0] {
	case 0x01:
		bits := int(a[1])<<8 | int(a[2])
		return rsa.GenerateKey(rand.Reader, bits)
	case 0x12, 0x13, 0x16:
		name := curveName(trimOID(a[1:]))
		switch name {
		case "ed25519":
			_, k, err := ed25519.GenerateKey(rand.Reader)
			return k, err
		case "x25519":
			return ecdh.X25519().GenerateKey(rand.Reader)
		}
		if cv := ellipticOf(name); cv != nil {
			return ecdsa.GenerateKey(cv, rand.Reader)
		}
	}
	return nil, fmt.Errorf("unsupported attributes % X", a)
}

// cmdGenerate is GENERATE ASYMMETRIC KEY PAIR (spec 3.4 §7.2.14).
func (c *Card) cmdGenerate(cmd apdu.Command) apdu.Response {
	i, ok := slotOfCRT(cmd.Data)
	if !ok || cmd.P2 != 0 {
		return sw(apdu.SWWrongData)
	}
	switch cmd.P1 {
	case 0x81:
		k, err := c.privKey(i)
		if err != nil {
			return sw(apdu.SWRefDataNotFound)
		}
		return apdu.Response{Data: pubTemplate(k), SW: apdu.SWOK}
	case 0x80:
		if !c.vol.v83 {
			return sw(apdu.SWSecurityStatus)
		}
		k, err := c.newKey(i)
		if err != nil {
			return sw(apdu.SWWrongData)
		}
		der, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			return sw(apdu.SWUnknown)
		}
		c.st.Keys[i], c.st.KeyStatus[i] = der, 0x01
		if i == 0 {
			c.st.SigCounter = 0
		}
		c.st.dirty = true
		return apdu.Response{Data: pubTemplate(k), SW: apdu.SWOK}
	}
	return sw(apdu.SWIncorrectP1P2)
}

// cmdImport is PUT DATA odd with the extended header list (spec 3.4 §4.4.3.12).
func (c *Card) cmdImport(cmd apdu.Command) apdu.Response {
	if cmd.P1 != 0x3F || cmd.P2 != 0xFF {
		return sw(apdu.SWIncorrectP1P2)
	}
	if !c.vol.v83 {
		return sw(apdu.SWSecurityStatus)
	}
	ehl, ok, err := apdu.Find(cmd.Data, 0x4D)
	if err != nil || !ok {
		return sw(apdu.SWWrongData)
	}
	all, err := apdu.ParseAll(ehl)
	if err != nil || len(all) < 3 {
		return sw(apdu.SWWrongData)
	}
	var i int
	switch all[0].Tag {
	case 0xB6:
		i = 0
	case 0xB8:
		i = 1
	case 0xA4:
		i = 2
	default:
		return sw(apdu.SWWrongData)
	}
	var hdr, body []byte
	for _, t := range all[1:] {
		switch t.Tag {
		case 0x7F48:
			hdr = t.Value
		case 0x5F48:
			body = t.Value
		}
	}
	parts := map[apdu.Tag][]byte{}
	for len(hdr) > 0 {
		tag, n, rest, ok := tagLen(hdr)
		if !ok || n > len(body) {
			return sw(apdu.SWWrongData)
		}
		parts[tag] = body[:n]
		body, hdr = body[n:], rest
	}
	k, err := c.keyFromParts(i, parts)
	if err != nil {
		return sw(apdu.SWWrongData)
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return sw(apdu.SWWrongData)
	}
	c.st.Keys[i], c.st.KeyStatus[i] = der, 0x02
	if i == 0 {
		c.st.SigCounter = 0
	}
	c.st.dirty = true
	return sw(apdu.SWOK)
}

func (c *Card) keyFromParts(i int, p map[apdu.Tag][]byte) (crypto.PrivateKey, error) {
	a := c.st.Algo[i]
	switch a[0] {
	case 0x01:
		e := new(big.Int).SetBytes(p[0x91])
		P := new(big.Int).SetBytes(p[0x92])
		Q := new(big.Int).SetBytes(p[0x93])
		if !e.IsInt64() || P.Sign() == 0 || Q.Sign() == 0 {
			return nil, errors.New("bad RSA parts")
		}
		N := new(big.Int).Mul(P, Q)
		bits := int(a[1])<<8 | int(a[2])
		if N.BitLen() != bits {
			return nil, errors.New("modulus size")
		}
		phi := new(big.Int).Mul(new(big.Int).Sub(P, big.NewInt(1)), new(big.Int).Sub(Q, big.NewInt(1)))
		d := new(big.Int).ModInverse(e, phi)
		if d == nil {
			return nil, errors.New("bad exponent")
		}
		k := &rsa.PrivateKey{PublicKey: rsa.PublicKey{N: N, E: int(e.Int64())}, D: d, Primes: []*big.Int{P, Q}}
		if err := k.Validate(); err != nil {
			return nil, err
		}
		k.Precompute()
		return k, nil
	default:
		d := p[0x92]
		switch name := curveName(trimOID(a[1:])); name {
		case "ed25519":
			if len(d) != ed25519.SeedSize {
				return nil, errors.New("seed size")
			}
			return ed25519.NewKeyFromSeed(d), nil
		case "x25519":
			r := append([]byte(nil), d...)
			for x, y := 0, len(r)-1; x < y; x, y = x+1, y-1 {
				r[x], r[y] = r[y], r[x]
			}
			return ecdh.X25519().NewPrivateKey(r)
		default:
			cv := ellipticOf(name)
			if cv == nil {
				return nil, errors.New("curve")
			}
			return ecdsa.ParseRawPrivateKey(cv, d)
		}
	}
}

// sign computes the card's signature for slot i: RSA PKCS#1 v1.5 over the given DigestInfo,
// ECDSA r‖s over the given hash, pure Ed25519 over the message.
func (c *Card) sign(i int, data []byte) apdu.Response {
	k, err := c.privKey(i)
	if err != nil {
		return sw(apdu.SWRefDataNotFound)
	}
	switch p := k.(type) {
	case *rsa.PrivateKey:
		if len(data) > p.Size()-11 || len(data) == 0 {
			return sw(apdu.SWWrongLength)
		}
		s, err := rsa.SignPKCS1v15(nil, p, 0, data)
		if err != nil {
			return sw(apdu.SWWrongData)
		}
		return apdu.Response{Data: s, SW: apdu.SWOK}
	case *ecdsa.PrivateKey:
		r, s, err := ecdsa.Sign(rand.Reader, p, data)
		if err != nil {
			return sw(apdu.SWWrongData)
		}
		n := (p.Curve.Params().BitSize + 7) / 8
		out := make([]byte, 2*n)
		r.FillBytes(out[:n])
		s.FillBytes(out[n:])
		return apdu.Response{Data: out, SW: apdu.SWOK}
	case ed25519.PrivateKey:
		return apdu.Response{Data: ed25519.Sign(p, data), SW: apdu.SWOK}
	}
	return sw(apdu.SWConditions)
}

// cmdPSO is PERFORM SECURITY OPERATION: COMPUTE DIGITAL SIGNATURE (9E 9A) and DECIPHER
// (80 86) (spec 3.4 §7.2.10, §7.2.11).
func (c *Card) cmdPSO(cmd apdu.Command) apdu.Response {
	switch {
	case cmd.P1 == 0x9E && cmd.P2 == 0x9A:
		if !c.vol.v81 {
			return sw(apdu.SWSecurityStatus)
		}
		if c.st.Keys[0] == nil {
			return sw(apdu.SWRefDataNotFound)
		}
		r := c.sign(0, cmd.Data)
		if r.SW == apdu.SWOK {
			c.st.SigCounter++
			c.st.dirty = true
			if c.st.PWStatus1 == 0x00 {
				c.vol.v81 = false
			}
		}
		return r
	case cmd.P1 == 0x80 && cmd.P2 == 0x86:
		if !c.vol.v82 {
			return sw(apdu.SWSecurityStatus)
		}
		return c.decipher(cmd.Data)
	}
	return sw(apdu.SWIncorrectP1P2)
}

func (c *Card) decipher(data []byte) apdu.Response {
	k, err := c.privKey(1)
	if err != nil {
		return sw(apdu.SWRefDataNotFound)
	}
	switch p := k.(type) {
	case *rsa.PrivateKey:
		if len(data) != p.Size()+1 || data[0] != 0x00 {
			return sw(apdu.SWWrongData)
		}
		m, err := rsa.DecryptPKCS1v15(nil, p, data[1:])
		if err != nil {
			return sw(apdu.SWWrongData)
		}
		return apdu.Response{Data: m, SW: apdu.SWOK}
	case *ecdsa.PrivateKey, *ecdh.PrivateKey:
		pt, ok, err := apdu.FindPath(data, 0xA6, 0x7F49, 0x86)
		if err != nil || !ok {
			return sw(apdu.SWWrongData)
		}
		var priv *ecdh.PrivateKey
		if e, isEC := p.(*ecdsa.PrivateKey); isEC {
			if priv, err = e.ECDH(); err != nil {
				return sw(apdu.SWWrongData)
			}
		} else {
			priv = p.(*ecdh.PrivateKey)
			if len(pt) == 33 && pt[0] == 0x40 {
				pt = pt[1:]
			}
		}
		pub, err := priv.Curve().NewPublicKey(pt)
		if err != nil {
			return sw(apdu.SWWrongData)
		}
		z, err := priv.ECDH(pub)
		if err != nil {
			return sw(apdu.SWWrongData)
		}
		return apdu.Response{Data: z, SW: apdu.SWOK}
	}
	return sw(apdu.SWConditions)
}

// cmdInternalAuth is INTERNAL AUTHENTICATE with the AUT key (spec 3.4 §7.2.13).
func (c *Card) cmdInternalAuth(cmd apdu.Command) apdu.Response {
	if cmd.P1 != 0 || cmd.P2 != 0 {
		return sw(apdu.SWIncorrectP1P2)
	}
	if !c.vol.v82 {
		return sw(apdu.SWSecurityStatus)
	}
	if c.st.Keys[2] == nil {
		return sw(apdu.SWRefDataNotFound)
	}
	return c.sign(2, cmd.Data)
}

// PutKey places a private key in slot i (0 SIG, 1 DEC, 2 AUT) without APDUs, setting the
// algorithm attributes to match (test setup). Fingerprint and date stay as they are unless fpr
// is given.
func (c *Card) PutKey(i int, k crypto.PrivateKey, fpr []byte) error {
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return err
	}
	var attr []byte
	switch p := k.(type) {
	case *rsa.PrivateKey:
		attr = rsaAttr(p.N.BitLen(), 17)
		if c.opt.Mode != ModeYubiKey {
			attr = rsaAttr(p.N.BitLen(), 32)
		}
	case *ecdsa.PrivateKey:
		id := byte(0x13)
		if i == 1 {
			id = 0x12
		}
		for _, cv := range curves {
			if ellipticOf(cv.name) == p.Curve {
				attr = append([]byte{id}, cv.oid...)
			}
		}
	case ed25519.PrivateKey:
		attr = append([]byte{0x16}, curves[3].oid...)
	case *ecdh.PrivateKey:
		attr = append([]byte{0x12}, curves[4].oid...)
	}
	if attr == nil {
		return fmt.Errorf("pgptest: key type %T", k)
	}
	c.SetState(func(s *State) {
		s.Algo[i], s.Keys[i], s.KeyStatus[i] = attr, der, 0x02
		if fpr != nil {
			s.Fpr[i] = append([]byte(nil), fpr...)
		}
	})
	return nil
}

// PublicKey returns the public key in slot i, nil when empty.
func (c *Card) PublicKey(i int) crypto.PublicKey {
	c.mu.Lock()
	defer c.mu.Unlock()
	k, err := c.privKey(i)
	if err != nil {
		return nil
	}
	return k.(interface{ Public() crypto.PublicKey }).Public()
}

// tagLen reads one tag and BER length without a value (the 7F48 header list).
func tagLen(b []byte) (apdu.Tag, int, []byte, bool) {
	if len(b) == 0 {
		return 0, 0, nil, false
	}
	tag := apdu.Tag(b[0])
	i := 1
	if b[0]&0x1F == 0x1F {
		for {
			if i >= len(b) || i > 3 {
				return 0, 0, nil, false
			}
			tag = tag<<8 | apdu.Tag(b[i])
			i++
			if b[i-1]&0x80 == 0 {
				break
			}
		}
	}
	if i >= len(b) {
		return 0, 0, nil, false
	}
	l := int(b[i])
	i++
	if l&0x80 != 0 {
		k := l & 0x7F
		if k == 0 || k > 2 || i+k > len(b) {
			return 0, 0, nil, false
		}
		l = 0
		for _, c := range b[i : i+k] {
			l = l<<8 | int(c)
		}
		i += k
	}
	return tag, l, b[i:], true
}

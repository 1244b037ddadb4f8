package pgptest

import (
	"bytes"

	"github.com/p11-card/p11-card/apdu"
)

func tlv(t apdu.Tag, v ...[]byte) []byte { return apdu.TLVBytes(t, v...) }

func (c *Card) yk() bool { return c.opt.Mode == ModeYubiKey }

func (c *Card) v2() bool { return c.opt.Mode == ModeV2 }

func (c *Card) nkeys() int {
	if c.yk() {
		return 4
	}
	return 3
}

func (c *Card) aid() []byte {
	s := c.opt.Serial
	major, minor := byte(0x03), byte(0x04)
	if c.v2() {
		major, minor = 0x02, 0x01
	}
	return []byte{0xD2, 0x76, 0x00, 0x01, 0x24, 0x01, major, minor, 0x00, 0x06,
		byte(s >> 24), byte(s >> 16), byte(s >> 8), byte(s), 0x00, 0x00}
}

func (c *Card) extCaps() []byte {
	if c.yk() {
		// GET CHALLENGE, key import, PW status writable, private DOs, algorithm attributes
		// writable, KDF; challenge up to 0BFE, certificate up to 0800, special DO 00FF.
		return []byte{0x7D, 0x00, 0x0B, 0xFE, 0x08, 0x00, 0x00, 0xFF, 0x00, 0x00}
	}
	if c.v2() {
		// 2.x layout: GET CHALLENGE, key import, PW status writable, algorithm attributes
		// writable; challenge 00FF, certificate 0800, command and response 00FF.
		return []byte{0x74, 0x00, 0x00, 0xFF, 0x08, 0x00, 0x00, 0xFF, 0x00, 0xFF}
	}
	return []byte{0x7D, 0x00, 0x00, 0xFF, 0x08, 0x00, 0x00, 0xFF, 0x00, 0x00}
}

func (c *Card) pwStatus() []byte {
	return []byte{c.st.PWStatus1, c.st.PWMax, c.st.PWMax, c.st.PWMax,
		byte(c.st.PW1Tries), byte(c.st.RCTries), byte(c.st.PW3Tries)}
}

func (c *Card) concat(list [][]byte, n, size int) []byte {
	var out []byte
	for i := 0; i < n; i++ {
		v := list[i]
		if len(v) != size {
			v = make([]byte, size)
		}
		out = append(out, v...)
	}
	return out
}

func (c *Card) keyInfo() []byte {
	var out []byte
	refs := []byte{1, 2, 3, 0x81}
	for i := 0; i < c.nkeys(); i++ {
		out = append(out, refs[i], c.st.KeyStatus[i])
	}
	return out
}

func (c *Card) extLenInfo() []byte {
	return tlv(0x7F66, tlv(0x02, []byte{0x0B, 0xFE}), tlv(0x02, []byte{0x0B, 0xFE}))
}

// appData builds DO 6E: spec layout in ModeStrict; the YubiKey layout (fourth key, 7F66
// inside 73, UIF DOs) in ModeYubiKey.
func (c *Card) appData() []byte {
	s := &c.st.State
	var d []byte
	d = append(d, tlv(0xC0, c.extCaps())...)
	for i := 0; i < 3; i++ {
		d = append(d, tlv(0xC1+apdu.Tag(i), s.Algo[i])...)
	}
	if c.yk() {
		d = append(d, tlv(0xDA, s.Algo[3])...)
	}
	d = append(d, tlv(0xC4, c.pwStatus())...)
	d = append(d, tlv(0xC5, c.concat(s.Fpr[:], c.nkeys(), 20))...)
	d = append(d, tlv(0xC6, c.concat(s.CAFpr[:], 3, 20))...)
	d = append(d, tlv(0xCD, c.concat(s.Dates[:], c.nkeys(), 4))...)
	if !c.v2() {
		d = append(d, tlv(0xDE, c.keyInfo())...)
	}
	var out []byte
	out = append(out, tlv(0x4F, c.aid())...)
	out = append(out, tlv(0x5F52, c.historical())...)
	if c.yk() {
		d = append(d, c.extLenInfo()...)
		for i := 0; i < 4; i++ {
			d = append(d, tlv(0xD6+apdu.Tag(i), s.UIF[i])...)
		}
	}
	out = append(out, tlv(0x73, d)...)
	return tlv(0x6E, out)
}

func (c *Card) cardholder() []byte {
	s := &c.st.State
	return tlv(0x65, tlv(0x5B, s.Name), tlv(0x5F2D, s.Lang), tlv(0x5F35, s.Sex))
}

func (c *Card) cmdGetData(cmd apdu.Command) apdu.Response {
	tag := apdu.Tag(cmd.P1)<<8 | apdu.Tag(cmd.P2)
	s := &c.st.State
	ok := func(b []byte) apdu.Response { return apdu.Response{Data: b, SW: apdu.SWOK} }
	switch tag {
	case 0x6E:
		return ok(c.appData())
	case 0x4F:
		return ok(c.aid())
	case 0x5F52:
		return ok(c.historical())
	case 0x7F66:
		return ok(c.extLenInfo())
	case 0x65:
		return ok(c.cardholder())
	case 0x5B:
		return ok(s.Name)
	case 0x5F2D:
		return ok(s.Lang)
	case 0x5F35:
		return ok(s.Sex)
	case 0x5E:
		return ok(s.Login)
	case 0x5F50:
		return ok(s.URL)
	case 0x7A:
		n := s.SigCounter
		return ok(tlv(0x7A, tlv(0x93, []byte{byte(n >> 16), byte(n >> 8), byte(n)})))
	case 0xC0:
		return ok(c.extCaps())
	case 0xC1, 0xC2, 0xC3:
		return ok(s.Algo[tag-0xC1])
	case 0xDA:
		if c.yk() {
			return ok(s.Algo[3])
		}
	case 0xC4:
		return ok(c.pwStatus())
	case 0xC5:
		return ok(c.concat(s.Fpr[:], c.nkeys(), 20))
	case 0xC6:
		return ok(c.concat(s.CAFpr[:], 3, 20))
	case 0xCD:
		return ok(c.concat(s.Dates[:], c.nkeys(), 4))
	case 0xDE:
		if !c.v2() {
			return ok(c.keyInfo())
		}
	case 0xD6, 0xD7, 0xD8, 0xD9:
		if c.yk() {
			return ok(s.UIF[tag-0xD6])
		}
	case 0xF9:
		if !c.v2() {
			return ok(s.KDF) // the content, without the F9 tag, as GnuPG expects
		}
	case 0x7F21:
		return ok(s.Certs[c.vol.certOcc])
	case 0x0101, 0x0102:
		return ok(s.Private[tag-0x0101])
	case 0x0103:
		if !c.vol.v82 {
			return sw(apdu.SWSecurityStatus)
		}
		return ok(s.Private[2])
	case 0x0104:
		if !c.vol.v83 {
			return sw(apdu.SWSecurityStatus)
		}
		return ok(s.Private[3])
	}
	return sw(apdu.SWRefDataNotFound)
}

var selectCertData = []byte{0x60, 0x04, 0x5C, 0x02, 0x7F, 0x21}

// cmdSelectData is SELECT DATA (spec 3.4 §7.2.5) for the three certificates.
func (c *Card) cmdSelectData(cmd apdu.Command) apdu.Response {
	data := cmd.Data
	// YubiKey firmware before 5.4.4 wanted a leading length byte; accept both forms.
	if c.yk() && len(data) == 7 && data[0] == 0x06 {
		data = data[1:]
	}
	if cmd.P2 != 0x04 || !bytes.Equal(data, selectCertData) {
		return sw(apdu.SWWrongData)
	}
	if cmd.P1 > 2 {
		return sw(apdu.SWRefDataNotFound)
	}
	c.vol.certOcc = int(cmd.P1)
	return sw(apdu.SWOK)
}

func (c *Card) cmdGetNextData(cmd apdu.Command) apdu.Response {
	if cmd.P1 != 0x7F || cmd.P2 != 0x21 {
		return sw(apdu.SWRefDataNotFound)
	}
	if c.vol.certOcc >= 2 {
		return sw(apdu.SWRefDataNotFound)
	}
	c.vol.certOcc++
	return apdu.Response{Data: c.st.Certs[c.vol.certOcc], SW: apdu.SWOK}
}

// cmdPutData is PUT DATA (spec 3.4 §7.2.8): PW3 for everything but private DOs 1 and 3.
func (c *Card) cmdPutData(cmd apdu.Command) apdu.Response {
	tag := apdu.Tag(cmd.P1)<<8 | apdu.Tag(cmd.P2)
	s := &c.st.State
	v := append([]byte(nil), cmd.Data...)
	if tag == 0x0101 || tag == 0x0103 {
		if !c.vol.v82 {
			return sw(apdu.SWSecurityStatus)
		}
	} else if !c.vol.v83 {
		return sw(apdu.SWSecurityStatus)
	}
	maxLen := func(n int) bool { return len(v) <= n }
	switch tag {
	case 0x5B:
		if !maxLen(39) {
			return sw(apdu.SWWrongLength)
		}
		s.Name = v
	case 0x5F2D:
		if !maxLen(8) {
			return sw(apdu.SWWrongLength)
		}
		s.Lang = v
	case 0x5F35:
		if len(v) != 1 {
			return sw(apdu.SWWrongLength)
		}
		s.Sex = v
	case 0x5E:
		if !maxLen(255) {
			return sw(apdu.SWWrongLength)
		}
		s.Login = v
	case 0x5F50:
		if !maxLen(255) {
			return sw(apdu.SWWrongLength)
		}
		s.URL = v
	case 0x0101, 0x0102, 0x0103, 0x0104:
		if !maxLen(255) {
			return sw(apdu.SWWrongLength)
		}
		s.Private[tag-0x0101] = v
	case 0xC1, 0xC2, 0xC3, 0xDA:
		i := int(tag - 0xC1)
		if tag == 0xDA {
			if !c.yk() {
				return sw(apdu.SWRefDataNotFound)
			}
			i = 3
		}
		if !c.validAlgo(i, v) {
			return sw(apdu.SWWrongData)
		}
		if !bytes.Equal(s.Algo[i], v) {
			s.Algo[i] = v
			s.Keys[i], s.KeyStatus[i] = nil, 0
			s.Fpr[i], s.Dates[i] = make([]byte, 20), make([]byte, 4)
		}
	case 0xC4:
		if len(v) < 1 {
			return sw(apdu.SWWrongLength)
		}
		s.PWStatus1 = v[0]
	case 0xC7, 0xC8, 0xC9:
		if len(v) != 20 {
			return sw(apdu.SWWrongLength)
		}
		s.Fpr[tag-0xC7] = v
	case 0xCA, 0xCB, 0xCC:
		if len(v) != 20 {
			return sw(apdu.SWWrongLength)
		}
		s.CAFpr[tag-0xCA] = v
	case 0xCE, 0xCF, 0xD0:
		if len(v) != 4 {
			return sw(apdu.SWWrongLength)
		}
		s.Dates[tag-0xCE] = v
	case 0xD3:
		if len(v) == 0 {
			s.RC, s.RCTries = nil, 0
		} else {
			if !c.kdfOn() && (len(v) < 8 || len(v) > int(s.PWMax)) {
				return sw(apdu.SWWrongLength)
			}
			s.RC, s.RCTries = v, 3
		}
	case 0xD6, 0xD7, 0xD8, 0xD9:
		if !c.yk() || len(v) != 2 || v[0] > 4 {
			return sw(apdu.SWWrongData)
		}
		if cur := s.UIF[tag-0xD6]; len(cur) > 0 && (cur[0] == 2 || cur[0] == 4) {
			return sw(apdu.SWSecurityStatus) // fixed policies stay until reset
		}
		s.UIF[tag-0xD6] = v
	case 0xF9:
		if c.v2() {
			return sw(apdu.SWRefDataNotFound)
		}
		return c.putKDF(v)
	case 0x7F21:
		if len(v) > 0x800 {
			return sw(apdu.SWWrongLength)
		}
		s.Certs[c.vol.certOcc] = v
	default:
		return sw(apdu.SWRefDataNotFound)
	}
	c.st.dirty = true
	return sw(apdu.SWOK)
}

// validAlgo accepts what the modelled applet supports: RSA 2048/3072/4096, ECDSA/ECDH on
// the NIST curves, EdDSA on Ed25519 (not in DEC), ECDH on Curve25519 (DEC only).
func (c *Card) validAlgo(i int, v []byte) bool {
	if len(v) == 0 {
		return false
	}
	switch v[0] {
	case 0x01:
		if len(v) < 5 {
			return false
		}
		bits := int(v[1])<<8 | int(v[2])
		return bits == 2048 || bits == 3072 || bits == 4096
	case 0x12, 0x13:
		if c.v2() || (v[0] == 0x12) != (i == 1) {
			return false
		}
		_, ok := curveOf(trimOID(v[1:]))
		return ok && (curveName(trimOID(v[1:])) != "x25519" || i == 1)
	case 0x16:
		return !c.v2() && i != 1 && curveName(trimOID(v[1:])) == "ed25519"
	}
	return false
}

func trimOID(o []byte) []byte {
	if n := len(o); n > 0 && (o[n-1] == 0xFF || o[n-1] == 0x00) {
		if _, ok := curveOf(o[:n-1]); ok {
			return o[:n-1]
		}
	}
	return o
}

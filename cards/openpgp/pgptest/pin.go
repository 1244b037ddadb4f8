package pgptest

import (
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"hash"

	"github.com/p11-card/p11-card/apdu"
)

const maxTries = 3

// kdf reads the stored KDF-DO.
type kdfDO struct {
	algo, hash byte
	count      int
	salt       [3][]byte
	init1      []byte
	init3      []byte
}

func parseKDF(b []byte) (kdfDO, bool) {
	all, err := apdu.ParseAll(b)
	if err != nil {
		return kdfDO{}, false
	}
	var k kdfDO
	for _, t := range all {
		switch t.Tag {
		case 0x81:
			if len(t.Value) != 1 {
				return kdfDO{}, false
			}
			k.algo = t.Value[0]
		case 0x82:
			if len(t.Value) != 1 {
				return kdfDO{}, false
			}
			k.hash = t.Value[0]
		case 0x83:
			if len(t.Value) != 4 {
				return kdfDO{}, false
			}
			k.count = int(t.Value[0])<<24 | int(t.Value[1])<<16 | int(t.Value[2])<<8 | int(t.Value[3])
		case 0x84, 0x85, 0x86:
			k.salt[t.Tag-0x84] = append([]byte(nil), t.Value...)
		case 0x87:
			k.init1 = append([]byte(nil), t.Value...)
		case 0x88:
			k.init3 = append([]byte(nil), t.Value...)
		}
	}
	switch k.algo {
	case 0x00:
		return k, true
	case 0x03:
		return k, (k.hash == 0x08 || k.hash == 0x0A) && k.count > 0 && k.count <= 1<<26
	}
	return kdfDO{}, false
}

func (c *Card) kdfOn() bool {
	k, ok := parseKDF(c.st.KDF)
	return ok && k.algo == 0x03
}

// s2k is the iterated salted string-to-key (RFC 4880 §3.7.1.3).
func (k kdfDO) s2k(pin []byte, pw int) []byte {
	var h hash.Hash = sha256.New()
	if k.hash == 0x0A {
		h = sha512.New()
	}
	data := append(append([]byte(nil), k.salt[pw]...), pin...)
	count := max(k.count, len(data))
	for count > 0 {
		n := min(count, len(data))
		h.Write(data[:n])
		count -= n
	}
	return h.Sum(nil)
}

// putKDF stores a KDF-DO; as on a YubiKey, PW1 and PW3 go back to their defaults (in the
// new encoding) and the reset code is removed.
func (c *Card) putKDF(v []byte) apdu.Response {
	if v2, ok, err := apdu.Find(v, 0xF9); err == nil && ok {
		v = v2
	}
	k, ok := parseKDF(v)
	if !ok {
		return sw(apdu.SWWrongData)
	}
	s := &c.st.State
	s.KDF = append([]byte(nil), v...)
	if k.algo == 0x03 {
		s.PW1, s.PW3 = k.init1, k.init3
		if s.PW1 == nil {
			s.PW1 = k.s2k(defaultPW1, 0)
		}
		if s.PW3 == nil {
			s.PW3 = k.s2k(defaultPW3, 2)
		}
	} else {
		s.PW1, s.PW3 = append([]byte(nil), defaultPW1...), append([]byte(nil), defaultPW3...)
	}
	s.RC, s.RCTries, s.PW1Tries, s.PW3Tries = nil, 0, maxTries, maxTries
	c.vol.v81, c.vol.v82, c.vol.v83 = false, false, false
	c.st.dirty = true
	return sw(apdu.SWOK)
}

func triesSW(n int) apdu.Response { return sw(apdu.SW(0x63C0 | n&0xF)) }

// wrongSW answers a wrong secret with n tries left. A YubiKey answers 6982 without the
// counter, which the PW status bytes keep (ykman reads them after it), as do the cards
// GnuPG was written for (its SW_CHV_WRONG); a strict card reports the counter.
func (c *Card) wrongSW(n int) apdu.Response {
	if c.yk() {
		return sw(apdu.SWSecurityStatus)
	}
	return triesSW(n)
}

// checkLen applies the spec's minimum lengths when PINs travel in clear.
func (c *Card) checkLen(v []byte, min int) bool {
	if c.kdfOn() {
		return len(v) > 0 && len(v) <= 64
	}
	return len(v) >= min && len(v) <= int(c.st.PWMax)
}

// cmdVerify is VERIFY (spec 3.4 §7.2.2).
func (c *Card) cmdVerify(cmd apdu.Command) apdu.Response {
	ref := cmd.P2
	if ref != 0x81 && ref != 0x82 && ref != 0x83 {
		return sw(apdu.SWRefDataNotFound)
	}
	if cmd.P1 == 0xFF && !c.v2() {
		if len(cmd.Data) != 0 {
			return sw(apdu.SWWrongLength)
		}
		switch ref {
		case 0x81:
			c.vol.v81 = false
		case 0x82:
			c.vol.v82 = false
		default:
			c.vol.v83 = false
		}
		return sw(apdu.SWOK)
	}
	if cmd.P1 != 0x00 {
		return sw(apdu.SWIncorrectP1P2)
	}
	s := &c.st.State
	tries, secret, min := &s.PW1Tries, s.PW1, 6
	verified := c.vol.v81
	if ref == 0x82 {
		verified = c.vol.v82
	}
	if ref == 0x83 {
		tries, secret, min, verified = &s.PW3Tries, s.PW3, 8, c.vol.v83
	}
	if len(cmd.Data) == 0 {
		if c.yk() {
			return sw(apdu.SWWrongData) // YubiKey: no status query
		}
		if *tries == 0 {
			return sw(apdu.SWAuthBlocked)
		}
		if verified {
			return sw(apdu.SWOK)
		}
		return triesSW(*tries)
	}
	if *tries == 0 {
		return sw(apdu.SWAuthBlocked)
	}
	if !c.checkLen(cmd.Data, min) {
		return sw(apdu.SWWrongLength)
	}
	c.st.dirty = true
	if subtle.ConstantTimeCompare(cmd.Data, secret) != 1 {
		*tries--
		switch ref {
		case 0x81:
			c.vol.v81 = false
		case 0x82:
			c.vol.v82 = false
		default:
			c.vol.v83 = false
		}
		return c.wrongSW(*tries)
	}
	*tries = maxTries
	switch ref {
	case 0x81:
		c.vol.v81 = true
	case 0x82:
		c.vol.v82 = true
	default:
		c.vol.v83 = true
	}
	return sw(apdu.SWOK)
}

// cmdChange is CHANGE REFERENCE DATA (spec 3.4 §7.2.3): old‖new.
func (c *Card) cmdChange(cmd apdu.Command) apdu.Response {
	if cmd.P1 != 0 || (cmd.P2 != 0x81 && cmd.P2 != 0x83) {
		return sw(apdu.SWIncorrectP1P2)
	}
	s := &c.st.State
	tries, secret, min := &s.PW1Tries, &s.PW1, 6
	if cmd.P2 == 0x83 {
		tries, secret, min = &s.PW3Tries, &s.PW3, 8
	}
	if *tries == 0 {
		return sw(apdu.SWAuthBlocked)
	}
	n := len(*secret)
	if len(cmd.Data) <= n {
		return sw(apdu.SWWrongLength)
	}
	old, nw := cmd.Data[:n], cmd.Data[n:]
	c.st.dirty = true
	if subtle.ConstantTimeCompare(old, *secret) != 1 {
		*tries--
		return c.wrongSW(*tries)
	}
	if !c.checkLen(nw, min) {
		return sw(apdu.SWWrongLength)
	}
	*tries = maxTries
	*secret = append([]byte(nil), nw...)
	return sw(apdu.SWOK)
}

// cmdResetRetry is RESET RETRY COUNTER (spec 3.4 §7.2.4): P1 00 with the reset code, P1 02
// after PW3.
func (c *Card) cmdResetRetry(cmd apdu.Command) apdu.Response {
	if cmd.P2 != 0x81 {
		return sw(apdu.SWIncorrectP1P2)
	}
	s := &c.st.State
	var nw []byte
	switch cmd.P1 {
	case 0x00:
		if len(s.RC) == 0 {
			return sw(apdu.SWSecurityStatus)
		}
		if s.RCTries == 0 {
			return sw(apdu.SWAuthBlocked)
		}
		n := len(s.RC)
		if len(cmd.Data) <= n {
			return sw(apdu.SWWrongLength)
		}
		c.st.dirty = true
		if subtle.ConstantTimeCompare(cmd.Data[:n], s.RC) != 1 {
			s.RCTries--
			return c.wrongSW(s.RCTries)
		}
		s.RCTries = maxTries
		nw = cmd.Data[n:]
	case 0x02:
		if !c.vol.v83 {
			return sw(apdu.SWSecurityStatus)
		}
		nw = cmd.Data
	default:
		return sw(apdu.SWIncorrectP1P2)
	}
	if !c.checkLen(nw, 6) {
		return sw(apdu.SWWrongLength)
	}
	s.PW1 = append([]byte(nil), nw...)
	s.PW1Tries = maxTries
	c.st.dirty = true
	return sw(apdu.SWOK)
}

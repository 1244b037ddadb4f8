package pivtest

import (
	"bytes"

	"github.com/p11-card/p11-card/apdu"
)

// retriesSW is 63Cx with x remaining tries (capped at 15, as the SW has four bits).
func retriesSW(n int) status {
	if n > 15 {
		n = 15
	}
	if n < 0 {
		n = 0
	}
	return status(0x63C0 | n)
}

// validPIN checks the YubiKey format of a new PIN or PUK: 6 to 8 bytes, then FF padding
// to 8 bytes, and no FF inside the value.
func validPIN(p []byte) bool {
	if len(p) != 8 {
		return false
	}
	n := bytes.IndexByte(p, 0xFF)
	if n < 0 {
		n = 8
	}
	if n < 6 {
		return false
	}
	for _, b := range p[n:] {
		if b != 0xFF {
			return false
		}
	}
	return true
}

// asciiPUK reports a PUK firmware 5.7 accepts: bytes 00–7F before the FF padding.
func asciiPUK(p []byte) bool {
	for _, b := range p {
		if b == 0xFF {
			break
		}
		if b > 0x7F {
			return false
		}
	}
	return true
}

// doVerify is VERIFY (SP 800-73-4 part 2 §3.2.1). P2 80 is the PIV PIN; empty data asks
// the status (9000 when verified, else 63Cx); P1 FF with no data resets the security
// status. Wrong data length is 6A80, as on a YubiKey.
func (c *Card) doVerify(cmd apdu.Command) ([]byte, status) {
	if cmd.P1 != 0x00 && cmd.P1 != 0xFF {
		return nil, swBadP1P2
	}
	if cmd.P2 != refPIN {
		return nil, swRefNotFound
	}
	if cmd.P1 == 0xFF {
		if len(cmd.Data) != 0 {
			return nil, swWrongData
		}
		c.pinOK, c.pinFresh = false, false
		return nil, swOK
	}
	if len(cmd.Data) == 0 {
		if c.st.PINRetries == 0 {
			return nil, swBlocked
		}
		if c.pinOK {
			return nil, swOK
		}
		return nil, retriesSW(c.st.PINRetries)
	}
	if len(cmd.Data) != 8 {
		return nil, swWrongData
	}
	if c.st.PINRetries == 0 {
		return nil, swBlocked
	}
	if !equalCT(cmd.Data, c.st.PIN) {
		c.st.PINRetries--
		c.pinOK, c.pinFresh = false, false
		c.persist()
		return nil, retriesSW(c.st.PINRetries)
	}
	if c.st.PINRetries != c.st.PINMax {
		c.st.PINRetries = c.st.PINMax
		c.persist()
	}
	c.pinOK, c.pinFresh = true, true
	return nil, swOK
}

// doChangeRef is CHANGE REFERENCE DATA (part 2 §3.2.2) for the PIN (80) or PUK (81):
// data is the current value and the new one, 8 bytes each. A new value that breaks the
// YubiKey's rules (6–8 bytes, FF padding; from 5.7 a PUK of bytes 00–7F) is 6985, as
// Yubico documents; a data field that is not 16 bytes is 6A80.
func (c *Card) doChangeRef(cmd apdu.Command) ([]byte, status) {
	if cmd.P1 != 0x00 {
		return nil, swBadP1P2
	}
	var cur *[]byte
	var tries *int
	var max int
	switch cmd.P2 {
	case refPIN:
		cur, tries, max = &c.st.PIN, &c.st.PINRetries, c.st.PINMax
	case refPUK:
		cur, tries, max = &c.st.PUK, &c.st.PUKRetries, c.st.PUKMax
	default:
		return nil, swRefNotFound
	}
	if len(cmd.Data) != 16 {
		return nil, swWrongData
	}
	if *tries == 0 {
		return nil, swBlocked
	}
	old, nw := cmd.Data[:8], cmd.Data[8:]
	if !equalCT(old, *cur) {
		*tries--
		if cmd.P2 == refPIN {
			c.pinOK, c.pinFresh = false, false
		}
		c.persist()
		return nil, retriesSW(*tries)
	}
	if !validPIN(nw) || (cmd.P2 == refPUK && c.atLeast(5, 7, 0) && !asciiPUK(nw)) {
		return nil, swConditions // Yubico: new value fails the length/character rules
	}
	*cur = append([]byte(nil), nw...)
	*tries = max
	c.persist()
	return nil, swOK
}

// doResetRetry is RESET RETRY COUNTER (part 2 §3.2.3): PUK and new PIN unblock the PIN.
func (c *Card) doResetRetry(cmd apdu.Command) ([]byte, status) {
	if cmd.P1 != 0x00 {
		return nil, swBadP1P2
	}
	if cmd.P2 != refPIN {
		return nil, swRefNotFound
	}
	if len(cmd.Data) != 16 {
		return nil, swWrongData
	}
	if c.st.PUKRetries == 0 {
		return nil, swBlocked
	}
	puk, nw := cmd.Data[:8], cmd.Data[8:]
	if !equalCT(puk, c.st.PUK) {
		c.st.PUKRetries--
		c.persist()
		return nil, retriesSW(c.st.PUKRetries)
	}
	if !validPIN(nw) {
		return nil, swConditions
	}
	c.st.PIN = append([]byte(nil), nw...)
	c.st.PINRetries = c.st.PINMax
	c.st.PUKRetries = c.st.PUKMax
	c.persist()
	return nil, swOK
}

// doSetRetries is Yubico's SET PIN RETRIES (FA): P1 PIN tries, P2 PUK tries. It needs
// the management key and the PIN, and sets PIN and PUK back to their defaults.
func (c *Card) doSetRetries(cmd apdu.Command) ([]byte, status) {
	if !c.mgmtOK || !c.pinOK {
		return nil, swSecurity
	}
	if cmd.P1 == 0 || cmd.P2 == 0 {
		return nil, swWrongData
	}
	c.st.PIN, c.st.PUK = padPIN(DefaultPIN), padPIN(DefaultPUK)
	c.st.PINMax, c.st.PINRetries = int(cmd.P1), int(cmd.P1)
	c.st.PUKMax, c.st.PUKRetries = int(cmd.P2), int(cmd.P2)
	c.persist()
	return nil, swOK
}

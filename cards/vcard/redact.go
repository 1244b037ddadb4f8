package vcard

// Instructions whose data is a secret (PIN, PUK, key) and never reaches a log.
const (
	insVerify         = 0x20 // ISO/IEC 7816-4 §11.5.6 VERIFY
	insChangeRef      = 0x24 // ISO/IEC 7816-4 §11.5.7 CHANGE REFERENCE DATA
	insResetRetry     = 0x2C // ISO/IEC 7816-4 §11.5.10 RESET RETRY COUNTER
	insPutDataOdd     = 0xDB // OpenPGP card 3.4 §7.2.8 PUT DATA (odd): key import
	insYubiImportKey  = 0xFE // Yubico PIV extension: IMPORT ASYMMETRIC KEY
	insYubiSetMgmtKey = 0xFF // Yubico PIV extension: SET MANAGEMENT KEY
)

// Redact returns a copy of the command APDU cmd whose data field is zeroed when the
// command carries a secret: VERIFY, CHANGE REFERENCE DATA, RESET RETRY COUNTER, Yubico
// IMPORT KEY and SET MANAGEMENT KEY, OpenPGP key import (PUT DATA odd) and PUT DATA of
// the reset code (DO D3). The header and lengths stay, so a reader still sees what was
// sent. Other commands, and commands too short to hold data, are copied unchanged.
//
// It follows the same list as apdu's redaction of traces; the two are kept in step.
func Redact(cmd []byte) []byte {
	out := append([]byte(nil), cmd...)
	if len(out) < 4 {
		return out
	}
	secret := false
	switch out[1] {
	case insVerify, insChangeRef, insResetRetry, insPutDataOdd, insYubiImportKey, insYubiSetMgmtKey:
		secret = true
	case 0xDA: // PUT DATA: the reset code, DO D3 (OpenPGP card 3.4 §7.2.8)
		secret = out[2] == 0x00 && out[3] == 0xD3
	}
	if !secret || len(out) <= 5 {
		return out
	}
	start, n := 5, int(out[4])
	if out[4] == 0 && len(out) >= 7 { // extended length: 00 Lc1 Lc2
		start, n = 7, int(out[5])<<8|int(out[6])
	}
	for i := start; i < len(out) && i < start+n; i++ {
		out[i] = 0
	}
	return out
}

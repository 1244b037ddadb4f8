package apdu

import "sync"

// Instructions whose command data carries a secret (PIN, PUK, key) and is never traced.
const (
	insVerify            = 0x20 // ISO/IEC 7816-4 §7.5.6 VERIFY
	insChangeRefData     = 0x24 // ISO/IEC 7816-4 §7.5.7 CHANGE REFERENCE DATA
	insResetRetryCounter = 0x2C // ISO/IEC 7816-4 §7.5.10 RESET RETRY COUNTER
	insPutData           = 0xDA // ISO/IEC 7816-4 §7.4.3 PUT DATA (even)
	insPutDataOdd        = 0xDB // PUT DATA (odd); OpenPGP card 3.4 §7.2.8 key import (extended header list)
	insYubicoImportKey   = 0xFE // Yubico PIV extension: IMPORT ASYMMETRIC KEY
	insYubicoSetMgmtKey  = 0xFF // Yubico PIV extension: SET MANAGEMENT KEY
	insGeneralAuth       = 0x87 // SP 800-73-4 part 2 §3.2.4 GENERAL AUTHENTICATE (response may be plaintext)
	insPerformSecurityOp = 0x2A // ISO/IEC 7816-8 PERFORM SECURITY OPERATION (OpenPGP decipher answers plaintext)
	redactedByte         = 0x2A // '*': what a hidden byte reads as in a trace
)

// secretPutData lists the OpenPGP card 3.4 (§4.4.1, §7.2.8) data objects written by PUT DATA
// (DA) that are secrets: resetting code D3, AES key for PSO:ENC/DEC D5, the KDF-DO F9 (it may
// carry password hashes), and the legacy secure messaging keys D1/D2.
func secretPutData(p1, p2 byte) bool {
	if p1 != 0x00 {
		return false
	}
	switch p2 {
	case 0xD1, 0xD2, 0xD3, 0xD5, 0xF9:
		return true
	}
	return false
}

// Secret reports whether the data field of the encoded command cmd carries a secret: VERIFY,
// CHANGE REFERENCE DATA, RESET RETRY COUNTER, Yubico IMPORT KEY and SET MANAGEMENT KEY,
// OpenPGP key import (PUT DATA odd) and PUT DATA of a secret data object. The class byte is
// not considered, so chained parts and proprietary classes count too.
func Secret(cmd []byte) bool {
	if len(cmd) < 4 {
		return false
	}
	switch cmd[1] {
	case insVerify, insChangeRefData, insResetRetryCounter, insYubicoImportKey, insYubicoSetMgmtKey, insPutDataOdd:
		return true
	case insPutData:
		return secretPutData(cmd[2], cmd[3])
	}
	return false
}

// Redact returns a copy of the encoded command cmd fit for a log. For a command whose data
// carries a secret (see Secret) every data byte is replaced by 2A ('*'); header, Lc and Le
// are kept so the trace still shows lengths. A secret-bearing command that does not parse
// keeps only its four header bytes followed by one 2A per remaining byte. Other commands
// come back as a plain copy. There is no switch to turn this off.
func Redact(cmd []byte) []byte {
	out := append([]byte(nil), cmd...)
	if !Secret(cmd) {
		return out
	}
	start, n := dataField(cmd)
	if start < 0 {
		start, n = 4, len(cmd)-4
	}
	for i := start; i < start+n; i++ {
		out[i] = redactedByte
	}
	return out
}

// ResponseRedactor is RedactResponse for a sequence of exchanges with one card: the rest
// of a long GENERAL AUTHENTICATE or PERFORM SECURITY OPERATION answer arrives in GET
// RESPONSE answers, and those are hidden too. The zero value is ready; it is safe for
// concurrent use, though only one card's sequence makes sense.
type ResponseRedactor struct {
	mu     sync.Mutex
	secret bool // the answer being collected by GET RESPONSE is secret
}

// Redact returns a copy of resp fit for a log, given the encoded command cmd it answers.
func (r *ResponseRedactor) Redact(cmd, resp []byte) []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(cmd) >= 4 && cmd[1] == insGetResponse && r.secret {
		out := append([]byte(nil), resp...)
		for i := 0; i < len(out)-2; i++ {
			out[i] = redactedByte
		}
		r.secret = len(resp) >= 2 && resp[len(resp)-2] == sw1MoreData
		return out
	}
	out := RedactResponse(cmd, resp)
	r.secret = len(cmd) >= 4 && secretResponse(cmd[1]) && len(resp) >= 2 && resp[len(resp)-2] == sw1MoreData
	return out
}

func secretResponse(ins byte) bool { return ins == insGeneralAuth || ins == insPerformSecurityOp }

// RedactResponse returns a copy of the raw response resp to the encoded command cmd fit for
// a log: the data of answers that may be plaintext or secret (GENERAL AUTHENTICATE, PERFORM
// SECURITY OPERATION) and of answers to secret-bearing commands (Secret: a card has no
// business echoing a PIN, but one could) is replaced by 2A bytes, the status word kept.
func RedactResponse(cmd, resp []byte) []byte {
	out := append([]byte(nil), resp...)
	if len(cmd) < 4 || len(resp) <= 2 {
		return out
	}
	if secretResponse(cmd[1]) || Secret(cmd) {
		for i := range out[:len(out)-2] {
			out[i] = redactedByte
		}
	}
	return out
}

// dataField locates the command data field in an encoded command: its offset and length,
// or -1 when the command does not parse.
func dataField(b []byte) (int, int) {
	body := len(b) - 4
	switch {
	case body < 0:
		return -1, 0
	case body <= 1:
		return 4, 0 // case 1 or 2S
	case b[4] != 0:
		nc := int(b[4])
		if body == 1+nc || body == 2+nc {
			return 5, nc
		}
		return -1, 0
	case body == 3:
		return 4, 0 // case 2E
	case body < 3:
		return -1, 0
	}
	nc := int(b[5])<<8 | int(b[6])
	if nc > 0 && (body == 3+nc || body == 5+nc) {
		return 7, nc
	}
	return -1, 0
}

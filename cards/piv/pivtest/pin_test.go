package pivtest

import (
	"testing"

	"github.com/p11-card/p11-card/apdu"
)

func TestVerify(t *testing.T) {
	c := selected(t, Options{})
	_, sw := raw(t, c, "0020008000")
	wantSW(t, sw, 0x63C3)
	_, sw = raw(t, c, "0020008006 313233343536") // unpadded: wrong length
	wantSW(t, sw, 0x6A80)
	_, sw = raw(t, c, "0020008009 313233343536FFFFFF")
	wantSW(t, sw, 0x6A80)
	wantSW(t, verifyPIN(t, c, "654321"), 0x63C2)
	_, sw = raw(t, c, "0020008000")
	wantSW(t, sw, 0x63C2)
	wantSW(t, verifyPIN(t, c, "123456"), 0x9000)
	_, sw = raw(t, c, "0020008000")
	wantSW(t, sw, 0x9000) // verified; counter back to 3
	if p, _ := c.Retries(); p != 3 {
		t.Fatalf("PIN tries %d after a good PIN", p)
	}
	_, sw = raw(t, c, "0020FF8000")
	wantSW(t, sw, 0x9000)
	_, sw = raw(t, c, "0020008000")
	wantSW(t, sw, 0x63C3)
	_, sw = raw(t, c, "0020FF8008 3132333435363738")
	wantSW(t, sw, 0x6A80)
	// A wrong PIN drops the verified state.
	wantSW(t, verifyPIN(t, c, "123456"), 0x9000)
	wantSW(t, verifyPIN(t, c, "000000"), 0x63C2)
	_, sw = raw(t, c, "0020008000")
	wantSW(t, sw, 0x63C2)
}

func TestPINBlockAndUnblock(t *testing.T) {
	c := selected(t, Options{})
	wantSW(t, verifyPIN(t, c, "000000"), 0x63C2)
	wantSW(t, verifyPIN(t, c, "000000"), 0x63C1)
	wantSW(t, verifyPIN(t, c, "000000"), 0x63C0)
	wantSW(t, verifyPIN(t, c, "123456"), 0x6983)
	_, sw := raw(t, c, "0020008000")
	wantSW(t, sw, 0x6983)
	_, sw = do(t, c, insChangeRef, 0, 0x80, append(padPIN([]byte("123456")), padPIN([]byte("222222"))...))
	wantSW(t, sw, 0x6983)

	unblock := func(puk, pin string) apdu.SW {
		_, sw := do(t, c, insResetRetry, 0, 0x80, append(padPIN([]byte(puk)), padPIN([]byte(pin))...))
		return sw
	}
	wantSW(t, unblock("87654321", "222222"), 0x63C2)
	wantSW(t, unblock("12345678", "22"), 0x6985) // new PIN too short
	wantSW(t, unblock("12345678", "222222"), 0x9000)
	wantSW(t, verifyPIN(t, c, "123456"), 0x63C2)
	wantSW(t, verifyPIN(t, c, "222222"), 0x9000)
	_, sw = do(t, c, insResetRetry, 0, 0x81, make([]byte, 16))
	wantSW(t, sw, 0x6A88)
	_, sw = do(t, c, insResetRetry, 0, 0x80, make([]byte, 15))
	wantSW(t, sw, 0x6A80)

	// Block the PUK.
	for i, want := range []apdu.SW{0x63C2, 0x63C1, 0x63C0, 0x6983} {
		if sw := unblock("00000000", "333333"); sw != want {
			t.Fatalf("try %d: SW %04X want %04X", i, uint16(sw), uint16(want))
		}
	}
	wantSW(t, unblock("12345678", "333333"), 0x6983)
}

func TestChangePINAndPUK(t *testing.T) {
	c := selected(t, Options{})
	change := func(p2 byte, old, nw []byte) apdu.SW {
		_, sw := do(t, c, insChangeRef, 0, p2, append(padPIN(old), padPIN(nw)...))
		return sw
	}
	wantSW(t, change(0x80, []byte("123456"), []byte("12345")), 0x6985)
	wantSW(t, change(0x80, []byte("123456"), []byte("123456\xff7")), 0x6985)
	wantSW(t, change(0x81, []byte("12345678"), []byte("1234567\x80")), 0x6985) // 5.7: PUK bytes 00-7F
	if p, u := c.Retries(); p != 3 || u != 3 {
		t.Fatalf("refused new values cost tries: %d %d", p, u)
	}
	wantSW(t, change(0x80, []byte("123457"), []byte("87654321")), 0x63C2)
	wantSW(t, change(0x80, []byte("123456"), []byte("87654321")), 0x9000)
	wantSW(t, verifyPIN(t, c, "87654321"), 0x9000)
	wantSW(t, change(0x81, []byte("12345678"), []byte("abcdef")), 0x9000)
	wantSW(t, change(0x81, []byte("12345678"), []byte("abcdefg")), 0x63C2)
	wantSW(t, change(0x82, []byte("12345678"), []byte("abcdefg")), 0x6A88)
	_, sw := do(t, c, insChangeRef, 1, 0x80, make([]byte, 16))
	wantSW(t, sw, 0x6A86)
	_, sw = do(t, c, insChangeRef, 0, 0x80, make([]byte, 8))
	wantSW(t, sw, 0x6A80)

	old := selected(t, Options{Firmware: [3]byte{5, 4, 3}})
	_, sw = do(t, old, insChangeRef, 0, 0x81, append(padPIN([]byte("12345678")), padPIN([]byte("1234567\x80"))...))
	wantSW(t, sw, 0x9000) // before 5.7 any PUK byte goes

	// Metadata says the PIN and PUK are no longer the defaults.
	data, sw := raw(t, c, "00F7008000")
	wantSW(t, sw, 0x9000)
	if v, _, _ := apdu.Find(data, 0x05); len(v) != 1 || v[0] != 0 {
		t.Fatalf("PIN metadata %X", data)
	}
}

func TestPINMetadata(t *testing.T) {
	c := selected(t, Options{})
	wantSW(t, verifyPIN(t, c, "000000"), 0x63C2)
	data, sw := raw(t, c, "00F7008000")
	wantSW(t, sw, 0x9000)
	if got, want := data, []byte{0x01, 0x01, 0xFF, 0x05, 0x01, 0x01, 0x06, 0x02, 0x03, 0x02}; string(got) != string(want) {
		t.Fatalf("PIN metadata %X, want %X", got, want)
	}
	data, sw = raw(t, c, "00F7008100")
	wantSW(t, sw, 0x9000)
	if got, want := data, []byte{0x01, 0x01, 0xFF, 0x05, 0x01, 0x01, 0x06, 0x02, 0x03, 0x03}; string(got) != string(want) {
		t.Fatalf("PUK metadata %X, want %X", got, want)
	}
	_, sw = raw(t, c, "00F7019A00")
	wantSW(t, sw, 0x6A86)
	_, sw = raw(t, c, "00F7000100")
	wantSW(t, sw, 0x6A88)
}

func TestSetPINRetries(t *testing.T) {
	c := selected(t, Options{})
	_, sw := raw(t, c, "00FA0505")
	wantSW(t, sw, 0x6982)
	wantSW(t, mgmtAuthenticate(t, c, AlgAES192, DefaultMgmtKey), 0x9000)
	_, sw = raw(t, c, "00FA0505")
	wantSW(t, sw, 0x6982) // the PIN too
	_, sw = do(t, c, insChangeRef, 0, 0x80, append(padPIN([]byte("123456")), padPIN([]byte("999999"))...))
	wantSW(t, sw, 0x9000)
	wantSW(t, verifyPIN(t, c, "999999"), 0x9000)
	_, sw = raw(t, c, "00FA0000")
	wantSW(t, sw, 0x6A80)
	_, sw = raw(t, c, "00FA0506")
	wantSW(t, sw, 0x9000)
	// PIN and PUK are back to their defaults, with the new limits.
	wantSW(t, verifyPIN(t, c, "999999"), 0x63C4)
	wantSW(t, verifyPIN(t, c, "123456"), 0x9000)
	data, _ := raw(t, c, "00F7008100")
	if v, _, _ := apdu.Find(data, 0x06); string(v) != "\x06\x06" {
		t.Fatalf("PUK retries %X", v)
	}
}

func TestYubiKeyReset(t *testing.T) {
	c := selected(t, Options{MgmtAlg: AlgTDES, PIN: []byte("24682468")})
	wantSW(t, mgmtAuthenticate(t, c, AlgTDES, DefaultMgmtKey), 0x9000)
	if _, err := c.GenerateInSlot(0x9A, AlgECCP256); err != nil {
		t.Fatal(err)
	}
	_, sw := raw(t, c, "00FB000000")
	wantSW(t, sw, 0x6985)
	for range 3 {
		verifyPIN(t, c, "000000")
	}
	_, sw = raw(t, c, "00FB000000")
	wantSW(t, sw, 0x6985) // PUK not blocked yet
	for range 3 {
		do(t, c, insResetRetry, 0, 0x80, make([]byte, 16))
	}
	attest, _ := c.Object(objAttestation)
	_, sw = raw(t, c, "00FB000000")
	wantSW(t, sw, 0x9000)
	if c.PublicKey(0x9A) != nil {
		t.Fatal("key survived RESET")
	}
	if _, ok := c.Object(0x5FC105); ok {
		t.Fatal("certificate survived RESET")
	}
	if got, _ := c.Object(objAttestation); string(got) != string(attest) || c.PublicKey(0xF9) == nil {
		t.Fatal("attestation key lost in RESET")
	}
	wantSW(t, verifyPIN(t, c, "123456"), 0x9000)
	_, sw = do(t, c, insPutData, 0x3F, 0xFF, []byte{0x5C, 3, 0x5F, 0xC1, 0x02, 0x53, 0})
	wantSW(t, sw, 0x6982) // RESET also drops the management key authentication
	// Factory values come back: the 5.7 AES-192 key, not the 3DES one the card began with.
	wantSW(t, mgmtAuthenticate(t, c, AlgAES192, DefaultMgmtKey), 0x9000)
}

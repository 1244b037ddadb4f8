package pivtest

import (
	"bytes"
	"context"
	"encoding/hex"
	"strings"
	"testing"

	"github.com/p11-card/p11-card/apdu"
)

// raw sends one command given in hex (spaces allowed) and returns data and status word.
func raw(t *testing.T, c *Card, hexCmd string) ([]byte, apdu.SW) {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(hexCmd, " ", ""))
	if err != nil {
		t.Fatalf("bad hex %q: %v", hexCmd, err)
	}
	return rawBytes(t, c, b)
}

func rawBytes(t *testing.T, c *Card, b []byte) ([]byte, apdu.SW) {
	t.Helper()
	out, err := c.Transmit(context.Background(), b)
	if err != nil {
		t.Fatalf("transmit: %v", err)
	}
	r, err := apdu.ParseResponse(out)
	if err != nil {
		t.Fatalf("response: %v", err)
	}
	return r.Data, r.SW
}

// do runs a command through apdu.Exchange (chaining and GET RESPONSE included).
func do(t *testing.T, c *Card, ins, p1, p2 byte, data []byte) ([]byte, apdu.SW) {
	t.Helper()
	return doOpt(t, c, apdu.Options{}, ins, p1, p2, data)
}

func doOpt(t *testing.T, c *Card, opt apdu.Options, ins, p1, p2 byte, data []byte) ([]byte, apdu.SW) {
	t.Helper()
	r, err := apdu.Exchange(context.Background(), c, apdu.Command{INS: ins, P1: p1, P2: p2, Data: data, Ne: 256}, opt)
	if err != nil {
		t.Fatalf("exchange %02X: %v", ins, err)
	}
	return r.Data, r.SW
}

func wantSW(t *testing.T, got, want apdu.SW) {
	t.Helper()
	if got != want {
		t.Fatalf("SW %04X, want %04X", uint16(got), uint16(want))
	}
}

func newCard(t *testing.T, opt Options) *Card {
	t.Helper()
	c, err := New(opt)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// selected returns a fresh card with the PIV applet selected.
func selected(t *testing.T, opt Options) *Card {
	t.Helper()
	c := newCard(t, opt)
	_, sw := raw(t, c, "00A4040005A000000308")
	wantSW(t, sw, 0x9000)
	return c
}

func verifyPIN(t *testing.T, c *Card, pin string) apdu.SW {
	t.Helper()
	_, sw := do(t, c, insVerify, 0, 0x80, padPIN([]byte(pin)))
	return sw
}

// mgmtAuthenticate runs mutual authentication as yubico-piv-tool does.
func mgmtAuthenticate(t *testing.T, c *Card, alg byte, key []byte) apdu.SW {
	t.Helper()
	blk, err := mgmtCipher(alg, key)
	if err != nil {
		t.Fatal(err)
	}
	data, sw := do(t, c, insGeneralAuth, alg, 0x9B, []byte{0x7C, 0x02, 0x80, 0x00})
	if sw != 0x9000 {
		return sw
	}
	enc, ok, err := apdu.FindPath(data, 0x7C, 0x80)
	if err != nil || !ok || len(enc) != blk.BlockSize() {
		t.Fatalf("witness answer %X", data)
	}
	w := make([]byte, len(enc))
	blk.Decrypt(w, enc)
	ch := bytes.Repeat([]byte{0x5A}, blk.BlockSize())
	body := append(apdu.TLVBytes(0x80, w), apdu.TLVBytes(0x81, ch)...)
	data, sw = do(t, c, insGeneralAuth, alg, 0x9B, apdu.TLVBytes(0x7C, body))
	if sw != 0x9000 {
		return sw
	}
	got, ok, err := apdu.FindPath(data, 0x7C, 0x82)
	if err != nil || !ok {
		t.Fatalf("challenge answer %X", data)
	}
	want := make([]byte, len(ch))
	blk.Encrypt(want, ch)
	if !bytes.Equal(got, want) {
		t.Fatalf("card's response to our challenge is wrong")
	}
	return sw
}

func adminCard(t *testing.T, opt Options) *Card {
	t.Helper()
	c := selected(t, opt)
	wantSW(t, mgmtAuthenticate(t, c, c.st.MgmtAlg, DefaultMgmtKey), 0x9000)
	return c
}

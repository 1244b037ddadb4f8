package pivtest

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/p11-card/p11-card/apdu"
	"github.com/p11-card/p11-card/cards/vcard"
)

func TestPersistence(t *testing.T) {
	path := filepath.Join(t.TempDir(), "card.json")
	c := adminCard(t, Options{StatePath: path, Serial: 99})
	for slot, alg := range map[byte]byte{0x9A: AlgRSA1024, 0x9C: AlgECCP384, 0x9D: AlgX25519, 0x9E: AlgEd25519} {
		if _, err := c.GenerateInSlot(slot, alg); err != nil {
			t.Fatal(err)
		}
	}
	_, sw := do(t, c, insChangeRef, 0, 0x80, append(padPIN([]byte("123456")), padPIN([]byte("24682468"))...))
	wantSW(t, sw, 0x9000)
	wantSW(t, verifyPIN(t, c, "000000"), 0x63C2)
	newKey := bytes.Repeat([]byte{7}, 16)
	_, sw = do(t, c, insSetMgmtKey, 0xFF, 0xFF, append([]byte{AlgAES128}, apdu.TLVBytes(0x9B, newKey)...))
	wantSW(t, sw, 0x9000)
	if err := c.SaveError(); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil || st.Size() == 0 {
		t.Fatalf("state file: %v", err)
	}

	// A new process: same file, options ignored for what the file holds.
	d := selected(t, Options{StatePath: path, Serial: 1})
	data, _ := raw(t, d, "00F8000000")
	if !bytes.Equal(data, []byte{0, 0, 0, 99}) {
		t.Fatalf("serial %X", data)
	}
	for _, slot := range []byte{0x9A, 0x9C, 0x9D, 0x9E, 0xF9} {
		if !pubEqual(d.PublicKey(slot), c.PublicKey(slot)) {
			t.Fatalf("slot %02X lost", slot)
		}
	}
	if a, _ := c.Object(0x5FC105); !bytes.Equal(a, func() []byte { b, _ := d.Object(0x5FC105); return b }()) {
		t.Fatal("certificate lost")
	}
	_, sw = raw(t, d, "0020008000")
	wantSW(t, sw, 0x63C2)
	wantSW(t, verifyPIN(t, d, "24682468"), 0x9000)
	wantSW(t, mgmtAuthenticate(t, d, AlgAES128, newKey), 0x9000)
	meta, _ := do(t, d, insGetMetadata, 0, 0x9C, nil)
	if v, _, _ := apdu.Find(meta, 0x01); !bytes.Equal(v, []byte{AlgECCP384}) {
		t.Fatalf("9C metadata %X", meta)
	}
	checkKey(t, d, 0x9D, AlgX25519, d.PublicKey(0x9D))

	// A corrupt file is an error, not a fresh card.
	if err := os.WriteFile(path, []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := New(Options{StatePath: path}); err == nil {
		t.Fatal("corrupt state accepted")
	}
	if _, err := New(Options{StatePath: filepath.Join(t.TempDir(), "no", "dir.json")}); err == nil {
		t.Fatal("unwritable state accepted")
	}
}

func TestOpDelay(t *testing.T) {
	c := selected(t, Options{OpDelay: time.Hour})
	if _, err := c.Provision(0x9E, KeySpec{Alg: AlgECCP256, NoCert: true}); err != nil {
		t.Fatal(err)
	}
	// The delay ends with the command's context; a short one proves the wait happens.
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	cmd := append([]byte{0, 0x87, 0x11, 0x9E, 0x26, 0x7C, 0x24, 0x82, 0x00, 0x81, 0x20}, make([]byte, 32)...)
	out, err := c.Transmit(ctx, cmd)
	if err != nil || !bytes.HasSuffix(out, []byte{0x90, 0}) {
		t.Fatalf("sign: %X %v", out, err)
	}
	if d := time.Since(start); d < 40*time.Millisecond {
		t.Fatalf("no delay (%v)", d)
	}
	// Other commands are not delayed.
	start = time.Now()
	if _, err := c.Transmit(context.Background(), []byte{0, 0xFD, 0, 0, 0}); err != nil || time.Since(start) > time.Second {
		t.Fatal("version delayed")
	}
}

// The vcard helpers wrap the card: faults and a redacted log.
func TestWithVCardHelpers(t *testing.T) {
	c := selected(t, Options{})
	var log vcard.Log
	f := &vcard.Faults{}
	card := vcard.WithLog(vcard.WithFaults(c, f), &log)
	ctx := context.Background()
	out, err := card.Transmit(ctx, append([]byte{0, 0x20, 0, 0x80, 8}, padPIN([]byte("123456"))...))
	if err != nil || !bytes.Equal(out, []byte{0x90, 0}) {
		t.Fatalf("verify: %X %v", out, err)
	}
	if bytes.Contains([]byte(log.String()), []byte("313233343536")) {
		t.Fatal("PIN in the log")
	}
	if log.Count() != 1 || log.CountINS(0x20) != 1 {
		t.Fatalf("log count %d", log.Count())
	}
}

func FuzzTransmit(f *testing.F) {
	for _, s := range [][]byte{
		{0, 0xA4, 4, 0, 5, 0xA0, 0, 0, 3, 8},
		{0, 0xCB, 0x3F, 0xFF, 5, 0x5C, 3, 0x5F, 0xC1, 0x05, 0},
		{0, 0x87, 0x0A, 0x9B, 4, 0x7C, 2, 0x80, 0},
		{0x10, 0xDB, 0x3F, 0xFF, 2, 0x5C, 3},
		{0, 0x47, 0, 0x9A, 5, 0xAC, 3, 0x80, 1, 0x11},
		{0, 0xFE, 0x11, 0x9A, 3, 0x06, 1, 1},
		{0, 0xF7, 0, 0x9B, 0},
		{0, 0xC0, 0, 0, 0},
	} {
		f.Add(s)
	}
	c := MustNew(Options{})
	if _, err := c.Provision(0x9A, KeySpec{Alg: AlgECCP256, NoCert: true}); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, cmd []byte) {
		// Select first so the fuzzer reaches the applet, then feed the input.
		if _, err := c.Transmit(context.Background(), []byte{0, 0xA4, 4, 0, 5, 0xA0, 0, 0, 3, 8}); err != nil {
			t.Fatal(err)
		}
		c.mu.Lock()
		c.mgmtOK = true // reach the commands behind the management key
		c.mu.Unlock()
		out, err := c.Transmit(context.Background(), cmd)
		if err != nil || len(out) < 2 {
			t.Fatalf("answer %X %v", out, err)
		}
	})
}

func TestSaveErrorReported(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "sub", "card.json")
	if err := os.Mkdir(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	c := adminCard(t, Options{StatePath: path})
	if err := os.RemoveAll(filepath.Dir(path)); err != nil {
		t.Fatal(err)
	}
	wantSW(t, verifyPIN(t, c, "000000"), 0x63C2) // the card still answers
	if c.SaveError() == nil {
		t.Fatal("lost save not reported")
	}
}

func TestImportInSlotAndManyRetries(t *testing.T) {
	c := adminCard(t, Options{PINRetries: 20})
	k, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	cert, err := c.ImportInSlot(0x95, k)
	if err != nil {
		t.Fatal(err)
	}
	if !pubEqual(cert.PublicKey, &k.PublicKey) {
		t.Fatal("certificate for another key")
	}
	meta, _ := do(t, c, insGetMetadata, 0, 0x95, nil)
	if v, _, _ := apdu.Find(meta, 0x03); !bytes.Equal(v, []byte{2}) {
		t.Fatalf("origin %X", meta)
	}
	if _, err := c.ImportInSlot(0x9A, "not a key"); err == nil {
		t.Fatal("bad key accepted")
	}
	// 20 tries fit no 63Cx: the card says 15 until fewer are left.
	wantSW(t, verifyPIN(t, c, "000000"), 0x63CF)
	_, sw := raw(t, c, "00FA1405") // 20 PIN tries via SET PIN RETRIES too
	wantSW(t, sw, 0x6982)          // the failed VERIFY dropped the PIN
}

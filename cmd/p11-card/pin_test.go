package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/p11-card/p11-card/cards/piv"
	"github.com/p11-card/p11-card/cards/piv/pivtest"
)

// memConn serves an in-process virtual card to the driver.
type memConn struct {
	mu   sync.Mutex
	card *pivtest.Card
}

func (c *memConn) Transmit(ctx context.Context, cmd []byte) ([]byte, error) {
	return c.card.Transmit(ctx, cmd)
}
func (c *memConn) Lock(ctx context.Context) (func(), bool, error) {
	c.mu.Lock()
	return c.mu.Unlock, false, nil
}

// withCard points openToken at a virtual YubiKey and pinInput at lines.
func withCard(t *testing.T, card *pivtest.Card, lines string) {
	t.Helper()
	tok, err := piv.Driver{}.Open(context.Background(), &memConn{card: card}, card.ATR())
	if err != nil {
		t.Fatal(err)
	}
	oldOpen, oldIn := openToken, pinInput
	t.Cleanup(func() { openToken, pinInput = oldOpen, oldIn })
	openToken = func(ctx context.Context, slot uint64, reader string) (cardToken, func(), error) {
		return cardToken{slot: 1, reader: "Virtual", tok: tok}, func() {}, nil
	}
	pinInput = func(*env) *secretReader { return newSecretReader(strings.NewReader(lines)) }
}

func runCmd(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(context.Background(), &env{stdout: &out, stderr: &errb}, args)
	return out.String(), errb.String(), code
}

func TestPINCommand(t *testing.T) {
	card := pivtest.MustNew(pivtest.Options{})
	withCard(t, card, "123456\n")
	if out, errs, code := runCmd(t, "pin", "verify"); code != 0 || !strings.Contains(out, "done") {
		t.Fatalf("verify: %d %s %s", code, out, errs)
	}
	withCard(t, card, "000000\n")
	out, errs, code := runCmd(t, "pin", "verify", "--json")
	if code != 1 || !strings.Contains(errs, "wrong secret, 2 tries left") {
		t.Fatalf("wrong PIN: %d %s %s", code, out, errs)
	}
	var rep pinReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil || rep.OK || rep.Retries == nil || *rep.Retries != 2 {
		t.Fatalf("json %s: %+v %v", out, rep, err)
	}
	if strings.Contains(out+errs, "000000") {
		t.Error("PIN in output")
	}
	withCard(t, card, "123456\n654321\n")
	if _, errs, code := runCmd(t, "pin", "change"); code != 0 {
		t.Fatalf("change: %s", errs)
	}
	withCard(t, card, "654321\n")
	if _, errs, code := runCmd(t, "pin", "verify"); code != 0 {
		t.Fatalf("verify new PIN: %s", errs)
	}
	// Block, then unblock with the PUK.
	for i := 0; i < 3; i++ {
		withCard(t, card, "111111\n")
		runCmd(t, "pin", "verify")
	}
	withCard(t, card, "")
	out, _, _ = runCmd(t, "pin", "status", "--json")
	if err := json.Unmarshal([]byte(out), &rep); err != nil || !rep.Blocked {
		t.Fatalf("status after blocking: %s", out)
	}
	withCard(t, card, "12345678\n123456\n")
	if _, errs, code := runCmd(t, "pin", "unblock"); code != 0 {
		t.Fatalf("unblock: %s", errs)
	}
	withCard(t, card, "123456\n")
	if _, errs, code := runCmd(t, "pin", "verify"); code != 0 {
		t.Fatalf("verify after unblock: %s", errs)
	}
	if _, _, code := runCmd(t, "pin"); code != 2 {
		t.Error("no action must be a usage error")
	}
	if _, _, code := runCmd(t, "pin", "dance"); code != 2 {
		t.Error("unknown action must be a usage error")
	}
}

const mgmtHex = "010203040506070801020304050607080102030405060708"

func TestKeygenAndCertCommands(t *testing.T) {
	card := pivtest.MustNew(pivtest.Options{})
	withCard(t, card, mgmtHex+"\n")
	out, errs, code := runCmd(t, "keygen", "--id", "9a", "--alg", "p256", "--json")
	if code != 0 {
		t.Fatalf("keygen: %s", errs)
	}
	var kg struct {
		ID  string `json:"id"`
		PEM string `json:"public_key_pem"`
	}
	if err := json.Unmarshal([]byte(out), &kg); err != nil || kg.ID != "01" {
		t.Fatalf("keygen json %s", out)
	}
	blk, _ := pem.Decode([]byte(kg.PEM))
	pub, err := x509.ParsePKIXPublicKey(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if !pub.(*ecdsa.PublicKey).Equal(card.PublicKey(0x9A)) {
		t.Error("printed public key is not the card's")
	}
	withCard(t, card, "wrong\n")
	if _, _, code := runCmd(t, "keygen", "--id", "01", "--alg", "p256"); code != 1 {
		t.Error("keygen with a bad management key must fail")
	}
	if _, _, code := runCmd(t, "keygen", "--id", "01", "--alg", "dsa"); code != 2 {
		t.Error("bad --alg must be a usage error")
	}
	// Import a certificate for 9E (key from the helper) and export it again.
	src := pivtest.MustNew(pivtest.Options{})
	cert, err := src.GenerateInSlot(0x9E, pivtest.AlgECCP256)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile := filepath.Join(dir, "c.pem")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}), 0o600)
	// The certificate's key is not the one in 9E of card: refused.
	if _, err := card.GenerateInSlot(0x9E, pivtest.AlgECCP256); err != nil {
		t.Fatal(err)
	}
	withCard(t, card, mgmtHex+"\n")
	if _, errs, code := runCmd(t, "cert", "import", "--id", "04", certFile); code != 1 || !strings.Contains(errs, "not the key") {
		t.Fatalf("mismatched import: %d %s", code, errs)
	}
	// The right key: a certificate the helper made for the card's own 9D key.
	own, err := card.GenerateInSlot(0x9D, pivtest.AlgECCP256)
	if err != nil {
		t.Fatal(err)
	}
	ownFile := filepath.Join(dir, "own.der")
	os.WriteFile(ownFile, own.Raw, 0o600)
	withCard(t, card, mgmtHex+"\n")
	if _, errs, code := runCmd(t, "cert", "import", "--id", "03", ownFile); code != 0 {
		t.Fatalf("import: %s", errs)
	}
	withCard(t, card, "")
	out, errs, code = runCmd(t, "cert", "export", "--id", "9d")
	if code != 0 {
		t.Fatalf("export: %s", errs)
	}
	b, _ := pem.Decode([]byte(out))
	if b == nil || !bytes.Equal(b.Bytes, own.Raw) {
		t.Error("exported certificate differs")
	}
	if _, _, code := runCmd(t, "cert", "export", "--id", "0a"); code != 1 {
		t.Error("export of an empty location must fail")
	}
}

//go:build hwtest

package hwtest

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"path/filepath"
	"strings"
	"testing"

	"github.com/p11-card/p11-card/cards/openpgp/pgptest"
)

// TestModuleOpenPGP drives the virtual OpenPGP card through the module with pkcs11-tool:
// the signature key (PW1 for signing), decryption padded on the card.
func TestModuleOpenPGP(t *testing.T) {
	testRig(t)
	c, err := pgptest.New(pgptest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	sigKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	decKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	if err := c.PutKey(0, sigKey, nil); err != nil {
		t.Fatal(err)
	}
	if err := c.PutKey(1, decKey, nil); err != nil {
		t.Fatal(err)
	}
	insert(t, 2, c)
	out := ptool(t, "-L")
	if !strings.Contains(out, "token label") {
		t.Fatalf("-L:\n%s", out)
	}

	msg := []byte("signed by the OpenPGP card")
	data := writeFile(t, "data", msg)
	sig := filepath.Join(t.TempDir(), "sig")
	ptool(t, "--token-label", "YubiKey OpenPGP #12345678", "--sign", "--login", "--pin", modPIN, "--id", "01", "-m", "SHA256-RSA-PKCS", "--input-file", data, "--output-file", sig)
	sum := sha256.Sum256(msg)
	if err := rsa.VerifyPKCS1v15(&sigKey.PublicKey, crypto.SHA256, sum[:], readFile(t, sig)); err != nil {
		t.Errorf("signature: %v", err)
	}
	ct, _ := rsa.EncryptPKCS1v15(rand.Reader, &decKey.PublicKey, msg)
	in := writeFile(t, "ct", ct)
	pt := filepath.Join(t.TempDir(), "pt")
	ptool(t, "--token-label", "YubiKey OpenPGP #12345678", "--decrypt", "--login", "--pin", modPIN, "--id", "02", "-m", "RSA-PKCS", "--input-file", in, "--output-file", pt)
	if got := readFile(t, pt); !bytes.Equal(got, msg) {
		t.Errorf("decrypted %q", got)
	}
}

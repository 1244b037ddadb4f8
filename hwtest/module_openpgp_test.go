//go:build hwtest

package hwtest

import (
	"bytes"
	"crypto"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"errors"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/p11-card/p11-card/cards/openpgp/pgptest"
	"github.com/p11-card/p11-card/cards/piv/pivtest"
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

// TestModuleOpenPGPBesidePIV puts a virtual YubiKey PIV card (reader 0) and a virtual
// OpenPGP card (reader 2) in the rig at once and drives both through one module with the
// real clients: the OpenPGP keys as PKCS#11 objects (Ed25519 as CKK_EC_EDWARDS, X25519 as
// CKK_EC_MONTGOMERY), EdDSA with pkcs11-tool, ssh-keygen -D and an ssh-agent holding the keys
// of both cards, p11tool --test-sign and the OpenSSL engine on the OpenPGP card's RSA and ECDSA keys.
func TestModuleOpenPGPBesidePIV(t *testing.T) {
	piv := modCard(t, pivtest.Options{})
	so, _ := modBuild(t)
	c, err := pgptest.New(pgptest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	_, sigKey, _ := ed25519.GenerateKey(rand.Reader)
	decKey, _ := ecdh.X25519().GenerateKey(rand.Reader)
	autKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	for i, k := range []crypto.PrivateKey{sigKey, decKey, autKey} {
		if err := c.PutKey(i, k, nil); err != nil {
			t.Fatal(err)
		}
	}
	insert(t, 2, c)
	const pgpLabel = "YubiKey OpenPGP #12345678"

	if out := ptool(t, "-L"); !strings.Contains(out, pgpLabel) || !strings.Contains(out, "YubiKey PIV #12345678") {
		t.Fatalf("-L does not list both tokens:\n%s", out)
	}
	objs := ptool(t, "--token-label", pgpLabel, "-O", "--type", "pubkey")
	for _, want := range []string{"EC_EDWARDS", "EC_MONTGOMERY", "RSA 2048"} {
		if !strings.Contains(objs, want) {
			t.Errorf("-O --type pubkey lacks %q:\n%s", want, objs)
		}
	}

	msg := []byte("signed by the OpenPGP card's Ed25519 key")
	data := writeFile(t, "data", msg)
	sig := filepath.Join(t.TempDir(), "sig")
	ptool(t, "--token-label", pgpLabel, "--sign", "--login", "--pin", modPIN, "--id", "01", "-m", "EDDSA", "--input-file", data, "--output-file", sig)
	if !ed25519.Verify(sigKey.Public().(ed25519.PublicKey), msg, readFile(t, sig)) {
		t.Error("EdDSA signature from the OpenPGP card rejected by crypto/ed25519")
	}

	// ssh-keygen -D: one process, one module, the keys of both cards.
	autLine := authorizedKey(t, autKey.Public())
	pivLine := authorizedKey(t, piv.PublicKey(0x9A))
	keys := runTool(t, "ssh-keygen", "-D", so)
	for name, line := range map[string]string{"OpenPGP AUT": autLine, "PIV 9A": pivLine} {
		if !strings.Contains(keys, line) {
			t.Errorf("ssh-keygen -D lacks the %s key %.50s…:\n%s", name, line, keys)
		}
	}
	dir := sshAgent(t, so)
	runTool(t, "ssh-add", "-s", so)
	sshAgentSigns(t, dir, autLine)
	sshAgentSigns(t, dir, pivLine)

	out := runTool(t, "p11tool", "--provider", so, "--login", "--set-pin", modPIN, "--list-privkeys", "pkcs11:token="+url.PathEscape(pgpLabel))
	m := regexp.MustCompile(`URL: (pkcs11:[^\n]*id=%03[^\n]*type=private[^\n]*)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("p11tool: no OpenPGP private key 03 in:\n%s", out)
	}
	if out := runTool(t, "p11tool", "--provider", so, "--login", "--set-pin", modPIN, "--test-sign", m[1]); !strings.Contains(out, "Verifying against public key in the token... ok") {
		t.Errorf("p11tool --test-sign on the OpenPGP card:\n%s", out)
	}

	// libp11 0.4.12 (Debian 12's OpenSSL engine) gives up enumerating a token's private
	// keys at the first key type it does not know, CKK_EC_EDWARDS included, whatever the
	// module: the engine is shown the card again with a P-256 signature key in place of the
	// Ed25519 one (and no X25519 key), as such a user's card would be.
	remove(t, 2)
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	decRSA, _ := rsa.GenerateKey(rand.Reader, 2048)
	if err := c.PutKey(0, ecKey, nil); err != nil {
		t.Fatal(err)
	}
	if err := c.PutKey(1, decRSA, nil); err != nil {
		t.Fatal(err)
	}
	insert(t, 2, c)
	engineDir(t)
	t.Setenv("PKCS11_MODULE_PATH", so)
	for _, k := range []struct {
		id  string
		pub crypto.PublicKey
	}{{"01", ecKey.Public()}, {"03", autKey.Public()}} {
		osig := filepath.Join(t.TempDir(), "osig")
		runTool(t, "openssl", "pkeyutl", "-engine", "pkcs11", "-keyform", "engine",
			"-inkey", "pkcs11:token="+url.PathEscape(pgpLabel)+";id=%"+k.id+";type=private?pin-value="+modPIN,
			"-sign", "-digest", "sha256", "-rawin", "-in", data, "-out", osig)
		sum := sha256.Sum256(msg)
		var err error
		switch pub := k.pub.(type) {
		case *rsa.PublicKey:
			err = rsa.VerifyPKCS1v15(pub, crypto.SHA256, sum[:], readFile(t, osig))
		case *ecdsa.PublicKey:
			if !ecdsa.VerifyASN1(pub, sum[:], readFile(t, osig)) {
				err = errors.New("ecdsa: bad signature")
			}
		}
		if err != nil {
			t.Errorf("OpenSSL engine signature with OpenPGP key %s: %v", k.id, err)
		}
	}
}

// authorizedKey is the authorized_keys line of pub, without comment or newline.
func authorizedKey(t *testing.T, pub crypto.PublicKey) string {
	t.Helper()
	k, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(k)))
}

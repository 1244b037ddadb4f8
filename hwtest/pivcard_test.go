//go:build hwtest

package hwtest

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/p11-card/p11-card/cards/piv/pivtest"
)

// These tests prove the virtual YubiKey (cards/piv/pivtest) faithful with software we did
// not write, through the rig's real pcscd: yubico-piv-tool, and pkcs11-tool over OpenSC's
// opensc-pkcs11.so and Yubico's libykcs11.so, with openssl checking the signatures.

const (
	openscModule = "/usr/lib/x86_64-linux-gnu/opensc-pkcs11.so"
	ykcs11Module = "/usr/lib/x86_64-linux-gnu/libykcs11.so"
)

// pivCard makes a virtual YubiKey and inserts it into reader 0 (a "Yubico YubiKey" name).
func pivCard(t *testing.T, opt pivtest.Options) *pivtest.Card {
	t.Helper()
	testRig(t)
	c, err := pivtest.New(opt)
	if err != nil {
		t.Fatal(err)
	}
	insert(t, 0, c)
	return c
}

// ypt runs yubico-piv-tool on the first "Yubico" reader.
func ypt(t *testing.T, args ...string) string {
	t.Helper()
	return runTool(t, "yubico-piv-tool", append([]string{"-r", "Yubico"}, args...)...)
}

func needModule(t *testing.T, path string) {
	t.Helper()
	if _, err := os.Stat(path); err != nil {
		missing(t, "PKCS#11 module %s: %v", path, err)
	}
}

// testCA issues certificates for public keys the card generated: yubico-piv-tool 2.2's
// selfsign-certificate is broken with OpenSSL 3 (Yubico/yubico-piv-tool#388), whatever the
// card, so tests import certificates made here instead.
type testCA struct {
	key  *ecdsa.PrivateKey
	cert *x509.Certificate
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "hwtest CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return &testCA{key: k, cert: c}
}

// issue reads a PEM public key file and writes a PEM certificate for it; returns its path.
func (ca *testCA) issue(t *testing.T, pubPath, cn string) string {
	t.Helper()
	b, err := os.ReadFile(pubPath)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		t.Fatalf("%s: no PEM", pubPath)
	}
	pub, err := x509.ParsePKIXPublicKey(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return ca.issueKey(t, pub, cn)
}

func (ca *testCA) issueKey(t *testing.T, pub crypto.PublicKey, cn string) string {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment | x509.KeyUsageKeyAgreement,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, pub, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), cn+".pem")
	writePEM(t, p, "CERTIFICATE", der)
	return p
}

func writePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// writePub writes the PEM public key of a certificate, for openssl.
func writePub(t *testing.T, dir, name string, pub crypto.PublicKey) string {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, name)
	writePEM(t, p, "PUBLIC KEY", der)
	return p
}

func samePub(t *testing.T, pubPath string, want crypto.PublicKey) {
	t.Helper()
	b, err := os.ReadFile(pubPath)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		t.Fatalf("%s: no PEM", pubPath)
	}
	got, err := x509.ParsePKIXPublicKey(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if e, ok := got.(interface{ Equal(crypto.PublicKey) bool }); !ok || !e.Equal(want) {
		t.Fatalf("%s: the tool's public key is not the card's", pubPath)
	}
}

func mustContain(t *testing.T, out string, want ...string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(out, w) {
			t.Fatalf("output lacks %q:\n%s", w, out)
		}
	}
}

// ypt22 reports whether yubico-piv-tool predates 2.3, which added AES management keys.
func ypt22(t *testing.T) bool {
	t.Helper()
	out, _ := exec.Command(needTool(t, "yubico-piv-tool"), "--version").CombinedOutput()
	m := regexp.MustCompile(`(\d+)\.(\d+)\.(\d+)`).FindStringSubmatch(string(out))
	return m != nil && (m[1] == "1" || (m[1] == "2" && (m[2] == "0" || m[2] == "1" || m[2] == "2")))
}

// TestPIVCardYubicoPIVTool drives the card with yubico-piv-tool, Yubico's own client (it
// uses the Yubico extensions: version, serial, metadata, attestation). The management key
// is 3DES: yubico-piv-tool 2.2 knows no AES key (see TestPIVCardAESManagementKey).
func TestPIVCardYubicoPIVTool(t *testing.T) {
	c := pivCard(t, pivtest.Options{MgmtAlg: pivtest.AlgTDES, Serial: 20251122})
	dir := t.TempDir()
	ca := newTestCA(t)

	out := ypt(t, "-a", "status")
	mustContain(t, out, "Version:\t5.7.1", "Serial Number:\t20251122", "PIN tries left:\t3")

	slots := []struct{ slot, alg string }{{"9a", "ECCP256"}, {"9c", "RSA2048"}, {"9d", "RSA1024"}, {"9e", "ECCP384"}}
	certs := map[string]string{}
	for _, s := range slots {
		pub := filepath.Join(dir, s.slot+".pub")
		ypt(t, "-a", "generate", "-s", s.slot, "-A", s.alg, "-o", pub)
		ref := map[string]byte{"9a": 0x9A, "9c": 0x9C, "9d": 0x9D, "9e": 0x9E}[s.slot]
		samePub(t, pub, c.PublicKey(ref))
		certs[s.slot] = ca.issue(t, pub, "hwtest "+s.slot)
		ypt(t, "-a", "import-certificate", "-s", s.slot, "-i", certs[s.slot])
	}
	mustContain(t, ypt(t, "-a", "verify-pin", "-P", "123456", "-a", "test-signature", "-s", "9a", "-i", certs["9a"]), "Successful ECDSA verification")
	// 9C is PIN-always: the tool verifies right before signing, as a YubiKey needs.
	mustContain(t, ypt(t, "-a", "verify-pin", "-P", "123456", "-a", "test-signature", "-s", "9c", "-i", certs["9c"]), "Successful RSA verification")
	mustContain(t, ypt(t, "-a", "verify-pin", "-P", "123456", "-a", "test-decipher", "-s", "9d", "-i", certs["9d"]), "Successfully performed RSA decryption")
	// 9E is PIN-never: no VERIFY.
	mustContain(t, ypt(t, "-a", "test-decipher", "-s", "9e", "-i", certs["9e"]), "Successfully performed ECDH exchange")
	// Without the PIN a PIN-once key refuses.
	if out, err := runToolErr(t, "yubico-piv-tool", "-r", "Yubico", "-a", "test-signature", "-s", "9a", "-i", certs["9a"]); err == nil {
		t.Fatalf("signature without PIN worked:\n%s", out)
	}

	out = ypt(t, "-a", "status")
	mustContain(t, out, "Slot 9a:", "ECCP256", "CN=hwtest 9a", "Slot 9c:", "RSA2048", "Slot 9d:", "RSA1024", "Slot 9e:", "ECCP384")

	// Attestation: an X.509 certificate for the generated key, signed by F9.
	att := ypt(t, "-a", "attest", "-s", "9a")
	f9 := ypt(t, "-a", "read-certificate", "-s", "f9")
	attCert, f9Cert := parsePEMCert(t, att), parsePEMCert(t, f9)
	if err := attCert.CheckSignatureFrom(f9Cert); err != nil {
		t.Fatalf("attestation not signed by the F9 key: %v", err)
	}
	if e, ok := attCert.PublicKey.(interface{ Equal(crypto.PublicKey) bool }); !ok || !e.Equal(c.PublicKey(0x9A)) {
		t.Fatal("attestation certifies another key")
	}

	// PIN and PUK management.
	mustContain(t, ypt(t, "-a", "change-pin", "-P", "123456", "-N", "24681357"), "Successfully changed the pin code")
	mustContain(t, ypt(t, "-a", "verify-pin", "-P", "24681357"), "Successfully verified PIN")
	mustContain(t, ypt(t, "-a", "change-puk", "-P", "12345678", "-N", "87654321"), "Successfully changed the puk code")
	for i := 0; i < 3; i++ {
		if _, err := runToolErr(t, "yubico-piv-tool", "-r", "Yubico", "-a", "verify-pin", "-P", "000000"); err == nil {
			t.Fatal("a wrong PIN verified")
		}
	}
	if pin, _ := c.Retries(); pin != 0 {
		t.Fatalf("PIN tries left %d, want 0", pin)
	}
	mustContain(t, ypt(t, "-a", "status"), "PIN tries left:\t0")
	mustContain(t, ypt(t, "-a", "unblock-pin", "-P", "87654321", "-N", "135790"), "Successfully unblocked the pin code")
	mustContain(t, ypt(t, "-a", "verify-pin", "-P", "135790"), "Successfully verified PIN")

	// A new management key, then administration with it.
	const newKey = "0807060504030201080706050403020108070605040302ab"
	mustContain(t, ypt(t, "-a", "set-mgm-key", "-n", newKey), "Successfully set new management key")
	if _, err := runToolErr(t, "yubico-piv-tool", "-r", "Yubico", "-a", "set-chuid"); err == nil {
		t.Fatal("the old management key still works")
	}
	mustContain(t, ypt(t, "-k"+newKey, "-a", "set-chuid", "-a", "set-ccc"), "Successfully set new CHUID", "Successfully set new CCC")
	out = ypt(t, "-a", "status")
	if regexp.MustCompile(`CHUID:\s+No data`).MatchString(out) || regexp.MustCompile(`CCC:\s+No data`).MatchString(out) {
		t.Fatalf("CHUID/CCC not set:\n%s", out)
	}
	chuid, ok := c.Object(pivtest.ObjectCHUID)
	if !ok || !strings.Contains(ypt(t, "-a", "read-object", "--id", "0x5fc102"), strings.ToLower(hexString(chuid))) {
		t.Fatal("read-object does not show the CHUID the card holds")
	}
	ypt(t, "-k"+newKey, "-a", "delete-certificate", "-s", "9d")
	if _, ok := c.Object(0x5FC10B); ok {
		t.Fatal("certificate 9d not deleted")
	}
}

func hexString(b []byte) string {
	const digits = "0123456789abcdef"
	out := make([]byte, 0, 2*len(b))
	for _, c := range b {
		out = append(out, digits[c>>4], digits[c&15])
	}
	return string(out)
}

func parsePEMCert(t *testing.T, s string) *x509.Certificate {
	t.Helper()
	i := strings.Index(s, "-----BEGIN CERTIFICATE-----")
	if i < 0 {
		t.Fatalf("no certificate in:\n%s", s)
	}
	blk, _ := pem.Decode([]byte(s[i:]))
	if blk == nil {
		t.Fatalf("bad PEM:\n%s", s)
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestPIVCardAESManagementKey: firmware 5.7 ships an AES-192 management key. Tools that
// only know 3DES fail to authenticate, as they do with a real 5.7 YubiKey; newer ones work.
func TestPIVCardAESManagementKey(t *testing.T) {
	c := pivCard(t, pivtest.Options{})
	out, err := runToolErr(t, "yubico-piv-tool", "-r", "Yubico", "-a", "generate", "-s", "9a", "-A", "ECCP256")
	if ypt22(t) {
		if err == nil {
			t.Fatalf("yubico-piv-tool 2.2 authenticated with 3DES against an AES-192 key:\n%s", out)
		}
		mustContain(t, out, "authentication")
		if c.PublicKey(0x9A) != nil {
			t.Fatal("a key was generated without authentication")
		}
		return
	}
	if err != nil {
		t.Fatalf("generate with the default AES key: %v\n%s", err, out)
	}
}

// provisioned is a card with keys and self-signed certificates in 9a (P-256), 9c (RSA
// 2048, PIN always), 9d (RSA 2048) and 9e (P-384), set up without APDUs.
func provisioned(t *testing.T) (*pivtest.Card, map[byte]*x509.Certificate) {
	t.Helper()
	c, err := pivtest.New(pivtest.Options{MgmtAlg: pivtest.AlgTDES})
	if err != nil {
		t.Fatal(err)
	}
	certs := map[byte]*x509.Certificate{}
	for slot, alg := range map[byte]byte{0x9A: pivtest.AlgECCP256, 0x9C: pivtest.AlgRSA2048, 0x9D: pivtest.AlgRSA2048, 0x9E: pivtest.AlgECCP384} {
		cert, err := c.GenerateInSlot(slot, alg)
		if err != nil {
			t.Fatal(err)
		}
		certs[slot] = cert
	}
	if err := c.SetCHUID(); err != nil {
		t.Fatal(err)
	}
	testRig(t)
	insert(t, 0, c)
	return c, certs
}

// p11Sign signs data.txt with pkcs11-tool and checks the signature with openssl.
func p11Sign(t *testing.T, module, id, mech string, pub crypto.PublicKey, extra ...string) {
	t.Helper()
	dir := t.TempDir()
	data := filepath.Join(dir, "data.txt")
	if err := os.WriteFile(data, []byte("signed through pcscd by "+filepath.Base(module)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	sig := filepath.Join(dir, "sig")
	args := append([]string{"--module", module, "--login", "--pin", "123456", "--sign", "--id", id, "-m", mech, "-i", data, "-o", sig}, extra...)
	runTool(t, "pkcs11-tool", args...)
	pubPath := writePub(t, dir, "pub.pem", pub)
	out := runTool(t, "openssl", "dgst", "-sha256", "-verify", pubPath, "-signature", sig, data)
	mustContain(t, out, "Verified OK")
}

// TestPIVCardOpenSC lists and uses the card through OpenSC's PKCS#11 module.
func TestPIVCardOpenSC(t *testing.T) {
	needModule(t, openscModule)
	_, certs := provisioned(t)
	out := runTool(t, "pkcs11-tool", "--module", openscModule, "-L")
	mustContain(t, out, "Yubico YubiKey", "token initialized", "PIN initialized")
	out = runTool(t, "pkcs11-tool", "--module", openscModule, "-O")
	for _, want := range []string{
		"Certificate for PIV Authentication", "Certificate for Digital Signature",
		"Certificate for Key Management", "Certificate for Card Authentication",
		"PIV AUTH pubkey", "SIGN pubkey", "KEY MAN pubkey", "CARD AUTH pubkey",
		"subject:    DN: CN=pivtest 9A", "Card Holder Unique Identifier",
	} {
		mustContain(t, out, want)
	}
	p11Sign(t, openscModule, "01", "ECDSA-SHA256", certs[0x9A].PublicKey, "--signature-format", "openssl")
	p11Sign(t, openscModule, "02", "SHA256-RSA-PKCS", certs[0x9C].PublicKey) // 9C: PIN always
	p11Sign(t, openscModule, "03", "SHA256-RSA-PKCS", certs[0x9D].PublicKey)
	p11Sign(t, openscModule, "04", "ECDSA-SHA256", certs[0x9E].PublicKey, "--signature-format", "openssl")

	// RSA decryption with the key management key.
	dir := t.TempDir()
	plain, enc, dec := filepath.Join(dir, "plain"), filepath.Join(dir, "enc"), filepath.Join(dir, "dec")
	if err := os.WriteFile(plain, []byte("session key"), 0o600); err != nil {
		t.Fatal(err)
	}
	pub := writePub(t, dir, "9d.pem", certs[0x9D].PublicKey)
	runTool(t, "openssl", "pkeyutl", "-encrypt", "-pubin", "-inkey", pub, "-in", plain, "-out", enc)
	runTool(t, "pkcs11-tool", "--module", openscModule, "--login", "--pin", "123456", "--decrypt", "--id", "03", "-m", "RSA-PKCS", "-i", enc, "-o", dec)
	if got, _ := os.ReadFile(dec); !bytes.Equal(got, []byte("session key")) {
		t.Fatalf("decrypted %q", got)
	}
}

// TestPIVCardYKCS11 lists and uses the card through Yubico's libykcs11.
func TestPIVCardYKCS11(t *testing.T) {
	needModule(t, ykcs11Module)
	_, certs := provisioned(t)
	out := runTool(t, "pkcs11-tool", "--module", ykcs11Module, "-L")
	mustContain(t, out, "YubiKey PIV #12345678", "Yubico", "serial num         : 12345678")
	out = runTool(t, "pkcs11-tool", "--module", ykcs11Module, "-O")
	for _, want := range []string{
		"X.509 Certificate for PIV Authentication", "X.509 Certificate for Digital Signature",
		"X.509 Certificate for Key Management", "X.509 Certificate for Card Authentication",
		"X.509 Certificate for PIV Attestation", "Public key for PIV Authentication",
		"Public key for Digital Signature", "Card Holder Unique Identifier", "Discovery Object",
	} {
		mustContain(t, out, want)
	}
	out = runTool(t, "pkcs11-tool", "--module", ykcs11Module, "--login", "--pin", "123456", "-O", "--type", "privkey")
	mustContain(t, out, "Private Key Object; EC", "Private Key Object; RSA", "ID:         01", "ID:         02")
	p11Sign(t, ykcs11Module, "01", "ECDSA-SHA256", certs[0x9A].PublicKey, "--signature-format", "openssl")
	p11Sign(t, ykcs11Module, "02", "SHA256-RSA-PKCS", certs[0x9C].PublicKey)
	p11Sign(t, ykcs11Module, "04", "ECDSA-SHA256", certs[0x9E].PublicKey, "--signature-format", "openssl")
}

// TestPIVCardPersists: a PIN change made by a tool survives removal and a new card
// object reading the same state file (a process restart).
func TestPIVCardPersists(t *testing.T) {
	state := filepath.Join(t.TempDir(), "yubikey.json")
	pivCard(t, pivtest.Options{StatePath: state, MgmtAlg: pivtest.AlgTDES})
	dir := t.TempDir()
	pub := filepath.Join(dir, "9a.pub")
	ypt(t, "-a", "generate", "-s", "9a", "-A", "ECCP256", "-o", pub)
	ypt(t, "-a", "change-pin", "-P", "123456", "-N", "97531864")
	remove(t, 0)

	c, err := pivtest.New(pivtest.Options{StatePath: state})
	if err != nil {
		t.Fatal(err)
	}
	samePub(t, pub, c.PublicKey(0x9A))
	insert(t, 1, c)
	out := runTool(t, "yubico-piv-tool", "-r", testRig(t).ReaderName(1), "-a", "verify-pin", "-P", "97531864")
	mustContain(t, out, "Successfully verified PIN")
}

// TestPIVCardYubicoPIVToolAdmin covers the administrative side: IMPORT KEY with policies,
// objects, SET PIN RETRIES, and RESET after blocking PIN and PUK.
func TestPIVCardYubicoPIVToolAdmin(t *testing.T) {
	c := pivCard(t, pivtest.Options{MgmtAlg: pivtest.AlgTDES})
	dir := t.TempDir()
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	for name, k := range map[string]crypto.PrivateKey{"rsa.pem": rsaKey, "ec.pem": ecKey} {
		der, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		writePEM(t, filepath.Join(dir, name), "PRIVATE KEY", der)
	}
	mustContain(t, ypt(t, "-a", "import-key", "-s", "9c", "-i", filepath.Join(dir, "rsa.pem"), "--pin-policy=never"), "Successfully imported a new private key")
	mustContain(t, ypt(t, "-a", "import-key", "-s", "82", "-i", filepath.Join(dir, "ec.pem"), "--touch-policy=cached"), "Successfully imported a new private key")
	if !c.PublicKey(0x9C).(interface{ Equal(crypto.PublicKey) bool }).Equal(&rsaKey.PublicKey) ||
		!c.PublicKey(0x82).(interface{ Equal(crypto.PublicKey) bool }).Equal(&ecKey.PublicKey) {
		t.Fatal("imported keys differ from the card's")
	}
	cert := newTestCA(t).issueKey(t, &rsaKey.PublicKey, "imported")
	ypt(t, "-a", "import-certificate", "-s", "9c", "-i", cert)
	// PIN policy never, set at import: no VERIFY needed even in the signature slot.
	mustContain(t, ypt(t, "-a", "test-signature", "-s", "9c", "-i", cert), "Successful RSA verification")
	// Imported keys have no attestation.
	if out, err := runToolErr(t, "yubico-piv-tool", "-r", "Yubico", "-a", "attest", "-s", "9c"); err == nil {
		t.Fatalf("attestation of an imported key:\n%s", out)
	}

	// Objects: key history written and read back.
	obj := filepath.Join(dir, "obj")
	if err := os.WriteFile(obj, []byte("c10101c20100"), 0o600); err != nil {
		t.Fatal(err)
	}
	ypt(t, "-a", "write-object", "--id", "0x5fc10c", "-i", obj)
	mustContain(t, ypt(t, "-a", "read-object", "--id", "0x5fc10c"), "c10101c20100")
	if v, ok := c.Object(pivtest.ObjectKeyHistory); !ok || !bytes.Equal(v, []byte{0xC1, 1, 1, 0xC2, 1, 0}) {
		t.Fatalf("key history %X", v)
	}

	// SET PIN RETRIES needs the PIN and the management key, and resets both to defaults.
	ypt(t, "-a", "change-pin", "-P", "123456", "-N", "654321")
	mustContain(t, ypt(t, "-a", "verify-pin", "-P", "654321", "-a", "pin-retries", "--pin-retries", "5", "--puk-retries", "4"), "Successfully changed pin retries to 5 and puk retries to 4")
	mustContain(t, ypt(t, "-a", "status"), "PIN tries left:\t5")
	mustContain(t, ypt(t, "-a", "verify-pin", "-P", "123456"), "Successfully verified PIN")

	// RESET is refused until PIN and PUK are blocked.
	if out, err := runToolErr(t, "yubico-piv-tool", "-r", "Yubico", "-a", "reset"); err == nil {
		t.Fatalf("reset with PIN and PUK unblocked:\n%s", out)
	}
	for i := 0; i < 5; i++ {
		runToolErr(t, "yubico-piv-tool", "-r", "Yubico", "-a", "verify-pin", "-P", "000000")
	}
	for i := 0; i < 4; i++ {
		runToolErr(t, "yubico-piv-tool", "-r", "Yubico", "-a", "unblock-pin", "-P", "00000000", "-N", "111111")
	}
	if pin, puk := c.Retries(); pin != 0 || puk != 0 {
		t.Fatalf("tries left %d/%d, want blocked", pin, puk)
	}
	mustContain(t, ypt(t, "-a", "reset"), "Successfully reset the application")
	mustContain(t, ypt(t, "-a", "status"), "PIN tries left:\t3")
	if c.PublicKey(0x9C) != nil || c.PublicKey(0x82) != nil {
		t.Fatal("keys survived RESET")
	}
	if c.PublicKey(0xF9) == nil {
		t.Fatal("RESET lost the attestation key")
	}
}

// TestPIVCardPKCS11SelfTest runs pkcs11-tool's own test suite (digests, signatures with
// every RSA mechanism, verification, decryption) over both modules.
func TestPIVCardPKCS11SelfTest(t *testing.T) {
	for _, module := range []string{openscModule, ykcs11Module} {
		t.Run(filepath.Base(module), func(t *testing.T) {
			needModule(t, module)
			provisioned(t)
			out := runTool(t, "pkcs11-tool", "--module", module, "--login", "--pin", "123456", "--test")
			mustContain(t, out, "No errors")
		})
	}
}

// TestPIVCardFirmware4 models a YubiKey 4.3: no GET SERIAL in PIV, so yubico-piv-tool and
// ykcs11 read the serial from the OTP application, and RSA/EC P-256 with 3DES is all.
func TestPIVCardFirmware4(t *testing.T) {
	c := pivCard(t, pivtest.Options{Firmware: [3]byte{4, 3, 7}, Serial: 4430000})
	mustContain(t, ypt(t, "-a", "status"), "Version:\t4.3.7", "Serial Number:\t4430000")
	needModule(t, ykcs11Module)
	mustContain(t, runTool(t, "pkcs11-tool", "--module", ykcs11Module, "-L"), "YubiKey PIV #4430000")
	pub := filepath.Join(t.TempDir(), "9a.pub")
	ypt(t, "-a", "generate", "-s", "9a", "-A", "ECCP256", "-o", pub) // default 3DES key
	samePub(t, pub, c.PublicKey(0x9A))
}

// TestPIVCardECDH derives an ECDH secret with the card's 9D key through both modules
// (GENERAL AUTHENTICATE with tag 85) and compares it with openssl's.
func TestPIVCardECDH(t *testing.T) {
	c, err := pivtest.New(pivtest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	cert, err := c.GenerateInSlot(0x9D, pivtest.AlgECCP256)
	if err != nil {
		t.Fatal(err)
	}
	testRig(t)
	insert(t, 0, c)
	dir := t.TempDir()
	peer, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	peerDER, err := x509.MarshalPKIXPublicKey(&peer.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	peerPath := filepath.Join(dir, "peer.der")
	if err := os.WriteFile(peerPath, peerDER, 0o600); err != nil {
		t.Fatal(err)
	}
	pe, _ := peer.ECDH()
	cardPub, _ := cert.PublicKey.(*ecdsa.PublicKey).ECDH()
	want, err := pe.ECDH(cardPub)
	if err != nil {
		t.Fatal(err)
	}
	for _, module := range []string{openscModule, ykcs11Module} {
		t.Run(filepath.Base(module), func(t *testing.T) {
			needModule(t, module)
			out := filepath.Join(t.TempDir(), "secret")
			runTool(t, "pkcs11-tool", "--module", module, "--login", "--pin", "123456", "--derive", "-m", "ECDH1-DERIVE", "--id", "03", "-i", peerPath, "-o", out)
			got, err := os.ReadFile(out)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("secret %X, want %X", got, want)
			}
		})
	}
}

// TestPIVCardYKCS11KeyGen generates keys through ykcs11 (SO login with the 3DES management
// key, GENERATE, then ykcs11 writes a certificate) and signs with the new EC key.
func TestPIVCardYKCS11KeyGen(t *testing.T) {
	needModule(t, ykcs11Module)
	c := pivCard(t, pivtest.Options{MgmtAlg: pivtest.AlgTDES})
	const so = "010203040506070801020304050607080102030405060708"
	out := runTool(t, "pkcs11-tool", "--module", ykcs11Module, "--login", "--login-type", "so", "--so-pin", so,
		"--keypairgen", "--key-type", "EC:prime256v1", "--id", "05")
	mustContain(t, out, "Public Key Object; EC", "ID:         05")
	pub := c.PublicKey(0x82) // ykcs11: CKA_ID 05 is retired slot 82
	if pub == nil {
		t.Fatal("no key in slot 82")
	}
	p11Sign(t, ykcs11Module, "05", "ECDSA-SHA256", pub, "--signature-format", "openssl")
	out = runTool(t, "pkcs11-tool", "--module", ykcs11Module, "--login", "--login-type", "so", "--so-pin", so,
		"--keypairgen", "--key-type", "rsa:2048", "--id", "01")
	mustContain(t, out, "Public Key Object; RSA 2048 bits")
	if c.PublicKey(0x9A) == nil {
		t.Fatal("no key in slot 9A")
	}
}

// TestPIVCard25519Objects: a 5.7 card with Ed25519 and X25519 keys (and certificates for
// them) beside the classic ones still lists through both modules, which predate 25519
// support in PIV, and the classic keys keep working.
func TestPIVCard25519Objects(t *testing.T) {
	c, err := pivtest.New(pivtest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ec, err := c.GenerateInSlot(0x9A, pivtest.AlgECCP256)
	if err != nil {
		t.Fatal(err)
	}
	for slot, alg := range map[byte]byte{0x9C: pivtest.AlgEd25519, 0x9D: pivtest.AlgX25519} {
		if _, err := c.GenerateInSlot(slot, alg); err != nil {
			t.Fatal(err)
		}
	}
	testRig(t)
	insert(t, 0, c)
	for _, module := range []string{openscModule, ykcs11Module} {
		t.Run(filepath.Base(module), func(t *testing.T) {
			needModule(t, module)
			out := runTool(t, "pkcs11-tool", "--module", module, "-O")
			mustContain(t, out, "Certificate for Digital Signature", "Certificate for Key Management")
			if module == openscModule { // OpenSC reads the 25519 keys from their certificates
				mustContain(t, out, "EC_EDWARDS", "EC_MONTGOMERY")
			}
			p11Sign(t, module, "01", "ECDSA-SHA256", ec.PublicKey, "--signature-format", "openssl")
		})
	}
}

//go:build hwtest

package hwtest

import (
	"bufio"
	"bytes"
	"context"
	"crypto"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"debug/elf"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/p11-card/p11-card/cards/piv/pivtest"
)

// These tests load the built module (bin/p11-card-pkcs11.so, built here from this tree)
// into real PKCS#11 consumers against the virtual YubiKey in the rig's pcscd:
// pkcs11-tool (OpenSC), p11tool (GnuTLS), OpenSSH, OpenSSL's pkcs11 engine, NSS, p11-kit
// and a Go client (hwtest/p11client, github.com/miekg/pkcs11).

const (
	modPIN  = "123456"
	modMgmt = "010203040506070801020304050607080102030405060708"
)

var (
	modOnce           sync.Once
	modDir, modSO     string
	modClient, modErr error
	modClientPath     string
)

// modBuild builds the module and the Go client once per run.
func modBuild(t testing.TB) (so, client string) {
	t.Helper()
	modOnce.Do(func() {
		modDir, modErr = os.MkdirTemp("", "p11card-module-")
		if modErr != nil {
			return
		}
		modSO = filepath.Join(modDir, "p11-card-pkcs11.so")
		gobin := filepath.Join(runtime.GOROOT(), "bin", "go")
		// The Makefile's linker flags (packed relocations where the toolchain has them),
		// so that tests and the bench run the module make builds.
		args := []string{"build", "-buildmode=c-shared", "-o", modSO}
		if f := os.Getenv("P11CARD_MODULE_LDFLAGS"); f != "" {
			args = append(args, "-ldflags="+f)
		}
		if out, err := exec.Command(gobin, append(args, "../p11")...).CombinedOutput(); err != nil {
			modErr = fmt.Errorf("build module: %v\n%s", err, out)
			return
		}
		modClientPath = filepath.Join(modDir, "p11client")
		if out, err := exec.Command(gobin, "build", "-o", modClientPath, "./p11client").CombinedOutput(); err != nil {
			modClient = fmt.Errorf("build p11client: %v\n%s", err, out)
		}
	})
	if modErr != nil {
		t.Fatal(modErr)
	}
	if modClient != nil {
		t.Fatal(modClient)
	}
	return modSO, modClientPath
}

// modCard provisions a virtual YubiKey (9A RSA, 9C P-256 PIN-always, 9D RSA, 9E P-256,
// 82 P-256 for ECDH) and inserts it into reader 0.
func modCard(t *testing.T, opt pivtest.Options) *pivtest.Card {
	t.Helper()
	testRig(t)
	c := modKeys(t, opt)
	insert(t, 0, c)
	return c
}

// modKeys is modCard's virtual YubiKey with its keys, not yet inserted.
func modKeys(t *testing.T, opt pivtest.Options) *pivtest.Card {
	t.Helper()
	c, err := pivtest.New(opt)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []struct{ slot, alg byte }{{0x9A, pivtest.AlgRSA2048}, {0x9C, pivtest.AlgECCP256}, {0x9D, pivtest.AlgRSA2048}, {0x9E, pivtest.AlgECCP256}, {0x82, pivtest.AlgECCP256}} {
		if _, err := c.GenerateInSlot(s.slot, s.alg); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

// ptool runs pkcs11-tool with our module.
func ptool(t *testing.T, args ...string) string {
	t.Helper()
	so, _ := modBuild(t)
	return runTool(t, "pkcs11-tool", append([]string{"--module", so}, args...)...)
}

func ptoolErr(t *testing.T, args ...string) (string, error) {
	t.Helper()
	so, _ := modBuild(t)
	return runToolErr(t, "pkcs11-tool", append([]string{"--module", so}, args...)...)
}

func writeFile(t *testing.T, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func readFile(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestModuleExportsOnlyCryptoki(t *testing.T) {
	so, _ := modBuild(t)
	out, err := exec.Command("nm", "-D", "--defined-only", so).CombinedOutput()
	if err != nil {
		missing(t, "nm: %v %s", err, out)
	}
	n := 0
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		if len(f) < 3 {
			continue
		}
		if !strings.HasPrefix(f[2], "C_") {
			t.Errorf("exported symbol %s", f[2])
		}
		n++
	}
	if n != 92 {
		t.Errorf("%d C_ symbols, want 68 (2.40) + 24 (3.0)", n)
	}
}

// The module needs libpcsclite and libc, nothing else: libusb (and libudev behind it)
// would be loaded, relocated and initialised in every application that loads us, for USB
// identities only the CLI shows. Nor does it carry the test rig's packages (virtual
// cards, fakes), or crypto/x509 and the network packages behind it (internal/cert reads
// certificates, and shows those x509 refuses).
func TestModuleDependencies(t *testing.T) {
	so, _ := modBuild(t)
	out, err := exec.Command(filepath.Join(runtime.GOROOT(), "bin", "go"), "list", "-deps", "../p11").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, pkg := range strings.Fields(string(out)) {
		ours, isOurs := strings.CutPrefix(pkg, "github.com/p11-card/p11-card/")
		if pkg == "github.com/google/gousb" || pkg == "crypto/x509" || pkg == "net" ||
			isOurs && (strings.Contains(ours, "test") || ours == "cards/vcard" || ours == "pcsc/usb") {
			t.Errorf("the module links %s", pkg)
		}
	}
	f, err := elf.Open(so)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	libs, err := f.ImportedLibraries()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range libs {
		if !strings.HasPrefix(l, "libpcsclite.so") && !strings.HasPrefix(l, "libc.so") && !strings.HasPrefix(l, "libpthread.so") {
			t.Errorf("module needs %s (all: %v)", l, libs)
		}
	}
}

// With the Makefile's packed relocations (P11CARD_MODULE_LDFLAGS set, as make sets it
// where the toolchain has them), the loader finds a DT_RELR table and almost no RELA
// entries: the module's 15000 pointer fix-ups read from 6 KB instead of 370 KB.
func TestModulePackedRelocations(t *testing.T) {
	so, _ := modBuild(t)
	if !strings.Contains(os.Getenv("P11CARD_MODULE_LDFLAGS"), "pack-relative-relocs") {
		t.Skip("P11CARD_MODULE_LDFLAGS does not ask for packed relocations (make sets it where ld has them)")
	}
	f, err := elf.Open(so)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	const dtRELRSZ = elf.DynTag(35) // the gABI's number; debug/elf has no name for it
	relr, err := f.DynValue(dtRELRSZ)
	if err != nil || len(relr) != 1 || relr[0] == 0 {
		t.Fatalf("no DT_RELR table (DT_RELRSZ %v, %v)", relr, err)
	}
	rela, err := f.DynValue(elf.DT_RELASZ)
	if err != nil {
		t.Fatal(err)
	}
	if len(rela) == 1 && rela[0] > 16<<10 {
		t.Errorf("%d bytes of RELA relocations beside %d of RELR", rela[0], relr[0])
	}
}

func TestModulePkcs11ToolInfo(t *testing.T) {
	modCard(t, pivtest.Options{})
	if out := ptool(t, "-I"); !strings.Contains(out, "p11-card") || !strings.Contains(out, "2.40") {
		t.Errorf("-I:\n%s", out)
	}
	out := ptool(t, "-L")
	for _, want := range []string{"Yubico YubiKey", "token label", "YubiKey PIV #12345678", "login required", "PIN initialized"} {
		if !strings.Contains(out, want) {
			t.Errorf("-L lacks %q:\n%s", want, out)
		}
	}
	ptool(t, "-T")
	out = ptool(t, "-M")
	for _, want := range []string{"SHA256-RSA-PKCS-PSS", "ECDSA-SHA256", "ECDH1-DERIVE", "RSA-PKCS-OAEP", "RSA-X-509", "SHA256"} {
		if !strings.Contains(out, want) {
			t.Errorf("-M lacks %q:\n%s", want, out)
		}
	}
	pub := ptool(t, "-O")
	if strings.Contains(pub, "Private Key Object") {
		t.Errorf("private keys listed before login:\n%s", pub)
	}
	all := ptool(t, "-O", "--login", "--pin", modPIN)
	for _, want := range []string{"Private Key Object; RSA", "Private Key Object; EC", "Certificate Object", "Public Key Object; RSA 2048 bits", "ID:         02", "Access:     always authenticate"} {
		if !strings.Contains(all, want) {
			t.Errorf("-O --login lacks %q:\n%s", want, all)
		}
	}
}

func TestModulePkcs11ToolSignVerify(t *testing.T) {
	c := modCard(t, pivtest.Options{})
	data := writeFile(t, "data", []byte("data to be signed"))
	sum := sha256.Sum256([]byte("data to be signed"))
	dir := t.TempDir()
	for _, tc := range []struct {
		id, mech string
		slot     byte
	}{
		{"01", "SHA256-RSA-PKCS", 0x9A},
		{"01", "SHA256-RSA-PKCS-PSS", 0x9A},
		{"04", "ECDSA-SHA256", 0x9E},
		{"02", "ECDSA-SHA256", 0x9C}, // PIN always: pkcs11-tool logs in context-specific
	} {
		t.Run(tc.id+"-"+tc.mech, func(t *testing.T) {
			sig := filepath.Join(dir, tc.id+tc.mech+".sig")
			ptool(t, "--sign", "--login", "--pin", modPIN, "--id", tc.id, "-m", tc.mech, "--input-file", data, "--output-file", sig)
			s := readFile(t, sig)
			switch pub := c.PublicKey(tc.slot).(type) {
			case *rsa.PublicKey:
				var err error
				if strings.Contains(tc.mech, "PSS") {
					err = rsa.VerifyPSS(pub, crypto.SHA256, sum[:], s, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthAuto})
				} else {
					err = rsa.VerifyPKCS1v15(pub, crypto.SHA256, sum[:], s)
				}
				if err != nil {
					t.Fatalf("signature rejected by crypto/rsa: %v", err)
				}
			case *ecdsa.PublicKey:
				if len(s) != 64 || !ecdsa.Verify(pub, sum[:], new(bigInt).SetBytes(s[:32]), new(bigInt).SetBytes(s[32:])) {
					t.Fatalf("ECDSA signature rejected (%d bytes)", len(s))
				}
			}
			out := ptool(t, "--verify", "--id", tc.id, "-m", tc.mech, "--input-file", data, "--signature-file", sig)
			if !strings.Contains(out, "Signature is valid") {
				t.Fatalf("verify:\n%s", out)
			}
		})
	}
}

func TestModulePkcs11ToolDecryptDerive(t *testing.T) {
	c := modCard(t, pivtest.Options{})
	msg := []byte("a secret for 9D")
	ct, err := rsa.EncryptPKCS1v15(rand.Reader, c.PublicKey(0x9D).(*rsa.PublicKey), msg)
	if err != nil {
		t.Fatal(err)
	}
	in := writeFile(t, "ct", ct)
	outp := filepath.Join(t.TempDir(), "pt")
	ptool(t, "--decrypt", "--login", "--pin", modPIN, "--id", "03", "-m", "RSA-PKCS", "--input-file", in, "--output-file", outp)
	if got := readFile(t, outp); !bytes.Equal(got, msg) {
		t.Errorf("decrypted %q", got)
	}
	ct, _ = rsa.EncryptOAEP(sha256.New(), rand.Reader, c.PublicKey(0x9D).(*rsa.PublicKey), msg, nil)
	in = writeFile(t, "ct2", ct)
	ptool(t, "--decrypt", "--login", "--pin", modPIN, "--id", "03", "-m", "RSA-PKCS-OAEP", "--hash-algorithm", "SHA256", "--mgf", "MGF1-SHA256", "--input-file", in, "--output-file", outp)
	if got := readFile(t, outp); !bytes.Equal(got, msg) {
		t.Errorf("OAEP decrypted %q", got)
	}
	// ECDH with 82: the peer's public key as SubjectPublicKeyInfo DER.
	peer, _ := ecdh.P256().GenerateKey(rand.Reader)
	spki, _ := x509.MarshalPKIXPublicKey(peer.PublicKey())
	pin := writeFile(t, "peer.der", spki)
	secret := filepath.Join(t.TempDir(), "secret")
	ptool(t, "--derive", "--login", "--pin", modPIN, "--id", "05", "-m", "ECDH1-DERIVE", "--input-file", pin, "--output-file", secret)
	cp, _ := c.PublicKey(0x82).(*ecdsa.PublicKey).ECDH()
	want, _ := peer.ECDH(cp)
	if got := readFile(t, secret); !bytes.Equal(got, want) {
		t.Errorf("derived %x want %x", got, want)
	}
}

func TestModulePkcs11ToolAdmin(t *testing.T) {
	c := modCard(t, pivtest.Options{})
	// Key pair generation with the management key as the SO secret.
	ptool(t, "--keypairgen", "--login", "--login-type", "so", "--so-pin", modMgmt, "--key-type", "EC:prime256v1", "--id", "06")
	if _, ok := c.PublicKey(0x83).(*ecdsa.PublicKey); !ok {
		t.Fatalf("no EC key in 83 after keypairgen: %T", c.PublicKey(0x83))
	}
	// Write and delete a certificate.
	der := readCertDER(t, c, 0x9A)
	cf := writeFile(t, "cert.der", der)
	ptool(t, "--write-object", cf, "--type", "cert", "--id", "06", "--login", "--login-type", "so", "--so-pin", modMgmt)
	if out := ptool(t, "-O", "--type", "cert", "--id", "06"); !strings.Contains(out, "ID:         06") {
		t.Fatalf("written certificate not listed:\n%s", out)
	}
	ptool(t, "--delete-object", "--type", "cert", "--id", "06", "--login", "--login-type", "so", "--so-pin", modMgmt)
	if out := ptool(t, "-O", "--type", "cert", "--id", "06"); strings.Contains(out, "ID:         06") {
		t.Fatalf("deleted certificate still listed:\n%s", out)
	}
	// Change the PIN and back; a wrong PIN is CKR_PIN_INCORRECT.
	ptool(t, "--change-pin", "--pin", modPIN, "--new-pin", "654321")
	if out, err := ptoolErr(t, "--login", "--pin", modPIN, "-O"); err == nil || !strings.Contains(out, "CKR_PIN_INCORRECT") {
		t.Errorf("old PIN after change: %v\n%s", err, out)
	}
	ptool(t, "--change-pin", "--pin", "654321", "--new-pin", modPIN)
	// A wrong management key is a wrong SO PIN.
	if out, err := ptoolErr(t, "--keypairgen", "--login", "--login-type", "so", "--so-pin", strings.Repeat("00", 24), "--key-type", "EC:prime256v1", "--id", "07"); err == nil || !strings.Contains(out, "CKR_PIN_INCORRECT") {
		t.Errorf("wrong management key: %v\n%s", err, out)
	}
}

func readCertDER(t *testing.T, c *pivtest.Card, slot byte) []byte {
	t.Helper()
	tag := map[byte]uint32{0x9A: 0x5FC105, 0x9C: 0x5FC10A, 0x9D: 0x5FC10B, 0x9E: 0x5FC101}[slot]
	obj, ok := c.Object(tag)
	if !ok {
		t.Fatalf("no certificate object for %02X", slot)
	}
	// 70 LL cert 71 01 00 FE 00
	if len(obj) < 4 || obj[0] != 0x70 {
		t.Fatalf("certificate object %x", obj[:4])
	}
	n, off := int(obj[1]), 2
	switch obj[1] {
	case 0x81:
		n, off = int(obj[2]), 3
	case 0x82:
		n, off = int(obj[2])<<8|int(obj[3]), 4
	}
	return obj[off : off+n]
}

func TestModulePkcs11ToolSelfTest(t *testing.T) {
	modCard(t, pivtest.Options{})
	out := ptool(t, "--test", "--login", "--pin", modPIN)
	if !strings.Contains(out, "No errors") {
		t.Errorf("--test:\n%s", out)
	}
}

type bigInt = big.Int

func TestModuleGoClient(t *testing.T) {
	c := modCard(t, pivtest.Options{})
	_, client := modBuild(t)
	so, _ := modBuild(t)
	out := runTool(t, client, so, modPIN, "conformance")
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if !strings.HasPrefix(line, "PASS") {
			t.Errorf("%s", line)
		}
	}
	// Sixteen threads, each with its own session, sign with the PIN-always 9C key.
	if out := runTool(t, client, so, modPIN, "threads", "16"); !strings.Contains(out, "ok 16") || verifyThreadSigs(t, c, out) != 16 {
		t.Errorf("threads:\n%s", out)
	}
}

func TestModuleRemovalMidOperation(t *testing.T) {
	r := testRig(t)
	c, err := pivtest.New(pivtest.Options{OpDelay: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.GenerateInSlot(0x9A, pivtest.AlgRSA2048); err != nil {
		t.Fatal(err)
	}
	insert(t, 0, c)
	so, client := modBuild(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, client, so, modPIN, "removal")
	cmd.Env = append(os.Environ(), r.Env()...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(stdout)
	var lines []string
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if sc.Text() == "signing" {
			time.Sleep(500 * time.Millisecond) // the signature is under way (3 s card delay)
			remove(t, 0)
		}
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("client: %v\n%s\n%s", err, strings.Join(lines, "\n"), stderr.String())
	}
	got := strings.Join(lines, "\n")
	if !strings.Contains(got, "sign: CKR_DEVICE_REMOVED") || !strings.Contains(got, "session: CKR_SESSION_HANDLE_INVALID") {
		t.Errorf("removal mid-operation:\n%s\n%s", got, stderr.String())
	}
}

func TestModuleP11Tool(t *testing.T) {
	modCard(t, pivtest.Options{})
	so, _ := modBuild(t)
	out := runTool(t, "p11tool", "--provider", so, "--list-all")
	for _, want := range []string{"Type: X.509 Certificate", "Type: Public key", "Label: PIV Authentication"} {
		if !strings.Contains(out, want) {
			t.Errorf("--list-all lacks %q:\n%s", want, out)
		}
	}
	out = runTool(t, "p11tool", "--provider", so, "--login", "--set-pin", modPIN, "--list-privkeys")
	m := regexp.MustCompile(`URL: (pkcs11:[^\n]*id=%01[^\n]*type=private[^\n]*)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no private key 01 in:\n%s", out)
	}
	out = runTool(t, "p11tool", "--provider", so, "--login", "--set-pin", modPIN, "--test-sign", m[1])
	if !strings.Contains(out, "Verifying against public key in the token... ok") {
		t.Errorf("--test-sign:\n%s", out)
	}
}

func TestModuleOpenSSLEngine(t *testing.T) {
	c := modCard(t, pivtest.Options{})
	so, _ := modBuild(t)
	engineDir(t)
	t.Setenv("PKCS11_MODULE_PATH", so)
	data := writeFile(t, "data", []byte("openssl data"))
	sig := filepath.Join(t.TempDir(), "sig")
	runTool(t, "openssl", "pkeyutl", "-engine", "pkcs11", "-keyform", "engine", "-inkey", "pkcs11:id=%01;type=private?pin-value="+modPIN,
		"-sign", "-digest", "sha256", "-rawin", "-in", data, "-out", sig)
	pubDER, _ := x509.MarshalPKIXPublicKey(c.PublicKey(0x9A))
	pubPEM := writeFile(t, "pub.pem", pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER}))
	out := runTool(t, "openssl", "dgst", "-sha256", "-verify", pubPEM, "-signature", sig, data)
	if !strings.Contains(out, "Verified OK") {
		t.Errorf("openssl verify:\n%s", out)
	}
}

// engineDir checks that OpenSSL's pkcs11 engine (libengine-pkcs11-openssl) is in
// OpenSSL's ENGINESDIR, where `-engine pkcs11` finds it.
func engineDir(t *testing.T) {
	t.Helper()
	ev := runTool(t, "openssl", "version", "-e")
	dir := ""
	if m := regexp.MustCompile(`ENGINESDIR: "([^"]+)"`).FindStringSubmatch(ev); m != nil {
		dir = m[1]
	}
	if _, err := os.Stat(filepath.Join(dir, "pkcs11.so")); dir == "" || err != nil {
		missing(t, "libengine-pkcs11-openssl: no pkcs11.so in %q (%v)", dir, err)
	}
}

func TestModuleNSS(t *testing.T) {
	modCard(t, pivtest.Options{})
	so, _ := modBuild(t)
	db := "sql:" + t.TempDir()
	runTool(t, "certutil", "-N", "-d", db, "--empty-password")
	runTool(t, "modutil", "-dbdir", db, "-add", "p11card", "-libfile", so, "-force")
	// modutil exits 32 for the empty readers (no token information): only the output counts.
	if out, _ := runToolErr(t, "modutil", "-dbdir", db, "-list", "p11card"); !strings.Contains(out, "YubiKey PIV #12345678") {
		t.Errorf("modutil -list:\n%s", out)
	}
	out := runTool(t, "certutil", "-L", "-h", "all", "-d", db)
	if !strings.Contains(out, "YubiKey PIV #12345678:PIV Authentication") {
		t.Errorf("certutil -L -h all:\n%s", out)
	}
	// Private keys after NSS logs in with the PIN from a password file.
	pw := writeFile(t, "pw", []byte(modPIN+"\n"))
	out = runTool(t, "certutil", "-K", "-h", "YubiKey PIV #12345678", "-d", db, "-f", pw)
	if strings.Count(out, "rsa") < 2 || strings.Count(out, "ec ") < 2 {
		t.Errorf("certutil -K:\n%s", out)
	}
}

func TestModuleP11Kit(t *testing.T) {
	modCard(t, pivtest.Options{})
	so, _ := modBuild(t)
	// p11-kit ignores user configuration when run as root: the module file goes into a
	// private mount namespace's view of the system module directory instead.
	conf := t.TempDir()
	writeAt(t, filepath.Join(conf, "p11card.module"), "module: "+so+"\n")
	needTool(t, "p11-kit")
	out := runTool(t, "unshare", "-m", "sh", "-c", "mount --bind "+conf+" /usr/share/p11-kit/modules && exec p11-kit list-modules")
	if !strings.Contains(out, "p11card") || !strings.Contains(out, "YubiKey PIV #12345678") {
		t.Errorf("p11-kit list-modules:\n%s", out)
	}
}

// TestMakeInstall: make install lays out the CLI, the module and a p11-kit module file
// naming the module where it lands (DESTDIR staged; the p11-kit directory set to the one
// the private mount namespace below covers), p11-kit then loads it from there and shows
// the token, and make uninstall takes the three files away.
func TestMakeInstall(t *testing.T) {
	modCard(t, pivtest.Options{})
	needTool(t, "make")
	needTool(t, "p11-kit")
	dest := t.TempDir()
	const mods = "/usr/share/p11-kit/modules"
	vars := []string{"-C", "..", "DESTDIR=" + dest, "PREFIX=/usr/local", "P11KIT_MODULES=" + mods}
	runTool(t, "make", append(vars, "install")...)
	for p, mode := range map[string]os.FileMode{"/usr/local/bin/p11-card": 0o755, "/usr/local/lib/p11-card-pkcs11.so": 0o755, mods + "/p11-card.module": 0o644} {
		if fi, err := os.Stat(dest + p); err != nil {
			t.Error(err)
		} else if fi.Mode().Perm() != mode {
			t.Errorf("%s: mode %v, want %v", p, fi.Mode().Perm(), mode)
		}
	}
	if b, _ := os.ReadFile(dest + mods + "/p11-card.module"); string(b) != "module: /usr/local/lib/p11-card-pkcs11.so\n" {
		t.Errorf("module file %q", b)
	}
	out := runTool(t, "unshare", "-m", "sh", "-c", "mount --bind "+dest+mods+" "+mods+
		" && mount --bind "+dest+"/usr/local/lib /usr/local/lib && exec p11-kit list-modules")
	if !strings.Contains(out, "p11-card: /usr/local/lib/p11-card-pkcs11.so") || !strings.Contains(out, "YubiKey PIV #12345678") {
		t.Errorf("p11-kit list-modules:\n%s", out)
	}
	runTool(t, "make", append(vars, "uninstall")...)
	for _, p := range []string{"/usr/local/bin/p11-card", "/usr/local/lib/p11-card-pkcs11.so", mods + "/p11-card.module"} {
		if _, err := os.Stat(dest + p); !os.IsNotExist(err) {
			t.Errorf("%s after uninstall: %v", p, err)
		}
	}
}

func writeAt(t *testing.T, p, s string) {
	t.Helper()
	if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestModuleSSH(t *testing.T) {
	modCard(t, pivtest.Options{})
	so, _ := modBuild(t)
	out := runTool(t, "ssh-keygen", "-D", so)
	if n := strings.Count(out, "ssh-rsa ") + strings.Count(out, "ecdsa-sha2-nistp256 "); n < 4 {
		t.Fatalf("ssh-keygen -D found %d keys:\n%s", n, out)
	}
	// An agent holding the card's keys signs; ssh-keygen -Y verifies.
	dir := sshAgent(t, so)
	runTool(t, "ssh-add", "-s", so)
	keys := runTool(t, "ssh-add", "-L")
	var rsaLine string
	for _, l := range strings.Split(keys, "\n") {
		if strings.HasPrefix(l, "ssh-rsa ") {
			rsaLine = l
			break
		}
	}
	if rsaLine == "" {
		t.Fatalf("no RSA key in the agent:\n%s", keys)
	}
	sshAgentSigns(t, dir, rsaLine)
}

// sshAgent starts an ssh-agent that may load so, points SSH_AUTH_SOCK at it and makes
// ssh-add read the PIN from an askpass script; it returns a scratch directory.
func sshAgent(t *testing.T, so string) string {
	t.Helper()
	dir := t.TempDir()
	sock := filepath.Join(dir, "agent.sock")
	askpass := filepath.Join(dir, "askpass")
	writeAt(t, askpass, "#!/bin/sh\necho "+modPIN+"\n")
	os.Chmod(askpass, 0o755)
	ctx, cancel := context.WithCancel(context.Background())
	agent := toolCmd(t, ctx, "ssh-agent", "-D", "-a", sock, "-P", filepath.Dir(so)+"/*")
	if err := agent.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); agent.Wait() })
	for i := 0; i < 100; i++ {
		if _, err := os.Stat(sock); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Setenv("SSH_AUTH_SOCK", sock)
	t.Setenv("SSH_ASKPASS", askpass)
	t.Setenv("SSH_ASKPASS_REQUIRE", "force")
	t.Setenv("DISPLAY", ":0")
	return dir
}

// sshAgentSigns has the agent sign a file with the key of the authorized_keys line
// keyLine (ssh-keygen -Y sign) and checks the signature (ssh-keygen -Y verify).
func sshAgentSigns(t *testing.T, dir, keyLine string) {
	t.Helper()
	pubFile := filepath.Join(dir, "id.pub")
	writeAt(t, pubFile, keyLine+"\n")
	msg := filepath.Join(dir, "msg")
	writeAt(t, msg, "signed through the agent\n")
	os.Remove(msg + ".sig")
	runTool(t, "ssh-keygen", "-Y", "sign", "-f", pubFile, "-n", "file", msg)
	allowed := filepath.Join(dir, "allowed")
	writeAt(t, allowed, "card@test "+keyLine+"\n")
	vcmd := toolCmd(t, context.Background(), "ssh-keygen", "-Y", "verify", "-f", allowed, "-I", "card@test", "-n", "file", "-s", msg+".sig")
	vcmd.Stdin = strings.NewReader("signed through the agent\n")
	if vout, err := vcmd.CombinedOutput(); err != nil || !strings.Contains(string(vout), "Good") {
		t.Errorf("ssh-keygen -Y verify %.40s…: %v\n%s", keyLine, err, vout)
	}
}

func TestModuleCLI(t *testing.T) {
	modCard(t, pivtest.Options{})
	so, _ := modBuild(t)
	cli := p11card(t)
	out := runTool(t, cli, "slots", "--module", so, "--json")
	var rep struct {
		Slots []struct {
			ID           uint `json:"id"`
			TokenPresent bool `json:"token_present"`
			Token        *struct {
				Label string   `json:"label"`
				Flags []string `json:"flags"`
			} `json:"token"`
		} `json:"slots"`
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("slots --json: %v\n%s", err, out)
	}
	if len(rep.Slots) != 4 || !rep.Slots[0].TokenPresent || rep.Slots[0].Token == nil || rep.Slots[0].Token.Label != "YubiKey PIV #12345678" {
		t.Errorf("slots: %s", out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := toolCmd(t, ctx, cli, "test", "--module", so, "--json")
	cmd.Stdin = strings.NewReader(modPIN + "\n")
	b, err := cmd.CombinedOutput()
	var tr struct {
		Keys []struct {
			ID    string `json:"id"`
			OK    bool   `json:"ok"`
			Error string `json:"error"`
		} `json:"keys"`
		OK bool `json:"ok"`
	}
	if jerr := json.Unmarshal(b[:bytes.LastIndexByte(b, '}')+1], &tr); jerr != nil {
		t.Fatalf("test --json: %v %v\n%s", err, jerr, b)
	}
	ids := map[string]bool{}
	for _, k := range tr.Keys {
		ids[k.ID] = true
		if !k.OK {
			t.Errorf("key %s: %s", k.ID, k.Error)
		}
	}
	for _, id := range []string{"01", "02", "03", "04", "05"} {
		if !ids[id] {
			t.Errorf("key %s not tested: %s", id, b)
		}
	}
	if err != nil || !tr.OK {
		t.Errorf("p11-card test: %v\n%s", err, b)
	}
	// The administration commands through the rig's pcscd.
	pcmd := toolCmd(t, ctx, cli, "pin", "verify", "--reader", "Yubico", "--json")
	pcmd.Stdin = strings.NewReader(modPIN + "\n")
	if b, err := pcmd.CombinedOutput(); err != nil || !strings.Contains(string(b), `"ok": true`) {
		t.Errorf("p11-card pin verify: %v\n%s", err, b)
	}
	if out := runTool(t, cli, "cert", "export", "--id", "01", "--reader", "Yubico"); !strings.Contains(out, "BEGIN CERTIFICATE") {
		t.Errorf("p11-card cert export:\n%s", out)
	}
}

func TestModuleSwapInvalidatesSessions(t *testing.T) {
	r := testRig(t)
	a := modCard(t, pivtest.Options{Serial: 1111})
	_ = a
	b, err := pivtest.New(pivtest.Options{Serial: 2222})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.GenerateInSlot(0x9A, pivtest.AlgRSA2048); err != nil {
		t.Fatal(err)
	}
	so, client := modBuild(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, client, so, modPIN, "swap")
	cmd.Env = append(os.Environ(), r.Env()...)
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(stdout)
	var lines []string
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if sc.Text() == "ready" {
			remove(t, 0)
			ictx, icancel := context.WithTimeout(context.Background(), 20*time.Second)
			if err := r.Insert(ictx, 0, b); err != nil {
				t.Fatal(err)
			}
			icancel()
			fmt.Fprintln(stdin)
		}
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("client: %v\n%s\n%s", err, strings.Join(lines, "\n"), stderr.String())
	}
	got := strings.Join(lines, "\n")
	for _, want := range []string{"serial: 1111", "old session: CKR_SESSION_HANDLE_INVALID", "old session sign: CKR_SESSION_HANDLE_INVALID",
		"new session: CKR_OK", "new session state: 0", "old key handle: CKR_OBJECT_HANDLE_INVALID", "serial: 2222"} {
		if !strings.Contains(got, want) {
			t.Errorf("swap: want %q in\n%s", want, got)
		}
	}
}

func TestModuleEdDSA(t *testing.T) {
	testRig(t)
	c, err := pivtest.New(pivtest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.GenerateInSlot(0x9A, pivtest.AlgEd25519); err != nil {
		t.Fatal(err)
	}
	insert(t, 0, c)
	msg := []byte("edwards")
	data := writeFile(t, "data", msg)
	sig := filepath.Join(t.TempDir(), "sig")
	if out := ptool(t, "-O", "--type", "pubkey", "--id", "01"); !strings.Contains(out, "EC_EDWARDS") && !strings.Contains(out, "EDDSA") && !strings.Contains(out, "Ed25519") {
		t.Logf("pkcs11-tool shows the key as:\n%s", out)
	}
	ptool(t, "--sign", "--login", "--pin", modPIN, "--id", "01", "-m", "EDDSA", "--input-file", data, "--output-file", sig)
	if !ed25519.Verify(c.PublicKey(0x9A).(ed25519.PublicKey), msg, readFile(t, sig)) {
		t.Error("EdDSA signature rejected by crypto/ed25519")
	}
}

func TestModuleNoPCSCD(t *testing.T) {
	so, _ := modBuild(t)
	needTool(t, "pkcs11-tool")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "pkcs11-tool", "--module", so, "-L")
	cmd.Env = append(os.Environ(), "PCSCLITE_CSOCK_NAME="+filepath.Join(t.TempDir(), "no-pcscd.comm"))
	start := time.Now()
	// pkcs11-tool exits 1 when there is no slot: only its output counts.
	out, err := cmd.CombinedOutput()
	if !strings.Contains(string(out), "No slots") || strings.Contains(string(out), "error") {
		t.Errorf("without pcscd: %v\n%s", err, out)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("took %v without pcscd", d)
	}
}

func TestModuleImportKey(t *testing.T) {
	c := modCard(t, pivtest.Options{})
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKCS8PrivateKey(k)
	kf := writeFile(t, "key.der", der)
	ptool(t, "--write-object", kf, "--type", "privkey", "--id", "06", "--login", "--login-type", "so", "--so-pin", modMgmt)
	if pub, ok := c.PublicKey(0x83).(*ecdsa.PublicKey); !ok || !pub.Equal(&k.PublicKey) {
		t.Fatalf("83 holds %T, not the imported key", c.PublicKey(0x83))
	}
	data := writeFile(t, "data", []byte("imported key"))
	sig := filepath.Join(t.TempDir(), "sig")
	ptool(t, "--sign", "--login", "--pin", modPIN, "--id", "06", "-m", "ECDSA-SHA256", "--input-file", data, "--output-file", sig)
	s := readFile(t, sig)
	sum := sha256.Sum256([]byte("imported key"))
	if len(s) != 64 || !ecdsa.Verify(&k.PublicKey, sum[:], new(bigInt).SetBytes(s[:32]), new(bigInt).SetBytes(s[32:])) {
		t.Error("signature of the imported key rejected")
	}
}

// TestModuleTwoProcesses runs two client processes at once, each with eight threads
// signing with the PIN-always key: PC/SC transactions keep every VERIFY with its
// signature.
func TestModuleTwoProcesses(t *testing.T) {
	c := modCard(t, pivtest.Options{})
	so, client := modBuild(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	type res struct {
		out []byte
		err error
	}
	done := make(chan res, 2)
	for i := 0; i < 2; i++ {
		cmd := toolCmd(t, ctx, client, so, modPIN, "threads", "8")
		go func() {
			out, err := cmd.CombinedOutput()
			done <- res{out, err}
		}()
	}
	for i := 0; i < 2; i++ {
		r := <-done
		if r.err != nil || !strings.Contains(string(r.out), "ok 8") {
			t.Errorf("process: %v\n%s", r.err, r.out)
		}
		if n := verifyThreadSigs(t, c, string(r.out)); n != 8 {
			t.Errorf("process: %d of 8 signatures verify\n%s", n, r.out)
		}
	}
}

// verifyThreadSigs checks the "sig I HEX" lines of `p11client threads` against the
// public key in slot 9C and returns how many verify.
func verifyThreadSigs(t *testing.T, c *pivtest.Card, out string) int {
	t.Helper()
	pub := c.PublicKey(0x9C).(*ecdsa.PublicKey)
	ok := 0
	for _, line := range strings.Split(out, "\n") {
		var i int
		var sig []byte
		if n, _ := fmt.Sscanf(line, "sig %d %x", &i, &sig); n != 2 {
			continue
		}
		h := sha256.Sum256([]byte(fmt.Sprintf("message %d", i)))
		r, s := new(big.Int).SetBytes(sig[:len(sig)/2]), new(big.Int).SetBytes(sig[len(sig)/2:])
		if len(sig) == 64 && ecdsa.Verify(pub, h[:], r, s) {
			ok++
		} else {
			t.Errorf("signature %d does not verify: %x", i, sig)
		}
	}
	return ok
}

func TestModuleWaitForSlotEvent(t *testing.T) {
	r := testRig(t)
	so, client := modBuild(t)
	c, err := pivtest.New(pivtest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, client, so, modPIN, "wait")
	cmd.Env = append(os.Environ(), r.Env()...)
	stdout, _ := cmd.StdoutPipe()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(stdout)
	var lines []string
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if sc.Text() == "waiting" {
			insert(t, 1, c)
		}
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("client: %v\n%s\n%s", err, strings.Join(lines, "\n"), stderr.String())
	}
	got := strings.Join(lines, "\n")
	if !strings.Contains(got, "event 2") || !strings.Contains(got, "token: YubiKey PIV #12345678 CKR_OK") {
		t.Errorf("wait for slot event:\n%s", got)
	}
}

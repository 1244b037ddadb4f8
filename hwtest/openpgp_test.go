//go:build hwtest

package hwtest

import (
	"bufio"
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"fmt"
	"io"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/p11-card/p11-card/cards"
	"github.com/p11-card/p11-card/cards/openpgp"
	"github.com/p11-card/p11-card/cards/openpgp/pgptest"
	"github.com/p11-card/p11-card/pcsc"
)

// These tests prove the virtual OpenPGP card (cards/openpgp/pgptest) faithful with software
// we did not write, through the rig's real pcscd: GnuPG's scdaemon (card status, key
// generation on the card, a signature made on the card and verified) and OpenSC's
// openpgp driver (pkcs11-tool -O). Our own driver then reads what gpg wrote.

// pgpReader is the rig reader the OpenPGP tests use ("Virtual PCD 00 00").
const pgpReader = 2

// pgpPIN serves as both PW1 and PW3 in the gpg test: loopback pinentry gives gpg no way to
// tell which PIN it is asked for, so one value answers every prompt.
const pgpPIN = "12345678"

// gnupg is a private GNUPGHOME whose scdaemon talks to the rig's pcscd.
type gnupg struct {
	t    *testing.T
	home string
	env  []string
}

func newGnuPG(t *testing.T) *gnupg {
	t.Helper()
	needTool(t, "gpg")
	needTool(t, "gpgconf")
	if _, err := os.Stat("/usr/lib/gnupg/scdaemon"); err != nil {
		missing(t, "scdaemon: %v", err)
	}
	// Short path: gpg-agent's sockets live in GNUPGHOME (108-byte socket path limit).
	home, err := os.MkdirTemp("", "pgp")
	if err != nil {
		t.Fatal(err)
	}
	conf := fmt.Sprintf("disable-ccid\nreader-port %s\n", testRig(t).ReaderName(pgpReader))
	if err := os.WriteFile(filepath.Join(home, "scdaemon.conf"), []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(home, "gpg-agent.conf"), []byte("allow-loopback-pinentry\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	g := &gnupg{t: t, home: home}
	g.env = append(append(os.Environ(), testRig(t).Env()...), "GNUPGHOME="+home)
	t.Cleanup(func() {
		g.kill()
		os.RemoveAll(home)
	})
	// The agent (and the scdaemon it starts) inherit this environment, PCSCLITE_CSOCK_NAME
	// included.
	g.run("gpgconf", "--launch", "gpg-agent")
	return g
}

func (g *gnupg) cmd(ctx context.Context, name string, args ...string) *exec.Cmd {
	c := exec.CommandContext(ctx, name, args...)
	c.Env = g.env
	c.Dir = g.home
	c.WaitDelay = 5 * time.Second
	return c
}

func (g *gnupg) run(name string, args ...string) string {
	g.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := g.cmd(ctx, name, args...).CombinedOutput()
	if err != nil {
		g.t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// kill stops scdaemon and gpg-agent, releasing the reader.
func (g *gnupg) kill() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_ = g.cmd(ctx, "gpgconf", "--kill", "all").Run()
}

// cardEdit drives `gpg --card-edit` over --command-fd/--status-fd: commands go to the
// cardedit prompt in order; every other question is answered from answers (by keyword),
// hidden ones with pgpPIN. An answer "a|b" gives a the first time, b the next.
func (g *gnupg) cardEdit(commands []string, answers map[string]string) string {
	g.t.Helper()
	return g.interact([]string{"--card-edit"}, "cardedit.prompt", commands, answers)
}

// interact runs gpg with args over --command-fd/--status-fd, sending commands at the
// prompt keyword and answers elsewhere.
func (g *gnupg) interact(args []string, prompt string, commands []string, answers map[string]string) string {
	g.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	// Not --batch: gpg refuses card key generation in batch mode.
	c := g.cmd(ctx, "gpg", append([]string{"--no-tty", "--pinentry-mode", "loopback", "--command-fd", "0",
		"--status-fd", "1"}, args...)...)
	stdin, err := c.StdinPipe()
	if err != nil {
		g.t.Fatal(err)
	}
	stdout, err := c.StdoutPipe()
	if err != nil {
		g.t.Fatal(err)
	}
	var stderr strings.Builder
	c.Stderr = &stderr
	if err := c.Start(); err != nil {
		g.t.Fatal(err)
	}
	var transcript strings.Builder
	sc := bufio.NewScanner(stdout)
	questions := 0
	for sc.Scan() {
		line := sc.Text()
		transcript.WriteString(line + "\n")
		f := strings.Fields(line)
		if len(f) < 3 || f[0] != "[GNUPG:]" {
			continue
		}
		var reply string
		switch f[1] {
		case "GET_LINE", "GET_BOOL", "GET_HIDDEN":
		default:
			continue
		}
		questions++
		if questions > 60 {
			g.t.Fatalf("gpg keeps asking:\n%s\n%s", transcript.String(), stderr.String())
		}
		switch {
		case f[1] == "GET_HIDDEN":
			reply = pgpPIN
		case f[2] == prompt:
			if len(commands) == 0 {
				reply = "quit"
			} else {
				reply, commands = commands[0], commands[1:]
			}
		default:
			a, ok := answers[f[2]]
			// "a|b|c" answers the same question differently each time it comes.
			if first, rest, more := strings.Cut(a, "|"); more {
				a, answers[f[2]] = first, rest
			}
			if !ok {
				if f[1] == "GET_BOOL" {
					a = "y"
				}
			}
			reply = a
		}
		if _, err := io.WriteString(stdin, reply+"\n"); err != nil {
			break
		}
	}
	stdin.Close()
	err = c.Wait()
	out := transcript.String() + stderr.String()
	if err != nil {
		g.t.Fatalf("gpg %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func TestOpenPGPGnuPG(t *testing.T) {
	testRig(t)
	card := pgptest.MustNew(pgptest.Options{Mode: pgptest.ModeYubiKey, Serial: 0x11223344})
	card.SetState(func(s *pgptest.State) { s.PW1 = []byte(pgpPIN) })
	insert(t, pgpReader, card)
	g := newGnuPG(t)

	// 1. gpg --card-status reads the card through scdaemon and pcscd.
	st := g.run("gpg", "--batch", "--card-status")
	for _, want := range []string{"Yubico", "11223344", "3.4", "PIN retry counter : 3 0 3"} {
		if !strings.Contains(st, want) {
			t.Errorf("card status lacks %q:\n%s", want, st)
		}
	}

	// 2. Keys generated on the card by gpg --card-edit (admin, generate).
	out := g.cardEdit([]string{"admin", "generate", "quit"}, map[string]string{
		"cardedit.genkeys.backup_enc":   "n",
		"cardedit.genkeys.replace_keys": "y",
		"keygen.valid":                  "0",
		"keygen.name":                   "Card Tester",
		"keygen.email":                  "card@example.org",
		"keygen.comment":                "",
		"cardedit.genkeys.size":         "2048",
	})
	if !strings.Contains(out, "KEY_CREATED") {
		t.Fatalf("gpg generated no key:\n%s", out)
	}
	snap := card.Snapshot()
	for i := 0; i < 3; i++ {
		if snap.KeyStatus[i] != 0x01 || len(snap.Keys[i]) == 0 {
			t.Fatalf("key %d not generated on the card (status %02X)", i, snap.KeyStatus[i])
		}
	}
	st = g.run("gpg", "--batch", "--card-status")
	if !regexp.MustCompile(`Signature key \.+: [0-9A-F]{4} `).MatchString(st) {
		t.Errorf("card status shows no signature key:\n%s", st)
	}

	// 3. A signature made by gpg on the card, verified by gpg.
	msg := filepath.Join(g.home, "msg.txt")
	if err := os.WriteFile(msg, []byte("signed on a virtual OpenPGP card\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	g.run("gpg", "--batch", "--pinentry-mode", "loopback", "--passphrase", pgpPIN, "--yes",
		"-u", "card@example.org", "--detach-sign", "-o", msg+".sig", msg)
	v := g.run("gpg", "--batch", "--verify", msg+".sig", msg)
	if !strings.Contains(v, "Good signature") {
		t.Fatalf("gpg --verify:\n%s", v)
	}
	if n := card.Snapshot().SigCounter; n < 1 {
		t.Errorf("signature counter %d after gpg signed", n)
	}
	g.kill() // scdaemon holds the reader; let others in

	// 4. Our driver, through the same pcscd, sees the keys and fingerprints gpg wrote.
	tok := pgpOverPCSC(t)
	objs, err := tok.Objects(context.Background(), cards.Filter{Kind: cards.KindPublicKey})
	if err != nil || len(objs) != 3 {
		t.Fatalf("driver objects: %v %v", objs, err)
	}
	if _, ok := objs[0].Key.Public.(*rsa.PublicKey); !ok {
		t.Errorf("SIG key %T", objs[0].Key.Public)
	}
	checkFingerprints(t, tok.(*openpgp.Token), objs)
	fp := fmt.Sprintf("%X", tok.(*openpgp.Token).AppData().Fingerprints[0])
	if !strings.Contains(strings.ReplaceAll(g.run("gpg", "--batch", "--with-colons", "--fingerprint", "card@example.org"), ":", " "), fp) {
		t.Errorf("card SIG fingerprint %s unknown to gpg", fp)
	}
}

// pgpOverPCSC binds our driver to the card in pgpReader through the rig's pcscd.
func pgpOverPCSC(t *testing.T) cards.Token {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pc, err := pcsc.Establish(ctx)
	if err != nil {
		t.Fatalf("pcsc: %v", err)
	}
	t.Cleanup(func() { pc.Close() })
	k, err := pc.Connect(ctx, testRig(t).ReaderName(pgpReader))
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() { k.Close() })
	tok, err := openpgp.Driver{}.Open(ctx, k, k.ATR())
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	return tok
}

func TestOpenPGPOpenSC(t *testing.T) {
	testRig(t)
	needModule(t, openscModule)
	for _, m := range []pgptest.Mode{pgptest.ModeYubiKey, pgptest.ModeStrict, pgptest.ModeV2} {
		t.Run(m.String(), func(t *testing.T) {
			autAlg, autWant := cards.AlgECP256, "Public Key Object; EC"
			if m == pgptest.ModeV2 { // RSA only
				autAlg, autWant = cards.AlgRSA, "Public Key Object; RSA 2048 bits"
			}
			card := pgptest.MustNew(pgptest.Options{Mode: m})
			insert(t, pgpReader, card)
			// Keys put in by our driver through pcscd: generation (SIG, AUT) and import.
			tok := pgpOverPCSC(t)
			ctx := context.Background()
			if err := tok.Login(ctx, cards.RoleSO, []byte("12345678")); err != nil {
				t.Fatal(err)
			}
			if _, err := tok.GenerateKey(ctx, cards.KeyGenSpec{ID: []byte{1}, Alg: cards.AlgRSA, Bits: 2048}); err != nil {
				t.Fatalf("generate SIG: %v", err)
			}
			aut, err := tok.GenerateKey(ctx, cards.KeyGenSpec{ID: []byte{3}, Alg: autAlg, Bits: 2048})
			if err != nil {
				t.Fatalf("generate AUT: %v", err)
			}
			dec, err := tok.GenerateKey(ctx, cards.KeyGenSpec{ID: []byte{2}, Alg: cards.AlgRSA, Bits: 2048})
			if err != nil {
				t.Fatalf("generate DEC: %v", err)
			}
			if err := tok.Logout(ctx); err != nil {
				t.Fatal(err)
			}
			// OpenSC makes one token per PIN: "User PIN" (DEC, AUT) and "User PIN (sig)" (SIG).
			out := runTool(t, "pkcs11-tool", "--module", openscModule, "-O", "--token-label", "OpenPGP card (User PIN)")
			out += runTool(t, "pkcs11-tool", "--module", openscModule, "-O", "--token-label", "OpenPGP card (User PIN (sig))")
			for _, want := range []string{"ID:         01", "ID:         03", "Public Key Object; RSA 2048 bits", autWant} {
				if !strings.Contains(out, want) {
					t.Errorf("pkcs11-tool -O lacks %q:\n%s", want, out)
				}
			}
			// With the PIN, OpenSC signs with the card's SIG key (PSO:CDS).
			data := filepath.Join(t.TempDir(), "data")
			os.WriteFile(data, []byte("opensc signs this"), 0o600)
			runTool(t, "pkcs11-tool", "--module", openscModule, "--token-label", "OpenPGP card (User PIN (sig))",
				"--login", "--pin", "123456", "--sign", "--id", "01", "-m", "SHA256-RSA-PKCS", "-i", data, "-o", data+".sig")
			if n := card.Snapshot().SigCounter; n != 1 {
				t.Errorf("signature counter %d after OpenSC signed", n)
			}
			// OpenSC decrypts with the DEC key (PSO:DECIPHER, padding indicator 00).
			ct, err := rsa.EncryptPKCS1v15(rand.Reader, dec.Key.Public.(*rsa.PublicKey), []byte("for the card only"))
			if err != nil {
				t.Fatal(err)
			}
			os.WriteFile(data+".enc", ct, 0o600)
			runTool(t, "pkcs11-tool", "--module", openscModule, "--token-label", "OpenPGP card (User PIN)",
				"--login", "--pin", "123456", "--decrypt", "--id", "02", "-m", "RSA-PKCS", "-i", data+".enc", "-o", data+".dec")
			if pt, _ := os.ReadFile(data + ".dec"); string(pt) != "for the card only" {
				t.Errorf("OpenSC decrypted %q", pt)
			}
			// And signs with the AUT key (INTERNAL AUTHENTICATE).
			mech := "ECDSA-SHA256"
			if m == pgptest.ModeV2 {
				mech = "SHA256-RSA-PKCS"
			}
			runTool(t, "pkcs11-tool", "--module", openscModule, "--token-label", "OpenPGP card (User PIN)",
				"--login", "--pin", "123456", "--sign", "--id", "03", "-m", mech, "-i", data, "-o", data+".aut")
			asig, _ := os.ReadFile(data + ".aut")
			h := sha256.Sum256([]byte("opensc signs this"))
			switch pub := aut.Key.Public.(type) {
			case *ecdsa.PublicKey:
				if len(asig) != 64 || !ecdsa.Verify(pub, h[:], new(big.Int).SetBytes(asig[:32]), new(big.Int).SetBytes(asig[32:])) {
					t.Errorf("OpenSC's AUT ECDSA signature does not verify (%d bytes)", len(asig))
				}
			case *rsa.PublicKey:
				if err := rsa.VerifyPKCS1v15(pub, crypto.SHA256, h[:], asig); err != nil {
					t.Errorf("OpenSC's AUT RSA signature: %v", err)
				}
			}
		})
	}
}

// TestOpenPGPGnuPGStrict: scdaemon reads the spec-strict card (short APDUs, chaining,
// GET RESPONSE, PIN for every signature) and the 2.1 card correctly.
func TestOpenPGPGnuPGStrict(t *testing.T) {
	testRig(t)
	for _, m := range []pgptest.Mode{pgptest.ModeStrict, pgptest.ModeV2} {
		t.Run(m.String(), func(t *testing.T) { gpgCardStatus(t, m) })
	}
}

func gpgCardStatus(t *testing.T, m pgptest.Mode) {
	card := pgptest.MustNew(pgptest.Options{Mode: m, Serial: 0x00000042})
	card.SetState(func(s *pgptest.State) { s.Name = []byte("Tester<<Strict") })
	insert(t, pgpReader, card)
	g := newGnuPG(t)
	st := g.run("gpg", "--batch", "--card-status")
	version := "3.4"
	if m == pgptest.ModeV2 {
		version = "2.1"
	}
	for _, want := range []string{"00000042", "Version ..........: " + version, "Signature PIN ....: forced", "Name of cardholder: Strict Tester", "PIN retry counter : 3 0 3"} {
		if !strings.Contains(st, want) {
			t.Errorf("card status lacks %q:\n%s", want, st)
		}
	}
}

// TestOpenPGPGnuPGKDF: gpg turns the KDF on (kdf-setup writes F9 with its own hashes of the
// default PINs); our driver then logs in with the plain PINs, so its S2K equals GnuPG's.
func TestOpenPGPGnuPGKDF(t *testing.T) {
	testRig(t)
	card := pgptest.MustNew(pgptest.Options{Mode: pgptest.ModeYubiKey})
	insert(t, pgpReader, card)
	g := newGnuPG(t)
	g.cardEdit([]string{"admin", "kdf-setup", "quit"}, nil)
	if kdf := card.Snapshot().KDF; len(kdf) < 3 || kdf[2] != 0x03 {
		t.Fatalf("KDF-DO after gpg kdf-setup: %X", kdf)
	}
	st := g.run("gpg", "--batch", "--card-status")
	if !regexp.MustCompile(`KDF setting \.+: on`).MatchString(st) {
		t.Errorf("gpg does not see the KDF:\n%s", st)
	}
	g.kill()
	tok := pgpOverPCSC(t)
	ctx := context.Background()
	if err := tok.Login(ctx, cards.RoleUser, []byte("123456")); err != nil {
		t.Fatalf("user login with the KDF gpg set up: %v", err)
	}
	if err := tok.Login(ctx, cards.RoleSO, []byte("12345678")); err != nil {
		t.Fatalf("SO login with the KDF gpg set up: %v", err)
	}
	if snap := card.Snapshot(); bytes.Equal(snap.PW1, []byte("123456")) {
		t.Fatal("the card holds the PIN in clear after kdf-setup")
	}
}

// checkFingerprints recomputes, with our code, the OpenPGP fingerprints gpg stored on the
// card from the public keys and generation dates: they must agree.
func checkFingerprints(t *testing.T, tok *openpgp.Token, pubs []cards.Object) {
	t.Helper()
	ad := tok.AppData()
	for _, o := range pubs {
		i := int(o.ID[0]) - 1
		fp, err := openpgp.Fingerprint(o.Key, ad.Algo[i], ad.GenDates[i])
		if err != nil {
			t.Errorf("fingerprint of key %d: %v", i+1, err)
			continue
		}
		if !bytes.Equal(fp, ad.Fingerprints[i]) {
			t.Errorf("key %d (%s): our fingerprint %X, gpg stored %X", i+1, o.Key.Alg, fp, ad.Fingerprints[i])
		}
	}
}

// TestOpenPGPGnuPG25519: gpg switches the card to Curve25519 (key-attr), generates
// Ed25519/X25519 keys on it, signs, and decrypts a message encrypted to the card's key
// (ECDH through PSO:DECIPHER); our driver then agrees with gpg's fingerprints.
func TestOpenPGPGnuPG25519(t *testing.T) {
	testRig(t)
	card := pgptest.MustNew(pgptest.Options{Mode: pgptest.ModeYubiKey})
	card.SetState(func(s *pgptest.State) { s.PW1 = []byte(pgpPIN) })
	insert(t, pgpReader, card)
	g := newGnuPG(t)
	g.cardEdit([]string{"admin", "key-attr", "generate", "quit"}, map[string]string{
		"cardedit.genkeys.algo":         "2",
		"keygen.curve":                  "1",
		"cardedit.genkeys.backup_enc":   "n",
		"cardedit.genkeys.replace_keys": "y",
		"keygen.valid":                  "0",
		"keygen.name":                   "Curve Tester",
		"keygen.email":                  "curve@example.org",
		"keygen.comment":                "",
	})
	st := g.run("gpg", "--batch", "--card-status")
	if !strings.Contains(st, "ed25519 cv25519 ed25519") {
		t.Fatalf("key attributes not Curve25519:\n%s", st)
	}
	msg := filepath.Join(g.home, "msg.txt")
	if err := os.WriteFile(msg, []byte("curve message\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	pin := []string{"--batch", "--pinentry-mode", "loopback", "--passphrase", pgpPIN, "--yes", "--trust-model", "always"}
	g.run("gpg", append(pin, "-u", "curve@example.org", "--detach-sign", "-o", msg+".sig", msg)...)
	if v := g.run("gpg", "--batch", "--verify", msg+".sig", msg); !strings.Contains(v, "Good signature") {
		t.Fatalf("gpg --verify:\n%s", v)
	}
	g.run("gpg", append(pin, "-r", "curve@example.org", "--encrypt", "-o", msg+".gpg", msg)...)
	dec := g.run("gpg", append(pin, "--decrypt", msg+".gpg")...)
	if !strings.Contains(dec, "curve message") {
		t.Fatalf("gpg --decrypt with the card:\n%s", dec)
	}
	g.kill()
	tok := pgpOverPCSC(t)
	objs, err := tok.Objects(context.Background(), cards.Filter{Kind: cards.KindPublicKey})
	if err != nil || len(objs) != 3 {
		t.Fatalf("driver objects: %v %v", objs, err)
	}
	if objs[0].Key.Alg != cards.AlgEd25519 || objs[1].Key.Alg != cards.AlgX25519 {
		t.Fatalf("algorithms %s %s", objs[0].Key.Alg, objs[1].Key.Alg)
	}
	checkFingerprints(t, tok.(*openpgp.Token), objs)
}

// TestOpenPGPGnuPGKeyToCard: keys made by gpg on the host are moved to the card with
// keytocard (PUT DATA odd with gpg's extended header list): an Ed25519 primary key to SIG,
// a Curve25519 subkey to DEC, an RSA subkey to AUT. gpg then signs and decrypts with the
// card, and our driver reads the same public keys gpg holds.
func TestOpenPGPGnuPGKeyToCard(t *testing.T) {
	testRig(t)
	card := pgptest.MustNew(pgptest.Options{Mode: pgptest.ModeYubiKey})
	card.SetState(func(s *pgptest.State) { s.PW1 = []byte(pgpPIN) })
	insert(t, pgpReader, card)
	g := newGnuPG(t)
	nopass := []string{"--batch", "--pinentry-mode", "loopback", "--passphrase", ""}
	g.run("gpg", append(nopass, "--quick-gen-key", "Import Tester <imp@example.org>", "ed25519", "sign,cert", "0")...)
	fpr := regexp.MustCompile(`(?m)^fpr:+([0-9A-F]{40}):`).FindStringSubmatch(g.run("gpg", "--batch", "--with-colons", "--fingerprint", "imp@example.org"))
	if fpr == nil {
		t.Fatal("no fingerprint for the new key")
	}
	g.run("gpg", append(nopass, "--quick-add-key", fpr[1], "cv25519", "encr", "0")...)
	g.run("gpg", append(nopass, "--quick-add-key", fpr[1], "rsa2048", "auth", "0")...)
	edit := g.interact([]string{"--edit-key", fpr[1]}, "keyedit.prompt",
		[]string{"keytocard", "key 1", "keytocard", "key 1", "key 2", "keytocard", "save"},
		map[string]string{"keyedit.keytocard.use_primary": "y", "cardedit.genkeys.storekeytype": "1|2|3"})
	snap := card.Snapshot()
	for i := 0; i < 3; i++ {
		if snap.KeyStatus[i] != 0x02 {
			t.Fatalf("key %d not imported (status %02X):\n%s", i+1, snap.KeyStatus[i], edit)
		}
	}
	msg := filepath.Join(g.home, "imp.txt")
	os.WriteFile(msg, []byte("imported keys\n"), 0o600)
	pin := []string{"--batch", "--pinentry-mode", "loopback", "--passphrase", pgpPIN, "--yes", "--trust-model", "always"}
	g.run("gpg", append(pin, "-u", "imp@example.org", "--detach-sign", "-o", msg+".sig", msg)...)
	if v := g.run("gpg", "--batch", "--verify", msg+".sig", msg); !strings.Contains(v, "Good signature") {
		t.Fatalf("gpg --verify:\n%s", v)
	}
	if card.Snapshot().SigCounter != 1 {
		t.Fatal("the signature was not made by the card")
	}
	g.run("gpg", append(pin, "-r", "imp@example.org", "--encrypt", "-o", msg+".gpg", msg)...)
	if dec := g.run("gpg", append(pin, "--decrypt", msg+".gpg")...); !strings.Contains(dec, "imported keys") {
		t.Fatalf("gpg --decrypt with the imported X25519 key:\n%s", dec)
	}
	g.kill()
	tok := pgpOverPCSC(t)
	objs, err := tok.Objects(context.Background(), cards.Filter{Kind: cards.KindPublicKey})
	if err != nil || len(objs) != 3 {
		t.Fatalf("driver objects: %v %v", objs, err)
	}
	checkFingerprints(t, tok.(*openpgp.Token), objs)
}

//go:build hwtest

package hwtest

import (
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
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"math/big"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/p11-card/p11-card/apdu"
	"github.com/p11-card/p11-card/cards"
	_ "github.com/p11-card/p11-card/cards/piv"
	"github.com/p11-card/p11-card/cards/piv/pivtest"
	"github.com/p11-card/p11-card/cards/vcard"
	"github.com/p11-card/p11-card/pcsc"
)

// Every PIV driver operation against the virtual YubiKey, through the rig's real pcscd
// and vpcd: extended APDUs, GET RESPONSE and transactions as a real reader carries them.

const drvMgmtHex = "010203040506070801020304050607080102030405060708"

// drvSetup inserts a virtual YubiKey (wrapped with an APDU log) into reader 0, connects
// through pcsc and binds it.
func drvSetup(t *testing.T, opt pivtest.Options, setup func(c *pivtest.Card)) (*pivtest.Card, *vcard.Log, *pcsc.Card, cards.Token) {
	t.Helper()
	r := testRig(t)
	card, err := pivtest.New(opt)
	if err != nil {
		t.Fatal(err)
	}
	if setup != nil {
		setup(card)
	}
	log := &vcard.Log{}
	insert(t, 0, vcard.WithLog(card, log))
	pc, err := pcsc.Establish(context.Background())
	if err != nil {
		t.Fatalf("Establish: %v", err)
	}
	t.Cleanup(func() { pc.Close() })
	conn, err := pc.Connect(context.Background(), r.ReaderName(0))
	if err != nil {
		t.Fatalf("Connect: %v", err)
	}
	t.Cleanup(func() { conn.Close() })
	tok, err := cards.Bind(context.Background(), conn, conn.ATR())
	if err != nil {
		t.Fatalf("Bind: %v", err)
	}
	if tok.Info().Driver != "piv" {
		t.Fatalf("bound by %q", tok.Info().Driver)
	}
	return card, log, conn, tok
}

// apdusOf counts the APDUs the card saw during f.
func apdusOf(log *vcard.Log, f func()) int {
	n := log.Count()
	f()
	return log.Count() - n
}

func TestPIVDriverOperations(t *testing.T) {
	ctx := context.Background()
	card, log, _, tok := drvSetup(t, pivtest.Options{Serial: 31337}, func(c *pivtest.Card) {
		for _, k := range []struct{ slot, alg byte }{{0x9A, pivtest.AlgECCP256}, {0x9C, pivtest.AlgRSA2048}, {0x9D, pivtest.AlgRSA4096}, {0x9E, pivtest.AlgEd25519}, {0x82, pivtest.AlgX25519}} {
			if _, err := c.GenerateInSlot(k.slot, k.alg); err != nil {
				t.Fatal(err)
			}
		}
	})
	// SELECT, GET VERSION, GET SERIAL, GET METADATA 80 (the PIN's state).
	if n := log.Count(); n != 4 {
		t.Errorf("bind: %d APDUs\n%s", n, log)
	}
	if in := tok.Info(); in.Serial != "31337" || in.Firmware.Major != 5 {
		t.Errorf("info %+v", in)
	}

	// A signing run as a PKCS#11 tool does it: find, login, sign.
	h := sha256.Sum256([]byte("through pcscd"))
	n := apdusOf(log, func() {
		objs, err := tok.Objects(ctx, cards.Filter{ID: []byte{1}, Kind: cards.KindPrivateKey})
		if err != nil || len(objs) != 1 {
			t.Fatalf("find key: %v %v", objs, err)
		}
		if err := tok.Login(ctx, cards.RoleUser, []byte("123456")); err != nil {
			t.Fatal(err)
		}
		sig, err := tok.Sign(ctx, []byte{1}, cards.SignECDSA, h[:], nil)
		if err != nil {
			t.Fatal(err)
		}
		pub := card.PublicKey(0x9A).(*ecdsa.PublicKey)
		if !ecdsa.Verify(pub, h[:], new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])) {
			t.Error("ECDSA signature does not verify")
		}
	})
	if n != 3 {
		t.Errorf("find+login+sign: %d APDUs", n)
	}

	// Everything listed, certificates and attestations included (extended GET DATA).
	objs, err := tok.Objects(ctx, cards.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	handles := map[string]cards.Object{}
	for _, o := range objs {
		handles[o.Handle] = o
	}
	for _, h := range []string{"9a/cert", "9c/priv", "9d/pub", "9e/priv", "82/priv", "9d/attest", "f9/cert"} {
		if _, ok := handles[h]; !ok {
			t.Errorf("no %s", h)
		}
	}
	if k := handles["9d/pub"].Key; k == nil || k.Bits != 4096 {
		t.Errorf("9D key %+v", k)
	}

	// RSA 2048 on the PIN-always slot, with the PIN in the same transaction.
	digestInfo := append([]byte{0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0x04, 0x20}, h[:]...)
	sig, err := tok.Sign(ctx, []byte{2}, cards.SignRSAPKCS1, digestInfo, &cards.Auth{PIN: []byte("123456")})
	if err != nil {
		t.Fatal(err)
	}
	if err := rsa.VerifyPKCS1v15(card.PublicKey(0x9C).(*rsa.PublicKey), crypto.SHA256, h[:], sig); err != nil {
		t.Error(err)
	}
	if _, err := tok.Sign(ctx, []byte{2}, cards.SignRSAPKCS1, digestInfo, nil); !errors.Is(err, cards.ErrLoginRequired) {
		t.Errorf("9C without a fresh PIN: %v", err)
	}
	// RSA 4096: 512-byte blocks both ways.
	pub4k := card.PublicKey(0x9D).(*rsa.PublicKey)
	ct, err := rsa.EncryptPKCS1v15(rand.Reader, pub4k, []byte("4096"))
	if err != nil {
		t.Fatal(err)
	}
	block, err := tok.Decrypt(ctx, []byte{3}, cards.DecryptRSARaw, ct, nil)
	if err != nil || !bytes.HasSuffix(block, []byte("\x004096")) {
		t.Errorf("decrypt 4096: %v", err)
	}
	sig, err = tok.Sign(ctx, []byte{3}, cards.SignRSAPKCS1, digestInfo, nil)
	if err != nil || rsa.VerifyPKCS1v15(pub4k, crypto.SHA256, h[:], sig) != nil {
		t.Errorf("sign 4096: %v", err)
	}
	sig, err = tok.Sign(ctx, []byte{4}, cards.SignEdDSA, []byte("ed"), nil)
	if err != nil || !ed25519.Verify(card.PublicKey(0x9E).(ed25519.PublicKey), []byte("ed"), sig) {
		t.Errorf("Ed25519: %v", err)
	}
	peer, _ := ecdh.X25519().GenerateKey(rand.Reader)
	secret, err := tok.Derive(ctx, []byte{5}, peer.PublicKey().Bytes(), nil)
	want, _ := peer.ECDH(card.PublicKey(0x82).(*ecdh.PublicKey))
	if err != nil || !bytes.Equal(secret, want) {
		t.Errorf("X25519: %v", err)
	}

	// Admin: SO login, generate, import, certificates (one compressed), delete.
	if err := tok.Login(ctx, cards.RoleSO, []byte(drvMgmtHex)); err != nil {
		t.Fatal(err)
	}
	gen, err := tok.GenerateKey(ctx, cards.KeyGenSpec{ID: []byte{6}, Alg: cards.AlgRSA, Bits: 2048, PINPolicy: "never"})
	if err != nil {
		t.Fatal(err)
	}
	if !gen.Key.Public.(*rsa.PublicKey).Equal(card.PublicKey(0x83)) {
		t.Error("generated key differs")
	}
	ek, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err := tok.ImportKey(ctx, cards.KeyGenSpec{ID: []byte{7}}, ek); err != nil {
		t.Fatal(err)
	}
	bigCert := drvCert(t, ek, 200)
	if err := tok.WriteCertificate(ctx, []byte{7}, bigCert); err != nil {
		t.Fatal(err)
	}
	certs, err := tok.Objects(ctx, cards.Filter{ID: []byte{7}, Kind: cards.KindCertificate})
	if err != nil || len(certs) != 1 || !bytes.Equal(certs[0].Cert, bigCert) {
		t.Errorf("written certificate: %v", err)
	}
	if err := tok.DeleteObject(ctx, "84/cert"); err != nil {
		t.Fatal(err)
	}
	if err := tok.DeleteObject(ctx, "84/priv"); err != nil {
		t.Fatal(err)
	}
	if card.PublicKey(0x84) != nil {
		t.Error("key not deleted")
	}
	aes256 := strings.Repeat("0f", 32)
	if err := tok.ChangePIN(ctx, cards.RoleSO, []byte(drvMgmtHex), []byte(aes256)); err != nil {
		t.Fatalf("management key to AES-256: %v", err)
	}
	if err := tok.Login(ctx, cards.RoleSO, []byte(aes256)); err != nil {
		t.Errorf("login with the new management key: %v", err)
	}
	if st, err := tok.PINStatus(ctx, cards.RoleSO); err != nil || st.Default {
		t.Errorf("SO status %+v %v", st, err)
	}
	if st, err := tok.PINStatus(ctx, cards.RolePUK); err != nil || st.Retries != 3 || !st.Default {
		t.Errorf("PUK status %+v %v", st, err)
	}

	// PINs: wrong, status, change, unblock.
	var ve *apdu.VerifyError
	if err := tok.Login(ctx, cards.RoleUser, []byte("000000")); !errors.As(err, &ve) || ve.Retries != 2 {
		t.Errorf("wrong PIN: %v", err)
	}
	st, err := tok.PINStatus(ctx, cards.RoleUser)
	if err != nil || st.Retries != 2 {
		t.Errorf("PIN status %+v %v", st, err)
	}
	if err := tok.Unblock(ctx, cards.RolePUK, []byte("12345678"), []byte("654321")); err != nil {
		t.Fatal(err)
	}
	if err := tok.ChangePIN(ctx, cards.RoleUser, []byte("654321"), []byte("123456")); err != nil {
		t.Fatal(err)
	}
	if err := tok.Logout(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := tok.Random(ctx, 8); !errors.Is(err, cards.ErrNotSupported) {
		t.Errorf("Random: %v", err)
	}
}

func drvCert(t *testing.T, k crypto.Signer, names int) []byte {
	t.Helper()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "pivdriver hwtest"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	for i := 0; i < names; i++ {
		tmpl.DNSNames = append(tmpl.DNSNames, "a-rather-long-host-name.example.com")
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, k.Public(), k)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// Another process resets the card: our next operation selects again and has lost the login.
func TestPIVDriverResetByOther(t *testing.T) {
	ctx := context.Background()
	_, log, _, tok := drvSetup(t, pivtest.Options{}, func(c *pivtest.Card) {
		if _, err := c.GenerateInSlot(0x9A, pivtest.AlgECCP256); err != nil {
			t.Fatal(err)
		}
	})
	if err := tok.Login(ctx, cards.RoleUser, []byte("123456")); err != nil {
		t.Fatal(err)
	}
	if _, err := tok.Sign(ctx, []byte{1}, cards.SignECDSA, make([]byte, 32), nil); err != nil {
		t.Fatal(err)
	}
	other, err := pcsc.Establish(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	oc, err := other.Connect(ctx, testRig(t).ReaderName(0))
	if err != nil {
		t.Fatal(err)
	}
	if err := oc.Reconnect(ctx, true); err != nil {
		t.Fatalf("reset by the other connection: %v", err)
	}
	oc.Close()
	n := apdusOf(log, func() {
		if _, err := tok.Sign(ctx, []byte{1}, cards.SignECDSA, make([]byte, 32), nil); !errors.Is(err, cards.ErrLoginRequired) {
			t.Errorf("sign after another process reset the card: %v", err)
		}
	})
	if n != 2 {
		t.Errorf("after reset: %d APDUs\n%s", n, log)
	}
	if _, err := tok.Sign(ctx, []byte{1}, cards.SignECDSA, make([]byte, 32), &cards.Auth{PIN: []byte("123456")}); err != nil {
		t.Errorf("sign with PIN after reset: %v", err)
	}
}

// The card leaves mid-operation: the error says so.
func TestPIVDriverCardRemoved(t *testing.T) {
	ctx := context.Background()
	_, _, _, tok := drvSetup(t, pivtest.Options{}, nil)
	remove(t, 0)
	_, err := tok.Objects(ctx, cards.Filter{ID: []byte{1}})
	if err == nil || !(errors.Is(err, pcsc.ErrCardRemoved) || errors.Is(err, pcsc.ErrNoCard) || errors.Is(err, pcsc.ErrCardReset)) {
		t.Errorf("objects of a removed card: %v", err)
	}
}

// p11-card objects lists the card through the real pcscd.
func TestPIVDriverObjectsCLI(t *testing.T) {
	drvSetup(t, pivtest.Options{Serial: 999}, func(c *pivtest.Card) {
		if _, err := c.GenerateInSlot(0x9C, pivtest.AlgECCP384); err != nil {
			t.Fatal(err)
		}
	})
	out := runTool(t, p11card(t), "objects", "--reader", "Yubico", "--json")
	var rep struct {
		Token struct {
			Serial string `json:"serial"`
		} `json:"token"`
		Objects []struct {
			Handle string `json:"handle"`
			ID     string `json:"id"`
			URI    string `json:"uri"`
		} `json:"objects"`
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if rep.Token.Serial != "999" {
		t.Errorf("serial %q", rep.Token.Serial)
	}
	var hs []string
	uris := map[string]string{}
	for _, o := range rep.Objects {
		hs = append(hs, o.Handle)
		uris[o.Handle] = o.URI
	}
	if !strings.Contains(strings.Join(hs, " "), "9c/priv") {
		t.Errorf("objects %v", hs)
	}
	// The URI names that one object to a PKCS#11 application (GnuTLS's p11tool) through
	// the module.
	so, _ := modBuild(t)
	list := runTool(t, "p11tool", "--provider", so, "--list-all", uris["9c/pub"])
	if strings.Count(list, "URL: ") != 1 || !strings.Contains(list, "ID: 02") || !strings.Contains(list, "Public key (EC/ECDSA-SECP384R1)") {
		t.Errorf("p11tool --list-all %s:\n%s", uris["9c/pub"], list)
	}
}

// The same job — load the module or bind, find the key by ID, log in, sign — counted in
// APDUs the card sees: OpenSC and ykcs11 through pkcs11-tool, and this driver.
func TestPIVDriverAPDUsVersusOthers(t *testing.T) {
	ctx := context.Background()
	setup := func(c *pivtest.Card) {
		if _, err := c.GenerateInSlot(0x9A, pivtest.AlgECCP256); err != nil {
			t.Fatal(err)
		}
	}
	ours := func() int {
		card := pivtest.MustNew(pivtest.Options{})
		setup(card)
		log := &vcard.Log{}
		insert(t, 0, vcard.WithLog(card, log))
		defer remove(t, 0)
		pc, err := pcsc.Establish(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer pc.Close()
		conn, err := pc.Connect(ctx, testRig(t).ReaderName(0))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		tok, err := cards.Bind(ctx, conn, conn.ATR())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tok.Objects(ctx, cards.Filter{ID: []byte{1}, Kind: cards.KindPrivateKey}); err != nil {
			t.Fatal(err)
		}
		if err := tok.Login(ctx, cards.RoleUser, []byte("123456")); err != nil {
			t.Fatal(err)
		}
		if _, err := tok.Sign(ctx, []byte{1}, cards.SignECDSA, make([]byte, 32), nil); err != nil {
			t.Fatal(err)
		}
		return log.Count()
	}()
	t.Logf("p11-card PIV driver: %d APDUs", ours)
	// SELECT, GET VERSION, GET SERIAL, the PIN's state (which the CK_TOKEN_INFO a tool
	// asks for next is answered from), GET METADATA 9A, VERIFY, GENERAL AUTHENTICATE.
	if ours > 7 {
		t.Errorf("driver scenario took %d APDUs, want at most 7", ours)
	}
	input := t.TempDir() + "/in"
	if err := os.WriteFile(input, make([]byte, 32), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, m := range []struct{ name, path string }{{"OpenSC", "/usr/lib/x86_64-linux-gnu/opensc-pkcs11.so"}, {"ykcs11", "/usr/lib/x86_64-linux-gnu/libykcs11.so"}} {
		t.Run(m.name, func(t *testing.T) {
			if _, err := os.Stat(m.path); err != nil {
				missing(t, "%s: %v", m.path, err)
			}
			card := pivtest.MustNew(pivtest.Options{})
			setup(card)
			log := &vcard.Log{}
			insert(t, 0, vcard.WithLog(card, log))
			out := runTool(t, "pkcs11-tool", "--module", m.path, "--login", "--pin", "123456", "--sign", "--id", "01",
				"--mechanism", "ECDSA", "--input-file", input, "--output-file", t.TempDir()+"/sig")
			t.Logf("%s: %d APDUs (ours %d)", m.name, log.Count(), ours)
			if log.Count() <= ours {
				t.Errorf("%s took %d APDUs, no more than ours (%d)?\n%s", m.name, log.Count(), ours, out)
			}
		})
	}
}

// drvPlainPIV is the virtual card without Yubico's extensions and with an ATR that offers
// no extended lengths: the driver falls back to short APDUs, chaining and GET RESPONSE,
// which pcscd and vpcd carry as they are.
type drvPlainPIV struct{ *pivtest.Card }

func (c drvPlainPIV) ATR() []byte {
	return []byte{0x3B, 0x88, 0x80, 0x01, 'p', 'l', 'a', 'i', 'n', 'P', 'I', 'V', 0x5C}
}
func (c drvPlainPIV) Transmit(ctx context.Context, cmd []byte) ([]byte, error) {
	if len(cmd) >= 2 && cmd[1] >= 0xF6 {
		return []byte{0x6D, 0x00}, nil
	}
	return c.Card.Transmit(ctx, cmd)
}

func TestPIVDriverPlainCardShortAPDUs(t *testing.T) {
	ctx := context.Background()
	r := testRig(t)
	card := pivtest.MustNew(pivtest.Options{})
	if _, err := card.GenerateInSlot(0x9A, pivtest.AlgRSA2048); err != nil {
		t.Fatal(err)
	}
	if err := card.SetCHUID(); err != nil {
		t.Fatal(err)
	}
	log := &vcard.Log{}
	insert(t, 2, vcard.WithLog(drvPlainPIV{card}, log))
	pc, err := pcsc.Establish(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	conn, err := pc.Connect(ctx, r.ReaderName(2))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	tok, err := cards.Bind(ctx, conn, conn.ATR())
	if err != nil {
		t.Fatal(err)
	}
	if in := tok.Info(); in.Manufacturer != "PIV" || len(in.Serial) != 16 {
		t.Errorf("info %+v", in)
	}
	objs, err := tok.Objects(ctx, cards.Filter{ID: []byte{1}})
	if err != nil || len(objs) != 3 {
		t.Fatalf("objects %v %v", objs, err)
	}
	if log.CountINS(0xC0) == 0 {
		t.Errorf("no GET RESPONSE: the certificate came in one short answer?\n%s", log)
	}
	h := sha256.Sum256([]byte("short"))
	digestInfo := append([]byte{0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0x04, 0x20}, h[:]...)
	sig, err := tok.Sign(ctx, []byte{1}, cards.SignRSAPKCS1, digestInfo, &cards.Auth{PIN: []byte("123456")})
	if err != nil {
		t.Fatal(err)
	}
	if err := rsa.VerifyPKCS1v15(card.PublicKey(0x9A).(*rsa.PublicKey), crypto.SHA256, h[:], sig); err != nil {
		t.Error(err)
	}
	if err := tok.Login(ctx, cards.RoleSO, []byte(drvMgmtHex)); err != nil {
		t.Fatal(err)
	}
	if err := tok.WriteCertificate(ctx, []byte{3}, objs[0].Cert); err != nil {
		t.Fatalf("chained PUT DATA: %v", err)
	}
	for _, e := range log.Entries() {
		if len(e.Cmd) > 5+255+1 {
			t.Errorf("an extended APDU went to a card that does not offer them: % X…", e.Cmd[:8])
		}
	}
}

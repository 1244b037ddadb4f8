package piv

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"testing"

	"github.com/p11-card/p11-card/cards"
	"github.com/p11-card/p11-card/cards/piv/pivtest"
)

// TestAPDUCounts pins the APDUs each operation costs on a YubiKey 5.7 (the table in
// doc.go). Steps run in order on one token, so what an earlier step cached is not read
// again.
func TestAPDUCounts(t *testing.T) {
	card := pivtest.MustNew(pivtest.Options{})
	provision(t, card, 0x9A, pivtest.AlgECCP256)
	provision(t, card, 0x9C, pivtest.AlgECCP256)
	provision(t, card, 0x9D, pivtest.AlgRSA2048)
	provision(t, card, 0x82, pivtest.AlgX25519)
	conn := &testConn{card: card}
	var tok cards.Token
	ek, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	peer, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	peerPt, _ := peer.PublicKey.Bytes()
	var cert []byte
	steps := []struct {
		name string
		want int
		run  func() error
	}{
		{"open", 4, func() (err error) { tok, err = Driver{}.Open(ctxb, conn, card.ATR()); return }},
		{"find private key 01", 1, func() error {
			_, err := tok.Objects(ctxb, cards.Filter{ID: []byte{1}, Kind: cards.KindPrivateKey})
			return err
		}},
		{"find certificate 01", 1, func() error {
			o, err := tok.Objects(ctxb, cards.Filter{ID: []byte{1}, Kind: cards.KindCertificate})
			if err == nil {
				cert = o[0].Cert
			}
			return err
		}},
		{"find everything about 01 again", 0, func() error { _, err := tok.Objects(ctxb, cards.Filter{ID: []byte{1}}); return err }},
		{"PIN status", 1, func() error { _, err := tok.PINStatus(ctxb, cards.RoleUser); return err }},
		{"login user", 1, func() error { return tok.Login(ctxb, cards.RoleUser, []byte("123456")) }},
		{"sign ECDSA", 1, func() error { _, err := tok.Sign(ctxb, []byte{1}, cards.SignECDSA, make([]byte, 32), nil); return err }},
		{"sign PIN-always (key not looked up before)", 3, func() error {
			_, err := tok.Sign(ctxb, []byte{2}, cards.SignECDSA, make([]byte, 32), &cards.Auth{PIN: []byte("123456")})
			return err
		}},
		{"sign PIN-always again", 2, func() error {
			_, err := tok.Sign(ctxb, []byte{2}, cards.SignECDSA, make([]byte, 32), &cards.Auth{PIN: []byte("123456")})
			return err
		}},
		{"decrypt RSA (key not looked up before)", 2, func() error {
			in := make([]byte, 256)
			in[255] = 5
			_, err := tok.Decrypt(ctxb, []byte{3}, cards.DecryptRSARaw, in, nil)
			return err
		}},
		{"derive ECDH", 1, func() error { _, err := tok.Derive(ctxb, []byte{1}, peerPt, nil); return err }},
		{"login SO (first: algorithm from metadata)", 3, func() error { return tok.Login(ctxb, cards.RoleSO, []byte(defaultMgmtHex)) }},
		{"login SO again", 2, func() error { return tok.Login(ctxb, cards.RoleSO, []byte(defaultMgmtHex)) }},
		{"generate", 1, func() error {
			_, err := tok.GenerateKey(ctxb, cards.KeyGenSpec{ID: []byte{4}, Alg: cards.AlgECP256})
			return err
		}},
		{"import", 1, func() error { return tok.ImportKey(ctxb, cards.KeyGenSpec{ID: []byte{6}}, ek) }},
		{"write certificate", 1, func() error { return tok.WriteCertificate(ctxb, []byte{6}, cert) }},
		{"delete certificate", 1, func() error { return tok.DeleteObject(ctxb, "83/cert") }},
		{"delete key", 1, func() error { return tok.DeleteObject(ctxb, "83/priv") }},
		{"change PIN", 1, func() error { return tok.ChangePIN(ctxb, cards.RoleUser, []byte("123456"), []byte("1234567")) }},
		{"unblock", 1, func() error { return tok.Unblock(ctxb, cards.RolePUK, []byte("12345678"), []byte("123456")) }},
		{"logout", 1, func() error { return tok.Logout(ctxb) }},
		{"random (none on PIV)", 0, func() error { _, err := tok.Random(ctxb, 8); return ignore(err, cards.ErrNotSupported) }},
		{"sign after a reset: SELECT + VERIFY + sign", 3, func() error {
			conn.resetNext = true
			_, err := tok.Sign(ctxb, []byte{1}, cards.SignECDSA, make([]byte, 32), &cards.Auth{PIN: []byte("123456")})
			return err
		}},
	}
	for _, s := range steps {
		var err error
		n, ins := conn.count(func() { err = s.run() })
		if err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		if n != s.want {
			t.Errorf("%s: %d APDUs %v, want %d", s.name, n, ins, s.want)
		}
	}
}

func ignore(err, want error) error {
	if err != nil && !errors.Is(err, want) {
		return err
	}
	return nil
}

// TestNewKeyKeepsCertificate: generating, importing or deleting a slot's key leaves the
// card's certificate object as it was (a YubiKey keeps it beside the new key), and the
// driver keeps what it read of it: no APDU reads it again. The key is what GENERATE
// answered, read anew after an import, and known gone after a deletion.
func TestNewKeyKeepsCertificate(t *testing.T) {
	fx := newFixture(t, pivtest.Options{}, func(c *pivtest.Card) { provision(t, c, 0x9A, pivtest.AlgRSA2048) })
	conn, tok := fx.conn, fx.tok
	var err error
	certOf := func() []byte {
		t.Helper()
		o, err := tok.Objects(ctxb, cards.Filter{ID: []byte{1}, Kind: cards.KindCertificate})
		if err != nil || len(o) != 1 {
			t.Fatalf("certificate 01: %d objects, %v", len(o), err)
		}
		return o[0].Cert
	}
	old := certOf()
	mustLogin(t, tok, cards.RoleSO, defaultMgmtHex)
	ek, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	for _, s := range []struct {
		name       string
		run        func() error
		keys, cost int // private keys listed after the step, and the APDUs that costs
	}{
		{"generate", func() error {
			_, err := tok.GenerateKey(ctxb, cards.KeyGenSpec{ID: []byte{1}, Alg: cards.AlgECP256})
			return err
		}, 1, 0}, // the GENERATE answer gave the key
		{"import", func() error { return tok.ImportKey(ctxb, cards.KeyGenSpec{ID: []byte{1}}, ek) }, 1, 1}, // GET METADATA
		{"delete key", func() error { return tok.DeleteObject(ctxb, "9a/priv") }, 0, 0},
	} {
		if err := s.run(); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		var got []byte
		if n, ins := conn.count(func() { got = certOf() }); n != 0 {
			t.Errorf("after %s: the certificate cost %d APDUs %v", s.name, n, ins)
		}
		if string(got) != string(old) {
			t.Errorf("after %s: the certificate changed", s.name)
		}
		var keys []cards.Object
		n, ins := conn.count(func() {
			keys, err = tok.Objects(ctxb, cards.Filter{ID: []byte{1}, Kind: cards.KindPrivateKey})
		})
		if err != nil || len(keys) != s.keys || n != s.cost {
			t.Errorf("after %s: %d private keys (%v) for %d APDUs %v; want %d for %d", s.name, len(keys), err, n, ins, s.keys, s.cost)
		}
	}
}

// TestLogoutResetsOwnPIN: Logout resets the PIN only when this token sent one since the
// last reset (a login, a signature with its PIN, a change or unblock); after an SO login
// alone it sends nothing, and the SO is logged out all the same.
func TestLogoutResetsOwnPIN(t *testing.T) {
	fx := newFixture(t, pivtest.Options{}, func(c *pivtest.Card) { provision(t, c, 0x9A, pivtest.AlgECCP256) })
	conn, tok := fx.conn, fx.tok
	var err error
	logout := func(what string, want int) {
		t.Helper()
		if n, ins := conn.count(func() { err = tok.Logout(ctxb) }); err != nil || n != want {
			t.Errorf("logout after %s: %d APDUs %v (%v), want %d", what, n, ins, err, want)
		}
	}
	logout("nothing", 0)
	mustLogin(t, tok, cards.RoleSO, defaultMgmtHex)
	logout("an SO login", 0)
	if _, err := tok.GenerateKey(ctxb, cards.KeyGenSpec{ID: []byte{2}, Alg: cards.AlgECP256}); !errors.Is(err, cards.ErrLoginRequired) {
		t.Errorf("generate after the SO logged out: %v", err)
	}
	mustLogin(t, tok, cards.RoleUser, "123456")
	logout("a user login", 1)
	if _, err := tok.Sign(ctxb, []byte{1}, cards.SignECDSA, make([]byte, 32), &cards.Auth{PIN: []byte("123456")}); err != nil {
		t.Fatal(err)
	}
	logout("a signature with its PIN", 1)
	if err := tok.ChangePIN(ctxb, cards.RoleUser, []byte("123456"), []byte("654321")); err != nil {
		t.Fatal(err)
	}
	logout("a PIN change", 1)
	logout("the logout", 0)
}

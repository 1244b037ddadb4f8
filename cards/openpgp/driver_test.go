package openpgp_test

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
	"errors"
	"math/big"
	"sync"
	"testing"
	"time"

	"github.com/p11-card/p11-card/apdu"
	"github.com/p11-card/p11-card/cards"
	"github.com/p11-card/p11-card/cards/openpgp"
	"github.com/p11-card/p11-card/cards/openpgp/pgptest"
	"github.com/p11-card/p11-card/cards/vcard"
)

var modes = []pgptest.Mode{pgptest.ModeYubiKey, pgptest.ModeStrict}

type rig struct {
	card   *pgptest.Card
	conn   *pgptest.Conn
	log    *vcard.Log
	faults *vcard.Faults
	tok    *openpgp.Token
}

func open(t *testing.T, m pgptest.Mode) *rig {
	t.Helper()
	r := &rig{card: pgptest.MustNew(pgptest.Options{Mode: m}), log: &vcard.Log{}, faults: &vcard.Faults{}}
	r.conn = pgptest.NewConn(vcard.WithLog(vcard.WithFaults(r.card, r.faults), r.log))
	tok, err := openpgp.Driver{}.Open(context.Background(), r.conn, r.card.ATR())
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	r.tok = tok.(*openpgp.Token)
	t.Cleanup(func() {
		if r.conn.Locked() {
			t.Errorf("transaction left open")
		}
	})
	return r
}

func forModes(t *testing.T, f func(t *testing.T, m pgptest.Mode)) {
	for _, m := range modes {
		t.Run(m.String(), func(t *testing.T) { f(t, m) })
	}
}

var ctx = context.Background()

func (r *rig) loginSO(t *testing.T) {
	t.Helper()
	if err := r.tok.Login(ctx, cards.RoleSO, []byte("12345678")); err != nil {
		t.Fatalf("SO login: %v", err)
	}
}

func (r *rig) loginUser(t *testing.T) {
	t.Helper()
	if err := r.tok.Login(ctx, cards.RoleUser, []byte("123456")); err != nil {
		t.Fatalf("user login: %v", err)
	}
}

func TestOpenTwoAPDUs(t *testing.T) {
	forModes(t, func(t *testing.T, m pgptest.Mode) {
		r := open(t, m)
		if n := r.log.Count(); n != 2 {
			t.Fatalf("Open sent %d APDUs, want 2:\n%s", n, r.log)
		}
		info := r.tok.Info()
		if info.Driver != "openpgp" || info.Serial != "000612345678" || info.Manufacturer != "Yubico" || !info.HasRandom || info.SOSecret != "pin" {
			t.Errorf("info %+v", info)
		}
		if info.Firmware != (cards.Version{Major: 3, Minor: 4}) {
			t.Errorf("version %v", info.Firmware)
		}
		ad := r.tok.AppData()
		if ad.Algo[0].Alg != cards.AlgRSA || ad.Algo[0].Bits != 2048 {
			t.Errorf("algo %+v", ad.Algo[0])
		}
		wantFP := 3
		if m == pgptest.ModeYubiKey {
			wantFP = 4
			if !ad.PW.PW1Multi || !ad.Extended || ad.MaxCommand != 0x0BFE {
				t.Errorf("yubikey app data: %+v", ad)
			}
		} else if ad.PW.PW1Multi || ad.Extended || !ad.Chaining {
			t.Errorf("strict app data: %+v", ad)
		}
		if len(ad.Fingerprints) != wantFP {
			t.Errorf("%d fingerprints", len(ad.Fingerprints))
		}
		objs, err := r.tok.Objects(ctx, cards.Filter{})
		if err != nil || len(objs) != 0 {
			t.Fatalf("objects of an empty card: %v %v", objs, err)
		}
	})
}

func TestNotOpenPGP(t *testing.T) {
	conn := pgptest.NewConn(notCard{})
	_, err := openpgp.Driver{}.Open(ctx, conn, []byte{0x3B, 0x00})
	if !errors.Is(err, cards.ErrNotRecognized) {
		t.Fatalf("got %v", err)
	}
}

type notCard struct{}

func (notCard) ATR() []byte { return []byte{0x3B, 0x00} }
func (notCard) Reset()      {}
func (notCard) Transmit(ctx context.Context, cmd []byte) ([]byte, error) {
	return []byte{0x6A, 0x82}, nil
}

func TestPINs(t *testing.T) {
	forModes(t, func(t *testing.T, m pgptest.Mode) {
		r := open(t, m)
		st, err := r.tok.PINStatus(ctx, cards.RoleUser)
		if err != nil || st.Retries != 3 || st.Blocked {
			t.Fatalf("status %+v %v", st, err)
		}
		// Too short: refused before the card, no try used.
		if err := r.tok.Login(ctx, cards.RoleUser, []byte("123")); !errors.Is(err, cards.ErrPINLength) {
			t.Fatalf("short PIN: %v", err)
		}
		var ve *apdu.VerifyError
		if err := r.tok.Login(ctx, cards.RoleUser, []byte("654321")); !errors.As(err, &ve) || ve.Retries != 2 {
			t.Fatalf("wrong PIN: %v", err)
		}
		if st, _ := r.tok.PINStatus(ctx, cards.RoleUser); st.Retries != 2 {
			t.Fatalf("retries %d", st.Retries)
		}
		r.loginUser(t)
		if st, _ := r.tok.PINStatus(ctx, cards.RoleUser); st.Retries != 3 {
			t.Fatalf("retries after good PIN %d", st.Retries)
		}
		for i := 0; i < 2; i++ {
			_ = r.tok.Login(ctx, cards.RoleUser, []byte("000000"))
		}
		if err := r.tok.Login(ctx, cards.RoleUser, []byte("000000")); !errors.Is(err, cards.ErrPINBlocked) {
			t.Fatalf("third wrong PIN: %v", err)
		}
		if err := r.tok.Login(ctx, cards.RoleUser, []byte("123456")); !errors.Is(err, cards.ErrPINBlocked) {
			t.Fatalf("blocked PIN: %v", err)
		}
		if st, _ := r.tok.PINStatus(ctx, cards.RoleUser); !st.Blocked {
			t.Fatalf("not blocked: %+v", st)
		}
		// Reset code: none yet.
		if err := r.tok.Unblock(ctx, cards.RolePUK, []byte("87654321"), []byte("111111")); err == nil {
			t.Fatal("unblock without a reset code worked")
		}
		// Unblock as admin.
		if err := r.tok.Unblock(ctx, cards.RoleSO, []byte("12345678"), []byte("222222")); err != nil {
			t.Fatalf("unblock as SO: %v", err)
		}
		if err := r.tok.Login(ctx, cards.RoleUser, []byte("222222")); err != nil {
			t.Fatalf("login with the new PIN: %v", err)
		}
		// Set a reset code, block PW1 again, unblock with it.
		if err := r.tok.ChangePIN(ctx, cards.RolePUK, []byte("12345678"), []byte("87654321")); err != nil {
			t.Fatalf("set reset code: %v", err)
		}
		if st, _ := r.tok.PINStatus(ctx, cards.RolePUK); st.Retries != 3 {
			t.Fatalf("reset code status %+v", st)
		}
		for i := 0; i < 3; i++ {
			_ = r.tok.Login(ctx, cards.RoleUser, []byte("000000"))
		}
		if err := r.tok.Unblock(ctx, cards.RolePUK, []byte("00000000"), []byte("333333")); !errors.As(err, &ve) || ve.Retries != 2 {
			t.Fatalf("wrong reset code: %v", err)
		}
		if err := r.tok.Unblock(ctx, cards.RolePUK, []byte("87654321"), []byte("333333")); err != nil {
			t.Fatalf("unblock with reset code: %v", err)
		}
		if err := r.tok.ChangePIN(ctx, cards.RoleUser, []byte("333333"), []byte("123456")); err != nil {
			t.Fatalf("change PIN: %v", err)
		}
		if err := r.tok.ChangePIN(ctx, cards.RoleUser, []byte("333333"), []byte("123456")); !errors.As(err, &ve) {
			t.Fatalf("change with a wrong old PIN: %v", err)
		}
		r.loginUser(t)
		if err := r.tok.ChangePIN(ctx, cards.RoleSO, []byte("12345678"), []byte("abcdefgh")); err != nil {
			t.Fatalf("change PW3: %v", err)
		}
		if err := r.tok.Login(ctx, cards.RoleSO, []byte("abcdefgh")); err != nil {
			t.Fatalf("login with new PW3: %v", err)
		}
		if err := r.tok.Login(ctx, cards.RolePUK, []byte("87654321")); !errors.Is(err, cards.ErrNotSupported) {
			t.Fatalf("login as PUK: %v", err)
		}
		if err := r.tok.Logout(ctx); err != nil {
			t.Fatalf("logout: %v", err)
		}
	})
}

func TestSOBlocked(t *testing.T) {
	forModes(t, func(t *testing.T, m pgptest.Mode) {
		r := open(t, m)
		for i := 0; i < 3; i++ {
			_ = r.tok.Login(ctx, cards.RoleSO, []byte("00000000"))
		}
		if st, _ := r.tok.PINStatus(ctx, cards.RoleSO); !st.Blocked || st.Retries != 0 {
			t.Fatalf("SO status %+v", st)
		}
		if err := r.tok.Login(ctx, cards.RoleSO, []byte("12345678")); !errors.Is(err, cards.ErrPINBlocked) {
			t.Fatalf("blocked SO login: %v", err)
		}
		// Factory reset is allowed with PW3 blocked.
		if err := r.tok.FactoryReset(ctx); err != nil {
			t.Fatalf("factory reset: %v", err)
		}
		r.loginSO(t)
	})
}

func digestInfo(msg []byte) []byte {
	h := sha256.Sum256(msg)
	prefix := []byte{0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0x04, 0x20}
	return append(prefix, h[:]...)
}

func findObj(t *testing.T, r *rig, id byte, kind cards.Kind) cards.Object {
	t.Helper()
	objs, err := r.tok.Objects(ctx, cards.Filter{ID: []byte{id}, Kind: kind})
	if err != nil || len(objs) != 1 {
		t.Fatalf("objects %02X %s: %v %v", id, kind, objs, err)
	}
	return objs[0]
}

func TestGenerateRSASign(t *testing.T) {
	forModes(t, func(t *testing.T, m pgptest.Mode) {
		r := open(t, m)
		if _, err := r.tok.GenerateKey(ctx, cards.KeyGenSpec{ID: []byte{1}, Alg: cards.AlgRSA, Bits: 2048}); !errors.Is(err, cards.ErrLoginRequired) {
			t.Fatalf("generate without SO: %v", err)
		}
		r.loginSO(t)
		pub, err := r.tok.GenerateKey(ctx, cards.KeyGenSpec{ID: []byte{1}, Alg: cards.AlgRSA, Bits: 2048})
		if err != nil {
			t.Fatalf("generate: %v", err)
		}
		rpub := pub.Key.Public.(*rsa.PublicKey)
		if !pub.Key.Sign || pub.Key.RawRSA || pub.Key.Bits != 2048 || !pub.Key.Local {
			t.Errorf("key info %+v", pub.Key)
		}
		if allZero(r.tok.AppData().Fingerprints[0]) {
			t.Error("no fingerprint stored")
		}
		r.log.Clear()
		priv := findObj(t, r, 1, cards.KindPrivateKey)
		if r.log.Count() != 0 {
			t.Errorf("Objects re-read the card:\n%s", r.log)
		}
		always := m == pgptest.ModeStrict
		if priv.Key.AlwaysAuth != always || !priv.Private {
			t.Errorf("private key %+v", priv.Key)
		}
		if _, err := r.tok.Sign(ctx, []byte{1}, cards.SignRSAPKCS1, digestInfo([]byte("x")), nil); !errors.Is(err, cards.ErrLoginRequired) {
			t.Fatalf("sign without PIN: %v", err)
		}
		r.loginUser(t)
		for i := 0; i < 2; i++ {
			var auth *cards.Auth
			if always {
				auth = &cards.Auth{PIN: []byte("123456")}
			}
			msg := []byte{byte(i)}
			sig, err := r.tok.Sign(ctx, []byte{1}, cards.SignRSAPKCS1, digestInfo(msg), auth)
			if err != nil {
				t.Fatalf("sign %d: %v", i, err)
			}
			h := sha256.Sum256(msg)
			if err := rsa.VerifyPKCS1v15(rpub, crypto.SHA256, h[:], sig); err != nil {
				t.Fatalf("verify: %v", err)
			}
		}
		if always {
			if _, err := r.tok.Sign(ctx, []byte{1}, cards.SignRSAPKCS1, digestInfo(nil), nil); !errors.Is(err, cards.ErrLoginRequired) {
				t.Fatalf("PIN-always key signed twice: %v", err)
			}
		}
		if n, err := r.tok.SignatureCount(ctx); err != nil || n != 2 {
			t.Fatalf("signature counter %d %v", n, err)
		}
		if _, err := r.tok.Sign(ctx, []byte{1}, cards.SignRSARaw, make([]byte, 256), nil); !errors.Is(err, cards.ErrMechanismUnsupported) {
			t.Fatalf("raw RSA: %v", err)
		}
		if _, err := r.tok.Sign(ctx, []byte{1}, cards.SignRSAPKCS1, make([]byte, 250), nil); !errors.Is(err, cards.ErrInputLength) {
			t.Fatalf("long input: %v", err)
		}
		if _, err := r.tok.Sign(ctx, []byte{3}, cards.SignRSAPKCS1, digestInfo(nil), nil); !errors.Is(err, cards.ErrKeyNotFound) {
			t.Fatalf("empty slot: %v", err)
		}
		if _, err := r.tok.Sign(ctx, []byte{9}, cards.SignRSAPKCS1, digestInfo(nil), nil); !errors.Is(err, cards.ErrKeyNotFound) {
			t.Fatalf("bad id: %v", err)
		}
	})
}

func allZero(b []byte) bool { return bytes.Count(b, []byte{0}) == len(b) }

func TestECC(t *testing.T) {
	forModes(t, func(t *testing.T, m pgptest.Mode) {
		r := open(t, m)
		r.loginSO(t)
		// AUT: P-256 ECDSA via INTERNAL AUTHENTICATE.
		aut, err := r.tok.GenerateKey(ctx, cards.KeyGenSpec{ID: []byte{3}, Alg: cards.AlgECP256})
		if err != nil {
			t.Fatalf("generate P-256: %v", err)
		}
		// SIG: Ed25519.
		sig, err := r.tok.GenerateKey(ctx, cards.KeyGenSpec{ID: []byte{1}, Alg: cards.AlgEd25519, PINPolicy: "once"})
		if err != nil {
			t.Fatalf("generate Ed25519: %v", err)
		}
		// DEC: X25519.
		dec, err := r.tok.GenerateKey(ctx, cards.KeyGenSpec{ID: []byte{2}, Alg: cards.AlgX25519})
		if err != nil {
			t.Fatalf("generate X25519: %v", err)
		}
		if !dec.Key.Derive || dec.Key.Decrypt || len(dec.Key.ECPoint) != 32 {
			t.Errorf("X25519 key %+v", dec.Key)
		}
		r.loginUser(t)
		h := sha256.Sum256([]byte("hello"))
		s, err := r.tok.Sign(ctx, []byte{3}, cards.SignECDSA, h[:], nil)
		if err != nil || len(s) != 64 {
			t.Fatalf("ECDSA: %x %v", s, err)
		}
		epub := aut.Key.Public.(*ecdsa.PublicKey)
		if !ecdsa.Verify(epub, h[:], new(big.Int).SetBytes(s[:32]), new(big.Int).SetBytes(s[32:])) {
			t.Fatal("ECDSA signature does not verify")
		}
		// A SHA-512 hash is truncated to the curve size.
		long := make([]byte, 64)
		copy(long, h[:])
		s, err = r.tok.Sign(ctx, []byte{3}, cards.SignECDSA, long, nil)
		if err != nil || !ecdsa.Verify(epub, h[:], new(big.Int).SetBytes(s[:32]), new(big.Int).SetBytes(s[32:])) {
			t.Fatalf("truncated ECDSA: %v", err)
		}
		es, err := r.tok.Sign(ctx, []byte{1}, cards.SignEdDSA, []byte("message"), nil)
		if err != nil || !ed25519.Verify(sig.Key.Public.(ed25519.PublicKey), []byte("message"), es) {
			t.Fatalf("EdDSA: %v", err)
		}
		if _, err := r.tok.Sign(ctx, []byte{1}, cards.SignECDSA, h[:], nil); !errors.Is(err, cards.ErrMechanismUnsupported) {
			t.Fatalf("ECDSA with Ed25519: %v", err)
		}
		peer, _ := ecdh.X25519().GenerateKey(rand.Reader)
		z, err := r.tok.Derive(ctx, []byte{2}, peer.PublicKey().Bytes(), nil)
		if err != nil {
			t.Fatalf("X25519: %v", err)
		}
		want, _ := peer.ECDH(dec.Key.Public.(*ecdh.PublicKey))
		if !bytes.Equal(z, want) {
			t.Fatal("X25519 secret differs")
		}
		if _, err := r.tok.Derive(ctx, []byte{2}, make([]byte, 31), nil); !errors.Is(err, cards.ErrInputLength) {
			t.Fatalf("short peer: %v", err)
		}
		if _, err := r.tok.Decrypt(ctx, []byte{2}, cards.DecryptRSAPKCS1, make([]byte, 32), nil); !errors.Is(err, cards.ErrMechanismUnsupported) {
			t.Fatalf("RSA decrypt with X25519: %v", err)
		}
		// DEC: P-384 ECDH.
		r.loginSO(t)
		dec, err = r.tok.GenerateKey(ctx, cards.KeyGenSpec{ID: []byte{2}, Alg: cards.AlgECP384})
		if err != nil {
			t.Fatalf("generate P-384: %v", err)
		}
		r.loginUser(t)
		ep, _ := ecdh.P384().GenerateKey(rand.Reader)
		z, err = r.tok.Derive(ctx, []byte{2}, ep.PublicKey().Bytes(), nil)
		if err != nil {
			t.Fatalf("ECDH P-384: %v", err)
		}
		dpub, _ := dec.Key.Public.(*ecdsa.PublicKey).ECDH()
		want, _ = ep.ECDH(dpub)
		if !bytes.Equal(z, want) {
			t.Fatal("ECDH secret differs")
		}
	})
}

func TestUnsupportedAlg(t *testing.T) {
	forModes(t, func(t *testing.T, m pgptest.Mode) {
		r := open(t, m)
		r.loginSO(t)
		if _, err := r.tok.GenerateKey(ctx, cards.KeyGenSpec{ID: []byte{1}, Alg: cards.AlgBrainpoolP256}); !errors.Is(err, cards.ErrBadInput) {
			t.Fatalf("brainpool on a card without it: %v", err)
		}
		if _, err := r.tok.GenerateKey(ctx, cards.KeyGenSpec{ID: []byte{2}, Alg: cards.AlgEd25519}); !errors.Is(err, cards.ErrMechanismUnsupported) {
			t.Fatalf("Ed25519 for decryption: %v", err)
		}
		if _, err := r.tok.GenerateKey(ctx, cards.KeyGenSpec{ID: []byte{1}, Alg: cards.AlgRSA, Bits: 1000}); !errors.Is(err, cards.ErrMechanismUnsupported) {
			t.Fatalf("RSA 1000: %v", err)
		}
		if _, err := r.tok.GenerateKey(ctx, cards.KeyGenSpec{ID: []byte{7}, Alg: cards.AlgECP256}); !errors.Is(err, cards.ErrKeyNotFound) {
			t.Fatalf("bad slot: %v", err)
		}
	})
}

func TestImportDecrypt(t *testing.T) {
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	forModes(t, func(t *testing.T, m pgptest.Mode) {
		r := open(t, m)
		r.loginSO(t)
		if err := r.tok.ImportKey(ctx, cards.KeyGenSpec{ID: []byte{2}}, rk); err != nil {
			t.Fatalf("import RSA: %v", err)
		}
		obj := findObj(t, r, 2, cards.KindPublicKey)
		if obj.Key.Public.(*rsa.PublicKey).N.Cmp(rk.N) != 0 || obj.Key.Local || !obj.Key.Decrypt {
			t.Fatalf("imported key %+v", obj.Key)
		}
		ct, _ := rsa.EncryptPKCS1v15(rand.Reader, &rk.PublicKey, []byte("secret"))
		if _, err := r.tok.Decrypt(ctx, []byte{2}, cards.DecryptRSAPKCS1, ct, nil); !errors.Is(err, cards.ErrLoginRequired) {
			t.Fatalf("decrypt without PIN: %v", err)
		}
		pt, err := r.tok.Decrypt(ctx, []byte{2}, cards.DecryptRSAPKCS1, ct, &cards.Auth{PIN: []byte("123456")})
		if err != nil || string(pt) != "secret" {
			t.Fatalf("decrypt: %q %v", pt, err)
		}
		if _, err := r.tok.Decrypt(ctx, []byte{2}, cards.DecryptRSARaw, ct, nil); !errors.Is(err, cards.ErrMechanismUnsupported) {
			t.Fatalf("raw decrypt: %v", err)
		}
		if _, err := r.tok.Decrypt(ctx, []byte{2}, cards.DecryptRSAPKCS1, make([]byte, 256), nil); !errors.Is(err, cards.ErrBadInput) {
			t.Fatalf("bad ciphertext: %v", err)
		}
		// Wrong PIN in Auth: a VerifyError, the operation not attempted.
		var ve *apdu.VerifyError
		if _, err := r.tok.Decrypt(ctx, []byte{2}, cards.DecryptRSAPKCS1, ct, &cards.Auth{PIN: []byte("999999")}); !errors.As(err, &ve) {
			t.Fatalf("decrypt with a wrong PIN: %v", err)
		}
		// EC, Ed25519, X25519 imports.
		ek, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		_, edk, _ := ed25519.GenerateKey(rand.Reader)
		xk, _ := ecdh.X25519().GenerateKey(rand.Reader)
		r.loginSO(t)
		for _, c := range []struct {
			id  byte
			key crypto.PrivateKey
		}{{3, ek}, {1, edk}, {2, xk}} {
			if err := r.tok.ImportKey(ctx, cards.KeyGenSpec{ID: []byte{c.id}}, c.key); err != nil {
				t.Fatalf("import %T: %v", c.key, err)
			}
			got := findObj(t, r, c.id, cards.KindPublicKey).Key.Public
			if !got.(interface{ Equal(crypto.PublicKey) bool }).Equal(c.key.(interface{ Public() crypto.PublicKey }).Public()) {
				t.Fatalf("import %T: public key differs", c.key)
			}
		}
		r.loginUser(t)
		peer, _ := ecdh.X25519().GenerateKey(rand.Reader)
		z, err := r.tok.Derive(ctx, []byte{2}, peer.PublicKey().Bytes(), nil)
		want, _ := xk.ECDH(peer.PublicKey())
		if err != nil || !bytes.Equal(z, want) {
			t.Fatalf("derive with imported X25519: %v", err)
		}
		if err := r.tok.ImportKey(ctx, cards.KeyGenSpec{ID: []byte{2}}, edk); !errors.Is(err, cards.ErrMechanismUnsupported) {
			t.Fatalf("Ed25519 into DEC: %v", err)
		}
	})
}

func selfSigned(t *testing.T) []byte {
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "pgp"},
		NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func TestCertificates(t *testing.T) {
	der := selfSigned(t)
	forModes(t, func(t *testing.T, m pgptest.Mode) {
		r := open(t, m)
		if err := r.tok.WriteCertificate(ctx, []byte{1}, der); !errors.Is(err, cards.ErrLoginRequired) {
			t.Fatalf("write without SO: %v", err)
		}
		r.loginSO(t)
		if err := r.tok.WriteCertificate(ctx, []byte{1}, der); err != nil {
			t.Fatalf("write SIG cert: %v", err)
		}
		if err := r.tok.WriteCertificate(ctx, []byte{3}, der[:100]); err != nil {
			t.Fatalf("write AUT cert: %v", err)
		}
		if err := r.tok.WriteCertificate(ctx, []byte{2}, make([]byte, 5000)); !errors.Is(err, cards.ErrCardFull) {
			t.Fatalf("huge cert: %v", err)
		}
		// A fresh token reads them back from the card, each in its occurrence.
		tok, err := openpgp.Driver{}.Open(ctx, r.conn, r.card.ATR())
		if err != nil {
			t.Fatal(err)
		}
		objs, err := tok.Objects(ctx, cards.Filter{Kind: cards.KindCertificate})
		if err != nil || len(objs) != 2 {
			t.Fatalf("certs: %v %v", objs, err)
		}
		if !bytes.Equal(objs[0].Cert, der) || objs[0].ID[0] != 1 || !bytes.Equal(objs[1].Cert, der[:100]) || objs[1].ID[0] != 3 {
			t.Fatalf("certs %+v", objs)
		}
		if s := r.card.Snapshot(); !bytes.Equal(s.Certs[2], der) || !bytes.Equal(s.Certs[0], der[:100]) {
			t.Fatal("certificates not in the spec's occurrences (0 AUT, 2 SIG)")
		}
		if err := tok.DeleteObject(ctx, "sig/cert"); err != nil {
			t.Fatalf("delete: %v", err)
		}
		if objs, _ := tok.Objects(ctx, cards.Filter{Kind: cards.KindCertificate}); len(objs) != 1 {
			t.Fatalf("after delete: %v", objs)
		}
		if err := tok.DeleteObject(ctx, "sig/priv"); !errors.Is(err, cards.ErrNotSupported) {
			t.Fatalf("delete key: %v", err)
		}
		if err := tok.DeleteObject(ctx, "nope"); !errors.Is(err, cards.ErrObjectNotFound) {
			t.Fatalf("delete unknown: %v", err)
		}
	})
}

func TestRemovalMidOperation(t *testing.T) {
	forModes(t, func(t *testing.T, m pgptest.Mode) {
		r := open(t, m)
		r.loginSO(t)
		if _, err := r.tok.GenerateKey(ctx, cards.KeyGenSpec{ID: []byte{3}, Alg: cards.AlgECP256}); err != nil {
			t.Fatal(err)
		}
		n := r.faults.Commands()
		r.faults.Set(func(f *vcard.Faults) { f.Count = vcard.PrivateKeyOp; f.RemoveAt = n + 1 })
		h := sha256.Sum256(nil)
		_, err := r.tok.Sign(ctx, []byte{3}, cards.SignECDSA, h[:], &cards.Auth{PIN: []byte("123456")})
		if !errors.Is(err, vcard.ErrRemoved) {
			t.Fatalf("sign with card pulled: %v", err)
		}
		if _, err := r.tok.PINStatus(ctx, cards.RoleUser); !errors.Is(err, vcard.ErrRemoved) {
			t.Fatalf("after removal: %v", err)
		}
	})
}

func TestFaultSW(t *testing.T) {
	forModes(t, func(t *testing.T, m pgptest.Mode) {
		r := open(t, m)
		n := r.faults.Commands()
		r.faults.Set(func(f *vcard.Faults) { f.Count = vcard.INS(0xCA); f.SWAt = map[int]uint16{n + 1: 0x6F00} })
		if _, err := r.tok.PINStatus(ctx, cards.RoleUser); err == nil {
			t.Fatal("6F00 from GET DATA gave no error")
		}
		if st, err := r.tok.PINStatus(ctx, cards.RoleUser); err != nil || st.Retries != 3 {
			t.Fatalf("second try: %+v %v", st, err)
		}
	})
}

func TestResetDropsLogin(t *testing.T) {
	forModes(t, func(t *testing.T, m pgptest.Mode) {
		r := open(t, m)
		r.loginSO(t)
		if _, err := r.tok.GenerateKey(ctx, cards.KeyGenSpec{ID: []byte{3}, Alg: cards.AlgEd25519}); err != nil {
			t.Fatal(err)
		}
		r.loginUser(t)
		if _, err := r.tok.Sign(ctx, []byte{3}, cards.SignEdDSA, []byte("a"), nil); err != nil {
			t.Fatal(err)
		}
		r.conn.ResetCard()
		r.log.Clear()
		if _, err := r.tok.Sign(ctx, []byte{3}, cards.SignEdDSA, []byte("a"), nil); !errors.Is(err, cards.ErrLoginRequired) {
			t.Fatalf("sign after reset: %v", err)
		}
		if r.log.CountINS(0xA4) != 1 {
			t.Fatalf("no re-select after reset:\n%s", r.log)
		}
		if _, err := r.tok.Sign(ctx, []byte{3}, cards.SignEdDSA, []byte("a"), &cards.Auth{PIN: []byte("123456")}); err != nil {
			t.Fatal(err)
		}
		if err := r.tok.Logout(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := r.tok.Sign(ctx, []byte{3}, cards.SignEdDSA, []byte("a"), nil); !errors.Is(err, cards.ErrLoginRequired) {
			t.Fatalf("sign after logout: %v", err)
		}
	})
}

func TestKDF(t *testing.T) {
	forModes(t, func(t *testing.T, m pgptest.Mode) {
		r := open(t, m)
		k := openpgp.KDF{Algo: 3, Hash: 8, Count: 100000, Salt: [3][]byte{[]byte("saltsalt"), []byte("rcrcrcrc"), []byte("adminadm")}}
		r.card.SetState(func(s *pgptest.State) {
			s.KDF = k.Encode()
			s.PW1 = openpgp.S2K(sha256.New(), k.Salt[0], []byte("123456"), 100000)
			s.PW3 = openpgp.S2K(sha256.New(), k.Salt[2], []byte("12345678"), 100000)
		})
		r.loginUser(t)
		r.loginSO(t)
		if err := r.tok.ChangePIN(ctx, cards.RoleUser, []byte("123456"), []byte("654321")); err != nil {
			t.Fatal(err)
		}
		if err := r.tok.Login(ctx, cards.RoleUser, []byte("654321")); err != nil {
			t.Fatal(err)
		}
		if want := openpgp.S2K(sha256.New(), k.Salt[0], []byte("654321"), 100000); !bytes.Equal(r.card.Snapshot().PW1, want) {
			t.Fatal("card holds something other than the KDF hash")
		}
	})
}

func TestRandom(t *testing.T) {
	forModes(t, func(t *testing.T, m pgptest.Mode) {
		r := open(t, m)
		b, err := r.tok.Random(ctx, 600)
		if err != nil || len(b) != 600 || allZero(b) {
			t.Fatalf("random: %d %v", len(b), err)
		}
	})
}

func TestObjectsFilter(t *testing.T) {
	forModes(t, func(t *testing.T, m pgptest.Mode) {
		r := open(t, m)
		k, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
		if err := r.card.PutKey(2, k, bytes.Repeat([]byte{1}, 20)); err != nil {
			t.Fatal(err)
		}
		// The card changed behind the token's back: Refresh re-reads 6E.
		if err := r.tok.Refresh(ctx); err != nil {
			t.Fatal(err)
		}
		r.log.Clear()
		objs, err := r.tok.Objects(ctx, cards.Filter{ID: []byte{3}, Kind: cards.KindPublicKey})
		if err != nil || len(objs) != 1 || objs[0].Handle != "aut/pub" {
			t.Fatalf("objects: %v %v", objs, err)
		}
		if r.log.Count() != 1 {
			t.Fatalf("one public key read should be one APDU:\n%s", r.log)
		}
		all, err := r.tok.Objects(ctx, cards.Filter{})
		if err != nil || len(all) != 2 {
			t.Fatalf("all objects: %v %v", all, err)
		}
		slots := r.tok.KeySlots()
		if len(slots) != 3 || slots[1].Name != "dec" {
			t.Fatalf("slots %+v", slots)
		}
	})
}

// TestConcurrentTokens runs two tokens over one card under the conn lock.
func TestStateFile(t *testing.T) {
	path := t.TempDir() + "/card.json"
	c1, err := pgptest.New(pgptest.Options{StateFile: path})
	if err != nil {
		t.Fatal(err)
	}
	conn := pgptest.NewConn(c1)
	tok, err := openpgp.Driver{}.Open(ctx, conn, c1.ATR())
	if err != nil {
		t.Fatal(err)
	}
	if err := tok.Login(ctx, cards.RoleSO, []byte("12345678")); err != nil {
		t.Fatal(err)
	}
	if _, err := tok.GenerateKey(ctx, cards.KeyGenSpec{ID: []byte{1}, Alg: cards.AlgECP256}); err != nil {
		t.Fatal(err)
	}
	_ = tok.Login(ctx, cards.RoleUser, []byte("000000"))
	c2, err := pgptest.New(pgptest.Options{StateFile: path})
	if err != nil {
		t.Fatal(err)
	}
	tok2, err := openpgp.Driver{}.Open(ctx, pgptest.NewConn(c2), c2.ATR())
	if err != nil {
		t.Fatal(err)
	}
	objs, _ := tok2.Objects(ctx, cards.Filter{ID: []byte{1}})
	if len(objs) != 2 {
		t.Fatalf("key lost across removal: %v", objs)
	}
	if st, _ := tok2.PINStatus(ctx, cards.RoleUser); st.Retries != 2 {
		t.Fatalf("retry counter lost: %+v", st)
	}
}

func TestRegistryBind(t *testing.T) {
	c := pgptest.MustNew(pgptest.Options{Mode: pgptest.ModeStrict})
	tok, err := cards.Bind(ctx, pgptest.NewConn(c), c.ATR())
	if err != nil || tok.Info().Driver != "openpgp" {
		t.Fatalf("bind: %v", err)
	}
}

var _ sync.Locker

func TestPolicies(t *testing.T) {
	forModes(t, func(t *testing.T, m pgptest.Mode) {
		r := open(t, m)
		r.loginSO(t)
		obj, err := r.tok.GenerateKey(ctx, cards.KeyGenSpec{ID: []byte{1}, Alg: cards.AlgECP256, PINPolicy: "always"})
		if err != nil {
			t.Fatal(err)
		}
		if !obj.Key.AlwaysAuth || obj.Key.PINPolicy != "always" {
			t.Fatalf("PIN policy always: %+v", obj.Key)
		}
		obj, err = r.tok.GenerateKey(ctx, cards.KeyGenSpec{ID: []byte{1}, Alg: cards.AlgECP256, PINPolicy: "once"})
		if err != nil || obj.Key.AlwaysAuth {
			t.Fatalf("PIN policy once: %+v %v", obj.Key, err)
		}
		if _, err := r.tok.GenerateKey(ctx, cards.KeyGenSpec{ID: []byte{3}, Alg: cards.AlgECP256, PINPolicy: "always"}); !errors.Is(err, cards.ErrNotSupported) {
			t.Fatalf("PIN policy on AUT: %v", err)
		}
		_, err = r.tok.GenerateKey(ctx, cards.KeyGenSpec{ID: []byte{3}, Alg: cards.AlgECP256, TouchPolicy: "cached"})
		if m == pgptest.ModeStrict {
			if !errors.Is(err, cards.ErrNotSupported) {
				t.Fatalf("touch policy on a card without UIF: %v", err)
			}
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		if k := findObj(t, r, 3, cards.KindPrivateKey).Key; k.TouchPolicy != "cached" {
			t.Fatalf("touch policy %q", k.TouchPolicy)
		}
		if k := findObj(t, r, 1, cards.KindPrivateKey).Key; k.TouchPolicy != "never" {
			t.Fatalf("touch policy of SIG %q", k.TouchPolicy)
		}
	})
}

// TestLogoutFallback: a card without VERIFY P1=FF (2.x) is logged out by selecting the
// application again.
func TestLogoutFallback(t *testing.T) {
	r := open(t, pgptest.ModeYubiKey)
	r.loginUser(t)
	n := r.faults.Commands()
	r.faults.Set(func(f *vcard.Faults) { f.Count = vcard.INS(0x20); f.SWAt = map[int]uint16{n + 1: 0x6B00} })
	r.log.Clear()
	if err := r.tok.Logout(ctx); err != nil {
		t.Fatal(err)
	}
	if r.log.CountINS(0xA4) != 1 {
		t.Fatalf("no SELECT after a refused VERIFY FF:\n%s", r.log)
	}
}

// TestOpenedPINs: the PW status Open read in 6E is handed out once, for the roles asked,
// with the time it was read.
func TestOpenedPINs(t *testing.T) {
	card := pgptest.MustNew(pgptest.Options{Mode: pgptest.ModeStrict})
	card.SetState(func(s *pgptest.State) { s.PW1Tries, s.PW3Tries = 2, 1 })
	before := time.Now()
	tok, err := openpgp.Driver{}.Open(ctx, pgptest.NewConn(card), card.ATR())
	if err != nil {
		t.Fatal(err)
	}
	o := tok.(cards.OpenedPINs)
	if _, _, ok := o.OpenedPINs(cards.RoleUser, cards.Role(9)); ok {
		t.Fatal("a role the PW status does not hold")
	}
	// The refusal above handed nothing out; the next call does.
	st, at, ok := o.OpenedPINs(cards.RoleUser, cards.RoleSO)
	if !ok || len(st) != 2 || st[0].Retries != 2 || st[1].Retries != 1 || st[0].MaxRetries != 3 || at.Before(before) || time.Since(at) > time.Minute {
		t.Fatalf("%+v at %v ok %v", st, at, ok)
	}
	if _, _, ok := o.OpenedPINs(cards.RoleUser); ok {
		t.Fatal("handed out twice")
	}
}

func TestPINStatusBadRole(t *testing.T) {
	r := open(t, pgptest.ModeStrict)
	if _, err := r.tok.PINStatus(ctx, cards.Role(9)); !errors.Is(err, cards.ErrNotSupported) {
		t.Fatal(err)
	}
	if err := r.tok.ChangePIN(ctx, cards.Role(9), nil, nil); !errors.Is(err, cards.ErrNotSupported) {
		t.Fatal(err)
	}
	if err := r.tok.Unblock(ctx, cards.Role(9), []byte("12345678"), []byte("123456")); !errors.Is(err, cards.ErrNotSupported) {
		t.Fatal(err)
	}
}

func TestCardholder(t *testing.T) {
	r := open(t, pgptest.ModeYubiKey)
	r.card.SetState(func(s *pgptest.State) { s.Name, s.Lang, s.Sex = []byte("Doe<<Jane"), []byte("en"), []byte("2") })
	ch, err := r.tok.CardholderData(ctx)
	if err != nil || ch.Name != "Doe<<Jane" || ch.Language != "en" || ch.Sex != '2' {
		t.Fatalf("%+v %v", ch, err)
	}
}

// TestV2Card runs the driver against a 2.1 card: RSA only, one certificate (AUT), no
// VERIFY P1=FF, no KDF-DO, no key information DO.
func TestV2Card(t *testing.T) {
	r := open(t, pgptest.ModeV2)
	info := r.tok.Info()
	if info.Firmware != (cards.Version{Major: 2, Minor: 1}) {
		t.Fatalf("version %v", info.Firmware)
	}
	ad := r.tok.AppData()
	if ad.KeyStatus != nil || ad.Caps.KDF || ad.MaxCommand != 0xFF {
		t.Fatalf("2.x data: %+v", ad)
	}
	r.loginSO(t)
	if _, err := r.tok.GenerateKey(ctx, cards.KeyGenSpec{ID: []byte{1}, Alg: cards.AlgECP256}); !errors.Is(err, cards.ErrBadInput) {
		t.Fatalf("ECC on a 2.1 card: %v", err)
	}
	pub, err := r.tok.GenerateKey(ctx, cards.KeyGenSpec{ID: []byte{1}, Alg: cards.AlgRSA, Bits: 2048})
	if err != nil {
		t.Fatal(err)
	}
	// Without DE the fingerprint the driver stored tells the key is there.
	if objs, _ := r.tok.Objects(ctx, cards.Filter{ID: []byte{1}}); len(objs) != 2 {
		t.Fatalf("objects %v", objs)
	}
	der := selfSigned(t)
	if err := r.tok.WriteCertificate(ctx, []byte{3}, der); err != nil {
		t.Fatalf("AUT certificate: %v", err)
	}
	if err := r.tok.WriteCertificate(ctx, []byte{1}, der); !errors.Is(err, cards.ErrNotSupported) {
		t.Fatalf("SIG certificate on 2.x: %v", err)
	}
	r.log.Clear()
	if err := r.tok.Login(ctx, cards.RoleUser, []byte("123456")); err != nil {
		t.Fatal(err)
	}
	if r.log.CountINS(0xCA) != 0 {
		t.Fatalf("KDF-DO read on a card without one:\n%s", r.log)
	}
	sig, err := r.tok.Sign(ctx, []byte{1}, cards.SignRSAPKCS1, digestInfo([]byte("v2")), &cards.Auth{PIN: []byte("123456")})
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.Sum256([]byte("v2"))
	if err := rsa.VerifyPKCS1v15(pub.Key.Public.(*rsa.PublicKey), crypto.SHA256, h[:], sig); err != nil {
		t.Fatal(err)
	}
	r.log.Clear()
	if err := r.tok.Logout(ctx); err != nil {
		t.Fatal(err)
	}
	if r.log.CountINS(0x20) != 0 || r.log.CountINS(0xA4) != 1 {
		t.Fatalf("2.x logout should re-select:\n%s", r.log)
	}
	tok2, err := openpgp.Driver{}.Open(ctx, r.conn, r.card.ATR())
	if err != nil {
		t.Fatal(err)
	}
	certs, err := tok2.Objects(ctx, cards.Filter{Kind: cards.KindCertificate})
	if err != nil || len(certs) != 1 || certs[0].ID[0] != 3 {
		t.Fatalf("2.x certificates %v %v", certs, err)
	}
}

func TestInfoFitsTokenInfo(t *testing.T) {
	for _, m := range []pgptest.Mode{pgptest.ModeYubiKey, pgptest.ModeStrict, pgptest.ModeV2} {
		info := open(t, m).tok.Info()
		if len(info.Model) > 16 || len(info.Label) > 32 || len(info.Serial) > 16 || len(info.Manufacturer) > 32 {
			t.Errorf("%s: %+v does not fit CK_TOKEN_INFO", m, info)
		}
	}
}

// TestAdminWithoutSecret: with PW3 verified by Login(RoleSO), Unblock and setting the reset
// code work without giving PW3 again (C_InitPIN in an SO session); without it they need login.
func TestAdminWithoutSecret(t *testing.T) {
	forModes(t, func(t *testing.T, m pgptest.Mode) {
		r := open(t, m)
		if err := r.tok.Unblock(ctx, cards.RoleSO, nil, []byte("654321")); !errors.Is(err, cards.ErrLoginRequired) {
			t.Fatalf("unblock without SO: %v", err)
		}
		if err := r.tok.ChangePIN(ctx, cards.RolePUK, nil, []byte("87654321")); !errors.Is(err, cards.ErrLoginRequired) {
			t.Fatalf("reset code without SO: %v", err)
		}
		r.loginSO(t)
		if err := r.tok.Unblock(ctx, cards.RoleSO, nil, []byte("654321")); err != nil {
			t.Fatal(err)
		}
		if err := r.tok.ChangePIN(ctx, cards.RolePUK, nil, []byte("87654321")); err != nil {
			t.Fatal(err)
		}
		if err := r.tok.Login(ctx, cards.RoleUser, []byte("654321")); err != nil {
			t.Fatal(err)
		}
		if err := r.tok.Unblock(ctx, cards.RolePUK, []byte("87654321"), []byte("123456")); err != nil {
			t.Fatal(err)
		}
	})
}

// TestJunkAppData: a card that accepts the SELECT but answers 6E with garbage is not ours.
func TestJunkAppData(t *testing.T) {
	s := &scripted{b: script([]byte{0x90, 0x00}, []byte{0x6E, 0x05, 0x01, 0x02, 0x90, 0x00})}
	_, err := openpgp.Driver{}.Open(ctx, s, []byte{0x3B, 0x00})
	if !errors.Is(err, cards.ErrNotRecognized) || !errors.Is(err, cards.ErrBadCard) {
		t.Fatalf("junk 6E: %v", err)
	}
}

func TestP521(t *testing.T) {
	r := open(t, pgptest.ModeYubiKey)
	r.loginSO(t)
	obj, err := r.tok.GenerateKey(ctx, cards.KeyGenSpec{ID: []byte{1}, Alg: cards.AlgECP521})
	if err != nil {
		t.Fatal(err)
	}
	if obj.Key.Bits != 521 || len(obj.Key.ECPoint) != 133 {
		t.Fatalf("P-521 key %+v", obj.Key)
	}
	h := make([]byte, 64)
	rand.Read(h)
	sig, err := r.tok.Sign(ctx, []byte{1}, cards.SignECDSA, h, &cards.Auth{PIN: []byte("123456")})
	if err != nil || len(sig) != 132 {
		t.Fatalf("P-521 signature %d bytes, %v", len(sig), err)
	}
	if !ecdsa.Verify(obj.Key.Public.(*ecdsa.PublicKey), h, new(big.Int).SetBytes(sig[:66]), new(big.Int).SetBytes(sig[66:])) {
		t.Fatal("P-521 signature does not verify")
	}
}

// overDecipher answers PSO:DECIPHER with more plaintext than any RSA key of the card holds.
type overDecipher struct{ vcard.Card }

func (c overDecipher) Transmit(ctx context.Context, cmd []byte) ([]byte, error) {
	if len(cmd) >= 4 && cmd[1] == 0x2A && cmd[2] == 0x80 && cmd[3] == 0x86 {
		return append(bytes.Repeat([]byte{0x41}, 250), 0x90, 0x00), nil
	}
	return c.Card.Transmit(ctx, cmd)
}

// A plaintext longer than PKCS#1 v1.5 leaves room for (k-11 bytes) is the card's lie:
// cards.ErrBadCard, not data for the application.
func TestDecryptTooLong(t *testing.T) {
	card := pgptest.MustNew(pgptest.Options{})
	rk, _ := rsa.GenerateKey(rand.Reader, 2048)
	if err := card.PutKey(1, rk, nil); err != nil {
		t.Fatal(err)
	}
	tok, err := openpgp.Driver{}.Open(ctx, pgptest.NewConn(overDecipher{card}), card.ATR())
	if err != nil {
		t.Fatal(err)
	}
	ct, _ := rsa.EncryptPKCS1v15(rand.Reader, &rk.PublicKey, []byte("secret"))
	pt, err := tok.Decrypt(ctx, []byte{2}, cards.DecryptRSAPKCS1, ct, &cards.Auth{PIN: []byte("123456")})
	if !errors.Is(err, cards.ErrBadCard) {
		t.Fatalf("250 bytes of plaintext from a 2048-bit key: %d bytes, %v", len(pt), err)
	}
}

// TestJournalAcrossApplications: two tokens over one card stand for two processes. A
// certificate one writes shows in the other's next listing (cards.Journal); a listing
// with nothing changed stays free of APDUs.
func TestJournalAcrossApplications(t *testing.T) {
	der := selfSigned(t)
	a := open(t, pgptest.ModeYubiKey)
	bLog := &vcard.Log{}
	b, err := openpgp.Driver{}.Open(ctx, pgptest.NewConn(vcard.WithLog(a.card, bLog)), a.card.ATR())
	if err != nil {
		t.Fatal(err)
	}
	certs := func(tok cards.Token) int {
		t.Helper()
		objs, err := tok.Objects(ctx, cards.Filter{Kind: cards.KindCertificate})
		if err != nil {
			t.Fatal(err)
		}
		return len(objs)
	}
	if n := certs(b); n != 0 {
		t.Fatalf("%d certificates on a new card", n)
	}
	if n0 := bLog.Count(); certs(b) != 0 || bLog.Count() != n0 {
		t.Fatalf("a second listing sent %d APDUs", bLog.Count()-n0)
	}
	a.loginSO(t)
	if err := a.tok.WriteCertificate(ctx, []byte{1}, der); err != nil {
		t.Fatal(err)
	}
	n0 := bLog.Count()
	if n := certs(b); n != 1 {
		t.Fatalf("the other application lists %d certificates after the write, want 1", n)
	}
	if bLog.Count() == n0 {
		t.Error("the other application did not read the card again")
	}
	if n0 := bLog.Count(); certs(b) != 1 || bLog.Count() != n0 {
		t.Errorf("after the re-read: %d APDUs", bLog.Count()-n0)
	}
}

// TestLogoutResetsWhatWasVerified: Logout resets the PINs this token verified and no
// other (PW3 may be another application's); nothing verified, or a reset since, costs no
// APDU.
func TestLogoutResetsWhatWasVerified(t *testing.T) {
	resets := func(r *rig) []byte {
		var refs []byte
		for _, e := range r.log.Entries() {
			if len(e.Cmd) >= 4 && e.Cmd[1] == 0x20 && e.Cmd[2] == 0xFF {
				refs = append(refs, e.Cmd[3])
			}
		}
		return refs
	}
	forModes(t, func(t *testing.T, m pgptest.Mode) {
		r := open(t, m)
		if err := r.card.PutKey(0, ed25519.NewKeyFromSeed(make([]byte, 32)), bytes.Repeat([]byte{1}, 20)); err != nil {
			t.Fatal(err)
		}
		if err := r.tok.Refresh(ctx); err != nil {
			t.Fatal(err)
		}
		user := []byte{0x82} // PW1 for one signature only: the login leaves 81 to each signature
		if r.tok.AppData().PW.PW1Multi {
			user = []byte{0x81, 0x82}
		}
		for _, s := range []struct {
			name  string
			login func()
			want  []byte
		}{
			{"nothing verified", func() {}, nil},
			{"user", func() { r.loginUser(t) }, user},
			{"SO", func() {
				if err := r.tok.Login(ctx, cards.RoleSO, []byte("12345678")); err != nil {
					t.Fatal(err)
				}
			}, []byte{0x83}},
			{"user, then a reset", func() { r.loginUser(t); r.conn.ResetCard() }, nil},
			{"a signature with its PIN", func() {
				if _, err := r.tok.Sign(ctx, []byte{1}, cards.SignEdDSA, []byte("m"), &cards.Auth{PIN: []byte("123456")}); err != nil {
					t.Fatal(err)
				}
			}, []byte{0x81}},
		} {
			s.login()
			r.log.Clear()
			if err := r.tok.Logout(ctx); err != nil {
				t.Fatalf("%s: %v", s.name, err)
			}
			if got := resets(r); !bytes.Equal(got, s.want) {
				t.Errorf("%s: logout reset % X, want % X", s.name, got, s.want)
			}
		}
	})
}

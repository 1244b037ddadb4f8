package piv

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
	"slices"
	"testing"
	"time"

	"github.com/p11-card/p11-card/apdu"
	"github.com/p11-card/p11-card/cards"
	"github.com/p11-card/p11-card/cards/piv/pivtest"
	"github.com/p11-card/p11-card/cards/vcard"
)

func TestOpenYubiKey(t *testing.T) {
	f := newFixture(t, pivtest.Options{Serial: 424242}, nil)
	if f.conn.n != 4 {
		t.Errorf("Open sent %d APDUs (%v), want 4: SELECT, GET VERSION, GET SERIAL, GET METADATA 80", f.conn.n, f.conn.ins)
	}
	in := f.tok.Info()
	if in.Serial != "424242" || in.Firmware != (cards.Version{Major: 5, Minor: 7, Patch: 1}) || in.Manufacturer != "Yubico" || in.SOSecret != "key-hex" {
		t.Errorf("Info = %+v", in)
	}
	if in.Label != "YubiKey PIV #424242" {
		t.Errorf("Label %q", in.Label)
	}
	if in.HasRandom {
		t.Error("HasRandom on a YubiKey")
	}
	if !f.tok.opt.Extended {
		t.Error("extended APDUs not used on a YubiKey 5")
	}
	if _, err := f.tok.Random(ctxb, 8); !errors.Is(err, cards.ErrNotSupported) {
		t.Errorf("Random: %v", err)
	}
}

func TestMatchATR(t *testing.T) {
	c := pivtest.MustNew(pivtest.Options{})
	if m := (Driver{}).MatchATR(c.ATR()); m != cards.MatchYes {
		t.Errorf("YubiKey ATR: %v", m)
	}
	if m := (Driver{}).MatchATR([]byte{0x3B, 0x80, 0x80, 0x01, 0x01}); m != cards.MatchMaybe {
		t.Errorf("other ATR: %v", m)
	}
}

// The scenario of a PKCS#11 signing tool: bind, find the key by CKA_ID, log in, sign.
func TestSignScenarioAPDUs(t *testing.T) {
	card := pivtest.MustNew(pivtest.Options{})
	provision(t, card, 0x9A, pivtest.AlgECCP256)
	conn := &testConn{card: card}
	var tok cards.Token
	total, _ := conn.count(func() {
		var err error
		if tok, err = cards.Bind(ctxb, conn, card.ATR()); err != nil {
			t.Fatal(err)
		}
		objs, err := tok.Objects(ctxb, cards.Filter{ID: []byte{1}, Kind: cards.KindPrivateKey})
		if err != nil || len(objs) != 1 {
			t.Fatalf("Objects: %v %v", objs, err)
		}
		mustLogin(t, tok, cards.RoleUser, "123456")
		h := sha256.Sum256([]byte("hello"))
		sig, err := tok.Sign(ctxb, []byte{1}, cards.SignECDSA, h[:], nil)
		if err != nil {
			t.Fatal(err)
		}
		pub := card.PublicKey(0x9A).(*ecdsa.PublicKey)
		if !ecdsa.Verify(pub, h[:], new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])) {
			t.Error("signature does not verify")
		}
	})
	// SELECT, GET VERSION, GET SERIAL, GET METADATA 80, GET METADATA 9A, VERIFY, GENERAL
	// AUTHENTICATE.
	if total != 7 {
		t.Errorf("scenario: %d APDUs %v, want 7", total, conn.ins)
	}
}

func TestObjectsFilterAndCache(t *testing.T) {
	f := newFixture(t, pivtest.Options{}, func(c *pivtest.Card) {
		provision(t, c, 0x9A, pivtest.AlgRSA2048)
		provision(t, c, 0x9D, pivtest.AlgECCP384)
	})
	tests := []struct {
		name  string
		f     cards.Filter
		apdus int
		kinds []cards.Kind
	}{
		{"priv 01", cards.Filter{ID: []byte{1}, Kind: cards.KindPrivateKey}, 1, []cards.Kind{cards.KindPrivateKey}},
		{"priv 01 again", cards.Filter{ID: []byte{1}, Kind: cards.KindPrivateKey}, 0, []cards.Kind{cards.KindPrivateKey}},
		{"pub 01 cached", cards.Filter{ID: []byte{1}, Kind: cards.KindPublicKey}, 0, []cards.Kind{cards.KindPublicKey}},
		{"cert 01", cards.Filter{ID: []byte{1}, Kind: cards.KindCertificate}, 1, []cards.Kind{cards.KindCertificate}},
		{"all 01", cards.Filter{ID: []byte{1}}, 0, []cards.Kind{cards.KindCertificate, cards.KindPublicKey, cards.KindPrivateKey}},
		{"unknown ID", cards.Filter{ID: []byte{0x77}}, 0, nil},
		{"attestation 9A", cards.Filter{ID: []byte{0x81}}, 1, []cards.Kind{cards.KindCertificate}},
		{"priv 03", cards.Filter{ID: []byte{3}, Kind: cards.KindPrivateKey}, 1, []cards.Kind{cards.KindPrivateKey}},
		// A retired slot without a key (metadata 6A88): its certificate is not read.
		{"empty slot 05", cards.Filter{ID: []byte{5}}, 1, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var objs []cards.Object
			n, ins := f.conn.count(func() {
				var err error
				if objs, err = f.tok.Objects(ctxb, tc.f); err != nil {
					t.Fatal(err)
				}
			})
			if n != tc.apdus {
				t.Errorf("%d APDUs %v, want %d", n, ins, tc.apdus)
			}
			var kinds []cards.Kind
			for _, o := range objs {
				kinds = append(kinds, o.Kind)
			}
			if !slices.Equal(kinds, tc.kinds) {
				t.Errorf("kinds %v, want %v", kinds, tc.kinds)
			}
		})
	}
	// Everything: 25 slots × (cert + metadata), minus what is cached, plus the data
	// objects and the 9D attestation; then nothing more.
	all, err := f.tok.Objects(ctxb, cards.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	n, ins := f.conn.count(func() { _, _ = f.tok.Objects(ctxb, cards.Filter{}) })
	if n != 0 {
		t.Errorf("second full listing sent %d APDUs %v", n, ins)
	}
	got := map[string]cards.Object{}
	for _, o := range all {
		got[o.Handle] = o
	}
	for _, h := range []string{"9a/cert", "9a/pub", "9a/priv", "9d/cert", "9d/pub", "9d/priv", "9a/attest", "9d/attest", "data/7e"} {
		if _, ok := got[h]; !ok {
			t.Errorf("missing %s in %d objects", h, len(all))
		}
	}
	priv := got["9a/priv"]
	if priv.Key == nil || priv.Key.Alg != cards.AlgRSA || priv.Key.Bits != 2048 || !priv.Key.Local || priv.Key.PINPolicy != "once" || !priv.Private {
		t.Errorf("9a/priv = %+v %+v", priv, priv.Key)
	}
	if !bytes.Equal(got["9d/attest"].ID, []byte{0x83}) {
		t.Errorf("9d attestation ID %X", got["9d/attest"].ID)
	}
	att, err := x509.ParseCertificate(got["9a/attest"].Cert)
	if err != nil {
		t.Fatal(err)
	}
	if !att.PublicKey.(*rsa.PublicKey).Equal(f.card.PublicKey(0x9A)) {
		t.Error("attestation certifies another key")
	}
	pub := got["9d/pub"]
	if !pub.Key.Public.(*ecdsa.PublicKey).Equal(f.card.PublicKey(0x9D)) || len(pub.Key.ECPoint) != 97 {
		t.Error("9d public key differs")
	}
}

func signVerify(t *testing.T, f *fixture, id byte, slot byte, scheme cards.SignScheme, auth *cards.Auth) {
	t.Helper()
	msg := []byte("message to sign")
	h := sha256.Sum256(msg)
	pub := f.card.PublicKey(slot)
	var in []byte
	switch scheme {
	case cards.SignRSAPKCS1:
		in = append([]byte{0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0x04, 0x20}, h[:]...)
	case cards.SignECDSA:
		in = h[:]
	case cards.SignEdDSA:
		in = msg
	case cards.SignRSARaw:
		k := pub.(*rsa.PublicKey).Size()
		in = make([]byte, k)
		in[k-1] = 7
	}
	sig, err := f.tok.Sign(ctxb, []byte{id}, scheme, in, auth)
	if err != nil {
		t.Fatalf("Sign %v: %v", scheme, err)
	}
	switch k := pub.(type) {
	case *rsa.PublicKey:
		if scheme == cards.SignRSAPKCS1 {
			if err := rsa.VerifyPKCS1v15(k, crypto.SHA256, h[:], sig); err != nil {
				t.Error(err)
			}
		} else {
			m := new(big.Int).Exp(new(big.Int).SetBytes(sig), big.NewInt(int64(k.E)), k.N)
			if m.Int64() != 7 {
				t.Error("raw RSA result wrong")
			}
		}
	case *ecdsa.PublicKey:
		n := (k.Curve.Params().BitSize + 7) / 8
		hh := h[:]
		if len(hh) > n {
			hh = hh[:n]
		}
		if len(sig) != 2*n || !ecdsa.Verify(k, hh, new(big.Int).SetBytes(sig[:n]), new(big.Int).SetBytes(sig[n:])) {
			t.Error("ECDSA signature does not verify")
		}
	case ed25519.PublicKey:
		if !ed25519.Verify(k, msg, sig) {
			t.Error("Ed25519 signature does not verify")
		}
	}
}

func TestSignSchemes(t *testing.T) {
	f := newFixture(t, pivtest.Options{}, func(c *pivtest.Card) {
		provision(t, c, 0x9A, pivtest.AlgRSA2048)
		provision(t, c, 0x9D, pivtest.AlgECCP384)
		provision(t, c, 0x82, pivtest.AlgEd25519)
		provision(t, c, 0x83, pivtest.AlgECCP256)
		provision(t, c, 0x84, pivtest.AlgRSA1024)
		provision(t, c, 0x85, pivtest.AlgRSA3072)
	})
	mustLogin(t, f.tok, cards.RoleUser, "123456")
	for _, tc := range []struct {
		name   string
		id     byte
		slot   byte
		scheme cards.SignScheme
	}{
		{"rsa2048 pkcs1", 1, 0x9A, cards.SignRSAPKCS1},
		{"rsa2048 raw", 1, 0x9A, cards.SignRSARaw},
		{"rsa1024 pkcs1", 7, 0x84, cards.SignRSAPKCS1},
		{"rsa3072 pkcs1", 8, 0x85, cards.SignRSAPKCS1},
		{"rsa3072 raw", 8, 0x85, cards.SignRSARaw},
		{"p384 ecdsa", 3, 0x9D, cards.SignECDSA},
		{"p256 ecdsa", 6, 0x83, cards.SignECDSA},
		{"ed25519", 5, 0x82, cards.SignEdDSA},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n, ins := f.conn.count(func() { signVerify(t, f, tc.id, tc.slot, tc.scheme, nil) })
			// Metadata of the slot once (not listed before), then GENERAL AUTHENTICATE.
			if n > 2 {
				t.Errorf("%d APDUs %v", n, ins)
			}
		})
	}
	n, ins := f.conn.count(func() { signVerify(t, f, 1, 0x9A, cards.SignRSAPKCS1, nil) })
	if n != 1 {
		t.Errorf("sign with known key: %d APDUs %v, want 1", n, ins)
	}
	// Unsupported combinations fail before any APDU.
	for _, tc := range []struct {
		id     byte
		scheme cards.SignScheme
	}{{1, cards.SignECDSA}, {3, cards.SignRSAPKCS1}, {5, cards.SignECDSA}, {3, cards.SignEdDSA}} {
		n, _ := f.conn.count(func() {
			if _, err := f.tok.Sign(ctxb, []byte{tc.id}, tc.scheme, make([]byte, 32), nil); !errors.Is(err, cards.ErrMechanismUnsupported) {
				t.Errorf("Sign %X %v: %v", tc.id, tc.scheme, err)
			}
		})
		if n != 0 {
			t.Errorf("refused sign sent %d APDUs", n)
		}
	}
	if _, err := f.tok.Sign(ctxb, []byte{1}, cards.SignRSAPKCS1, make([]byte, 250), nil); !errors.Is(err, cards.ErrInputLength) {
		t.Errorf("long PKCS#1 input: %v", err)
	}
	if _, err := f.tok.Sign(ctxb, []byte{9}, cards.SignECDSA, make([]byte, 32), nil); !errors.Is(err, cards.ErrKeyNotFound) {
		t.Errorf("empty slot: %v", err)
	}
	if _, err := f.tok.Sign(ctxb, []byte{0x55}, cards.SignECDSA, make([]byte, 32), nil); !errors.Is(err, cards.ErrKeyNotFound) {
		t.Errorf("unknown ID: %v", err)
	}
	if _, err := f.tok.Decrypt(ctxb, []byte{3}, cards.DecryptRSARaw, make([]byte, 48), nil); !errors.Is(err, cards.ErrMechanismUnsupported) {
		t.Errorf("decrypt with EC: %v", err)
	}
	if _, err := f.tok.Decrypt(ctxb, []byte{1}, cards.DecryptRSAPKCS1, make([]byte, 256), nil); !errors.Is(err, cards.ErrMechanismUnsupported) {
		t.Errorf("PKCS#1 decrypt: %v", err)
	}
	if _, err := f.tok.Derive(ctxb, []byte{1}, make([]byte, 65), nil); !errors.Is(err, cards.ErrMechanismUnsupported) {
		t.Errorf("derive with RSA: %v", err)
	}
}

func TestSignNeedsLogin(t *testing.T) {
	f := newFixture(t, pivtest.Options{}, func(c *pivtest.Card) { provision(t, c, 0x9A, pivtest.AlgECCP256) })
	_, err := f.tok.Sign(ctxb, []byte{1}, cards.SignECDSA, make([]byte, 32), nil)
	if !errors.Is(err, cards.ErrLoginRequired) {
		t.Fatalf("sign before login: %v", err)
	}
	// The PIN in Auth is verified in the same transaction.
	locks := f.conn.locks
	n, ins := f.conn.count(func() {
		if _, err := f.tok.Sign(ctxb, []byte{1}, cards.SignECDSA, make([]byte, 32), &cards.Auth{PIN: []byte("123456")}); err != nil {
			t.Fatal(err)
		}
	})
	if n != 2 || f.conn.locks != locks+1 {
		t.Errorf("sign with auth: %d APDUs %v in %d locks", n, ins, f.conn.locks-locks)
	}
}

func TestPINAlways(t *testing.T) {
	f := newFixture(t, pivtest.Options{}, func(c *pivtest.Card) { provision(t, c, 0x9C, pivtest.AlgECCP256) })
	objs, err := f.tok.Objects(ctxb, cards.Filter{ID: []byte{2}, Kind: cards.KindPrivateKey})
	if err != nil || len(objs) != 1 {
		t.Fatal(objs, err)
	}
	if !objs[0].Key.AlwaysAuth || objs[0].Key.PINPolicy != "always" {
		t.Errorf("9C key %+v", objs[0].Key)
	}
	mustLogin(t, f.tok, cards.RoleUser, "123456")
	if _, err := f.tok.Sign(ctxb, []byte{2}, cards.SignECDSA, make([]byte, 32), &cards.Auth{PIN: []byte("123456")}); err != nil {
		t.Fatal(err)
	}
	// The VERIFY was used up: without a fresh one the card refuses.
	if _, err := f.tok.Sign(ctxb, []byte{2}, cards.SignECDSA, make([]byte, 32), nil); !errors.Is(err, cards.ErrLoginRequired) {
		t.Errorf("second sign without PIN: %v", err)
	}
	var ve *apdu.VerifyError
	if _, err := f.tok.Sign(ctxb, []byte{2}, cards.SignECDSA, make([]byte, 32), &cards.Auth{PIN: []byte("000000")}); !errors.As(err, &ve) || ve.Retries != 2 {
		t.Errorf("sign with a wrong PIN: %v", err)
	}
}

func TestDecryptAndDerive(t *testing.T) {
	f := newFixture(t, pivtest.Options{}, func(c *pivtest.Card) {
		provision(t, c, 0x9D, pivtest.AlgRSA2048)
		provision(t, c, 0x9A, pivtest.AlgECCP256)
		provision(t, c, 0x82, pivtest.AlgX25519)
		provision(t, c, 0x83, pivtest.AlgECCP384)
	})
	mustLogin(t, f.tok, cards.RoleUser, "123456")
	pub := f.card.PublicKey(0x9D).(*rsa.PublicKey)
	ct, err := rsa.EncryptPKCS1v15(rand.Reader, pub, []byte("secret"))
	if err != nil {
		t.Fatal(err)
	}
	block, err := f.tok.Decrypt(ctxb, []byte{3}, cards.DecryptRSARaw, ct, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(block) != 256 || block[0] != 0 || block[1] != 2 || !bytes.HasSuffix(block, []byte("\x00secret")) {
		t.Errorf("decrypted block % X", block[:4])
	}
	if _, err := f.tok.Decrypt(ctxb, []byte{3}, cards.DecryptRSARaw, ct[:100], nil); !errors.Is(err, cards.ErrInputLength) {
		t.Errorf("short ciphertext: %v", err)
	}
	for _, tc := range []struct {
		name  string
		id    byte
		slot  byte
		curve ecdh.Curve
	}{
		{"p256", 1, 0x9A, ecdh.P256()},
		{"p384", 6, 0x83, ecdh.P384()},
		{"x25519", 5, 0x82, ecdh.X25519()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			peer, err := tc.curve.GenerateKey(rand.Reader)
			if err != nil {
				t.Fatal(err)
			}
			var cardPub *ecdh.PublicKey
			switch k := f.card.PublicKey(tc.slot).(type) {
			case *ecdsa.PublicKey:
				cardPub, _ = k.ECDH()
			case *ecdh.PublicKey:
				cardPub = k
			}
			want, err := peer.ECDH(cardPub)
			if err != nil {
				t.Fatal(err)
			}
			got, err := f.tok.Derive(ctxb, []byte{tc.id}, peer.PublicKey().Bytes(), nil)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Error("shared secrets differ")
			}
			if _, err := f.tok.Derive(ctxb, []byte{tc.id}, []byte{4, 1, 2}, nil); !errors.Is(err, cards.ErrBadInput) {
				t.Errorf("bad peer: %v", err)
			}
		})
	}
	if _, err := f.tok.Sign(ctxb, []byte{5}, cards.SignEdDSA, []byte("x"), nil); !errors.Is(err, cards.ErrMechanismUnsupported) {
		t.Errorf("sign with X25519: %v", err)
	}
}

func TestPINErrors(t *testing.T) {
	f := newFixture(t, pivtest.Options{}, nil)
	var ve *apdu.VerifyError
	err := f.tok.Login(ctxb, cards.RoleUser, []byte("000000"))
	if !errors.As(err, &ve) || ve.Retries != 2 {
		t.Fatalf("wrong PIN: %v", err)
	}
	st, err := f.tok.PINStatus(ctxb, cards.RoleUser)
	if err != nil || st.Retries != 2 || st.MaxRetries != 3 || st.Blocked || !st.Default {
		t.Errorf("PINStatus = %+v, %v", st, err)
	}
	if err := f.tok.Login(ctxb, cards.RoleUser, []byte("12345")); !errors.Is(err, cards.ErrPINLength) {
		t.Errorf("short PIN: %v", err)
	}
	_ = f.tok.Login(ctxb, cards.RoleUser, []byte("000000"))
	err = f.tok.Login(ctxb, cards.RoleUser, []byte("000000"))
	if !errors.Is(err, cards.ErrPINBlocked) {
		t.Errorf("last try: %v", err)
	}
	if err := f.tok.Login(ctxb, cards.RoleUser, []byte("123456")); !errors.Is(err, cards.ErrPINBlocked) {
		t.Errorf("blocked PIN: %v", err)
	}
	st, _ = f.tok.PINStatus(ctxb, cards.RoleUser)
	if !st.Blocked || st.Retries != 0 {
		t.Errorf("blocked status %+v", st)
	}
	if err := f.tok.Unblock(ctxb, cards.RoleSO, []byte("x"), []byte("654321")); !errors.Is(err, cards.ErrNotSupported) {
		t.Errorf("unblock by SO: %v", err)
	}
	if err := f.tok.Unblock(ctxb, cards.RolePUK, []byte("00000000"), []byte("654321")); !errors.As(err, &ve) || ve.Retries != 2 {
		t.Errorf("wrong PUK: %v", err)
	}
	if err := f.tok.Unblock(ctxb, cards.RolePUK, []byte("12345678"), []byte("654321")); err != nil {
		t.Fatal(err)
	}
	mustLogin(t, f.tok, cards.RoleUser, "654321")
	if err := f.tok.ChangePIN(ctxb, cards.RoleUser, []byte("654321"), []byte("11112222")); err != nil {
		t.Fatal(err)
	}
	if err := f.tok.ChangePIN(ctxb, cards.RolePUK, []byte("12345678"), []byte("87654321")); err != nil {
		t.Fatal(err)
	}
	st, err = f.tok.PINStatus(ctxb, cards.RolePUK)
	if err != nil || st.Retries != 3 || st.Default {
		t.Errorf("PUK status %+v %v", st, err)
	}
	if err := f.tok.Login(ctxb, cards.RolePUK, []byte("87654321")); !errors.Is(err, cards.ErrNotSupported) {
		t.Errorf("PUK login: %v", err)
	}
	if err := f.tok.Logout(ctxb); err != nil {
		t.Fatal(err)
	}
	st, _ = f.tok.PINStatus(ctxb, cards.RoleUser)
	if st.Verified {
		t.Error("verified after logout")
	}
}

func TestPINStatusWithoutMetadata(t *testing.T) {
	f := newFixture(t, pivtest.Options{Firmware: [3]byte{5, 2, 7}}, nil)
	_ = f.tok.Login(ctxb, cards.RoleUser, []byte("000000"))
	st, err := f.tok.PINStatus(ctxb, cards.RoleUser)
	if err != nil || st.Retries != 2 || st.Verified {
		t.Errorf("PINStatus %+v %v", st, err)
	}
	mustLogin(t, f.tok, cards.RoleUser, "123456")
	st, err = f.tok.PINStatus(ctxb, cards.RoleUser)
	if err != nil || !st.Verified {
		t.Errorf("PINStatus after login %+v %v", st, err)
	}
	st, err = f.tok.PINStatus(ctxb, cards.RolePUK)
	if err != nil || st.Retries != -1 {
		t.Errorf("PUK status %+v %v", st, err)
	}
}

func TestManagementKey(t *testing.T) {
	for _, fw := range [][3]byte{{5, 7, 1}, {5, 4, 3}, {5, 2, 7}} {
		t.Run(cards.Version{Major: int(fw[0]), Minor: int(fw[1]), Patch: int(fw[2])}.String(), func(t *testing.T) {
			f := newFixture(t, pivtest.Options{Firmware: fw}, nil)
			err := f.tok.Login(ctxb, cards.RoleSO, []byte("F0"+defaultMgmtHex[2:]))
			var ve *apdu.VerifyError
			if !errors.Is(err, cards.ErrPINIncorrect) || !errors.As(err, &ve) {
				t.Errorf("wrong key: %v", err)
			}
			if err := f.tok.Login(ctxb, cards.RoleSO, []byte("0102")); !errors.Is(err, cards.ErrPINLength) {
				t.Errorf("short key: %v", err)
			}
			if _, err := f.tok.GenerateKey(ctxb, cards.KeyGenSpec{ID: []byte{1}, Alg: cards.AlgECP256}); !errors.Is(err, cards.ErrLoginRequired) {
				t.Errorf("generate without SO: %v", err)
			}
			n, ins := f.conn.count(func() { mustLogin(t, f.tok, cards.RoleSO, defaultMgmtHex) })
			if n != 2 {
				t.Errorf("SO login: %d APDUs %v, want 2 (algorithm known)", n, ins)
			}
			newKey := "00112233445566778899aabbccddeeff0011223344556677"
			if err := f.tok.ChangePIN(ctxb, cards.RoleSO, []byte(defaultMgmtHex), []byte(newKey)); err != nil {
				t.Fatal(err)
			}
			if err := f.tok.Login(ctxb, cards.RoleSO, []byte(defaultMgmtHex)); !errors.Is(err, cards.ErrPINIncorrect) {
				t.Errorf("old key after change: %v", err)
			}
			mustLogin(t, f.tok, cards.RoleSO, newKey)
			st, err := f.tok.PINStatus(ctxb, cards.RoleSO)
			if err != nil || st.Default && fw[1] >= 3 {
				t.Errorf("SO status %+v %v", st, err)
			}
		})
	}
}

func TestGenerateImportWriteDelete(t *testing.T) {
	f := newFixture(t, pivtest.Options{}, nil)
	mustLogin(t, f.tok, cards.RoleSO, defaultMgmtHex)
	var obj cards.Object
	n, ins := f.conn.count(func() {
		var err error
		obj, err = f.tok.GenerateKey(ctxb, cards.KeyGenSpec{ID: []byte{1}, Alg: cards.AlgECP256, PINPolicy: "never", TouchPolicy: "never"})
		if err != nil {
			t.Fatal(err)
		}
	})
	if n != 1 {
		t.Errorf("generate: %d APDUs %v", n, ins)
	}
	if !obj.Key.Public.(*ecdsa.PublicKey).Equal(f.card.PublicKey(0x9A)) {
		t.Error("generated public key differs from the card's")
	}
	// Objects after generation: the key shows without asking the card again.
	objs, err := f.tok.Objects(ctxb, cards.Filter{ID: []byte{1}, Kind: cards.KindPrivateKey})
	if err != nil || len(objs) != 1 || objs[0].Key.PINPolicy != "never" {
		t.Fatalf("after generate: %v %v", objs, err)
	}
	// PIN policy never: no login needed to sign.
	if _, err := f.tok.Sign(ctxb, []byte{1}, cards.SignECDSA, make([]byte, 32), nil); err != nil {
		t.Errorf("sign with PIN policy never: %v", err)
	}
	for _, tc := range []struct {
		name string
		spec cards.KeyGenSpec
	}{
		{"rsa 4096", cards.KeyGenSpec{ID: []byte{3}, Alg: cards.AlgRSA, Bits: 4096}},
		{"ed25519", cards.KeyGenSpec{ID: []byte{4}, Alg: cards.AlgEd25519}},
		{"x25519 retired", cards.KeyGenSpec{ID: []byte{0x18}, Alg: cards.AlgX25519}},
	} {
		if testing.Short() && tc.spec.Bits == 4096 {
			continue
		}
		t.Run(tc.name, func(t *testing.T) {
			o, err := f.tok.GenerateKey(ctxb, tc.spec)
			if err != nil {
				t.Fatal(err)
			}
			if o.Key.Alg != tc.spec.Alg {
				t.Errorf("alg %v", o.Key.Alg)
			}
		})
	}
	for _, spec := range []cards.KeyGenSpec{
		{ID: []byte{1}, Alg: cards.AlgECP521},
		{ID: []byte{1}, Alg: cards.AlgRSA, Bits: 1536},
		{ID: []byte{0x19}, Alg: cards.AlgECP256},
		{ID: []byte{1}, Alg: cards.AlgECP256, PINPolicy: "sometimes"},
	} {
		if _, err := f.tok.GenerateKey(ctxb, spec); err == nil {
			t.Errorf("generate %+v succeeded", spec)
		}
	}
	// Import: each key type.
	rk, _ := rsa.GenerateKey(rand.Reader, 2048)
	ek, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	_, edk, _ := ed25519.GenerateKey(rand.Reader)
	xk, _ := ecdh.X25519().GenerateKey(rand.Reader)
	for i, k := range []crypto.PrivateKey{rk, ek, edk, xk} {
		id := byte(0x05 + i)
		n, ins := f.conn.count(func() {
			if err := f.tok.ImportKey(ctxb, cards.KeyGenSpec{ID: []byte{id}}, k); err != nil {
				t.Fatalf("import %T: %v", k, err)
			}
		})
		if n != 1 {
			t.Errorf("import %T: %d APDUs %v", k, n, ins)
		}
		pub := f.card.PublicKey(0x82 + byte(i))
		want := crypto.PublicKey(nil)
		if s, ok := k.(crypto.Signer); ok {
			want = s.Public()
		} else {
			want = xk.PublicKey()
		}
		if !pub.(interface{ Equal(crypto.PublicKey) bool }).Equal(want) {
			t.Errorf("imported %T differs", k)
		}
	}
	objs, err = f.tok.Objects(ctxb, cards.Filter{ID: []byte{5}, Kind: cards.KindPrivateKey})
	if err != nil || len(objs) != 1 || objs[0].Key.Local {
		t.Errorf("imported key object %v %v", objs, err)
	}
	// Attestation: not for imported keys.
	objs, err = f.tok.Objects(ctxb, cards.Filter{ID: []byte{0x85}})
	if err != nil || len(objs) != 0 {
		t.Errorf("attestation of an imported key: %v %v", objs, err)
	}
	// Certificates: plain and compressed.
	der := selfSigned(t, ek, 0)
	n, ins = f.conn.count(func() {
		if err := f.tok.WriteCertificate(ctxb, []byte{6}, der); err != nil {
			t.Fatal(err)
		}
	})
	if n != 1 {
		t.Errorf("write certificate: %d APDUs %v", n, ins)
	}
	big := selfSigned(t, ek, 4400)
	if len(big) < 3100 {
		t.Fatalf("test certificate of %d bytes is not big", len(big))
	}
	if err := f.tok.WriteCertificate(ctxb, []byte{7}, big); err != nil {
		t.Fatal(err)
	}
	stored, _ := f.card.Object(0x5FC10F)
	if cc, err := parseCertContainer(stored); err != nil || !cc.Compressed || !bytes.Equal(cc.DER, big) {
		t.Errorf("big certificate not stored compressed: %v", err)
	}
	// A fresh token reads both back.
	g := &fixture{card: f.card, conn: &testConn{card: f.card}}
	tok, err := Driver{}.Open(ctxb, g.conn, f.card.ATR())
	if err != nil {
		t.Fatal(err)
	}
	certs, err := tok.Objects(ctxb, cards.Filter{Kind: cards.KindCertificate})
	if err != nil {
		t.Fatal(err)
	}
	found := 0
	for _, c := range certs {
		if bytes.Equal(c.Cert, der) || bytes.Equal(c.Cert, big) {
			found++
		}
	}
	if found != 2 {
		t.Errorf("found %d of 2 written certificates", found)
	}
	// Delete certificate and key.
	if err := f.tok.DeleteObject(ctxb, "83/cert"); err != nil {
		t.Fatal(err)
	}
	if err := f.tok.DeleteObject(ctxb, "83/priv"); err != nil {
		t.Fatal(err)
	}
	objs, err = f.tok.Objects(ctxb, cards.Filter{ID: []byte{6}})
	if err != nil || len(objs) != 0 {
		t.Errorf("after delete: %v %v", objs, err)
	}
	if f.card.PublicKey(0x83) != nil {
		t.Error("key still on the card")
	}
	for _, h := range []string{"83/pub", "9a/attest", "zz/cert", "data/123456", "nonsense"} {
		if err := f.tok.DeleteObject(ctxb, h); err == nil {
			t.Errorf("delete %s succeeded", h)
		}
	}
}

func selfSigned(t *testing.T, k crypto.Signer, pad int) []byte {
	t.Helper()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1)}
	if pad > 0 {
		tmpl.Subject.CommonName = string(bytes.Repeat([]byte("a"), 60))
		tmpl.DNSNames = []string{}
		for i := 0; i < pad/20; i++ {
			tmpl.DNSNames = append(tmpl.DNSNames, "host.example.com")
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, k.Public(), k)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func TestProtectedManagementKey(t *testing.T) {
	f := newFixture(t, pivtest.Options{}, func(c *pivtest.Card) {
		key := pivtest.DefaultMgmtKey
		if err := c.PutObject(pivtest.ObjectAdmin, apdu.TLVBytes(0x80, apdu.TLVBytes(0x81, []byte{0x02}))); err != nil {
			t.Fatal(err)
		}
		if err := c.PutObject(pivtest.ObjectPrinted, apdu.TLVBytes(0x88, apdu.TLVBytes(0x89, key))); err != nil {
			t.Fatal(err)
		}
	})
	if _, err := f.tok.GenerateKey(ctxb, cards.KeyGenSpec{ID: []byte{1}, Alg: cards.AlgECP256}); !errors.Is(err, cards.ErrLoginRequired) {
		t.Errorf("generate before any login: %v", err)
	}
	mustLogin(t, f.tok, cards.RoleUser, "123456")
	n, ins := f.conn.count(func() {
		if _, err := f.tok.GenerateKey(ctxb, cards.KeyGenSpec{ID: []byte{1}, Alg: cards.AlgECP256}); err != nil {
			t.Fatal(err)
		}
	})
	// admin data, printed info, metadata 9B, 2× GENERAL AUTHENTICATE, GENERATE.
	if n != 6 {
		t.Errorf("first admin op: %d APDUs %v", n, ins)
	}
	n, ins = f.conn.count(func() {
		if _, err := f.tok.GenerateKey(ctxb, cards.KeyGenSpec{ID: []byte{2}, Alg: cards.AlgECP256}); err != nil {
			t.Fatal(err)
		}
	})
	if n != 1 {
		t.Errorf("second admin op: %d APDUs %v", n, ins)
	}
}

func TestResetByAnotherProcess(t *testing.T) {
	f := newFixture(t, pivtest.Options{}, func(c *pivtest.Card) { provision(t, c, 0x9A, pivtest.AlgECCP256) })
	mustLogin(t, f.tok, cards.RoleUser, "123456")
	mustLogin(t, f.tok, cards.RoleSO, defaultMgmtHex)
	if _, err := f.tok.Sign(ctxb, []byte{1}, cards.SignECDSA, make([]byte, 32), nil); err != nil {
		t.Fatal(err)
	}
	f.conn.resetNext = true
	n, ins := f.conn.count(func() {
		_, err := f.tok.Sign(ctxb, []byte{1}, cards.SignECDSA, make([]byte, 32), nil)
		if !errors.Is(err, cards.ErrLoginRequired) {
			t.Errorf("sign after reset: %v", err)
		}
	})
	if n != 2 || ins[0] != "A4" {
		t.Errorf("after reset: %v, want SELECT then GENERAL AUTHENTICATE", ins)
	}
	if _, err := f.tok.GenerateKey(ctxb, cards.KeyGenSpec{ID: []byte{2}, Alg: cards.AlgECP256}); !errors.Is(err, cards.ErrLoginRequired) {
		t.Errorf("admin op after reset: %v", err)
	}
	mustLogin(t, f.tok, cards.RoleUser, "123456")
	if _, err := f.tok.Sign(ctxb, []byte{1}, cards.SignECDSA, make([]byte, 32), nil); err != nil {
		t.Errorf("sign after new login: %v", err)
	}
}

// TestKeyFromCertX509Refuses: on a card without GET METADATA a key is known only from its
// certificate. A certificate crypto/x509 refuses for a fault outside the subject key (a
// negative serial number, a character a PrintableString may not hold) still gives the key,
// and the certificate object is the certificate alone, without the container's padding.
func TestKeyFromCertX509Refuses(t *testing.T) {
	f := newFixture(t, pivtest.Options{Firmware: [3]byte{5, 2, 7}}, func(c *pivtest.Card) { provision(t, c, 0x9A, pivtest.AlgECCP256) })
	pub := f.card.PublicKey(0x9A)
	ca, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(0x5A5A5A), Subject: pkix.Name{CommonName: "xyz"}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, pub, ca)
	if err != nil {
		t.Fatal(err)
	}
	der = bytes.Replace(der, []byte{0x02, 0x03, 0x5A, 0x5A, 0x5A}, []byte{0x02, 0x03, 0xA5, 0x5A, 0x5A}, 1)
	der = bytes.ReplaceAll(der, []byte("xyz"), []byte("x_z"))
	if _, err := x509.ParseCertificate(der); err == nil {
		t.Fatal("crypto/x509 accepts the certificate: the test shows nothing")
	}
	if err := f.card.PutCertificate(0x9A, append(bytes.Clone(der), 0, 0, 0)); err != nil {
		t.Fatal(err)
	}
	tok, err := Driver{}.Open(ctxb, &testConn{card: f.card}, f.card.ATR())
	if err != nil {
		t.Fatal(err)
	}
	objs, err := tok.Objects(ctxb, cards.Filter{ID: []byte{0x01}})
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[cards.Kind]cards.Object{}
	for _, o := range objs {
		kinds[o.Kind] = o
	}
	if c, ok := kinds[cards.KindCertificate]; !ok || !bytes.Equal(c.Cert, der) {
		t.Errorf("certificate object %v: %x", ok, c.Cert)
	}
	k, ok := kinds[cards.KindPublicKey]
	if !ok || k.Key == nil || k.Key.Alg != cards.AlgECP256 || !pub.(*ecdsa.PublicKey).Equal(k.Key.Public) {
		t.Errorf("public key object %v: %+v", ok, k.Key)
	}
}

// refuseINS answers one instruction with 6F00 (no precise diagnosis).
type refuseINS struct {
	vcard.Card
	ins byte
}

func (c refuseINS) Transmit(ctx context.Context, cmd []byte) ([]byte, error) {
	if len(cmd) >= 2 && cmd[1] == c.ins {
		return []byte{0x6F, 0x00}, nil
	}
	return c.Card.Transmit(ctx, cmd)
}

// TestOpenedPINs: Open reads the PIN's state in its transaction (GET METADATA on a
// YubiKey, an empty VERIFY on other PIV cards) and hands it out once, for the user only,
// as PINStatus would read it. A card that refuses the read is bound all the same.
func TestOpenedPINs(t *testing.T) {
	plainATR := []byte{0x3B, 0x80, 0x80, 0x01, 0x01}
	before := time.Now()
	f := newFixture(t, pivtest.Options{PINRetries: 5}, nil)
	o := cards.OpenedPINs(f.tok)
	if _, _, ok := o.OpenedPINs(cards.RoleUser, cards.RoleSO); ok {
		t.Fatal("handed out a state for the SO, a management key")
	}
	st, at, ok := o.OpenedPINs(cards.RoleUser)
	if !ok || len(st) != 1 || st[0].Retries != 5 || st[0].MaxRetries != 5 || !st[0].Default || at.Before(before) || time.Since(at) > time.Minute {
		t.Fatalf("%+v at %v ok %v", st, at, ok)
	}
	if _, _, ok := o.OpenedPINs(cards.RoleUser); ok {
		t.Fatal("handed out twice")
	}
	if now, err := f.tok.PINStatus(ctxb, cards.RoleUser); err != nil || now != st[0] {
		t.Errorf("PINStatus %+v %v, Open read %+v", now, err, st[0])
	}

	plain := pivtest.MustNew(pivtest.Options{})
	tok, err := Driver{}.Open(ctxb, &testConn{card: plainPIV{plain}}, plainATR)
	if err != nil {
		t.Fatal(err)
	}
	if st, _, ok := tok.(cards.OpenedPINs).OpenedPINs(cards.RoleUser); !ok || st[0].Retries != 3 || st[0].Verified {
		t.Errorf("plain PIV card: %+v ok %v", st, ok)
	}

	for _, c := range []struct {
		name string
		card vcard.Card
		atr  []byte
	}{
		{"YubiKey refusing GET METADATA", refuseINS{pivtest.MustNew(pivtest.Options{}), insGetMetadata}, plain.ATR()},
		{"PIV card refusing an empty VERIFY", refuseINS{plainPIV{pivtest.MustNew(pivtest.Options{})}, 0x20}, plainATR},
	} {
		tok, err := Driver{}.Open(ctxb, &testConn{card: c.card}, c.atr)
		if err != nil {
			t.Fatalf("%s: Open: %v", c.name, err)
		}
		if st, _, ok := tok.(cards.OpenedPINs).OpenedPINs(cards.RoleUser); ok {
			t.Errorf("%s: handed out %+v", c.name, st)
		}
	}
}

// answerSW answers a command with what answer gives, or passes it on when that is nil.
type answerSW struct {
	vcard.Card
	answer func(cmd []byte) []byte
}

func (c answerSW) Transmit(ctx context.Context, cmd []byte) ([]byte, error) {
	if sw := c.answer(cmd); sw != nil {
		return sw, nil
	}
	return c.Card.Transmit(ctx, cmd)
}

// TestPINStatusFallbacks: a card whose version promises GET METADATA but which refuses it
// has its PIN's state read by an empty VERIFY from then on; a card that refuses the empty
// VERIFY too is asked nothing more: its PIN's state is unknown, without an error, for
// every CK_TOKEN_INFO after, while logging in works as before.
func TestPINStatusFallbacks(t *testing.T) {
	refuse := func(meta, verify []byte) func([]byte) []byte {
		return func(cmd []byte) []byte {
			switch {
			case len(cmd) >= 2 && cmd[1] == insGetMetadata:
				return meta
			case len(cmd) == 4 && cmd[1] == 0x20 && cmd[2] == 0x00:
				return verify
			}
			return nil
		}
	}
	for _, c := range []struct {
		name        string
		answer      func([]byte) []byte
		retries     int      // the state Open reads and PINStatus after it
		again       []string // what PINStatus sends after Open
		wantNoQuery bool
	}{
		{"no GET METADATA (6D00)", refuse([]byte{0x6D, 0x00}, nil), 3, []string{"20 0080"}, false},
		{"no GET METADATA (6A81)", refuse([]byte{0x6A, 0x81}, nil), 3, []string{"20 0080"}, false},
		{"no empty VERIFY (6700)", refuse([]byte{0x6D, 0x00}, []byte{0x67, 0x00}), -1, nil, true},
		{"no empty VERIFY (6A80)", refuse([]byte{0x6D, 0x00}, []byte{0x6A, 0x80}), -1, nil, true},
	} {
		card := pivtest.MustNew(pivtest.Options{})
		conn := &testConn{card: answerSW{card, c.answer}}
		var tok cards.Token
		_, sent := conn.count(func() {
			var err error
			if tok, err = (Driver{}).Open(ctxb, conn, card.ATR()); err != nil {
				t.Fatalf("%s: Open: %v", c.name, err)
			}
		})
		st, _, ok := tok.(cards.OpenedPINs).OpenedPINs(cards.RoleUser)
		if !ok || st[0].Retries != c.retries {
			t.Errorf("%s: Open read %+v ok %v (sent %q)", c.name, st, ok, sent)
		}
		pt := tok.(*Token)
		if pt.hasMeta || pt.noPINQuery != c.wantNoQuery {
			t.Errorf("%s: after Open metadata %v, no PIN query %v (sent %q)", c.name, pt.hasMeta, pt.noPINQuery, sent)
		}
		for i := range 2 {
			var st cards.PINStatus
			var err error
			locks := conn.locks
			_, sent := conn.count(func() { st, err = tok.PINStatus(ctxb, cards.RoleUser) })
			if err != nil || st.Retries != c.retries || !slices.Equal(sent, c.again) {
				t.Errorf("%s: PINStatus %d: %+v %v, sent %q (want %q)", c.name, i, st, err, sent, c.again)
			}
			if c.again == nil && conn.locks != locks {
				t.Errorf("%s: PINStatus %d began a transaction for nothing", c.name, i)
			}
		}
		if err := tok.Login(ctxb, cards.RoleUser, []byte("123456")); err != nil {
			t.Errorf("%s: Login: %v", c.name, err)
		}
		if st, err := tok.PINStatus(ctxb, cards.RoleUser); err != nil || !st.Verified {
			t.Errorf("%s: PINStatus after login: %+v %v", c.name, st, err)
		}
		if st, err := tok.PINStatus(ctxb, cards.RolePUK); err != nil || st.Retries != -1 {
			t.Errorf("%s: PUK status: %+v %v", c.name, st, err)
		}
	}
}

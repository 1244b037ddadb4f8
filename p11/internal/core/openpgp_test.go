package core

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"testing"
	"time"

	"github.com/p11-card/p11-card/cards/openpgp"
	"github.com/p11-card/p11-card/cards/openpgp/pgptest"
)

// TestOpenPGPDriver runs core over the real OpenPGP driver and the virtual card: the
// signature key needs the PIN for every signature (context-specific login), RSA
// decryption is padded on the card, no raw RSA mechanisms are offered.
func TestOpenPGPDriver(t *testing.T) {
	card := pgptest.MustNew(pgptest.Options{})
	sigKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	decKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	autKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	for i, k := range []crypto.PrivateKey{sigKey, decKey, autKey} {
		if err := card.PutKey(i, k, nil); err != nil {
			t.Fatal(err)
		}
	}
	m, _ := openpgpApp(t, card)
	mechs, err := m.Mechanisms(1)
	if err != nil {
		t.Fatal(err)
	}
	for _, mt := range mechs {
		if mt == CKM_RSA_X_509 || mt == CKM_RSA_PKCS_PSS || mt == CKM_RSA_PKCS_OAEP {
			t.Errorf("mechanism %#x offered without raw RSA", mt)
		}
	}
	s, _ := m.OpenSession(1, CKF_SERIAL_SESSION)
	login(t, m, s)
	msg := []byte("openpgp")
	sum := sha256.Sum256(msg)
	sig := find1(t, m, s, CKO_PRIVATE_KEY, 1)
	always := attr(t, m, s, sig, CKA_ALWAYS_AUTHENTICATE).Value
	wantRV(t, m.SignInit(s, Mechanism{Type: CKM_SHA256_RSA_PKCS}, sig), CKR_OK)
	if len(always) == 1 && always[0] == 1 {
		wantRV(t, m.Login(s, CKU_CONTEXT_SPECIFIC, []byte("123456")), CKR_OK)
	} else {
		wantRV(t, m.Login(s, CKU_CONTEXT_SPECIFIC, []byte("123456")), CKR_OPERATION_NOT_INITIALIZED)
	}
	out, err := m.Sign(s, msg, 256)
	if err != nil {
		t.Fatal(err)
	}
	if err := rsa.VerifyPKCS1v15(&sigKey.PublicKey, crypto.SHA256, sum[:], out); err != nil {
		t.Errorf("signature: %v", err)
	}
	ct, _ := rsa.EncryptPKCS1v15(rand.Reader, &decKey.PublicKey, msg)
	wantRV(t, m.DecryptInit(s, Mechanism{Type: CKM_RSA_PKCS}, find1(t, m, s, CKO_PRIVATE_KEY, 2)), CKR_OK)
	if pt, err := m.Decrypt(s, ct, 256); err != nil || string(pt) != "openpgp" {
		t.Errorf("decrypt %q %v", pt, err)
	}
	wantRV(t, m.SignInit(s, Mechanism{Type: CKM_ECDSA}, find1(t, m, s, CKO_PRIVATE_KEY, 3)), CKR_OK)
	out, err = m.Sign(s, sum[:], 64)
	if err != nil {
		t.Fatal(err)
	}
	if !ecdsa.Verify(&autKey.PublicKey, sum[:], new(bigInt).SetBytes(out[:32]), new(bigInt).SetBytes(out[32:])) {
		t.Error("authentication key signature")
	}
}

// transmitConn serves any in-process card as a cards.Conn.
type transmitConn struct {
	pivConn
	t interface {
		Transmit(ctx context.Context, cmd []byte) ([]byte, error)
	}
}

// openpgpApp is an application over the real OpenPGP driver and card.
func openpgpApp(t *testing.T, card *pgptest.Card) (*Module, *transmitConn) {
	t.Helper()
	conn := &transmitConn{t: card}
	tok, err := openpgp.Driver{}.Open(context.Background(), conn, card.ATR())
	if err != nil {
		t.Fatal(err)
	}
	return newApp(t, tokenSource(conn, tok, "OpenPGP reader")), conn
}

func (c *transmitConn) Transmit(ctx context.Context, cmd []byte) ([]byte, error) {
	c.apdus.Add(1)
	return c.t.Transmit(ctx, cmd)
}

// TestOpenPGPTokenInfoAfterOpen: the application data the driver read at bind holds the
// PW status bytes, so the first C_GetTokenInfo costs no APDU and shows the counters the
// card had then; once that reading is older than pinStatusFresh, the card is asked.
func TestOpenPGPTokenInfoAfterOpen(t *testing.T) {
	defer func(d time.Duration) { pinStatusFresh = d }(pinStatusFresh)
	pinStatusFresh = time.Hour
	card := pgptest.MustNew(pgptest.Options{})
	card.SetState(func(s *pgptest.State) { s.PW1Tries = 1 })
	m, conn := openpgpApp(t, card)
	if ti, n := tokenInfoAPDUs(t, m, conn); n != 0 || ti.Flags&CKF_USER_PIN_FINAL_TRY == 0 || ti.Flags&CKF_SO_PIN_COUNT_LOW != 0 {
		t.Errorf("first C_GetTokenInfo: %d APDUs (want 0), flags %#x (one user PIN try left)", n, ti.Flags)
	}
	card.SetState(func(s *pgptest.State) { s.PW1Tries = 3 })
	pinStatusFresh = 0
	if ti, n := tokenInfoAPDUs(t, m, conn); n != 1 || ti.Flags&(CKF_USER_PIN_FINAL_TRY|CKF_USER_PIN_COUNT_LOW) != 0 {
		t.Errorf("C_GetTokenInfo after the window: %d APDUs (want 1), flags %#x (counter back to 3)", n, ti.Flags)
	}
}

// tokenInfoAPDUs is C_GetTokenInfo on slot 1 and the APDUs it cost.
func tokenInfoAPDUs(t *testing.T, m *Module, conn *transmitConn) (TokenInfo, int64) {
	t.Helper()
	n := conn.apdus.Load()
	ti, err := m.TokenInfo(1)
	if err != nil {
		t.Fatal(err)
	}
	return ti, conn.apdus.Load() - n
}

// TestOpenPGPTokenInfo: one GET DATA (the PW status bytes) gives the user's and the
// SO's PIN flags.
func TestOpenPGPTokenInfo(t *testing.T) {
	m, conn := openpgpApp(t, pgptest.MustNew(pgptest.Options{}))
	s, _ := m.OpenSession(1, CKF_SERIAL_SESSION|CKF_RW_SESSION)
	wantRV(t, m.Login(s, CKU_SO, []byte("87654321")), CKR_PIN_INCORRECT)
	if ti, n := tokenInfoAPDUs(t, m, conn); n != 1 || ti.Flags&CKF_SO_PIN_COUNT_LOW == 0 || ti.Flags&CKF_USER_PIN_COUNT_LOW != 0 {
		t.Errorf("C_GetTokenInfo after a wrong admin PIN: %d APDUs (want 1), flags %#x", n, ti.Flags)
	}
}

package core

import (
	"context"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/asn1"
	"math/big"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/p11-card/p11-card/cards"
	"github.com/p11-card/p11-card/cards/piv"
	"github.com/p11-card/p11-card/cards/piv/pivtest"
	"github.com/p11-card/p11-card/slotmgr"
)

// pivConn serves an in-process virtual card as a cards.Conn.
type pivConn struct {
	mu    sync.Mutex
	card  *pivtest.Card
	apdus atomic.Int64 // commands sent
}

func (c *pivConn) Transmit(ctx context.Context, cmd []byte) ([]byte, error) {
	c.apdus.Add(1)
	return c.card.Transmit(ctx, cmd)
}
func (c *pivConn) Lock(ctx context.Context) (func(), bool, error) {
	c.mu.Lock()
	return c.mu.Unlock, false, nil
}

// pivSource binds the real PIV driver to a virtual YubiKey.
func pivSource(t *testing.T, card *pivtest.Card) *fakeSource {
	t.Helper()
	conn := &pivConn{card: card}
	tok, err := piv.Driver{}.Open(context.Background(), conn, card.ATR())
	if err != nil {
		t.Fatal(err)
	}
	return tokenSource(conn, tok, "Yubico YubiKey 00")
}

// tokenSource is a slot source with one slot holding tok, bound over conn.
func tokenSource(conn cards.Conn, tok cards.Token, reader string) *fakeSource {
	src := newFakeSource()
	genCounter++
	src.removed = make(chan struct{})
	src.slot = slotmgr.SlotInfo{ID: 1, Reader: reader, Present: true, CardPresent: true, Gen: genCounter, Token: tok, Conn: conn, Removed: src.removed}
	return src
}

func newPIVCard(t *testing.T) *pivtest.Card {
	t.Helper()
	card := pivtest.MustNew(pivtest.Options{})
	for slot, alg := range map[byte]byte{0x9A: pivtest.AlgRSA2048, 0x9C: pivtest.AlgECCP256, 0x9D: pivtest.AlgRSA2048, 0x9E: pivtest.AlgECCP256, 0x82: pivtest.AlgECCP256, 0x83: pivtest.AlgX25519, 0x84: pivtest.AlgEd25519} {
		if _, err := card.GenerateInSlot(slot, alg); err != nil {
			t.Fatal(err)
		}
	}
	return card
}

// TestPIVKeyGenerationAPDUs: C_GenerateKeyPair after an SO login costs the GENERATE
// alone. The slot's certificate is not read again (the card keeps it beside the new key,
// and it stays an object with its old value), nor read at all when no search asked for it
// before: read as the first command of the next transaction, an absent certificate would
// cost a SELECT and a second read.
func TestPIVKeyGenerationAPDUs(t *testing.T) {
	card := pivtest.MustNew(pivtest.Options{})
	if _, err := card.GenerateInSlot(0x9A, pivtest.AlgRSA2048); err != nil {
		t.Fatal(err)
	}
	src := pivSource(t, card)
	conn := src.slot.Conn.(*pivConn)
	m := newApp(t, src)
	s, _ := m.OpenSession(1, CKF_SERIAL_SESSION|CKF_RW_SESSION)
	wantRV(t, m.Login(s, CKU_SO, []byte("010203040506070801020304050607080102030405060708")), CKR_OK)
	hc := find1(t, m, s, CKO_CERTIFICATE, 1)
	oldCert := attr(t, m, s, hc, CKA_VALUE).Value
	ecParams, _ := asn1.Marshal(oidP256)
	for _, id := range []byte{1, 4} { // 9A: certificate read before; 9E: none, never read
		n := conn.apdus.Load()
		ph, _, err := m.GenerateKeyPair(s, Mechanism{Type: CKM_EC_KEY_PAIR_GEN}, []Attr{{CKA_EC_PARAMS, ecParams}, {CKA_ID, []byte{id}}}, nil)
		if err != nil {
			t.Fatal(err)
		}
		var pt []byte
		if _, err := asn1.Unmarshal(attr(t, m, s, ph, CKA_EC_POINT).Value, &pt); err != nil {
			t.Fatal(err)
		}
		slot := map[byte]byte{1: 0x9A, 4: 0x9E}[id]
		want, _ := card.PublicKey(slot).(*ecdsa.PublicKey).Bytes()
		if string(pt) != string(want) {
			t.Errorf("ID %02x: the public key object is not the new key", id)
		}
		if got := conn.apdus.Load() - n; got != 1 {
			t.Errorf("ID %02x: generation and its objects cost %d APDUs, want 1 (GENERATE)", id, got)
		}
	}
	n := conn.apdus.Load()
	if got := attr(t, m, s, hc, CKA_VALUE).Value; string(got) != string(oldCert) {
		t.Error("9A's certificate object changed with its key")
	}
	if got := conn.apdus.Load() - n; got != 0 {
		t.Errorf("9A's certificate read again: %d APDUs", got)
	}
	if got := find(t, m, s, classTmpl(CKO_CERTIFICATE, []byte{4})); len(got) != 0 {
		t.Errorf("9E: %d certificates", len(got))
	}
}

// TestPIVTokenInfoPINStatus: the first CK_TOKEN_INFO answers from the PIN state the
// driver read as the card was bound, and asked for again at once it costs no APDU; a
// login through this module is seen by the next one (a failed one read from the card, a
// right PIN's reset counter without an APDU), another application's wrong PIN once
// pinStatusFresh has passed.
func TestPIVTokenInfoPINStatus(t *testing.T) {
	card := pivtest.MustNew(pivtest.Options{})
	src := pivSource(t, card)
	conn := src.slot.Conn.(*pivConn)
	m := newApp(t, src)
	other := newApp(t, pivSource(t, card))
	// The window is long here, so that a slow machine keeps what the test expects kept;
	// 0 reads again.
	defer func(d time.Duration) { pinStatusFresh = d }(pinStatusFresh)
	pinStatusFresh = time.Hour
	flags := func(m *Module, apdus int64) uint64 {
		t.Helper()
		n := conn.apdus.Load()
		ti, err := m.TokenInfo(1)
		if err != nil {
			t.Fatal(err)
		}
		if got := conn.apdus.Load() - n; got != apdus {
			t.Errorf("C_GetTokenInfo: %d APDUs, want %d", got, apdus)
		}
		return ti.Flags & (CKF_USER_PIN_COUNT_LOW | CKF_USER_PIN_TO_BE_CHANGED)
	}
	if f := flags(m, 0); f != CKF_USER_PIN_TO_BE_CHANGED {
		t.Errorf("factory PIN: flags %#x", f)
	}
	if f := flags(m, 0); f != CKF_USER_PIN_TO_BE_CHANGED {
		t.Errorf("again: flags %#x", f)
	}
	s, _ := m.OpenSession(1, CKF_SERIAL_SESSION)
	wantRV(t, m.Login(s, CKU_USER, []byte("654321")), CKR_PIN_INCORRECT)
	if f := flags(m, 1); f&CKF_USER_PIN_COUNT_LOW == 0 {
		t.Errorf("after a wrong PIN here: flags %#x", f)
	}
	login(t, m, s) // the right PIN resets the counter
	if f := flags(m, 0); f != CKF_USER_PIN_TO_BE_CHANGED {
		t.Errorf("after the right PIN: flags %#x", f)
	}
	find(t, m, s, nil) // objects read, no PIN command
	wantRV(t, m.Logout(s), CKR_OK)
	if f := flags(m, 0); f != CKF_USER_PIN_TO_BE_CHANGED {
		t.Errorf("after a listing and logout: flags %#x", f)
	}
	pinStatusFresh = 0 // what the card says now agrees
	if f := flags(m, 1); f != CKF_USER_PIN_TO_BE_CHANGED {
		t.Errorf("read again: flags %#x", f)
	}
	pinStatusFresh = time.Hour
	os2, _ := other.OpenSession(1, CKF_SERIAL_SESSION)
	wantRV(t, other.Login(os2, CKU_USER, []byte("654321")), CKR_PIN_INCORRECT)
	flags(m, 0) // within pinStatusFresh: what this module read last
	pinStatusFresh = 0
	if f := flags(m, 1); f&CKF_USER_PIN_COUNT_LOW == 0 {
		t.Errorf("another application's wrong PIN, status read again: flags %#x", f)
	}
}

// TestPIVDriver runs core over the real PIV driver and the virtual YubiKey.
func TestPIVDriver(t *testing.T) {
	card := newPIVCard(t)
	m := newApp(t, pivSource(t, card))
	ti, err := m.TokenInfo(1)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("token %q serial %q model %q flags %#x", ti.Label, ti.Serial, ti.Model, ti.Flags)
	s, _ := m.OpenSession(1, CKF_SERIAL_SESSION|CKF_RW_SESSION)
	if n := len(find(t, m, s, classTmpl(CKO_CERTIFICATE, nil))); n < 5 {
		t.Errorf("%d certificates", n)
	}
	login(t, m, s)
	// 9A RSA: PKCS#1 and PSS, verified in software.
	k9a := find1(t, m, s, CKO_PRIVATE_KEY, 1)
	msg := []byte("hello")
	sum := sha256.Sum256(msg)
	wantRV(t, m.SignInit(s, Mechanism{Type: CKM_SHA256_RSA_PKCS_PSS, PSS: &PSSParams{Hash: CKM_SHA256, MGF: CKG_MGF1_SHA256, SaltLen: 32}}, k9a), CKR_OK)
	sig, err := m.Sign(s, msg, 512)
	if err != nil {
		t.Fatal(err)
	}
	pub := card.PublicKey(0x9A).(*rsa.PublicKey)
	if err := rsa.VerifyPSS(pub, 5, sum[:], sig, &rsa.PSSOptions{SaltLength: 32}); err != nil {
		t.Errorf("PSS via the card: %v", err)
	}
	// 9D RSA decryption (PKCS#1 v1.5 unpadded in software).
	ct, _ := rsa.EncryptPKCS1v15(rand.Reader, card.PublicKey(0x9D).(*rsa.PublicKey), msg)
	wantRV(t, m.DecryptInit(s, Mechanism{Type: CKM_RSA_PKCS}, find1(t, m, s, CKO_PRIVATE_KEY, 3)), CKR_OK)
	if pt, err := m.Decrypt(s, ct, 256); err != nil || string(pt) != "hello" {
		t.Errorf("decrypt %q %v", pt, err)
	}
	// 82 ECDH.
	peer, _ := ecdh.P256().GenerateKey(rand.Reader)
	k82 := find1(t, m, s, CKO_PRIVATE_KEY, 5)
	o, err := m.DeriveKey(s, Mechanism{Type: CKM_ECDH1_DERIVE, ECDH: &ECDHParams{KDF: CKD_NULL, PublicData: peer.PublicKey().Bytes()}}, k82, []Attr{{CKA_SENSITIVE, []byte{0}}})
	if err != nil {
		t.Fatal(err)
	}
	cp, _ := card.PublicKey(0x82).(*ecdsa.PublicKey).ECDH()
	want, _ := peer.ECDH(cp)
	if got := attr(t, m, s, o, CKA_VALUE).Value; string(got) != string(want) {
		t.Error("ECDH secret differs")
	}
	var pt []byte
	if _, err := asn1.Unmarshal(attr(t, m, s, find1(t, m, s, CKO_PUBLIC_KEY, 2), CKA_EC_POINT).Value, &pt); err != nil || len(pt) != 65 {
		t.Error("EC point")
	}
	// 83 X25519 (firmware 5.7): CKK_EC_MONTGOMERY, derived with CKM_ECDH1_DERIVE.
	k83 := find1(t, m, s, CKO_PRIVATE_KEY, 6)
	if kt, _ := DecodeULong(attr(t, m, s, k83, CKA_KEY_TYPE).Value); kt != CKK_EC_MONTGOMERY {
		t.Errorf("83 key type %#x", kt)
	}
	xpeer, _ := ecdh.X25519().GenerateKey(rand.Reader)
	xo, err := m.DeriveKey(s, Mechanism{Type: CKM_ECDH1_DERIVE, ECDH: &ECDHParams{KDF: CKD_NULL, PublicData: xpeer.PublicKey().Bytes()}}, k83, []Attr{{CKA_SENSITIVE, []byte{0}}})
	if err != nil {
		t.Fatal(err)
	}
	xwant, _ := xpeer.ECDH(card.PublicKey(0x83).(*ecdh.PublicKey))
	if got := attr(t, m, s, xo, CKA_VALUE).Value; string(got) != string(xwant) {
		t.Error("X25519 secret differs")
	}
	// 84 Ed25519: EdDSA verified by crypto/ed25519.
	k84 := find1(t, m, s, CKO_PRIVATE_KEY, 7)
	wantRV(t, m.SignInit(s, Mechanism{Type: CKM_EDDSA}, k84), CKR_OK)
	esig, err := m.Sign(s, msg, 64)
	if err != nil {
		t.Fatal(err)
	}
	if !ed25519.Verify(card.PublicKey(0x84).(ed25519.PublicKey), msg, esig) {
		t.Error("EdDSA signature")
	}
	// 9C: PIN always, sixteen threads with their own sessions.
	k9c := find1(t, m, s, CKO_PRIVATE_KEY, 2)
	if v := attr(t, m, s, k9c, CKA_ALWAYS_AUTHENTICATE).Value; len(v) != 1 || v[0] != 1 {
		t.Fatal("9C not always-authenticate")
	}
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for i := 0; i < 16; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			h, err := m.OpenSession(1, CKF_SERIAL_SESSION)
			if err == nil {
				err = m.SignInit(h, Mechanism{Type: CKM_ECDSA_SHA256}, k9c)
			}
			if err == nil {
				err = m.Login(h, CKU_CONTEXT_SPECIFIC, []byte("123456"))
			}
			var sig []byte
			if err == nil {
				sig, err = m.Sign(h, msg, 64)
			}
			if err == nil {
				r, sv := new(bigInt).SetBytes(sig[:32]), new(bigInt).SetBytes(sig[32:])
				if !ecdsa.Verify(card.PublicKey(0x9C).(*ecdsa.PublicKey), sum[:], r, sv) {
					err = errRV(CKR_SIGNATURE_INVALID, "9C signature")
				}
			}
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("9C thread: %v", err)
		}
	}
	// Random from the card when it has a generator.
	if b, err := m.GenerateRandom(s, 40); err != nil || len(b) != 40 {
		t.Errorf("random: %v", err)
	}
	_ = cards.KindData
}

type bigInt = big.Int

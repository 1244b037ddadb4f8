package core

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
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"sync"
	"testing"
	"time"

	"github.com/p11-card/p11-card/apdu"
	"github.com/p11-card/p11-card/cards"
	"github.com/p11-card/p11-card/slotmgr"
)

// fakeCard is the persistent state of one card, shared by the tokens that several
// applications bind to it (like a real card seen by two processes).
type fakeCard struct {
	mu        sync.Mutex
	pin, so   []byte
	retries   int
	verified  bool
	keys      []*fakeKey
	certs     map[string][]byte // by CKA_ID
	signs     int               // private-key operations done
	block     chan struct{}     // when set, Sign waits for it to close
	started   chan struct{}     // closed when a blocked Sign begins
	random    bool
	driver    string
	mangle    func([]byte) []byte // when set, applied to every signature (a broken card)
	pinPadPIN []byte              // what the user types on a PIN-pad reader
	refuse    map[string]error    // by call ("key", "list", "login"): what its next call answers
}

type fakeKey struct {
	id     []byte
	slot   string
	alg    cards.KeyAlg
	priv   crypto.PrivateKey
	always bool
}

var keyRSA, _ = rsa.GenerateKey(rand.Reader, 2048)

func newFakeCard(t testing.TB) *fakeCard {
	c := &fakeCard{pin: []byte("123456"), so: []byte("12345678"), retries: 3, certs: map[string][]byte{}, random: true, driver: "piv"}
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	x, _ := ecdh.X25519().GenerateKey(rand.Reader)
	c.keys = []*fakeKey{
		{id: []byte{1}, slot: "9a", alg: cards.AlgRSA, priv: keyRSA},
		{id: []byte{2}, slot: "9c", alg: cards.AlgECP256, priv: ec, always: true},
		{id: []byte{3}, slot: "9d", alg: cards.AlgECP256, priv: mustEC()},
		{id: []byte{4}, slot: "9e", alg: cards.AlgEd25519, priv: ed},
		{id: []byte{5}, slot: "82", alg: cards.AlgX25519, priv: x},
	}
	c.certs["\x01"] = selfSigned(t, keyRSA, "RSA key")
	c.certs["\x02"] = selfSigned(t, ec, "EC key")
	return c
}

func mustEC() *ecdsa.PrivateKey { k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader); return k }

func selfSigned(t testing.TB, k crypto.Signer, cn string) []byte {
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(4711), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Date(2024, 1, 2, 0, 0, 0, 0, time.UTC), NotAfter: time.Date(2034, 1, 2, 0, 0, 0, 0, time.UTC)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, k.Public(), k)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func pubOf(k *fakeKey) (crypto.PublicKey, []byte) {
	switch p := k.priv.(type) {
	case *rsa.PrivateKey:
		return &p.PublicKey, nil
	case *ecdsa.PrivateKey:
		e, _ := p.PublicKey.ECDH()
		return &p.PublicKey, e.Bytes()
	case ed25519.PrivateKey:
		pub := p.Public().(ed25519.PublicKey)
		return pub, []byte(pub)
	case *ecdh.PrivateKey:
		return p.PublicKey(), p.PublicKey().Bytes()
	}
	return nil, nil
}

// fakeToken is one application's driver instance over a fakeCard.
type fakeToken struct{ c *fakeCard }

func (t *fakeToken) Info() cards.TokenInfo {
	return cards.TokenInfo{Driver: t.c.driver, Label: "Fake PIV #42", Manufacturer: "Fake", Model: "FakeKey", Serial: "42",
		HasRandom: t.c.random, SOSecret: "key-hex", PINMin: 6, PINMax: 8, Firmware: cards.Version{Major: 5, Minor: 7}}
}

func (t *fakeToken) Objects(ctx context.Context, f cards.Filter) ([]cards.Object, error) {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	if err := t.c.refused("list"); err != nil {
		return nil, err
	}
	var out []cards.Object
	add := func(o cards.Object) {
		if (f.Kind == 0 || f.Kind == o.Kind) && (f.ID == nil || bytes.Equal(f.ID, o.ID)) {
			out = append(out, o)
		}
	}
	for _, k := range t.c.keys {
		pub, pt := pubOf(k)
		ki := &cards.KeyInfo{Alg: k.alg, Public: pub, ECPoint: pt, Sign: k.alg != cards.AlgX25519, Decrypt: k.alg == cards.AlgRSA,
			Derive: k.alg.IsEC() || k.alg == cards.AlgX25519, RawRSA: k.alg == cards.AlgRSA, AlwaysAuth: k.always, Slot: k.slot}
		if k.alg == cards.AlgRSA {
			ki.Bits = 2048
		}
		add(cards.Object{Handle: k.slot + "/priv", Kind: cards.KindPrivateKey, ID: k.id, Label: "key " + k.slot, Private: true, Key: ki})
		add(cards.Object{Handle: k.slot + "/pub", Kind: cards.KindPublicKey, ID: k.id, Label: "key " + k.slot, Key: ki})
	}
	for id, der := range t.c.certs {
		add(cards.Object{Handle: fmt.Sprintf("%x/cert", id), Kind: cards.KindCertificate, ID: []byte(id), Label: "cert", Cert: der, Destroyable: true})
	}
	return out, nil
}

func (t *fakeToken) KeySlots() []cards.KeySlot {
	var out []cards.KeySlot
	for _, s := range []struct {
		id   byte
		name string
	}{{1, "9a"}, {2, "9c"}, {3, "9d"}, {4, "9e"}, {5, "82"}, {6, "83"}} {
		out = append(out, cards.KeySlot{ID: []byte{s.id}, Name: s.name, Algs: []cards.KeyAlg{cards.AlgRSA, cards.AlgECP256, cards.AlgECP384, cards.AlgEd25519, cards.AlgX25519}, RSABits: []int{1024, 2048, 4096}})
	}
	return out
}

func (t *fakeToken) PINStatus(ctx context.Context, r cards.Role) (cards.PINStatus, error) {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	return cards.PINStatus{Retries: t.c.retries, MaxRetries: 3, Blocked: t.c.retries == 0}, nil
}

func (t *fakeToken) Login(ctx context.Context, r cards.Role, secret []byte) error {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	if err := t.c.refused("login"); err != nil {
		return err
	}
	if r == cards.RoleSO {
		if !bytes.Equal(secret, t.c.so) {
			return fmt.Errorf("fake: %w", apdu.ErrSecurityStatus)
		}
		return nil
	}
	return t.c.verifyLocked(secret)
}

func (c *fakeCard) verifyLocked(pin []byte) error {
	if c.retries == 0 {
		return cards.ErrPINBlocked
	}
	if pin == nil && c.pinPadPIN != nil {
		pin = c.pinPadPIN // the user typed it on the reader
	}
	if !bytes.Equal(pin, c.pin) {
		c.retries--
		c.verified = false
		return &apdu.VerifyError{Retries: c.retries}
	}
	c.retries = 3
	c.verified = true
	return nil
}

func (t *fakeToken) Logout(ctx context.Context) error {
	t.c.mu.Lock()
	t.c.verified = false
	t.c.mu.Unlock()
	return nil
}

func (t *fakeToken) ChangePIN(ctx context.Context, r cards.Role, old, new []byte) error {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	if err := t.c.verifyLocked(old); err != nil {
		return err
	}
	if len(new) < 6 || len(new) > 8 {
		return cards.ErrPINLength
	}
	t.c.pin = append([]byte{}, new...)
	return nil
}

func (t *fakeToken) Unblock(ctx context.Context, r cards.Role, secret, newPIN []byte) error {
	return cards.ErrNotSupported
}

// refused is the answer refuse holds for call, once.
func (c *fakeCard) refused(call string) error {
	err := c.refuse[call]
	delete(c.refuse, call)
	return err
}

func (t *fakeToken) key(id []byte) (*fakeKey, error) {
	if err := t.c.refused("key"); err != nil {
		return nil, err
	}
	for _, k := range t.c.keys {
		if bytes.Equal(k.id, id) {
			return k, nil
		}
	}
	return nil, cards.ErrKeyNotFound
}

// authorise checks the security state for a private-key operation.
func (t *fakeToken) authorise(k *fakeKey, auth *cards.Auth) error {
	if k.always {
		if auth == nil {
			return cards.ErrLoginRequired
		}
		return t.c.verifyLocked(auth.PIN)
	}
	if !t.c.verified {
		return fmt.Errorf("fake: %w", apdu.ErrSecurityStatus)
	}
	return nil
}

func (t *fakeToken) Sign(ctx context.Context, id []byte, scheme cards.SignScheme, in []byte, auth *cards.Auth) ([]byte, error) {
	if b := t.c.block; b != nil {
		close(t.c.started)
		select {
		case <-b:
		case <-ctx.Done():
		}
		return nil, slotmgr.ErrTokenRemoved
	}
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	if f := t.c.mangle; f != nil {
		t.c.mangle = nil
		sig, err := t.signLocked(id, scheme, in, auth)
		if err != nil {
			return nil, err
		}
		return f(sig), nil
	}
	return t.signLocked(id, scheme, in, auth)
}

func (t *fakeToken) signLocked(id []byte, scheme cards.SignScheme, in []byte, auth *cards.Auth) ([]byte, error) {
	k, err := t.key(id)
	if err != nil {
		return nil, err
	}
	if err := t.authorise(k, auth); err != nil {
		return nil, err
	}
	t.c.signs++
	switch p := k.priv.(type) {
	case *rsa.PrivateKey:
		switch scheme {
		case cards.SignRSAPKCS1:
			return rsa.SignPKCS1v15(nil, p, 0, in)
		case cards.SignRSARaw:
			c := new(big.Int).SetBytes(in)
			if c.Cmp(p.N) >= 0 {
				return nil, cards.ErrBadInput
			}
			return new(big.Int).Exp(c, p.D, p.N).FillBytes(make([]byte, p.Size())), nil
		}
	case *ecdsa.PrivateKey:
		if scheme == cards.SignECDSA {
			r, s, err := ecdsa.Sign(rand.Reader, p, in)
			if err != nil {
				return nil, err
			}
			return append(r.FillBytes(make([]byte, 32)), s.FillBytes(make([]byte, 32))...), nil
		}
	case ed25519.PrivateKey:
		if scheme == cards.SignEdDSA {
			return ed25519.Sign(p, in), nil
		}
	}
	return nil, cards.ErrMechanismUnsupported
}

func (t *fakeToken) Decrypt(ctx context.Context, id []byte, scheme cards.DecryptScheme, in []byte, auth *cards.Auth) ([]byte, error) {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	k, err := t.key(id)
	if err != nil {
		return nil, err
	}
	if err := t.authorise(k, auth); err != nil {
		return nil, err
	}
	p, ok := k.priv.(*rsa.PrivateKey)
	if !ok || scheme != cards.DecryptRSARaw {
		return nil, cards.ErrMechanismUnsupported
	}
	t.c.signs++
	c := new(big.Int).SetBytes(in)
	if c.Cmp(p.N) >= 0 {
		return nil, cards.ErrBadInput
	}
	return new(big.Int).Exp(c, p.D, p.N).FillBytes(make([]byte, p.Size())), nil
}

func (t *fakeToken) Derive(ctx context.Context, id []byte, peer []byte, auth *cards.Auth) ([]byte, error) {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	k, err := t.key(id)
	if err != nil {
		return nil, err
	}
	if err := t.authorise(k, auth); err != nil {
		return nil, err
	}
	switch p := k.priv.(type) {
	case *ecdsa.PrivateKey:
		e, _ := p.ECDH()
		pk, err := ecdh.P256().NewPublicKey(peer)
		if err != nil {
			return nil, cards.ErrBadInput
		}
		return e.ECDH(pk)
	case *ecdh.PrivateKey:
		pk, err := ecdh.X25519().NewPublicKey(peer)
		if err != nil {
			return nil, cards.ErrBadInput
		}
		return p.ECDH(pk)
	}
	return nil, cards.ErrMechanismUnsupported
}

func (t *fakeToken) GenerateKey(ctx context.Context, spec cards.KeyGenSpec) (cards.Object, error) {
	t.c.mu.Lock()
	var priv crypto.PrivateKey
	switch spec.Alg {
	case cards.AlgRSA:
		priv, _ = rsa.GenerateKey(rand.Reader, spec.Bits)
	case cards.AlgECP256:
		priv = mustEC()
	case cards.AlgEd25519:
		_, priv, _ = ed25519.GenerateKey(rand.Reader)
	default:
		t.c.mu.Unlock()
		return cards.Object{}, cards.ErrNotSupported
	}
	var kept []*fakeKey
	for _, k := range t.c.keys {
		if !bytes.Equal(k.id, spec.ID) {
			kept = append(kept, k)
		}
	}
	t.c.keys = append(kept, &fakeKey{id: spec.ID, slot: fmt.Sprintf("k%x", spec.ID), alg: spec.Alg, priv: priv, always: spec.PINPolicy == "always"})
	t.c.mu.Unlock()
	objs, _ := t.Objects(ctx, cards.Filter{ID: spec.ID, Kind: cards.KindPublicKey})
	return objs[0], nil
}

func (t *fakeToken) ImportKey(ctx context.Context, spec cards.KeyGenSpec, key crypto.PrivateKey) error {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	var kept []*fakeKey
	for _, k := range t.c.keys {
		if !bytes.Equal(k.id, spec.ID) {
			kept = append(kept, k)
		}
	}
	t.c.keys = append(kept, &fakeKey{id: spec.ID, slot: fmt.Sprintf("k%x", spec.ID), alg: spec.Alg, priv: key, always: spec.PINPolicy == "always"})
	return nil
}

func (t *fakeToken) WriteCertificate(ctx context.Context, id []byte, der []byte) error {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	t.c.certs[string(id)] = append([]byte{}, der...)
	return nil
}

func (t *fakeToken) DeleteObject(ctx context.Context, handle string) error {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	for id := range t.c.certs {
		if fmt.Sprintf("%x/cert", id) == handle {
			delete(t.c.certs, id)
			return nil
		}
	}
	return cards.ErrObjectNotFound
}

func (t *fakeToken) Random(ctx context.Context, n int) ([]byte, error) {
	b := make([]byte, n)
	rand.Read(b)
	return b, nil
}

// fakeSource is a SlotSource with one reader whose card tests insert and remove.
type fakeSource struct {
	mu      sync.Mutex
	slot    slotmgr.SlotInfo
	removed chan struct{}
	counter uint64
	changed chan struct{}
	closed  bool
	pinPad  bool
	gen     *uint64 // shared across sources so generations stay unique
	// rescans counts Rescan calls; onRescan, when set, runs in each (a bind retried).
	rescans  int
	onRescan func(n int)
}

var genCounter uint64

func newFakeSource() *fakeSource {
	return &fakeSource{slot: slotmgr.SlotInfo{ID: 1, Reader: "Fake Reader 00"}, counter: 1, changed: make(chan struct{})}
}

func (f *fakeSource) insert(c *fakeCard) {
	f.mu.Lock()
	defer f.mu.Unlock()
	genCounter++
	f.removed = make(chan struct{})
	f.slot.Present, f.slot.CardPresent, f.slot.Gen, f.slot.Token, f.slot.Removed = true, true, genCounter, &fakeToken{c}, f.removed
	f.slot.PINPad = f.pinPad
	f.bumpLocked()
}

func (f *fakeSource) remove() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.removed != nil {
		close(f.removed)
		f.removed = nil
	}
	f.slot.Present, f.slot.CardPresent, f.slot.Gen, f.slot.Token, f.slot.Removed = false, false, 0, nil, nil
	f.bumpLocked()
}

func (f *fakeSource) bumpLocked() {
	f.counter++
	close(f.changed)
	f.changed = make(chan struct{})
}

func (f *fakeSource) Start(context.Context) error { return nil }
func (f *fakeSource) Close() error {
	f.mu.Lock()
	f.closed = true
	f.mu.Unlock()
	return nil
}
func (f *fakeSource) Slots() []slotmgr.SlotInfo {
	f.mu.Lock()
	defer f.mu.Unlock()
	return []slotmgr.SlotInfo{f.slot}
}
func (f *fakeSource) Slot(id uint64) (slotmgr.SlotInfo, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.slot, id == f.slot.ID
}
func (f *fakeSource) Rescan(context.Context) error {
	f.mu.Lock()
	f.rescans++
	n, fn := f.rescans, f.onRescan
	f.mu.Unlock()
	if fn != nil {
		fn(n)
	}
	return nil
}
func (f *fakeSource) WaitChange(ctx context.Context, since uint64) (uint64, error) {
	for {
		f.mu.Lock()
		c, ch := f.counter, f.changed
		f.mu.Unlock()
		if since == 0 || c > since {
			return c, nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
}

// app is one application (process) on a shared source.
func newApp(t testing.TB, src *fakeSource) *Module {
	m := New(Options{NewSource: func() SlotSource { return src }})
	if err := m.Initialize(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Finalize() })
	return m
}

// wantRV fails unless err maps to rv.
func wantRV(t testing.TB, err error, rv uint64) {
	t.Helper()
	if got := RV(err); got != rv {
		t.Fatalf("got %s (%v), want %s", RVName(got), err, RVName(rv))
	}
}

func x509ParsePKIX(der []byte) (any, error) { return x509.ParsePKIXPublicKey(der) }

package piv

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/sha512"
	"errors"
	"math/big"
	"strings"
	"testing"

	"github.com/p11-card/p11-card/apdu"
	"github.com/p11-card/p11-card/cards"
	"github.com/p11-card/p11-card/cards/piv/pivtest"
	"github.com/p11-card/p11-card/cards/vcard"
)

func TestCardRemovedMidOperation(t *testing.T) {
	card := pivtest.MustNew(pivtest.Options{})
	provision(t, card, 0x9A, pivtest.AlgECCP256)
	faults := &vcard.Faults{Count: vcard.PrivateKeyOp}
	conn := &testConn{card: vcard.WithFaults(card, faults)}
	tok, err := Driver{}.Open(ctxb, conn, card.ATR())
	if err != nil {
		t.Fatal(err)
	}
	mustLogin(t, tok, cards.RoleUser, "123456")
	faults.Set(func(f *vcard.Faults) { f.RemoveAt = 1 })
	_, err = tok.Sign(ctxb, []byte{1}, cards.SignECDSA, make([]byte, 32), nil)
	if !errors.Is(err, vcard.ErrRemoved) {
		t.Fatalf("sign while the card leaves: %v", err)
	}
	// The card is back (the same token, as after a reader hiccup): the driver selects the
	// application again before anything else.
	n, ins := conn.count(func() {
		_, err = tok.Sign(ctxb, []byte{1}, cards.SignECDSA, make([]byte, 32), &cards.Auth{PIN: []byte("123456")})
	})
	if err != nil {
		t.Fatalf("sign after the card came back: %v", err)
	}
	if n != 3 || ins[0] != "A4" {
		t.Errorf("after removal: %v, want SELECT, VERIFY, GENERAL AUTHENTICATE", ins)
	}
}

func TestStatusWordFaults(t *testing.T) {
	card := pivtest.MustNew(pivtest.Options{})
	provision(t, card, 0x9A, pivtest.AlgECCP256)
	faults := &vcard.Faults{Count: vcard.INS(insGeneralAuth, insGetData, insGenerate)}
	conn := &testConn{card: vcard.WithFaults(card, faults)}
	tok, err := Driver{}.Open(ctxb, conn, card.ATR())
	if err != nil {
		t.Fatal(err)
	}
	mustLogin(t, tok, cards.RoleUser, "123456")
	for _, tc := range []struct {
		sw   uint16
		want error
	}{
		{0x6982, cards.ErrLoginRequired},
		{0x6A80, cards.ErrBadInput},
		{0x6A86, cards.ErrMechanismUnsupported},
		{0x6A88, cards.ErrKeyNotFound},
		{0x6F00, nil},
	} {
		n := faults.Commands() + 1
		faults.Set(func(f *vcard.Faults) { f.SWAt = map[int]uint16{n: tc.sw} })
		_, err := tok.Sign(ctxb, []byte{1}, cards.SignECDSA, make([]byte, 32), nil)
		if err == nil || tc.want != nil && !errors.Is(err, tc.want) {
			t.Errorf("%04X: %v", tc.sw, err)
		}
		var se *apdu.StatusError
		if !errors.As(err, &se) || uint16(se.SW) != tc.sw {
			t.Errorf("%04X: status not reachable in %v", tc.sw, err)
		}
	}
	// A broken certificate object is a bad card, not a crash.
	if err := card.PutObject(0x5FC10B, []byte{0x70, 0x05, 0x01}); err != nil {
		t.Fatal(err)
	}
	tok2, _ := Driver{}.Open(ctxb, &testConn{card: card}, card.ATR())
	if _, err := tok2.Objects(ctxb, cards.Filter{ID: []byte{3}, Kind: cards.KindCertificate}); !errors.Is(err, cards.ErrBadCard) {
		t.Errorf("malformed certificate object: %v", err)
	}
}

// plainPIV makes a pivtest card look like a PIV card without Yubico's extensions: the
// Yubico instructions are unknown (6D00).
type plainPIV struct{ *pivtest.Card }

func (c plainPIV) Transmit(ctx context.Context, cmd []byte) ([]byte, error) {
	if len(cmd) >= 2 && cmd[1] >= 0xF6 {
		return []byte{0x6D, 0x00}, nil
	}
	return c.Card.Transmit(ctx, cmd)
}

func TestPlainPIVCard(t *testing.T) {
	card := pivtest.MustNew(pivtest.Options{})
	provision(t, card, 0x9A, pivtest.AlgRSA2048)
	provision(t, card, 0x9C, pivtest.AlgECCP256)
	if err := card.SetCHUID(); err != nil {
		t.Fatal(err)
	}
	conn := &testConn{card: plainPIV{card}}
	tok, err := Driver{}.Open(ctxb, conn, []byte{0x3B, 0x80, 0x80, 0x01, 0x01})
	if err != nil {
		t.Fatal(err)
	}
	in := tok.Info()
	chuid, _ := card.Object(pivtest.ObjectCHUID)
	guid, _, _ := apdu.Find(chuid, 0x34)
	if in.Serial == "" || len(in.Serial) != 16 || in.Serial != chuidSerial(chuid2(guid)) || in.Firmware != (cards.Version{}) {
		t.Errorf("Info %+v", in)
	}
	if conn.n != 5 {
		t.Errorf("open: %d APDUs %v, want 5", conn.n, conn.ins)
	}
	p := tok.(*Token)
	if p.opt.Extended {
		t.Error("extended APDUs without the ATR offering them")
	}
	objs, err := tok.Objects(ctxb, cards.Filter{ID: []byte{2}})
	if err != nil || len(objs) != 3 {
		t.Fatalf("objects %v %v", objs, err)
	}
	for _, o := range objs {
		if o.Kind == cards.KindPrivateKey && (!o.Key.AlwaysAuth || o.Key.Alg != cards.AlgECP256) {
			t.Errorf("9C key from certificate: %+v", o.Key)
		}
	}
	mustLogin(t, tok, cards.RoleUser, "123456")
	if _, err := tok.Sign(ctxb, []byte{1}, cards.SignRSAPKCS1, []byte("abc"), nil); err != nil {
		t.Error(err)
	}
	if _, err := tok.Objects(ctxb, cards.Filter{ID: []byte{0x81}}); err != nil {
		t.Error(err)
	}
	if err := tok.ImportKey(ctxb, cards.KeyGenSpec{ID: []byte{1}}, nil); !errors.Is(err, cards.ErrNotSupported) {
		t.Errorf("import on a plain card: %v", err)
	}
	if err := tok.ChangePIN(ctxb, cards.RoleSO, []byte(defaultMgmtHex), []byte(defaultMgmtHex)); !errors.Is(err, cards.ErrNotSupported) {
		t.Errorf("management key change on a plain card: %v", err)
	}
	st, err := tok.PINStatus(ctxb, cards.RoleUser)
	if err != nil || !st.Verified {
		t.Errorf("PIN status %+v %v", st, err)
	}
	// The card's management key is AES-192 (firmware 5.7 default) and nothing tells: the
	// first login finds out (3DES refused with 6A86), later ones know.
	n, ins := conn.count(func() { mustLogin(t, tok, cards.RoleSO, defaultMgmtHex) })
	if n != 3 {
		t.Errorf("first SO login: %v", ins)
	}
	n, ins = conn.count(func() { mustLogin(t, tok, cards.RoleSO, defaultMgmtHex) })
	if n != 2 {
		t.Errorf("second SO login: %v", ins)
	}
	if err := tok.Login(ctxb, cards.RoleSO, []byte(strings.Repeat("ab", 16))); !errors.Is(err, cards.ErrPINLength) {
		t.Errorf("AES-128 key for an AES-192 card: %v", err)
	}
}

func chuid2(guid []byte) chuid { return chuid{GUID: guid} }

func TestGlobalPINDiscovery(t *testing.T) {
	d, err := parseDiscovery(apdu.TLVBytes(0x7E, apdu.TLVBytes(0x5F2F, []byte{0x60, 0x20})))
	if err != nil || !d.GlobalPIN || !d.GlobalPrimary {
		t.Fatalf("%+v %v", d, err)
	}
	tok := &Token{disc: &d}
	if tok.pinRef() != refGlobalPIN {
		t.Error("global PIN primary but VERIFY goes to 80")
	}
	d.GlobalPrimary = false
	if tok.pinRef() != refPIN {
		t.Error("PIV PIN primary but VERIFY goes elsewhere")
	}
}

func TestParsers(t *testing.T) {
	if _, err := parseCertContainer([]byte{0x71, 0x01, 0x00}); !errors.Is(err, cards.ErrBadCard) {
		t.Errorf("container without 70: %v", err)
	}
	if cc, err := parseCertContainer(nil); err != nil || cc.DER != nil {
		t.Errorf("empty container: %v", err)
	}
	bomb := apdu.TLVBytes(0x70, []byte{0x1f, 0x8b, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00})
	if _, err := parseCertContainer(append(bomb, 0x71, 0x01, 0x01)); !errors.Is(err, cards.ErrBadCard) {
		t.Errorf("truncated gzip: %v", err)
	}
	// A gzip bomb is cut at maxCertSize.
	big, _ := encodeCertContainer(make([]byte, 1<<20), true)
	if _, err := parseCertContainer(big); !errors.Is(err, cards.ErrBadCard) {
		t.Errorf("oversized certificate: %v", err)
	}
	k, err := parseKeyHistory([]byte{0xC1, 0x01, 0x03, 0xC2, 0x01, 0x01, 0xF3, 0x03, 'u', 'r', 'l'})
	if err != nil || k.OnCard != 3 || k.OffCard != 1 || k.URL != "url" {
		t.Errorf("key history %+v %v", k, err)
	}
	if _, err := parseKeyHistory([]byte{0xC1, 0x01, 0x30}); err == nil {
		t.Error("key history count 48 accepted")
	}
	a, err := parseAdminData(apdu.TLVBytes(0x80, apdu.TLVBytes(0x81, []byte{0x03})))
	if err != nil || !a.PUKBlocked || !a.MgmtProtected {
		t.Errorf("admin data %+v %v", a, err)
	}
	if _, err := parseProtectedMgmtKey(apdu.TLVBytes(0x88, apdu.TLVBytes(0x89, make([]byte, 7)))); !errors.Is(err, cards.ErrBadCard) {
		t.Errorf("odd management key: %v", err)
	}
	if _, err := parseProtectedMgmtKey(apdu.TLVBytes(0x88)); !errors.Is(err, errNoProtectedKey) {
		t.Errorf("no key: %v", err)
	}
	raw, err := ecdsaRaw([]byte{0x30, 0x07, 0x02, 0x02, 0x00, 0x80, 0x02, 0x01, 0x01}, 4)
	if err != nil || !bytes.Equal(raw, []byte{0, 0, 0, 0x80, 0, 0, 0, 1}) {
		t.Errorf("ecdsaRaw % X %v", raw, err)
	}
	for _, bad := range [][]byte{{0x30, 0x03, 0x02, 0x01, 0x01}, {0x30, 0x06, 0x02, 0x01, 0x81, 0x02, 0x01, 0x01}, {0x31, 0x00}} {
		if _, err := ecdsaRaw(bad, 4); err == nil {
			t.Errorf("ecdsaRaw accepted % X", bad)
		}
	}
	if s := chuidSerial(chuid{GUID: make([]byte, 16), FASCN: []byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}}); s != "030405060708090A" {
		t.Errorf("FASC-N serial %q", s)
	}
}

func TestAttestationKeySlotF9(t *testing.T) {
	f := newFixture(t, pivtest.Options{}, nil)
	var objs []cards.Object
	var err error
	n, ins := f.conn.count(func() { objs, err = f.tok.Objects(ctxb, cards.Filter{ID: []byte{0x19}}) })
	if err != nil {
		t.Fatal(err)
	}
	if n != 1 {
		t.Errorf("F9's objects took %d APDUs %v, want 1 (its certificate holds the public key)", n, ins)
	}
	var kinds []cards.Kind
	for _, o := range objs {
		kinds = append(kinds, o.Kind)
		if o.Kind == cards.KindPrivateKey && o.Destroyable {
			t.Error("F9 key destroyable")
		}
		if o.Kind == cards.KindPublicKey && (o.Key == nil || !f.card.PublicKey(0xF9).(interface{ Equal(crypto.PublicKey) bool }).Equal(o.Key.Public)) {
			t.Error("F9's public key is not the card's")
		}
	}
	if len(kinds) != 2 || kinds[0] != cards.KindCertificate || kinds[1] != cards.KindPublicKey {
		t.Errorf("F9 objects %v (want its certificate and public key)", kinds)
	}
	n, _ = f.conn.count(func() {
		if _, err := f.tok.Sign(ctxb, []byte{0x19}, cards.SignRSAPKCS1, []byte("x"), nil); !errors.Is(err, cards.ErrMechanismUnsupported) {
			t.Errorf("sign with F9: %v", err)
		}
	})
	if n != 0 {
		t.Errorf("sign with F9 sent %d APDUs", n)
	}
	g := newFixture(t, pivtest.Options{}, nil)
	n, _ = g.conn.count(func() {
		if objs, err := g.tok.Objects(ctxb, cards.Filter{ID: []byte{0x19}, Kind: cards.KindPrivateKey}); err != nil || len(objs) != 0 {
			t.Errorf("F9 private key: %v %v", objs, err)
		}
	})
	if n != 0 {
		t.Errorf("looking for F9's private key sent %d APDUs", n)
	}
	if ks := f.tok.KeySlots(); len(ks) != 24 {
		t.Errorf("%d key slots", len(ks))
	}
	old := newFixture(t, pivtest.Options{Firmware: [3]byte{5, 4, 3}}, nil)
	for _, s := range old.tok.KeySlots() {
		if slicesContains(s.Algs, cards.AlgEd25519) || slicesContains(s.RSABits, 4096) {
			t.Fatalf("5.4 offers %v %v", s.Algs, s.RSABits)
		}
	}
	mustLogin(t, old.tok, cards.RoleSO, defaultMgmtHex)
	if _, err := old.tok.GenerateKey(ctxb, cards.KeyGenSpec{ID: []byte{1}, Alg: cards.AlgEd25519}); !errors.Is(err, cards.ErrMechanismUnsupported) {
		t.Errorf("Ed25519 on 5.4: %v", err)
	}
	if err := old.tok.DeleteObject(ctxb, "9a/priv"); !errors.Is(err, cards.ErrNotSupported) {
		t.Errorf("key delete on 5.4: %v", err)
	}
}

func slicesContains[T comparable](s []T, v T) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

func TestKeyHistoryTrimsRetiredSlots(t *testing.T) {
	for _, tc := range []struct {
		name    string
		history []byte
		certs   int // certificate reads for the key slots
	}{
		{"no history", nil, 25},
		{"two on card", []byte{0xC1, 0x01, 0x02, 0xC2, 0x01, 0x00, 0xFE, 0x00}, 7},
		{"none on card", []byte{0xC1, 0x01, 0x00, 0xC2, 0x01, 0x03, 0xFE, 0x00}, 5},
		{"malformed", []byte{0xC1, 0x05}, 25},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, pivtest.Options{Firmware: [3]byte{5, 2, 7}}, func(c *pivtest.Card) {
				provision(t, c, 0x82, pivtest.AlgECCP256)
				provision(t, c, 0x83, pivtest.AlgECCP256)
				if tc.history != nil {
					if err := c.PutObject(pivtest.ObjectKeyHistory, tc.history); err != nil {
						t.Fatal(err)
					}
				}
			})
			var objs []cards.Object
			_, ins := f.conn.count(func() {
				var err error
				if objs, err = f.tok.Objects(ctxb, cards.Filter{Kind: cards.KindCertificate}); err != nil {
					t.Fatal(err)
				}
			})
			certs := 0
			for _, c := range ins {
				if c != "CB 5FC10C" && c != "CB 7E" && len(c) == 9 && c[:4] == "CB 5" {
					certs++
				}
			}
			if certs != tc.certs {
				t.Errorf("%d certificate reads, want %d: %v", certs, tc.certs, ins)
			}
			n := 0
			for _, o := range objs {
				if o.Handle == "82/cert" || o.Handle == "83/cert" {
					n++
				}
			}
			if want := map[bool]int{true: 0, false: 2}[tc.name == "none on card"]; n != want {
				t.Errorf("%d retired certificates listed, want %d", n, want)
			}
		})
	}
}

// twoApplets puts a second application beside the virtual PIV card: after a SELECT of
// another AID every command gets 6D00 until PIV is selected again, which (as on a
// YubiKey) starts PIV with a fresh security state.
type twoApplets struct {
	*pivtest.Card
	foreign bool
}

func (c *twoApplets) Transmit(ctx context.Context, cmd []byte) ([]byte, error) {
	if len(cmd) >= 5 && cmd[1] == 0xA4 && cmd[2] == 0x04 {
		if !bytes.Contains(cmd, aidPIV[:5]) {
			c.foreign = true
			return []byte{0x90, 0x00}, nil
		}
		if c.foreign {
			c.foreign = false
			c.Card.Reset()
		}
	}
	if c.foreign {
		return []byte{0x6D, 0x00}, nil
	}
	return c.Card.Transmit(ctx, cmd)
}

func TestOtherAppletBeforeLogin(t *testing.T) {
	card := pivtest.MustNew(pivtest.Options{})
	provision(t, card, 0x9A, pivtest.AlgECCP256)
	two := &twoApplets{Card: card}
	conn := &testConn{card: two}
	tok, err := Driver{}.Open(ctxb, conn, card.ATR())
	if err != nil {
		t.Fatal(err)
	}
	selectOther := func() {
		_, _ = two.Transmit(ctxb, []byte{0x00, 0xA4, 0x04, 0x00, 0x06, 0xD2, 0x76, 0x00, 0x01, 0x24, 0x01})
	}
	selectOther()
	n, ins := conn.count(func() { mustLogin(t, tok, cards.RoleUser, "123456") })
	if n != 3 || ins[1] != "A4" {
		t.Errorf("login after another selection: %v", ins)
	}
	if _, err := tok.Sign(ctxb, []byte{1}, cards.SignECDSA, make([]byte, 32), nil); err != nil {
		t.Error(err)
	}
	selectOther()
	_, err = tok.Sign(ctxb, []byte{1}, cards.SignECDSA, make([]byte, 32), nil)
	if !errors.Is(err, cards.ErrLoginRequired) {
		t.Errorf("sign after another selection: %v (the login is gone with the selection)", err)
	}
	selectOther()
	objs, err := tok.Objects(ctxb, cards.Filter{ID: []byte{1}, Kind: cards.KindCertificate})
	if err != nil || len(objs) != 1 {
		t.Errorf("objects after another selection: %v %v", objs, err)
	}
	// A later command of a transaction is not retried: only the first can meet another
	// application.
	conn.locked = true
	tok.(*Token).first = false
	two.foreign = true
	_, err = tok.(*Token).do(ctxb, apdu.Command{INS: insGetMetadata, P2: 0x9C, Ne: 256})
	conn.locked = false
	if !errors.Is(err, apdu.ErrInsNotSupported) {
		t.Errorf("6D00 in mid-transaction: %v", err)
	}
}

func TestYubiKey4SerialFromCHUID(t *testing.T) {
	card := pivtest.MustNew(pivtest.Options{Firmware: [3]byte{4, 3, 5}})
	if err := card.SetCHUID(); err != nil {
		t.Fatal(err)
	}
	conn := &testConn{card: card}
	tok, err := Driver{}.Open(ctxb, conn, card.ATR())
	if err != nil {
		t.Fatal(err)
	}
	if s := tok.Info().Serial; len(s) != 16 || tok.Info().Label != "YubiKey PIV #"+s {
		t.Errorf("info %+v", tok.Info())
	}
	// The CHUID read at Open is not read again as a data object.
	n, ins := conn.count(func() {
		if _, err := tok.Objects(ctxb, cards.Filter{ID: dataID(tagCHUID)}); err != nil {
			t.Fatal(err)
		}
	})
	if n != 0 {
		t.Errorf("CHUID read again: %v", ins)
	}
}

func TestParseMgmtKey(t *testing.T) {
	for _, tc := range []struct {
		in  string
		len int
	}{
		{defaultMgmtHex, 24},
		{"01:02:03:04:05:06:07:08:01:02:03:04:05:06:07:08", 16},
		{"0102030405060708 0102030405060708 0102030405060708 0102030405060708", 32},
		{"ABCDEFabcdef0123456789abcdef0123", 16},
		{"0102", 0},
		{"010", 0},
		{"zz02030405060708010203040506070801020304050607", 0},
		{defaultMgmtHex + defaultMgmtHex, 0},
		{"", 0},
	} {
		k, err := parseMgmtKey([]byte(tc.in))
		if tc.len == 0 {
			if !errors.Is(err, cards.ErrPINLength) || k != nil {
				t.Errorf("%q: %x %v", tc.in, k, err)
			}
			continue
		}
		if err != nil || len(k) != tc.len {
			t.Errorf("%q: %x %v", tc.in, k, err)
		}
	}
}

// noMetaPublic drops the public key (tag 04) from GET METADATA answers.
type noMetaPublic struct{ *pivtest.Card }

func (c noMetaPublic) Transmit(ctx context.Context, cmd []byte) ([]byte, error) {
	r, err := c.Card.Transmit(ctx, cmd)
	if err != nil || len(cmd) < 2 || cmd[1] != insGetMetadata || len(r) < 2 || r[len(r)-2] != 0x90 {
		return r, err
	}
	tl, perr := apdu.ParseAll(r[:len(r)-2])
	if perr != nil {
		return r, nil
	}
	var out []byte
	for _, x := range tl {
		if x.Tag != 0x04 {
			out = apdu.AppendTLV(out, x.Tag, x.Value)
		}
	}
	return append(out, 0x90, 0x00), nil
}

func TestMetadataWithoutPublicKey(t *testing.T) {
	card := pivtest.MustNew(pivtest.Options{})
	provision(t, card, 0x9A, pivtest.AlgECCP256)
	provision(t, card, 0x9C, pivtest.AlgECCP384)
	_ = card.PutCertificate(0x9C, nil)
	tok, err := Driver{}.Open(ctxb, &testConn{card: noMetaPublic{card}}, card.ATR())
	if err != nil {
		t.Fatal(err)
	}
	objs, err := tok.Objects(ctxb, cards.Filter{Kind: cards.KindPublicKey})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, o := range objs {
		got = append(got, o.Handle)
		if o.Handle == "9a/pub" && !o.Key.Public.(*ecdsa.PublicKey).Equal(card.PublicKey(0x9A)) {
			t.Error("9A public key from the certificate differs")
		}
	}
	if strings.Join(got, ",") != "9a/pub,f9/pub" {
		t.Errorf("public keys %v (9C has no certificate, so no public key)", got)
	}
	privs, _ := tok.Objects(ctxb, cards.Filter{ID: []byte{2}, Kind: cards.KindPrivateKey})
	if len(privs) != 1 {
		t.Errorf("9C private key %v", privs)
	}
}

// cancelAfter cancels its context once n commands went through.
type cancelAfter struct {
	*testConn
	n      int
	cancel func()
}

func (c *cancelAfter) Transmit(ctx context.Context, cmd []byte) ([]byte, error) {
	r, err := c.testConn.Transmit(ctx, cmd)
	if c.n--; c.n == 0 {
		c.cancel()
	}
	return r, err
}

func TestCancelledMidChain(t *testing.T) {
	f := newFixture(t, pivtest.Options{}, func(c *pivtest.Card) { provision(t, c, 0x9A, pivtest.AlgRSA2048) })
	f.tok.opt.Extended = false // a 2048-bit block goes as a chain of two commands
	mustLogin(t, f.tok, cards.RoleUser, "123456")
	if _, err := f.tok.Objects(ctxb, cards.Filter{ID: []byte{1}, Kind: cards.KindPrivateKey}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(ctxb)
	f.tok.conn = &cancelAfter{testConn: f.conn, n: 1, cancel: cancel}
	if _, err := f.tok.Sign(ctx, []byte{1}, cards.SignRSAPKCS1, []byte("abc"), nil); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled sign: %v", err)
	}
	f.tok.conn = f.conn
	n, ins := f.conn.count(func() {
		if _, err := f.tok.Sign(ctxb, []byte{1}, cards.SignRSAPKCS1, []byte("abc"), &cards.Auth{PIN: []byte("123456")}); err != nil {
			t.Fatal(err)
		}
	})
	if ins[0] != "A4" {
		t.Errorf("after a cancelled chain: %d APDUs %v, want SELECT first", n, ins)
	}
}

func TestPrivateDataObjects(t *testing.T) {
	for _, protected := range []bool{false, true} {
		f := newFixture(t, pivtest.Options{}, func(c *pivtest.Card) {
			printed := apdu.TLVBytes(0x01, []byte("J. Doe"))
			if protected {
				printed = apdu.TLVBytes(0x88, apdu.TLVBytes(0x89, pivtest.DefaultMgmtKey))
			}
			_ = c.PutObject(pivtest.ObjectPrinted, printed)
			_ = c.PutObject(0x5FC108, []byte{0xBC, 0x02, 0x01, 0x02})
		})
		datas := func() map[string]cards.Object {
			objs, err := f.tok.Objects(ctxb, cards.Filter{Kind: cards.KindData})
			if err != nil {
				t.Fatal(err)
			}
			m := map[string]cards.Object{}
			for _, o := range objs {
				m[o.Handle] = o
			}
			return m
		}
		if m := datas(); len(m) != 1 {
			t.Errorf("before login: %v", m)
		}
		mustLogin(t, f.tok, cards.RoleUser, "123456")
		m := datas()
		if o, ok := m["data/5fc108"]; !ok || !o.Private || o.Label != "Cardholder Facial Image" {
			t.Errorf("facial image %+v", o)
		}
		if _, ok := m["data/5fc109"]; ok == protected {
			t.Errorf("printed information listed %v with a protected key %v", ok, protected)
		}
		if protected {
			if c := f.tok.data[tagPrinted]; c == nil || c.value != nil {
				t.Error("the protected management key stays in the cache")
			}
		}
		n, _ := f.conn.count(func() { datas() })
		if n != 0 {
			t.Errorf("private containers read again: %d APDUs", n)
		}
	}
}

func TestECDSAHashTruncated(t *testing.T) {
	f := newFixture(t, pivtest.Options{}, func(c *pivtest.Card) { provision(t, c, 0x9E, pivtest.AlgECCP256) })
	h := sha512.Sum512([]byte("long hash"))
	sig, err := f.tok.Sign(ctxb, []byte{4}, cards.SignECDSA, h[:], nil) // 9E: PIN policy never
	if err != nil {
		t.Fatal(err)
	}
	pub := f.card.PublicKey(0x9E).(*ecdsa.PublicKey)
	if !ecdsa.Verify(pub, h[:], new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])) {
		t.Error("signature over a SHA-512 hash truncated to P-256 does not verify")
	}
	if _, err := f.tok.Sign(ctxb, []byte{4}, cards.SignECDSA, nil, nil); !errors.Is(err, cards.ErrInputLength) {
		t.Errorf("empty hash: %v", err)
	}
}

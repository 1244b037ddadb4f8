package openpgp_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"testing"

	"github.com/p11-card/p11-card/apdu"
	"github.com/p11-card/p11-card/cards"
	"github.com/p11-card/p11-card/cards/openpgp"
	"github.com/p11-card/p11-card/cards/openpgp/pgptest"
)

// appDataOf reads 6E from a virtual card in mode m.
func appDataOf(t testing.TB, m pgptest.Mode) []byte {
	c := pgptest.MustNew(pgptest.Options{Mode: m})
	conn := pgptest.NewConn(c)
	ctx := context.Background()
	if _, err := apdu.Do(ctx, conn, apdu.Command{INS: 0xA4, P1: 4, Data: []byte{0xD2, 0x76, 0x00, 0x01, 0x24, 0x01}}, apdu.Options{}); err != nil {
		t.Fatal(err)
	}
	b, err := apdu.Do(ctx, conn, apdu.Command{INS: 0xCA, P2: 0x6E, Ne: 256}, apdu.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func mustHex(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}

// A 2.1 card in the style of Gnuk: no 7F66, max lengths in C0, ECC attributes, PW1 for
// one signature, no key information DO.
var gnukAppData = func() []byte {
	tlv := apdu.TLVBytes
	fpr := append(bytes.Repeat([]byte{0x11}, 20), make([]byte, 40)...)
	disc := bytes.Join([][]byte{
		tlv(0xC0, mustHex("70000080000008000800")),
		tlv(0xC1, mustHex("132a8648ce3d030107")),
		tlv(0xC2, mustHex("122a8648ce3d030107")),
		tlv(0xC3, mustHex("010800002000")),
		tlv(0xC4, mustHex("00202020030003")),
		tlv(0xC5, fpr),
		tlv(0xC6, make([]byte, 60)),
		tlv(0xCD, mustHex("5f0000000000000000000000")),
	}, nil)
	return tlv(0x6E, tlv(0x4F, mustHex("d276000124010201fffe123456780000")),
		tlv(0x5F52, mustHex("0031c573c00180059000")), tlv(0x73, disc))
}()

func TestParseAppData(t *testing.T) {
	yk, err := openpgp.ParseAppData(appDataOf(t, pgptest.ModeYubiKey))
	if err != nil {
		t.Fatal(err)
	}
	if !yk.PW.PW1Multi || yk.PW.PW1Max != 127 || yk.PW.PW1Retries != 3 || yk.PW.RCRetries != 0 {
		t.Errorf("yubikey PW status %+v", yk.PW)
	}
	if len(yk.Fingerprints) != 4 || len(yk.GenDates) != 4 || yk.MaxCommand != 0x0BFE || !yk.Extended || !yk.Chaining {
		t.Errorf("yubikey %+v", yk)
	}
	if len(yk.UIF[0]) != 2 || yk.Caps.MaxCert != 0x800 || !yk.Caps.KDF {
		t.Errorf("yubikey caps %+v uif %x", yk.Caps, yk.UIF)
	}
	st, err := openpgp.ParseAppData(appDataOf(t, pgptest.ModeStrict))
	if err != nil {
		t.Fatal(err)
	}
	if st.PW.PW1Multi || st.Extended || !st.Chaining || len(st.Fingerprints) != 3 {
		t.Errorf("strict %+v", st)
	}
	g, err := openpgp.ParseAppData(gnukAppData)
	if err != nil {
		t.Fatalf("gnuk-like: %v", err)
	}
	if g.AID.Version != (cards.Version{Major: 2, Minor: 1}) || g.AID.Serial != 0x12345678 || g.AID.Manufacturer != 0xFFFE {
		t.Errorf("AID %+v", g.AID)
	}
	if g.Algo[0].Alg != cards.AlgECP256 || g.Algo[1].Alg != cards.AlgECP256 || g.Algo[1].ID != 0x12 || g.Algo[2].Bits != 2048 {
		t.Errorf("algorithms %+v", g.Algo)
	}
	if g.Caps.MaxCommand != 0x800 || g.MaxCommand != 0x800 || g.Extended || !g.Chaining {
		t.Errorf("2.x lengths: caps %+v ad %d", g.Caps, g.MaxCommand)
	}
	if g.PW.PW1Multi || g.PW.PW1Max != 32 || len(g.GenDates) != 3 || g.GenDates[0] != 0x5f000000 {
		t.Errorf("gnuk PW %+v dates %v", g.PW, g.GenDates)
	}
	// Errors: no AID, no PW status, truncated.
	for name, b := range map[string][]byte{
		"empty":     nil,
		"no AID":    mustHex("6e09c407ff7f7f7f030003"),
		"no PW":     mustHex("6e124f10d2760001240103040006123456780000"),
		"truncated": gnukAppData[:40],
		"bad AID":   mustHex("6e0d4f02d276c407ff7f7f7f030003"),
	} {
		if _, err := openpgp.ParseAppData(b); !errors.Is(err, cards.ErrBadCard) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestParseAlgoAttr(t *testing.T) {
	for _, c := range []struct {
		hex  string
		alg  cards.KeyAlg
		bits int
		err  bool
	}{
		{"010800001100", cards.AlgRSA, 2048, false},
		{"0110000020", cards.AlgRSA, 4096, false},
		{"132a8648ce3d030107", cards.AlgECP256, 256, false},
		{"132a8648ce3d030107ff", cards.AlgECP384 * 0, 256, false},
		{"122b81040022", cards.AlgECP384, 384, false},
		{"162b06010401da470f01", cards.AlgEd25519, 256, false},
		{"122b060104019755010501", cards.AlgX25519, 256, false},
		{"122b2403030208010107", cards.AlgBrainpoolP256, 256, false},
		{"1306082a8648ce3d030107", cards.AlgECP256, 256, false}, // DER header kept by some cards
		{"132b06010401da470f01", 0, 0, true},                    // Ed25519 under ECDSA
		{"162a8648ce3d030107", 0, 0, true},
		{"01", 0, 0, true},
		{"", 0, 0, true},
		{"ff00", 0, 0, true},
		{"1301020304", 0, 0, true},
	} {
		a, err := openpgp.ParseAlgoAttr(mustHex(c.hex))
		if (err != nil) != c.err {
			t.Errorf("%s: err %v", c.hex, err)
			continue
		}
		if err == nil && (c.alg != 0 && a.Alg != c.alg || a.Bits != c.bits) {
			t.Errorf("%s: %+v", c.hex, a)
		}
		if err == nil && c.alg != 0 && !bytes.HasPrefix(mustHex(c.hex), a.Bytes()[:1]) {
			t.Errorf("%s: encodes as %x", c.hex, a.Bytes())
		}
	}
}

func TestS2K(t *testing.T) {
	// Count smaller than salt‖pin: hashed once.
	got := openpgp.S2K(sha256.New(), []byte("salt"), []byte("pin"), 1)
	want := sha256.Sum256([]byte("saltpin"))
	if !bytes.Equal(got, want[:]) {
		t.Fatal("S2K with a small count")
	}
	// Count of 10: "saltpin" + "sal".
	got = openpgp.S2K(sha256.New(), []byte("salt"), []byte("pin"), 10)
	want = sha256.Sum256([]byte("saltpinsal"))
	if !bytes.Equal(got, want[:]) {
		t.Fatal("S2K with a partial round")
	}
	k := openpgp.KDF{Algo: 3, Hash: 8, Count: 1000, Salt: [3][]byte{{1}, {2}, {3}}}
	k2, err := openpgp.ParseKDF(k.Encode())
	if err != nil || k2.Count != 1000 || !bytes.Equal(k2.Salt[2], []byte{3}) || !k2.Active() {
		t.Fatalf("KDF round trip %+v %v", k2, err)
	}
	if _, err := openpgp.ParseKDF(mustHex("810103820109830400000001")); err == nil {
		t.Fatal("unknown KDF hash accepted")
	}
	if _, err := openpgp.ParseKDF(mustHex("8101038201088304ffffffff")); err == nil {
		t.Fatal("huge KDF count accepted")
	}
}

func FuzzOpenPGPAppData(f *testing.F) {
	f.Add(appDataOf(f, pgptest.ModeYubiKey))
	f.Add(appDataOf(f, pgptest.ModeStrict))
	f.Add(gnukAppData)
	f.Fuzz(func(t *testing.T, b []byte) {
		ad, err := openpgp.ParseAppData(b)
		if err != nil {
			return
		}
		if len(ad.Fingerprints) > 8 || len(ad.GenDates) > 8 {
			t.Fatalf("unbounded lists")
		}
		for _, a := range ad.Algo {
			if a.Alg != 0 {
				if _, err := openpgp.ParseAlgoAttr(a.Bytes()); err != nil {
					t.Fatalf("attributes %x do not round-trip: %v", a.Bytes(), err)
				}
			}
		}
	})
}

func FuzzOpenPGPAlgoAttr(f *testing.F) {
	f.Add(mustHex("010800001100"))
	f.Add(mustHex("162b06010401da470f01"))
	f.Add(mustHex("132a8648ce3d030107ff"))
	f.Fuzz(func(t *testing.T, b []byte) {
		a, err := openpgp.ParseAlgoAttr(b)
		if err != nil {
			return
		}
		a2, err := openpgp.ParseAlgoAttr(a.Bytes())
		if err != nil || a2.Alg != a.Alg || a2.Bits != a.Bits {
			t.Fatalf("round trip %x: %+v vs %+v (%v)", b, a, a2, err)
		}
	})
}

func FuzzOpenPGPPublicKey(f *testing.F) {
	f.Add(byte(0), mustHex("7f490a8103010001820301000100"))
	f.Add(byte(1), mustHex("7f4923862104"+"0000000000000000000000000000000000000000000000000000000000000000"))
	f.Add(byte(2), mustHex("7f4922862040"+"00000000000000000000000000000000000000000000000000000000000000"))
	attrs := []openpgp.AlgoAttr{}
	for _, h := range []string{"010800001100", "132a8648ce3d030107", "162b06010401da470f01", "122b060104019755010501", "122b2403030208010107"} {
		a, _ := openpgp.ParseAlgoAttr(mustHex(h))
		attrs = append(attrs, a)
	}
	f.Fuzz(func(t *testing.T, which byte, b []byte) {
		a := attrs[int(which)%len(attrs)]
		ki, err := openpgp.ParsePublicKey(b, a)
		if err != nil {
			return
		}
		if ki.Alg != a.Alg {
			t.Fatalf("alg %v for %v", ki.Alg, a.Alg)
		}
		_, _ = openpgp.Fingerprint(ki, a, 0)
	})
}

func FuzzOpenPGPKDF(f *testing.F) {
	f.Add(openpgp.KDF{Algo: 3, Hash: 8, Count: 1000, Salt: [3][]byte{{1}, {2}, {3}}}.Encode())
	f.Add(mustHex("810100"))
	f.Fuzz(func(t *testing.T, b []byte) {
		k, err := openpgp.ParseKDF(b)
		if err != nil {
			return
		}
		if k.Active() && (k.Count == 0 || k.Count > 1<<26) {
			t.Fatalf("count %d accepted", k.Count)
		}
	})
}

// scripted answers every command with the next response cut from the fuzz input
// (2-byte length, then bytes); when the script ends it answers 6A82.
type scripted struct{ b []byte }

func (s *scripted) Transmit(ctx context.Context, cmd []byte) ([]byte, error) {
	if len(s.b) < 2 {
		return []byte{0x6A, 0x82}, nil
	}
	n := int(s.b[0])<<8 | int(s.b[1])
	s.b = s.b[2:]
	n = min(n, len(s.b))
	r := s.b[:n]
	s.b = s.b[n:]
	if len(r) < 2 {
		return []byte{0x90, 0x00}, nil
	}
	return r, nil
}

func (s *scripted) Lock(ctx context.Context) (func(), bool, error) { return func() {}, false, nil }

func script(resps ...[]byte) []byte {
	var out []byte
	for _, r := range resps {
		out = append(out, byte(len(r)>>8), byte(len(r)))
		out = append(out, r...)
	}
	return out
}

// FuzzOpenPGPDriver runs the driver against a card answering with fuzz input: Open, the
// object list, PIN status, a login and a signature must fail cleanly, never panic.
func FuzzOpenPGPDriver(f *testing.F) {
	yk := appDataOf(f, pgptest.ModeYubiKey)
	ok := []byte{0x90, 0x00}
	f.Add(script(ok, append(yk, 0x90, 0x00), ok))
	f.Add(script(ok, append(gnukAppData, 0x90, 0x00), append(mustHex("7f4943864104"), make([]byte, 64)...), ok))
	f.Add(script(ok, append(yk[:100], 0x61, 0x20), ok))
	f.Fuzz(func(t *testing.T, b []byte) {
		ctx := context.Background()
		s := &scripted{b: b}
		tok, err := openpgp.Driver{}.Open(ctx, s, []byte{0x3B, 0x80, 0x80, 0x01, 0x01})
		if err != nil {
			return
		}
		_ = tok.Info()
		_ = tok.KeySlots()
		_, _ = tok.Objects(ctx, cards.Filter{})
		_, _ = tok.PINStatus(ctx, cards.RoleUser)
		_ = tok.Login(ctx, cards.RoleUser, []byte("123456"))
		h := sha256.Sum256(nil)
		for id := byte(1); id <= 3; id++ {
			_, _ = tok.Sign(ctx, []byte{id}, cards.SignECDSA, h[:], nil)
			_, _ = tok.Sign(ctx, []byte{id}, cards.SignRSAPKCS1, h[:], nil)
			_, _ = tok.Derive(ctx, []byte{id}, append([]byte{4}, make([]byte, 64)...), nil)
		}
		_, _ = tok.Random(ctx, 16)
	})
}

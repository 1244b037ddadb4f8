package piv

import (
	"bytes"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/p11-card/p11-card/apdu"
	"github.com/p11-card/p11-card/apdu/apdutest"
	"github.com/p11-card/p11-card/cards"
	"github.com/p11-card/p11-card/cards/piv/pivtest"
)

var update = flag.Bool("update", false, "regenerate testdata/transcripts (and fuzz seeds) from the virtual card")

// counterReader is a deterministic "random" source, so the host's management key
// challenge is the same when recorded and replayed.
type counterReader struct{ n byte }

func (r *counterReader) Read(p []byte) (int, error) {
	for i := range p {
		r.n++
		p[i] = r.n
	}
	return len(p), nil
}

// scenario is one transcript: setup prepares the virtual card (recording only), run drives
// the token; reset makes the next Lock report a card reset.
type scenario struct {
	name  string
	opt   pivtest.Options
	setup func(t *testing.T, c *pivtest.Card)
	run   func(t *testing.T, tok *Token, reset func())
}

// lockConn is the recorder or replayer as a cards.Conn.
type lockConn interface {
	cards.Conn
}

func (sc scenario) test(t *testing.T) {
	path := filepath.Join("testdata", "transcripts", sc.name+".apdu")
	atr := pivtest.MustNew(pivtest.Options{}).ATR()
	var conn lockConn
	var reset func()
	var rec *apdutest.Recorder
	if *update {
		card := pivtest.MustNew(sc.opt)
		if sc.setup != nil {
			sc.setup(t, card)
		}
		tc := &testConn{card: card}
		rec = apdutest.NewRecorder(tc, "")
		fw := "5.7.1 (default)"
		if sc.opt.Firmware != [3]byte{} {
			fw = fmt.Sprintf("%d.%d.%d", sc.opt.Firmware[0], sc.opt.Firmware[1], sc.opt.Firmware[2])
		}
		rec.Comment("%s: recorded from pivtest, firmware %s; regenerate with go test ./cards/piv -run TestTranscripts -update", sc.name, fw)
		conn, reset = rec, func() { tc.resetNext = true }
	} else {
		rep := apdutest.Load(t, path)
		conn, reset = rep, rep.ResetNext
	}
	tok, err := Driver{}.Open(ctxb, conn, atr)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	pt := tok.(*Token)
	pt.rand = &counterReader{}
	sc.run(t, pt, reset)
	if rec != nil {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := rec.Save(path); err != nil {
			t.Fatal(err)
		}
	}
}

// fixedRSA is an RSA key for import scenarios (the import data is a wildcard in the
// transcript, so any 2048-bit key replays).
func fixedRSA(t *testing.T) *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestTranscripts(t *testing.T) {
	gen := func(slot, alg byte) func(t *testing.T, c *pivtest.Card) {
		return func(t *testing.T, c *pivtest.Card) { provision(t, c, slot, alg) }
	}
	scenarios := []scenario{
		{name: "open", run: func(t *testing.T, tok *Token, reset func()) {
			if tok.Info().Serial != "12345678" {
				t.Errorf("serial %q", tok.Info().Serial)
			}
		}},
		{name: "sign-ecdsa-p256", setup: gen(0x9A, pivtest.AlgECCP256), run: func(t *testing.T, tok *Token, reset func()) {
			objs, err := tok.Objects(ctxb, cards.Filter{ID: []byte{1}, Kind: cards.KindPrivateKey})
			if err != nil || len(objs) != 1 {
				t.Fatal(objs, err)
			}
			mustLogin(t, tok, cards.RoleUser, "123456")
			sig, err := tok.Sign(ctxb, []byte{1}, cards.SignECDSA, bytes.Repeat([]byte{0x5A}, 32), nil)
			if err != nil || len(sig) != 64 {
				t.Fatal(len(sig), err)
			}
		}},
		{name: "sign-rsa-pin-always", setup: gen(0x9C, pivtest.AlgRSA2048), run: func(t *testing.T, tok *Token, reset func()) {
			mustLogin(t, tok, cards.RoleUser, "123456")
			sig, err := tok.Sign(ctxb, []byte{2}, cards.SignRSAPKCS1, []byte("digest info"), &cards.Auth{PIN: []byte("123456")})
			if err != nil || len(sig) != 256 {
				t.Fatal(len(sig), err)
			}
			if _, err := tok.Sign(ctxb, []byte{2}, cards.SignRSAPKCS1, []byte("digest info"), nil); !errors.Is(err, cards.ErrLoginRequired) {
				t.Errorf("second signature without PIN: %v", err)
			}
		}},
		{name: "decrypt-rsa", setup: gen(0x9D, pivtest.AlgRSA2048), run: func(t *testing.T, tok *Token, reset func()) {
			mustLogin(t, tok, cards.RoleUser, "123456")
			in := make([]byte, 256)
			in[255] = 2
			if _, err := tok.Decrypt(ctxb, []byte{3}, cards.DecryptRSARaw, in, nil); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "derive-x25519", setup: gen(0x9E, pivtest.AlgX25519), run: func(t *testing.T, tok *Token, reset func()) {
			peer := bytes.Repeat([]byte{9}, 32)
			if _, err := ecdh.X25519().NewPublicKey(peer); err != nil {
				t.Fatal(err)
			}
			// 9E: PIN policy never.
			if _, err := tok.Derive(ctxb, []byte{4}, peer, nil); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "so-generate-write-delete", setup: gen(0x9A, pivtest.AlgECCP256), run: func(t *testing.T, tok *Token, reset func()) {
			mustLogin(t, tok, cards.RoleSO, defaultMgmtHex)
			if _, err := tok.GenerateKey(ctxb, cards.KeyGenSpec{ID: []byte{3}, Alg: cards.AlgECP384, TouchPolicy: "cached"}); err != nil {
				t.Fatal(err)
			}
			certs, err := tok.Objects(ctxb, cards.Filter{ID: []byte{1}, Kind: cards.KindCertificate})
			if err != nil || len(certs) != 1 {
				t.Fatal(certs, err)
			}
			if err := tok.WriteCertificate(ctxb, []byte{3}, certs[0].Cert); err != nil {
				t.Fatal(err)
			}
			if err := tok.DeleteObject(ctxb, "9a/cert"); err != nil {
				t.Fatal(err)
			}
			if err := tok.DeleteObject(ctxb, "9a/priv"); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "import", run: func(t *testing.T, tok *Token, reset func()) {
			mustLogin(t, tok, cards.RoleSO, defaultMgmtHex)
			if err := tok.ImportKey(ctxb, cards.KeyGenSpec{ID: []byte{1}}, fixedRSA(t)); err != nil {
				t.Fatal(err)
			}
			ek, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			if err := tok.ImportKey(ctxb, cards.KeyGenSpec{ID: []byte{5}, PINPolicy: "always"}, ek); err != nil {
				t.Fatal(err)
			}
		}},
		// PINs here read the same after the recorder's redaction (the test PIN repeated), so
		// the transcript replays: wrong PIN 1234561, PUK 12345612, new PIN 345612.
		{name: "pin-blocked-unblock", opt: pivtest.Options{PUK: []byte("12345612")}, run: func(t *testing.T, tok *Token, reset func()) {
			for i := 0; i < 3; i++ {
				_ = tok.Login(ctxb, cards.RoleUser, []byte("1234561"))
			}
			if err := tok.Login(ctxb, cards.RoleUser, []byte("123456")); !errors.Is(err, cards.ErrPINBlocked) {
				t.Errorf("blocked: %v", err)
			}
			st, err := tok.PINStatus(ctxb, cards.RoleUser)
			if err != nil || !st.Blocked {
				t.Errorf("status %+v %v", st, err)
			}
			if err := tok.Unblock(ctxb, cards.RolePUK, []byte("12345612"), []byte("345612")); err != nil {
				t.Fatal(err)
			}
			// (A login with the new PIN would be redacted to the test PIN: see TestPINErrors.)
		}},
		{name: "reset-forgets-login", setup: gen(0x9A, pivtest.AlgECCP256), run: func(t *testing.T, tok *Token, reset func()) {
			mustLogin(t, tok, cards.RoleUser, "123456")
			if _, err := tok.Sign(ctxb, []byte{1}, cards.SignECDSA, make([]byte, 32), nil); err != nil {
				t.Fatal(err)
			}
			reset()
			if _, err := tok.Sign(ctxb, []byte{1}, cards.SignECDSA, make([]byte, 32), nil); !errors.Is(err, cards.ErrLoginRequired) {
				t.Errorf("after reset: %v", err)
			}
		}},
		{name: "objects-all", setup: gen(0x9A, pivtest.AlgECCP256), run: func(t *testing.T, tok *Token, reset func()) {
			objs, err := tok.Objects(ctxb, cards.Filter{})
			if err != nil {
				t.Fatal(err)
			}
			if len(objs) < 5 {
				t.Errorf("%d objects", len(objs))
			}
		}},
		{name: "short-apdus-no-metadata", opt: pivtest.Options{Firmware: [3]byte{5, 2, 7}}, setup: gen(0x9A, pivtest.AlgRSA2048), run: func(t *testing.T, tok *Token, reset func()) {
			tok.opt.Extended = false
			objs, err := tok.Objects(ctxb, cards.Filter{ID: []byte{1}})
			if err != nil || len(objs) != 3 {
				t.Fatal(objs, err)
			}
			mustLogin(t, tok, cards.RoleUser, "123456")
			if _, err := tok.Sign(ctxb, []byte{1}, cards.SignRSAPKCS1, []byte("x"), nil); err != nil {
				t.Fatal(err)
			}
			mustLogin(t, tok, cards.RoleSO, defaultMgmtHex)
			if err := tok.WriteCertificate(ctxb, []byte{3}, objs[0].Cert); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, sc := range scenarios {
		t.Run(sc.name, sc.test)
	}
}

// TestTranscriptsRedacted checks that no committed transcript holds a non-test PIN or the
// management key in clear: VERIFY data is the test PIN, imports are wildcards.
func TestTranscriptsRedacted(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join("testdata", "transcripts", "*.apdu"))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		ex, err := apdutest.Parse(bytes.NewReader(b), f)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range ex {
			c, err := apdu.ParseCommand(e.Cmd)
			if err != nil {
				continue
			}
			if c.INS == 0x20 && len(c.Data) == 8 && !bytes.HasPrefix(c.Data, []byte("123456")) && !bytes.HasPrefix(c.Data, []byte("345612")) {
				t.Errorf("%s: VERIFY with another PIN", f)
			}
		}
	}
}

package openpgp_test

import (
	"context"
	"crypto/ed25519"
	"flag"
	"testing"

	"github.com/p11-card/p11-card/apdu/apdutest"
	"github.com/p11-card/p11-card/cards"
	"github.com/p11-card/p11-card/cards/openpgp"
	"github.com/p11-card/p11-card/cards/openpgp/pgptest"
)

var update = flag.Bool("update", false, "rewrite testdata/transcripts from the virtual card")

// scenario runs the driver steps of one transcript on conn.
type scenario func(t *testing.T, conn cards.Conn, atr []byte)

var transcripts = []struct {
	name string
	mode pgptest.Mode
	run  scenario
}{
	{"yubikey-open-sign-ed25519", pgptest.ModeYubiKey, signEd25519},
	{"strict-open-sign-ed25519", pgptest.ModeStrict, signEd25519},
}

// signEd25519: Open (SELECT + GET DATA 6E), read the SIG public key, login, sign (the card
// asks for the PIN per signature in strict mode), logout.
func signEd25519(t *testing.T, conn cards.Conn, atr []byte) {
	ctx := context.Background()
	tok, err := openpgp.Driver{}.Open(ctx, conn, atr)
	if err != nil {
		t.Fatal(err)
	}
	objs, err := tok.Objects(ctx, cards.Filter{ID: []byte{1}, Kind: cards.KindPublicKey})
	if err != nil || len(objs) != 1 {
		t.Fatalf("objects %v %v", objs, err)
	}
	if err := tok.Login(ctx, cards.RoleUser, []byte("123456")); err != nil {
		t.Fatal(err)
	}
	var auth *cards.Auth
	if objs[0].Key.AlwaysAuth {
		auth = &cards.Auth{PIN: []byte("123456")}
	}
	sig, err := tok.Sign(ctx, []byte{1}, cards.SignEdDSA, []byte("transcript"), auth)
	if err != nil {
		t.Fatal(err)
	}
	if !ed25519.Verify(objs[0].Key.Public.(ed25519.PublicKey), []byte("transcript"), sig) {
		t.Fatal("signature does not verify")
	}
	if err := tok.Logout(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestTranscripts(t *testing.T) {
	for _, tc := range transcripts {
		t.Run(tc.name, func(t *testing.T) {
			path := "testdata/transcripts/" + tc.name + ".apdu"
			card := pgptest.MustNew(pgptest.Options{Mode: tc.mode})
			if *update {
				key := ed25519.NewKeyFromSeed(make([]byte, 32))
				if err := card.PutKey(0, key, make([]byte, 20)); err != nil {
					t.Fatal(err)
				}
				card.SetState(func(s *pgptest.State) { s.Fpr[0][0] = 1 })
				rec := apdutest.NewRecorder(pgptest.NewConn(card), "")
				rec.Comment("%s: virtual card (cards/openpgp/pgptest, mode %s), Ed25519 SIG key from a zero seed", tc.name, tc.mode)
				tc.run(t, rec, card.ATR())
				if err := rec.Save(path); err != nil {
					t.Fatal(err)
				}
			}
			tc.run(t, apdutest.Load(t, path), card.ATR())
		})
	}
}

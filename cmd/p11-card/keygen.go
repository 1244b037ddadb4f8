package main

import (
	"context"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"strings"

	"github.com/p11-card/p11-card/cards"
)

func init() {
	register(&command{
		name:    "keygen",
		summary: "generate a key pair on a card",
		usage:   "--id ID --alg ALG [--pin-policy P] [--touch-policy P] [--slot ID | --reader NAME] [--json]",
		help: `Generates a key pair on the card, in the key location --id names (a CKA_ID in hex,
01 = PIV 9A, 02 = 9C, 03 = 9D, 04 = 9E, 05… = retired slots; or a slot name: 9a,
sig), and prints the public key (PEM). The private key never leaves the card.

The card's administrator secret is read from standard input (one line): the PIV
management key in hex, or the OpenPGP admin PIN.

  --alg ALG          rsa1024, rsa2048, rsa3072, rsa4096, p256, p384, ed25519, x25519
  --pin-policy P     never, once, always (PIV; default the card's)
  --touch-policy P   never, always, cached (PIV; default the card's)
  --json             {"slot", "reader", "id", "alg", "public_key_pem"}

No certificate is written: create one (e.g. with openssl through the PKCS#11 module)
and store it with 'p11-card cert import'.`,
		run: runKeygen,
	})
}

var keygenAlgs = map[string]struct {
	alg  cards.KeyAlg
	bits int
}{
	"rsa1024": {cards.AlgRSA, 1024}, "rsa2048": {cards.AlgRSA, 2048}, "rsa3072": {cards.AlgRSA, 3072}, "rsa4096": {cards.AlgRSA, 4096},
	"p256": {cards.AlgECP256, 256}, "p384": {cards.AlgECP384, 384}, "ed25519": {cards.AlgEd25519, 255}, "x25519": {cards.AlgX25519, 255},
}

func runKeygen(ctx context.Context, e *env, args []string) error {
	fs := newFlags("keygen")
	id := fs.String("id", "", "key location")
	algName := fs.String("alg", "", "algorithm")
	pinPol := fs.String("pin-policy", "", "PIN policy")
	touchPol := fs.String("touch-policy", "", "touch policy")
	asJSON := fs.Bool("json", false, "JSON output")
	slot, reader := tokenFlags(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	alg, ok := keygenAlgs[strings.ToLower(*algName)]
	if !ok {
		return usageError{fmt.Sprintf("--alg %q: want one of rsa1024, rsa2048, rsa3072, rsa4096, p256, p384, ed25519, x25519", *algName)}
	}
	if *id == "" {
		return usageError{"--id is required"}
	}
	for _, p := range []struct{ name, v string }{{"--pin-policy", *pinPol}, {"--touch-policy", *touchPol}} {
		switch p.v {
		case "", "never", "once", "always", "cached":
		default:
			return usageError{fmt.Sprintf("%s %q", p.name, p.v)}
		}
	}
	secret, err := pinInput(e).next("administrator secret")
	if err != nil {
		return err
	}
	defer wipe(secret)
	ct, done, err := openToken(ctx, *slot, *reader)
	if err != nil {
		return err
	}
	defer done()
	kid, err := parseID(ct.tok, *id)
	if err != nil {
		return err
	}
	if err := ct.tok.Login(ctx, cards.RoleSO, secret); err != nil {
		return fmt.Errorf("administrator login: %s", pinErrText(err))
	}
	defer ct.tok.Logout(ctx)
	obj, err := ct.tok.GenerateKey(ctx, cards.KeyGenSpec{ID: kid, Alg: alg.alg, Bits: alg.bits, PINPolicy: *pinPol, TouchPolicy: *touchPol})
	if err != nil {
		return err
	}
	var pemText string
	if obj.Key != nil && obj.Key.Public != nil {
		if der, err := x509.MarshalPKIXPublicKey(obj.Key.Public); err == nil {
			pemText = string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
		}
	}
	if *asJSON {
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(struct {
			Slot   uint64 `json:"slot"`
			Reader string `json:"reader"`
			ID     string `json:"id"`
			Alg    string `json:"alg"`
			PEM    string `json:"public_key_pem"`
		}{ct.slot, ct.reader, hex.EncodeToString(kid), strings.ToLower(*algName), pemText})
	}
	fmt.Fprintf(e.stdout, "generated %s key at CKA_ID %x (slot %d, %s)\n%s", *algName, kid, ct.slot, ct.reader, pemText)
	return nil
}

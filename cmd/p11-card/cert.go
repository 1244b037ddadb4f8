package main

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"

	"github.com/p11-card/p11-card/cards"
)

func init() {
	register(&command{
		name:    "cert",
		summary: "import or export the certificate of a key location",
		usage:   "import|export --id ID [FILE] [--der] [--slot ID | --reader NAME] [--json]",
		help: `  import --id ID FILE   stores the certificate in FILE (PEM or DER) for the key
                        location --id; the administrator secret (PIV management key
                        in hex, OpenPGP admin PIN) is read from standard input
  export --id ID [FILE] writes the certificate as PEM (--der: DER) to FILE or
                        standard output

--id is a CKA_ID in hex (01 = PIV 9A, 02 = 9C, 03 = 9D, 04 = 9E) or a slot name.
import checks that the certificate's public key is the key in that location.

  --json   import: {"slot", "reader", "id", "subject"}; export: {"slot", "reader",
           "id", "subject", "issuer", "not_after", "pem"}`,
		run: runCert,
	})
}

func runCert(ctx context.Context, e *env, args []string) error {
	if len(args) == 0 {
		return usageError{"cert needs an action: import or export"}
	}
	action := args[0]
	fs := newFlags("cert")
	id := fs.String("id", "", "key location")
	der := fs.Bool("der", false, "DER output")
	asJSON := fs.Bool("json", false, "JSON output")
	slot, reader := tokenFlags(fs)
	if err := parseFlags(fs, args[1:]); err != nil {
		return err
	}
	if *id == "" {
		return usageError{"--id is required"}
	}
	switch action {
	case "import":
		if fs.NArg() != 1 {
			return usageError{"cert import needs the certificate file"}
		}
		return certImport(ctx, e, *id, fs.Arg(0), *slot, *reader, *asJSON)
	case "export":
		if fs.NArg() > 1 {
			return usageError{"cert export takes at most one file"}
		}
		return certExport(ctx, e, *id, fs.Arg(0), *der, *slot, *reader, *asJSON)
	}
	return usageError{fmt.Sprintf("unknown cert action %q", action)}
}

// readCert reads a PEM or DER certificate.
func readCert(path string) (*x509.Certificate, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if blk, _ := pem.Decode(b); blk != nil {
		if blk.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("%s: PEM block %q, want CERTIFICATE", path, blk.Type)
		}
		b = blk.Bytes
	}
	c, err := x509.ParseCertificate(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	return c, nil
}

func certImport(ctx context.Context, e *env, id, path string, slot uint64, reader string, asJSON bool) error {
	c, err := readCert(path)
	if err != nil {
		return err
	}
	secret, err := pinInput(e).next("administrator secret")
	if err != nil {
		return err
	}
	defer wipe(secret)
	ct, done, err := openToken(ctx, slot, reader)
	if err != nil {
		return err
	}
	defer done()
	kid, err := parseID(ct.tok, id)
	if err != nil {
		return err
	}
	pubs, err := ct.tok.Objects(ctx, cards.Filter{ID: kid, Kind: cards.KindPublicKey})
	if err != nil {
		return err
	}
	if len(pubs) > 0 && pubs[0].Key != nil && pubs[0].Key.Public != nil {
		want, err1 := x509.MarshalPKIXPublicKey(pubs[0].Key.Public)
		got, err2 := x509.MarshalPKIXPublicKey(c.PublicKey)
		if err1 == nil && err2 == nil && !bytes.Equal(want, got) {
			return errors.New("the certificate's public key is not the key in that location")
		}
	}
	if err := ct.tok.Login(ctx, cards.RoleSO, secret); err != nil {
		return fmt.Errorf("administrator login: %s", pinErrText(err))
	}
	defer ct.tok.Logout(ctx)
	if err := ct.tok.WriteCertificate(ctx, kid, c.Raw); err != nil {
		return err
	}
	if asJSON {
		return writeJSON(e, map[string]any{"slot": ct.slot, "reader": ct.reader, "id": hex.EncodeToString(kid), "subject": c.Subject.String()})
	}
	fmt.Fprintf(e.stdout, "stored %q at CKA_ID %x\n", c.Subject.String(), kid)
	return nil
}

func certExport(ctx context.Context, e *env, id, path string, der bool, slot uint64, reader string, asJSON bool) error {
	ct, done, err := openToken(ctx, slot, reader)
	if err != nil {
		return err
	}
	defer done()
	kid, err := parseID(ct.tok, id)
	if err != nil {
		return err
	}
	objs, err := ct.tok.Objects(ctx, cards.Filter{ID: kid, Kind: cards.KindCertificate})
	if err != nil {
		return err
	}
	var raw []byte
	for _, o := range objs {
		if bytes.Equal(o.ID, kid) {
			raw = o.Cert
		}
	}
	if raw == nil {
		return fmt.Errorf("no certificate at CKA_ID %x", kid)
	}
	pemText := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: raw})
	out := pemText
	if der {
		out = raw
	}
	if asJSON {
		rep := map[string]any{"slot": ct.slot, "reader": ct.reader, "id": hex.EncodeToString(kid), "pem": string(pemText)}
		if c, err := x509.ParseCertificate(raw); err == nil {
			rep["subject"], rep["issuer"], rep["not_after"] = c.Subject.String(), c.Issuer.String(), c.NotAfter.UTC()
		}
		if path != "" {
			if err := os.WriteFile(path, out, 0o644); err != nil {
				return err
			}
		}
		return writeJSON(e, rep)
	}
	if path != "" {
		return os.WriteFile(path, out, 0o644)
	}
	_, err = e.stdout.Write(out)
	return err
}

func writeJSON(e *env, v any) error {
	enc := json.NewEncoder(e.stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

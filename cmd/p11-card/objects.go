package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/p11-card/p11-card/cards"
	_ "github.com/p11-card/p11-card/cards/piv" // registers the PIV driver
	"github.com/p11-card/p11-card/pcsc"
)

func init() {
	register(&command{
		name:    "objects",
		summary: "list the objects on a card, read straight through its driver",
		usage:   "[--reader NAME] [--json]",
		help: `Binds the card in a reader with the same drivers the PKCS#11 module uses and lists
its objects: certificates, public and private keys, data objects. For each: kind,
CKA_ID (hex), handle, label, the key's algorithm and size, and its PIN and touch
policies where the card tells them (PIV: YubiKey 5.3 and later), and the object's
RFC 7512 PKCS#11 URI as the module presents it.

  --reader NAME  the reader to use: its full name, or a part of it naming one
                 reader (or one holding a card); default: the first reader holding
                 a card
  --json         one JSON object: {"reader", "token": {"driver", "label",
                 "manufacturer", "model", "serial", "firmware"}, "objects": [{"handle",
                 "kind", "id", "label", "private", "key": {"alg", "bits", "pin_policy",
                 "touch_policy", "always_auth", "local", "sign", "decrypt", "derive"},
                 "cert": {"subject", "issuer", "not_after", "key"}, "size", "uri"}]}

No PIN is asked: private objects are listed (flagged), nothing secret is read.`,
		run: runObjects,
	})
}

// objConn is a card connection as objects uses it.
type objConn interface {
	cards.Conn
	ATR() []byte
}

// objectsOpen connects to the card in the reader named (or matched) by want, or the first
// reader with a card; tests replace it.
var objectsOpen = pcscObjectsOpen

func pcscObjectsOpen(ctx context.Context, want string) (string, objConn, func(), error) {
	pc, err := pcsc.Establish(ctx)
	if err != nil {
		return "", nil, nil, noPCSCD(err)
	}
	readers, err := pc.Readers(ctx)
	if err != nil {
		pc.Close()
		return "", nil, nil, err
	}
	name, err := pickReader(readers, want, func(names []string) ([]bool, error) {
		st, err := pc.Status(ctx, names)
		if err != nil {
			return nil, err
		}
		present := make([]bool, len(st))
		for i, s := range st {
			present[i] = s.Present
		}
		return present, nil
	})
	if err != nil {
		pc.Close()
		return "", nil, nil, err
	}
	card, err := pc.Connect(ctx, name)
	if err != nil {
		pc.Close()
		if errors.Is(err, pcsc.ErrNoCard) {
			return "", nil, nil, fmt.Errorf("no card in %q", name)
		}
		return "", nil, nil, err
	}
	return name, card, func() { card.Close(); pc.Close() }, nil
}

// pickReader chooses the reader: the exact name, else the one reader whose name contains
// want; without want the first reader holding a card.
func pickReader(readers []string, want string, present func([]string) ([]bool, error)) (string, error) {
	if len(readers) == 0 {
		return "", errors.New("no readers")
	}
	if want != "" {
		var hits []string
		for _, r := range readers {
			if r == want {
				return r, nil
			}
			if strings.Contains(strings.ToLower(r), strings.ToLower(want)) {
				hits = append(hits, r)
			}
		}
		switch len(hits) {
		case 0:
			return "", fmt.Errorf("no reader matches %q (readers: %s)", want, strings.Join(readers, ", "))
		case 1:
			return hits[0], nil
		}
		// Several match: the one among them holding a card, if only one does.
		if p, err := present(hits); err == nil {
			var with []string
			for i, r := range hits {
				if i < len(p) && p[i] {
					with = append(with, r)
				}
			}
			if len(with) == 1 {
				return with[0], nil
			}
		}
		return "", fmt.Errorf("%q matches %d readers: %s", want, len(hits), strings.Join(hits, ", "))
	}
	p, err := present(readers)
	if err != nil {
		return "", err
	}
	for i, r := range readers {
		if i < len(p) && p[i] {
			return r, nil
		}
	}
	return "", errors.New("no reader holds a card")
}

type objectsReport struct {
	Reader  string       `json:"reader"`
	Token   tokenJSON    `json:"token"`
	Objects []objectJSON `json:"objects"`
}

type tokenJSON struct {
	Driver       string `json:"driver"`
	Label        string `json:"label"`
	Manufacturer string `json:"manufacturer"`
	Model        string `json:"model"`
	Serial       string `json:"serial"`
	Firmware     string `json:"firmware,omitempty"`
}

type objectJSON struct {
	Handle  string    `json:"handle"`
	Kind    string    `json:"kind"`
	ID      string    `json:"id"`
	Label   string    `json:"label"`
	Private bool      `json:"private"`
	Key     *keyJSON  `json:"key,omitempty"`
	Cert    *certJSON `json:"cert,omitempty"`
	Size    int       `json:"size,omitempty"` // bytes of a certificate or data object
	URI     string    `json:"uri"`            // RFC 7512, as the module presents the object
}

type keyJSON struct {
	Alg         string `json:"alg"`
	Bits        int    `json:"bits"`
	PINPolicy   string `json:"pin_policy,omitempty"`
	TouchPolicy string `json:"touch_policy,omitempty"`
	AlwaysAuth  bool   `json:"always_auth"`
	Local       bool   `json:"local"`
	Sign        bool   `json:"sign"`
	Decrypt     bool   `json:"decrypt"`
	Derive      bool   `json:"derive"`
}

type certJSON struct {
	Subject  string `json:"subject"`
	Issuer   string `json:"issuer"`
	NotAfter string `json:"not_after"`
	Key      string `json:"key"` // "rsa 2048", "p256", …
}

func runObjects(ctx context.Context, e *env, args []string) error {
	fs := newFlags("objects")
	asJSON := fs.Bool("json", false, "JSON output")
	reader := fs.String("reader", "", "reader name or part of it")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Sprintf("unexpected argument %q", fs.Arg(0))}
	}
	name, conn, closeFn, err := objectsOpen(ctx, *reader)
	if err != nil {
		return err
	}
	defer closeFn()
	tok, err := cards.Bind(ctx, conn, conn.ATR())
	if err != nil {
		if errors.Is(err, cards.ErrNotRecognized) {
			return fmt.Errorf("%s: no p11-card driver supports this card (ATR %X)", name, conn.ATR())
		}
		return fmt.Errorf("%s: %w", name, err)
	}
	objs, err := tok.Objects(ctx, cards.Filter{})
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	rep := objectsReport{Reader: name, Token: tokenJSONOf(tok.Info()), Objects: []objectJSON{}}
	for _, o := range objs {
		j := objectJSONOf(o)
		j.URI = pkcs11URI(tok.Info(), o)
		rep.Objects = append(rep.Objects, j)
	}
	if *asJSON {
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	printObjects(e.stdout, rep)
	return nil
}

func tokenJSONOf(in cards.TokenInfo) tokenJSON {
	t := tokenJSON{Driver: in.Driver, Label: in.Label, Manufacturer: in.Manufacturer, Model: in.Model, Serial: in.Serial}
	if in.Firmware != (cards.Version{}) {
		t.Firmware = in.Firmware.String()
	}
	return t
}

func objectJSONOf(o cards.Object) objectJSON {
	j := objectJSON{Handle: o.Handle, Kind: o.Kind.String(), ID: hex.EncodeToString(o.ID), Label: o.Label, Private: o.Private}
	if k := o.Key; k != nil {
		j.Key = &keyJSON{Alg: k.Alg.String(), Bits: k.Bits, PINPolicy: k.PINPolicy, TouchPolicy: k.TouchPolicy,
			AlwaysAuth: k.AlwaysAuth, Local: k.Local, Sign: k.Sign, Decrypt: k.Decrypt, Derive: k.Derive}
	}
	switch o.Kind {
	case cards.KindCertificate:
		j.Size = len(o.Cert)
		if c, err := x509.ParseCertificate(o.Cert); err == nil {
			j.Cert = &certJSON{Subject: c.Subject.String(), Issuer: c.Issuer.String(),
				NotAfter: c.NotAfter.UTC().Format("2006-01-02"), Key: pubKeyName(c.PublicKey)}
		}
	case cards.KindData:
		j.Size = len(o.Value)
	}
	return j
}

func pubKeyName(k any) string {
	switch k := k.(type) {
	case *rsa.PublicKey:
		return fmt.Sprintf("rsa %d", k.N.BitLen())
	case *ecdsa.PublicKey:
		return fmt.Sprintf("ec %s", k.Curve.Params().Name)
	case ed25519.PublicKey:
		return "ed25519"
	}
	return "other"
}

func printObjects(w io.Writer, rep objectsReport) {
	t := rep.Token
	fmt.Fprintf(w, "reader  %s\ntoken   %s (%s driver; %s %s", rep.Reader, t.Label, t.Driver, t.Manufacturer, t.Model)
	if t.Firmware != "" {
		fmt.Fprintf(w, ", firmware %s", t.Firmware)
	}
	if t.Serial != "" {
		fmt.Fprintf(w, ", serial %s", t.Serial)
	}
	fmt.Fprintf(w, ")\n\n")
	if len(rep.Objects) == 0 {
		fmt.Fprintln(w, "no objects")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "KIND\tID\tHANDLE\tLABEL\tKEY\tDETAILS")
	for _, o := range rep.Objects {
		key, details := "", ""
		switch {
		case o.Key != nil:
			key = o.Key.Alg
			if o.Key.Alg == "rsa" {
				key = fmt.Sprintf("rsa %d", o.Key.Bits)
			}
			var d []string
			if o.Key.PINPolicy != "" {
				d = append(d, "pin="+o.Key.PINPolicy)
			}
			if o.Key.TouchPolicy != "" {
				d = append(d, "touch="+o.Key.TouchPolicy)
			}
			if o.Key.Local {
				d = append(d, "generated on card")
			}
			if o.Private {
				d = append(d, "private")
			}
			details = strings.Join(d, " ")
		case o.Cert != nil:
			key = o.Cert.Key
			details = fmt.Sprintf("%s (until %s)", o.Cert.Subject, o.Cert.NotAfter)
		default:
			details = fmt.Sprintf("%d bytes", o.Size)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", o.Kind, o.ID, o.Handle, o.Label, key, details)
	}
	tw.Flush()
	fmt.Fprintln(w, "\nPKCS#11 URIs (RFC 7512) for pkcs11-tool, p11tool, OpenSSL, ssh:")
	for _, o := range rep.Objects {
		fmt.Fprintf(w, "  %-8s %s\n", o.Handle, o.URI)
	}
}

package main

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/p11-card/p11-card/cards/piv/pivtest"
	"github.com/p11-card/p11-card/cards/vcard"
)

// vcardConn serves a virtual card as the objects command's connection.
type vcardConn struct {
	mu   sync.Mutex
	card vcard.Card
}

func (c *vcardConn) ATR() []byte { return c.card.ATR() }
func (c *vcardConn) Transmit(ctx context.Context, cmd []byte) ([]byte, error) {
	return c.card.Transmit(ctx, cmd)
}
func (c *vcardConn) Lock(ctx context.Context) (func(), bool, error) {
	c.mu.Lock()
	return c.mu.Unlock, false, nil
}

var objectsMu sync.Mutex

// useObjectsCard makes `objects` see card in a reader called name.
func useObjectsCard(t *testing.T, name string, card vcard.Card) {
	objectsMu.Lock()
	old := objectsOpen
	objectsOpen = func(ctx context.Context, want string) (string, objConn, func(), error) {
		r, err := pickReader([]string{"Other Reader 00 00", name}, want, func(ns []string) ([]bool, error) {
			out := make([]bool, len(ns))
			for i, n := range ns {
				out[i] = n == name
			}
			return out, nil
		})
		if err != nil {
			return "", nil, nil, err
		}
		if r != name {
			return "", nil, nil, errors.New("no card in " + r)
		}
		return name, &vcardConn{card: card}, func() {}, nil
	}
	t.Cleanup(func() { objectsOpen = old; objectsMu.Unlock() })
}

func TestObjectsCommand(t *testing.T) {
	card := pivtest.MustNew(pivtest.Options{Serial: 7654321})
	if _, err := card.GenerateInSlot(0x9A, pivtest.AlgECCP256); err != nil {
		t.Fatal(err)
	}
	if _, err := card.Provision(0x9C, pivtest.KeySpec{Alg: pivtest.AlgRSA2048, TouchPolicy: pivtest.TouchPolicyCached}); err != nil {
		t.Fatal(err)
	}
	useObjectsCard(t, "Yubico YubiKey OTP+FIDO+CCID 00 00", card)

	out, errOut, code := runCLI(t, "objects")
	if code != 0 {
		t.Fatalf("objects: %d %s", code, errOut)
	}
	for _, want := range []string{"YubiKey PIV #7654321", "firmware 5.7.1", "private-key", "9a/priv", "p256", "pin=once",
		"9c/priv", "rsa 2048", "pin=always touch=cached", "9a/attest", "CN=pivtest 9A", "Discovery Object", "data/7e"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}

	out, errOut, code = runCLI(t, "objects", "--json", "--reader", "yubikey")
	if code != 0 {
		t.Fatalf("objects --json: %d %s", code, errOut)
	}
	var rep objectsReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if rep.Token.Serial != "7654321" || rep.Token.Driver != "piv" || !strings.HasPrefix(rep.Reader, "Yubico") {
		t.Errorf("report %+v", rep)
	}
	byHandle := map[string]objectJSON{}
	for _, o := range rep.Objects {
		byHandle[o.Handle] = o
	}
	if o := byHandle["9c/priv"]; o.ID != "02" || !o.Private || o.Key == nil || o.Key.Bits != 2048 || !o.Key.AlwaysAuth || o.Key.TouchPolicy != "cached" {
		t.Errorf("9c/priv %+v %+v", o, o.Key)
	}
	if o := byHandle["9a/attest"]; o.ID != "81" || o.Cert == nil || o.Cert.Key != "ec P-256" {
		t.Errorf("9a/attest %+v", o)
	}
	if o := byHandle["19/cert"]; o.Kind != "" {
		t.Errorf("unexpected handle %+v", o)
	}
	if o := byHandle["f9/cert"]; o.ID != "19" {
		t.Errorf("attestation key certificate %+v", o)
	}

	if _, errOut, code = runCLI(t, "objects", "--reader", "nothing-like-it"); code != 1 || !strings.Contains(errOut, "no reader matches") {
		t.Errorf("unknown reader: %d %s", code, errOut)
	}
	if _, errOut, code = runCLI(t, "objects", "--reader", "Other"); code != 1 || !strings.Contains(errOut, "no card") {
		t.Errorf("empty reader: %d %s", code, errOut)
	}
	if _, _, code = runCLI(t, "objects", "extra"); code != 2 {
		t.Errorf("extra argument: exit %d", code)
	}
}

func TestObjectsUnknownCard(t *testing.T) {
	useObjectsCard(t, "Virtual PCD 00 00", cliCard{[]byte{0x3B, 0x00}})
	_, errOut, code := runCLI(t, "objects")
	if code != 1 || !strings.Contains(errOut, "no p11-card driver supports this card") {
		t.Errorf("unknown card: %d %s", code, errOut)
	}
}

func TestPickReader(t *testing.T) {
	rs := []string{"Yubico YubiKey 00 00", "Virtual PCD 00 00", "Virtual PCD 00 01"}
	present := func(names []string) ([]bool, error) {
		out := make([]bool, len(names))
		for i, n := range names {
			out[i] = n == "Virtual PCD 00 01"
		}
		return out, nil
	}
	for _, tc := range []struct{ want, got, err string }{
		{"", "Virtual PCD 00 01", ""},
		{"Virtual PCD 00 00", "Virtual PCD 00 00", ""},
		{"yubikey", "Yubico YubiKey 00 00", ""},
		{"virtual", "Virtual PCD 00 01", ""},
		{"pcd 00", "Virtual PCD 00 01", ""},
		{"00 00", "", "matches 2 readers"},
		{"zzz", "", "no reader matches"},
	} {
		got, err := pickReader(rs, tc.want, present)
		if got != tc.got || (err == nil) != (tc.err == "") || err != nil && !strings.Contains(err.Error(), tc.err) {
			t.Errorf("pickReader(%q) = %q, %v", tc.want, got, err)
		}
	}
	if _, err := pickReader(nil, "", present); err == nil {
		t.Error("no readers accepted")
	}
	if _, err := pickReader(rs, "", func([]string) ([]bool, error) { return make([]bool, 3), nil }); err == nil {
		t.Error("no card accepted")
	}
}

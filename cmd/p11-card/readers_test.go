package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"

	"github.com/p11-card/p11-card/cards"
	"github.com/p11-card/p11-card/pcsc"
	"github.com/p11-card/p11-card/slotmgr"
	"github.com/p11-card/p11-card/slotmgr/slotmgrtest"
)

// cliTestATR is the ATR of the cards the test driver takes.
var cliTestATR = []byte{0x3B, 0x80, 0x80, 0x01, 0x01, 0xC1, 0x1E, 0x57}

// cliCard is a virtual card for the fake PC/SC service.
type cliCard struct{ atr []byte }

func (c cliCard) ATR() []byte { return c.atr }
func (c cliCard) Reset()      {}
func (c cliCard) Transmit(ctx context.Context, cmd []byte) ([]byte, error) {
	return []byte{0x6D, 0x00}, nil
}

// cliDriver takes only cards with cliTestATR, without an APDU.
type cliDriver struct{}

func (cliDriver) Name() string { return "clitest" }
func (cliDriver) MatchATR(atr []byte) cards.Match {
	if bytes.Equal(atr, cliTestATR) {
		return cards.MatchYes
	}
	return cards.MatchNo
}
func (cliDriver) Open(ctx context.Context, c cards.Conn, atr []byte) (cards.Token, error) {
	return cliToken{}, nil
}

type cliToken struct{ cards.Token }

func (cliToken) Info() cards.TokenInfo {
	return cards.TokenInfo{Driver: "clitest", Label: "Test Token #42", Manufacturer: "Example", Model: "Model T", Serial: "42", Firmware: cards.Version{Major: 1, Minor: 2, Patch: 3}}
}

func init() { cards.Register(cliDriver{}) }

var backendMu sync.Mutex

// useBackend points the commands at a fake PC/SC service for the test.
func useBackend(t *testing.T, b slotmgr.Backend) {
	backendMu.Lock()
	old := newBackend
	newBackend = func() slotmgr.Backend { return b }
	t.Cleanup(func() { newBackend = old; backendMu.Unlock() })
}

func runCLI(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var o, e bytes.Buffer
	code = run(context.Background(), &env{stdout: &o, stderr: &e}, args)
	return o.String(), e.String(), code
}

func fakeService(t *testing.T) *slotmgrtest.Backend {
	b := slotmgrtest.New()
	b.AddReader("Yubico YubiKey OTP+FIDO+CCID 00 00")
	b.AddReader("Virtual PCD 00 00")
	b.AddReader("Virtual PCD 00 01")
	if err := b.Insert("Yubico YubiKey OTP+FIDO+CCID 00 00", cliCard{cliTestATR}); err != nil {
		t.Fatal(err)
	}
	if err := b.Insert("Virtual PCD 00 00", cliCard{[]byte{0x3B, 0x00}}); err != nil {
		t.Fatal(err)
	}
	useBackend(t, usbBackend{b})
	return b
}

// usbBackend adds a USB lookup to the fake service: one YubiKey on bus 1.
type usbBackend struct{ *slotmgrtest.Backend }

func (usbBackend) USB(readers []string) []*pcsc.USBInfo {
	devs := []pcsc.USBInfo{{VID: 0x1050, PID: 0x0407, Manufacturer: "Yubico", Product: "YubiKey OTP+FIDO+CCID", CCID: true, Bus: 1, Address: 4}}
	out := make([]*pcsc.USBInfo, len(readers))
	for i, r := range readers {
		if d, ok := pcsc.MatchUSB(r, devs); ok {
			out[i] = &d
		}
	}
	return out
}

func TestReadersText(t *testing.T) {
	fakeService(t)
	out, errOut, code := runCLI(t, "readers")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	want := []string{
		"Slot 1  Yubico YubiKey OTP+FIDO+CCID 00 00\n  usb:       1050:0407 Yubico YubiKey OTP+FIDO+CCID bus 1 addr 4\n",
		"  card:      present, ATR 3B80800101C11E57\n",
		"  token:     Example Model T, driver clitest\n",
		"  firmware:  1.2.3\n",
		"  serial:    42\n",
		"  label:     Test Token #42\n",
		"Slot 2  Virtual PCD 00 00\n  card:      present, ATR 3B00\n  token:     none: not recognized: no p11-card driver supports this card\n",
		"Slot 3  Virtual PCD 00 01\n  card:      none\n",
	}
	for _, w := range want {
		if !strings.Contains(out, w) {
			t.Errorf("output lacks %q:\n%s", w, out)
		}
	}
}

func TestReadersJSON(t *testing.T) {
	fakeService(t)
	out, errOut, code := runCLI(t, "readers", "--json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var doc struct {
		Readers []map[string]any `json:"readers"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, out)
	}
	if len(doc.Readers) != 3 {
		t.Fatalf("%d readers, want 3", len(doc.Readers))
	}
	r0 := doc.Readers[0]
	if r0["slot"] != 1.0 || r0["name"] != "Yubico YubiKey OTP+FIDO+CCID 00 00" || r0["card_present"] != true || r0["atr"] != "3B80800101C11E57" {
		t.Errorf("reader 0: %v", r0)
	}
	tok, _ := r0["token"].(map[string]any)
	for k, v := range map[string]string{"driver": "clitest", "label": "Test Token #42", "manufacturer": "Example", "model": "Model T", "serial": "42", "firmware": "1.2.3"} {
		if tok[k] != v {
			t.Errorf("token.%s = %v, want %q", k, tok[k], v)
		}
	}
	usb, _ := r0["usb"].(map[string]any)
	if usb["vid"] != "1050" || usb["pid"] != "0407" || usb["product"] != "YubiKey OTP+FIDO+CCID" || usb["bus"] != 1.0 || usb["address"] != 4.0 {
		t.Errorf("usb: %v", r0["usb"])
	}
	if _, has := doc.Readers[1]["usb"]; has {
		t.Errorf("a virtual reader got USB details: %v", doc.Readers[1]["usb"])
	}
	if e, _ := doc.Readers[1]["error"].(string); !strings.Contains(e, "not recognized") {
		t.Errorf("reader 1 error %q", e)
	}
	if _, has := doc.Readers[2]["atr"]; has || doc.Readers[2]["card_present"] != false {
		t.Errorf("empty reader: %v", doc.Readers[2])
	}
}

func TestReadersNoReaders(t *testing.T) {
	useBackend(t, slotmgrtest.New())
	out, _, code := runCLI(t, "readers")
	if code != 0 || !strings.Contains(out, "No readers") {
		t.Errorf("exit %d, output %q", code, out)
	}
	out, _, code = runCLI(t, "readers", "--json")
	if code != 0 || strings.TrimSpace(out) != "{\n  \"readers\": []\n}" {
		t.Errorf("exit %d, JSON %q", code, out)
	}
}

func TestReadersNoPCSCD(t *testing.T) {
	b := slotmgrtest.New()
	b.Stop()
	useBackend(t, b)
	t.Setenv("PCSCLITE_CSOCK_NAME", "/nowhere/pcscd.comm")
	out, errOut, code := runCLI(t, "readers")
	if code != 1 || out != "" {
		t.Errorf("exit %d, stdout %q", code, out)
	}
	for _, w := range []string{"cannot reach the pcscd at PCSCLITE_CSOCK_NAME=/nowhere/pcscd.comm", "pcscd", "p11-card rig up"} {
		if !strings.Contains(errOut, w) {
			t.Errorf("error lacks %q: %s", w, errOut)
		}
	}
}

func TestReadersUsage(t *testing.T) {
	for _, args := range [][]string{{"readers", "--bogus"}, {"readers", "extra"}, {"watch", "--bogus"}, {"watch", "x"}} {
		_, errOut, code := runCLI(t, args...)
		if code != 2 || !strings.Contains(errOut, "usage: p11-card "+args[0]) {
			t.Errorf("%q: exit %d, %q", args, code, errOut)
		}
	}
	for _, name := range []string{"readers", "watch", "rig"} {
		out, _, code := runCLI(t, name, "--help")
		if code != 0 || !strings.HasPrefix(out, "usage: p11-card "+name) || len(out) < 300 {
			t.Errorf("%s --help: exit %d, %q", name, code, out)
		}
	}
}

package pivtest

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"testing"

	"github.com/p11-card/p11-card/apdu"
	"github.com/p11-card/p11-card/cards/vcard"
)

func TestATR(t *testing.T) {
	c := newCard(t, Options{})
	want, _ := hex.DecodeString("3BFD1300008131FE158073C021C057597562694B657940")
	if !bytes.Equal(c.ATR(), want) {
		t.Fatalf("ATR %X", c.ATR())
	}
	var _ vcard.Card = c
	yk4, _ := hex.DecodeString("3BF81300008131FE15597562696B657934D4")
	if got := newCard(t, Options{Firmware: [3]byte{4, 3, 7}}).ATR(); !bytes.Equal(got, yk4) {
		t.Fatalf("YubiKey 4 ATR %X", got)
	}
	if got := newCard(t, Options{ATR: []byte{0x3B, 0x00}}).ATR(); !bytes.Equal(got, []byte{0x3B, 0x00}) {
		t.Fatalf("ATR option ignored: %X", got)
	}
}

func TestSelect(t *testing.T) {
	const answer = "6111 4F06000010000100 7907 4F05A000000308"
	want, _ := hex.DecodeString(answer[0:4] + answer[5:21] + answer[22:26] + answer[27:])
	for _, tc := range []struct {
		name, cmd string
		sw        apdu.SW
	}{
		{"rid", "00A4040005A000000308", 0x9000},
		{"rid+le", "00A4040005A00000030800", 0x9000},
		{"pix4", "00A4040009A00000030800001000", 0x9000},
		{"full", "00A404000BA000000308000010000100", 0x9000},
		{"openpgp", "00A4040006D27600012401", 0x6A82},
		{"short", "00A4040004A0000003", 0x6A82},
		{"wrong", "00A4040005A000000309", 0x6A82},
		{"toolong", "00A404000CA00000030800001000010000", 0x6A82},
		{"p1", "00A4000005A000000308", 0x6D00},
		{"mf", "00A4000C023F00", 0x6D00},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newCard(t, Options{})
			data, sw := raw(t, c, tc.cmd)
			wantSW(t, sw, tc.sw)
			if sw == 0x9000 && !bytes.Equal(data, want) {
				t.Fatalf("select answer %X, want %X", data, want)
			}
		})
	}
}

func TestNotSelected(t *testing.T) {
	c := newCard(t, Options{})
	_, sw := raw(t, c, "00FD000000")
	wantSW(t, sw, 0x6D00)
	_, sw = raw(t, c, "00A4040006D27600012401")
	wantSW(t, sw, 0x6A82)
	_, sw = raw(t, c, "00FD000000")
	wantSW(t, sw, 0x6D00)
}

func TestManagementApplication(t *testing.T) {
	c := selected(t, Options{Serial: 0x00BC614E})
	wantSW(t, verifyPIN(t, c, "123456"), 0x9000)
	data, sw := raw(t, c, "00A4040008A000000527471117")
	wantSW(t, sw, 0x9000)
	if string(data) != "5.7.1" {
		t.Fatalf("management select %q", data)
	}
	data, sw = raw(t, c, "001D000000")
	wantSW(t, sw, 0x9000)
	if len(data) == 0 || int(data[0]) != len(data)-1 {
		t.Fatalf("config %X", data)
	}
	tl, ok := parseTLVMap(data[1:])
	if !ok || !bytes.Equal(tl[0x02], []byte{0x00, 0xBC, 0x61, 0x4E}) || !bytes.Equal(tl[0x05], []byte{5, 7, 1}) || !bytes.Equal(tl[0x04], []byte{1}) {
		t.Fatalf("config %X", data)
	}
	// PIV commands go nowhere while the management application is selected.
	_, sw = raw(t, c, "00FD000000")
	wantSW(t, sw, 0x6D00)
	_, sw = raw(t, c, "001D010000")
	wantSW(t, sw, 0x6A86)
	// Back in PIV, the PIN must be given again.
	_, sw = raw(t, c, "00A4040005A000000308")
	wantSW(t, sw, 0x9000)
	_, sw = raw(t, c, "0020008000")
	wantSW(t, sw, 0x63C3)
}

func TestVersionSerial(t *testing.T) {
	c := selected(t, Options{Serial: 0x01020304})
	data, sw := raw(t, c, "00FD000000")
	wantSW(t, sw, 0x9000)
	if !bytes.Equal(data, []byte{5, 7, 1}) {
		t.Fatalf("version %X", data)
	}
	data, sw = raw(t, c, "00F8000000")
	wantSW(t, sw, 0x9000)
	if !bytes.Equal(data, []byte{1, 2, 3, 4}) {
		t.Fatalf("serial %X", data)
	}
	old := selected(t, Options{Firmware: [3]byte{4, 3, 7}})
	_, sw = raw(t, old, "00F8000000")
	wantSW(t, sw, 0x6D00)
	_, sw = raw(t, old, "00F7008000")
	wantSW(t, sw, 0x6D00)
}

func TestBadCommands(t *testing.T) {
	c := selected(t, Options{})
	for _, tc := range []struct {
		name, cmd string
		sw        apdu.SW
	}{
		{"unknown ins", "0050000000", 0x6D00},
		{"cla", "80FD000000", 0x6E00},
		{"malformed", "00CB3FFF05AABB", 0x6700},
		{"too short", "00CB", 0x6700},
		{"get response nothing", "00C0000000", 0x6985},
		{"get data p1p2", "00CB3F0005 5C035FC105", 0x6A86},
		{"get data no 5C", "00CB3FFF05 5D035FC105", 0x6A80},
		{"get data bad tlv", "00CB3FFF03 5C055F", 0x6A80},
		{"get data odd tag", "00CB3FFF05 5C03123456", 0x6A80},
		{"verify p2", "0020008108 3132333435363738", 0x6A88},
		{"verify p1", "0020018008 3132333435363738", 0x6A86},
		{"auth bad template", "00871109 02 8200", 0x6A80},
		{"auth bad slot", "0087110104 7C028200", 0x6A86},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, sw := raw(t, c, tc.cmd)
			wantSW(t, sw, tc.sw)
		})
	}
}

func TestDiscoveryAndObjects(t *testing.T) {
	c := selected(t, Options{})
	data, sw := raw(t, c, "00CB3FFF03 5C017E 00")
	wantSW(t, sw, 0x9000)
	want, _ := hex.DecodeString("7E124F0BA0000003080000100001005F2F024000")
	if !bytes.Equal(data, want) {
		t.Fatalf("discovery %X", data)
	}
	_, sw = raw(t, c, "00CB3FFF05 5C035FC102 00")
	wantSW(t, sw, 0x6A82) // no CHUID out of the box
	_, sw = raw(t, c, "00CB3FFF04 5C027F61 00")
	wantSW(t, sw, 0x6A82)

	// The attestation certificate is readable without anything.
	data, sw = do(t, c, insGetData, 0x3F, 0xFF, []byte{0x5C, 3, 0x5F, 0xFF, 0x01})
	wantSW(t, sw, 0x9000)
	if _, ok, _ := apdu.FindPath(data, 0x53, 0x70); !ok {
		t.Fatalf("attestation object %X", data)
	}

	put := func(tag []byte, v []byte) apdu.SW {
		body := append(apdu.TLVBytes(0x5C, tag), apdu.TLVBytes(0x53, v)...)
		_, sw := do(t, c, insPutData, 0x3F, 0xFF, body)
		return sw
	}
	printed := []byte{0x5F, 0xC1, 0x09}
	wantSW(t, put(printed, []byte{0x88, 0x00}), 0x6982) // needs the management key
	wantSW(t, mgmtAuthenticate(t, c, AlgAES192, DefaultMgmtKey), 0x9000)
	wantSW(t, put(printed, []byte{0x88, 0x00}), 0x9000)
	_, sw = do(t, c, insGetData, 0x3F, 0xFF, apdu.TLVBytes(0x5C, printed))
	wantSW(t, sw, 0x6982) // PIN protected
	wantSW(t, verifyPIN(t, c, "123456"), 0x9000)
	data, sw = do(t, c, insGetData, 0x3F, 0xFF, apdu.TLVBytes(0x5C, printed))
	wantSW(t, sw, 0x9000)
	if !bytes.Equal(data, []byte{0x53, 0x02, 0x88, 0x00}) {
		t.Fatalf("printed %X", data)
	}

	// A big object travels with command chaining and comes back with 61xx.
	big := bytes.Repeat([]byte{0xAB}, 2000)
	wantSW(t, put([]byte{0x5F, 0xC1, 0x05}, big), 0x9000)
	data, sw = do(t, c, insGetData, 0x3F, 0xFF, []byte{0x5C, 3, 0x5F, 0xC1, 0x05})
	wantSW(t, sw, 0x9000)
	if v, ok, _ := apdu.Find(data, 0x53); !ok || !bytes.Equal(v, big) {
		t.Fatalf("big object lost")
	}
	// Delete, too big, not writable.
	wantSW(t, put([]byte{0x5F, 0xC1, 0x05}, nil), 0x9000)
	_, sw = do(t, c, insGetData, 0x3F, 0xFF, []byte{0x5C, 3, 0x5F, 0xC1, 0x05})
	wantSW(t, sw, 0x6A82)
	wantSW(t, put([]byte{0x5F, 0xC1, 0x05}, make([]byte, maxObjectSize+1)), 0x6A84)
	wantSW(t, put([]byte{0x7E}, []byte{1}), 0x6A80)
	wantSW(t, put([]byte{0x5F, 0xC0, 0x05}, []byte{1}), 0x6A80)
	_, sw = do(t, c, insPutData, 0x3F, 0xFF, []byte{0x5C, 3, 0x5F, 0xC1, 0x05, 0x53, 0x01})
	wantSW(t, sw, 0x6A80)
}

func TestRawResponseChaining(t *testing.T) {
	c := adminCard(t, Options{})
	if err := c.PutObject(0x5FC105, bytes.Repeat([]byte{1}, 600)); err != nil {
		t.Fatal(err)
	}
	// 53 82 0258 + 600 = 604 bytes: 256 + 256 + 92.
	data, sw := raw(t, c, "00CB3FFF05 5C035FC105 00")
	wantSW(t, sw, 0x6100)
	if len(data) != 256 {
		t.Fatalf("first block %d bytes", len(data))
	}
	data, sw = raw(t, c, "00C0000000")
	wantSW(t, sw, 0x615C)
	if len(data) != 256 {
		t.Fatalf("second block %d bytes", len(data))
	}
	data, sw = raw(t, c, "00C000005C")
	wantSW(t, sw, 0x9000)
	if len(data) != 92 {
		t.Fatalf("last block %d bytes", len(data))
	}
	// Another command drops what was left.
	_, sw = raw(t, c, "00CB3FFF05 5C035FC105 00")
	wantSW(t, sw, 0x6100)
	_, sw = raw(t, c, "00FD000000")
	wantSW(t, sw, 0x9000)
	_, sw = raw(t, c, "00C0000000")
	wantSW(t, sw, 0x6985)
	// Extended Le takes it all at once.
	data, sw = raw(t, c, "00CB3FFF000005 5C035FC105 0000")
	wantSW(t, sw, 0x9000)
	if len(data) != 604 {
		t.Fatalf("extended answer %d bytes", len(data))
	}
	// Extended APDUs through Exchange.
	data, sw = doOpt(t, c, apdu.Options{Extended: true}, insGetData, 0x3F, 0xFF, []byte{0x5C, 3, 0x5F, 0xC1, 0x05})
	wantSW(t, sw, 0x9000)
	if len(data) != 604 {
		t.Fatalf("extended exchange %d bytes", len(data))
	}
}

func TestCommandChainingRaw(t *testing.T) {
	c := adminCard(t, Options{})
	// PUT DATA of 5C035FC102 53 03 010203 split in two blocks.
	_, sw := raw(t, c, "10DB3FFF05 5C035FC102")
	wantSW(t, sw, 0x9000)
	_, sw = raw(t, c, "00DB3FFF05 5303010203")
	wantSW(t, sw, 0x9000)
	data, sw := raw(t, c, "00CB3FFF05 5C035FC102 00")
	wantSW(t, sw, 0x9000)
	if !bytes.Equal(data, []byte{0x53, 3, 1, 2, 3}) {
		t.Fatalf("chained object %X", data)
	}
	// A different command drops a half-done chain.
	_, sw = raw(t, c, "10DB3FFF05 5C035FC102")
	wantSW(t, sw, 0x9000)
	_, sw = raw(t, c, "00FD000000")
	wantSW(t, sw, 0x9000)
	_, sw = raw(t, c, "00DB3FFF05 5303010203")
	wantSW(t, sw, 0x6A80)
	// A chain longer than the buffer fails.
	block := "10DB3FFFFF" + hex.EncodeToString(make([]byte, 255))
	for i := 0; i < maxChain/255; i++ {
		_, sw = raw(t, c, block)
	}
	_, sw = raw(t, c, block)
	wantSW(t, sw, 0x6700)
}

func TestReset(t *testing.T) {
	c := adminCard(t, Options{})
	wantSW(t, verifyPIN(t, c, "123456"), 0x9000)
	c.Reset()
	_, sw := raw(t, c, "00FD000000")
	wantSW(t, sw, 0x6D00)
	_, sw = raw(t, c, "00A4040005A000000308")
	wantSW(t, sw, 0x9000)
	_, sw = raw(t, c, "0020008000")
	wantSW(t, sw, 0x63C3)
	body := append(apdu.TLVBytes(0x5C, []byte{0x5F, 0xC1, 0x02}), apdu.TLVBytes(0x53, []byte{1})...)
	_, sw = do(t, c, insPutData, 0x3F, 0xFF, body)
	wantSW(t, sw, 0x6982)
}

func TestBadOptions(t *testing.T) {
	for name, opt := range map[string]Options{
		"short PIN":    {PIN: []byte("12345")},
		"long PUK":     {PUK: []byte("123456789")},
		"FF in PIN":    {PIN: []byte("1234\xff6")},
		"mgmt key":     {MgmtKey: make([]byte, 16)},
		"mgmt alg":     {MgmtAlg: 0x07},
		"AES-128 size": {MgmtAlg: AlgAES128},
		"retries":      {PINRetries: 256},
	} {
		if _, err := New(opt); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	c := selected(t, Options{PIN: []byte("87654321"), PUK: []byte("abcdefgh"), MgmtAlg: AlgAES128, MgmtKey: make([]byte, 16), PINRetries: 5})
	wantSW(t, verifyPIN(t, c, "123456"), 0x63C4)
	wantSW(t, verifyPIN(t, c, "87654321"), 0x9000)
	wantSW(t, mgmtAuthenticate(t, c, AlgAES128, make([]byte, 16)), 0x9000)
	data, _ := raw(t, c, "00F7008000")
	if v, _, _ := apdu.Find(data, 0x05); !bytes.Equal(v, []byte{0}) {
		t.Fatalf("a configured PIN is not the factory default: %X", data)
	}
	data, _ = raw(t, c, "00F7009B00")
	if v, _, _ := apdu.Find(data, 0x05); !bytes.Equal(v, []byte{0}) {
		t.Fatalf("a configured management key is not the factory default: %X", data)
	}
}

func TestContextCancelled(t *testing.T) {
	c := selected(t, Options{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := c.Transmit(ctx, []byte{0, 0xFD, 0, 0, 0}); !errors.Is(err, context.Canceled) {
		t.Fatalf("err %v", err)
	}
}

func TestSecurityAndTriesHelpers(t *testing.T) {
	c := adminCard(t, Options{})
	wantSW(t, verifyPIN(t, c, "123456"), 0x9000)
	if s := c.Security(); !s.Selected || !s.PINVerified || !s.MgmtAuthenticated {
		t.Fatalf("security %+v", s)
	}
	if err := c.SetTries(0, 2); err != nil {
		t.Fatal(err)
	}
	_, sw := raw(t, c, "0020008000")
	wantSW(t, sw, 0x6983)
	if s := c.Security(); s.PINVerified {
		t.Fatal("blocked PIN still verified")
	}
	if err := c.SetTries(4, 0); err == nil {
		t.Fatal("tries above the limit accepted")
	}
	c.Reset()
	if s := c.Security(); s != (Security{}) {
		t.Fatalf("after reset %+v", s)
	}
}

func TestSetCHUID(t *testing.T) {
	c := selected(t, Options{})
	if err := c.SetCHUID(); err != nil {
		t.Fatal(err)
	}
	data, sw := do(t, c, insGetData, 0x3F, 0xFF, []byte{0x5C, 3, 0x5F, 0xC1, 0x02})
	wantSW(t, sw, 0x9000)
	if guid, ok, _ := apdu.FindPath(data, 0x53, 0x34); !ok || len(guid) != 16 {
		t.Fatalf("CHUID %X", data)
	}
	data, sw = do(t, c, insGetData, 0x3F, 0xFF, []byte{0x5C, 3, 0x5F, 0xC1, 0x07})
	wantSW(t, sw, 0x9000)
	if id, ok, _ := apdu.FindPath(data, 0x53, 0xF0); !ok || len(id) != 21 {
		t.Fatalf("CCC %X", data)
	}
	if err := c.PutObject(0x7E, []byte{1}); err == nil {
		t.Fatal("discovery object stored")
	}
	if err := c.PutCertificate(0x9B, []byte{1}); err == nil {
		t.Fatal("certificate for 9B stored")
	}
}

func TestOTPApplicationSerial(t *testing.T) {
	c := selected(t, Options{Firmware: [3]byte{4, 3, 7}, Serial: 4242})
	for _, sel := range []string{"00A4040008A00000052720010100", "00A4040007A000000527200100"} {
		data, sw := raw(t, c, sel)
		wantSW(t, sw, 0x9000)
		if !bytes.HasPrefix(data, []byte{4, 3, 7}) {
			t.Fatalf("OTP status %X", data)
		}
		data, sw = raw(t, c, "0001100000")
		wantSW(t, sw, 0x9000)
		if !bytes.Equal(data, []byte{0, 0, 0x10, 0x92}) {
			t.Fatalf("serial %X", data)
		}
		_, sw = raw(t, c, "0003000000")
		wantSW(t, sw, 0x9000)
		_, sw = raw(t, c, "0001010000")
		wantSW(t, sw, 0x6D00)
	}
}

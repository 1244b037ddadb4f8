package pgptest

import (
	"bytes"
	"context"
	"encoding/hex"
	"strings"
	"testing"

	"github.com/p11-card/p11-card/apdu"
)

func tx(t *testing.T, c *Card, h string) apdu.Response {
	t.Helper()
	raw, err := hex.DecodeString(strings.ReplaceAll(h, " ", ""))
	if err != nil {
		t.Fatal(err)
	}
	b, err := c.Transmit(context.Background(), raw)
	if err != nil {
		t.Fatal(err)
	}
	r, err := apdu.ParseResponse(b)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func want(t *testing.T, r apdu.Response, sw apdu.SW) {
	t.Helper()
	if r.SW != sw {
		t.Fatalf("SW %04X, want %04X", uint16(r.SW), uint16(sw))
	}
}

const (
	selectAID = "00A4040006D27600012401"
	verify81  = "0020008106313233343536"
	verify83  = "002000830831323334353637 38"
)

func TestEmptyVerify(t *testing.T) {
	yk := MustNew(Options{Mode: ModeYubiKey})
	want(t, tx(t, yk, selectAID), apdu.SWOK)
	want(t, tx(t, yk, "00200081"), apdu.SWWrongData) // the YubiKey quirk
	st := MustNew(Options{Mode: ModeStrict})
	want(t, tx(t, st, selectAID), apdu.SWOK)
	want(t, tx(t, st, "00200081"), 0x63C3)
	want(t, tx(t, st, verify81), apdu.SWOK)
	want(t, tx(t, st, "00200081"), apdu.SWOK)
	want(t, tx(t, st, "0020FF81"), apdu.SWOK)
	want(t, tx(t, st, "00200081"), 0x63C3)
	for i := 2; i >= 0; i-- {
		want(t, tx(t, st, "0020008106303030303030"), apdu.SW(0x63C0|i))
	}
	want(t, tx(t, st, "00200081"), apdu.SWAuthBlocked)
	want(t, tx(t, st, verify81), apdu.SWAuthBlocked)
}

func TestNotSelected(t *testing.T) {
	c := MustNew(Options{})
	want(t, tx(t, c, "00CA006E00"), apdu.SWInsNotSupported)
	want(t, tx(t, c, "00A4040007A0000003080000"), apdu.SWFileNotFound)
}

func TestTransport(t *testing.T) {
	st := MustNew(Options{Mode: ModeStrict})
	want(t, tx(t, st, selectAID), apdu.SWOK)
	// Strict mode: extended APDUs refused, long answers over GET RESPONSE.
	want(t, tx(t, st, "0084000000 0100"), apdu.SWWrongLength)
	r := tx(t, st, "0084000000") // GET CHALLENGE 256
	want(t, r, apdu.SWOK)
	if len(r.Data) != 256 {
		t.Fatalf("challenge %d", len(r.Data))
	}
	want(t, tx(t, st, verify83), apdu.SWOK)
	// Chained PUT DATA of a 300-byte URL.
	url := bytes.Repeat([]byte{'u'}, 255)
	part1 := append([]byte{0x10, 0xDA, 0x5F, 0x50, 0xFF}, url...)
	b, _ := st.Transmit(context.Background(), part1)
	if !bytes.Equal(b, []byte{0x90, 0x00}) {
		t.Fatalf("chain part: %X", b)
	}
	// A different command in the middle of a chain is refused.
	want(t, tx(t, st, "00CA5F5000"), apdu.SWLastCmdChainExpect)
	// 255 bytes is the card's limit for the URL: a chained 256 gives 6700.
	st.Transmit(context.Background(), part1)
	want(t, tx(t, st, "00DA5F500175"), apdu.SWWrongLength)
	yk := MustNew(Options{Mode: ModeYubiKey})
	want(t, tx(t, yk, selectAID), apdu.SWOK)
	r = tx(t, yk, "00CA006E000000") // extended Le: the whole 6E at once
	want(t, r, apdu.SWOK)
	if len(r.Data) < 256 {
		t.Fatalf("6E of %d bytes", len(r.Data))
	}
	r = tx(t, yk, "00CA006E00") // short: 256 bytes and 61xx
	if r.SW.SW1() != 0x61 || len(r.Data) != 256 {
		t.Fatalf("short read: %04X %d", uint16(r.SW), len(r.Data))
	}
	r2 := tx(t, yk, "00C0000000")
	want(t, r2, apdu.SWOK)
	want(t, tx(t, yk, "00C0000000"), apdu.SWConditions)
	if r := tx(t, yk, "00F1000000"); !bytes.Equal(r.Data, []byte{5, 4, 3}) {
		t.Fatalf("version %X", r.Data)
	}
}

func TestAccessAndTerminate(t *testing.T) {
	for _, m := range []Mode{ModeYubiKey, ModeStrict} {
		c := MustNew(Options{Mode: m})
		want(t, tx(t, c, selectAID), apdu.SWOK)
		want(t, tx(t, c, "00DA005B03616263"), apdu.SWSecurityStatus)
		want(t, tx(t, c, "00E60000"), apdu.SWSecurityStatus)
		want(t, tx(t, c, "0047800002B600"), apdu.SWSecurityStatus)
		want(t, tx(t, c, "0047810002B600"), apdu.SWRefDataNotFound)
		want(t, tx(t, c, verify83), apdu.SWOK)
		want(t, tx(t, c, "00DA005B03616263"), apdu.SWOK)
		if r := tx(t, c, "00CA006500"); !bytes.Contains(r.Data, []byte("abc")) {
			t.Fatalf("65: %X", r.Data)
		}
		// Brainpool is not offered.
		want(t, tx(t, c, "00DA00C10A132B2403030208010107"), apdu.SWWrongData)
		// SELECT DATA: occurrences 0..2 only.
		want(t, tx(t, c, "00A5030406 60045C027F21"), apdu.SWRefDataNotFound)
		want(t, tx(t, c, "00A5020406 60045C027F21"), apdu.SWOK)
		want(t, tx(t, c, "00E60000"), apdu.SWOK)
		want(t, tx(t, c, "00CA006E00"), 0x6285)
		want(t, tx(t, c, selectAID), 0x6285)
		want(t, tx(t, c, "00440000"), apdu.SWOK)
		want(t, tx(t, c, "00CA005B00"), apdu.SWOK)
		if r := tx(t, c, "00CA005B00"); len(r.Data) != 0 {
			t.Fatalf("name survived the reset: %q", r.Data)
		}
		want(t, tx(t, c, verify83), apdu.SWOK)
		c.Reset()
		want(t, tx(t, c, "00CA006E00"), apdu.SWInsNotSupported)
	}
}

func TestConnLock(t *testing.T) {
	c := NewConn(MustNew(Options{}))
	unlock, reset, err := c.Lock(context.Background())
	if err != nil || reset || !c.Locked() {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, _, err := c.Lock(ctx); err == nil {
		t.Fatal("second Lock did not wait")
	}
	unlock()
	unlock() // twice is harmless
	c.ResetCard()
	unlock, reset, err = c.Lock(context.Background())
	if err != nil || !reset {
		t.Fatalf("reset not reported: %v", err)
	}
	unlock()
}

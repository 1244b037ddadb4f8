package apdu

import (
	"bytes"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
)

func hx(s string) []byte {
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		panic(err)
	}
	return b
}

func TestCommandBytes(t *testing.T) {
	data255 := bytes.Repeat([]byte{0xAB}, 255)
	data256 := bytes.Repeat([]byte{0xAB}, 256)
	tests := []struct {
		name string
		cmd  Command
		ext  bool
		want []byte
	}{
		{"case 1", Command{CLA: 0x80, INS: 0x01, P1: 2, P2: 3}, false, hx("80010203")},
		{"case 1 extended asked", Command{INS: 0x01}, true, hx("00010000")},
		{"case 2S", Command{INS: 0xCA, Ne: 5}, false, hx("00CA000005")},
		{"case 2S Ne 256", Command{INS: 0xCA, Ne: 256}, false, hx("00CA000000")},
		{"case 2E", Command{INS: 0xCA, Ne: 5}, true, hx("00CA0000000005")},
		{"case 2E Ne 257 forces extended", Command{INS: 0xCA, Ne: 257}, false, hx("00CA0000000101")},
		{"case 2E Ne 65536", Command{INS: 0xCA, Ne: 65536}, true, hx("00CA0000000000")},
		{"case 3S", Command{INS: 0x20, P2: 0x80, Data: hx("3132")}, false, hx("002000800231 32")},
		{"case 3S 255", Command{INS: 0xDB, Data: data255}, false, append(hx("00DB0000FF"), data255...)},
		{"case 3E 256 forces extended", Command{INS: 0xDB, Data: data256}, false, append(hx("00DB0000000100"), data256...)},
		{"case 3E", Command{INS: 0x20, Data: hx("31")}, true, hx("00200000 000001 31")},
		{"case 4S", Command{INS: 0xA4, P1: 4, Data: hx("A0"), Ne: 256}, false, hx("00A40400 01 A0 00")},
		{"case 4E", Command{INS: 0xA4, P1: 4, Data: hx("A0"), Ne: 256}, true, hx("00A40400 000001 A0 0100")},
		{"case 4E Ne 65536", Command{INS: 0x87, Data: hx("A0"), Ne: 65536}, true, hx("00870000 000001 A0 0000")},
		{"case 4E long data short Ne", Command{INS: 0x87, Data: data256, Ne: 2}, false, append(append(hx("00870000000100"), data256...), 0, 2)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.cmd.Bytes(tt.ext)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, tt.want) {
				t.Fatalf("Bytes(%v) = % X, want % X", tt.ext, got, tt.want)
			}
			back, err := ParseCommand(got)
			if err != nil {
				t.Fatalf("ParseCommand(% X): %v", got, err)
			}
			if back.CLA != tt.cmd.CLA || back.INS != tt.cmd.INS || back.P1 != tt.cmd.P1 || back.P2 != tt.cmd.P2 ||
				!bytes.Equal(back.Data, tt.cmd.Data) || back.Ne != tt.cmd.Ne {
				t.Fatalf("round trip: got %v, want %v", back, tt.cmd)
			}
		})
	}
}

func TestCommandBytesRange(t *testing.T) {
	for _, c := range []Command{
		{Ne: -1},
		{Ne: MaxExtendedNe + 1},
		{Data: make([]byte, MaxExtendedNc+1)},
	} {
		if b, err := c.Bytes(true); err == nil {
			t.Errorf("%v: Bytes = % X, want error", c, b)
		}
	}
}

func TestParseCommandMalformed(t *testing.T) {
	for _, s := range []string{
		"", "00", "00A404",
		"00A40400 05 A0",              // Lc larger than the body
		"00A40400 02 A0 00 00 00",     // two bytes too many
		"00A40400 00 01",              // extended length field cut
		"00A40400 00 0000 A0",         // extended Lc of zero with data
		"00A40400 00 0002 A0",         // extended Lc larger than the body
		"00A40400 00 0001 A0 01",      // extended Le of one byte
		"00A40400 00 0001 A0 0100 00", // extra byte
	} {
		if c, err := ParseCommand(hx(s)); !errors.Is(err, ErrMalformed) {
			t.Errorf("ParseCommand(%s) = %v, %v; want ErrMalformed", s, c, err)
		}
	}
}

func TestCommandStringHidesData(t *testing.T) {
	c := Command{INS: 0x20, P2: 0x80, Data: []byte("123456")}
	if s := c.String(); strings.Contains(s, "31") || strings.Contains(s, "123456") {
		t.Fatalf("String() = %q shows the data", s)
	}
}

func TestParseResponse(t *testing.T) {
	r, err := ParseResponse(hx("0102 9000"))
	if err != nil || !bytes.Equal(r.Data, hx("0102")) || r.SW != SWOK {
		t.Fatalf("ParseResponse = %v, %v", r, err)
	}
	if r.Err() != nil {
		t.Fatalf("Err() = %v", r.Err())
	}
	if !bytes.Equal(r.Bytes(), hx("01029000")) {
		t.Fatalf("Bytes() = % X", r.Bytes())
	}
	// Appending to Data must not overwrite the status word in the input.
	in := hx("01 6A82")
	r, _ = ParseResponse(in)
	_ = append(r.Data, 0xEE)
	if in[1] != 0x6A {
		t.Fatal("Data aliases the status word")
	}
	for _, s := range []string{"", "90"} {
		if _, err := ParseResponse(hx(s)); !errors.Is(err, ErrMalformed) {
			t.Errorf("ParseResponse(%q) = %v, want ErrMalformed", s, err)
		}
	}
}

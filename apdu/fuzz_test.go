package apdu

import (
	"bytes"
	"context"
	"errors"
	"testing"
)

// Seeds live in testdata/fuzz/<FuzzName>/ and run on every go test.

func FuzzTLV(f *testing.F) {
	f.Add(hx("6E 0A 4F 01 A0 73 05 C0 01 01 C1 00"))
	f.Fuzz(func(t *testing.T, b []byte) {
		all, err := ParseAll(b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			return
		}
		// Re-encoding (shortest lengths, no padding) parses back to the same objects.
		var enc []byte
		for _, o := range all {
			if len(o.Value) > len(b) {
				t.Fatal("value longer than input")
			}
			enc = append(enc, o.Bytes()...)
		}
		again, err := ParseAll(enc)
		if err != nil {
			t.Fatalf("re-encoded objects do not parse: %v", err)
		}
		if len(again) != len(all) {
			t.Fatalf("%d objects became %d", len(all), len(again))
		}
		for i := range all {
			if again[i].Tag != all[i].Tag || !bytes.Equal(again[i].Value, all[i].Value) {
				t.Fatalf("object %d: %v differs after round trip", i, all[i].Tag)
			}
		}
		// Walking never fails where ParseAll succeeded at the top, except on bad children.
		_ = Walk(b, func(int, TLV) bool { return true })
		if len(b) > 0 {
			_, _, _, _ = ParseSimpleTLV(b)
		}
	})
}

func FuzzResponse(f *testing.F) {
	f.Add(hx("9000"))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := ParseResponse(b)
		if err != nil {
			if len(b) >= 2 {
				t.Fatalf("ParseResponse(% X): %v", b, err)
			}
			return
		}
		if !bytes.Equal(r.Bytes(), b) {
			t.Fatalf("round trip % X → % X", b, r.Bytes())
		}
		err = r.Err()
		if (err == nil) != (r.SW == SWOK) {
			t.Fatalf("SW %v gave %v", r.SW, err)
		}
		if err != nil && err.Error() == "" {
			t.Fatal("empty message")
		}
	})
}

func FuzzCommand(f *testing.F) {
	f.Add(hx("00A40400 05 A000000308 00"))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := ParseCommand(b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			return
		}
		// The encoding used is extended exactly when the body starts with 00 and is longer
		// than one byte; re-encoding that way gives the input back.
		ext := len(b) > 5 && b[4] == 0
		enc, err := c.Bytes(ext)
		if err != nil {
			t.Fatalf("Bytes(%v) of parsed %v: %v", ext, c, err)
		}
		if !bytes.Equal(enc, b) {
			t.Fatalf("round trip % X → %v → % X", b, c, enc)
		}
		red := Redact(b)
		if len(red) != len(b) || !bytes.Equal(red[:4], b[:4]) {
			t.Fatalf("Redact changed length or header: % X → % X", b, red)
		}
		if start, n := dataField(b); start < 0 || n != len(c.Data) {
			t.Fatalf("dataField = %d,%d for Nc %d", start, n, len(c.Data))
		}
	})
}

// fuzzCard answers with length-prefixed responses taken from the fuzz input.
type fuzzCard struct {
	t    *testing.T
	in   []byte
	sent int
}

func (c *fuzzCard) Transmit(_ context.Context, cmd []byte) ([]byte, error) {
	c.sent++
	if _, err := ParseCommand(cmd); err != nil {
		c.t.Fatalf("Exchange sent a malformed command % X: %v", cmd, err)
	}
	if len(c.in) == 0 {
		return nil, errors.New("card exhausted")
	}
	n := int(c.in[0])
	c.in = c.in[1:]
	if n > len(c.in) {
		n = len(c.in)
	}
	r := c.in[:n]
	c.in = c.in[n:]
	return r, nil
}

func FuzzExchange(f *testing.F) {
	f.Add(byte(0), uint16(10), hx("03 AA 6101 03 BB 9000"))
	f.Fuzz(func(t *testing.T, flags byte, nc uint16, script []byte) {
		const maxRounds, maxResp = 32, 2048
		cmd := Command{INS: 0xCB, P1: 0x3F, P2: 0xFF, Data: make([]byte, int(nc)%1200), Ne: int(flags&0x7F) * 8}
		opt := Options{Extended: flags&0x80 != 0, MaxRounds: maxRounds, MaxResponse: maxResp}
		card := &fuzzCard{t: t, in: script}
		r, err := Exchange(context.Background(), card, cmd, opt)
		parts := 1
		if !opt.Extended {
			parts = (len(cmd.Data) + MaxShortNc - 1) / MaxShortNc
		}
		if limit := parts + maxRounds + 1; card.sent > limit {
			t.Fatalf("%d commands sent, bound %d", card.sent, limit)
		}
		if err == nil && len(r.Data) > maxResp {
			t.Fatalf("%d bytes collected, bound %d", len(r.Data), maxResp)
		}
		if err == nil && (r.SW.SW1() == 0x61 || r.SW.SW1() == 0x6C) && !(parts > 1 && card.sent < parts) {
			t.Fatalf("Exchange returned transport status %v", r.SW)
		}
	})
}

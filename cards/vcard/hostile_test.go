package vcard

import (
	"bytes"
	"context"
	"math/rand/v2"
	"testing"

	"github.com/p11-card/p11-card/apdu"
)

// tlvCard answers every command with a small BER-TLV object and 9000.
type tlvCard struct{ echoCard }

func (c *tlvCard) Transmit(ctx context.Context, cmd []byte) ([]byte, error) {
	return []byte{0x53, 0x04, 0x01, 0x02, 0x03, 0x04, 0x90, 0x00}, nil
}

func TestHostileRateZeroPassesEverything(t *testing.T) {
	h := &Hostile{Seed: 1}
	c := WithHostile(&tlvCard{}, h)
	for i := 0; i < 100; i++ {
		got, err := c.Transmit(context.Background(), cmd(0xCB))
		if err != nil || !bytes.Equal(got, []byte{0x53, 0x04, 0x01, 0x02, 0x03, 0x04, 0x90, 0x00}) {
			t.Fatalf("response %d: %X, %v", i, got, err)
		}
	}
	if h.Mangled() != 0 || h.Responses() != 100 {
		t.Errorf("mangled %d of %d", h.Mangled(), h.Responses())
	}
}

// At rate 1 every response lies, never with nothing, every way shows up, and a seed
// repeats its run.
func TestHostileManglesEveryWayAndRepeats(t *testing.T) {
	run := func(seed uint64) ([][]byte, *Hostile) {
		h := &Hostile{Seed: seed, Rate: 1}
		c := WithHostile(&tlvCard{}, h)
		var out [][]byte
		for i := 0; i < 2000; i++ {
			ins := byte(0xCB)
			if i%3 == 2 {
				ins = 0xC0 // a GET RESPONSE now and then, for the endless 61xx
			}
			got, err := c.Transmit(context.Background(), cmd(ins))
			if err != nil {
				t.Fatal(err)
			}
			if len(got) == 0 {
				t.Fatalf("response %d is empty", i)
			}
			out = append(out, got)
		}
		return out, h
	}
	a, h := run(7)
	b, _ := run(7)
	for i := range a {
		if !bytes.Equal(a[i], b[i]) {
			t.Fatalf("response %d differs between two runs with one seed: %X, %X", i, a[i], b[i])
		}
	}
	counts := h.Counts()
	for _, m := range mangles {
		if counts[m] == 0 {
			t.Errorf("%q never happened in 2000 responses: %v", m, counts)
		}
	}
	if h.Mangled() != 2000 {
		t.Errorf("mangled %d of 2000 at rate 1", h.Mangled())
	}
	c, _ := run(8)
	same := 0
	for i := range a {
		if bytes.Equal(a[i], c[i]) {
			same++
		}
	}
	if same == len(a) {
		t.Error("two seeds gave the same run")
	}
}

func TestHostileEndlessMoreData(t *testing.T) {
	h := &Hostile{Seed: 3}
	c := WithHostile(&tlvCard{}, h)
	h.Set(func(h *Hostile) { h.sticky = MangleMoreData })
	more := 0
	for i := 0; i < 100; i++ {
		got, _ := c.Transmit(context.Background(), cmd(0xC0))
		if len(got) >= 2 && got[len(got)-2] == 0x61 {
			more++
		} else {
			break
		}
	}
	if more < 10 {
		t.Errorf("GET RESPONSE answered 61xx %d times in a row, want an endless run", more)
	}
}

// A huge length is what a decoder sees: more declared than the response holds, or a form
// it must refuse.
func TestHostileHugeLength(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 200; i++ {
		data := []byte{0x53, 0x82, 0x00, 0x02, 0xAA, 0xBB}
		if i%2 == 1 {
			data = []byte{0x5F, 0xC1, 0x05, 0x01, 0x02, 0x03, 0x04, 0x05}
		}
		out := hugeLength(r, data, []byte{0x90, 0x00})
		if !bytes.Equal(out[len(out)-2:], []byte{0x90, 0x00}) {
			t.Fatalf("%X: status word lost", out)
		}
		if _, _, err := apdu.ParseTLV(out[:len(out)-2]); err == nil {
			t.Errorf("%X parses as a TLV, want an error (from %X)", out, data)
		}
	}
}

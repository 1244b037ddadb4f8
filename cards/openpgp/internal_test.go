package openpgp

import (
	"bytes"
	"encoding/asn1"
	"errors"
	"math/big"
	"testing"

	"github.com/p11-card/p11-card/cards"
)

func TestATRHistorical(t *testing.T) {
	yk := []byte{0x3B, 0xFD, 0x13, 0x00, 0x00, 0x81, 0x31, 0xFE, 0x15, 0x80, 0x73, 0xC0, 0x21,
		0xC0, 0x57, 0x59, 0x75, 0x62, 0x69, 0x4B, 0x65, 0x79, 0x40}
	h := atrHistorical(yk)
	if !bytes.Equal(h, yk[9:22]) {
		t.Fatalf("historical % X", h)
	}
	if c, e := histCaps(h); !c || !e {
		t.Fatalf("YubiKey capabilities %v %v", c, e)
	}
	if c, e := histCaps([]byte{0x00, 0x31, 0xC5, 0x73, 0xC0, 0x01, 0x80, 0x05, 0x90, 0x00}); !c || e {
		t.Fatalf("chaining-only card %v %v", c, e)
	}
	for _, bad := range [][]byte{nil, {0x3B}, {0x3B, 0x8F}, {0x3B, 0xF5, 0x00}} {
		if h := atrHistorical(bad); h != nil {
			t.Errorf("% X: % X", bad, h)
		}
	}
}

func TestECDSARaw(t *testing.T) {
	raw := bytes.Repeat([]byte{7}, 64)
	if got, err := ecdsaRaw(raw, 32); err != nil || !bytes.Equal(got, raw) {
		t.Fatal("raw form")
	}
	der, _ := asn1.Marshal(struct{ R, S *big.Int }{big.NewInt(5), big.NewInt(6)})
	got, err := ecdsaRaw(der, 32)
	if err != nil || got[31] != 5 || got[63] != 6 {
		t.Fatalf("DER form: %x %v", got, err)
	}
	if _, err := ecdsaRaw([]byte{1, 2, 3}, 32); !errors.Is(err, cards.ErrBadCard) {
		t.Fatal(err)
	}
}

func TestAppendMPI(t *testing.T) {
	if got := appendMPI(nil, []byte{0, 0, 1, 0xFF}); !bytes.Equal(got, []byte{0, 9, 1, 0xFF}) {
		t.Fatalf("% X", got)
	}
	if got := appendMPI(nil, nil); !bytes.Equal(got, []byte{0, 0}) {
		t.Fatalf("% X", got)
	}
}

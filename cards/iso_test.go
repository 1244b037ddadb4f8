package cards

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/p11-card/p11-card/apdu"
)

// swCard answers every command with a fixed response and records the commands.
type swCard struct {
	resp []byte
	cmds [][]byte
}

func (c *swCard) Transmit(ctx context.Context, cmd []byte) ([]byte, error) {
	c.cmds = append(c.cmds, bytes.Clone(cmd))
	return c.resp, nil
}

func TestAuthErrorMapping(t *testing.T) {
	tests := []struct {
		sw       uint16
		blocked  bool
		login    bool
		retries  int // -1: no VerifyError
		notFound bool
	}{
		{0x63C2, false, false, 2, false},
		{0x63C0, true, false, 0, false},
		{0x6983, true, false, -1, false},
		{0x6982, false, true, -1, false},
		{0x6A88, false, false, -1, true},
	}
	for _, tc := range tests {
		c := &swCard{resp: []byte{byte(tc.sw >> 8), byte(tc.sw)}}
		err := Verify(context.Background(), c, 0x80, []byte("123456\xff\xff"), apdu.Options{})
		if errors.Is(err, ErrPINBlocked) != tc.blocked || errors.Is(err, ErrLoginRequired) != tc.login || errors.Is(err, apdu.ErrNotFound) != tc.notFound {
			t.Errorf("%04X: %v", tc.sw, err)
		}
		var ve *apdu.VerifyError
		if got := errors.As(err, &ve); got != (tc.retries >= 0) || got && ve.Retries != tc.retries {
			t.Errorf("%04X: VerifyError %v", tc.sw, err)
		}
		if !bytes.Equal(c.cmds[0][:5], []byte{0x00, 0x20, 0x00, 0x80, 0x08}) {
			t.Errorf("VERIFY encoded % X", c.cmds[0])
		}
	}
	if AuthError(nil) != nil || StatusError(nil) != nil {
		t.Error("nil not kept")
	}
}

func TestVerifyStatus(t *testing.T) {
	for _, tc := range []struct {
		sw       uint16
		retries  int
		verified bool
		err      bool
	}{{0x9000, -1, true, false}, {0x63C3, 3, false, false}, {0x6983, 0, false, false}, {0x6A88, -1, false, true}} {
		c := &swCard{resp: []byte{byte(tc.sw >> 8), byte(tc.sw)}}
		r, v, err := VerifyStatus(context.Background(), c, 0x80, apdu.Options{})
		if r != tc.retries || v != tc.verified || (err != nil) != tc.err {
			t.Errorf("%04X: %d %v %v", tc.sw, r, v, err)
		}
		if !bytes.Equal(c.cmds[0], []byte{0x00, 0x20, 0x00, 0x80}) {
			t.Errorf("empty VERIFY encoded % X", c.cmds[0])
		}
	}
}

func TestSelectAID(t *testing.T) {
	aid := []byte{0xA0, 0x00, 0x00, 0x03, 0x08}
	c := &swCard{resp: []byte{0x61, 0x00, 0x90, 0x00}}
	fci, err := SelectAID(context.Background(), c, aid, apdu.Options{})
	if err != nil || !bytes.Equal(fci, []byte{0x61, 0x00}) {
		t.Fatalf("select: % X %v", fci, err)
	}
	if !bytes.Equal(c.cmds[0], []byte{0x00, 0xA4, 0x04, 0x00, 0x05, 0xA0, 0x00, 0x00, 0x03, 0x08, 0x00}) {
		t.Errorf("SELECT encoded % X", c.cmds[0])
	}
	for _, sw := range []byte{0x82, 0x81} {
		c = &swCard{resp: []byte{0x6A, sw}}
		if _, err := SelectAID(context.Background(), c, aid, apdu.Options{}); !errors.Is(err, ErrNotRecognized) {
			t.Errorf("6A%02X: %v", sw, err)
		}
	}
	c = &swCard{resp: []byte{0x69, 0x85}}
	if _, err := SelectAID(context.Background(), c, aid, apdu.Options{}); err == nil || errors.Is(err, ErrNotRecognized) {
		t.Errorf("6985: %v", err)
	}
}

func TestGetChallenge(t *testing.T) {
	c := &swCard{resp: []byte{1, 2, 3, 4, 0x90, 0x00}}
	b, err := GetChallenge(context.Background(), c, 4, apdu.Options{})
	if err != nil || len(b) != 4 || !bytes.Equal(c.cmds[0], []byte{0x00, 0x84, 0x00, 0x00, 0x04}) {
		t.Errorf("% X %v % X", b, err, c.cmds[0])
	}
	if _, err := GetChallenge(context.Background(), c, 8, apdu.Options{}); !errors.Is(err, ErrBadCard) {
		t.Errorf("short answer: %v", err)
	}
}

func TestATRCaps(t *testing.T) {
	yubi := []byte{0x3B, 0xFD, 0x13, 0x00, 0x00, 0x81, 0x31, 0xFE, 0x15, 0x80, 0x73, 0xC0, 0x21, 0xC0, 0x57, 0x59, 0x75, 0x62, 0x69, 0x4B, 0x65, 0x79, 0x40}
	c := ParseATRCaps(yubi)
	if !c.Known || !c.Extended || !c.Chaining || !bytes.HasSuffix(c.Historical, []byte("YubiKey")) {
		t.Errorf("YubiKey ATR: %+v", c)
	}
	// An OpenPGP card: status indicator form (category 00) with capabilities 73 00 00 E0? no
	// extended bit; then a short ATR without historical bytes and garbage.
	for _, atr := range [][]byte{nil, {0x3B}, {0x3B, 0x02}, {0x3B, 0xF5}, {0x3B, 0x00}} {
		if got := ParseATRCaps(atr); got.Known || got.Extended {
			t.Errorf("ATR % X: %+v", atr, got)
		}
	}
	noExt := []byte{0x3B, 0x88, 0x80, 0x01, 0x00, 0x73, 0x00, 0x00, 0x80, 0x00, 0x00, 0x00, 0x00}
	if got := ParseATRCaps(noExt); !got.Known || got.Extended || !got.Chaining {
		t.Errorf("chaining-only ATR: %+v", got)
	}
}

func FuzzATRCaps(f *testing.F) {
	f.Add([]byte{0x3B, 0xFD, 0x13, 0x00, 0x00, 0x81, 0x31, 0xFE, 0x15, 0x80, 0x73, 0xC0, 0x21, 0xC0, 0x57, 0x59, 0x75, 0x62, 0x69, 0x4B, 0x65, 0x79, 0x40})
	f.Add([]byte{0x3B, 0xFF, 0xFF, 0xFF, 0xFF})
	f.Fuzz(func(t *testing.T, atr []byte) {
		c := ParseATRCaps(atr)
		if len(c.Historical) > len(atr) {
			t.Fatal("historical bytes longer than the ATR")
		}
	})
}

package piv

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/p11-card/p11-card/apdu"
	"github.com/p11-card/p11-card/cards"
	"github.com/p11-card/p11-card/cards/piv/pivtest"
)

// TestFuzzSeeds, with -update, writes fuzz seeds taken from the virtual card's real answers
// to testdata/fuzz/<target>/ (where `go test` runs them as regression inputs). Without
// -update it checks that every fuzz target has seeds.
func TestFuzzSeeds(t *testing.T) {
	targets := []string{"FuzzCertContainer", "FuzzMetadata", "FuzzPublicKey", "FuzzGenerated", "FuzzCHUID",
		"FuzzDiscovery", "FuzzKeyHistory", "FuzzAdminData", "FuzzProtectedMgmtKey", "FuzzECDSASignature", "FuzzDriver"}
	if !*update {
		for _, tg := range targets {
			files, _ := filepath.Glob(filepath.Join("testdata", "fuzz", tg, "*"))
			if len(files) == 0 {
				t.Errorf("no seeds for %s in testdata/fuzz (run with -update)", tg)
			}
		}
		return
	}
	card := pivtest.MustNew(pivtest.Options{})
	for _, k := range []struct{ slot, alg byte }{{0x9A, pivtest.AlgRSA2048}, {0x9C, pivtest.AlgECCP256}, {0x9D, pivtest.AlgECCP384}, {0x9E, pivtest.AlgEd25519}, {0x82, pivtest.AlgX25519}} {
		provision(t, card, k.slot, k.alg)
	}
	if err := card.SetCHUID(); err != nil {
		t.Fatal(err)
	}
	_ = card.PutObject(pivtest.ObjectKeyHistory, []byte{0xC1, 0x01, 0x01, 0xC2, 0x01, 0x00, 0xFE, 0x00})
	_ = card.PutObject(pivtest.ObjectAdmin, apdu.TLVBytes(0x80, apdu.TLVBytes(0x81, []byte{0x02})))
	_ = card.PutObject(pivtest.ObjectPrinted, apdu.TLVBytes(0x88, apdu.TLVBytes(0x89, pivtest.DefaultMgmtKey)))
	conn := &testConn{card: card}
	raw := func(cmd apdu.Command) []byte {
		conn.locked = true
		defer func() { conn.locked = false }()
		r, err := apdu.Exchange(ctxb, conn, cmd, apdu.Options{Extended: true})
		if err != nil || r.SW != apdu.SWOK {
			t.Fatalf("%v: %v %v", cmd, r.SW, err)
		}
		return r.Data
	}
	getData := func(tag uint32) []byte {
		return raw(apdu.Command{INS: insGetData, P1: 0x3F, P2: 0xFF, Data: apdu.TLVBytes(0x5C, apdu.AppendTag(nil, apdu.Tag(tag))), Ne: 65536})
	}
	in53 := func(b []byte) []byte {
		v, err := unwrapObject(b, 0x53)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	raw(apdu.Command{INS: 0xA4, P1: 4, Data: aidPIV, Ne: 256})
	write := func(target string, args ...any) {
		var b strings.Builder
		b.WriteString("go test fuzz v1\n")
		for _, a := range args {
			switch v := a.(type) {
			case []byte:
				fmt.Fprintf(&b, "[]byte(%s)\n", strconv.Quote(string(v)))
			case byte:
				fmt.Fprintf(&b, "byte(%s)\n", strconv.QuoteRune(rune(v)))
			case int:
				fmt.Fprintf(&b, "int(%d)\n", v)
			}
		}
		sum := sha256.Sum256([]byte(b.String()))
		dir := filepath.Join("testdata", "fuzz", target)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("%x", sum[:8])), []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, s := range []byte{0x9A, 0x9C, 0x9D, 0x9E, 0x82} {
		si := &slots[0]
		for i := range slots {
			if byte(slots[i].slot) == s {
				si = &slots[i]
			}
		}
		write("FuzzCertContainer", in53(getData(si.certTag)))
		m := raw(apdu.Command{INS: insGetMetadata, P2: s, Ne: 65536})
		write("FuzzMetadata", m)
		md, err := parseMetadata(m)
		if err != nil {
			t.Fatal(err)
		}
		write("FuzzPublicKey", md.Alg, md.Public)
		write("FuzzGenerated", md.Alg, apdu.TLVBytes(0x7F49, md.Public))
	}
	for _, ref := range []byte{0x80, 0x81, 0x9B} {
		write("FuzzMetadata", raw(apdu.Command{INS: insGetMetadata, P2: ref, Ne: 65536}))
	}
	write("FuzzCHUID", in53(getData(tagCHUID)))
	write("FuzzDiscovery", getData(tagDiscovery))
	write("FuzzKeyHistory", in53(getData(tagKeyHistory)))
	write("FuzzAdminData", in53(getData(tagAdminData)))
	raw(apdu.Command{INS: 0x20, P2: 0x80, Data: []byte("123456\xff\xff")})
	write("FuzzProtectedMgmtKey", in53(getData(tagPrinted)))
	sig := raw(apdu.Command{INS: insGeneralAuth, P1: algP256, P2: 0x9C, Data: apdu.TLVBytes(0x7C, apdu.TLVBytes(0x82), apdu.TLVBytes(0x81, make([]byte, 32))), Ne: 256})
	raw(apdu.Command{INS: 0x20, P2: 0x80, Data: []byte("123456\xff\xff")})
	der, err := parseDynAuth(sig, tagResponse)
	if err != nil {
		t.Fatal(err)
	}
	write("FuzzECDSASignature", der, 32)
	// Driver seeds: the card's answers to Open and a signing run, in scriptConn's format.
	for _, tc := range []struct {
		run func(tok cards.Token)
	}{
		{func(tok cards.Token) {}},
		{func(tok cards.Token) {
			_, _ = tok.Objects(ctxb, cards.Filter{ID: []byte{1}})
			_, _ = tok.Sign(ctxb, []byte{1}, cards.SignECDSA, make([]byte, 32), nil)
		}},
	} {
		rc := &recordingConn{testConn: &testConn{card: card}}
		tok, err := Driver{}.Open(ctxb, rc, card.ATR())
		if err != nil {
			t.Fatal(err)
		}
		tc.run(tok)
		write("FuzzDriver", rc.script.Bytes())
	}
}

// recordingConn keeps the responses in scriptConn's format (length byte, bytes).
type recordingConn struct {
	*testConn
	script bytes.Buffer
}

func (c *recordingConn) Transmit(ctx context.Context, cmd []byte) ([]byte, error) {
	r, err := c.testConn.Transmit(ctx, cmd)
	if err != nil {
		return nil, err
	}
	n := min(len(r), 255)
	c.script.WriteByte(byte(n))
	c.script.Write(r[len(r)-n:])
	return r, nil
}

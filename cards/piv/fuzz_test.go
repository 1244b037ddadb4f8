package piv

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"testing"

	"github.com/p11-card/p11-card/apdu"
	"github.com/p11-card/p11-card/cards"
)

// Fuzz targets for every parser of card data; seeds live in testdata/fuzz/<target>/ and
// run on every `go test`.

func FuzzCertContainer(f *testing.F) {
	c, _ := encodeCertContainer([]byte{0x30, 0x03, 0x02, 0x01, 0x01}, false)
	f.Add(c)
	c, _ = encodeCertContainer([]byte{0x30, 0x03, 0x02, 0x01, 0x01}, true)
	f.Add(c)
	f.Add([]byte{0x70, 0x00, 0x71, 0x01, 0x01, 0xFE, 0x00})
	f.Fuzz(func(t *testing.T, b []byte) {
		cc, err := parseCertContainer(b)
		if err != nil || cc.DER == nil {
			return
		}
		if len(cc.DER) > maxCertSize {
			t.Fatalf("certificate of %d bytes", len(cc.DER))
		}
		for _, compress := range []bool{false, true} {
			enc, err := encodeCertContainer(cc.DER, compress)
			if err != nil {
				t.Fatal(err)
			}
			back, err := parseCertContainer(enc)
			if err != nil || !bytes.Equal(back.DER, cc.DER) || back.Compressed != compress {
				t.Fatalf("round trip (compress %v): %v", compress, err)
			}
		}
	})
}

func FuzzMetadata(f *testing.F) {
	f.Add([]byte{0x01, 0x01, 0x11, 0x02, 0x02, 0x02, 0x01, 0x03, 0x01, 0x01, 0x04, 0x03, 0x86, 0x01, 0x04})
	f.Add([]byte{0x01, 0x01, 0xFF, 0x05, 0x01, 0x01, 0x06, 0x02, 0x03, 0x03})
	f.Add([]byte{0x01, 0x01, 0x0A, 0x02, 0x02, 0x00, 0x01, 0x05, 0x01, 0x01})
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := parseMetadata(b)
		if err != nil {
			return
		}
		if m.HasPolicy {
			_ = pinPolicies[m.PINPolicy]
		}
		if len(m.Public) > 0 {
			_, _ = parsePublicKey(m.Alg, m.Public)
		}
	})
}

func FuzzPublicKey(f *testing.F) {
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	pt, _ := k.PublicKey.Bytes()
	f.Add(byte(algP256), apdu.TLVBytes(0x86, pt))
	f.Add(byte(algRSA1024), append(apdu.TLVBytes(0x81, append([]byte{0x80}, make([]byte, 127)...)), apdu.TLVBytes(0x82, []byte{1, 0, 1})...))
	f.Add(byte(algEd25519), apdu.TLVBytes(0x86, make([]byte, 32)))
	f.Add(byte(algX25519), apdu.TLVBytes(0x86, bytes.Repeat([]byte{9}, 32)))
	f.Fuzz(func(t *testing.T, alg byte, b []byte) {
		pk, err := parsePublicKey(alg, b)
		if err != nil {
			return
		}
		if pk.Key == nil {
			t.Fatal("no key and no error")
		}
		ks := &keyState{alg: alg, pub: pk}
		tok := &Token{}
		ki := tok.keyInfo(&slots[0], ks)
		if ki.Public == nil {
			t.Fatal("key info without the public key")
		}
		// The generation answer carries the same objects in 7F49.
		if _, err := parseGenerated(alg, apdu.TLVBytes(0x7F49, b)); err != nil {
			t.Fatalf("7F49 wrapping fails: %v", err)
		}
	})
}

func FuzzGenerated(f *testing.F) {
	f.Add(byte(algP384), apdu.TLVBytes(0x7F49, apdu.TLVBytes(0x86, append([]byte{4}, make([]byte, 96)...))))
	f.Add(byte(algRSA2048), apdu.TLVBytes(0x7F49, apdu.TLVBytes(0x81, make([]byte, 256))))
	f.Fuzz(func(t *testing.T, alg byte, b []byte) { _, _ = parseGenerated(alg, b) })
}

func FuzzCHUID(f *testing.F) {
	chuid := apdu.TLVBytes(0x30, make([]byte, 25))
	chuid = apdu.AppendTLV(chuid, 0x34, bytes.Repeat([]byte{0xAB}, 16))
	chuid = apdu.AppendTLV(chuid, 0x35, []byte("20301231"))
	chuid = apdu.AppendTLV(chuid, 0x3E)
	chuid = apdu.AppendTLV(chuid, 0xFE)
	f.Add(chuid)
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := parseCHUID(b)
		if err != nil {
			return
		}
		if s := chuidSerial(c); len(s) > 16 {
			t.Fatalf("serial %q longer than 16", s)
		}
	})
}

func FuzzDiscovery(f *testing.F) {
	inner := apdu.TLVBytes(0x4F, aidPIV)
	inner = apdu.AppendTLV(inner, 0x5F2F, []byte{0x40, 0x00})
	f.Add(apdu.TLVBytes(0x7E, inner))
	f.Add(apdu.TLVBytes(0x7E, apdu.TLVBytes(0x5F2F, []byte{0x60, 0x20})))
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := parseDiscovery(b)
		if err == nil && d.GlobalPrimary && !d.GlobalPIN {
			t.Fatal("global PIN primary without a global PIN")
		}
	})
}

func FuzzKeyHistory(f *testing.F) {
	f.Add([]byte{0xC1, 0x01, 0x02, 0xC2, 0x01, 0x00, 0xF3, 0x00, 0xFE, 0x00})
	f.Fuzz(func(t *testing.T, b []byte) {
		k, err := parseKeyHistory(b)
		if err == nil && (k.OnCard > 20 || k.OffCard > 20) {
			t.Fatalf("counts %d %d", k.OnCard, k.OffCard)
		}
	})
}

func FuzzAdminData(f *testing.F) {
	f.Add(apdu.TLVBytes(0x80, apdu.TLVBytes(0x81, []byte{0x02})))
	f.Add(apdu.TLVBytes(0x80, append(apdu.TLVBytes(0x81, []byte{0x01}), apdu.TLVBytes(0x82, make([]byte, 16))...)))
	f.Fuzz(func(t *testing.T, b []byte) { _, _ = parseAdminData(b) })
}

func FuzzProtectedMgmtKey(f *testing.F) {
	f.Add(apdu.TLVBytes(0x88, apdu.TLVBytes(0x89, make([]byte, 24))))
	f.Fuzz(func(t *testing.T, b []byte) {
		k, err := parseProtectedMgmtKey(b)
		if err == nil && len(k) != 16 && len(k) != 24 && len(k) != 32 {
			t.Fatalf("key of %d bytes", len(k))
		}
	})
}

func FuzzECDSASignature(f *testing.F) {
	f.Add([]byte{0x30, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01, 0x02}, 32)
	f.Add([]byte{0x30, 0x08, 0x02, 0x02, 0x00, 0x80, 0x02, 0x02, 0x00, 0xFF}, 48)
	f.Fuzz(func(t *testing.T, der []byte, size int) {
		if size <= 0 || size > 66 {
			return
		}
		out, err := ecdsaRaw(der, size)
		if err == nil && len(out) != 2*size {
			t.Fatalf("r‖s of %d bytes for size %d", len(out), size)
		}
	})
}

// scriptConn answers each command with the next response cut from a fuzz input: a length
// byte, then that many bytes (the status word included); when the input runs out, 6A82.
type scriptConn struct{ in []byte }

func (c *scriptConn) Transmit(ctx context.Context, cmd []byte) ([]byte, error) {
	if len(c.in) == 0 {
		return []byte{0x6A, 0x82}, nil
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

func (c *scriptConn) Lock(ctx context.Context) (func(), bool, error) {
	reset := len(c.in) > 0 && c.in[0] == 0xEE
	return func() {}, reset, nil
}

// FuzzDriver runs the driver's operations over a card answering from the fuzz input:
// whatever the card says, no panic.
func FuzzDriver(f *testing.F) {
	resp := func(b ...byte) []byte { return append([]byte{byte(len(b))}, b...) }
	var seed []byte
	seed = append(seed, resp(0x61, 0x00, 0x90, 0x00)...)
	seed = append(seed, resp(0x05, 0x07, 0x01, 0x90, 0x00)...)
	seed = append(seed, resp(0x00, 0xBC, 0x61, 0x4E, 0x90, 0x00)...)
	seed = append(seed, resp(0x01, 0x01, 0x11, 0x02, 0x02, 0x02, 0x01, 0x03, 0x01, 0x01, 0x90, 0x00)...)
	seed = append(seed, resp(0x53, 0x04, 0x70, 0x00, 0x71, 0x01, 0x90, 0x00)...)
	f.Add(seed)
	f.Add([]byte{2, 0x90, 0x00, 2, 0x6D, 0x00, 4, 0x53, 0x02, 0x34, 0x00, 0x90})
	f.Fuzz(func(t *testing.T, in []byte) {
		ctx := context.Background()
		c := &scriptConn{in: in}
		tok, err := Driver{}.Open(ctx, c, []byte{0x3B, 0x00})
		if err != nil {
			return
		}
		_, _ = tok.Objects(ctx, cards.Filter{ID: []byte{1}})
		_, _ = tok.Sign(ctx, []byte{1}, cards.SignECDSA, make([]byte, 32), nil)
		_, _ = tok.Sign(ctx, []byte{1}, cards.SignRSAPKCS1, make([]byte, 32), nil)
		_, _ = tok.Derive(ctx, []byte{1}, make([]byte, 65), nil)
		_, _ = tok.PINStatus(ctx, cards.RoleUser)
		_ = tok.Login(ctx, cards.RoleSO, []byte(defaultMgmtHex))
		_, _ = tok.GenerateKey(ctx, cards.KeyGenSpec{ID: []byte{2}, Alg: cards.AlgECP256})
		_, _ = tok.Objects(ctx, cards.Filter{})
	})
}

package pivtest

import (
	"bytes"
	"crypto"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/asn1"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"testing"

	"github.com/p11-card/p11-card/apdu"
)

func TestMgmtAuth(t *testing.T) {
	t.Run("5.7 default AES-192", func(t *testing.T) {
		c := selected(t, Options{})
		wantSW(t, mgmtAuthenticate(t, c, AlgTDES, DefaultMgmtKey), 0x6A86)
		wantSW(t, mgmtAuthenticate(t, c, AlgAES192, DefaultMgmtKey), 0x9000)
		data, sw := do(t, c, insGetMetadata, 0, 0x9B, nil)
		wantSW(t, sw, 0x9000)
		if want := []byte{0x01, 0x01, 0x0A, 0x02, 0x02, 0x00, 0x01, 0x05, 0x01, 0x01}; !bytes.Equal(data, want) {
			t.Fatalf("9B metadata %X, want %X", data, want)
		}
	})
	t.Run("5.4 default 3DES", func(t *testing.T) {
		c := selected(t, Options{Firmware: [3]byte{5, 4, 3}})
		wantSW(t, mgmtAuthenticate(t, c, AlgTDES, DefaultMgmtKey), 0x9000)
		// P1 00 is 3DES too (SP 800-78-4 table 6-2), as Yubico's own examples send it.
		data, sw := raw(t, c, "0087009B04 7C028100")
		wantSW(t, sw, 0x9000)
		if len(data) != 12 || data[0] != 0x7C || data[2] != 0x81 || data[3] != 8 {
			t.Fatalf("challenge %X", data)
		}
		aes := selected(t, Options{})
		_, sw = raw(t, aes, "0087009B04 7C028100")
		wantSW(t, sw, 0x6A86)
	})
	t.Run("wrong key", func(t *testing.T) {
		c := selected(t, Options{})
		wantSW(t, mgmtAuthenticate(t, c, AlgAES192, bytes.Repeat([]byte{9}, 24)), 0x6982)
		_, sw := do(t, c, insPutData, 0x3F, 0xFF, []byte{0x5C, 3, 0x5F, 0xC1, 0x02, 0x53, 1, 1})
		wantSW(t, sw, 0x6982)
	})
	t.Run("step 2 without step 1", func(t *testing.T) {
		c := selected(t, Options{})
		body := append(apdu.TLVBytes(0x80, make([]byte, 16)), apdu.TLVBytes(0x81, make([]byte, 16))...)
		_, sw := do(t, c, insGeneralAuth, AlgAES192, 0x9B, apdu.TLVBytes(0x7C, body))
		wantSW(t, sw, 0x6982)
	})
	t.Run("challenge-response", func(t *testing.T) {
		c := selected(t, Options{})
		data, sw := raw(t, c, "0087 0A9B 04 7C028100 00")
		wantSW(t, sw, 0x9000)
		ch, ok, _ := apdu.FindPath(data, 0x7C, 0x81)
		if !ok || len(ch) != 16 {
			t.Fatalf("challenge %X", data)
		}
		blk, _ := mgmtCipher(AlgAES192, DefaultMgmtKey)
		resp := make([]byte, 16)
		blk.Encrypt(resp, ch)
		_, sw = do(t, c, insGeneralAuth, AlgAES192, 0x9B, apdu.TLVBytes(0x7C, apdu.TLVBytes(0x82, resp)))
		wantSW(t, sw, 0x9000)
		_, sw = do(t, c, insPutData, 0x3F, 0xFF, []byte{0x5C, 3, 0x5F, 0xC1, 0x02, 0x53, 1, 1})
		wantSW(t, sw, 0x9000)
		// Replaying the response fails: the challenge is gone.
		_, sw = do(t, c, insGeneralAuth, AlgAES192, 0x9B, apdu.TLVBytes(0x7C, apdu.TLVBytes(0x82, resp)))
		wantSW(t, sw, 0x6982)
	})
}

func TestSetMgmtKey(t *testing.T) {
	c := selected(t, Options{})
	newKey := bytes.Repeat([]byte{0x42}, 32)
	set := func(p2, alg byte, key []byte) apdu.SW {
		_, sw := do(t, c, insSetMgmtKey, 0xFF, p2, append([]byte{alg}, apdu.TLVBytes(0x9B, key)...))
		return sw
	}
	wantSW(t, set(0xFF, AlgAES256, newKey), 0x6982)
	wantSW(t, mgmtAuthenticate(t, c, AlgAES192, DefaultMgmtKey), 0x9000)
	wantSW(t, set(0xFF, AlgAES256, newKey[:24]), 0x6A80)
	wantSW(t, set(0xFF, 0x07, newKey), 0x6A80)
	wantSW(t, set(0xFC, AlgAES256, newKey), 0x6A86)
	wantSW(t, set(0xFD, AlgAES256, newKey), 0x9000)
	if data, _ := raw(t, c, "00F7009B00"); !bytes.Contains(data, []byte{0x02, 0x02, 0x00, 0x03}) {
		t.Fatalf("cached touch policy not in metadata: %X", data)
	}
	wantSW(t, set(0xFE, AlgAES256, newKey), 0x9000)
	data, _ := do(t, c, insGetMetadata, 0, 0x9B, nil)
	if want := []byte{0x01, 0x01, 0x0C, 0x02, 0x02, 0x00, 0x02, 0x05, 0x01, 0x00}; !bytes.Equal(data, want) {
		t.Fatalf("9B metadata %X, want %X", data, want)
	}
	wantSW(t, mgmtAuthenticate(t, c, AlgAES256, newKey), 0x9000)
	tdes := []byte("0123456789abcdefghijklmn")
	wantSW(t, set(0xFF, AlgTDES, tdes), 0x9000)
	wantSW(t, mgmtAuthenticate(t, c, AlgTDES, tdes), 0x9000)
	// AES keys need 5.4.
	old := adminCard(t, Options{Firmware: [3]byte{5, 2, 7}})
	_, sw := do(t, old, insSetMgmtKey, 0xFF, 0xFF, append([]byte{AlgAES128}, apdu.TLVBytes(0x9B, newKey[:16])...))
	wantSW(t, sw, 0x6A80)
}

// sign runs GENERAL AUTHENTICATE with 82 empty and 81 data.
func sign(t *testing.T, c *Card, alg, slot byte, in []byte) ([]byte, apdu.SW) {
	t.Helper()
	body := append([]byte{0x82, 0x00}, apdu.TLVBytes(0x81, in)...)
	data, sw := do(t, c, insGeneralAuth, alg, slot, apdu.TLVBytes(0x7C, body))
	if sw != 0x9000 {
		return nil, sw
	}
	out, ok, err := apdu.FindPath(data, 0x7C, 0x82)
	if err != nil || !ok {
		t.Fatalf("GENERAL AUTHENTICATE answer %X", data)
	}
	return out, sw
}

func derive(t *testing.T, c *Card, alg, slot byte, peer []byte) ([]byte, apdu.SW) {
	t.Helper()
	body := append([]byte{0x82, 0x00}, apdu.TLVBytes(0x85, peer)...)
	data, sw := do(t, c, insGeneralAuth, alg, slot, apdu.TLVBytes(0x7C, body))
	if sw != 0x9000 {
		return nil, sw
	}
	out, _, _ := apdu.FindPath(data, 0x7C, 0x82)
	return out, sw
}

// generate runs GENERATE ASYMMETRIC KEY PAIR and decodes the public key.
func generate(t *testing.T, c *Card, slot, alg byte, extra ...byte) (crypto.PublicKey, apdu.SW) {
	t.Helper()
	tpl := append(apdu.TLVBytes(0x80, []byte{alg}), extra...)
	data, sw := do(t, c, insGenerate, 0, slot, apdu.TLVBytes(0xAC, tpl))
	if sw != 0x9000 {
		return nil, sw
	}
	pk, ok, err := apdu.Find(data, 0x7F49)
	if err != nil || !ok {
		t.Fatalf("generate answer %X", data)
	}
	return decodePublic(t, alg, pk), sw
}

func decodePublic(t *testing.T, alg byte, pk []byte) crypto.PublicKey {
	t.Helper()
	if rsaBits(alg) != 0 {
		n, _, _ := apdu.Find(pk, 0x81)
		e, _, _ := apdu.Find(pk, 0x82)
		if len(n)*8 != rsaBits(alg) || !bytes.Equal(e, []byte{1, 0, 1}) {
			t.Fatalf("RSA public key %X", pk)
		}
		return &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: 65537}
	}
	pt, ok, _ := apdu.Find(pk, 0x86)
	if !ok {
		t.Fatalf("public key %X", pk)
	}
	switch alg {
	case AlgECCP256, AlgECCP384:
		curve := elliptic.P256()
		if alg == AlgECCP384 {
			curve = elliptic.P384()
		}
		x, y := elliptic.Unmarshal(curve, pt) //nolint:staticcheck // test decoding only
		if x == nil {
			t.Fatalf("bad point %X", pt)
		}
		return &ecdsa.PublicKey{Curve: curve, X: x, Y: y}
	case AlgEd25519:
		return ed25519.PublicKey(pt)
	case AlgX25519:
		k, err := ecdh.X25519().NewPublicKey(pt)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	t.Fatalf("alg %02X", alg)
	return nil
}

// checkKey signs (or derives) with the slot and checks the result with pub.
func checkKey(t *testing.T, c *Card, slot, alg byte, pub crypto.PublicKey) {
	t.Helper()
	msg := []byte("pivtest message")
	h := sha256.Sum256(msg)
	switch p := pub.(type) {
	case *rsa.PublicKey:
		// PKCS#1 v1.5 padding done by the host, raw RSA by the card.
		prefix := []byte{0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0x04, 0x20}
		t2 := append(prefix, h[:]...)
		em := make([]byte, p.Size())
		em[1] = 1
		for i := 2; i < len(em)-len(t2)-1; i++ {
			em[i] = 0xFF
		}
		copy(em[len(em)-len(t2):], t2)
		sig, sw := sign(t, c, alg, slot, em)
		wantSW(t, sw, 0x9000)
		if err := rsa.VerifyPKCS1v15(p, crypto.SHA256, h[:], sig); err != nil {
			t.Fatalf("RSA signature: %v", err)
		}
		// Decryption is the same raw operation.
		ct, _ := rsa.EncryptPKCS1v15(rand.Reader, p, []byte("secret"))
		pt, sw := sign(t, c, alg, slot, ct)
		wantSW(t, sw, 0x9000)
		if !bytes.HasSuffix(pt, []byte("\x00secret")) || pt[1] != 2 {
			t.Fatalf("RSA decryption %X", pt)
		}
		_, sw = sign(t, c, alg, slot, em[1:])
		wantSW(t, sw, 0x6A80)
		_, sw = derive(t, c, alg, slot, em)
		wantSW(t, sw, 0x6A80)
	case *ecdsa.PublicKey:
		sig, sw := sign(t, c, alg, slot, h[:])
		wantSW(t, sw, 0x9000)
		if !ecdsa.VerifyASN1(p, h[:], sig) {
			t.Fatal("ECDSA signature does not verify")
		}
		_, sw = sign(t, c, alg, slot, make([]byte, (p.Curve.Params().BitSize+7)/8+1))
		wantSW(t, sw, 0x6A80)
		// A short (even empty) hash is an integer, as hosts send it untruncated.
		sig, sw = sign(t, c, alg, slot, h[:20])
		wantSW(t, sw, 0x9000)
		if !ecdsa.VerifyASN1(p, h[:20], sig) {
			t.Fatal("ECDSA signature of a short hash does not verify")
		}
		sig, sw = sign(t, c, alg, slot, nil)
		wantSW(t, sw, 0x9000)
		if !ecdsa.VerifyASN1(p, nil, sig) {
			t.Fatal("ECDSA signature of an empty hash does not verify")
		}
		peer, _ := ecdsa.GenerateKey(p.Curve, rand.Reader)
		pe, _ := peer.ECDH()
		pp, _ := p.ECDH()
		want, _ := pe.ECDH(pp)
		got, sw := derive(t, c, alg, slot, pe.PublicKey().Bytes())
		wantSW(t, sw, 0x9000)
		if !bytes.Equal(got, want) {
			t.Fatal("ECDH secret differs")
		}
		_, sw = derive(t, c, alg, slot, []byte{4, 1, 2})
		wantSW(t, sw, 0x6A80)
	case ed25519.PublicKey:
		sig, sw := sign(t, c, alg, slot, msg)
		wantSW(t, sw, 0x9000)
		if !ed25519.Verify(p, msg, sig) {
			t.Fatal("Ed25519 signature does not verify")
		}
		_, sw = derive(t, c, alg, slot, make([]byte, 32))
		wantSW(t, sw, 0x6A80)
	case *ecdh.PublicKey:
		peer, _ := ecdh.X25519().GenerateKey(rand.Reader)
		want, _ := peer.ECDH(p)
		got, sw := derive(t, c, alg, slot, peer.PublicKey().Bytes())
		wantSW(t, sw, 0x9000)
		if !bytes.Equal(got, want) {
			t.Fatal("X25519 secret differs")
		}
		_, sw = sign(t, c, alg, slot, msg)
		wantSW(t, sw, 0x6A80)
	default:
		t.Fatalf("public key %T", pub)
	}
}

func TestGenerateAndUse(t *testing.T) {
	for _, tc := range []struct {
		name string
		alg  byte
	}{
		{"RSA1024", AlgRSA1024}, {"RSA2048", AlgRSA2048}, {"P256", AlgECCP256},
		{"P384", AlgECCP384}, {"Ed25519", AlgEd25519}, {"X25519", AlgX25519},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := adminCard(t, Options{})
			pub, sw := generate(t, c, 0x9D, tc.alg)
			wantSW(t, sw, 0x9000)
			// The card returns the same key in its metadata.
			data, sw := do(t, c, insGetMetadata, 0, 0x9D, nil)
			wantSW(t, sw, 0x9000)
			tl, _ := parseTLVMap(data)
			if !bytes.Equal(tl[0x01], []byte{tc.alg}) || !bytes.Equal(tl[0x02], []byte{PINPolicyOnce, TouchPolicyNever}) || !bytes.Equal(tl[0x03], []byte{1}) {
				t.Fatalf("metadata %X", data)
			}
			if got := decodePublic(t, tc.alg, tl[0x04]); !pubEqual(got, pub) {
				t.Fatal("metadata public key differs")
			}
			_, sw = sign(t, c, tc.alg, 0x9D, []byte{1})
			wantSW(t, sw, 0x6982) // PIN once, not given
			wantSW(t, verifyPIN(t, c, "123456"), 0x9000)
			checkKey(t, c, 0x9D, tc.alg, pub)
			// Wrong algorithm for the slot's key.
			_, sw = sign(t, c, AlgECCP256^tc.alg^AlgRSA2048, 0x9D, []byte{1})
			wantSW(t, sw, 0x6A80)
		})
	}
}

func pubEqual(a, b crypto.PublicKey) bool {
	type eq interface{ Equal(crypto.PublicKey) bool }
	e, ok := a.(eq)
	return ok && e.Equal(b)
}

func TestGenerateErrors(t *testing.T) {
	c := selected(t, Options{})
	_, sw := generate(t, c, 0x9A, AlgECCP256)
	wantSW(t, sw, 0x6982)
	wantSW(t, mgmtAuthenticate(t, c, AlgAES192, DefaultMgmtKey), 0x9000)
	for _, tc := range []struct {
		name  string
		slot  byte
		alg   byte
		extra []byte
		sw    apdu.SW
	}{
		{"slot 9B", 0x9B, AlgECCP256, nil, 0x6A86},
		{"slot 96", 0x96, AlgECCP256, nil, 0x6A86},
		{"alg 3DES", 0x9A, AlgTDES, nil, 0x6A80},
		{"alg 00", 0x9A, 0x00, nil, 0x6A80},
		{"pin policy 4", 0x9A, AlgECCP256, []byte{0xAA, 1, 4}, 0x6A80},
		{"touch policy 4", 0x9A, AlgECCP256, []byte{0xAB, 1, 4}, 0x6A80},
		{"policy length", 0x9A, AlgECCP256, []byte{0xAA, 2, 1, 1}, 0x6A80},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, sw := generate(t, c, tc.slot, tc.alg, tc.extra...)
			wantSW(t, sw, tc.sw)
		})
	}
	_, sw = do(t, c, insGenerate, 0, 0x9A, []byte{0xAC, 0x02, 0x81, 0x00})
	wantSW(t, sw, 0x6A80)
	_, sw = do(t, c, insGenerate, 0, 0x9A, []byte{0xAD, 0x03, 0x80, 0x01, 0x11})
	wantSW(t, sw, 0x6A80)
	_, sw = do(t, c, insGenerate, 1, 0x9A, []byte{0xAC, 0x03, 0x80, 0x01, 0x11})
	wantSW(t, sw, 0x6A86)
	// The attestation key may be replaced.
	_, sw = generate(t, c, 0xF9, AlgECCP384)
	wantSW(t, sw, 0x9000)
	// Empty slot.
	_, sw = sign(t, c, AlgECCP256, 0x9A, make([]byte, 32))
	wantSW(t, sw, 0x6A80)
	_, sw = do(t, c, insGetMetadata, 0, 0x9A, nil)
	wantSW(t, sw, 0x6A88)
	// Firmware before 5.7 knows no 25519 nor RSA 4096.
	old := adminCard(t, Options{Firmware: [3]byte{5, 4, 3}})
	for _, alg := range []byte{AlgEd25519, AlgX25519, AlgRSA3072, AlgRSA4096} {
		_, sw = generate(t, old, 0x9A, alg)
		wantSW(t, sw, 0x6A80)
	}
}

func TestGenerateRSA3072Chained(t *testing.T) {
	if testing.Short() {
		t.Skip("RSA 3072 generation is slow")
	}
	c := adminCard(t, Options{})
	// The 7F49 answer (~400 bytes) needs GET RESPONSE on short APDUs.
	data, sw := raw(t, c, "0047009A 05 AC03800105 00")
	if sw.SW1() != 0x61 || len(data) != 256 {
		t.Fatalf("first block %d", len(data))
	}
	rest, sw := raw(t, c, "00C0000000")
	wantSW(t, sw, 0x9000)
	pk, ok, err := apdu.Find(append(data, rest...), 0x7F49)
	if !ok || err != nil {
		t.Fatalf("public key template: %v", err)
	}
	pub := decodePublic(t, AlgRSA3072, pk)
	wantSW(t, verifyPIN(t, c, "123456"), 0x9000)
	checkKey(t, c, 0x9A, AlgRSA3072, pub)
}

func TestPINPolicies(t *testing.T) {
	c := adminCard(t, Options{})
	for _, slot := range []byte{0x9A, 0x9C, 0x9D, 0x9E, 0x82, 0x95} {
		if _, err := c.GenerateInSlot(slot, AlgECCP256); err != nil {
			t.Fatal(err)
		}
	}
	h := make([]byte, 32)
	// Never: 9E works without a PIN.
	_, sw := sign(t, c, AlgECCP256, 0x9E, h)
	wantSW(t, sw, 0x9000)
	for _, s := range []byte{0x9A, 0x9C, 0x9D, 0x82, 0x95} {
		_, sw = sign(t, c, AlgECCP256, s, h)
		wantSW(t, sw, 0x6982)
	}
	wantSW(t, verifyPIN(t, c, "123456"), 0x9000)
	// Always: one use per VERIFY, even with other commands in between.
	_, sw = do(t, c, insGetData, 0x3F, 0xFF, []byte{0x5C, 3, 0x5F, 0xC1, 0x0A})
	wantSW(t, sw, 0x9000)
	_, sw = sign(t, c, AlgECCP256, 0x9C, h)
	wantSW(t, sw, 0x9000)
	_, sw = sign(t, c, AlgECCP256, 0x9C, h)
	wantSW(t, sw, 0x6982)
	// Once: as long as the session lasts.
	for range 2 {
		for _, s := range []byte{0x9A, 0x9D, 0x82, 0x95} {
			_, sw = sign(t, c, AlgECCP256, s, h)
			wantSW(t, sw, 0x9000)
		}
	}
	wantSW(t, verifyPIN(t, c, "123456"), 0x9000)
	_, sw = sign(t, c, AlgECCP256, 0x9C, h)
	wantSW(t, sw, 0x9000)

	// Policies given at generation override the slot's default.
	_, sw = generate(t, c, 0x9C, AlgECCP256, 0xAA, 1, 1, 0xAB, 1, 3)
	wantSW(t, sw, 0x9000)
	_, sw = generate(t, c, 0x9E, AlgECCP256, 0xAA, 1, 3)
	wantSW(t, sw, 0x9000)
	c.Reset()
	_, sw = raw(t, c, "00A4040005A000000308")
	wantSW(t, sw, 0x9000)
	_, sw = sign(t, c, AlgECCP256, 0x9C, h)
	wantSW(t, sw, 0x9000)
	_, sw = sign(t, c, AlgECCP256, 0x9E, h)
	wantSW(t, sw, 0x6982)
	data, _ := do(t, c, insGetMetadata, 0, 0x9C, nil)
	if v, _, _ := apdu.Find(data, 0x02); !bytes.Equal(v, []byte{1, 3}) {
		t.Fatalf("9C policy %X", v)
	}
}

func loadPEMKey(t *testing.T, name string) crypto.PrivateKey {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// importCmd builds IMPORT KEY data the way yubico-piv-tool does.
func importData(t *testing.T, k crypto.PrivateKey, extra ...byte) (byte, []byte) {
	t.Helper()
	var out []byte
	switch k := k.(type) {
	case *rsa.PrivateKey:
		k.Precompute()
		n := k.Size() / 2
		for i, v := range []*big.Int{k.Primes[0], k.Primes[1], k.Precomputed.Dp, k.Precomputed.Dq, k.Precomputed.Qinv} {
			out = apdu.AppendTLV(out, apdu.Tag(i+1), v.FillBytes(make([]byte, n)))
		}
	case *ecdsa.PrivateKey:
		out = apdu.TLVBytes(0x06, k.D.FillBytes(make([]byte, (k.Curve.Params().BitSize+7)/8)))
	case ed25519.PrivateKey:
		out = apdu.TLVBytes(0x07, k.Seed())
	case *ecdh.PrivateKey:
		out = apdu.TLVBytes(0x08, k.Bytes())
	}
	return algOf(k), append(out, extra...)
}

func TestImport(t *testing.T) {
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	x, _ := ecdh.X25519().GenerateKey(rand.Reader)
	keys := map[string]crypto.PrivateKey{
		"RSA4096": loadPEMKey(t, "rsa4096.pem"), "RSA3072": loadPEMKey(t, "rsa3072.pem"),
		"P256": p256, "P384": p384, "Ed25519": ed, "X25519": x,
	}
	for name, k := range keys {
		t.Run(name, func(t *testing.T) {
			c := selected(t, Options{})
			alg, data := importData(t, k, 0xAA, 1, 1)
			_, sw := do(t, c, insImportKey, alg, 0x83, data)
			wantSW(t, sw, 0x6982)
			wantSW(t, mgmtAuthenticate(t, c, AlgAES192, DefaultMgmtKey), 0x9000)
			_, sw = do(t, c, insImportKey, alg, 0x83, data)
			wantSW(t, sw, 0x9000)
			meta, _ := do(t, c, insGetMetadata, 0, 0x83, nil)
			tl, _ := parseTLVMap(meta)
			if !bytes.Equal(tl[0x03], []byte{2}) || !bytes.Equal(tl[0x02], []byte{1, 1}) {
				t.Fatalf("metadata %X", meta)
			}
			checkKey(t, c, 0x83, alg, publicOf(k)) // PIN policy never
			_, sw = raw(t, c, "00F9830000")
			wantSW(t, sw, 0x6A80) // imported keys cannot be attested
		})
	}
	c := adminCard(t, Options{})
	alg, data := importData(t, p256)
	_, sw := do(t, c, insImportKey, alg, 0x9B, data)
	wantSW(t, sw, 0x6A86)
	_, sw = do(t, c, insImportKey, AlgECCP384, 0x9A, data)
	wantSW(t, sw, 0x6A80)
	_, sw = do(t, c, insImportKey, 0x42, 0x9A, data)
	wantSW(t, sw, 0x6A86)
	rk := loadPEMKey(t, "rsa3072.pem")
	alg, data = importData(t, rk)
	data[len(data)-1] ^= 1 // qinv disagrees
	_, sw = do(t, c, insImportKey, alg, 0x9A, data)
	wantSW(t, sw, 0x6A80)
	_, sw = do(t, c, insImportKey, AlgRSA2048, 0x9A, data)
	wantSW(t, sw, 0x6A80)
}

func TestAttest(t *testing.T) {
	c := adminCard(t, Options{Serial: 7654321})
	pub, sw := generate(t, c, 0x9A, AlgECCP256, 0xAA, 1, 3, 0xAB, 1, 2)
	wantSW(t, sw, 0x9000)
	der, sw := do(t, c, insAttest, 0x9A, 0, nil)
	wantSW(t, sw, 0x9000)
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	cont, _ := c.Object(objAttestation)
	caDER, _, _ := apdu.Find(cont, 0x70)
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	if err := cert.CheckSignatureFrom(ca); err != nil {
		t.Fatalf("attestation not signed by F9: %v", err)
	}
	if !pubEqual(cert.PublicKey, pub) {
		t.Fatal("attested key differs")
	}
	exts := map[string][]byte{}
	for _, e := range cert.Extensions {
		exts[e.Id.String()] = e.Value
	}
	var serial int64
	if _, err := asn1.Unmarshal(exts["1.3.6.1.4.1.41482.3.7"], &serial); err != nil || serial != 7654321 {
		t.Fatalf("serial extension %X", exts["1.3.6.1.4.1.41482.3.7"])
	}
	if !bytes.Equal(exts["1.3.6.1.4.1.41482.3.3"], []byte{5, 7, 1}) || !bytes.Equal(exts["1.3.6.1.4.1.41482.3.8"], []byte{3, 2}) {
		t.Fatalf("extensions %X", exts)
	}
	// Every key type can be attested.
	for _, alg := range []byte{AlgEd25519, AlgX25519, AlgRSA1024} {
		_, sw = generate(t, c, 0x9D, alg)
		wantSW(t, sw, 0x9000)
		der, sw = do(t, c, insAttest, 0x9D, 0, nil)
		wantSW(t, sw, 0x9000)
		if cert, err := x509.ParseCertificate(der); err != nil || cert.CheckSignatureFrom(ca) != nil {
			t.Fatalf("attestation of %02X: %v", alg, err)
		}
	}
	_, sw = raw(t, c, "00F99C0000")
	wantSW(t, sw, 0x6A88)
	_, sw = raw(t, c, "00F99B0000")
	wantSW(t, sw, 0x6A86)
	// F9 signs attestations, nothing else.
	meta, _ := do(t, c, insGetMetadata, 0, 0xF9, nil)
	tl, _ := parseTLVMap(meta)
	if !bytes.Equal(tl[0x01], []byte{AlgRSA2048}) || !bytes.Equal(tl[0x02], []byte{1, 1}) {
		t.Fatalf("F9 metadata %X", meta)
	}
	_, sw = sign(t, c, AlgRSA2048, 0xF9, make([]byte, 256))
	wantSW(t, sw, 0x6A86)
	// The attestation key can be replaced; attestations then come from the new one.
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	alg, data := importData(t, p256)
	_, sw = do(t, c, insImportKey, alg, 0xF9, data)
	wantSW(t, sw, 0x9000)
	der, sw = do(t, c, insAttest, 0x9A, 0, nil)
	wantSW(t, sw, 0x9000)
	cert, err = x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	if err := (&x509.Certificate{PublicKey: &p256.PublicKey}).CheckSignature(cert.SignatureAlgorithm, cert.RawTBSCertificate, cert.Signature); err != nil {
		t.Fatalf("attestation after F9 import not signed by the new key: %v", err)
	}
	if cert.Issuer.String() != ca.Subject.String() {
		t.Fatalf("issuer %v, want %v", cert.Issuer, ca.Subject)
	}
}

func TestMoveDeleteKey(t *testing.T) {
	c := selected(t, Options{})
	if _, err := c.GenerateInSlot(0x9A, AlgECCP256); err != nil {
		t.Fatal(err)
	}
	pub := c.PublicKey(0x9A)
	_, sw := raw(t, c, "00F6829A")
	wantSW(t, sw, 0x6982)
	wantSW(t, mgmtAuthenticate(t, c, AlgAES192, DefaultMgmtKey), 0x9000)
	_, sw = raw(t, c, "00F6829A")
	wantSW(t, sw, 0x9000)
	if c.PublicKey(0x9A) != nil || !pubEqual(c.PublicKey(0x82), pub) {
		t.Fatal("key not moved")
	}
	_, sw = raw(t, c, "00F6839A")
	wantSW(t, sw, 0x6A88)
	if _, err := c.GenerateInSlot(0x9D, AlgECCP256); err != nil {
		t.Fatal(err)
	}
	_, sw = raw(t, c, "00F69D82")
	wantSW(t, sw, 0x6985)
	_, sw = raw(t, c, "00F6F982")
	wantSW(t, sw, 0x6A86)
	_, sw = raw(t, c, "00F69AF9")
	wantSW(t, sw, 0x6A86)
	_, sw = raw(t, c, "00F6FF82")
	wantSW(t, sw, 0x9000)
	if c.PublicKey(0x82) != nil {
		t.Fatal("key not deleted")
	}
	old := adminCard(t, Options{Firmware: [3]byte{5, 4, 3}})
	_, sw = raw(t, old, "00F6FF9A")
	wantSW(t, sw, 0x6D00)
}

func TestProvision(t *testing.T) {
	c := selected(t, Options{})
	x, _ := ecdh.X25519().GenerateKey(rand.Reader)
	for slot, spec := range map[byte]KeySpec{
		0x9A: {Alg: AlgRSA2048},
		0x9C: {Alg: AlgEd25519, PINPolicy: PINPolicyNever},
		0x9D: {Key: x},
		0x9E: {Alg: AlgECCP384, NoCert: true},
	} {
		cert, err := c.Provision(slot, spec)
		if err != nil {
			t.Fatalf("slot %02X: %v", slot, err)
		}
		if (cert == nil) != spec.NoCert {
			t.Fatalf("slot %02X: certificate %v", slot, cert)
		}
		if cert == nil {
			continue
		}
		pk, err := x509.ParsePKIXPublicKey(cert.RawSubjectPublicKeyInfo)
		if err != nil || !pubEqual(pk, c.PublicKey(slot)) {
			t.Fatalf("slot %02X: certificate for another key (%v)", slot, err)
		}
	}
	data, sw := do(t, c, insGetData, 0x3F, 0xFF, []byte{0x5C, 3, 0x5F, 0xC1, 0x05})
	wantSW(t, sw, 0x9000)
	if v, ok, _ := apdu.FindPath(data, 0x53, 0x71); !ok || !bytes.Equal(v, []byte{0}) {
		t.Fatalf("certificate object %X", data)
	}
	if _, err := c.GenerateInSlot(0x9B, AlgECCP256); err == nil {
		t.Fatal("9B accepted a key")
	}
	old := newCard(t, Options{Firmware: [3]byte{5, 4, 3}})
	if _, err := old.GenerateInSlot(0x9A, AlgEd25519); err == nil {
		t.Fatal("5.4 accepted Ed25519")
	}
}

func TestNoTouch(t *testing.T) {
	c := adminCard(t, Options{NoTouch: true})
	for slot, touch := range map[byte]byte{0x9A: TouchPolicyAlways, 0x9D: TouchPolicyCached, 0x9E: TouchPolicyNever} {
		if _, err := c.Provision(slot, KeySpec{Alg: AlgECCP256, PINPolicy: PINPolicyNever, TouchPolicy: touch, NoCert: true}); err != nil {
			t.Fatal(err)
		}
	}
	h := make([]byte, 32)
	for slot, want := range map[byte]apdu.SW{0x9A: 0x6982, 0x9D: 0x6982, 0x9E: 0x9000} {
		if _, sw := sign(t, c, AlgECCP256, slot, h); sw != want {
			t.Errorf("slot %02X: SW %04X, want %04X", slot, uint16(sw), uint16(want))
		}
	}
}

func TestOldFirmware(t *testing.T) {
	c := adminCard(t, Options{Firmware: [3]byte{3, 4, 0}})
	_, sw := generate(t, c, 0x9A, AlgECCP384)
	wantSW(t, sw, 0x6A80) // P-384 came with 4.0
	_, sw = generate(t, c, 0x9A, AlgECCP256, 0xAA, 1, 1)
	wantSW(t, sw, 0x6A80) // so did policies
	_, sw = generate(t, c, 0x9A, AlgECCP256)
	wantSW(t, sw, 0x9000)
	_, sw = raw(t, c, "00F99A0000")
	wantSW(t, sw, 0x6D00) // attestation came with 4.3
	c4 := adminCard(t, Options{Firmware: [3]byte{4, 2, 0}})
	_, sw = generate(t, c4, 0x9A, AlgECCP256, 0xAB, 1, 3)
	wantSW(t, sw, 0x6A80) // cached touch came with 4.3
	_, sw = generate(t, c4, 0x9A, AlgECCP256, 0xAB, 1, 2)
	wantSW(t, sw, 0x9000)
}

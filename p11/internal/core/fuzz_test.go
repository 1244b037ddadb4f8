package core

import (
	"bytes"
	"crypto"
	"testing"

	"github.com/p11-card/p11-card/cards"
)

// Parsers of caller- and card-supplied bytes: no panic, bounded output.

func FuzzPKCS1Unpad(f *testing.F) {
	f.Add(append([]byte{0, 2, 1, 1, 1, 1, 1, 1, 1, 1, 0}, []byte("message")...))
	f.Add(make([]byte, 256))
	f.Add([]byte{0, 2})
	f.Fuzz(func(t *testing.T, em []byte) {
		out := pkcs1Unpad(em, []byte("kdk"))
		if len(out) > len(em) {
			t.Fatalf("output %d longer than the block %d", len(out), len(em))
		}
		if again := pkcs1Unpad(em, []byte("kdk")); !bytes.Equal(out, again) {
			t.Fatal("not deterministic")
		}
	})
}

func FuzzOAEPDecode(f *testing.F) {
	f.Add(make([]byte, 256), []byte{})
	f.Add([]byte{0, 1, 2, 3}, []byte("L"))
	f.Fuzz(func(t *testing.T, em, label []byte) {
		if out, err := oaepDecode(em, crypto.SHA256, crypto.SHA256, label); err == nil && len(out) > len(em) {
			t.Fatal("output longer than the block")
		}
	})
}

func FuzzAttributes(f *testing.F) {
	f.Add([]byte{6, 8, 0x2a, 0x86, 0x48, 0xce, 0x3d, 3, 1, 7}, []byte{4, 65, 4}, []byte{1, 0, 1})
	f.Add([]byte{0x13, 12, 'e', 'd', 'w', 'a', 'r', 'd', 's', '2', '5', '5', '1', '9'}, []byte{4, 32}, []byte{})
	f.Fuzz(func(t *testing.T, params, point, exp []byte) {
		algFromECParams(params)
		for _, kt := range []uint64{CKK_RSA, CKK_EC, CKK_EC_EDWARDS} {
			a := attrSet{v: map[uint64][]byte{CKA_CLASS: EncodeULong(CKO_PUBLIC_KEY), CKA_KEY_TYPE: EncodeULong(kt),
				CKA_EC_PARAMS: params, CKA_EC_POINT: point, CKA_MODULUS: point, CKA_PUBLIC_EXPONENT: exp}}
			publicFromAttrs(a)
		}
		for _, alg := range []cards.KeyAlg{cards.AlgECP256, cards.AlgX25519, cards.AlgRSA} {
			peerPoint(&cards.KeyInfo{Alg: alg}, point)
		}
		// A hostile card's certificate bytes.
		tokenAttrs(cards.Object{Kind: cards.KindCertificate, Cert: point, ID: params}, "s", nil, nil)
	})
}

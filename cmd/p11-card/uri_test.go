package main

import (
	"testing"

	"github.com/p11-card/p11-card/cards"
)

func TestPKCS11URI(t *testing.T) {
	yk := cards.TokenInfo{Label: "YubiKey PIV #12345678", Manufacturer: "Yubico", Model: "YubiKey 5 (PIV)", Serial: "12345678"}
	for _, c := range []struct {
		name string
		tok  cards.TokenInfo
		obj  cards.Object
		want string
	}{
		{"private key", yk, cards.Object{Kind: cards.KindPrivateKey, ID: []byte{0x01}, Label: "PIV Authentication"},
			"pkcs11:model=YubiKey%205%20(PIV);manufacturer=Yubico;serial=12345678;token=YubiKey%20PIV%20%2312345678;id=%01;object=PIV%20Authentication;type=private"},
		{"certificate", yk, cards.Object{Kind: cards.KindCertificate, ID: []byte{0x19}, Label: "Attestation"},
			"pkcs11:model=YubiKey%205%20(PIV);manufacturer=Yubico;serial=12345678;token=YubiKey%20PIV%20%2312345678;id=%19;object=Attestation;type=cert"},
		{"data object has no id", yk, cards.Object{Kind: cards.KindData, ID: []byte{0x7E}, Label: "Discovery Object"},
			"pkcs11:model=YubiKey%205%20(PIV);manufacturer=Yubico;serial=12345678;token=YubiKey%20PIV%20%2312345678;object=Discovery%20Object;type=data"},
		// Reserved characters of the URI syntax, a multi-byte ID, fields cut to CK_TOKEN_INFO's
		// widths (the model's 16 bytes end inside "é": the whole character goes).
		{"escaping and widths", cards.TokenInfo{Label: "a;b?c/d%e", Manufacturer: "Ø", Model: "0123456789abcdeé", Serial: "0123456789abcdef0"},
			cards.Object{Kind: cards.KindPublicKey, ID: []byte{0x00, 0xFF, 'a'}, Label: "x=y&z"},
			"pkcs11:model=0123456789abcde;manufacturer=%C3%98;serial=0123456789abcdef;token=a%3Bb%3Fc%2Fd%25e;id=%00%FFa;object=x=y&z;type=public"},
		{"empty fields left out", cards.TokenInfo{Label: "t"}, cards.Object{Kind: cards.KindPublicKey},
			"pkcs11:token=t;type=public"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := pkcs11URI(c.tok, c.obj); got != c.want {
				t.Errorf("got  %s\nwant %s", got, c.want)
			}
		})
	}
}

package main

import (
	"strings"
	"unicode/utf8"

	"github.com/p11-card/p11-card/cards"
)

// CK_TOKEN_INFO's fixed field widths (PKCS#11 2.40 §3.2): the module cuts the driver's
// strings to these, so a URI names the token as applications see it.
const (
	ckLabelLen        = 32
	ckManufacturerLen = 32
	ckModelLen        = 16
	ckSerialLen       = 16
)

// pkcs11URI is the RFC 7512 URI of object o on the token tok, as the module presents them:
// token, manufacturer, model and serial from CK_TOKEN_INFO, the object's CKA_ID and
// CKA_LABEL, and its class. Data objects have no CKA_ID in PKCS#11, so theirs has none.
func pkcs11URI(tok cards.TokenInfo, o cards.Object) string {
	var attrs []string
	add := func(name, value string) {
		if value != "" {
			attrs = append(attrs, name+"="+uriEscape(value))
		}
	}
	add("model", ckField(tok.Model, ckModelLen))
	add("manufacturer", ckField(tok.Manufacturer, ckManufacturerLen))
	add("serial", ckField(tok.Serial, ckSerialLen))
	add("token", ckField(tok.Label, ckLabelLen))
	if o.Kind != cards.KindData {
		add("id", string(o.ID))
	}
	add("object", o.Label)
	add("type", map[cards.Kind]string{cards.KindCertificate: "cert", cards.KindPublicKey: "public",
		cards.KindPrivateKey: "private", cards.KindData: "data"}[o.Kind])
	return "pkcs11:" + strings.Join(attrs, ";")
}

// ckField is s as a blank-padded CK_UTF8CHAR field of n bytes reads back: cut at a
// character boundary, trailing blanks dropped.
func ckField(s string, n int) string {
	s = strings.ToValidUTF8(s, "?")
	for len(s) > n {
		_, size := utf8.DecodeLastRuneInString(s)
		s = s[:len(s)-size]
	}
	return strings.TrimRight(s, " ")
}

// uriEscape percent-encodes every byte of s outside RFC 7512's pk11-pchar (unreserved
// characters and ":[]@!$'()*+,=&"), so ';', '?', '/', '#', '%', blanks and binary IDs
// are encoded.
func uriEscape(s string) string {
	const hexDigits = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("-._~:[]@!$'()*+,=&", c) >= 0 {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hexDigits[c>>4])
		b.WriteByte(hexDigits[c&0x0F])
	}
	return b.String()
}

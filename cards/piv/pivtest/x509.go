package pivtest

import (
	"crypto"
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
)

// createCertificate is x509.CreateCertificate that also takes an X25519 subject key,
// which crypto/x509 refuses to certify: the certificate is made for a stand-in Ed25519
// key, the stand-in's SubjectPublicKeyInfo is swapped for the X25519 one, and the TBS is
// signed again. The issuer key must be RSA or ECDSA (SHA-256) or Ed25519.
func createCertificate(tmpl, parent *x509.Certificate, pub crypto.PublicKey, signer crypto.Signer) ([]byte, error) {
	xpub, ok := pub.(*ecdh.PublicKey)
	if !ok {
		return x509.CreateCertificate(rand.Reader, tmpl, parent, pub, signer)
	}
	standIn, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, standIn, signer)
	if err != nil {
		return nil, err
	}
	oldSPKI, err := x509.MarshalPKIXPublicKey(standIn)
	if err != nil {
		return nil, err
	}
	newSPKI, err := x509.MarshalPKIXPublicKey(xpub)
	if err != nil {
		return nil, err
	}
	var cert struct {
		TBS    asn1.RawValue
		SigAlg asn1.RawValue
		Sig    asn1.BitString
	}
	if _, err := asn1.Unmarshal(der, &cert); err != nil {
		return nil, err
	}
	var fields []asn1.RawValue
	rest := cert.TBS.Bytes
	for len(rest) > 0 {
		var f asn1.RawValue
		if rest, err = asn1.Unmarshal(rest, &f); err != nil {
			return nil, err
		}
		fields = append(fields, f)
	}
	swapped := false
	var tbsBody []byte
	for _, f := range fields {
		if string(f.FullBytes) == string(oldSPKI) {
			tbsBody = append(tbsBody, newSPKI...)
			swapped = true
			continue
		}
		tbsBody = append(tbsBody, f.FullBytes...)
	}
	if !swapped {
		return nil, errors.New("pivtest: subject key not found in certificate")
	}
	tbs, err := asn1.Marshal(asn1.RawValue{Class: asn1.ClassUniversal, Tag: asn1.TagSequence, IsCompound: true, Bytes: tbsBody})
	if err != nil {
		return nil, err
	}
	var sig []byte
	switch signer.Public().(type) {
	case ed25519.PublicKey:
		sig, err = signer.Sign(rand.Reader, tbs, crypto.Hash(0))
	default:
		h := sha256.Sum256(tbs)
		sig, err = signer.Sign(rand.Reader, h[:], crypto.SHA256)
	}
	if err != nil {
		return nil, fmt.Errorf("pivtest: sign certificate: %w", err)
	}
	body := append(append([]byte(nil), tbs...), cert.SigAlg.FullBytes...)
	bits, err := asn1.Marshal(asn1.BitString{Bytes: sig, BitLength: 8 * len(sig)})
	if err != nil {
		return nil, err
	}
	body = append(body, bits...)
	return asn1.Marshal(asn1.RawValue{Class: asn1.ClassUniversal, Tag: asn1.TagSequence, IsCompound: true, Bytes: body})
}

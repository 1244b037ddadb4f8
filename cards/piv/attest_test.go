package piv

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"strings"
	"testing"

	"github.com/p11-card/p11-card/cards"
	"github.com/p11-card/p11-card/cards/piv/pivtest"
)

// TestAttestationKept: a later process (a fresh token on the same card) takes the
// attestation statement an earlier one kept, once checked, instead of having the card sign
// one; a replaced key, or a kept statement the attestation key did not sign, is attested
// again.
func TestAttestationKept(t *testing.T) {
	const serial = "40000001"
	fx := newFixture(t, pivtest.Options{Serial: 40000001}, func(c *pivtest.Card) { provision(t, c, 0x9A, pivtest.AlgECCP256) })
	// attest lists the 9A attestation through a token of its own, as a new process would,
	// and returns it with the number of ATTEST commands sent.
	attest := func(what string) ([]byte, int) {
		t.Helper()
		conn := &testConn{card: fx.card}
		tok, err := Driver{}.Open(ctxb, conn, fx.card.ATR())
		if err != nil {
			t.Fatal(err)
		}
		var der []byte
		_, ins := conn.count(func() {
			objs, err := tok.Objects(ctxb, cards.Filter{ID: []byte{0x81}})
			if err != nil || len(objs) != 1 {
				t.Fatalf("%s: attestation objects %d, %v", what, len(objs), err)
			}
			der = objs[0].Cert
		})
		n := 0
		for _, c := range ins {
			if strings.HasPrefix(c, "F9 ") {
				n++
			}
		}
		cert, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if !cert.PublicKey.(interface{ Equal(crypto.PublicKey) bool }).Equal(fx.card.PublicKey(0x9A)) {
			t.Fatalf("%s: the statement names another key than the slot's", what)
		}
		return der, n
	}

	first, n := attest("first process")
	if n != 1 {
		t.Fatalf("first process: %d ATTEST, want 1", n)
	}
	if again, n := attest("second process"); n != 0 || !bytes.Equal(again, first) {
		t.Errorf("second process: %d ATTEST, same statement %v; want the kept one", n, bytes.Equal(again, first))
	}

	provision(t, fx.card, 0x9A, pivtest.AlgECCP256) // another program replaces the key
	replaced, n := attest("after the key was replaced")
	if n != 1 || bytes.Equal(replaced, first) {
		t.Errorf("after the key was replaced: %d ATTEST, want 1", n)
	}

	forged := bytes.Clone(cards.Kept("piv", serial, "attest-9a"))
	if !bytes.Equal(forged, replaced) {
		t.Fatal("the replaced key's statement was not kept")
	}
	forged[len(forged)-1] ^= 1 // the signature's last byte
	cards.Keep("piv", serial, "attest-9a", forged)
	if got, n := attest("with a forged statement kept"); n != 1 || bytes.Equal(got, forged) {
		t.Errorf("with a forged statement kept: %d ATTEST, want 1", n)
	}
}

package pivtest_test

import (
	"context"
	"fmt"

	"github.com/p11-card/p11-card/apdu"
	"github.com/p11-card/p11-card/cards/piv/pivtest"
	"github.com/p11-card/p11-card/cards/vcard"
)

// A virtual YubiKey answers APDUs in-process; wrapped in a vcard.Log it counts them.
func Example() {
	card, err := pivtest.New(pivtest.Options{Serial: 1234})
	if err != nil {
		panic(err)
	}
	var log vcard.Log
	c := vcard.WithLog(card, &log)
	ctx := context.Background()
	for _, cmd := range []apdu.Command{
		{INS: 0xA4, P1: 0x04, Data: []byte{0xA0, 0x00, 0x00, 0x03, 0x08}}, // SELECT PIV
		{INS: 0xFD, Ne: 256},  // GET VERSION
		{INS: 0xF8, Ne: 256},  // GET SERIAL
		{INS: 0x20, P2: 0x80}, // VERIFY: PIN status
	} {
		r, err := apdu.Exchange(ctx, c, cmd, apdu.Options{})
		if err != nil {
			panic(err)
		}
		fmt.Printf("%02X: % X %v\n", cmd.INS, r.Data, r.SW)
	}
	fmt.Println("commands:", log.Count())
	// Output:
	// A4: 61 11 4F 06 00 00 10 00 01 00 79 07 4F 05 A0 00 00 03 08 9000
	// FD: 05 07 01 9000
	// F8: 00 00 04 D2 9000
	// 20:  63C3
	// commands: 4
}

// Test setup without APDUs: a key and a self-signed certificate in slot 9A.
func ExampleCard_GenerateInSlot() {
	card := pivtest.MustNew(pivtest.Options{})
	cert, err := card.GenerateInSlot(pivtest.SlotAuthentication, pivtest.AlgECCP256)
	if err != nil {
		panic(err)
	}
	fmt.Println(cert.Subject.CommonName, cert.PublicKeyAlgorithm)
	// Output: pivtest 9A ECDSA
}

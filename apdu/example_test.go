package apdu_test

import (
	"context"
	"fmt"

	"github.com/p11-card/p11-card/apdu"
)

func ExampleCommand_Bytes() {
	// SELECT the PIV application by AID, asking for up to 256 bytes of answer.
	sel := apdu.Command{INS: 0xA4, P1: 0x04, Data: []byte{0xA0, 0x00, 0x00, 0x03, 0x08}, Ne: 256}
	short, _ := sel.Bytes(false)
	ext, _ := sel.Bytes(true)
	fmt.Printf("% X\n% X\n", short, ext)
	// Output:
	// 00 A4 04 00 05 A0 00 00 03 08 00
	// 00 A4 04 00 00 00 05 A0 00 00 03 08 01 00
}

func ExampleParseCommand() {
	c, err := apdu.ParseCommand([]byte{0x00, 0xCB, 0x3F, 0xFF, 0x05, 0x5C, 0x03, 0x5F, 0xC1, 0x02, 0x00})
	fmt.Println(c, err)
	// Output: 00 CB 3F FF Nc=5 Ne=256 <nil>
}

func ExampleParseResponse() {
	r, _ := apdu.ParseResponse([]byte{0x01, 0x02, 0x63, 0xC2})
	fmt.Printf("% X %v\n", r.Data, r.SW)
	fmt.Println(r.Err())
	// Output:
	// 01 02 63C2
	// apdu: verification failed, 2 tries left
}

// cardStub answers from a script of raw responses.
type cardStub struct{ answers [][]byte }

func (c *cardStub) Transmit(_ context.Context, cmd []byte) ([]byte, error) {
	fmt.Printf("> % X\n", cmd)
	r := c.answers[0]
	c.answers = c.answers[1:]
	fmt.Printf("< % X\n", r)
	return r, nil
}

func ExampleExchange() {
	card := &cardStub{answers: [][]byte{
		{0x6C, 0x04},             // wrong Le: the answer has 4 bytes
		{0xAA, 0xBB, 0x61, 0x02}, // two bytes, two more waiting
		{0xCC, 0xDD, 0x90, 0x00}, // the rest
	}}
	r, err := apdu.Exchange(context.Background(), card, apdu.Command{INS: 0xCA, P1: 0x00, P2: 0x6E, Ne: 1}, apdu.Options{})
	fmt.Printf("% X %v %v\n", r.Data, r.SW, err)
	// Output:
	// > 00 CA 00 6E 01
	// < 6C 04
	// > 00 CA 00 6E 04
	// < AA BB 61 02
	// > 00 C0 00 00 02
	// < CC DD 90 00
	// AA BB CC DD 9000 <nil>
}

func ExampleFindPath() {
	// An OpenPGP application related data object (6E) holding discretionary data (73)
	// with an algorithm attribute (C1).
	do := apdu.TLVBytes(0x6E, apdu.TLVBytes(0x73, apdu.TLVBytes(0xC1, []byte{0x01, 0x08, 0x00})))
	v, ok, err := apdu.FindPath(do, 0x6E, 0x73, 0xC1)
	fmt.Printf("% X %v %v\n", v, ok, err)
	// Output: 01 08 00 true <nil>
}

func ExampleParseTLV() {
	// A PIV certificate container tag with a long-form length.
	b := append([]byte{0x5F, 0xC1, 0x05, 0x81, 0x80}, make([]byte, 0x80)...)
	t, rest, err := apdu.ParseTLV(append(b, 0xFE, 0x00))
	fmt.Println(t.Tag, len(t.Value), t.Constructed(), len(rest), err)
	// Output: 5FC105 128 false 2 <nil>
}

func ExampleWalk() {
	b := apdu.TLVBytes(0x7F49, apdu.TLVBytes(0x81, []byte{1, 2, 3}), apdu.TLVBytes(0x82, []byte{1, 0, 1}))
	_ = apdu.Walk(b, func(depth int, t apdu.TLV) bool {
		fmt.Printf("%*s%v len %d\n", 2*depth, "", t.Tag, len(t.Value))
		return true
	})
	// Output:
	// 7F49 len 10
	//   81 len 3
	//   82 len 3
}

func ExampleRedact() {
	verify := []byte{0x00, 0x20, 0x00, 0x80, 0x08, '1', '2', '3', '4', '5', '6', 0xFF, 0xFF}
	fmt.Printf("% X\n", apdu.Redact(verify))
	// Output: 00 20 00 80 08 2A 2A 2A 2A 2A 2A 2A 2A
}

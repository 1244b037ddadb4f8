package apdu

import (
	"bytes"
	"testing"
)

func TestRedact(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want string
	}{
		{"VERIFY", "00200080 08 313233343536FFFF", "00200080 08 2A2A2A2A2A2A2A2A"},
		{"VERIFY status query", "00200080", "00200080"},
		{"VERIFY proprietary class", "80200081 02 3132", "80200081 02 2A2A"},
		{"CHANGE REFERENCE DATA", "00240080 10 313233343536FFFF 3132333435363738", "00240080 10 " + rep(16)},
		{"RESET RETRY COUNTER", "002C0080 03 313233", "002C0080 03 2A2A2A"},
		{"Yubico IMPORT KEY chained", "10FE079A 03 010203", "10FE079A 03 2A2A2A"},
		{"Yubico SET MGMT KEY", "00FFFFFF 03 9B0102", "00FFFFFF 03 2A2A2A"},
		{"OpenPGP key import extended", "00DB3FFF 000003 4D0100", "00DB3FFF 000003 2A2A2A"},
		{"OpenPGP key import extended with Le", "00DB3FFF 000002 4D00 0000", "00DB3FFF 000002 2A2A 0000"},
		{"OpenPGP PUT DATA reset code", "00DA00D3 02 3132", "00DA00D3 02 2A2A"},
		{"OpenPGP PUT DATA AES key", "00DA00D5 02 3132", "00DA00D5 02 2A2A"},
		{"OpenPGP PUT DATA KDF", "00DA00F9 02 8100", "00DA00F9 02 2A2A"},
		{"VERIFY with Le", "00200080 02 3132 00", "00200080 02 2A2A 00"},
		{"malformed VERIFY", "00200080 05 3132", "00200080 2A2A2A"},
		{"PUT DATA name is public", "00DA005B 02 4142", "00DA005B 02 4142"},
		{"SELECT untouched", "00A40400 05 A000000308", "00A40400 05 A000000308"},
		{"GET DATA untouched", "00CB3FFF 05 5C035FC105 00", "00CB3FFF 05 5C035FC105 00"},
		{"short", "0020", "0020"},
		{"empty", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := hx(tt.in)
			orig := append([]byte(nil), in...)
			got := Redact(in)
			if !bytes.Equal(got, hx(tt.want)) {
				t.Fatalf("Redact(%s) = % X, want %s", tt.in, got, tt.want)
			}
			if !bytes.Equal(in, orig) {
				t.Fatal("Redact modified its input")
			}
			if len(in) > 0 && &got[0] == &in[0] {
				t.Fatal("Redact returned its input")
			}
		})
	}
}

func rep(n int) string {
	return string(bytes.Repeat([]byte("2A"), n))
}

func TestRedactResponse(t *testing.T) {
	ga := hx("00870700 04 7C028100 00")
	if got := RedactResponse(ga, hx("7C03820101 9000")); !bytes.Equal(got, hx("2A2A2A2A2A 9000")) {
		t.Fatalf("GENERAL AUTHENTICATE response = % X", got)
	}
	pso := hx("002A8086 02 0001 00")
	if got := RedactResponse(pso, hx("414243 9000")); !bytes.Equal(got, hx("2A2A2A 9000")) {
		t.Fatalf("PSO decipher response = % X", got)
	}
	verify := hx("00200080 02 3132")
	if got := RedactResponse(verify, hx("3132 9000")); !bytes.Equal(got, hx("2A2A 9000")) {
		t.Fatalf("echoed PIN = % X", got)
	}
	sel := hx("00A40400 01 A0")
	if got := RedactResponse(sel, hx("6101 9000")); !bytes.Equal(got, hx("61019000")) {
		t.Fatalf("SELECT response = % X", got)
	}
	if got := RedactResponse(ga, hx("6982")); !bytes.Equal(got, hx("6982")) {
		t.Fatalf("status only = % X", got)
	}
}

func TestResponseRedactorFollowsGetResponse(t *testing.T) {
	var r ResponseRedactor
	ga := hx("00870700 04 7C028200 00")
	gr := hx("00C0000000")
	steps := []struct {
		cmd, resp, want []byte
	}{
		{ga, hx("414243 6103"), hx("2A2A2A 6103")},
		{gr, hx("444546 6102"), hx("2A2A2A 6102")}, // still the decrypted answer
		{gr, hx("4748 9000"), hx("2A2A 9000")},     // its last part
		{gr, hx("4142 9000"), hx("4142 9000")},     // a later, unrelated GET RESPONSE
		{hx("00CB3FFF 03 5C017E 00"), hx("7E00 6102"), hx("7E00 6102")},
		{gr, hx("5354 9000"), hx("5354 9000")}, // GET DATA's rest is public
	}
	for i, s := range steps {
		if got := r.Redact(s.cmd, s.resp); !bytes.Equal(got, s.want) {
			t.Fatalf("step %d: % X, want % X", i, got, s.want)
		}
	}
}

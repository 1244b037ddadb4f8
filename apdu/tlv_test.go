package apdu

import (
	"bytes"
	"errors"
	"testing"
)

func TestParseTLV(t *testing.T) {
	v200 := bytes.Repeat([]byte{7}, 200)
	v300 := bytes.Repeat([]byte{7}, 300)
	tests := []struct {
		name        string
		in          []byte
		tag         Tag
		value       []byte
		rest        []byte
		constructed bool
	}{
		{"one-byte tag", hx("80 02 0102"), 0x80, hx("0102"), nil, false},
		{"empty value", hx("53 00 FF"), 0x53, nil, hx("FF"), false},
		{"two-byte tag", hx("7F49 03 810100"), 0x7F49, hx("810100"), nil, true},
		{"three-byte tag", hx("5FC105 01 AA BB"), 0x5FC105, hx("AA"), hx("BB"), false},
		{"four-byte tag", hx("1F818203 00"), 0x1F818203, nil, nil, false},
		{"constructed 6E", hx("6E 03 4F0100"), 0x6E, hx("4F0100"), nil, true},
		{"81 length", append(hx("53 81C8"), v200...), 0x53, v200, nil, false},
		{"82 length", append(hx("53 82012C"), v300...), 0x53, v300, nil, false},
		{"83 length", append(hx("53 83 00012C"), v300...), 0x53, v300, nil, false},
		{"84 length", append(hx("53 84 0000012C"), v300...), 0x53, v300, nil, false},
		{"non-minimal length", hx("53 8101 AA"), 0x53, hx("AA"), nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, rest, err := ParseTLV(tt.in)
			if err != nil {
				t.Fatal(err)
			}
			if got.Tag != tt.tag || !bytes.Equal(got.Value, tt.value) || !bytes.Equal(rest, tt.rest) {
				t.Fatalf("got %v % X rest % X", got.Tag, got.Value, rest)
			}
			if got.Constructed() != tt.constructed {
				t.Fatalf("Constructed = %v", got.Constructed())
			}
			// Appending to Value must not overwrite what follows it.
			if len(tt.rest) > 0 {
				_ = append(got.Value, 0xEE)
				if rest[0] != tt.rest[0] {
					t.Fatal("Value aliases the rest")
				}
			}
		})
	}
}

func TestParseTLVMalformed(t *testing.T) {
	for name, in := range map[string][]byte{
		"empty":              nil,
		"no length":          hx("53"),
		"truncated tag":      hx("5F"),
		"truncated tag 2":    hx("5FC1"),
		"tag of five bytes":  hx("1F8182838400"),
		"indefinite length":  hx("73 80 0000"),
		"length of 85":       hx("53 85 0000000001 AA"),
		"length of FF":       hx("53 FF"),
		"truncated length":   hx("53 82 01"),
		"value cut":          hx("53 03 0102"),
		"huge length":        hx("53 84 FFFFFFFF 00"),
		"81 without byte":    hx("53 81"),
		"multi-byte tag cut": hx("7F"),
	} {
		t.Run(name, func(t *testing.T) {
			if got, _, err := ParseTLV(in); !errors.Is(err, ErrMalformed) {
				t.Fatalf("ParseTLV(% X) = %v, %v; want ErrMalformed", in, got, err)
			}
		})
	}
}

func TestAppendLength(t *testing.T) {
	for _, tt := range []struct {
		n    int
		want string
	}{
		{0, "00"}, {0x7F, "7F"}, {0x80, "8180"}, {0xFF, "81FF"}, {0x100, "820100"},
		{0xFFFF, "82FFFF"}, {0x10000, "83010000"}, {0x1000000, "8401000000"},
	} {
		if got := AppendLength(nil, tt.n); !bytes.Equal(got, hx(tt.want)) {
			t.Errorf("AppendLength(%d) = % X, want %s", tt.n, got, tt.want)
		}
	}
}

func TestAppendTLVRoundTrip(t *testing.T) {
	for _, tag := range []Tag{0x01, 0x53, 0x7F49, 0x5FC105, 0x1F818203} {
		for _, n := range []int{0, 1, 127, 128, 255, 256, 70000} {
			v := bytes.Repeat([]byte{0x42}, n)
			b := TLVBytes(tag, v[:n/2], v[n/2:])
			got, rest, err := ParseTLV(b)
			if err != nil || got.Tag != tag || !bytes.Equal(got.Value, v) || len(rest) != 0 {
				t.Fatalf("tag %v len %d: %v %v % X", tag, n, err, got.Tag, rest)
			}
			if !bytes.Equal(got.Bytes(), b) {
				t.Fatalf("tag %v len %d: Bytes differs", tag, n)
			}
		}
	}
}

func TestParseAllPadding(t *testing.T) {
	all, err := ParseAll(hx("00 FF 53 01 AA 00 00 54 00 FF"))
	if err != nil || len(all) != 2 || all[0].Tag != 0x53 || all[1].Tag != 0x54 {
		t.Fatalf("ParseAll = %v, %v", all, err)
	}
	if _, err := ParseAll(hx("53 01 AA 54")); !errors.Is(err, ErrMalformed) {
		t.Fatalf("trailing garbage: %v", err)
	}
	all, err = ParseAll(nil)
	if err != nil || len(all) != 0 {
		t.Fatalf("ParseAll(nil) = %v, %v", all, err)
	}
}

func TestFind(t *testing.T) {
	// 6E { 4F {A0}, 73 { C0 {01}, C1 {0108} } }
	b := TLVBytes(0x6E, TLVBytes(0x4F, hx("A0")), TLVBytes(0x73, TLVBytes(0xC0, hx("01")), TLVBytes(0xC1, hx("0108"))))
	for _, tt := range []struct {
		path []Tag
		want []byte
		ok   bool
	}{
		{[]Tag{0x6E, 0x4F}, hx("A0"), true},
		{[]Tag{0x6E, 0x73, 0xC1}, hx("0108"), true},
		{[]Tag{0x6E, 0x73, 0xC2}, nil, false},
		{[]Tag{0x73}, nil, false}, // one level only
		{[]Tag{0x6E, 0x4F, 0x01}, nil, false},
	} {
		v, ok, err := FindPath(b, tt.path...)
		if ok != tt.ok || !bytes.Equal(v, tt.want) {
			t.Errorf("FindPath(%v) = % X, %v, %v", tt.path, v, ok, err)
		}
	}
	if _, _, err := Find(hx("53 05 00"), 0x53); !errors.Is(err, ErrMalformed) {
		t.Fatalf("Find over bad input: %v", err)
	}
}

func TestChildren(t *testing.T) {
	outer := TLV{Tag: 0x7F49, Value: append(TLVBytes(0x81, hx("01")), TLVBytes(0x82, hx("0203"))...)}
	kids, err := outer.Children()
	if err != nil || len(kids) != 2 || kids[1].Tag != 0x82 {
		t.Fatalf("Children = %v, %v", kids, err)
	}
	if _, err := (TLV{Tag: 0x81, Value: hx("0100")}).Children(); !errors.Is(err, ErrPrimitive) {
		t.Fatalf("primitive Children err = %v", err)
	}
}

func TestWalkDepth(t *testing.T) {
	b := TLVBytes(0x53, nil)
	for range MaxDepth + 1 {
		b = TLVBytes(0x70, b) // 70 is constructed
	}
	if err := Walk(b, func(int, TLV) bool { return true }); !errors.Is(err, ErrMalformed) {
		t.Fatalf("Walk over %d levels: %v", MaxDepth+2, err)
	}
	n := 0
	if err := Walk(b, func(d int, _ TLV) bool { n++; return d < 2 }); err != nil || n != 3 {
		t.Fatalf("Walk with pruning visited %d, err %v", n, err)
	}
}

func TestSimpleTLV(t *testing.T) {
	for _, n := range []int{0, 1, 254, 255, 300, 65535} {
		v := bytes.Repeat([]byte{9}, n)
		b, err := AppendSimpleTLV(nil, 0x42, v)
		if err != nil {
			t.Fatal(err)
		}
		wantHdr := 2
		if n >= 255 {
			wantHdr = 4
		}
		if len(b) != n+wantHdr {
			t.Fatalf("len %d: encoded %d bytes", n, len(b))
		}
		tag, val, rest, err := ParseSimpleTLV(append(b, 0x01))
		if err != nil || tag != 0x42 || !bytes.Equal(val, v) || !bytes.Equal(rest, []byte{1}) {
			t.Fatalf("len %d: %v %02X rest % X", n, err, tag, rest)
		}
	}
	for _, in := range []string{"", "42", "00 00", "FF 00", "42 03 0102", "42 FF 00", "42 FF 0001"} {
		if _, _, _, err := ParseSimpleTLV(hx(in)); !errors.Is(err, ErrMalformed) {
			t.Errorf("ParseSimpleTLV(%s) = %v", in, err)
		}
	}
	if _, err := AppendSimpleTLV(nil, 0xFF, nil); err == nil {
		t.Error("tag FF accepted")
	}
	if _, err := AppendSimpleTLV(nil, 0x01, make([]byte, 0x10000)); err == nil {
		t.Error("65536 bytes accepted")
	}
}

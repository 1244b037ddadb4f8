package apdutest

import (
	"bytes"
	"strings"
	"testing"
)

// FuzzParse: the transcript parser never panics, and what it accepts formats back to a
// transcript that parses to the same exchanges.
func FuzzParse(f *testing.F) {
	f.Add("# c\n> 00 A4 04 00 01 A0\n< 90 00\n> 00CA0000 ..\n< 6A82\n")
	f.Fuzz(func(t *testing.T, s string) {
		ex, err := Parse(strings.NewReader(s), "fuzz")
		if err != nil {
			return
		}
		var b bytes.Buffer
		if err := Format(&b, ex); err != nil {
			t.Fatal(err)
		}
		back, err := Parse(&b, "again")
		if err != nil {
			t.Fatalf("formatted transcript does not parse: %v\n%s", err, b.String())
		}
		if len(back) != len(ex) {
			t.Fatalf("%d exchanges became %d", len(ex), len(back))
		}
		for i := range ex {
			if !bytes.Equal(ex[i].Resp, back[i].Resp) || hexAny(ex[i].Cmd, ex[i].Any) != hexAny(back[i].Cmd, back[i].Any) {
				t.Fatalf("exchange %d differs", i)
			}
			if ok, _ := back[i].Match(ex[i].Cmd); !ok {
				t.Fatalf("exchange %d does not match its own command", i)
			}
		}
	})
}

package apdutest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/p11-card/p11-card/apdu"
)

// fakeTB records failures instead of failing the real test.
type fakeTB struct {
	testing.TB
	mu       sync.Mutex
	errs     []string
	fatal    bool
	cleanups []func()
}

func (f *fakeTB) Helper() {}
func (f *fakeTB) Errorf(format string, args ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.errs = append(f.errs, fmt.Sprintf(format, args...))
}
func (f *fakeTB) Fatalf(format string, args ...any) {
	f.Errorf(format, args...)
	f.fatal = true
}
func (f *fakeTB) Fatal(args ...any) { f.Fatalf("%s", fmt.Sprint(args...)) }
func (f *fakeTB) Cleanup(fn func()) { f.cleanups = append(f.cleanups, fn) }
func (f *fakeTB) runCleanups() {
	for _, c := range f.cleanups {
		c()
	}
}
func (f *fakeTB) failures() []string { f.mu.Lock(); defer f.mu.Unlock(); return f.errs }

func hx(s string) []byte {
	b, _, err := parseHex(s, false)
	if err != nil {
		panic(err)
	}
	return b
}

var ctx = context.Background()

func TestReplayHappyPath(t *testing.T) {
	r := Load(t, "testdata/select.apdu")
	// apdu.Exchange drives the GET RESPONSE from the transcript.
	resp, err := apdu.Exchange(ctx, r, apdu.Command{INS: 0xA4, P1: 4, Data: hx("A000000308"), Ne: 256}, apdu.Options{})
	if err != nil || resp.SW != apdu.SWOK || !bytes.Equal(resp.Data, hx("61114F")) {
		t.Fatalf("Exchange = % X %v %v", resp.Data, resp.SW, err)
	}
	got, err := r.Transmit(ctx, hx("0087039B0C7C0A8108 1122334455667788"))
	if err != nil || !bytes.Equal(got, hx("9000")) {
		t.Fatalf("wildcard command: % X %v", got, err)
	}
	if r.Remaining() != 0 {
		t.Fatalf("Remaining = %d", r.Remaining())
	}
}

func TestReplayFailures(t *testing.T) {
	ex, err := Parse(strings.NewReader("> 00A40400 01 A0\n< 9000\n> 00CA0000 ..\n< 6A82\n"), "x.apdu")
	if err != nil {
		t.Fatal(err)
	}
	t.Run("differing command", func(t *testing.T) {
		ft := &fakeTB{TB: t}
		r := NewReplayer(ft, "x.apdu", ex)
		_, err := r.Transmit(ctx, hx("00A40400 01 A1"))
		if !errors.Is(err, ErrMismatch) {
			t.Fatalf("err = %v", err)
		}
		f := ft.failures()
		if len(f) != 1 || !strings.Contains(f[0], "x.apdu:1: command 1 differs at byte 5") ||
			!strings.Contains(f[0], "want 00 A4 04 00 01 A0") || !strings.Contains(f[0], "got  00 A4 04 00 01 A1") {
			t.Fatalf("failures %q", f)
		}
		// The caret sits under the differing byte.
		lines := strings.Split(f[0], "\n")
		if c := strings.Index(lines[3], "^"); c != strings.Index(lines[2], "A1") {
			t.Fatalf("caret at %d, byte at %d:\n%s", c, strings.Index(lines[2], "A1"), f[0])
		}
		// Later calls fail quietly; cleanup does not pile on.
		if _, err := r.Transmit(ctx, hx("00A40400 01 A0")); err == nil {
			t.Fatal("call after a mismatch succeeded")
		}
		ft.runCleanups()
		if len(ft.failures()) != 1 {
			t.Fatalf("failures %q", ft.failures())
		}
	})
	t.Run("length differs", func(t *testing.T) {
		ft := &fakeTB{TB: t}
		r := NewReplayer(ft, "x.apdu", ex)
		if _, err := r.Transmit(ctx, hx("00A40400 01 A0 00")); !errors.Is(err, ErrMismatch) {
			t.Fatalf("err = %v", err)
		}
		if f := ft.failures(); len(f) != 1 || !strings.Contains(f[0], "differs at byte 6") {
			t.Fatalf("failures %q", f)
		}
	})
	t.Run("extra command", func(t *testing.T) {
		ft := &fakeTB{TB: t}
		r := NewReplayer(ft, "x.apdu", ex)
		for _, c := range []string{"00A4040001A0", "00CA0000FF"} {
			if _, err := r.Transmit(ctx, hx(c)); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := r.Transmit(ctx, hx("00CA0000FF")); !errors.Is(err, ErrExhausted) {
			t.Fatalf("err = %v", err)
		}
		if f := ft.failures(); len(f) != 1 || !strings.Contains(f[0], "extra command 3") {
			t.Fatalf("failures %q", f)
		}
	})
	t.Run("unused exchanges", func(t *testing.T) {
		ft := &fakeTB{TB: t}
		r := NewReplayer(ft, "x.apdu", ex)
		if _, err := r.Transmit(ctx, hx("00A4040001A0")); err != nil {
			t.Fatal(err)
		}
		if len(ft.failures()) != 0 {
			t.Fatal("failed before cleanup")
		}
		ft.runCleanups()
		if f := ft.failures(); len(f) != 1 || !strings.Contains(f[0], "x.apdu:3: 1 of 2 exchanges never used") ||
			!strings.Contains(f[0], "00 CA 00 00 ..") {
			t.Fatalf("failures %q", f)
		}
	})
	t.Run("all used", func(t *testing.T) {
		ft := &fakeTB{TB: t}
		r := NewReplayer(ft, "x.apdu", ex)
		r.Transmit(ctx, hx("00A4040001A0"))
		r.Transmit(ctx, hx("00CA000000"))
		ft.runCleanups()
		if f := ft.failures(); len(f) != 0 {
			t.Fatalf("failures %q", f)
		}
	})
	t.Run("missing file", func(t *testing.T) {
		ft := &fakeTB{TB: t}
		Load(ft, "testdata/nonexistent.apdu")
		if !ft.fatal {
			t.Fatal("missing transcript did not fail the test")
		}
	})
}

func TestParseErrors(t *testing.T) {
	for name, in := range map[string]string{
		"response first":       "< 9000\n",
		"two commands":         "> 00A40400\n> 00A40400\n< 9000\n",
		"no final response":    "> 00A40400\n",
		"odd digits":           "> 00A4040\n< 9000\n",
		"bad hex":              "> 00A4040G\n< 9000\n",
		"wildcard in response": "> 00A40400\n< .. 9000\n",
		"short command":        "> 00A4\n< 9000\n",
		"short response":       "> 00A40400\n< 90\n",
		"unknown line":         "= 00\n",
		"half wildcard":        "> 00A40400 .0\n< 9000\n",
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := Parse(strings.NewReader(in), "t"); !errors.Is(err, ErrSyntax) {
				t.Fatalf("Parse(%q) = %v, want ErrSyntax", in, err)
			}
		})
	}
}

func TestReplayerLock(t *testing.T) {
	r := NewReplayer(t, "lock", nil)
	unlock, reset, err := r.Lock(ctx)
	if err != nil || reset {
		t.Fatalf("Lock = %v %v", reset, err)
	}
	unlock()
	unlock() // idempotent
	r.ResetNext()
	unlock, reset, err = r.Lock(ctx)
	if err != nil || !reset {
		t.Fatalf("Lock after ResetNext = %v %v", reset, err)
	}
	unlock()
	if _, reset, _ := r.Lock(ctx); reset {
		t.Fatal("reset reported twice")
	}
}

// card is a tiny Transmitter for recording.
type card struct{ answers map[byte]string }

func (c card) Transmit(_ context.Context, cmd []byte) ([]byte, error) {
	if a, ok := c.answers[cmd[1]]; ok {
		return hx(a), nil
	}
	return nil, errors.New("card gone")
}

func TestRecorderRoundTrip(t *testing.T) {
	rec := NewRecorder(card{answers: map[byte]string{0xA4: "6103", 0xC0: "0102039000", 0x20: "9000", 0x24: "9000", 0x2C: "9000", 0xFE: "9000", 0xCB: "9000"}}, "")
	rec.Comment("select\nand more")
	cmds := []string{
		"00A40400 05 A000000308 00",
		"00C0000003",
		"00200080 08 393837363534FFFF",                  // PIV VERIFY, real PIN 987654
		"00240080 10 393837363534FFFF 3131313131FFFFFF", // PIV CHANGE REFERENCE DATA
		"002C0080 10 3837363534333231 3939393939FFFFFF", // RESET RETRY COUNTER with PUK
		"00200081 06 393837363534",                      // OpenPGP VERIFY, no padding
		"10FE079A 04 06010203",                          // Yubico IMPORT KEY part
		"00CB3FFF 03 5C017E 00",
	}
	for _, c := range cmds {
		if _, err := rec.Transmit(ctx, hx(c)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := rec.Transmit(ctx, hx("00B00000")); err == nil {
		t.Fatal("error not passed through")
	}
	var buf bytes.Buffer
	if _, err := rec.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, secret := range []string{"39 38 37", "31 31 31 31 31", "38 37 36 35", "06 01 02 03"} {
		if strings.Contains(out, secret) {
			t.Errorf("transcript holds secret bytes %q:\n%s", secret, out)
		}
	}
	for _, want := range []string{
		"# select\n# and more\n",
		"> 00 20 00 80 08 31 32 33 34 35 36 FF FF\n",
		"> 00 24 00 80 10 31 32 33 34 35 36 FF FF 31 32 33 34 35 FF FF FF\n",
		"> 00 2C 00 80 10 31 32 33 34 35 36 31 32 33 34 35 36 31 FF FF FF\n",
		"> 00 20 00 81 06 31 32 33 34 35 36\n",
		"> 10 FE 07 9A 04 .. .. .. ..\n",
		"> 00 CB 3F FF 03 5C 01 7E 00\n< 90 00\n",
		"# > 00 B0 00 00: error: card gone\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("transcript lacks %q:\n%s", want, out)
		}
	}
	if rec.Len() != len(cmds) {
		t.Fatalf("Len = %d", rec.Len())
	}
	// The transcript replays: the driver using the test PIN sends exactly these bytes,
	// and the import key data is a wildcard.
	p := filepath.Join(t.TempDir(), "rec.apdu")
	if err := rec.Save(p); err != nil {
		t.Fatal(err)
	}
	r := Load(t, p)
	replay := []string{
		"00A40400 05 A000000308 00",
		"00C0000003",
		"00200080 08 313233343536FFFF",
		"00240080 10 313233343536FFFF 3132333435FFFFFF",
		"002C0080 10 3132333435363132 3334353631FFFFFF",
		"00200081 06 313233343536",
		"10FE079A 04 AABBCCDD",
		"00CB3FFF 03 5C017E 00",
	}
	for _, c := range replay {
		if _, err := r.Transmit(ctx, hx(c)); err != nil {
			t.Fatalf("replay %s: %v", c, err)
		}
	}
	if b, _ := os.ReadFile(p); !bytes.Equal(b, buf.Bytes()) {
		t.Fatal("Save and WriteTo differ")
	}
}

func TestSanitizeMalformedSecret(t *testing.T) {
	e := Sanitize(hx("00200080 05 3132"), []byte("123456"))
	if hexAny(e.Cmd, e.Any) != "00 20 00 80 .. .. .." {
		t.Fatalf("Sanitize = %s", hexAny(e.Cmd, e.Any))
	}
	e = Sanitize(hx("00DB3FFF 000003 4D0100 0000"), nil)
	if hexAny(e.Cmd, e.Any) != "00 DB 3F FF 00 00 03 .. .. .. 00 00" {
		t.Fatalf("Sanitize extended = %s", hexAny(e.Cmd, e.Any))
	}
}

func TestFormatParseRoundTrip(t *testing.T) {
	ex := []Exchange{
		{Cmd: hx("00A4040001A0"), Resp: hx("9000")},
		{Cmd: hx("0087000002 0000"), Any: []bool{false, false, false, false, false, true, true}, Resp: hx("01029000")},
	}
	var b bytes.Buffer
	if err := Format(&b, ex); err != nil {
		t.Fatal(err)
	}
	back, err := Parse(&b, "fmt")
	if err != nil || len(back) != 2 {
		t.Fatalf("%v %v", back, err)
	}
	if ok, _ := back[1].Match(hx("0087000002 FFEE")); !ok {
		t.Fatal("wildcards lost")
	}
	if ok, _ := back[0].Match(hx("0087000002 FFEE")); ok {
		t.Fatal("matched a different command")
	}
}

package trace

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestCategories(t *testing.T) {
	t.Cleanup(func() { SetOutput("", nil) })
	tests := []struct {
		env  string
		on   []string
		offs []string
	}{
		{"", nil, []string{"pcsc", "apdu"}},
		{"pcsc", []string{"pcsc"}, []string{"apdu", "p11"}},
		{"pcsc,apdu", []string{"pcsc", "apdu"}, []string{"p11"}},
		{" PCSC , Apdu ", []string{"pcsc", "apdu"}, []string{"slot"}},
		{"all", []string{"pcsc", "apdu", "p11", "slot", "piv", "openpgp"}, nil},
		{"1", []string{"pcsc", "piv"}, nil},
		{"0", nil, []string{"pcsc"}},
		{"off", nil, []string{"pcsc"}},
	}
	for _, tt := range tests {
		t.Run(tt.env, func(t *testing.T) {
			var buf syncBuf
			SetOutput(tt.env, &buf)
			for _, c := range tt.on {
				if !On(c) {
					t.Errorf("On(%q) = false", c)
				}
				Printf(c, "hello %d", 42)
				if !strings.Contains(buf.String(), " p11-card "+c+": hello 42\n") {
					t.Errorf("output %q lacks the %s line", buf.String(), c)
				}
			}
			for _, c := range tt.offs {
				if On(c) {
					t.Errorf("On(%q) = true", c)
				}
				before := buf.String()
				Printf(c, "quiet")
				if buf.String() != before {
					t.Errorf("category %s wrote while off", c)
				}
			}
		})
	}
}

func TestFile(t *testing.T) {
	t.Cleanup(func() { SetOutput("", nil) })
	p := filepath.Join(t.TempDir(), "trace.log")
	Setup("apdu", p)
	Printf("apdu", "> 00 A4 04 00\n")
	Printf("pcsc", "not this")
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if s := string(b); !strings.Contains(s, "apdu: > 00 A4 04 00\n") || strings.Contains(s, "not this") || strings.Count(s, "\n") != 1 {
		t.Fatalf("file holds %q", s)
	}
	if fi, _ := os.Stat(p); fi.Mode().Perm() != 0o600 {
		t.Fatalf("trace file mode %v, want 0600", fi.Mode().Perm())
	}
}

func TestConcurrentLinesWhole(t *testing.T) {
	t.Cleanup(func() { SetOutput("", nil) })
	var buf syncBuf
	SetOutput("all", &buf)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 50 {
				Printf("slot", "worker %d %s", i, strings.Repeat("x", 100))
			}
		}()
	}
	wg.Wait()
	lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	if len(lines) != 400 {
		t.Fatalf("%d lines, want 400", len(lines))
	}
	for _, l := range lines {
		if !strings.HasSuffix(l, strings.Repeat("x", 100)) {
			t.Fatalf("torn line %q", l)
		}
	}
}

func TestOffAllocatesNothing(t *testing.T) {
	t.Cleanup(func() { SetOutput("", nil) })
	SetOutput("", nil)
	b := []byte{1, 2, 3}
	n := testing.AllocsPerRun(100, func() {
		if On("apdu") {
			Printf("apdu", "% X", b)
		}
		Printf("pcsc", "call")
	})
	if n != 0 {
		t.Fatalf("%v allocations per call with tracing off", n)
	}
}

func BenchmarkOff(b *testing.B) {
	SetOutput("", nil)
	for b.Loop() {
		Printf("apdu", "x")
	}
}

// TestEnvironment runs this test binary again with the variables set, so the first-use
// path that reads the environment is what gets tested.
func TestEnvironment(t *testing.T) {
	if os.Getenv("TRACE_HELPER") == "1" {
		Printf("pcsc", "from child")
		Printf("apdu", "hidden")
		return
	}
	p := filepath.Join(t.TempDir(), "env.log")
	cmd := exec.Command(os.Args[0], "-test.run=^TestEnvironment$")
	cmd.Env = append(os.Environ(), "TRACE_HELPER=1", "P11CARD_DEBUG=pcsc", "P11CARD_DEBUG_FILE="+p)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if s := string(b); !strings.Contains(s, "pcsc: from child") || strings.Contains(s, "hidden") {
		t.Fatalf("child wrote %q", s)
	}
}

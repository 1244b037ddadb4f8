package trace

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// config is one parsed environment; replaced whole by Setup.
type config struct {
	all  bool
	cats map[string]bool
	mu   sync.Mutex // serialises writes to w
	w    io.Writer
}

var (
	cur      atomic.Pointer[config]
	initOnce sync.Once
	off      = &config{}
)

func load() *config {
	initOnce.Do(func() {
		if cur.Load() == nil {
			Setup(os.Getenv("P11CARD_DEBUG"), os.Getenv("P11CARD_DEBUG_FILE"))
		}
	})
	return cur.Load()
}

// Setup sets the categories (the syntax of P11CARD_DEBUG) and the output file (empty for
// stderr). A file that cannot be opened falls back to stderr with a note there.
func Setup(categories, file string) {
	c := parse(categories)
	if c == nil {
		cur.Store(off)
		return
	}
	c.w = os.Stderr
	if file != "" {
		f, err := os.OpenFile(file, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
		if err != nil {
			fmt.Fprintf(os.Stderr, "p11-card: trace: %v; tracing to stderr\n", err)
		} else {
			c.w = f
		}
	}
	cur.Store(c)
}

// SetOutput sets categories and an explicit writer (tests). categories "" turns tracing off.
func SetOutput(categories string, w io.Writer) {
	initOnce.Do(func() {})
	c := parse(categories)
	if c == nil {
		cur.Store(off)
		return
	}
	c.w = w
	cur.Store(c)
}

func parse(s string) *config {
	c := &config{cats: map[string]bool{}}
	for _, f := range strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' || r == ';' }) {
		f = strings.ToLower(strings.TrimSpace(f))
		switch f {
		case "", "0", "off", "none":
		case "all", "1", "*", "on":
			c.all = true
		default:
			c.cats[f] = true
		}
	}
	if !c.all && len(c.cats) == 0 {
		return nil
	}
	return c
}

// On reports whether category cat is traced.
func On(cat string) bool {
	c := load()
	return c.all || c.cats[cat]
}

// Printf writes one line for category cat when it is traced: a timestamp, the category
// and the formatted message. A trailing newline is added if missing.
func Printf(cat, format string, args ...any) {
	c := load()
	if !c.all && !c.cats[cat] {
		return
	}
	var b strings.Builder
	b.WriteString(time.Now().UTC().Format("15:04:05.000000"))
	b.WriteString(" p11-card ")
	b.WriteString(cat)
	b.WriteString(": ")
	fmt.Fprintf(&b, format, args...)
	if !strings.HasSuffix(b.String(), "\n") {
		b.WriteByte('\n')
	}
	c.mu.Lock()
	io.WriteString(c.w, b.String())
	c.mu.Unlock()
}

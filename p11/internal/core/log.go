package core

import (
	"fmt"
	"os"
	"strings"
	"sync"
)

var (
	logOnce sync.Once
	logOn   bool
)

// logf writes a "p11" diagnostic to stderr when P11CARD_DEBUG names p11 (or all). Callers
// never pass PINs, key material or plaintext.
func logf(format string, args ...any) {
	logOnce.Do(func() {
		for _, c := range strings.Split(os.Getenv("P11CARD_DEBUG"), ",") {
			if c = strings.TrimSpace(c); c == "p11" || c == "all" {
				logOn = true
			}
		}
	})
	if logOn {
		fmt.Fprintf(os.Stderr, "p11-card: p11: "+format+"\n", args...)
	}
}

// Logf is logf for the cgo layer (stack traces of recovered panics).
func Logf(format string, args ...any) { logf(format, args...) }

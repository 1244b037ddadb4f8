package core

import "github.com/p11-card/p11-card/internal/trace"

// logf writes a "p11" trace line (P11CARD_DEBUG=p11). Callers never pass PINs, key
// material or plaintext.
func logf(format string, args ...any) { trace.Printf("p11", format, args...) }

// Logf is logf for the cgo layer.
func Logf(format string, args ...any) { logf(format, args...) }

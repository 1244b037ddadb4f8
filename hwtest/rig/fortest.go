package rig

import (
	"context"
	"os"
	"testing"
	"time"
)

// ForTest starts a rig of its own for one test and points this process at it, stopping
// it when the test ends. Without a rig the test is skipped, or fails under
// P11CARD_RIG_REQUIRED=1. libpcsclite reads the socket's name at the process's first
// PC/SC call: a test binary has one rig.
func ForTest(t testing.TB, opt Options) *Rig {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	r, err := Start(ctx, opt)
	cancel()
	if err != nil {
		if os.Getenv("P11CARD_RIG_REQUIRED") == "1" {
			t.Fatalf("rig: %v", err)
		}
		t.Skipf("no rig: %v", err)
	}
	t.Cleanup(func() { r.Stop() })
	t.Cleanup(r.Setenv())
	return r
}

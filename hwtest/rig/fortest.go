package rig

import (
	"context"
	"os"
	"sync"
	"testing"
	"time"
)

// ForTest starts a rig of its own for one test and points this process at it, stopping
// it when the test ends. Without a rig the test is skipped, or fails under
// P11CARD_RIG_REQUIRED=1. libpcsclite reads the socket's name at the process's first
// PC/SC call, so every rig ForTest starts in one process (one after the other, as with
// -count=N) has its socket at the same path; give opt.Dir to choose it.
func ForTest(t testing.TB, opt Options) *Rig {
	t.Helper()
	own := opt.Dir == ""
	if own {
		d, err := testDir()
		if err != nil {
			t.Fatalf("rig: %v", err)
		}
		opt.Dir = d
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	r, err := Start(ctx, opt)
	cancel()
	if err != nil {
		if own {
			os.RemoveAll(opt.Dir)
		}
		if os.Getenv("P11CARD_RIG_REQUIRED") == "1" {
			t.Fatalf("rig: %v", err)
		}
		t.Skipf("no rig: %v", err)
	}
	t.Cleanup(func() {
		r.Stop()
		if own {
			os.RemoveAll(opt.Dir) // Start makes it again, at the same path
		}
	})
	t.Cleanup(r.Setenv())
	return r
}

var forTest struct {
	sync.Mutex
	dir string
}

// testDir is the directory of this process's test rigs: a new temporary one at the first
// call, the same path after.
func testDir() (string, error) {
	forTest.Lock()
	defer forTest.Unlock()
	if forTest.dir == "" {
		d, err := os.MkdirTemp("", "p11card-rig-")
		if err != nil {
			return "", err
		}
		forTest.dir = d
	}
	return forTest.dir, nil
}

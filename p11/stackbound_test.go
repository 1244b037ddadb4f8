//go:build linux

package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestStackBound runs testdata/stackbound.c, linked with stackbound.c as the module is:
// for the main thread its top is the end of the stack's mapping and its bottom the limit
// below (glibc's bottom, for limits up to 32 MB; 32 MB for larger ones), and for another
// thread it gives glibc's own answer. It runs again with 64 KB in the environment, which
// puts the mapping's end pages above where the process's first frame lies.
func TestStackBound(t *testing.T) {
	gcc, err := exec.LookPath("gcc")
	if err != nil {
		t.Skip("no gcc")
	}
	bin := filepath.Join(t.TempDir(), "stackbound")
	if out, err := exec.Command(gcc, "-Wall", "-Werror", "-Wl,--wrap=pthread_getattr_np", "-o", bin,
		"testdata/stackbound.c", "stackbound.c", "-lpthread").CombinedOutput(); err != nil {
		t.Fatalf("gcc: %v\n%s", err, out)
	}
	for _, env := range [][]string{nil, {"P11CARD_TEST_FILL=" + strings.Repeat("x", 64<<10)}} {
		cmd := exec.Command(bin)
		cmd.Env = append(os.Environ(), env...)
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), "ALL PASS") {
			t.Errorf("environment +%d bytes: %v\n%s", len(strings.Join(env, "")), err, out)
		}
	}
}

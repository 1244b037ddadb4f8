//go:build hwtest

package hwtest

import (
	"context"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/p11-card/p11-card/cards/piv/pivtest"
)

// cProgram compiles testdata/<name>.c against the module's header.
func cProgram(t *testing.T, name string) string {
	t.Helper()
	gcc := needTool(t, "gcc")
	hdr, _ := filepath.Abs("../p11")
	bin := filepath.Join(t.TempDir(), name)
	if out, err := exec.Command(gcc, "-Wall", "-Werror", "-I", hdr, "-o", bin, filepath.Join("testdata", name+".c"), "-ldl", "-lpthread").CombinedOutput(); err != nil {
		t.Fatalf("gcc %s.c: %v\n%s", name, err, out)
	}
	return bin
}

// runCTable runs a compiled table program against the module: every FAIL line fails the
// test, and the program must end with ALL PASS. It returns the output.
func runCTable(t *testing.T, timeout time.Duration, bin string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	out, err := toolCmd(t, ctx, bin, args...).CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("%s hung:\n%s", filepath.Base(bin), out)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(line, "FAIL") {
			t.Error(line)
		}
	}
	if err != nil || !strings.Contains(string(out), "ALL PASS") {
		t.Errorf("%s: %v\n%s", filepath.Base(bin), err, out)
	}
	return string(out)
}

// TestModuleCBadArguments runs the bad-argument table (testdata/cbadargs.c) through the
// built library: NULL pointers, invalid session, slot, object and key handles, short
// buffers, wrong mechanisms and parameters, and calls in the wrong session state, each
// against the return values PKCS #11 2.40 allows.
func TestModuleCBadArguments(t *testing.T) {
	modCard(t, pivtest.Options{})
	so, _ := modBuild(t)
	out := runCTable(t, 2*time.Minute, cProgram(t, "cbadargs"), so)
	m := regexp.MustCompile(`(?m)^ROWS (\d+)$`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no ROWS line:\n%s", out)
	}
	t.Logf("%s rows", m[1])
	if testing.Verbose() {
		t.Logf("\n%s", out)
	}
}

// TestModuleCForks forks 100 children (10 at a time) of a parent that is initialised,
// logged in and busy signing and listing in two threads (testdata/cforks.c): each child
// must fail cleanly as p11/doc.go says (or work), none may hang or crash, and the parent
// must still sign afterwards. Children that exec load the module fresh and list the token.
func TestModuleCForks(t *testing.T) {
	modCard(t, pivtest.Options{})
	so, _ := modBuild(t)
	out := runCTable(t, 3*time.Minute, cProgram(t, "cforks"), so)
	for _, re := range []string{`(?m)^FORKS .*$`, `(?m)^EXEC .*$`, `(?m)^SIGNATURES .*$`} {
		m := regexp.MustCompile(re).FindString(out)
		if m == "" {
			t.Errorf("no %s line:\n%s", re, out)
			continue
		}
		t.Log(m)
	}
}

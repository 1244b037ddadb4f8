//go:build hwtest

// Tests in package hwtest run against one shared rig: a private pcscd with four vpcd
// readers that TestMain starts. Readers 0 and 1 are named like a YubiKey's CCID interface
// (ykcs11 only looks at readers whose name starts with "Yubico"); 2 and 3 are "Virtual PCD".
// Tests run one after the other and leave every reader empty (insert removes at cleanup).
//
// Run by hand, a missing prerequisite (pcscd, vpcd, a client tool) skips the test with the
// reason; with P11CARD_RIG_REQUIRED=1 (as `make test` sets) it fails instead.
package hwtest

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/p11-card/p11-card/cards/vcard"
	"github.com/p11-card/p11-card/hwtest/rig"
)

// Reader names of the shared rig (pcscd appends " 00 00", " 00 01").
const (
	yubicoReaderName = "Yubico YubiKey OTP+FIDO+CCID"
	vpcdReaderName   = "Virtual PCD"
)

var (
	sharedRig *rig.Rig
	rigErr    error
)

// rigRequired is true under `make test`: missing prerequisites fail instead of skipping.
func rigRequired() bool { return os.Getenv("P11CARD_RIG_REQUIRED") == "1" }

func TestMain(m *testing.M) {
	flag.Parse()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	start := time.Now()
	sharedRig, rigErr = rig.Start(ctx, rig.Options{Readers: 4, Names: []string{yubicoReaderName, vpcdReaderName}, Debug: true})
	cancel()
	if rigErr != nil {
		if rigRequired() {
			fmt.Fprintf(os.Stderr, "hwtest: the rig is required (P11CARD_RIG_REQUIRED=1) but did not start: %v\n", rigErr)
			os.Exit(1)
		}
		fmt.Fprintf(os.Stderr, "hwtest: no rig, tests that need it skip: %v\n", rigErr)
	} else {
		// Before anything in this process touches PC/SC: libpcsclite reads it once.
		sharedRig.Setenv()
		if testing.Verbose() {
			fmt.Fprintf(os.Stderr, "hwtest: rig up in %v at %s\n", time.Since(start).Round(time.Millisecond), sharedRig.Socket())
		}
	}
	code := vcard.RunWithPrivateJournals(m) // the module's processes inherit the directory
	if sharedRig != nil {
		sharedRig.Stop()
	}
	if cliDir != "" {
		os.RemoveAll(cliDir)
	}
	os.Exit(code)
}

// missing ends the test for a missing prerequisite: a skip by hand, a failure under
// `make test`.
func missing(t testing.TB, format string, args ...any) {
	t.Helper()
	if rigRequired() {
		t.Fatalf("prerequisite missing (P11CARD_RIG_REQUIRED=1): "+format, args...)
	}
	t.Skipf("prerequisite missing: "+format, args...)
}

// testRig returns the shared rig, or skips (fails when required) when it did not start.
func testRig(t testing.TB) *rig.Rig {
	t.Helper()
	if rigErr != nil {
		missing(t, "rig: %v", rigErr)
	}
	return sharedRig
}

// insert puts c into reader i of the shared rig and removes it when the test ends.
func insert(t testing.TB, i int, c vcard.Card) {
	t.Helper()
	r := testRig(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := r.Insert(ctx, i, c); err != nil {
		t.Fatalf("insert into reader %d: %v", i, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := r.Remove(ctx, i); err != nil {
			t.Errorf("remove from reader %d: %v", i, err)
		}
	})
}

// remove takes the card out of reader i now (insert's cleanup then finds it empty).
func remove(t testing.TB, i int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := testRig(t).Remove(ctx, i); err != nil {
		t.Fatalf("remove from reader %d: %v", i, err)
	}
}

// needTool returns the path of a client program, or skips (fails when required).
func needTool(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		missing(t, "%s not found in PATH (`make deps` installs it)", name)
	}
	return p
}

// toolCmd prepares a client program to run against the rig.
func toolCmd(t testing.TB, ctx context.Context, name string, args ...string) *exec.Cmd {
	t.Helper()
	r := testRig(t)
	cmd := exec.CommandContext(ctx, needTool(t, name), args...)
	cmd.Env = append(os.Environ(), r.Env()...)
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

// runTool runs a client program against the rig (2 min limit) and returns its combined
// output; a non-zero exit fails the test with the output.
func runTool(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := runToolErr(t, name, args...)
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return out
}

// runToolErr is runTool for a run that may fail: the error is returned, not fatal.
func runToolErr(t testing.TB, name string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := toolCmd(t, ctx, name, args...).CombinedOutput()
	return string(out), err
}

var (
	cliOnce sync.Once
	cliPath string
	cliErr  error
	cliDir  string
)

// p11card returns the path of a p11-card binary built from this tree (once per test
// run), for tests of the CLI against the rig. Run it with toolCmd or runTool.
func p11card(t testing.TB) string {
	t.Helper()
	cliOnce.Do(func() {
		cliDir, cliErr = os.MkdirTemp("", "p11card-cli-")
		if cliErr != nil {
			return
		}
		cliPath = filepath.Join(cliDir, "p11-card")
		cmd := exec.Command(filepath.Join(runtime.GOROOT(), "bin", "go"), "build", "-o", cliPath, "../cmd/p11-card")
		if out, err := cmd.CombinedOutput(); err != nil {
			cliErr = fmt.Errorf("go build ./cmd/p11-card: %v\n%s", err, out)
		}
	})
	if cliErr != nil {
		t.Fatalf("%v", cliErr)
	}
	return cliPath
}

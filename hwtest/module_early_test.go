//go:build hwtest

package hwtest

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/p11-card/p11-card/cards/piv/pivtest"
)

// earlyTrace marks, in the "pcsc" trace, a context the first C_Initialize opened in C
// while the Go runtime was starting (pcsc/early.c).
const earlyTrace = "SCardEstablishContext (made in C_Initialize)"

// TestModuleEarlyContexts: the first C_Initialize opens its PC/SC contexts before it
// enters Go, and the slot manager's start takes them: the reader scan one, the first card
// the other. With no card, the one left over is released; so is every context at
// C_Finalize. pcscd's own log shows no context left open and none opened twice.
func TestModuleEarlyContexts(t *testing.T) {
	r := testRig(t)
	if r.ClientCalls() < 0 {
		missing(t, "the shared rig runs pcscd without -d: its calls cannot be counted")
	}
	so, _ := modBuild(t)
	run := func(what string, wantEarly int) {
		t.Helper()
		at := fileSize(r.LogPath())
		cmd := toolCmd(t, t.Context(), "pkcs11-tool", "--module", so, "-L")
		cmd.Env = append(cmd.Env, "P11CARD_DEBUG=pcsc")
		b, err := cmd.CombinedOutput()
		out := string(b)
		if err != nil {
			t.Fatalf("%s: pkcs11-tool -L: %v\n%s", what, err, out)
		}
		// The watcher's Wait, 50 ms after the start (Options.FirstWait), may take the
		// second early context of a card-less start before Start releases it, or, in a
		// slow run, open one of its own: nothing else opens one.
		early, all := strings.Count(out, earlyTrace), strings.Count(out, "SCardEstablishContext")
		if early < wantEarly || early > 2 || all > early+1 {
			t.Errorf("%s: %d contexts taken from C_Initialize's, %d in all; want %d (or 2) taken and at most the Wait's besides\n%s",
				what, early, all, wantEarly, out)
		}
		// pcscd saw the two opened in C and those Go opened, each released once.
		calls := pcscdCalls(r.LogPath(), at)
		if e, rel := calls["ESTABLISH_CONTEXT"], calls["RELEASE_CONTEXT"]; e != 2+all-early || rel != e {
			t.Errorf("%s: pcscd saw %d contexts established and %d released; want %d and as many (%v)", what, e, rel, 2+all-early, calls)
		}
	}
	// No card: the reader scan takes one, and Start releases the other.
	run("no card", 1)
	modCard(t, pivtest.Options{})
	run("a card in reader 0", 2)
}

// TestModuleEarlyContextsRefused: a first C_Initialize refused for its arguments starts
// nothing, and releases the contexts it opened before it returns; the next C_Initialize
// opens its own and works.
func TestModuleEarlyContextsRefused(t *testing.T) {
	r := testRig(t)
	if r.ClientCalls() < 0 {
		missing(t, "the shared rig runs pcscd without -d: its calls cannot be counted")
	}
	modCard(t, pivtest.Options{})
	so, _ := modBuild(t)
	bin := cProgram(t, "crefused")
	at := fileSize(r.LogPath())
	cmd := toolCmd(t, t.Context(), bin, so)
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	outp, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	lines := bufio.NewScanner(outp)
	if !lines.Scan() || lines.Text() != "refused 0x7" {
		t.Fatalf("first C_Initialize: %q; want CKR_ARGUMENTS_BAD (0x7)", lines.Text())
	}
	calls := pcscdCalls(r.LogPath(), at)
	if e, rel := calls["ESTABLISH_CONTEXT"], calls["RELEASE_CONTEXT"]; e != 2 || rel != 2 {
		t.Errorf("after the refused C_Initialize pcscd saw %d contexts established and %d released; want 2 and 2 (%v)", e, rel, calls)
	}
	if _, err := in.Write([]byte("go\n")); err != nil {
		t.Fatal(err)
	}
	var rest []string
	for lines.Scan() {
		rest = append(rest, lines.Text())
	}
	if want := []string{"initialize 0x0", "tokens 1", "finalize 0x0"}; strings.Join(rest, "; ") != strings.Join(want, "; ") {
		t.Errorf("after it: %q; want %q", rest, want)
	}
	if err := cmd.Wait(); err != nil {
		t.Errorf("client: %v", err)
	}
	calls = pcscdCalls(r.LogPath(), at)
	if e, rel := calls["ESTABLISH_CONTEXT"], calls["RELEASE_CONTEXT"]; e < 3 || rel != e {
		t.Errorf("over the whole run pcscd saw %d contexts established and %d released; want as many (%v)", e, rel, calls)
	}
}

// TestModuleMainThreadStack: pkcs11-tool, which calls the module from its main thread,
// runs without anything reading /proc/self/maps: the Go runtime's question about that
// thread's stack is answered by p11/stackbound.c, not by glibc's scan of the file.
func TestModuleMainThreadStack(t *testing.T) {
	modCard(t, pivtest.Options{})
	so, _ := modBuild(t)
	if out, err := exec.Command(needTool(t, "strace"), "-o", os.DevNull, "true").CombinedOutput(); err != nil {
		t.Skipf("strace cannot trace here (a container without ptrace?): %v\n%s", err, out)
	}
	trace := filepath.Join(t.TempDir(), "strace")
	cmd := toolCmd(t, t.Context(), "strace", "-f", "-e", "trace=open,openat", "-o", trace,
		needTool(t, "pkcs11-tool"), "--module", so, "-L")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("strace pkcs11-tool -L: %v\n%s", err, out)
	}
	b, err := os.ReadFile(trace)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), so) {
		t.Fatalf("the trace does not show the module opened:\n%s", b)
	}
	if strings.Contains(string(b), "/proc/self/maps") {
		t.Errorf("/proc/self/maps was read:\n%s", b)
	}
}

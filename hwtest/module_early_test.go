//go:build hwtest

package hwtest

import (
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
	run := func(what string, wantEarly, wantTraced int) {
		t.Helper()
		at := fileSize(r.LogPath())
		ctx := toolCmd(t, t.Context(), "pkcs11-tool", "--module", so, "-L")
		ctx.Env = append(ctx.Env, "P11CARD_DEBUG=pcsc")
		b, err := ctx.CombinedOutput()
		out := string(b)
		if err != nil {
			t.Fatalf("%s: pkcs11-tool -L: %v\n%s", what, err, out)
		}
		if n := strings.Count(out, earlyTrace); n != wantEarly {
			t.Errorf("%s: %d contexts taken from C_Initialize's; want %d\n%s", what, n, wantEarly, out)
		}
		if n := strings.Count(out, "SCardEstablishContext"); n != wantTraced {
			t.Errorf("%s: %d contexts established; want %d\n%s", what, n, wantTraced, out)
		}
		calls := pcscdCalls(r.LogPath(), at)
		if e, rel := calls["ESTABLISH_CONTEXT"], calls["RELEASE_CONTEXT"]; e != 2 || rel != 2 {
			t.Errorf("%s: pcscd saw %d contexts established and %d released; want 2 and 2 (%v)", what, e, rel, calls)
		}
	}
	// No card: the reader scan takes one, and Start releases the other.
	run("no card", 1, 1)
	modCard(t, pivtest.Options{})
	run("a card in reader 0", 2, 2)
}

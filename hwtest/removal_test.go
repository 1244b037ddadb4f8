//go:build hwtest

package hwtest

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/p11-card/p11-card/cards/piv/pivtest"
	"github.com/p11-card/p11-card/cards/vcard"
)

// removalCKR are the codes PKCS#11 gives for a token that left (pkcs11-usage.md §3.4): an
// operation cut off is CKR_DEVICE_REMOVED, later calls on its sessions
// CKR_SESSION_HANDLE_INVALID (or closed), the slot then has no token.
var removalCKR = map[string]bool{
	"CKR_DEVICE_REMOVED": true, "CKR_SESSION_HANDLE_INVALID": true, "CKR_SESSION_CLOSED": true,
	"CKR_TOKEN_NOT_PRESENT": true, "CKR_OBJECT_HANDLE_INVALID": true,
}

// TestModuleRandomRemoval takes the card out at a random APDU of a random pkcs11-tool
// operation, 200 times (P11CARD_SOAK=1: 1000): every process ends by itself, not by a
// signal, within 10 s; every call into the module returns within 2 s (from the module's
// trace); every CKR_* it reports is one the specification gives for a token that left,
// and each call callCodes names returns only codes its function gives; and after every
// 25 runs a card inserted again signs.
func TestModuleRandomRemoval(t *testing.T) {
	r := testRig(t)
	so, _ := modBuild(t)
	needTool(t, "pkcs11-tool")
	runs := 200
	if os.Getenv("P11CARD_SOAK") == "1" {
		runs = 1000
	}
	c := modKeys(t, pivtest.Options{})
	ops := pivToolOps(t, c)
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := mrand.New(mrand.NewPCG(seed, 0))
	codes := map[string]int{}
	failed := map[string]int{} // by call and code, from the module's trace
	var slowest time.Duration
	var slowestCall struct {
		d    time.Duration
		name string
	}
	ctx := context.Background()
	cardOK := func(run int) {
		t.Helper()
		ictx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		if err := r.Insert(ictx, 0, c); err != nil {
			t.Fatalf("run %d: insert a healthy card: %v", run, err)
		}
		o, err := runToolErr(t, "pkcs11-tool", append([]string{"--module", so}, ops[3]...)...)
		if err != nil {
			t.Errorf("run %d: the card inserted again does not sign: %v\n%s", run, err, o)
		}
		if err := r.Remove(ictx, 0); err != nil {
			t.Fatalf("run %d: remove: %v", run, err)
		}
	}
	for run := 1; run <= runs; run++ {
		at := 1 + rng.IntN(12)
		op := ops[rng.IntN(len(ops))]
		f := &vcard.Faults{RemoveAt: at}
		ictx, cancel := context.WithTimeout(ctx, 20*time.Second)
		if err := r.Insert(ictx, 0, vcard.WithFaults(c, f)); err != nil {
			cancel()
			t.Fatalf("run %d: insert: %v", run, err)
		}
		desc := fmt.Sprintf("run %d (removal at APDU %d, pkcs11-tool %s)", run, at, strings.Join(op[:1], " "))
		tr := runTraced(t, so, op)
		tr.check(t, desc)
		slowest = max(slowest, tr.d)
		if tr.slowest > slowestCall.d {
			slowestCall.d, slowestCall.name = tr.slowest, tr.slowestName
		}
		checkCallCodes(t, desc, tr.failed)
		for k, v := range tr.failed {
			failed[k] += v
		}
		o := tr.out
		for _, code := range ckrName.FindAllString(o, -1) {
			codes[code]++
			if !removalCKR[code] {
				t.Errorf("%s: %s is not a code for a removed token:\n%s", desc, code, o)
			}
		}
		if err := r.Remove(ictx, 0); err != nil && r.Present(0) {
			t.Errorf("%s: remove: %v", desc, err)
		}
		cancel()
		if run%25 == 0 {
			cardOK(run)
		}
	}
	t.Logf("%d removals at random APDUs: codes reported %s; calls that failed, by code: %s; slowest process %v, slowest call %s %v",
		runs, joinCounts(codes), joinCounts(failed), slowest.Round(time.Millisecond), slowestCall.name, slowestCall.d)
}

// pivToolOps are the pkcs11-tool operations the random-fault tests pick from, on modKeys's
// card c: listings with and without login, signatures with each key type (PIN-always 04
// among them), ECDH and RSA decryption. ops[3] is a signature that needs a working card.
func pivToolOps(t *testing.T, c *pivtest.Card) [][]string {
	t.Helper()
	data := writeFile(t, "data", []byte("faulted at random"))
	out := filepath.Join(t.TempDir(), "out")
	ct, _ := rsa.EncryptPKCS1v15(rand.Reader, c.PublicKey(0x9D).(*rsa.PublicKey), []byte("secret"))
	ctFile := writeFile(t, "ct", ct)
	peer, _ := ecdh.P256().GenerateKey(rand.Reader)
	spki, _ := x509.MarshalPKIXPublicKey(peer.PublicKey())
	peerFile := writeFile(t, "peer.der", spki)
	login := []string{"--login", "--pin", modPIN}
	return [][]string{
		{"-L"},
		{"-O"},
		append([]string{"-O"}, login...),
		append([]string{"--sign", "--id", "04", "-m", "ECDSA-SHA256", "--input-file", data, "--output-file", out}, login...),
		append([]string{"--sign", "--id", "01", "-m", "SHA256-RSA-PKCS", "--input-file", data, "--output-file", out}, login...),
		append([]string{"--sign", "--id", "02", "-m", "ECDSA-SHA256", "--input-file", data, "--output-file", out}, login...),
		append([]string{"--derive", "--id", "05", "-m", "ECDH1-DERIVE", "--input-file", peerFile, "--output-file", out}, login...),
		append([]string{"--decrypt", "--id", "03", "-m", "RSA-PKCS", "--input-file", ctFile, "--output-file", out}, login...),
	}
}

// tracedRun is one client process through the module with the module's "p11" trace
// on, which gives every call's return value and duration.
type tracedRun struct {
	out         string
	d           time.Duration
	hung        bool  // still running after 10 s, and killed
	signal      error // ended by a signal
	calls       int   // calls into the module
	slow        []string
	slowest     time.Duration
	slowestName string
	maxRSS      int64 // peak resident memory, KiB
	trace       string
	failed      map[string]int // "C_Sign CKR_DEVICE_ERROR": how many calls returned the code
}

// ckrName finds return values in a client's output (CKR_0x… for codes without a name).
var ckrName = regexp.MustCompile(`CKR_[A-Z_0-9x]+`)

var callLine = regexp.MustCompile(`p11-card p11: (\w+) -> (\w+) \(([^)]+)\)`)

// runTraced runs pkcs11-tool with op, tracing the categories in debug besides "p11".
func runTraced(t *testing.T, so string, op []string, debug ...string) tracedRun {
	t.Helper()
	return runTracedProg(t, "pkcs11-tool", append([]string{"--module", so}, op...), debug...)
}

// runTracedProg is runTraced for any client program (a name in PATH or a path) that loads
// the module.
func runTracedProg(t *testing.T, prog string, args []string, debug ...string) tracedRun {
	t.Helper()
	trace := filepath.Join(t.TempDir(), "trace")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cmd := toolCmd(t, ctx, prog, args...)
	cmd.Env = append(cmd.Env, "P11CARD_DEBUG="+strings.Join(append([]string{"p11"}, debug...), ","), "P11CARD_DEBUG_FILE="+trace)
	start := time.Now()
	o, err := cmd.CombinedOutput()
	r := tracedRun{out: string(o), d: time.Since(start), hung: errors.Is(ctx.Err(), context.DeadlineExceeded)}
	var ee *exec.ExitError
	if errors.As(err, &ee) && ee.ProcessState != nil && !ee.Exited() {
		r.signal = ee
	}
	if cmd.ProcessState != nil {
		if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
			r.maxRSS = ru.Maxrss
		}
	}
	tr, _ := os.ReadFile(trace)
	r.trace = string(tr)
	r.failed = map[string]int{}
	for _, m := range callLine.FindAllStringSubmatch(r.trace, -1) {
		r.calls++
		if m[2] != "CKR_OK" && m[2] != "CKR_BUFFER_TOO_SMALL" {
			r.failed["C_"+strings.TrimPrefix(m[1], "p11")+" "+m[2]]++
		}
		if cd, err := time.ParseDuration(m[3]); err == nil {
			if cd > r.slowest {
				r.slowest, r.slowestName = cd, m[1]
			}
			if cd > 2*time.Second {
				r.slow = append(r.slow, fmt.Sprintf("%s took %v (%s)", m[1], cd, m[2]))
			}
		}
	}
	return r
}

// check fails t if the process hung, died of a signal or a Go panic, made a call that took
// over 2 s, or made no call at all.
func (r tracedRun) check(t *testing.T, desc string) {
	t.Helper()
	switch {
	case r.hung:
		tail := strings.Split(strings.TrimSpace(r.trace), "\n")
		tail = tail[max(0, len(tail)-12):]
		t.Errorf("%s: hung for %v:\n%s\nthe trace ends:\n%s", desc, r.d, r.out, strings.Join(tail, "\n"))
	case r.signal != nil:
		t.Errorf("%s: killed by a signal (%v):\n%s", desc, r.signal, r.out)
	case r.calls == 0:
		t.Errorf("%s: no call in the module's trace:\n%s", desc, r.out)
	}
	for _, s := range r.slow {
		t.Errorf("%s: %s", desc, s)
	}
	if strings.Contains(r.out, "internal error") || strings.Contains(r.out, "goroutine ") {
		t.Errorf("%s: the module panicked:\n%s", desc, r.out)
	}
}

// TestModuleTraceHasNoPIN runs pkcs11-tool through the module with every trace category on:
// a login, a PIN change and back, a signature with the PIN-always key (context-specific
// login) and a key generation after an SO login with the management key. Neither PIN nor key appears in the
// trace, as text or as hex.
func TestModuleTraceHasNoPIN(t *testing.T) {
	// Not the default serial 12345678: it holds the PIN 123456 and shows in the trace.
	modCard(t, pivtest.Options{Serial: 987})
	const newPIN = "918273"
	trace := filepath.Join(t.TempDir(), "trace")
	t.Setenv("P11CARD_DEBUG", "all")
	t.Setenv("P11CARD_DEBUG_FILE", trace)
	data := writeFile(t, "data", []byte("traced"))
	out := filepath.Join(t.TempDir(), "sig")
	ptool(t, "--login", "--pin", modPIN, "-O")
	ptool(t, "--change-pin", "--pin", modPIN, "--new-pin", newPIN)
	ptool(t, "--change-pin", "--pin", newPIN, "--new-pin", modPIN)
	ptool(t, "--sign", "--login", "--pin", modPIN, "--id", "02", "-m", "ECDSA-SHA256", "--input-file", data, "--output-file", out)
	ptool(t, "--keypairgen", "--login", "--login-type", "so", "--so-pin", modMgmt, "--key-type", "EC:prime256v1", "--id", "07")
	b, err := os.ReadFile(trace)
	if err != nil || len(b) == 0 {
		t.Fatalf("no trace written: %v", err)
	}
	// Without the lines' time stamps (their microseconds could read as a PIN) and blanks
	// (hex dumps put them between bytes).
	low := strings.ToLower(strings.ReplaceAll(regexp.MustCompile(`(?m)^\d\d:\d\d:\d\d\.\d+`).ReplaceAllString(string(b), ""), " ", ""))
	for _, secret := range []string{modPIN, newPIN, modMgmt} {
		for _, form := range []string{secret, fmt.Sprintf("%x", secret)} {
			if strings.Contains(low, strings.ToLower(form)) {
				t.Errorf("the trace holds %q", form)
			}
		}
	}
	t.Logf("%d bytes of trace, no secret in them", len(b))
}

// TestModulePCSCDRestart stops pcscd under a client that keeps signing through the
// module (SIGTERM, and SIGKILL as in a crash) and starts it again: the calls cut off
// return removal codes within 2 s, and the same process signs again without
// C_Finalize.
func TestModulePCSCDRestart(t *testing.T) {
	r := testRig(t)
	modCard(t, pivtest.Options{})
	so, client := modBuild(t)
	for _, tc := range []struct {
		name    string
		restart func(context.Context) error
	}{{"SIGTERM", r.RestartPCSCD}, {"SIGKILL", r.CrashPCSCD}} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			cmd := toolCmd(t, ctx, client, so, modPIN, "restart")
			stdin, _ := cmd.StdinPipe()
			stdout, _ := cmd.StdoutPipe()
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			lines := make(chan string, 100)
			go func() {
				defer close(lines)
				sc := bufio.NewScanner(stdout)
				for sc.Scan() {
					lines <- sc.Text()
				}
			}()
			var seen []string
			waitFor := func(want string) {
				t.Helper()
				for l := range lines {
					seen = append(seen, l)
					if l == want {
						return
					}
				}
				t.Fatalf("client ended before %q: %v\n%s\n%s", want, cmd.Wait(), strings.Join(seen, "\n"), stderr.String())
			}
			waitFor("signing")
			time.Sleep(200 * time.Millisecond) // mid-run
			t0 := time.Now()
			if err := tc.restart(ctx); err != nil {
				t.Fatalf("restart pcscd: %v", err)
			}
			fmt.Fprintln(stdin, "mark")
			waitFor("recovered")
			t.Logf("signing again %v after the restart began", time.Since(t0).Round(time.Millisecond))
			fmt.Fprintln(stdin, "stop")
			for l := range lines {
				seen = append(seen, l)
			}
			if err := cmd.Wait(); err != nil {
				t.Fatalf("client: %v\n%s\n%s", err, strings.Join(seen, "\n"), stderr.String())
			}
			t.Logf("client:\n%s", strings.Join(seen, "\n"))
			for _, l := range seen {
				if rv, ok := strings.CutPrefix(l, "error "); ok && !restartCodes[rv] {
					t.Errorf("a call cut off by the restart returned %s", rv)
				}
				var ms float64
				if _, err := fmt.Sscanf(l, "slowest %g", &ms); err == nil && ms > 2000 {
					t.Errorf("a call took %.0f ms", ms)
				}
			}
		})
	}
}

// restartCodes are what a call may return while pcscd is away: the token left (its
// sessions with it), or there is none yet.
var restartCodes = map[string]bool{
	"CKR_DEVICE_REMOVED": true, "CKR_SESSION_HANDLE_INVALID": true, "CKR_SESSION_CLOSED": true,
	"CKR_TOKEN_NOT_PRESENT": true, "no token": true,
}

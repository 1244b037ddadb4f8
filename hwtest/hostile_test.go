//go:build hwtest

package hwtest

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/p11-card/p11-card/cards/openpgp/pgptest"
	"github.com/p11-card/p11-card/cards/piv/pivtest"
	"github.com/p11-card/p11-card/cards/vcard"
)

// hostileRates are the shares of lying responses a run picks from: a card that fails now
// and then, often, mostly, always.
var hostileRates = []float64{0.02, 0.08, 0.25, 1}

// TestModuleHostileCard drives random pkcs11-tool operations, and on the PIV card now and
// then eight threads of p11client (CKF_OS_LOCKING_OK), through the module against a
// virtual PIV card and a virtual OpenPGP card whose responses lie (vcard.WithHostile:
// random bytes, truncation, flipped bytes, huge BER lengths, endless 61xx, wrong 6Cxx,
// random status words, replays), 120 runs (P11CARD_SOAK=1: 1000; P11CARD_HOSTILE_RUNS=N
// any number, P11CARD_HOSTILE_SEED=S repeats a run). No process dies of a
// signal or a panic, none runs 10 s, no call takes 2 s, every code is one the module
// names (never CKR_GENERAL_ERROR, its panic code, nor CKR_BUFFER_TOO_SMALL, a lie taken
// for a result), each call callCodes names returns only codes its function gives (from
// the module's trace), the peak resident memory of the process
// stays within 32 MiB of the same operations on an honest card, no wrong PIN reaches the
// PIV card, and every 25 runs the honest card signs.
func TestModuleHostileCard(t *testing.T) {
	r := testRig(t)
	so, client := modBuild(t)
	needTool(t, "pkcs11-tool")
	runs := 120
	if os.Getenv("P11CARD_SOAK") == "1" {
		runs = 1000
	}
	if s := os.Getenv("P11CARD_HOSTILE_RUNS"); s != "" {
		fmt.Sscan(s, &runs)
	}
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("P11CARD_HOSTILE_SEED"); s != "" {
		fmt.Sscan(s, &seed)
	}
	t.Logf("seed %d (P11CARD_HOSTILE_SEED repeats the run)", seed)
	rng := mrand.New(mrand.NewPCG(seed, 1))

	t.Cleanup(func() {
		if r.Present(0) {
			remove(t, 0)
		}
	})
	piv := modKeys(t, pivtest.Options{})
	pgp, decKey := hostilePGPCard(t)
	families := []struct {
		name   string
		card   vcard.Card
		ops    [][]string
		runs   int
		checks func(run int) // after the hostile runs, before the honest card signs (ops[3])
	}{
		{name: "PIV", card: piv, ops: pivToolOps(t, piv), runs: runs * 2 / 3, checks: func(run int) {
			if pin, _ := piv.Retries(); pin != 3 {
				t.Errorf("run %d: the PIV PIN has %d tries left: a wrong PIN reached the card", run, pin)
				piv.SetTries(3, 3)
			}
		}},
		{name: "OpenPGP", card: pgp, ops: pgpToolOps(t, decKey), runs: runs - runs*2/3, checks: func(run int) {
			// A lie about the KDF data object (OpenPGP card 3.4 §4.3.2) makes any
			// driver hash the PIN the card asked for: the card counts a wrong PIN.
			if s := pgp.Snapshot(); s.PW1Tries != 3 {
				t.Logf("run %d: the OpenPGP PW1 has %d tries left (a lying KDF-DO); reset", run, s.PW1Tries)
				pgp.SetState(func(s *pgptest.State) { s.PW1Tries = 3 })
			}
		}},
	}

	// The honest card's figures: the memory bound and the baseline every run is held to.
	var honestRSS int64
	for _, f := range families {
		insertCard(t, f.card)
		for _, op := range f.ops {
			tr := runTraced(t, so, op)
			tr.check(t, f.name+" honest "+op[0])
			if tr.signal != nil || tr.hung || strings.Contains(tr.out, "error:") {
				t.Fatalf("%s: pkcs11-tool %s fails on the honest card:\n%s", f.name, strings.Join(op, " "), tr.out)
			}
			honestRSS = max(honestRSS, tr.maxRSS)
		}
		remove(t, 0)
	}
	const slackKiB = 32 << 10
	t.Logf("honest card: peak resident memory %d KiB", honestRSS)

	codes := map[string]int{}
	failed := map[string]int{} // by call and code, from the module's trace
	mangled := map[string]int{}
	var maxRSS int64
	var slowestCall struct {
		d    time.Duration
		name string
	}
	responses, lies := 0, 0
	for _, f := range families {
		n := f.runs
		h := &vcard.Hostile{}
		// The last responses, as the card's side saw them, for a run that hangs.
		seen := &vcard.Log{Max: 8}
		hostile := vcard.WithLog(vcard.WithHostile(f.card, h), seen)
		insertCard(t, hostile)
		for run := 1; run <= n; run++ {
			op := f.ops[rng.IntN(len(f.ops))]
			rate := hostileRates[rng.IntN(len(hostileRates))]
			runSeed := rng.Uint64()
			h.Set(func(h *vcard.Hostile) { h.Seed, h.Rate = runSeed, rate })
			desc := fmt.Sprintf("%s run %d (lying rate %v, card seed %d, pkcs11-tool %s)", f.name, run, rate, runSeed, op[0])
			var tr tracedRun
			if f.name == "PIV" && rng.IntN(5) == 0 {
				// Eight threads signing with the PIN-always key, in a client that
				// initializes with CKF_OS_LOCKING_OK as NSS and p11-kit do.
				desc = fmt.Sprintf("%s run %d (lying rate %v, card seed %d, p11client threads 8)", f.name, run, rate, runSeed)
				tr = runTracedProg(t, client, []string{so, modPIN, "threads", "8"}, "apdu", "pcsc")
			} else {
				tr = runTraced(t, so, op, "apdu", "pcsc")
			}
			tr.check(t, desc)
			if tr.hung {
				// The card is stuck behind the call that hangs: the runs after it would hang too.
				t.Fatalf("the last exchanges the card saw:\n%s", hostileTail(seen))
			}
			maxRSS = max(maxRSS, tr.maxRSS)
			if tr.maxRSS > honestRSS+slackKiB {
				t.Errorf("%s: peak resident memory %d KiB, the honest card's %d KiB", desc, tr.maxRSS, honestRSS)
			}
			if tr.slowest > slowestCall.d {
				slowestCall.d, slowestCall.name = tr.slowest, tr.slowestName
			}
			checkCallCodes(t, desc, tr.failed)
			for k, v := range tr.failed {
				failed[k] += v
			}
			for _, code := range ckrName.FindAllString(tr.out, -1) {
				codes[code]++
				// pkcs11-tool's buffers hold any honest result of these keys: a short
				// one means a lying answer reached the application as data.
				if code == "CKR_GENERAL_ERROR" || code == "CKR_BUFFER_TOO_SMALL" || strings.HasPrefix(code, "CKR_0x") {
					t.Errorf("%s: %s:\n%s", desc, code, tr.out)
				}
			}
			if run%25 == 0 || run == n {
				remove(t, 0)
				f.checks(run)
				insertCard(t, f.card)
				if tr := runTraced(t, so, f.ops[3]); tr.signal != nil || tr.hung || strings.Contains(tr.out, "error:") {
					t.Errorf("%s run %d: the honest card does not sign after the hostile runs:\n%s", f.name, run, tr.out)
				}
				remove(t, 0)
				if run < n {
					insertCard(t, hostile)
				}
			}
		}
		responses += h.Responses()
		lies += h.Mangled()
		for k, v := range h.Counts() {
			mangled[k] += v
		}
	}
	t.Logf("%d runs: %d of %d responses lied (%s); codes reported %s; calls that failed, by code: %s; peak resident memory %d KiB (honest %d KiB); slowest call %s %v",
		runs, lies, responses, joinCounts(mangled), joinCounts(codes), joinCounts(failed), maxRSS, honestRSS, slowestCall.name, slowestCall.d)
}

// hostilePGPCard is a virtual OpenPGP card with an RSA-2048 signature key (ID 01), an
// RSA-2048 decryption key (02, returned) and a P-256 authentication key (03).
func hostilePGPCard(t *testing.T) (*pgptest.Card, *rsa.PublicKey) {
	t.Helper()
	c, err := pgptest.New(pgptest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	sig, _ := rsa.GenerateKey(rand.Reader, 2048)
	dec, _ := rsa.GenerateKey(rand.Reader, 2048)
	aut, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	for i, k := range []crypto.PrivateKey{sig, dec, aut} {
		if err := c.PutKey(i, k, nil); err != nil {
			t.Fatal(err)
		}
	}
	return c, &dec.PublicKey
}

// pgpToolOps are the pkcs11-tool operations on hostilePGPCard's card; ops[3] is a
// signature with the SIG key.
func pgpToolOps(t *testing.T, dec *rsa.PublicKey) [][]string {
	t.Helper()
	data := writeFile(t, "data", []byte("lied to at random"))
	out := filepath.Join(t.TempDir(), "out")
	c, _ := rsa.EncryptPKCS1v15(rand.Reader, dec, []byte("secret"))
	ct := writeFile(t, "ct", c)
	login := []string{"--login", "--pin", modPIN}
	return [][]string{
		{"-L"},
		{"-O"},
		append([]string{"-O"}, login...),
		append([]string{"--sign", "--id", "01", "-m", "SHA256-RSA-PKCS", "--input-file", data, "--output-file", out}, login...),
		append([]string{"--sign", "--id", "03", "-m", "ECDSA-SHA256", "--input-file", data, "--output-file", out}, login...),
		append([]string{"--decrypt", "--id", "02", "-m", "RSA-PKCS", "--input-file", ct, "--output-file", out}, login...),
	}
}

// insertCard is insert into reader 0 without the removal at cleanup, for a test that
// moves its cards itself (remove takes them out).
func insertCard(t *testing.T, c vcard.Card) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := testRig(t).Insert(ctx, 0, c); err != nil {
		t.Fatalf("insert: %v", err)
	}
}

// hostileTail describes the exchanges in l: each command and the length and start of the
// response.
func hostileTail(l *vcard.Log) string {
	var b strings.Builder
	for _, e := range l.Entries() {
		head := e.Resp[:min(len(e.Resp), 24)]
		fmt.Fprintf(&b, "  %X -> %d bytes %X…%X\n", e.Cmd[:min(len(e.Cmd), 12)], len(e.Resp), head, e.Resp[max(0, len(e.Resp)-2):])
	}
	return b.String()
}

// callCodes holds, for the calls that lying cards and removals make fail, the codes
// PKCS#11 2.40 §5 gives each of them. Besides these, every call may return §5.1's codes
// (those of any call, of calls with a session and of calls that use a token),
// CKR_FUNCTION_CANCELED, and CKR_FUNCTION_NOT_SUPPORTED for what a card cannot do.
// C_Login also gets CKR_PIN_LEN_RANGE for a PIN of the wrong length, as NSS and OpenSC
// give it.
var callCodes = map[string][]string{
	"C_FindObjectsInit":   {"CKR_ARGUMENTS_BAD", "CKR_ATTRIBUTE_TYPE_INVALID", "CKR_ATTRIBUTE_VALUE_INVALID", "CKR_OPERATION_ACTIVE"},
	"C_GetAttributeValue": {"CKR_ARGUMENTS_BAD", "CKR_ATTRIBUTE_SENSITIVE", "CKR_ATTRIBUTE_TYPE_INVALID", "CKR_BUFFER_TOO_SMALL", "CKR_OBJECT_HANDLE_INVALID"},
	"C_Login": {"CKR_ARGUMENTS_BAD", "CKR_OPERATION_NOT_INITIALIZED", "CKR_PIN_INCORRECT", "CKR_PIN_LOCKED", "CKR_PIN_LEN_RANGE",
		"CKR_SESSION_READ_ONLY_EXISTS", "CKR_USER_ALREADY_LOGGED_IN", "CKR_USER_ANOTHER_ALREADY_LOGGED_IN",
		"CKR_USER_PIN_NOT_INITIALIZED", "CKR_USER_TOO_MANY_TYPES", "CKR_USER_TYPE_INVALID"},
}

var anyCallCodes = []string{"CKR_GENERAL_ERROR", "CKR_HOST_MEMORY", "CKR_FUNCTION_FAILED", "CKR_SESSION_HANDLE_INVALID",
	"CKR_SESSION_CLOSED", "CKR_DEVICE_REMOVED", "CKR_DEVICE_MEMORY", "CKR_DEVICE_ERROR", "CKR_TOKEN_NOT_PRESENT",
	"CKR_CRYPTOKI_NOT_INITIALIZED", "CKR_FUNCTION_CANCELED", "CKR_FUNCTION_NOT_SUPPORTED"}

// checkCallCodes fails t for each of badCallCodes(failed).
func checkCallCodes(t *testing.T, desc string, failed map[string]int) {
	t.Helper()
	for _, k := range badCallCodes(failed) {
		t.Errorf("%s: %s, a code PKCS#11 does not give that call", desc, k)
	}
}

// badCallCodes are the entries of failed (tracedRun.failed: "C_Login CKR_…") whose call
// callCodes names and whose code that call does not give, sorted.
func badCallCodes(failed map[string]int) []string {
	var bad []string
	for k := range failed {
		call, code, _ := strings.Cut(k, " ")
		codes, ok := callCodes[call]
		if ok && !slices.Contains(codes, code) && !slices.Contains(anyCallCodes, code) {
			bad = append(bad, k)
		}
	}
	sort.Strings(bad)
	return bad
}

func TestBadCallCodes(t *testing.T) {
	failed := map[string]int{
		"C_Login CKR_PIN_INCORRECT": 2, "C_Login CKR_FUNCTION_REJECTED": 1, "C_Login CKR_DEVICE_REMOVED": 1,
		"C_FindObjectsInit CKR_USER_NOT_LOGGED_IN": 1, "C_FindObjectsInit CKR_DEVICE_ERROR": 3,
		"C_OpData CKR_FUNCTION_REJECTED": 1, // a call callCodes does not name
	}
	want := []string{"C_FindObjectsInit CKR_USER_NOT_LOGGED_IN", "C_Login CKR_FUNCTION_REJECTED"}
	if got := badCallCodes(failed); !slices.Equal(got, want) {
		t.Errorf("badCallCodes = %q, want %q", got, want)
	}
}

func joinCounts(m map[string]int) string {
	var s []string
	for k, v := range m {
		s = append(s, fmt.Sprintf("%s %d", k, v))
	}
	sort.Strings(s)
	return strings.Join(s, ", ")
}

//go:build hwtest

package hwtest

import (
	"bufio"
	"context"
	"crypto"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/p11-card/p11-card/cards/openpgp/pgptest"
	"github.com/p11-card/p11-card/cards/piv/pivtest"
	"github.com/p11-card/p11-card/cards/vcard"
	"github.com/p11-card/p11-card/hwtest/rig"
)

// The benchmark `make bench` runs: P11CARD_BENCH=N runs every operation N times per module
// (default 1, as `make test` runs it to check that the harness works), the first one and
// the floor firstRunsFactor times as often, and
// P11CARD_BENCH_OUT=DIR writes DIR/bench.md and DIR/bench.json. No test asserts a time.

// benchModule is a PKCS#11 module under comparison.
type benchModule struct{ name, path string }

// benchOp is one process, as an application would run it: pkcs11-tool with args, or
// the command cmd gives for a module (other PKCS#11 clients).
type benchOp struct {
	name string
	args []string
	cmd  func(m benchModule) []string
	// pre holds arguments a module's users put before args to reach the key (OpenSC
	// shows an OpenPGP card as two tokens, the signature key in the second).
	pre map[string][]string
	// instead holds a module's whole argument list where its users ask for the operation
	// another way.
	instead map[string][]string
}

// BenchRow is one operation measured on one module.
type BenchRow struct {
	Op      string  `json:"op"`
	Module  string  `json:"module"`
	Objects int     `json:"objects,omitempty"` // objects pkcs11-tool listed (listings only)
	APDUs   int     `json:"apdus"`             // commands the card received, per run
	Calls   int     `json:"pcsc_calls"`        // PC/SC calls that reached pcscd, per run
	WallMS  float64 `json:"wall_ms"`           // median wall time of a whole process
	// The first and third quartiles of the wall times: the middle half of the runs.
	WallQ1MS float64 `json:"wall_q1_ms"`
	WallQ3MS float64 `json:"wall_q3_ms"`
	Error    string  `json:"error,omitempty"`
}

// BenchReport is what bench.json holds.
type BenchReport struct {
	Runs       int             `json:"runs"`
	FirstRuns  int             `json:"first_row_runs"` // the first row's and the floor's
	Rows       []BenchRow      `json:"rows"`
	MemoryKB   map[string]int  `json:"rss_after_initialize_kb"`  // module's share of VmRSS
	AnonKB     map[string]int  `json:"anon_after_initialize_kb"` // of it, RssAnon (not file pages)
	SignNS     int64           `json:"module_sign_ns"`           // median C_SignInit+C_Sign (ECDSA P-256), ours
	TransmitNS int64           `json:"bare_transmit_ns"`         // the same APDUs sent straight
	SignAPDUs  int             `json:"module_sign_apdus"`        // APDUs one C_Sign sends
	Floor      []FloorRow      `json:"floor"`
	Phases     []PhaseRow      `json:"process_phases"`
	Events     []EventRow      `json:"removal_events"`
	Throughput []ThroughputRow `json:"two_card_throughput"`
}

// FloorRow is pkcs11-tool -L on a library that does nothing (hwtest/testdata/floor), run
// in the same turns as the first row: what a process pays for a library before any card
// work, in C and in Go.
type FloorRow struct {
	Library  string  `json:"library"`
	WallMS   float64 `json:"wall_ms"`
	WallQ1MS float64 `json:"wall_q1_ms"`
	WallQ3MS float64 `json:"wall_q3_ms"`
	RSSKB    int     `json:"rss_after_initialize_kb"`
	AnonKB   int     `json:"anon_after_initialize_kb"`
	Error    string  `json:"error,omitempty"`
}

// PhaseRow is where a process's time goes with one library (benchclient phases, medians
// of the first row's number of runs, taken in turns): what pkcs11-tool -L asks of a
// module, timed call by call, in a C process that loads nothing else.
type PhaseRow struct {
	Library string  `json:"library"`
	LoadMS  float64 `json:"load_ms"`       // dlopen and C_GetFunctionList
	InitMS  float64 `json:"initialize_ms"` // C_Initialize, the slot list, each token's info
	FinalMS float64 `json:"finalize_ms"`   // C_Finalize
	ExitMS  float64 `json:"exit_ms"`       // _exit to the parent's waitpid
	Error   string  `json:"error,omitempty"`
}

// EventRow is the time from pulling the card to a blocked C_WaitForSlotEvent returning
// (medians over the runs), beside pcsc_scan's report of the same removals.
type EventRow struct {
	Module      string  `json:"module"`
	MS          float64 `json:"ms"`
	ScanMS      float64 `json:"pcsc_scan_ms"`
	AfterScanMS float64 `json:"ms_after_pcsc_scan"` // median of the differences
	Error       string  `json:"error,omitempty"`
}

// ThroughputRow is signatures per second on two cards in two readers whose private-key
// operations take 50 ms each, from one thread or from a thread per card.
type ThroughputRow struct {
	Module     string  `json:"module"`
	Threads    int     `json:"threads"`
	PerSecond  float64 `json:"signatures_per_second"`
	Signatures int     `json:"signatures"`
	Error      string  `json:"error,omitempty"`
}

// firstRunsFactor is how many times as often as the other rows the first row and the
// floor run.
const firstRunsFactor = 5

func benchRuns() int {
	if n, err := strconv.Atoi(os.Getenv("P11CARD_BENCH")); err == nil && n > 0 {
		return n
	}
	return 1
}

func TestBench(t *testing.T) {
	r := testRig(t)
	if r.ClientCalls() < 0 {
		t.Fatal("the shared rig runs pcscd without -d: PC/SC calls cannot be counted")
	}
	so, _ := modBuild(t)
	runs := benchRuns()
	mods := []benchModule{{"p11-card", so}, {"opensc", openscModule}, {"ykcs11", ykcs11Module}}
	for _, m := range mods {
		if _, err := os.Stat(m.path); err != nil {
			missing(t, "module %s: %v", m.name, err)
		}
	}
	// modCard's keys, with a 3DES management key (the default before firmware 5.7):
	// ykcs11 2.2 takes no other.
	c := modKeys(t, pivtest.Options{MgmtAlg: pivtest.AlgTDES})
	log := &vcard.Log{}
	insert(t, 0, vcard.WithLog(c, log))

	data := writeFile(t, "data", []byte("benchmark data"))
	out := filepath.Join(t.TempDir(), "out")
	ct, err := rsa.EncryptPKCS1v15(rand.Reader, c.PublicKey(0x9D).(*rsa.PublicKey), []byte("a secret"))
	if err != nil {
		t.Fatal(err)
	}
	ctFile := writeFile(t, "ct", ct)
	peer, _ := ecdh.P256().GenerateKey(rand.Reader)
	spki, _ := x509.MarshalPKIXPublicKey(peer.PublicKey())
	peerFile := writeFile(t, "peer.der", spki)
	login := []string{"--login", "--pin", modPIN}
	ops := []benchOp{
		{name: "initialize, list slots", args: []string{"-L"}},
		{name: "list public objects", args: []string{"-O"}},
		{name: "login, list every object", args: append([]string{"-O"}, login...)},
		{name: "sign RSA-2048 PKCS#1", args: append([]string{"--sign", "--id", "01", "-m", "SHA256-RSA-PKCS", "--input-file", data, "--output-file", out}, login...)},
		{name: "sign ECDSA P-256", args: append([]string{"--sign", "--id", "04", "-m", "ECDSA-SHA256", "--input-file", data, "--output-file", out}, login...)},
		{name: "ECDH P-256", args: append([]string{"--derive", "--id", "05", "-m", "ECDH1-DERIVE", "--input-file", peerFile, "--output-file", out}, login...)},
		{name: "decrypt RSA-2048", args: append([]string{"--decrypt", "--id", "03", "-m", "RSA-PKCS", "--input-file", ctFile, "--output-file", out}, login...)},
		{name: "generate EC P-256 key pair", args: []string{"--keypairgen", "--login", "--login-type", "so", "--so-pin", modMgmt, "--key-type", "EC:prime256v1", "--id", "06"},
			// OpenSC's PIV SO is the PUK (8 characters at most), so it refuses the management
			// key as out of range: its users would log in as the user, and meet its answer
			// to the key generation itself.
			instead: map[string][]string{"opensc": append([]string{"--keypairgen", "--key-type", "EC:prime256v1", "--id", "06"}, login...)}},
	}
	// Other clients, as their users run them: NSS (a database per module, as Firefox has
	// a profile), OpenSSH, GnuTLS.
	nssDB := map[string]string{}
	for _, m := range mods {
		nssDB[m.name] = "sql:" + t.TempDir()
		runTool(t, "certutil", "-N", "-d", nssDB[m.name], "--empty-password")
		runTool(t, "modutil", "-dbdir", nssDB[m.name], "-add", "bench", "-libfile", m.path, "-force")
	}
	pinFile := writeFile(t, "pin", []byte(modPIN+"\n"))
	ops = append(ops,
		benchOp{name: "NSS: certutil -L (certificates)", cmd: func(m benchModule) []string {
			return []string{"certutil", "-L", "-h", "all", "-d", nssDB[m.name]}
		}},
		benchOp{name: "NSS: certutil -K (login, keys)", cmd: func(m benchModule) []string {
			return []string{"certutil", "-K", "-h", "YubiKey PIV #12345678", "-d", nssDB[m.name], "-f", pinFile}
		}},
		benchOp{name: "OpenSSH: ssh-keygen -D", cmd: func(m benchModule) []string { return []string{"ssh-keygen", "-D", m.path} }},
		benchOp{name: "GnuTLS: p11tool --list-all", cmd: func(m benchModule) []string {
			return []string{"p11tool", "--provider", m.path, "--list-all"}
		}},
		benchOp{name: "GnuTLS: p11tool --login --list-privkeys", cmd: func(m benchModule) []string {
			return []string{"p11tool", "--provider", m.path, "--login", "--set-pin", modPIN, "--list-privkeys"}
		}},
	)

	// The first row takes its turns with the floor libraries, which go to their own table.
	// Its processes take a few milliseconds, where the machine's noise weighs most and
	// ours and ykcs11 come closest, so it runs firstRunsFactor times as often: its median
	// moves less from one bench to the next.
	rep := BenchReport{Runs: runs, FirstRuns: runs * firstRunsFactor, MemoryKB: map[string]int{}, AnonKB: map[string]int{}}
	floors := floorModules(t)
	for _, row := range benchRows(t, r, log, ops[:1], append(slices.Clone(mods), floors...), rep.FirstRuns) {
		if strings.HasPrefix(row.Module, "floor") {
			rep.Floor = append(rep.Floor, FloorRow{Library: strings.TrimPrefix(row.Module, "floor: "),
				WallMS: row.WallMS, WallQ1MS: row.WallQ1MS, WallQ3MS: row.WallQ3MS, Error: row.Error})
			continue
		}
		rep.Rows = append(rep.Rows, row)
	}
	rep.Rows = append(rep.Rows, benchRows(t, r, log, ops[1:], mods, runs)...)

	// The same clients on a virtual YubiKey OpenPGP card (3.4: RSA-2048 signature and
	// decryption keys, a P-256 authentication key) in the PIV card's place. ykcs11 is
	// PIV only. Each key has a fingerprint, as gpg and ykman write one with every key:
	// OpenSC takes a key slot with an empty fingerprint for an empty one.
	pgp := pgptest.MustNew(pgptest.Options{})
	pgpSig, _ := rsa.GenerateKey(rand.Reader, 2048)
	pgpDec, _ := rsa.GenerateKey(rand.Reader, 2048)
	pgpAut, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	for i, k := range []crypto.PrivateKey{pgpSig, pgpDec, pgpAut} {
		fpr := make([]byte, 20)
		rand.Read(fpr)
		if err := pgp.PutKey(i, k, fpr); err != nil {
			t.Fatal(err)
		}
	}
	pgpLog := &vcard.Log{}
	remove(t, 0)
	insert(t, 0, vcard.WithLog(pgp, pgpLog))
	pgpOps := []benchOp{
		{name: "OpenPGP: initialize, list slots", args: []string{"-L"}},
		{name: "OpenPGP: login, list every object", args: append([]string{"-O"}, login...)},
		{name: "OpenPGP: sign RSA-2048 PKCS#1 (signature key)", args: append([]string{"--sign", "--id", "01", "-m", "SHA256-RSA-PKCS", "--input-file", data, "--output-file", out}, login...),
			pre: map[string][]string{"opensc": {"--token-label", "OpenPGP card (User PIN (sig))"}}},
		{name: "OpenPGP: ssh-keygen -D", cmd: func(m benchModule) []string { return []string{"ssh-keygen", "-D", m.path} }},
	}
	pgpMods := slices.DeleteFunc(slices.Clone(mods), func(m benchModule) bool { return m.name == "ykcs11" })
	rep.Rows = append(rep.Rows, benchRows(t, r, pgpLog, pgpOps, pgpMods, runs)...)
	remove(t, 0)
	insert(t, 0, vcard.WithLog(c, log))

	bc := benchClient(t)
	base, baseAnon := benchRSS(t, bc, "")
	for _, m := range mods {
		rss, anon := benchRSS(t, bc, m.path)
		rep.MemoryKB[m.name], rep.AnonKB[m.name] = rss-base, anon-baseAnon
	}
	for i, m := range floors {
		// The C floor adds next to nothing: what the bare process itself varies by can
		// make the difference negative.
		rss, anon := benchRSS(t, bc, m.path)
		rep.Floor[i].RSSKB, rep.Floor[i].AnonKB = max(0, rss-base), max(0, anon-baseAnon)
	}
	rep.Phases = benchPhases(t, bc, append(slices.Clone(mods), floors...), rep.FirstRuns)

	// Module overhead: our C_Sign (ECDSA P-256, 9E) against the same APDUs sent straight
	// from a C process through libpcsclite over the same pcscd. The two alternate, 50 at a
	// time, so that a slow spell of the machine weighs on both alike.
	const batch = 50
	n0 := log.Count()
	signs := timings(t, bc, "sign", batch, "sign", so, modPIN, "04", strconv.Itoa(batch))
	entries := log.Since(n0)
	// The last signature's commands: everything after the last but one GENERAL AUTHENTICATE.
	last := []vcard.Entry{}
	for i := len(entries) - 1; i >= 0; i-- {
		if len(entries[i].Cmd) > 1 && entries[i].Cmd[1] == 0x87 && len(last) > 0 {
			break
		}
		last = append([]vcard.Entry{entries[i]}, last...)
	}
	rep.SignAPDUs = len(last)
	bareArgs := []string{"bare", r.ReaderName(0), strconv.Itoa(batch)}
	for _, e := range last {
		bareArgs = append(bareArgs, hex.EncodeToString(e.Cmd))
	}
	bare := timings(t, bc, "bare", batch, bareArgs...)
	for i := 1; i < runs; i++ {
		signs = append(signs, timings(t, bc, "sign", batch, "sign", so, modPIN, "04", strconv.Itoa(batch))...)
		bare = append(bare, timings(t, bc, "bare", batch, bareArgs...)...)
	}
	rep.SignNS, rep.TransmitNS = int64(median(signs)), int64(median(bare))

	// Removal to event, with the bench card in reader 0: each module's waiter and
	// pcsc_scan watch the same removals (pcscd polls vpcd's readers, so when it notices
	// varies from removal to removal).
	scan := watcher{
		start: func(ctx context.Context) *exec.Cmd {
			return toolCmd(t, ctx, "stdbuf", "-oL", needTool(t, "pcsc_scan"), "-n")
		},
		ready: func(l string) bool { return strings.Contains(l, "Card inserted") },
		gone:  func(l string) bool { return strings.Contains(l, "Card removed") },
	}
	for _, m := range mods {
		waiter := watcher{
			start: func(ctx context.Context) *exec.Cmd { return toolCmd(t, ctx, bc, "wait", m.path) },
			ready: func(l string) bool { return l == "waiting" },
			gone:  func(l string) bool { return strings.HasPrefix(l, "event ") && strings.HasSuffix(l, " absent") },
		}
		ev, err := eventLatency(t, runs, vcard.WithLog(c, log), waiter, scan)
		if err != nil {
			rep.Events = append(rep.Events, EventRow{Module: m.name, Error: err.Error()})
			continue
		}
		row := EventRow{Module: m.name, MS: median(ev[0]), ScanMS: median(ev[1])}
		var d []float64
		for i := range ev[0] {
			d = append(d, ev[0][i]-ev[1][i])
		}
		row.AfterScanMS = median(d)
		rep.Events = append(rep.Events, row)
	}

	// Two cards, 50 ms per private-key operation: one thread against two.
	remove(t, 0)
	for i := 0; i < 2; i++ {
		slow := modKeys(t, pivtest.Options{MgmtAlg: pivtest.AlgTDES, Serial: uint32(4000 + i), OpDelay: 50 * time.Millisecond})
		insert(t, i, slow)
	}
	sigs := 4 * runs
	for _, m := range mods {
		for _, threads := range []int{1, 2} {
			row := ThroughputRow{Module: m.name, Threads: threads, Signatures: sigs}
			o, err := toolCmd(t, context.Background(), bc, "pair", m.path, modPIN, "04", strconv.Itoa(sigs), strconv.Itoa(threads)).CombinedOutput()
			var ns float64
			if _, serr := fmt.Sscanf(string(o), "pair %g", &ns); err != nil || serr != nil || ns <= 0 {
				row.Error = firstLine(string(o), fmt.Errorf("%v %v", err, serr))
			} else {
				row.PerSecond = float64(sigs) / (ns / 1e9)
			}
			rep.Throughput = append(rep.Throughput, row)
		}
	}

	rep.write(t)
	// The harness ran: every module has every row, and ours reached the card.
	if len(rep.Rows) != len(ops)*len(mods)+len(pgpOps)*len(pgpMods) {
		t.Fatalf("%d rows", len(rep.Rows))
	}
	for _, row := range rep.Rows {
		if row.Module == "p11-card" && (row.Error != "" || row.APDUs == 0 && row.Op != "initialize, list slots" || row.Calls <= 0) {
			t.Errorf("p11-card %s: %+v", row.Op, row)
		}
		if row.Error == "" && !(0 < row.WallQ1MS && row.WallQ1MS <= row.WallMS && row.WallMS <= row.WallQ3MS) {
			t.Errorf("%s %s: wall times out of order: %+v", row.Module, row.Op, row)
		}
	}
	if len(rep.Floor) != len(floors) {
		t.Fatalf("floor: %+v", rep.Floor)
	}
	for _, row := range rep.Floor {
		if row.Error != "" || !(0 < row.WallQ1MS && row.WallQ1MS <= row.WallMS && row.WallMS <= row.WallQ3MS) {
			t.Errorf("floor: %+v", row)
		}
	}
	if len(rep.Phases) != len(mods)+len(floors) {
		t.Fatalf("phases: %+v", rep.Phases)
	}
	for _, row := range rep.Phases {
		if (row.Library == "p11-card" || strings.HasPrefix(row.Library, "floor")) && (row.Error != "" || row.LoadMS <= 0 || row.InitMS <= 0 || row.ExitMS <= 0) {
			t.Errorf("phases: %+v", row)
		}
	}
	if rep.MemoryKB["p11-card"] <= 0 || rep.SignAPDUs == 0 || rep.TransmitNS <= 0 {
		t.Errorf("memory %v, sign APDUs %d, transmit %d ns", rep.MemoryKB, rep.SignAPDUs, rep.TransmitNS)
	}
	for _, row := range rep.Events {
		if row.Module == "p11-card" && (row.Error != "" || row.MS <= 0 || row.ScanMS <= 0) {
			t.Errorf("removal event: %+v", row)
		}
	}
	for _, row := range rep.Throughput {
		if row.Module == "p11-card" && (row.Error != "" || row.PerSecond <= 0) {
			t.Errorf("throughput: %+v", row)
		}
	}
}

// benchRows runs each operation runs times per module against the card whose commands
// log records. The modules take turns (benchSchedule): a slow spell of the machine then
// weighs on every module alike instead of on whichever ran at that moment, and so does
// what a process leaves the next (a reset card, pcscd still busy, the page cache warm).
func benchRows(t *testing.T, r *rig.Rig, log *vcard.Log, ops []benchOp, mods []benchModule, runs int) []BenchRow {
	t.Helper()
	var rows []BenchRow
	for _, op := range ops {
		cell := make([]BenchRow, len(mods))
		walls := make([][]float64, len(mods))
		apdus, calls := make([]int, len(mods)), make([]int, len(mods))
		for j, m := range mods {
			cell[j] = BenchRow{Op: op.name, Module: m.name}
		}
		for _, j := range benchSchedule(len(mods), runs) {
			m, row := mods[j], &cell[j]
			if row.Error != "" {
				continue
			}
			first := len(walls[j]) == 0
			n0, c0 := log.Count(), r.ClientCalls()
			logAt := fileSize(r.LogPath())
			start := time.Now()
			cmd := append(append([]string{"pkcs11-tool", "--module", m.path}, op.pre[m.name]...), op.args...)
			if a, ok := op.instead[m.name]; ok {
				cmd = append([]string{"pkcs11-tool", "--module", m.path}, a...)
			}
			if op.cmd != nil {
				cmd = op.cmd(m)
			}
			o, err := runToolErr(t, cmd[0], cmd[1:]...)
			walls[j] = append(walls[j], float64(time.Since(start).Microseconds())/1000)
			if err != nil {
				row.Error = firstLine(o, err)
			}
			if first && op.cmd == nil {
				row.Objects = listedObjects(o)
			}
			apdus[j] += log.Count() - n0
			calls[j] += r.ClientCalls() - c0
			if first && m.name == "p11-card" {
				t.Logf("p11-card %s: PC/SC calls %v", op.name, pcscdCalls(r.LogPath(), logAt))
			}
		}
		for j := range mods {
			row, n := &cell[j], len(walls[j])
			row.APDUs, row.Calls = apdus[j]/n, calls[j]/n
			row.WallMS = median(walls[j])
			row.WallQ1MS, row.WallQ3MS = quantile(walls[j], 0.25), quantile(walls[j], 0.75)
		}
		rows = append(rows, cell...)
	}
	return rows
}

// benchPhases runs benchclient phases runs times per library, the libraries taking turns
// as in benchRows, and gives the median of each phase.
func benchPhases(t *testing.T, bc string, libs []benchModule, runs int) []PhaseRow {
	t.Helper()
	rows := make([]PhaseRow, len(libs))
	times := make([][4][]float64, len(libs))
	for j, m := range libs {
		rows[j].Library = m.name
	}
	for _, j := range benchSchedule(len(libs), runs) {
		if rows[j].Error != "" {
			continue
		}
		o, err := toolCmd(t, context.Background(), bc, "phases", libs[j].path).CombinedOutput()
		var ns [4]float64
		if _, serr := fmt.Sscanf(string(o), "phases %g %g %g %g", &ns[0], &ns[1], &ns[2], &ns[3]); err != nil || serr != nil {
			rows[j].Error = firstLine(string(o), fmt.Errorf("%v %v", err, serr))
			continue
		}
		for p := range ns {
			times[j][p] = append(times[j][p], ns[p]/1e6)
		}
	}
	for j := range rows {
		if rows[j].Error == "" {
			rows[j].LoadMS, rows[j].InitMS = median(times[j][0]), median(times[j][1])
			rows[j].FinalMS, rows[j].ExitMS = median(times[j][2]), median(times[j][3])
		}
	}
	return rows
}

// benchSchedule is the order in which n modules take their runs turns each: each module
// comes right after each other one equally often. A process leaves the next one a
// different card and pcscd (pkcs11-tool -L takes 0.3–0.8 ms longer right after OpenSC's
// than after another module's, with ours and with ykcs11), and in a fixed rotation each
// module always followed the same other one: ykcs11 came after OpenSC, ours after the Go
// floor. The schedule repeats a walk through every ordered pair of
// modules (an Eulerian circuit of the complete directed graph: n-1 turns of each module,
// its end leading back to its start), cut where every module has had its runs.
func benchSchedule(n, runs int) []int {
	circuit := []int{0}
	if n > 1 {
		// Hierholzer's algorithm; next[v] is the offset of v's next unused edge, v → v+next[v].
		next := make([]int, n)
		for v := range next {
			next[v] = 1
		}
		stack, walk := []int{0}, []int{}
		for len(stack) > 0 {
			v := stack[len(stack)-1]
			if next[v] < n {
				stack = append(stack, (v+next[v])%n)
				next[v]++
				continue
			}
			walk = append(walk, v)
			stack = stack[:len(stack)-1]
		}
		slices.Reverse(walk)
		circuit = walk[:len(walk)-1] // the walk ends where it began
	}
	var order []int
	done := make([]int, n)
	for left := n * runs; left > 0; {
		for _, j := range circuit {
			if done[j] < runs {
				order = append(order, j)
				done[j]++
				left--
			}
		}
	}
	return order
}

// watcher is a program that reports card events on its standard output: ready accepts
// the line it prints once it watches, gone the line that reports the removal.
type watcher struct {
	start       func(context.Context) *exec.Cmd
	ready, gone func(string) bool
}

// eventLatency runs times starts the watchers (fresh processes each time), pulls the
// card from reader 0 once all are ready, and times each watcher's report of it; the card
// goes back in after each run. It returns the times in ms, per watcher.
func eventLatency(t *testing.T, runs int, card vcard.Card, ws ...watcher) ([][]float64, error) {
	t.Helper()
	r := testRig(t)
	times := make([][]float64, len(ws))
	for i := 0; i < runs; i++ {
		ms, err := removalSeen(r, ws)
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		ierr := r.Insert(ctx, 0, card)
		cancel()
		if ierr != nil {
			t.Fatalf("insert again: %v", ierr)
		}
		if err != nil {
			return nil, err
		}
		for k := range ws {
			times[k] = append(times[k], ms[k])
		}
	}
	return times, nil
}

// removalSeen is one run of eventLatency.
func removalSeen(r *rig.Rig, ws []watcher) ([]float64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	type line struct {
		text string
		at   time.Time
	}
	type running struct {
		lines chan line
		seen  []string
	}
	rs := make([]*running, len(ws))
	for k, w := range ws {
		cmd := w.start(ctx)
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			return nil, err
		}
		if err := cmd.Start(); err != nil {
			return nil, err
		}
		defer func() {
			cmd.Process.Kill()
			cmd.Wait()
		}()
		ru := &running{lines: make(chan line, 64)}
		go func() {
			defer close(ru.lines)
			sc := bufio.NewScanner(stdout)
			for sc.Scan() {
				ru.lines <- line{sc.Text(), time.Now()}
			}
		}()
		rs[k] = ru
	}
	// next returns the arrival time of watcher k's first line after since that want
	// accepts.
	next := func(k int, since time.Time, want func(string) bool) (time.Time, error) {
		ru := rs[k]
		for {
			select {
			case l, ok := <-ru.lines:
				if !ok {
					return time.Time{}, fmt.Errorf("watcher ended: %s", strings.Join(ru.seen, " / "))
				}
				ru.seen = append(ru.seen, l.text)
				if !l.at.Before(since) && want(l.text) {
					return l.at, nil
				}
			case <-ctx.Done():
				return time.Time{}, fmt.Errorf("no event in time: %s", strings.Join(ru.seen, " / "))
			}
		}
	}
	for k, w := range ws {
		if _, err := next(k, time.Time{}, w.ready); err != nil {
			return nil, err
		}
	}
	time.Sleep(300 * time.Millisecond) // the watchers are blocked now
	t0 := time.Now()
	if err := r.Remove(ctx, 0); err != nil {
		return nil, err
	}
	ms := make([]float64, len(ws))
	for k, w := range ws {
		t1, err := next(k, t0, w.gone)
		if err != nil {
			return nil, err
		}
		ms[k] = float64(t1.Sub(t0).Microseconds()) / 1000
	}
	return ms, nil
}

// timings runs benchclient with args and returns the n numbers it prints after "what ".
func timings(t *testing.T, bc, what string, n int, args ...string) []float64 {
	t.Helper()
	o, err := toolCmd(t, context.Background(), bc, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("benchclient %s: %v\n%s", what, err, o)
	}
	var times []float64
	for _, l := range strings.Split(string(o), "\n") {
		if v, ok := strings.CutPrefix(l, what+" "); ok {
			ns, _ := strconv.ParseFloat(v, 64)
			times = append(times, ns)
		}
	}
	if len(times) != n {
		t.Fatalf("benchclient %s printed %d timings, want %d:\n%s", what, len(times), n, o)
	}
	return times
}

// benchClient compiles testdata/benchclient.c once per test.
func benchClient(t *testing.T) string {
	t.Helper()
	gcc := needTool(t, "gcc")
	hdr, _ := filepath.Abs("../p11")
	bin := filepath.Join(t.TempDir(), "benchclient")
	if o, err := exec.Command(gcc, "-O2", "-Wall", "-I", hdr, "-I", "/usr/include/PCSC", "-o", bin, "testdata/benchclient.c", "-ldl", "-lpthread", "-lpcsclite").CombinedOutput(); err != nil {
		t.Fatalf("gcc: %v\n%s", err, o)
	}
	return bin
}

// floorModules builds testdata/floor twice: a C library, and the same inside a Go
// c-shared library linked as the module is (P11CARD_MODULE_LDFLAGS).
func floorModules(t *testing.T) []benchModule {
	t.Helper()
	gcc := needTool(t, "gcc")
	hdr, _ := filepath.Abs("../p11")
	dir := t.TempDir()
	c, gosh := filepath.Join(dir, "floor-c.so"), filepath.Join(dir, "floor-go.so")
	if o, err := exec.Command(gcc, "-O2", "-Wall", "-shared", "-fPIC", "-I", hdr, "-o", c, "testdata/floor/floor.c").CombinedOutput(); err != nil {
		t.Fatalf("gcc floor: %v\n%s", err, o)
	}
	args := []string{"build", "-buildmode=c-shared", "-o", gosh}
	if f := os.Getenv("P11CARD_MODULE_LDFLAGS"); f != "" {
		args = append(args, "-ldflags="+f)
	}
	if o, err := exec.Command(filepath.Join(runtime.GOROOT(), "bin", "go"), append(args, "./testdata/floor")...).CombinedOutput(); err != nil {
		t.Fatalf("go build floor: %v\n%s", err, o)
	}
	return []benchModule{{"floor: C", c}, {"floor: Go", gosh}}
}

// benchRSS is VmRSS in KB of benchclient after loading module and C_Initialize (the bare
// process without one).
func benchRSS(t *testing.T, bc, module string) (rss, anon int) {
	t.Helper()
	args := []string{"rss"}
	if module != "" {
		args = append(args, module)
	}
	o, err := toolCmd(t, context.Background(), bc, args...).CombinedOutput()
	var hwm int
	if _, serr := fmt.Sscanf(string(o), "rss %d hwm %d anon %d", &rss, &hwm, &anon); err != nil || serr != nil {
		t.Fatalf("benchclient rss %s: %v %v\n%s", module, err, serr, o)
	}
	return rss, anon
}

func fileSize(p string) int64 {
	fi, err := os.Stat(p)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// listedObjects counts the objects in pkcs11-tool's -O output.
func listedObjects(out string) int {
	n := 0
	for _, l := range strings.Split(out, "\n") {
		for _, p := range []string{"Certificate Object", "Public Key Object", "Private Key Object", "Secret Key Object", "Data object"} {
			if strings.HasPrefix(l, p) {
				n++
			}
		}
	}
	return n
}

// pcscdCalls counts the calls in pcscd's debug log from offset at on, by name.
func pcscdCalls(p string, at int64) map[string]int {
	hist := map[string]int{}
	f, err := os.Open(p)
	if err != nil {
		return hist
	}
	defer f.Close()
	if _, err := f.Seek(at, io.SeekStart); err != nil {
		return hist
	}
	b, _ := io.ReadAll(f)
	for _, l := range strings.Split(string(b), "\n") {
		if _, rest, ok := strings.Cut(l, "Received command: "); ok {
			hist[strings.Fields(rest)[0]]++
		}
	}
	return hist
}

func median(v []float64) float64 { return quantile(v, 0.5) }

// quantile is the q-quantile of v (0 ≤ q ≤ 1), interpolated between the two nearest
// values; 0 for no values.
func quantile(v []float64, q float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	at := q * float64(len(s)-1)
	i := int(at)
	if i >= len(s)-1 {
		return s[len(s)-1]
	}
	return s[i] + (at-float64(i))*(s[i+1]-s[i])
}

// firstLine is what a failed run said: its first line naming an error, else err and the
// output's last line (where the client stopped).
func firstLine(out string, err error) string {
	last := ""
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, "error") || strings.Contains(l, "CKR_") || strings.Contains(l, "failed") {
			return strings.TrimSpace(l)
		}
		if l = strings.TrimSpace(l); l != "" {
			last = l
		}
	}
	if last == "" {
		return err.Error()
	}
	if len(last) > 80 {
		last = "..." + last[len(last)-77:]
	}
	return fmt.Sprintf("%v; output stops at %q", err, last)
}

// write prints the markdown table to the test log and, with P11CARD_BENCH_OUT, writes
// bench.md and bench.json there.
func (rep BenchReport) write(t *testing.T) {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "# p11-card benchmark\n\nVirtual YubiKey 5.7 PIV card through one pcscd (rows named \"OpenPGP: …\": a virtual YubiKey OpenPGP 3.4 card in its place, for p11-card and OpenSC; ykcs11 is PIV only); each cell is one process (pkcs11-tool, or the client named); wall time is the median of %d runs (the first row and the floor: %d), the modules taking turns in an order where each comes right after each other one equally often (a process leaves the next a different card and pcscd), beside the middle half of the runs (first to third quartile). Ratios are p11-card / other (below 1: p11-card does less). Objects are what the listings showed: a module that reads less of the card may show less of it.\n\n", rep.Runs, rep.FirstRuns)
	cols := mdHead(&b, 2, "operation", "module", "objects", "APDUs", "PC/SC calls", "wall ms", "middle half", "APDU ratio", "PC/SC ratio", "time ratio")
	ours := map[string]BenchRow{}
	for _, row := range rep.Rows {
		if row.Module == "p11-card" {
			ours[row.Op] = row
		}
	}
	ratio := func(a, b float64) string {
		if b == 0 {
			return "–"
		}
		return fmt.Sprintf("%.2f", a/b)
	}
	for _, row := range rep.Rows {
		if row.Error != "" {
			mdFailed(&b, cols, row.Error, row.Op, row.Module)
			continue
		}
		o := ours[row.Op]
		r1, r2, r3 := "", "", ""
		if row.Module != "p11-card" && o.Error == "" {
			r1, r2, r3 = ratio(float64(o.APDUs), float64(row.APDUs)), ratio(float64(o.Calls), float64(row.Calls)), ratio(o.WallMS, row.WallMS)
		}
		objs := ""
		if row.Objects > 0 {
			objs = strconv.Itoa(row.Objects)
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %d | %d | %.1f | %.1f–%.1f | %s | %s | %s |\n", row.Op, row.Module, objs, row.APDUs, row.Calls, row.WallMS, row.WallQ1MS, row.WallQ3MS, r1, r2, r3)
	}
	// kb writes "module value, …" in module order.
	kb := func(v map[string]int) {
		names := slices.Sorted(maps.Keys(v))
		for i, n := range names {
			if i > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "%s %d", n, v[n])
		}
	}
	fmt.Fprintf(&b, "\nResident memory after C_Initialize (module's share of VmRSS, KB): ")
	kb(rep.MemoryKB)
	fmt.Fprintf(&b, "; of it anonymous memory (RssAnon: heap, stacks, pages written; the rest are pages of the libraries' files, shared with every process that maps them): ")
	kb(rep.AnonKB)
	fmt.Fprintf(&b, ".\n\nModule overhead: a signature (C_SignInit and C_Sign, ECDSA P-256, %d APDU%s) takes %.3f ms through p11-card, the same APDUs sent straight through libpcsclite by a C process %.3f ms (ratio %.2f).\n",
		rep.SignAPDUs, plural(rep.SignAPDUs), float64(rep.SignNS)/1e6, float64(rep.TransmitNS)/1e6, float64(rep.SignNS)/float64(rep.TransmitNS))
	fmt.Fprint(&b, "\nFloor: `pkcs11-tool -L`, in the same turns as the first row, on a library that does nothing (one empty slot), built in C and inside a Go c-shared library whose C_Initialize calls into Go, as every call of p11-card does. It is what a process pays for loading a library before any card work; the difference between the two is the Go runtime's start and its resident memory, which p11-card pays in every process:\n\n")
	cols = mdHead(&b, 1, "library", "wall ms", "middle half", "resident KB after C_Initialize", "of it anonymous")
	for _, row := range rep.Floor {
		if row.Error != "" {
			mdFailed(&b, cols, row.Error, row.Library)
			continue
		}
		fmt.Fprintf(&b, "| %s | %.1f | %.1f–%.1f | %d | %d |\n", row.Library, row.WallMS, row.WallQ1MS, row.WallQ3MS, row.RSSKB, row.AnonKB)
	}
	if w := rep.lessFloor(); len(w) > 0 {
		fmt.Fprintf(&b, "\nThe first row less the floor of each module's language (Go for p11-card, C for the others), ms: ")
		for i, m := range slices.Sorted(maps.Keys(w)) {
			if i > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "%s %.1f", m, w[m])
		}
		b.WriteString(".\n")
	}
	if w := rep.memLessFloor(); len(w) > 0 {
		fmt.Fprintf(&b, "\nResident memory after C_Initialize less the floor of each module's language, KB (of it anonymous): ")
		for i, m := range slices.Sorted(maps.Keys(w)) {
			if i > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "%s %d (%d)", m, w[m][0], w[m][1])
		}
		b.WriteString(".\n")
	}
	fmt.Fprintf(&b, "\nWhere a process's time goes: a C process that loads nothing else (benchclient phases) forks a child that loads the library, asks what `pkcs11-tool -L` asks (C_Initialize, the slot list, each token's info), finalizes and exits; median ms of %d runs, the libraries taking turns as above. pkcs11-tool has libcrypto loaded before it loads a module, so ykcs11 and OpenSC load faster there than here; p11-card's share of the Go runtime is the Go floor's: its load (relocations, and the runtime's thread), the first call into Go (the runtime's start), and its exit (its threads):\n\n", rep.FirstRuns)
	cols = mdHead(&b, 1, "library", "load", "initialize, list slots and tokens", "finalize", "exit", "sum")
	for _, row := range rep.Phases {
		if row.Error != "" {
			mdFailed(&b, cols, row.Error, row.Library)
			continue
		}
		fmt.Fprintf(&b, "| %s | %.2f | %.2f | %.2f | %.2f | %.2f |\n", row.Library, row.LoadMS, row.InitMS, row.FinalMS, row.ExitMS, row.LoadMS+row.InitMS+row.FinalMS+row.ExitMS)
	}
	fmt.Fprint(&b, "\nCard pulled to event: a blocked C_WaitForSlotEvent returns, beside pcsc_scan watching the same removals (median ms; pcscd polls vpcd's readers, so it notices a removal 0–400 ms after it):\n\n")
	cols = mdHead(&b, 1, "module", "C_WaitForSlotEvent", "pcsc_scan", "module after pcsc_scan")
	for _, row := range rep.Events {
		if row.Error != "" {
			mdFailed(&b, cols, row.Error, row.Module)
			continue
		}
		fmt.Fprintf(&b, "| %s | %.1f | %.1f | %+.1f |\n", row.Module, row.MS, row.ScanMS, row.AfterScanMS)
	}
	fmt.Fprint(&b, "\nTwo cards in two readers, 50 ms per private-key operation, ECDSA P-256 signatures per second:\n\n")
	mdHead(&b, 1, "module", "one thread", "a thread per card", "speed-up")
	per := map[string][2]ThroughputRow{}
	var mods []string
	for _, row := range rep.Throughput {
		p, seen := per[row.Module]
		if !seen {
			mods = append(mods, row.Module)
		}
		p[row.Threads-1] = row
		per[row.Module] = p
	}
	cell := func(row ThroughputRow) string {
		if row.Error != "" {
			return failedCell(row.Error)
		}
		return fmt.Sprintf("%.1f", row.PerSecond)
	}
	for _, m := range mods {
		p := per[m]
		fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", m, cell(p[0]), cell(p[1]), ratio(p[1].PerSecond, p[0].PerSecond))
	}
	t.Log("\n" + b.String())
	dir := os.Getenv("P11CARD_BENCH_OUT")
	if dir == "" {
		return
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	js, _ := json.MarshalIndent(rep, "", "  ")
	if err := os.WriteFile(filepath.Join(dir, "bench.json"), append(js, '\n'), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "bench.md"), []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
}

// lessFloor is the first row's median wall time per module less the floor of the
// module's language (Go for p11-card, C for the others): the time its own work took. Empty
// when a floor failed; modules whose run failed are left out.
func (rep BenchReport) lessFloor() map[string]float64 {
	floor := map[string]float64{}
	for _, f := range rep.Floor {
		if f.Error != "" {
			return nil
		}
		floor[f.Library] = f.WallMS
	}
	out := map[string]float64{}
	for _, row := range rep.Rows {
		if row.Op != rep.Rows[0].Op || row.Error != "" {
			continue
		}
		if f, ok := floor[floorLang(row.Module)]; ok {
			out[row.Module] = row.WallMS - f
		}
	}
	return out
}

// floorLang is the floor library a module is measured against: Go for p11-card, C for
// the others.
func floorLang(module string) string {
	if module == "p11-card" {
		return "Go"
	}
	return "C"
}

// memLessFloor is each module's resident and anonymous memory after C_Initialize less
// the floor's of its language, as lessFloor does for time. Empty when a floor failed.
func (rep BenchReport) memLessFloor() map[string][2]int {
	floor := map[string]FloorRow{}
	for _, f := range rep.Floor {
		if f.Error != "" {
			return nil
		}
		floor[f.Library] = f
	}
	out := map[string][2]int{}
	for m, rss := range rep.MemoryKB {
		if f, ok := floor[floorLang(m)]; ok {
			out[m] = [2]int{rss - f.RSSKB, rep.AnonKB[m] - f.AnonKB}
		}
	}
	return out
}

// mdHead writes a markdown table's header, the first left columns aligned left and the
// others right, and returns the number of columns.
func mdHead(b *strings.Builder, left int, cols ...string) int {
	fmt.Fprintf(b, "| %s |\n|", strings.Join(cols, " | "))
	for i := range cols {
		if i < left {
			b.WriteString(" --- |")
		} else {
			b.WriteString(" ---: |")
		}
	}
	b.WriteString("\n")
	return len(cols)
}

// mdFailed writes a row of a cols-column table for a run that failed: the cells that name
// the run, the error, then empty cells.
func mdFailed(b *strings.Builder, cols int, err string, lead ...string) {
	cells := append(slices.Clone(lead), failedCell(err))
	for len(cells) < cols {
		cells = append(cells, "")
	}
	fmt.Fprintf(b, "| %s |\n", strings.Join(cells, " | "))
}

// failedCell is a table cell for a failed run: its error, with no column separator in it.
func failedCell(err string) string { return "failed: " + strings.ReplaceAll(err, "|", "/") }

// plural is "s" unless n is 1.
func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

func TestQuantile(t *testing.T) {
	v := []float64{9, 1, 5, 3, 7}
	for _, tc := range []struct{ q, want float64 }{{0, 1}, {0.25, 3}, {0.5, 5}, {0.75, 7}, {1, 9}, {0.125, 2}} {
		if got := quantile(v, tc.q); got != tc.want {
			t.Errorf("quantile(%v, %v) = %v, want %v", v, tc.q, got, tc.want)
		}
	}
	if got := median([]float64{4, 1, 3, 2}); got != 2.5 {
		t.Errorf("median of 1..4 = %v, want 2.5", got)
	}
	if got := quantile(nil, 0.5); got != 0 {
		t.Errorf("quantile(nil) = %v", got)
	}
	if v[0] != 9 {
		t.Error("quantile sorted its argument")
	}
}

func TestLessFloor(t *testing.T) {
	rep := BenchReport{
		Rows: []BenchRow{{Op: "init", Module: "p11-card", WallMS: 13}, {Op: "init", Module: "ykcs11", WallMS: 11},
			{Op: "init", Module: "opensc", Error: "failed"}, {Op: "sign", Module: "p11-card", WallMS: 40}},
		Floor: []FloorRow{{Library: "C", WallMS: 5}, {Library: "Go", WallMS: 7.5}},
	}
	got := rep.lessFloor()
	if want := map[string]float64{"p11-card": 5.5, "ykcs11": 6}; !maps.Equal(got, want) {
		t.Errorf("lessFloor = %v, want %v", got, want)
	}
	rep.Floor[1].Error = "exit 1"
	if got := rep.lessFloor(); len(got) != 0 {
		t.Errorf("with a failed floor: %v", got)
	}
}

func TestMemLessFloor(t *testing.T) {
	rep := BenchReport{
		MemoryKB: map[string]int{"p11-card": 5000, "ykcs11": 2000},
		AnonKB:   map[string]int{"p11-card": 1300, "ykcs11": 500},
		Floor:    []FloorRow{{Library: "C", RSSKB: 100, AnonKB: 10}, {Library: "Go", RSSKB: 2100, AnonKB: 700}},
	}
	got := rep.memLessFloor()
	if want := map[string][2]int{"p11-card": {2900, 600}, "ykcs11": {1900, 490}}; !maps.Equal(got, want) {
		t.Errorf("memLessFloor = %v, want %v", got, want)
	}
	rep.Floor[0].Error = "exit 1"
	if got := rep.memLessFloor(); len(got) != 0 {
		t.Errorf("with a failed floor: %v", got)
	}
}

func TestMarkdownTable(t *testing.T) {
	var b strings.Builder
	n := mdHead(&b, 1, "module", "ms", "ratio")
	mdFailed(&b, n, "exit 1 | no slot", "ykcs11")
	want := "| module | ms | ratio |\n| --- | ---: | ---: |\n| ykcs11 | failed: exit 1 / no slot |  |\n"
	if b.String() != want {
		t.Errorf("got\n%s\nwant\n%s", b.String(), want)
	}
}

// The schedule gives every module its runs, never one module twice in a row, and, when
// the runs fill whole circuits, each module right after each other one equally often.
func TestBenchSchedule(t *testing.T) {
	for n := 1; n <= 6; n++ {
		for _, runs := range []int{1, 4, 11, 55, 60} {
			order := benchSchedule(n, runs)
			count := make([]int, n)
			pairs := map[[2]int]int{}
			for i, j := range order {
				count[j]++
				if i > 0 {
					if order[i-1] == j && n > 1 {
						t.Errorf("n %d runs %d: module %d twice in a row at %d", n, runs, j, i)
					}
					pairs[[2]int{order[i-1], j}]++
				}
			}
			for j, c := range count {
				if c != runs {
					t.Errorf("n %d runs %d: module %d has %d runs", n, runs, j, c)
				}
			}
			if n < 2 || runs%(n-1) != 0 {
				continue
			}
			// Whole circuits: every ordered pair the same number of times, counting the
			// schedule's end leading back to its start.
			pairs[[2]int{order[len(order)-1], order[0]}]++
			for a := 0; a < n; a++ {
				for b := 0; b < n; b++ {
					if a != b && pairs[[2]int{a, b}] != runs/(n-1) {
						t.Errorf("n %d runs %d: %d→%d %d times, want %d", n, runs, a, b, pairs[[2]int{a, b}], runs/(n-1))
					}
				}
			}
		}
	}
}

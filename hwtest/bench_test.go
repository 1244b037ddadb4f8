//go:build hwtest

package hwtest

import (
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/p11-card/p11-card/cards/piv/pivtest"
	"github.com/p11-card/p11-card/cards/vcard"
)

// The benchmark `make bench` runs: P11CARD_BENCH=N runs every operation N times per module
// (default 1, as `make test` runs it to check that the harness works) and
// P11CARD_BENCH_OUT=DIR writes DIR/bench.md and DIR/bench.json. No test asserts a time.

// benchModule is a PKCS#11 module under comparison.
type benchModule struct{ name, path string }

// benchOp is one pkcs11-tool process, as an application would run it.
type benchOp struct {
	name string
	args []string
}

// BenchRow is one operation measured on one module.
type BenchRow struct {
	Op     string  `json:"op"`
	Module string  `json:"module"`
	APDUs  int     `json:"apdus"`      // commands the card received, per run
	Calls  int     `json:"pcsc_calls"` // PC/SC calls that reached pcscd, per run
	WallMS float64 `json:"wall_ms"`    // median wall time of a whole process
	Error  string  `json:"error,omitempty"`
}

// BenchReport is what bench.json holds.
type BenchReport struct {
	Runs       int            `json:"runs"`
	Rows       []BenchRow     `json:"rows"`
	MemoryKB   map[string]int `json:"rss_after_initialize_kb"` // module's share of VmRSS
	SignNS     int64          `json:"module_sign_ns"`          // median C_Sign (ECDSA P-256), ours
	TransmitNS int64          `json:"bare_transmit_ns"`        // the same APDUs sent straight
	SignAPDUs  int            `json:"module_sign_apdus"`       // APDUs one C_Sign sends
}

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
		{"initialize, list slots", []string{"-L"}},
		{"list public objects", []string{"-O"}},
		{"login, list every object", append([]string{"-O"}, login...)},
		{"sign RSA-2048 PKCS#1", append([]string{"--sign", "--id", "01", "-m", "SHA256-RSA-PKCS", "--input-file", data, "--output-file", out}, login...)},
		{"sign ECDSA P-256", append([]string{"--sign", "--id", "04", "-m", "ECDSA-SHA256", "--input-file", data, "--output-file", out}, login...)},
		{"ECDH P-256", append([]string{"--derive", "--id", "05", "-m", "ECDH1-DERIVE", "--input-file", peerFile, "--output-file", out}, login...)},
		{"decrypt RSA-2048", append([]string{"--decrypt", "--id", "03", "-m", "RSA-PKCS", "--input-file", ctFile, "--output-file", out}, login...)},
		{"generate EC P-256 key pair", []string{"--keypairgen", "--login", "--login-type", "so", "--so-pin", modMgmt, "--key-type", "EC:prime256v1", "--id", "06"}},
	}

	rep := BenchReport{Runs: runs, MemoryKB: map[string]int{}}
	for _, op := range ops {
		for _, m := range mods {
			row := BenchRow{Op: op.name, Module: m.name}
			var walls []float64
			apdus, calls := 0, 0
			for i := 0; i < runs && row.Error == ""; i++ {
				n0, c0 := log.Count(), r.ClientCalls()
				logAt := fileSize(r.LogPath())
				start := time.Now()
				o, err := runToolErr(t, "pkcs11-tool", append([]string{"--module", m.path}, op.args...)...)
				walls = append(walls, float64(time.Since(start).Microseconds())/1000)
				if err != nil {
					row.Error = firstLine(o, err)
				}
				apdus += log.Count() - n0
				calls += r.ClientCalls() - c0
				if i == 0 && m.name == "p11-card" {
					t.Logf("p11-card %s: PC/SC calls %v", op.name, pcscdCalls(r.LogPath(), logAt))
				}
			}
			row.APDUs, row.Calls, row.WallMS = apdus/len(walls), calls/len(walls), median(walls)
			rep.Rows = append(rep.Rows, row)
		}
	}

	bc := benchClient(t)
	base := benchRSS(t, bc, "")
	for _, m := range mods {
		rep.MemoryKB[m.name] = benchRSS(t, bc, m.path) - base
	}

	// Module overhead: our C_Sign (ECDSA P-256, 9E) against the same APDUs sent straight
	// through package pcsc over the same pcscd.
	n := 5 * runs
	n0 := log.Count()
	o, err := toolCmd(t, context.Background(), bc, "sign", so, modPIN, "04", strconv.Itoa(n)).CombinedOutput()
	if err != nil {
		t.Fatalf("benchclient sign: %v\n%s", err, o)
	}
	var signs []float64
	for _, l := range strings.Split(string(o), "\n") {
		if v, ok := strings.CutPrefix(l, "sign "); ok {
			ns, _ := strconv.ParseFloat(v, 64)
			signs = append(signs, ns)
		}
	}
	if len(signs) != n {
		t.Fatalf("benchclient sign printed %d timings, want %d:\n%s", len(signs), n, o)
	}
	rep.SignNS = int64(median(signs))
	entries := log.Entries()[n0:]
	// The last signature's commands: everything after the last but one GENERAL AUTHENTICATE.
	last := []vcard.Entry{}
	for i := len(entries) - 1; i >= 0; i-- {
		if len(entries[i].Cmd) > 1 && entries[i].Cmd[1] == 0x87 && len(last) > 0 {
			break
		}
		last = append([]vcard.Entry{entries[i]}, last...)
	}
	rep.SignAPDUs = len(last)
	rep.TransmitNS = bareTransmit(t, r.ReaderName(0), last, n)

	rep.write(t)
	// The harness ran: every module has every row, and ours reached the card.
	if len(rep.Rows) != len(ops)*len(mods) {
		t.Fatalf("%d rows", len(rep.Rows))
	}
	for _, row := range rep.Rows {
		if row.Module == "p11-card" && (row.Error != "" || row.APDUs == 0 && row.Op != "initialize, list slots" || row.Calls <= 0) {
			t.Errorf("p11-card %s: %+v", row.Op, row)
		}
	}
	if rep.MemoryKB["p11-card"] <= 0 || rep.SignAPDUs == 0 || rep.TransmitNS <= 0 {
		t.Errorf("memory %v, sign APDUs %d, transmit %d ns", rep.MemoryKB, rep.SignAPDUs, rep.TransmitNS)
	}
}

// bareTransmit sends the commands of entries, in one transaction each round, n times
// through package pcsc and returns the median time of a round.
func bareTransmit(t *testing.T, reader string, entries []vcard.Entry, n int) int64 {
	t.Helper()
	ctx := context.Background()
	pc := pcscContext(t)
	k, err := pc.Connect(ctx, reader)
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	var times []float64
	for i := 0; i < n; i++ {
		start := time.Now()
		unlock, _, err := k.Lock(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			if _, err := k.Transmit(ctx, e.Cmd); err != nil {
				unlock()
				t.Fatal(err)
			}
		}
		unlock()
		times = append(times, float64(time.Since(start).Nanoseconds()))
	}
	return int64(median(times))
}

// benchClient compiles testdata/benchclient.c once per test.
func benchClient(t *testing.T) string {
	t.Helper()
	gcc := needTool(t, "gcc")
	hdr, _ := filepath.Abs("../p11")
	bin := filepath.Join(t.TempDir(), "benchclient")
	if o, err := exec.Command(gcc, "-O2", "-Wall", "-I", hdr, "-o", bin, "testdata/benchclient.c", "-ldl").CombinedOutput(); err != nil {
		t.Fatalf("gcc: %v\n%s", err, o)
	}
	return bin
}

// benchRSS is VmRSS in KB of benchclient after loading module and C_Initialize (the bare
// process without one).
func benchRSS(t *testing.T, bc, module string) int {
	t.Helper()
	args := []string{"rss"}
	if module != "" {
		args = append(args, module)
	}
	o, err := toolCmd(t, context.Background(), bc, args...).CombinedOutput()
	var rss, hwm int
	if _, serr := fmt.Sscanf(string(o), "rss %d hwm %d", &rss, &hwm); err != nil || serr != nil {
		t.Fatalf("benchclient rss %s: %v %v\n%s", module, err, serr, o)
	}
	return rss
}

func fileSize(p string) int64 {
	fi, err := os.Stat(p)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// pcscdCalls counts the calls in pcscd's debug log from offset at on, by name.
func pcscdCalls(p string, at int64) map[string]int {
	b, _ := os.ReadFile(p)
	hist := map[string]int{}
	if at > int64(len(b)) {
		return hist
	}
	for _, l := range strings.Split(string(b[at:]), "\n") {
		if _, rest, ok := strings.Cut(l, "Received command: "); ok {
			hist[strings.Fields(rest)[0]]++
		}
	}
	return hist
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func firstLine(out string, err error) string {
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, "error") || strings.Contains(l, "CKR_") || strings.Contains(l, "failed") {
			return strings.TrimSpace(l)
		}
	}
	return err.Error()
}

// write prints the markdown table to the test log and, with P11CARD_BENCH_OUT, writes
// bench.md and bench.json there.
func (rep BenchReport) write(t *testing.T) {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "# p11-card benchmark\n\nVirtual YubiKey 5.7 PIV card through one pcscd; each cell is one pkcs11-tool process; wall time is the median of %d runs. Ratios are p11-card / other (below 1: p11-card does less).\n\n", rep.Runs)
	fmt.Fprintln(&b, "| operation | module | APDUs | PC/SC calls | wall ms | APDU ratio | PC/SC ratio | time ratio |")
	fmt.Fprintln(&b, "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
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
			fmt.Fprintf(&b, "| %s | %s | failed: %s | | | | | |\n", row.Op, row.Module, strings.ReplaceAll(row.Error, "|", "/"))
			continue
		}
		o := ours[row.Op]
		r1, r2, r3 := "", "", ""
		if row.Module != "p11-card" && o.Error == "" {
			r1, r2, r3 = ratio(float64(o.APDUs), float64(row.APDUs)), ratio(float64(o.Calls), float64(row.Calls)), ratio(o.WallMS, row.WallMS)
		}
		fmt.Fprintf(&b, "| %s | %s | %d | %d | %.1f | %s | %s | %s |\n", row.Op, row.Module, row.APDUs, row.Calls, row.WallMS, r1, r2, r3)
	}
	fmt.Fprintf(&b, "\nResident memory after C_Initialize (module's share of VmRSS, KB): ")
	var names []string
	for n := range rep.MemoryKB {
		names = append(names, n)
	}
	sort.Strings(names)
	for i, n := range names {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s %d", n, rep.MemoryKB[n])
	}
	fmt.Fprintf(&b, ".\n\nModule overhead: C_Sign (ECDSA P-256, %d APDUs) takes %.3f ms through p11-card, the same APDUs sent straight through package pcsc %.3f ms (ratio %.2f).\n",
		rep.SignAPDUs, float64(rep.SignNS)/1e6, float64(rep.TransmitNS)/1e6, float64(rep.SignNS)/float64(rep.TransmitNS))
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

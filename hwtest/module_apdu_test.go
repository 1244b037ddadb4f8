//go:build hwtest

package hwtest

import (
	"fmt"
	"path/filepath"
	"testing"

	"github.com/p11-card/p11-card/cards/piv/pivtest"
	"github.com/p11-card/p11-card/cards/vcard"
)

// TestModuleAPDUCount compares the APDUs a pkcs11-tool signature costs through our
// module and through OpenSC's and Yubico's, on the same virtual YubiKey.
func TestModuleAPDUCount(t *testing.T) {
	testRig(t)
	so, _ := modBuild(t)
	c, err := pivtest.New(pivtest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []struct{ slot, alg byte }{{0x9A, pivtest.AlgRSA2048}, {0x9C, pivtest.AlgECCP256}, {0x9D, pivtest.AlgRSA2048}, {0x9E, pivtest.AlgECCP256}} {
		if _, err := c.GenerateInSlot(s.slot, s.alg); err != nil {
			t.Fatal(err)
		}
	}
	log := &vcard.Log{}
	insert(t, 0, vcard.WithLog(c, log))
	data := writeFile(t, "data", []byte("count me"))
	sig := filepath.Join(t.TempDir(), "sig")
	counts := map[string]int{}
	for _, m := range []struct{ name, path string }{{"p11-card", so}, {"opensc", openscModule}, {"ykcs11", ykcs11Module}} {
		n := log.Count()
		if _, err := runToolErr(t, "pkcs11-tool", "--module", m.path, "--sign", "--login", "--pin", modPIN, "--id", "01", "-m", "SHA256-RSA-PKCS", "--input-file", data, "--output-file", sig); err != nil {
			t.Logf("%s: %v", m.name, err)
			continue
		}
		counts[m.name] = log.Count() - n
		if m.name == "p11-card" {
			t.Logf("p11-card --sign by INS P1: %v", insHistogram(log, n))
		}
	}
	t.Logf("APDUs for pkcs11-tool --sign: %v", counts)
	list := map[string]int{}
	for _, m := range []struct{ name, path string }{{"p11-card", so}, {"opensc", openscModule}, {"ykcs11", ykcs11Module}} {
		n := log.Count()
		if _, err := runToolErr(t, "pkcs11-tool", "--module", m.path, "-O", "--login", "--pin", modPIN); err != nil {
			t.Logf("%s: %v", m.name, err)
			continue
		}
		list[m.name] = log.Count() - n
		if m.name == "p11-card" {
			t.Logf("p11-card -O --login by INS P1: %v", insHistogram(log, n))
		}
	}
	t.Logf("APDUs for pkcs11-tool -O --login: %v", list)
	if o, ok := counts["opensc"]; ok && counts["p11-card"] > o {
		t.Errorf("p11-card used %d APDUs, OpenSC %d", counts["p11-card"], o)
	}
}

// insHistogram counts the commands logged since entry n by INS and P1.
func insHistogram(log *vcard.Log, n int) map[string]int {
	hist := map[string]int{}
	for _, e := range log.Since(n) {
		if len(e.Cmd) >= 4 {
			hist[fmt.Sprintf("%02X %02X", e.Cmd[1], e.Cmd[2])]++
		}
	}
	return hist
}

// TestModuleClientAPDUs: GnuTLS and NSS, which log in and ask for CK_TOKEN_INFO over and
// over (p11tool logs in and out once per key), read the PIN's status once through our
// module, and cost the card fewer APDUs than through OpenSC's.
func TestModuleClientAPDUs(t *testing.T) {
	testRig(t)
	so, _ := modBuild(t)
	c := modKeys(t, pivtest.Options{})
	log := &vcard.Log{}
	insert(t, 0, vcard.WithLog(c, log))
	pin := writeFile(t, "pin", []byte(modPIN+"\n"))
	for _, client := range []struct {
		name string
		cmd  func(module, db string) []string
	}{
		{"p11tool --login --list-privkeys", func(module, _ string) []string {
			return []string{"p11tool", "--provider", module, "--login", "--set-pin", modPIN, "--list-privkeys"}
		}},
		{"certutil -K", func(_, db string) []string {
			return []string{"certutil", "-K", "-h", "YubiKey PIV #12345678", "-d", db, "-f", pin}
		}},
	} {
		counts := map[string]int{}
		for _, m := range []struct{ name, path string }{{"p11-card", so}, {"opensc", openscModule}} {
			db := "sql:" + t.TempDir()
			runTool(t, "certutil", "-N", "-d", db, "--empty-password")
			runTool(t, "modutil", "-dbdir", db, "-add", "m", "-libfile", m.path, "-force")
			cmd := client.cmd(m.path, db)
			n := log.Count()
			if out, err := runToolErr(t, cmd[0], cmd[1:]...); err != nil {
				t.Fatalf("%s with %s: %v\n%s", client.name, m.name, err, out)
			}
			counts[m.name] = log.Count() - n
			if m.name == "p11-card" {
				t.Logf("%s by INS P1: %v", client.name, insHistogram(log, n))
				// Once when the run takes under a second (pinStatusFresh), as it does in
				// ~40 ms; up to 3 for a machine stalling a few seconds. 14 without it.
				if k := pinStatusReads(log, n); k > 3 {
					t.Errorf("%s: the PIN's status read %d times, want once", client.name, k)
				}
			}
		}
		t.Logf("%s: APDUs %v", client.name, counts)
		if counts["p11-card"] >= counts["opensc"] {
			t.Errorf("%s: p11-card %d APDUs, OpenSC %d", client.name, counts["p11-card"], counts["opensc"])
		}
	}
}

// pinStatusReads counts the GET METADATA of the PIN (slot 80) logged since entry n.
func pinStatusReads(log *vcard.Log, n int) int {
	k := 0
	for _, e := range log.Since(n) {
		if len(e.Cmd) >= 4 && e.Cmd[1] == 0xF7 && e.Cmd[3] == 0x80 {
			k++
		}
	}
	return k
}

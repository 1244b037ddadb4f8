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

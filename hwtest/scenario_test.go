//go:build hwtest

package hwtest

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"fmt"
	"io"
	"math/big"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/p11-card/p11-card/apdu"
	"github.com/p11-card/p11-card/cards/piv/pivtest"
)

// scriptProc is a `p11client script` process: one application of the scenario.
type scriptProc struct {
	t    *testing.T
	name string
	cmd  *exec.Cmd
	in   io.WriteCloser
	out  *bufio.Scanner
}

func startScript(t *testing.T, ctx context.Context, name string) *scriptProc {
	t.Helper()
	so, client := modBuild(t)
	cmd := toolCmd(t, ctx, client, so, modPIN, "script")
	in, _ := cmd.StdinPipe()
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		in.Close()
		cmd.Wait()
	})
	return &scriptProc{t: t, name: name, cmd: cmd, in: in, out: bufio.NewScanner(out)}
}

// do runs one script line and returns its answer.
func (p *scriptProc) do(line string) string {
	p.t.Helper()
	fmt.Fprintln(p.in, line)
	if !p.out.Scan() {
		p.t.Fatalf("%s: no answer to %q", p.name, line)
	}
	return p.out.Text()
}

// want runs a line and checks that the answer starts with want.
func (p *scriptProc) want(step int, line, want string) string {
	p.t.Helper()
	got := p.do(line)
	if !strings.HasPrefix(got, want) {
		p.t.Errorf("step %d, %s: %q gave %q, want %q", step, p.name, line, got, want)
	}
	return strings.TrimSpace(strings.TrimPrefix(got, "CKR_OK"))
}

// TestModuleTwoProcessScenario is pkcs11-usage.md §7 through the module: two
// applications (two processes, each making its calls from two OS threads) and one token,
// a YubiKey whose management key is PIN-protected, so that a logged-in user may change
// the card's objects as the scenario asks.
func TestModuleTwoProcessScenario(t *testing.T) {
	c := modKeys(t, pivtest.Options{})
	if err := c.PutObject(pivtest.ObjectAdmin, apdu.TLVBytes(0x80, apdu.TLVBytes(0x81, []byte{0x02}))); err != nil {
		t.Fatal(err)
	}
	if err := c.PutObject(pivtest.ObjectPrinted, apdu.TLVBytes(0x88, apdu.TLVBytes(0x89, pivtest.DefaultMgmtKey))); err != nil {
		t.Fatal(err)
	}
	insert(t, 0, c)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	A, B := startScript(t, ctx, "A"), startScript(t, ctx, "B")
	const (
		roPublic = "0"
		roUser   = "1"
		rwPublic = "2"
		rwUser   = "3"
	)

	// 1. A opens R/W sA7 and R/O sA4: both public.
	sA7 := A.want(1, "1 open sA7 rw", "CKR_OK")
	A.want(1, "2 open sA4 ro", "CKR_OK")
	A.want(1, "1 state sA7", "CKR_OK "+rwPublic)
	A.want(1, "2 state sA4", "CKR_OK "+roPublic)
	// 2. SO login fails while A has an R/O session; user login makes both user sessions.
	A.want(2, "1 login sA7 so "+modMgmt, "CKR_SESSION_READ_ONLY_EXISTS")
	A.want(2, "1 login sA7 user "+modPIN, "CKR_OK")
	A.want(2, "2 state sA7", "CKR_OK "+rwUser)
	A.want(2, "1 state sA4", "CKR_OK "+roUser)
	// 3. A new R/W session is a user session at once.
	A.want(3, "2 open sA9 rw", "CKR_OK")
	A.want(3, "2 state sA9", "CKR_OK "+rwUser)
	A.want(3, "1 close sA9", "CKR_OK")
	// 4. Handles are per process.
	B.want(4, "1 raw "+sA7, "CKR_SESSION_HANDLE_INVALID")
	// 5. B's SO login leaves A's sessions as they are.
	B.want(5, "1 open sB rw", "CKR_OK")
	B.want(5, "2 login sB so "+modMgmt, "CKR_OK")
	A.want(5, "1 state sA4", "CKR_OK "+roUser)
	A.want(5, "2 state sA7", "CKR_OK "+rwUser)
	// 6. A session object in A; a public token object (a certificate for 9D) in B; a
	// private token object is refused to the SO.
	A.want(6, "1 data sA7 O1 O1", "CKR_OK")
	B.want(6, "1 cert sB O2 03 "+hex.EncodeToString(scenarioCert(t)), "CKR_OK")
	B.want(6, "2 privdata sB", "CKR_USER_NOT_LOGGED_IN")
	// 7. A finds O2 through sA4, may not change it there, may through sA7; B does not
	// see O1.
	A.want(7, "2 find sA4 O2 1 03", "CKR_OK 1")
	A.want(7, "2 relabel sA4 O2", "CKR_SESSION_READ_ONLY")
	A.want(7, "1 relabel sA7 O2", "CKR_OK")
	B.want(7, "1 findlabel sB x O1", "CKR_OK 0")
	// 8. A destroys O2; B's handle to it is invalid.
	A.want(8, "1 destroy sA7 O2", "CKR_OK")
	B.want(8, "2 label sB O2", "CKR_OBJECT_HANDLE_INVALID")
	// 9. Logout through sA4 makes both public.
	A.want(9, "2 logout sA4", "CKR_OK")
	A.want(9, "1 state sA4", "CKR_OK "+roPublic)
	A.want(9, "2 state sA7", "CKR_OK "+rwPublic)
	// 10. Closing sA7 destroys O1.
	A.want(10, "1 close sA7", "CKR_OK")
	A.want(10, "2 label sA4 O1", "CKR_OBJECT_HANDLE_INVALID")
	// 11. After C_CloseAllSessions a new session is public; B closes; both finalize.
	A.want(11, "1 closeall", "CKR_OK")
	A.want(11, "2 open sNew ro", "CKR_OK")
	A.want(11, "1 state sNew", "CKR_OK "+roPublic)
	B.want(11, "1 close sB", "CKR_OK")
	A.want(11, "2 finalize", "CKR_OK")
	B.want(11, "1 finalize", "CKR_OK")
}

// scenarioCert is a self-signed certificate, for the token object B creates.
func scenarioCert(t *testing.T) []byte {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "O2"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

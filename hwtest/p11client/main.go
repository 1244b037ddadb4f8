// Command p11client is a PKCS#11 consumer written with github.com/miekg/pkcs11: the hwtest
// module tests run it against the built p11-card module, since test files cannot use cgo.
//
//	p11client MODULE PIN threads N    # N threads, each with its own session, sign with
//	                                  # the PIN-always key (CKA_ID 02) after a
//	                                  # context-specific login; prints "sig I HEX"
//	                                  # per thread (r||s over "message I") and "ok N"
//	p11client MODULE PIN removal      # starts a signature with CKA_ID 01, prints "signing"
//	                                  # and then the return value of C_Sign and of a
//	                                  # later C_GetSessionInfo
//	p11client MODULE PIN conformance  # a table of edge cases; prints one line per case
//	p11client MODULE PIN wait         # prints "waiting", blocks in C_WaitForSlotEvent,
//	                                  # prints "event SLOT" and the token's label
//	p11client MODULE PIN swap         # logs in, prints "ready", waits for a line on
//	                                  # stdin (the test swaps the card), then prints the
//	                                  # return values of calls on the old session and
//	                                  # the new token's serial
//	p11client MODULE PIN restart      # signs with CKA_ID 04 in a loop, opening a new
//	                                  # session and logging in again after an error;
//	                                  # prints "signing" after the first signature,
//	                                  # "error CKR_…" per error (not repeated), and
//	                                  # "recovered" at the first signature after an
//	                                  # error once a "mark" line came on stdin; on
//	                                  # "stop" prints "signed N",
//	                                  # "slowest MS" (the slowest call, in ms) and exits
//	p11client MODULE PIN script       # reads commands from stdin, one per line, and
//	                                  # runs them on one of two OS threads; prints
//	                                  # "RV [value]" per command (see script)
package main

import (
	"bufio"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/pkcs11"
)

func main() {
	if len(os.Args) < 4 {
		fmt.Fprintln(os.Stderr, "usage: p11client MODULE PIN threads N | removal | conformance")
		os.Exit(2)
	}
	p := pkcs11.New(os.Args[1])
	if p == nil {
		fail("cannot load %s", os.Args[1])
	}
	if err := p.Initialize(); err != nil {
		fail("C_Initialize: %v", err)
	}
	defer p.Finalize()
	pin := os.Args[2]
	if os.Args[3] == "wait" {
		wait(p)
		return
	}
	slots, err := p.GetSlotList(true)
	if err != nil || len(slots) == 0 {
		fail("no token: %v", err)
	}
	slot := slots[0]
	switch os.Args[3] {
	case "threads":
		n, _ := strconv.Atoi(os.Args[4])
		threads(p, slot, pin, n)
	case "removal":
		removal(p, slot, pin)
	case "conformance":
		conformance(p, slot, pin)
	case "swap":
		swap(p, slot, pin)
	case "restart":
		restart(p, pin)
	case "script":
		script(p, slot)
	default:
		fail("unknown command %q", os.Args[3])
	}
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "p11client: "+format+"\n", args...)
	os.Exit(1)
}

func rvName(err error) string {
	if err == nil {
		return "CKR_OK"
	}
	var e pkcs11.Error
	if errors.As(err, &e) {
		msg := e.Error() // "pkcs11: 0x91: CKR_OPERATION_NOT_INITIALIZED"
		return msg[strings.LastIndex(msg, " ")+1:]
	}
	return err.Error()
}

func key(p *pkcs11.Ctx, s pkcs11.SessionHandle, class uint, id byte) pkcs11.ObjectHandle {
	if err := p.FindObjectsInit(s, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_CLASS, class), pkcs11.NewAttribute(pkcs11.CKA_ID, []byte{id})}); err != nil {
		fail("FindObjectsInit: %v", err)
	}
	hs, _, err := p.FindObjects(s, 2)
	p.FindObjectsFinal(s)
	if err != nil || len(hs) != 1 {
		fail("find key %02x: %d found, %v", id, len(hs), err)
	}
	return hs[0]
}

func threads(p *pkcs11.Ctx, slot uint, pin string, n int) {
	s0 := userSession(p, slot, pin)
	k := key(p, s0, pkcs11.CKO_PRIVATE_KEY, 2)
	var wg sync.WaitGroup
	var out sync.Mutex
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			s, err := p.OpenSession(slot, pkcs11.CKF_SERIAL_SESSION)
			if err != nil {
				errs <- fmt.Errorf("thread %d OpenSession: %w", i, err)
				return
			}
			defer p.CloseSession(s)
			if err := p.SignInit(s, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_ECDSA_SHA256, nil)}, k); err != nil {
				errs <- fmt.Errorf("thread %d SignInit: %w", i, err)
				return
			}
			if err := p.Login(s, pkcs11.CKU_CONTEXT_SPECIFIC, pin); err != nil {
				errs <- fmt.Errorf("thread %d context login: %w", i, err)
				return
			}
			sig, err := p.Sign(s, []byte(fmt.Sprintf("message %d", i)))
			if err != nil {
				errs <- fmt.Errorf("thread %d Sign: %w", i, err)
				return
			}
			out.Lock()
			fmt.Printf("sig %d %x\n", i, sig)
			out.Unlock()
		}(i)
	}
	wg.Wait()
	close(errs)
	bad := 0
	for err := range errs {
		fmt.Println("error:", err)
		bad++
	}
	if bad > 0 {
		os.Exit(1)
	}
	fmt.Printf("ok %d\n", n)
}

// userSession opens a session on slot and logs the user in, or ends the client.
func userSession(p *pkcs11.Ctx, slot uint, pin string) pkcs11.SessionHandle {
	s, err := p.OpenSession(slot, pkcs11.CKF_SERIAL_SESSION)
	if err != nil {
		fail("OpenSession: %v", err)
	}
	if err := p.Login(s, pkcs11.CKU_USER, pin); err != nil {
		fail("Login: %v", err)
	}
	return s
}

func removal(p *pkcs11.Ctx, slot uint, pin string) {
	s := userSession(p, slot, pin)
	k := key(p, s, pkcs11.CKO_PRIVATE_KEY, 1)
	if err := p.SignInit(s, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_SHA256_RSA_PKCS, nil)}, k); err != nil {
		fail("SignInit: %v", err)
	}
	fmt.Println("signing")
	_, err := p.Sign(s, []byte("data"))
	fmt.Println("sign:", rvName(err))
	_, err = p.GetSessionInfo(s)
	fmt.Println("session:", rvName(err))
}

// conformance checks edge cases of the C interface that core's tests cannot reach.
func conformance(p *pkcs11.Ctx, slot uint, pin string) {
	check := func(name string, err error, want string) {
		got := rvName(err)
		status := "PASS"
		if got != want {
			status = "FAIL"
		}
		fmt.Printf("%s %s: got %s want %s\n", status, name, got, want)
	}
	check("initialize twice", p.Initialize(), "CKR_CRYPTOKI_ALREADY_INITIALIZED")
	s, err := p.OpenSession(slot, pkcs11.CKF_SERIAL_SESSION)
	check("open R/O", err, "CKR_OK")
	check("logout not logged in", p.Logout(s), "CKR_USER_NOT_LOGGED_IN")
	check("login", p.Login(s, pkcs11.CKU_USER, pin), "CKR_OK")
	check("login twice", p.Login(s, pkcs11.CKU_USER, pin), "CKR_USER_ALREADY_LOGGED_IN")
	k := key(p, s, pkcs11.CKO_PRIVATE_KEY, 1)
	_, err = p.GetAttributeValue(s, k, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_PRIVATE_EXPONENT, nil)})
	check("sensitive attribute", err, "CKR_ATTRIBUTE_SENSITIVE")
	_, err = p.GetAttributeValue(s, k, []*pkcs11.Attribute{pkcs11.NewAttribute(0x7777, nil)})
	check("invalid attribute", err, "CKR_ATTRIBUTE_TYPE_INVALID")
	attrs, err := p.GetAttributeValue(s, k, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_MODULUS, nil), pkcs11.NewAttribute(pkcs11.CKA_ID, nil)})
	check("modulus and id", err, "CKR_OK")
	if err == nil && (len(attrs[0].Value) != 256 || len(attrs[1].Value) != 1) {
		fmt.Println("FAIL attribute values", len(attrs[0].Value), attrs[1].Value)
	}
	check("sign init", p.SignInit(s, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_SHA256_RSA_PKCS, nil)}, k), "CKR_OK")
	check("sign init again", p.SignInit(s, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_SHA256_RSA_PKCS, nil)}, k), "CKR_OPERATION_ACTIVE")
	sig, err := p.Sign(s, []byte("x"))
	check("sign (size query then sign)", err, "CKR_OK")
	if len(sig) != 256 {
		fmt.Println("FAIL signature length", len(sig))
	}
	_, err = p.Sign(s, []byte("x"))
	check("sign without init", err, "CKR_OPERATION_NOT_INITIALIZED")
	check("unknown mechanism", p.SignInit(s, []*pkcs11.Mechanism{pkcs11.NewMechanism(0x7fff, nil)}, k), "CKR_MECHANISM_INVALID")
	err = p.SeedRandom(s, []byte{1})
	check("seed random", err, "CKR_RANDOM_SEED_NOT_SUPPORTED")
	check("close", p.CloseSession(s), "CKR_OK")
	check("close twice", p.CloseSession(s), "CKR_SESSION_HANDLE_INVALID")
	_, err = p.GetSessionInfo(0)
	check("handle 0", err, "CKR_SESSION_HANDLE_INVALID")
	_, err = p.GetSlotInfo(9999)
	check("bad slot", err, "CKR_SLOT_ID_INVALID")
	_, err = p.OpenSession(slot, 0)
	check("no serial flag", err, "CKR_SESSION_PARALLEL_NOT_SUPPORTED")
}

func swap(p *pkcs11.Ctx, slot uint, pin string) {
	s := userSession(p, slot, pin)
	k := key(p, s, pkcs11.CKO_PRIVATE_KEY, 1)
	ti, _ := p.GetTokenInfo(slot)
	fmt.Println("serial:", strings.TrimSpace(ti.SerialNumber))
	fmt.Println("ready")
	bufio.NewReader(os.Stdin).ReadString('\n')
	_, err := p.GetSessionInfo(s)
	fmt.Println("old session:", rvName(err))
	err = p.SignInit(s, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_SHA256_RSA_PKCS, nil)}, k)
	fmt.Println("old session sign:", rvName(err))
	s2, err := p.OpenSession(slot, pkcs11.CKF_SERIAL_SESSION)
	fmt.Println("new session:", rvName(err))
	if err == nil {
		info, _ := p.GetSessionInfo(s2)
		fmt.Println("new session state:", info.State)
		_, err = p.GetAttributeValue(s2, k, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_ID, nil)})
		fmt.Println("old key handle:", rvName(err))
	}
	ti, _ = p.GetTokenInfo(slot)
	fmt.Println("serial:", strings.TrimSpace(ti.SerialNumber))
}

func wait(p *pkcs11.Ctx) {
	fmt.Println("waiting")
	ev := <-p.WaitForSlotEvent(0)
	fmt.Println("event", ev.SlotID)
	ti, err := p.GetTokenInfo(ev.SlotID)
	fmt.Println("token:", strings.TrimSpace(ti.Label), rvName(err))
}

// restart keeps signing across a pcscd crash: see the package comment.
func restart(p *pkcs11.Ctx, pin string) {
	var marked, stop atomic.Bool
	go func() {
		sc := bufio.NewScanner(os.Stdin)
		for sc.Scan() {
			switch sc.Text() {
			case "mark":
				marked.Store(true)
			case "stop":
				stop.Store(true)
			}
		}
	}()
	var slowest time.Duration
	// call times one PKCS#11 call.
	call := func(f func() error) error {
		t0 := time.Now()
		err := f()
		if d := time.Since(t0); d > slowest {
			slowest = d
		}
		return err
	}
	signed, failed, recovered, last := 0, false, false, ""
	var s pkcs11.SessionHandle
	open := false
	for !stop.Load() {
		err := func() error {
			if !open {
				var slots []uint
				if err := call(func() (err error) { slots, err = p.GetSlotList(true); return }); err != nil {
					return err
				}
				if len(slots) == 0 {
					return errors.New("no token")
				}
				if err := call(func() (err error) { s, err = p.OpenSession(slots[0], pkcs11.CKF_SERIAL_SESSION); return }); err != nil {
					return err
				}
				open = true
				if err := call(func() error { return p.Login(s, pkcs11.CKU_USER, pin) }); err != nil && rvName(err) != "CKR_USER_ALREADY_LOGGED_IN" {
					return err
				}
			}
			var k pkcs11.ObjectHandle
			if err := call(func() error {
				if err := p.FindObjectsInit(s, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PRIVATE_KEY), pkcs11.NewAttribute(pkcs11.CKA_ID, []byte{4})}); err != nil {
					return err
				}
				hs, _, err := p.FindObjects(s, 1)
				p.FindObjectsFinal(s)
				if err == nil && len(hs) == 0 {
					err = errors.New("no key 04")
				}
				if err == nil {
					k = hs[0]
				}
				return err
			}); err != nil {
				return err
			}
			if err := call(func() error { return p.SignInit(s, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_ECDSA, nil)}, k) }); err != nil {
				return err
			}
			return call(func() error { _, err := p.Sign(s, make([]byte, 32)); return err })
		}()
		if err != nil {
			if open {
				p.CloseSession(s)
				open = false
			}
			if name := rvName(err); name != last {
				fmt.Println("error", name) // once per run of the same error
				last = name
			}
			failed = true
			time.Sleep(20 * time.Millisecond)
			continue
		}
		signed, last = signed+1, ""
		if signed == 1 {
			fmt.Println("signing")
		}
		if failed && marked.Load() && !recovered {
			recovered = true
			fmt.Println("recovered")
		}
	}
	fmt.Println("signed", signed)
	fmt.Printf("slowest %.1f\n", float64(slowest.Microseconds())/1000)
}

// script runs commands for a scenario a test drives across processes. A line is
// "T CMD ARGS…" with T the thread (1 or 2) that makes the call; sessions and objects are
// named, and a named handle's number is printed when it is made, so that a test can hand
// it to another process ("raw" uses a number as a session handle):
//
//	open S rw|ro        login S user|so PIN   logout S      close S     closeall
//	state S             raw N                 data S O LABEL             (session object)
//	cert S O ID DERHEX  (token certificate)   privdata S    (private token data object)
//	find S O CLASS ID   findlabel S O LABEL   label S O     destroy S O
//	relabel S O         (sets CKA_LABEL to the value it has)            finalize
//
// find and findlabel print how many objects match and name the first.
func script(p *pkcs11.Ctx, slot uint) {
	sess := map[string]pkcs11.SessionHandle{}
	objs := map[string]pkcs11.ObjectHandle{}
	type job struct {
		f    func()
		done chan struct{}
	}
	var threads [2]chan job
	for i := range threads {
		threads[i] = make(chan job)
		go func(c chan job) {
			runtime.LockOSThread() // each "thread" of the scenario is one OS thread
			for j := range c {
				j.f()
				close(j.done)
			}
		}(threads[i])
	}
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 || (f[0] != "1" && f[0] != "2") {
			fmt.Println("bad command", sc.Text())
			continue
		}
		arg := func(i int) string {
			if i+2 < len(f) {
				return f[i+2]
			}
			return ""
		}
		var out string
		j := job{done: make(chan struct{}), f: func() {
			s := sess[arg(0)]
			o := objs[arg(1)]
			var err error
			val := ""
			switch f[1] {
			case "open":
				flags := uint(pkcs11.CKF_SERIAL_SESSION)
				if arg(1) == "rw" {
					flags |= pkcs11.CKF_RW_SESSION
				}
				s, err = p.OpenSession(slot, flags)
				sess[arg(0)], val = s, fmt.Sprint(s)
			case "login":
				user := uint(pkcs11.CKU_USER)
				if arg(1) == "so" {
					user = pkcs11.CKU_SO
				}
				err = p.Login(s, user, arg(2))
			case "logout":
				err = p.Logout(s)
			case "close":
				err = p.CloseSession(s)
			case "closeall":
				err = p.CloseAllSessions(slot)
			case "state", "raw":
				if f[1] == "raw" {
					n, _ := strconv.ParseUint(arg(0), 10, 64)
					s = pkcs11.SessionHandle(n)
				}
				var info pkcs11.SessionInfo
				info, err = p.GetSessionInfo(s)
				val = fmt.Sprint(info.State)
			case "data", "cert", "privdata":
				t := []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_DATA), pkcs11.NewAttribute(pkcs11.CKA_LABEL, arg(2))}
				if f[1] == "cert" {
					der, _ := hex.DecodeString(arg(3))
					id, _ := hex.DecodeString(arg(2))
					t = []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_CERTIFICATE), pkcs11.NewAttribute(pkcs11.CKA_CERTIFICATE_TYPE, pkcs11.CKC_X_509),
						pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true), pkcs11.NewAttribute(pkcs11.CKA_ID, id), pkcs11.NewAttribute(pkcs11.CKA_VALUE, der)}
				}
				if f[1] == "privdata" {
					t = []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_DATA), pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true), pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, true)}
				}
				o, err = p.CreateObject(s, t)
				if err == nil {
					objs[arg(1)], val = o, fmt.Sprint(o)
				}
			case "find", "findlabel":
				class, _ := strconv.ParseUint(arg(2), 10, 64)
				id, _ := hex.DecodeString(arg(3))
				t := []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_CLASS, class), pkcs11.NewAttribute(pkcs11.CKA_ID, id)}
				if f[1] == "findlabel" {
					t = []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_LABEL, arg(2))}
				}
				var hs []pkcs11.ObjectHandle
				if err = p.FindObjectsInit(s, t); err == nil {
					hs, _, err = p.FindObjects(s, 100)
					p.FindObjectsFinal(s)
				}
				val = fmt.Sprint(len(hs))
				if len(hs) > 0 {
					objs[arg(1)] = hs[0]
				}
			case "label", "relabel":
				var a []*pkcs11.Attribute
				a, err = p.GetAttributeValue(s, o, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_LABEL, nil)})
				if err == nil {
					val = string(a[0].Value)
					if f[1] == "relabel" {
						err = p.SetAttributeValue(s, o, a)
					}
				}
			case "destroy":
				err = p.DestroyObject(s, o)
			case "finalize":
				err = p.Finalize()
			default:
				err = fmt.Errorf("unknown command %q", f[1])
			}
			out = strings.TrimSpace(rvName(err) + " " + val)
		}}
		threads[f[0][0]-'1'] <- j
		<-j.done
		fmt.Println(out)
	}
}

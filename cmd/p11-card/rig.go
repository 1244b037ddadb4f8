package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// defaultRigDir holds a running rig: pcscd's socket, the control socket, card states.
const defaultRigDir = "/run/p11-card-rig"

func init() {
	register(&command{
		name:    "rig",
		summary: "run virtual smart cards in a private pcscd (for trying things without a card)",
		usage:   "up|down|status|insert|remove [--dir DIR] [options]",
		help: `The rig is a private pcscd (in its own mount namespace, so it does not disturb a
pcscd the machine runs) with four virtual readers, and a background process holding
virtual cards that it serves to those readers. Programs use the rig instead of the
system's pcscd when PCSCLITE_CSOCK_NAME points at the rig's socket.

  p11-card rig up [--readers N]        start pcscd and the card server; prints the
                                       export line to use the rig from a shell
  p11-card rig insert [--reader N] [--card piv|openpgp]
                                       put a virtual card into reader N (default 0)
  p11-card rig remove [--reader N]     take it out
  p11-card rig status                  what the rig runs and what each reader holds
  p11-card rig down                    stop everything

Readers 0 and 1 are named like a YubiKey ("Yubico YubiKey OTP+FIDO+CCID 00 0x"), so
Yubico's tools and ykcs11 use them; readers 2 and 3 are "Virtual PCD 00 0x". A virtual
card keeps its state (keys, PINs, certificates) in a file under DIR/cards while the rig
runs, so it comes back as it was when inserted again; 'rig down' forgets them.

  --card piv       a YubiKey 5.7 PIV applet with factory defaults: PIN 123456,
                   PUK 12345678, management key 010203040506070801020304050607080102030405060708
                   (AES-192, as 5.7 has it), serial 12345678 + reader index
  --card openpgp   a YubiKey 5 OpenPGP 3.4 applet with factory defaults: PIN 123456,
                   admin PIN 12345678

Example:
  p11-card rig up
  export PCSCLITE_CSOCK_NAME=/run/p11-card-rig/pcscd/pcscd.comm
  p11-card rig insert --card piv
  p11-card readers
  pkcs11-tool --module bin/p11-card-pkcs11.so -L

Options:
  --dir DIR   the rig's directory (default /run/p11-card-rig); needs root (mount
              namespaces), as does starting pcscd.`,
		run: runRig,
	})
}

func runRig(ctx context.Context, e *env, args []string) error {
	if len(args) == 0 {
		return usageError{"say what to do: up, down, status, insert or remove"}
	}
	sub, args := args[0], args[1:]
	fs := newFlags("rig " + sub)
	dir := fs.String("dir", defaultRigDir, "rig directory")
	var reader *int
	var card *string
	var readers *int
	switch sub {
	case "up", "serve":
		readers = fs.Int("readers", 4, "number of readers (even)")
	case "insert":
		reader = fs.Int("reader", 0, "reader index")
		card = fs.String("card", "piv", "piv or openpgp")
	case "remove":
		reader = fs.Int("reader", 0, "reader index")
	case "down", "status":
	default:
		return usageError{fmt.Sprintf("no rig command %q: use up, down, status, insert or remove", sub)}
	}
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Sprintf("unexpected argument %q", fs.Arg(0))}
	}
	d, err := filepath.Abs(*dir)
	if err != nil {
		return err
	}
	switch sub {
	case "serve":
		return rigServe(ctx, e, d, *readers)
	case "up":
		return rigUp(ctx, e, d, *readers)
	case "down":
		return rigDown(ctx, e, d)
	case "status":
		st, err := rigCall(ctx, d, rigRequest{Op: "status"})
		if err != nil {
			return err
		}
		printRigStatus(e.stdout, st)
		return nil
	case "insert":
		st, err := rigCall(ctx, d, rigRequest{Op: "insert", Reader: *reader, Card: *card})
		if err != nil {
			return err
		}
		r := st.Readers[*reader]
		fmt.Fprintf(e.stdout, "inserted a virtual %s card into reader %d (%s)\n", r.Card, r.Index, r.Name)
		return nil
	case "remove":
		st, err := rigCall(ctx, d, rigRequest{Op: "remove", Reader: *reader})
		if err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "reader %d (%s) is empty\n", *reader, st.Readers[*reader].Name)
		return nil
	}
	return nil
}

// rigRequest is one request over the control socket (one JSON object per connection).
type rigRequest struct {
	Op     string `json:"op"` // status, insert, remove, down
	Reader int    `json:"reader"`
	Card   string `json:"card,omitempty"`
}

// rigReply answers a rigRequest.
type rigReply struct {
	OK     bool       `json:"ok"`
	Error  string     `json:"error,omitempty"`
	Status *rigStatus `json:"status,omitempty"`
}

// rigStatus describes a running rig.
type rigStatus struct {
	Dir     string      `json:"dir"`
	Socket  string      `json:"socket"` // pcscd's socket: the PCSCLITE_CSOCK_NAME value
	PID     int         `json:"pid"`    // the card server
	Readers []rigReader `json:"readers"`
}

type rigReader struct {
	Index int    `json:"index"`
	Name  string `json:"name"`
	Card  string `json:"card,omitempty"` // "" when empty
}

func controlPath(dir string) string { return filepath.Join(dir, "control.sock") }

// errRigDown is returned when no rig answers at a directory.
var errRigDown = errors.New("no rig is running there")

// rigCall sends one request to the card server and returns the rig's status.
func rigCall(ctx context.Context, dir string, req rigRequest) (*rigStatus, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", controlPath(dir))
	if err != nil {
		return nil, fmt.Errorf("%w (%s): start one with `p11-card rig up`", errRigDown, dir)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(60 * time.Second))
	if err := json.NewEncoder(c).Encode(req); err != nil {
		return nil, fmt.Errorf("talking to the rig: %w", err)
	}
	var rep rigReply
	if err := json.NewDecoder(c).Decode(&rep); err != nil {
		return nil, fmt.Errorf("talking to the rig: %w", err)
	}
	if !rep.OK {
		return nil, errors.New(rep.Error)
	}
	if rep.Status == nil {
		return nil, errors.New("the rig answered without its status")
	}
	return rep.Status, nil
}

func printRigStatus(w io.Writer, st *rigStatus) {
	fmt.Fprintf(w, "rig at %s (card server pid %d)\n", st.Dir, st.PID)
	for _, r := range st.Readers {
		card := "empty"
		if r.Card != "" {
			card = "virtual " + r.Card + " card"
		}
		fmt.Fprintf(w, "  %d  %-36s %s\n", r.Index, r.Name, card)
	}
	fmt.Fprintf(w, "Use it from a shell with:\nexport PCSCLITE_CSOCK_NAME=%s\n", st.Socket)
}

// rigUp starts `p11-card rig serve` in the background and waits until it answers.
func rigUp(ctx context.Context, e *env, dir string, readers int) error {
	if st, err := rigCall(ctx, dir, rigRequest{Op: "status"}); err == nil {
		fmt.Fprintln(e.stdout, "the rig is already up")
		printRigStatus(e.stdout, st)
		return nil
	}
	if readers < 2 || readers%2 != 0 || readers > 32 {
		return usageError{fmt.Sprintf("--readers %d: want an even number from 2 to 32", readers)}
	}
	if os.Geteuid() != 0 {
		return errors.New("the rig needs root: it mounts a directory over /run/pcscd in a private mount namespace (try sudo)")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	logPath := filepath.Join(dir, "serve.log")
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command(self, "rig", "serve", "--dir", dir, "--readers", fmt.Sprint(readers))
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true} // outlives this shell command
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting the card server: %w", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	deadline := time.After(60 * time.Second)
	for {
		if st, err := rigCall(ctx, dir, rigRequest{Op: "status"}); err == nil {
			cmd.Process.Release()
			fmt.Fprintln(e.stdout, "rig up: a private pcscd with virtual readers")
			printRigStatus(e.stdout, st)
			return nil
		}
		select {
		case err := <-exited:
			b, _ := os.ReadFile(logPath)
			return fmt.Errorf("the card server stopped (%v): %s", err, strings.TrimSpace(string(b)))
		case <-deadline:
			cmd.Process.Kill()
			return fmt.Errorf("the rig did not come up in 60s; see %s", logPath)
		case <-ctx.Done():
			cmd.Process.Kill()
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func rigDown(ctx context.Context, e *env, dir string) error {
	st, err := rigCall(ctx, dir, rigRequest{Op: "down"})
	if errors.Is(err, errRigDown) {
		fmt.Fprintf(e.stdout, "no rig is running at %s\n", dir)
		return nil
	}
	if err != nil {
		return err
	}
	// The server answers first, then stops; wait until it is gone.
	for i := 0; i < 200; i++ {
		if _, err := os.Stat(controlPath(dir)); os.IsNotExist(err) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	fmt.Fprintf(e.stdout, "rig down (%s)\n", st.Dir)
	return nil
}

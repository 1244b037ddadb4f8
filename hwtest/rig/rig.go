package rig

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/p11-card/p11-card/cards/vcard"
)

// VPCDDriver is where Debian's vsmartcard-vpcd installs the pcscd driver.
const VPCDDriver = "/usr/lib/pcsc/drivers/serial/libifdvpcd.so"

// DefaultName is the FRIENDLYNAME of reader pairs that Options.Names leaves unnamed.
const DefaultName = "Virtual PCD"

// ErrPrerequisite is wrapped by Start's error when a program or driver the rig needs is
// missing: tests skip on it (or fail, when the rig is required).
var ErrPrerequisite = errors.New("rig: prerequisite missing")

// Options configure a rig.
type Options struct {
	// Readers is the number of vpcd readers, even (each vpcd entry gives two); default 4.
	Readers int
	// Names holds the FRIENDLYNAME of each reader pair; pairs without one get DefaultName.
	// pcscd names the readers "NAME NN 00" and "NAME NN 01".
	Names []string
	// Dir holds pcscd's socket, configuration and log. Empty: a new temporary directory,
	// removed by Stop. A given directory is created if needed and left in place.
	Dir string
	// Debug runs pcscd with -d: its log then has a line for every call a client makes,
	// which ClientCalls counts.
	Debug bool
}

// Rig is a running private pcscd with vpcd readers.
type Rig struct {
	dir, sock, confDir, logPath string
	debug                       bool
	ownDir                      bool
	names                       []string // reader names, by index
	pairNames                   []string
	ports                       []int // vpcd base port, by pair

	// calls is ClientCalls' count and how far into the log it has read.
	calls struct {
		sync.Mutex
		off int64
		n   int
	}

	mu      sync.Mutex
	cmd     *exec.Cmd
	exited  chan struct{}
	bridges []*bridge
	stopped bool
}

// Start runs pcscd in its own mount namespace with the readers opt asks for and returns
// once pcscd accepts clients and every reader listens for its card.
func Start(ctx context.Context, opt Options) (*Rig, error) {
	if opt.Readers == 0 {
		opt.Readers = 4
	}
	if opt.Readers < 0 || opt.Readers%2 != 0 || opt.Readers > 32 {
		return nil, fmt.Errorf("rig: %d readers: want an even number from 2 to 32", opt.Readers)
	}
	if err := prerequisites(); err != nil {
		return nil, err
	}
	r := &Rig{bridges: make([]*bridge, opt.Readers)}
	if opt.Dir == "" {
		d, err := os.MkdirTemp("", "p11card-rig-")
		if err != nil {
			return nil, fmt.Errorf("rig: %w", err)
		}
		r.dir, r.ownDir = d, true
	} else {
		d, err := filepath.Abs(opt.Dir)
		if err != nil {
			return nil, fmt.Errorf("rig: %w", err)
		}
		r.dir = d
	}
	r.sock = filepath.Join(r.dir, "pcscd", "pcscd.comm")
	r.confDir = filepath.Join(r.dir, "reader.conf.d")
	r.logPath = filepath.Join(r.dir, "pcscd.log")
	r.debug = opt.Debug
	if len(r.sock) >= 108 {
		return nil, fmt.Errorf("rig: socket path %s is too long for a unix socket", r.sock)
	}
	for _, d := range []string{filepath.Join(r.dir, "pcscd"), r.confDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, r.fail(fmt.Errorf("rig: %w", err))
		}
	}
	if err := os.MkdirAll("/run/pcscd", 0o755); err != nil {
		return nil, r.fail(fmt.Errorf("%w: /run/pcscd does not exist and cannot be made (%v); run as root", ErrPrerequisite, err))
	}
	pairs := opt.Readers / 2
	used := map[string]int{}
	for p := 0; p < pairs; p++ {
		name := DefaultName
		if p < len(opt.Names) && opt.Names[p] != "" {
			name = opt.Names[p]
		}
		if strings.ContainsAny(name, "\"\n") {
			return nil, r.fail(fmt.Errorf("rig: reader name %q: quotes and newlines are not allowed", name))
		}
		r.pairNames = append(r.pairNames, name)
		k := used[name]
		used[name]++
		r.names = append(r.names, fmt.Sprintf("%s %02X 00", name, k), fmt.Sprintf("%s %02X 01", name, k))
	}
	var err error
	for attempt := 0; attempt < 3; attempt++ {
		if err = r.pickPorts(); err != nil {
			break
		}
		if err = r.writeConf(); err != nil {
			break
		}
		if err = r.startPCSCD(ctx); err == nil {
			return r, nil
		}
		if ctx.Err() != nil {
			break
		}
	}
	return nil, r.fail(err)
}

// fail cleans up after a failed Start.
func (r *Rig) fail(err error) error {
	r.stopPCSCD()
	if r.ownDir {
		os.RemoveAll(r.dir)
	}
	return err
}

func prerequisites() error {
	for _, p := range []string{"pcscd", "unshare", "mount"} {
		if _, err := exec.LookPath(p); err != nil {
			pkg := map[string]string{"pcscd": "pcscd", "unshare": "util-linux", "mount": "mount"}[p]
			return fmt.Errorf("%w: %s not found (Debian package %s; `make deps` installs it)", ErrPrerequisite, p, pkg)
		}
	}
	if _, err := os.Stat(VPCDDriver); err != nil {
		return fmt.Errorf("%w: the vpcd driver %s is missing (Debian package vsmartcard-vpcd; `make deps` installs it)", ErrPrerequisite, VPCDDriver)
	}
	return nil
}

// pickPorts chooses, for each pair, a base port P with P and P+1 free, below Linux's
// ephemeral range so outgoing connections do not take them meanwhile.
func (r *Rig) pickPorts() error {
	r.ports = r.ports[:0]
	taken := map[int]bool{}
	for len(r.ports) < len(r.pairNames) {
		found := false
		for try := 0; try < 200; try++ {
			p := 20000 + 2*rand.IntN(6000)
			if taken[p] || !portFree(p) || !portFree(p+1) {
				continue
			}
			taken[p] = true
			r.ports = append(r.ports, p)
			found = true
			break
		}
		if !found {
			return errors.New("rig: found no free pair of TCP ports for vpcd")
		}
	}
	return nil
}

func portFree(p int) bool {
	l, err := net.Listen("tcp", ":"+strconv.Itoa(p))
	if err != nil {
		return false
	}
	l.Close()
	return true
}

// writeConf writes every pair into one file, so pcscd numbers same-named pairs in order.
// vpcd keeps its sockets in static variables, so two entries sharing one loaded driver
// would share one pair of readers: each pair gets its own copy of the driver file (the
// dynamic loader loads a copy, a different file, apart; a symbolic link it would not).
func (r *Rig) writeConf() error {
	drv, err := os.ReadFile(VPCDDriver)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrPrerequisite, err)
	}
	libDir := filepath.Join(r.dir, "lib")
	if err := os.MkdirAll(libDir, 0o755); err != nil {
		return fmt.Errorf("rig: %w", err)
	}
	var b strings.Builder
	for p, name := range r.pairNames {
		lib := filepath.Join(libDir, fmt.Sprintf("libifdvpcd-%d.so", p))
		if err := os.WriteFile(lib, drv, 0o644); err != nil {
			return fmt.Errorf("rig: %w", err)
		}
		fmt.Fprintf(&b, "FRIENDLYNAME \"%s\"\nDEVICENAME /dev/null:%d\nLIBPATH %s\nCHANNELID %d\n\n", name, r.ports[p], lib, r.ports[p])
	}
	if err := os.WriteFile(filepath.Join(r.confDir, "vpcd"), []byte(b.String()), 0o644); err != nil {
		return fmt.Errorf("rig: %w", err)
	}
	return nil
}

// startPCSCD runs pcscd and waits until its socket exists and every vpcd port listens.
func (r *Rig) startPCSCD(ctx context.Context) error {
	run := filepath.Join(r.dir, "pcscd")
	os.Remove(r.sock)
	os.Remove(filepath.Join(run, "pcscd.pid"))
	logf, err := os.OpenFile(r.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("rig: %w", err)
	}
	defer logf.Close()
	var args []string
	if os.Geteuid() != 0 {
		args = append(args, "-r") // map to root in a user namespace, to be allowed to mount
	}
	flags := "-f"
	if r.debug {
		flags = "-f -d"
	}
	args = append(args, "-m", "sh", "-c", `mount --bind "$1" /run/pcscd && exec pcscd `+flags+` -c "$2"`, "sh", run, r.confDir)
	cmd := exec.Command("unshare", args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	// Own process group, so Stop can kill whatever is left; and pcscd follows the
	// process that started it if that one dies.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("%w: starting pcscd: %v", ErrPrerequisite, err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	r.mu.Lock()
	r.cmd, r.exited = cmd, exited
	r.mu.Unlock()

	deadline := time.Now().Add(15 * time.Second)
	for {
		if fi, err := os.Stat(r.sock); err == nil && fi.Mode()&os.ModeSocket != 0 && r.portsListening() {
			return nil
		}
		select {
		case <-exited:
			return fmt.Errorf("rig: pcscd exited at start: %s", r.logTail())
		case <-ctx.Done():
			r.stopPCSCD()
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			r.stopPCSCD()
			return fmt.Errorf("rig: pcscd did not come up in 15s: %s", r.logTail())
		}
	}
}

// portsListening reads the kernel's socket tables: connecting to a vpcd port to test it
// would look like a card insertion to vpcd.
func (r *Rig) portsListening() bool {
	listening := map[int]bool{}
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		fh, err := os.Open(f)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(fh)
		for sc.Scan() {
			fs := strings.Fields(sc.Text())
			if len(fs) < 4 || fs[3] != "0A" { // TCP_LISTEN
				continue
			}
			i := strings.LastIndexByte(fs[1], ':')
			if i < 0 {
				continue
			}
			if p, err := strconv.ParseUint(fs[1][i+1:], 16, 16); err == nil {
				listening[int(p)] = true
			}
		}
		fh.Close()
	}
	for _, p := range r.ports {
		if !listening[p] || !listening[p+1] {
			return false
		}
	}
	return true
}

func (r *Rig) logTail() string {
	b, _ := os.ReadFile(r.logPath)
	s := strings.TrimSpace(string(b))
	if len(s) > 800 {
		s = "…" + s[len(s)-800:]
	}
	if s == "" {
		return "(no output)"
	}
	return s
}

// stopPCSCD ends pcscd: SIGTERM, then after 5 s SIGKILL to its whole process group.
func (r *Rig) stopPCSCD() { r.signalPCSCD(syscall.SIGTERM) }

// signalPCSCD ends pcscd with sig, then after 5 s SIGKILL to its whole process group.
func (r *Rig) signalPCSCD(sig syscall.Signal) {
	r.mu.Lock()
	cmd, exited := r.cmd, r.exited
	r.cmd = nil
	r.mu.Unlock()
	if cmd == nil {
		return
	}
	cmd.Process.Signal(sig)
	select {
	case <-exited:
	case <-time.After(5 * time.Second):
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-exited
	}
	syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // anything pcscd left behind
}

// RestartPCSCD stops pcscd and starts it again with the same readers and ports, as a
// crash or an upgrade would. Inserted cards reconnect by themselves; RestartPCSCD returns
// when pcscd sees them again. PC/SC contexts of clients are dead afterwards.
func (r *Rig) RestartPCSCD(ctx context.Context) error { return r.restart(ctx, syscall.SIGTERM) }

// CrashPCSCD is RestartPCSCD with SIGKILL: pcscd dies at once, as in a crash, leaving
// its socket and pid file behind and its clients' calls cut off.
func (r *Rig) CrashPCSCD(ctx context.Context) error { return r.restart(ctx, syscall.SIGKILL) }

func (r *Rig) restart(ctx context.Context, sig syscall.Signal) error {
	type seen struct {
		i, n int
		b    *bridge
	}
	var live []seen
	r.mu.Lock()
	for i, b := range r.bridges {
		if b != nil {
			n, _, _ := b.state()
			live = append(live, seen{i, n, b})
		}
	}
	r.mu.Unlock()
	r.signalPCSCD(sig)
	if err := r.startPCSCD(ctx); err != nil {
		return err
	}
	for _, s := range live {
		if err := s.b.waitPowered(ctx, s.n); err != nil {
			return fmt.Errorf("rig: reader %d after restart: %w", s.i, err)
		}
		if err := r.waitState(ctx, s.i, true); err != nil {
			return err
		}
	}
	return nil
}

// Stop removes every card, stops pcscd and deletes the temporary directory. It may be
// called more than once.
func (r *Rig) Stop() error {
	r.mu.Lock()
	if r.stopped {
		r.mu.Unlock()
		return nil
	}
	r.stopped = true
	bs := r.bridges
	r.bridges = make([]*bridge, len(bs))
	r.mu.Unlock()
	for _, b := range bs {
		if b != nil {
			b.close()
			<-b.done
		}
	}
	r.stopPCSCD()
	if r.ownDir {
		return os.RemoveAll(r.dir)
	}
	return nil
}

// Socket is the path of pcscd's client socket.
func (r *Rig) Socket() string { return r.sock }

// Dir is the rig's directory (socket, configuration, pcscd.log).
func (r *Rig) Dir() string { return r.dir }

// LogPath is the file pcscd's output goes to.
func (r *Rig) LogPath() string { return r.logPath }

// ClientCalls is the number of PC/SC calls clients have made to pcscd so far (each
// SCardTransmit, SCardGetStatusChange, SCardBeginTransaction, … that reached it), from
// pcscd's debug log: -1 without Options.Debug. The difference across a client's run is
// what that client cost pcscd, however it loaded libpcsclite. Each call reads only what
// the log gained since the last.
func (r *Rig) ClientCalls() int {
	if !r.debug {
		return -1
	}
	r.calls.Lock()
	defer r.calls.Unlock()
	f, err := os.Open(r.logPath)
	if err != nil {
		return -1
	}
	defer f.Close()
	if _, err := f.Seek(r.calls.off, io.SeekStart); err != nil {
		return -1
	}
	b, err := io.ReadAll(f)
	if err != nil {
		return -1
	}
	// Whole lines only: pcscd may be writing the last one.
	b = b[:bytes.LastIndexByte(b, '\n')+1]
	r.calls.n += bytes.Count(b, []byte("Received command: "))
	r.calls.off += int64(len(b))
	return r.calls.n
}

// Readers is the number of readers.
func (r *Rig) Readers() int { return len(r.names) }

// Port is the TCP port of reader i's vpcd.
func (r *Rig) Port(i int) int { return r.ports[i/2] + i%2 }

// Env is the environment a child process needs to use this rig's pcscd.
func (r *Rig) Env() []string { return []string{"PCSCLITE_CSOCK_NAME=" + r.sock} }

// Setenv points this process at the rig. libpcsclite reads the variable at its first
// call, so call Setenv before the process uses PC/SC; restore puts the old value back
// (for child processes started later; this process stays with the rig).
func (r *Rig) Setenv() (restore func()) {
	old, had := os.LookupEnv("PCSCLITE_CSOCK_NAME")
	os.Setenv("PCSCLITE_CSOCK_NAME", r.sock)
	return func() {
		if had {
			os.Setenv("PCSCLITE_CSOCK_NAME", old)
		} else {
			os.Unsetenv("PCSCLITE_CSOCK_NAME")
		}
	}
}

// ReaderName is the name pcscd gives reader i (0-based).
func (r *Rig) ReaderName(i int) string {
	if i < 0 || i >= len(r.names) {
		return ""
	}
	return r.names[i]
}

func (r *Rig) check(i int) error {
	if i < 0 || i >= len(r.names) {
		return fmt.Errorf("rig: no reader %d (the rig has %d)", i, len(r.names))
	}
	return nil
}

// Insert puts c into reader i and returns when pcscd reports the card present. The
// reader must be empty.
func (r *Rig) Insert(ctx context.Context, i int, c vcard.Card) error {
	if err := r.check(i); err != nil {
		return err
	}
	r.mu.Lock()
	if r.stopped {
		r.mu.Unlock()
		return errors.New("rig: stopped")
	}
	prev := r.bridges[i]
	if prev != nil {
		select {
		case <-prev.done: // it removed itself
		default:
			r.mu.Unlock()
			return fmt.Errorf("rig: reader %d (%s) already holds a card", i, r.names[i])
		}
	}
	b := newBridge(c, net.JoinHostPort("127.0.0.1", strconv.Itoa(r.Port(i))))
	r.bridges[i] = b
	r.mu.Unlock()
	if prev != nil {
		// The previous card left on its own: let pcscd see the reader empty first, so
		// the presence seen next is this card.
		if err := r.waitState(ctx, i, false); err != nil {
			r.abandon(i, b)
			return err
		}
	}
	go b.run()
	if err := b.waitPowered(ctx, 0); err != nil {
		r.abandon(i, b)
		return fmt.Errorf("rig: insert into reader %d: %w", i, err)
	}
	if err := r.waitState(ctx, i, true); err != nil {
		r.abandon(i, b)
		return err
	}
	return nil
}

func (r *Rig) abandon(i int, b *bridge) {
	b.close()
	r.mu.Lock()
	if r.bridges[i] == b {
		r.bridges[i] = nil
	}
	r.mu.Unlock()
}

// Remove pulls the card out of reader i and returns when pcscd reports the reader empty.
// Removing from an empty reader is not an error.
func (r *Rig) Remove(ctx context.Context, i int) error {
	if err := r.check(i); err != nil {
		return err
	}
	r.mu.Lock()
	b := r.bridges[i]
	r.bridges[i] = nil
	r.mu.Unlock()
	if b == nil {
		return nil
	}
	b.close()
	select {
	case <-b.done:
	case <-ctx.Done():
		return ctx.Err()
	}
	return r.waitState(ctx, i, false)
}

// Present reports whether reader i holds a card (as the rig sees it, not pcscd).
func (r *Rig) Present(i int) bool {
	if r.check(i) != nil {
		return false
	}
	r.mu.Lock()
	b := r.bridges[i]
	r.mu.Unlock()
	if b == nil {
		return false
	}
	select {
	case <-b.done:
		return false
	default:
		return true
	}
}

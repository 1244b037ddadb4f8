package main

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/p11-card/p11-card/cards/vcard"
)

// fakeHost is a rig without pcscd.
type fakeHost struct {
	mu      sync.Mutex
	present []bool
	failIns error
}

func (h *fakeHost) Insert(ctx context.Context, i int, c vcard.Card) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.failIns != nil {
		return h.failIns
	}
	h.present[i] = true
	return nil
}
func (h *fakeHost) Remove(ctx context.Context, i int) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.present[i] = false
	return nil
}
func (h *fakeHost) Present(i int) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.present[i]
}
func (h *fakeHost) ReaderName(i int) string { return []string{"R 00 00", "R 00 01"}[i] }
func (h *fakeHost) Readers() int            { return 2 }
func (h *fakeHost) Socket() string          { return "/x/pcscd/pcscd.comm" }
func (h *fakeHost) Stop() error             { return nil }

// startRigServer serves a fake rig on a control socket in a temporary directory.
func startRigServer(t *testing.T) (string, *fakeHost, *rigServer) {
	dir := t.TempDir()
	h := &fakeHost{present: make([]bool, 2)}
	s := newRigServer(h, dir)
	l, err := net.Listen("unix", controlPath(dir))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.serve(ctx, l); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return dir, h, s
}

func TestRigServerRequests(t *testing.T) {
	dir, h, _ := startRigServer(t)
	out, errOut, code := runCLI(t, "rig", "insert", "--dir", dir, "--reader", "1", "--card", "piv")
	if code != 0 || out != "inserted a virtual piv card into reader 1 (R 00 01)\n" {
		t.Fatalf("insert: exit %d, %q %q", code, out, errOut)
	}
	if !h.Present(1) {
		t.Error("the card did not reach the rig")
	}
	if _, err := os.Stat(filepath.Join(dir, "cards", "piv-reader1.json")); err != nil {
		t.Errorf("no card state file: %v", err)
	}
	_, errOut, code = runCLI(t, "rig", "insert", "--dir", dir, "--reader", "1")
	if code != 1 || !strings.Contains(errOut, "reader 1 already holds a card") {
		t.Errorf("second insert: exit %d, %q", code, errOut)
	}
	out, _, code = runCLI(t, "rig", "status", "--dir", dir)
	for _, w := range []string{"  0  R 00 00", "empty", "  1  R 00 01", "virtual piv card", "export PCSCLITE_CSOCK_NAME=/x/pcscd/pcscd.comm"} {
		if code != 0 || !strings.Contains(out, w) {
			t.Errorf("status lacks %q: %s", w, out)
		}
	}
	out, _, code = runCLI(t, "rig", "insert", "--dir", dir, "--reader", "0", "--card", "openpgp")
	if code != 0 || out != "inserted a virtual openpgp card into reader 0 (R 00 00)\n" {
		t.Errorf("insert openpgp: exit %d, %q", code, out)
	}
	if _, err := os.Stat(filepath.Join(dir, "cards", "openpgp-reader0.json")); err != nil {
		t.Errorf("no OpenPGP card state file: %v", err)
	}
	out, _, code = runCLI(t, "rig", "remove", "--dir", dir, "--reader", "1")
	if code != 0 || out != "reader 1 (R 00 01) is empty\n" || h.Present(1) {
		t.Errorf("remove: exit %d, %q", code, out)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"insert", "--reader", "2"}, "no reader 2: the rig has readers 0 to 1"},
		{[]string{"insert", "--reader", "1", "--card", "nfc"}, `no virtual card "nfc"`},
		{[]string{"remove", "--reader", "-1"}, "no reader -1"},
	} {
		_, errOut, code := runCLI(t, append(append([]string{"rig"}, tc.args...), "--dir", dir)...)
		if code != 1 || !strings.Contains(errOut, tc.want) {
			t.Errorf("rig %q: exit %d, %q; want %q", tc.args, code, errOut, tc.want)
		}
	}
	h.failIns = errors.New("rig: pcscd is gone")
	if _, errOut, code := runCLI(t, "rig", "insert", "--dir", dir, "--reader", "1"); code != 1 || !strings.Contains(errOut, "pcscd is gone") {
		t.Errorf("failing insert: exit %d, %q", code, errOut)
	}
}

func TestRigServerDownAndUnknown(t *testing.T) {
	_, _, s := startRigServer(t)
	if rep := s.handle(context.Background(), rigRequest{Op: "explode"}); rep.OK || !strings.Contains(rep.Error, "unknown request") {
		t.Errorf("unknown op: %+v", rep)
	}
	if rep := s.handle(context.Background(), rigRequest{Op: "down"}); !rep.OK {
		t.Errorf("down: %+v", rep)
	}
	select {
	case <-s.down:
	default:
		t.Error("down did not signal")
	}
	s.handle(context.Background(), rigRequest{Op: "down"}) // twice is fine
}

func TestRigNoRig(t *testing.T) {
	dir := t.TempDir()
	for _, sub := range []string{"status", "insert", "remove"} {
		_, errOut, code := runCLI(t, "rig", sub, "--dir", dir)
		if code != 1 || !strings.Contains(errOut, "no rig is running") || !strings.Contains(errOut, "p11-card rig up") {
			t.Errorf("rig %s without a rig: exit %d, %q", sub, code, errOut)
		}
	}
	out, _, code := runCLI(t, "rig", "down", "--dir", dir)
	if code != 0 || !strings.Contains(out, "no rig is running") {
		t.Errorf("rig down without a rig: exit %d, %q", code, out)
	}
}

func TestRigUsage(t *testing.T) {
	for _, args := range [][]string{{"rig"}, {"rig", "sideways"}, {"rig", "insert", "--reader", "x"}, {"rig", "status", "extra"}, {"rig", "up", "--readers", "3", "--dir", t.TempDir()}} {
		_, errOut, code := runCLI(t, args...)
		if code != 2 || !strings.Contains(errOut, "usage: p11-card rig") {
			t.Errorf("%q: exit %d, %q", args, code, errOut)
		}
	}
}

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/p11-card/p11-card/cards/openpgp/pgptest"
	"github.com/p11-card/p11-card/cards/piv/pivtest"
	"github.com/p11-card/p11-card/cards/vcard"
	"github.com/p11-card/p11-card/hwtest/rig"
)

// Reader pair names of the CLI's rig, as in hwtest: ykcs11 only uses "Yubico*" readers.
var rigNames = []string{"Yubico YubiKey OTP+FIDO+CCID", rig.DefaultName}

// rigHost is what the card server needs of a rig; *rig.Rig, or a fake in tests.
type rigHost interface {
	Insert(ctx context.Context, i int, c vcard.Card) error
	Remove(ctx context.Context, i int) error
	Present(i int) bool
	ReaderName(i int) string
	Readers() int
	Socket() string
	Stop() error
}

// rigServer holds the virtual cards and answers the control socket.
type rigServer struct {
	host    rigHost
	dir     string
	newCard func(kind string, reader int) (vcard.Card, error)

	mu    sync.Mutex
	kinds []string // card kind by reader, "" when empty

	downOnce sync.Once
	down     chan struct{}
}

func newRigServer(h rigHost, dir string) *rigServer {
	s := &rigServer{host: h, dir: dir, kinds: make([]string, h.Readers()), down: make(chan struct{})}
	s.newCard = s.makeCard
	return s
}

// makeCard builds a virtual card whose state lives in a file under DIR/cards, one per
// reader and kind, so a card taken out and put back is the same card.
func (s *rigServer) makeCard(kind string, reader int) (vcard.Card, error) {
	cardsDir := filepath.Join(s.dir, "cards")
	if err := os.MkdirAll(cardsDir, 0o700); err != nil {
		return nil, err
	}
	state := filepath.Join(cardsDir, fmt.Sprintf("%s-reader%d.json", kind, reader))
	switch kind {
	case "piv":
		return pivtest.New(pivtest.Options{StatePath: state, Serial: uint32(12345678 + reader)})
	case "openpgp":
		return pgptest.New(pgptest.Options{StateFile: state, Serial: uint32(0x12345678 + reader)})
	}
	return nil, fmt.Errorf("no virtual card %q: use piv or openpgp", kind)
}

func (s *rigServer) status() *rigStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := &rigStatus{Dir: s.dir, Socket: s.host.Socket(), PID: os.Getpid()}
	for i := 0; i < s.host.Readers(); i++ {
		kind := s.kinds[i]
		if kind != "" && !s.host.Present(i) {
			kind = "" // the card left by itself (fault injection)
		}
		st.Readers = append(st.Readers, rigReader{Index: i, Name: s.host.ReaderName(i), Card: kind})
	}
	return st
}

func (s *rigServer) handle(ctx context.Context, req rigRequest) rigReply {
	fail := func(format string, args ...any) rigReply {
		return rigReply{Error: fmt.Sprintf(format, args...)}
	}
	switch req.Op {
	case "status":
	case "insert", "remove":
		if req.Reader < 0 || req.Reader >= s.host.Readers() {
			return fail("no reader %d: the rig has readers 0 to %d", req.Reader, s.host.Readers()-1)
		}
		ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		if req.Op == "remove" {
			if err := s.host.Remove(ctx, req.Reader); err != nil {
				return fail("%v", err)
			}
			s.mu.Lock()
			s.kinds[req.Reader] = ""
			s.mu.Unlock()
			break
		}
		if s.host.Present(req.Reader) {
			return fail("reader %d already holds a card: `p11-card rig remove --reader %d` first", req.Reader, req.Reader)
		}
		c, err := s.newCard(req.Card, req.Reader)
		if err != nil {
			return fail("%v", err)
		}
		if err := s.host.Insert(ctx, req.Reader, c); err != nil {
			return fail("%v", err)
		}
		s.mu.Lock()
		s.kinds[req.Reader] = req.Card
		s.mu.Unlock()
	case "down":
		s.downOnce.Do(func() { close(s.down) })
	default:
		return fail("unknown request %q", req.Op)
	}
	return rigReply{OK: true, Status: s.status()}
}

// serve answers connections on l until a "down" request or ctx ends.
func (s *rigServer) serve(ctx context.Context, l net.Listener) {
	go func() {
		select {
		case <-ctx.Done():
		case <-s.down:
		}
		l.Close()
	}()
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer c.Close()
			defer func() {
				if p := recover(); p != nil {
					fmt.Fprintf(os.Stderr, "rig serve: panic handling a request: %v\n", p)
				}
			}()
			c.SetDeadline(time.Now().Add(90 * time.Second))
			var req rigRequest
			if err := json.NewDecoder(c).Decode(&req); err != nil {
				json.NewEncoder(c).Encode(rigReply{Error: "bad request: " + err.Error()})
				return
			}
			json.NewEncoder(c).Encode(s.handle(ctx, req))
		}()
	}
}

// rigServe is the hidden `p11-card rig serve`: it runs the rig in the foreground until
// `rig down`, SIGINT or SIGTERM.
func rigServe(ctx context.Context, e *env, dir string, readers int) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	startCtx, cancel := context.WithTimeout(ctx, 60*time.Second)
	r, err := rig.Start(startCtx, rig.Options{Readers: readers, Names: rigNames, Dir: dir})
	cancel()
	if err != nil {
		return err
	}
	defer r.Stop()
	// Insert and Remove ask pcscd when the process talks to the rig's pcscd.
	r.Setenv()
	ctl := controlPath(dir)
	os.Remove(ctl) // rig up checked that nothing answers there
	l, err := net.Listen("unix", ctl)
	if err != nil {
		return err
	}
	defer os.Remove(ctl)
	defer os.RemoveAll(filepath.Join(dir, "cards"))
	fmt.Fprintf(e.stdout, "rig serve: pcscd at %s, control socket %s\n", r.Socket(), ctl)
	newRigServer(r, dir).serve(ctx, l)
	fmt.Fprintln(e.stdout, "rig serve: stopping")
	return nil
}

package main

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/ebfe/scard"

	"github.com/p11-card/p11-card/slotmgr"
)

// defaultBackend is the PC/SC service for readers and watch.
//
// Stopgap: a small slotmgr.Backend over github.com/ebfe/scard, until package pcsc and
// slotmgr.NewPCSC land; then this file becomes `return slotmgr.NewPCSC()`.
func defaultBackend() slotmgr.Backend { return scardBackend{} }

type scardBackend struct{}

const pnpReader = `\\?PnP?\Notification`

func (scardBackend) Establish(ctx context.Context) (slotmgr.Context, error) {
	c, err := scard.EstablishContext()
	if err != nil {
		return nil, fmt.Errorf("pcsc: establish context: %w", err)
	}
	return &scardContext{c: c}, nil
}

type scardContext struct {
	mu sync.Mutex // Wait's cancel goroutine and Close
	c  *scard.Context
}

func (s *scardContext) Readers(ctx context.Context) ([]string, error) {
	rs, err := s.c.ListReaders()
	if errors.Is(err, scard.ErrNoReadersAvailable) {
		return []string{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("pcsc: list readers: %w", err)
	}
	return rs, nil
}

func stateOf(name string, ev scard.StateFlag, atr []byte) slotmgr.ReaderState {
	return slotmgr.ReaderState{
		Name:        name,
		Present:     ev&scard.StatePresent != 0,
		Empty:       ev&scard.StateEmpty != 0,
		Exclusive:   ev&scard.StateExclusive != 0,
		InUse:       ev&scard.StateInuse != 0,
		Mute:        ev&scard.StateMute != 0,
		Unavailable: ev&(scard.StateUnavailable|scard.StateUnknown) != 0,
		ATR:         append([]byte(nil), atr...),
		EventCount:  int(uint32(ev) >> 16),
		Raw:         uint32(ev &^ scard.StateChanged),
	}
}

func (s *scardContext) Status(ctx context.Context, readers []string) ([]slotmgr.ReaderState, error) {
	if len(readers) == 0 {
		return nil, nil
	}
	rs := make([]scard.ReaderState, len(readers))
	for i, r := range readers {
		rs[i] = scard.ReaderState{Reader: r, CurrentState: scard.StateUnaware}
	}
	if err := s.c.GetStatusChange(rs, 0); err != nil && !errors.Is(err, scard.ErrTimeout) {
		return nil, fmt.Errorf("pcsc: reader status: %w", err)
	}
	out := make([]slotmgr.ReaderState, len(rs))
	for i, r := range rs {
		out[i] = stateOf(r.Reader, r.EventState, r.Atr)
	}
	return out, nil
}

func (s *scardContext) Wait(ctx context.Context, known []slotmgr.ReaderState) ([]slotmgr.ReaderState, error) {
	rs := make([]scard.ReaderState, 0, len(known)+1)
	for _, k := range known {
		rs = append(rs, scard.ReaderState{Reader: k.Name, CurrentState: scard.StateFlag(k.Raw)})
	}
	n, _ := s.Readers(ctx)
	rs = append(rs, scard.ReaderState{Reader: pnpReader, CurrentState: scard.StateFlag(len(n) << 16)})
	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case <-ctx.Done():
			s.c.Cancel()
		case <-done:
		}
	}()
	for {
		err := s.c.GetStatusChange(rs, 5*time.Second)
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if errors.Is(err, scard.ErrTimeout) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("pcsc: wait: %w", err)
		}
		out := make([]slotmgr.ReaderState, 0, len(known))
		for _, r := range rs[:len(known)] {
			out = append(out, stateOf(r.Reader, r.EventState, r.Atr))
		}
		return out, nil
	}
}

func (s *scardContext) Connect(ctx context.Context, reader string) (slotmgr.Card, error) {
	k, err := s.c.Connect(reader, scard.ShareShared, scard.ProtocolAny)
	if err != nil {
		return nil, fmt.Errorf("pcsc: connect %q: %w", reader, err)
	}
	st, err := k.Status()
	if err != nil {
		k.Disconnect(scard.LeaveCard)
		return nil, fmt.Errorf("pcsc: card status: %w", err)
	}
	return &scardCard{k: k, atr: st.Atr}, nil
}

func (s *scardContext) Close() error { return s.c.Release() }

type scardCard struct {
	k   *scard.Card
	atr []byte
}

func (c *scardCard) ATR() []byte { return append([]byte(nil), c.atr...) }

func (c *scardCard) Transmit(ctx context.Context, cmd []byte) ([]byte, error) {
	r, err := c.k.Transmit(cmd)
	if err != nil {
		return nil, fmt.Errorf("pcsc: transmit: %w", err)
	}
	return r, nil
}

func (c *scardCard) Lock(ctx context.Context) (func(), bool, error) {
	reset := false
	err := c.k.BeginTransaction()
	if errors.Is(err, scard.ErrResetCard) {
		reset = true
		if err = c.k.Reconnect(scard.ShareShared, scard.ProtocolAny, scard.LeaveCard); err == nil {
			err = c.k.BeginTransaction()
		}
	}
	if err != nil {
		return nil, false, fmt.Errorf("pcsc: begin transaction: %w", err)
	}
	return func() { c.k.EndTransaction(scard.LeaveCard) }, reset, nil
}

func (c *scardCard) Close() error { return c.k.Disconnect(scard.LeaveCard) }

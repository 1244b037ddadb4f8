package main

import (
	"context"

	"github.com/p11-card/p11-card/pcsc"
	"github.com/p11-card/p11-card/slotmgr"
)

// defaultBackend is the PC/SC service for readers and watch: package pcsc seen through
// slotmgr's Backend interface.
//
// Stopgap until slotmgr.NewPCSC lands; then this file becomes `return slotmgr.NewPCSC()`.
func defaultBackend() slotmgr.Backend { return pcscBackend{} }

type pcscBackend struct{}

func (pcscBackend) Establish(ctx context.Context) (slotmgr.Context, error) {
	c, err := pcsc.Establish(ctx)
	if err != nil {
		return nil, err
	}
	return pcscContext{c}, nil
}

type pcscContext struct{ c *pcsc.Context }

func toSlotmgr(in []pcsc.ReaderState) []slotmgr.ReaderState {
	out := make([]slotmgr.ReaderState, len(in))
	for i, s := range in {
		out[i] = slotmgr.ReaderState{Name: s.Name, Present: s.Present, Empty: s.Empty, Exclusive: s.Exclusive,
			InUse: s.InUse, Mute: s.Mute, Unavailable: s.Unavailable || s.Unknown, ATR: s.ATR,
			EventCount: s.EventCount, Raw: s.Raw}
	}
	return out
}

func (p pcscContext) Readers(ctx context.Context) ([]string, error) { return p.c.Readers(ctx) }

func (p pcscContext) Status(ctx context.Context, readers []string) ([]slotmgr.ReaderState, error) {
	st, err := p.c.Status(ctx, readers)
	if err != nil {
		return nil, err
	}
	return toSlotmgr(st), nil
}

func (p pcscContext) Wait(ctx context.Context, known []slotmgr.ReaderState) ([]slotmgr.ReaderState, error) {
	k := make([]pcsc.ReaderState, len(known))
	for i, s := range known {
		k[i] = pcsc.ReaderState{Name: s.Name, Present: s.Present, Empty: s.Empty, Exclusive: s.Exclusive,
			InUse: s.InUse, Mute: s.Mute, Unavailable: s.Unavailable, ATR: s.ATR, EventCount: s.EventCount, Raw: s.Raw}
	}
	st, err := p.c.Wait(ctx, k)
	if err != nil {
		return nil, err
	}
	return toSlotmgr(st), nil
}

func (p pcscContext) Connect(ctx context.Context, reader string) (slotmgr.Card, error) {
	k, err := p.c.Connect(ctx, reader)
	if err != nil {
		return nil, err
	}
	return k, nil
}

func (p pcscContext) Close() error { return p.c.Close() }

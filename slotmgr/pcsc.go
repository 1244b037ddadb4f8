package slotmgr

import (
	"context"
	"errors"
	"fmt"

	"github.com/p11-card/p11-card/pcsc"
)

// NewPCSC returns the backend over pcsc-lite (package pcsc): contexts in
// SCARD_SCOPE_SYSTEM, waits with the PnP notification reader, shared connections.
func NewPCSC() Backend { return pcscBackend{} }

type pcscBackend struct{}

func (pcscBackend) Establish(ctx context.Context) (Context, error) {
	c, err := pcsc.Establish(ctx)
	if err != nil {
		return nil, err
	}
	return &pcscContext{c: c}, nil
}

// Started implements Starter: the contexts opened early for the start (pcsc.ReleaseEarly)
// are released.
func (pcscBackend) Started() { pcsc.ReleaseEarly() }

// Connect implements Connector: a pcsc.Card carries its own PC/SC context.
func (pcscBackend) Connect(ctx context.Context, reader string) (Card, error) {
	k, err := pcsc.Connect(ctx, reader)
	if err != nil {
		return nil, err
	}
	return k, nil
}

// NewPCSCWithUSB is NewPCSC that also puts a USB identity on each reader (a USBLookup):
// list enumerates the CCID devices (usb.Readers of package pcsc/usb), once per lookup for
// all readers attached since the last. The PKCS#11 module does without: it shows no USB
// identity, and so links no libusb.
func NewPCSCWithUSB(list func() ([]pcsc.USBInfo, error)) Backend {
	return pcscUSBBackend{list: list}
}

type pcscUSBBackend struct {
	pcscBackend
	list func() ([]pcsc.USBInfo, error)
}

// USB implements USBLookup with one USB enumeration for all readers.
func (b pcscUSBBackend) USB(readers []string) []*pcsc.USBInfo {
	out := make([]*pcsc.USBInfo, len(readers))
	devs, err := b.list()
	if err != nil || len(devs) == 0 {
		return out
	}
	for i, r := range readers {
		if d, ok := pcsc.MatchUSB(r, devs); ok {
			out[i] = &d
		}
	}
	return out
}

type pcscContext struct{ c *pcsc.Context }

// errRestarted reports a Wait that came back from a pcscd restart.
var errRestarted = fmt.Errorf("slotmgr: pcscd restarted: %w", pcsc.ErrNoService)

// movedPCSC reports whether the readers or a reader's slot-relevant state differ.
func movedPCSC(known, now []pcsc.ReaderState) bool {
	if len(known) != len(now) {
		return true
	}
	for i := range known {
		if known[i].Name != now[i].Name || pcsc.Changed(known[i], now[i]) {
			return true
		}
	}
	return false
}

// Shared implements SharedContext: pcsc.Context's calls are safe for concurrent use.
func (p *pcscContext) Shared() bool { return true }

func (p *pcscContext) Readers(ctx context.Context) ([]string, error) { return p.c.Readers(ctx) }

func (p *pcscContext) Status(ctx context.Context, readers []string) ([]ReaderState, error) {
	st, err := p.c.Status(ctx, readers)
	if err != nil {
		return nil, err
	}
	out := make([]ReaderState, len(st))
	for i, s := range st {
		out[i] = fromPCSC(s)
	}
	return out, nil
}

func (p *pcscContext) Wait(ctx context.Context, known []ReaderState) ([]ReaderState, error) {
	k := make([]pcsc.ReaderState, len(known))
	for i, s := range known {
		k[i] = toPCSC(s)
	}
	st, err := p.c.Wait(ctx, k)
	if errors.Is(err, pcsc.ErrTimeout) {
		return nil, nil // nothing happened; the watcher reads the states again
	}
	if err != nil {
		return nil, err
	}
	// pcsc.Context.Wait returns with nothing changed only after it re-established itself
	// with a restarted pcscd: every card handle died then, so say the service was lost.
	if !movedPCSC(k, st) {
		return nil, errRestarted
	}
	out := make([]ReaderState, len(st))
	for i, s := range st {
		out[i] = fromPCSC(s)
	}
	return out, nil
}

func (p *pcscContext) Connect(ctx context.Context, reader string) (Card, error) {
	k, err := p.c.Connect(ctx, reader)
	if err != nil {
		return nil, err
	}
	return k, nil
}

func (p *pcscContext) Close() error { return p.c.Close() }

// A pcsc.Card is a Card and a FeatureReader.
var (
	_ Card          = (*pcsc.Card)(nil)
	_ FeatureReader = (*pcsc.Card)(nil)
)

func fromPCSC(s pcsc.ReaderState) ReaderState {
	return ReaderState{Name: s.Name, Present: s.Present, Empty: s.Empty, Exclusive: s.Exclusive,
		InUse: s.InUse, Mute: s.Mute, Unavailable: s.Unavailable, Unknown: s.Unknown, ATR: s.ATR,
		EventCount: s.EventCount, Raw: s.Raw}
}

func toPCSC(s ReaderState) pcsc.ReaderState {
	return pcsc.ReaderState{Name: s.Name, Present: s.Present, Empty: s.Empty, Exclusive: s.Exclusive,
		InUse: s.InUse, Mute: s.Mute, Unavailable: s.Unavailable, Unknown: s.Unknown, ATR: s.ATR,
		EventCount: s.EventCount, Raw: s.Raw}
}

package pcsc

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/p11-card/p11-card/apdu"
	"github.com/p11-card/p11-card/internal/trace"
)

// Card is a shared-mode connection to the card in one reader. It implements
// apdu.Transmitter and, with Lock, cards.Conn.
//
// Methods are safe for concurrent use, but a card answers one command at a time: callers
// serialise their exchanges with Lock (a PC/SC transaction).
type Card struct {
	reader string
	redact apdu.ResponseRedactor // for traces: follows GET RESPONSE after a decipher

	mu       sync.Mutex
	ctxh     ctxHandle // a PC/SC context of this card's own
	ctxValid bool
	h        cardHandle
	proto    uint32
	atr      []byte
	dead     bool // handle lost with the service: the next Lock connects again
	resetOwn bool // Reconnect reset the card: the next Lock reports it
	closed   bool

	// calls counts the C calls on h made without mu (a transmit, a transaction begun,
	// given up or ended, a reconnection, a control). libpcsclite frees a handle's client
	// state at disconnect and a context's at release, under a thread still in a call on
	// them: so Close leaves both to the last call in flight (free), and contexts replaced
	// meanwhile wait in retired.
	calls   int
	freed   bool
	retired []ctxHandle
}

// acquire counts a C call on the card's handle, made without k.mu; ok is false after
// Close. release must follow.
func (k *Card) acquire() (h cardHandle, proto uint32, dead, ok bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.closed {
		return 0, 0, false, false
	}
	k.calls++
	return k.h, k.proto, k.dead, true
}

// release ends a call counted by acquire; the last one after Close frees the handles.
func (k *Card) release() {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.calls--
	if k.calls > 0 {
		return
	}
	for _, c := range k.retired {
		scRelease(c)
	}
	k.retired = nil
	if k.closed {
		k.freeLocked()
	}
}

// releaseCtxLocked releases the card's context now, or once no call is in flight; the
// code is the release's, codeSuccess when there was none to make now.
func (k *Card) releaseCtxLocked() uint32 {
	if !k.ctxValid {
		return codeSuccess
	}
	k.ctxValid = false
	if k.calls > 0 {
		k.retired = append(k.retired, k.ctxh)
		return codeSuccess
	}
	return scRelease(k.ctxh)
}

// freeLocked releases the card's context, the handle with it: pcscd disconnects the
// handles of a context it releases, leaving the card as it is (SCARD_LEAVE_CARD) or, when
// the handle still holds the card's transaction, resetting it, so that no program finds
// the card as this one left it in the middle of an operation. One round trip instead of
// an SCardDisconnect before it.
func (k *Card) freeLocked() error {
	if k.freed {
		return nil
	}
	k.freed = true
	if code := k.releaseCtxLocked(); code != codeSuccess && !serviceLost(code) {
		return wrap("release context", code)
	}
	return nil
}

// Connect connects to the card in reader, shared, T=0 or T=1 (whichever the card and
// reader choose). An empty reader gives ErrNoCard, an unknown one ErrNoReader.
func (c *Context) Connect(ctx context.Context, reader string) (*Card, error) {
	if c.isClosed() {
		return nil, ErrClosed
	}
	return Connect(ctx, reader)
}

// Connect is Context.Connect for a caller without a Context: the card has a PC/SC
// context of its own either way, so none is opened for the connection alone.
func Connect(ctx context.Context, reader string) (*Card, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	k := &Card{reader: reader}
	if err := k.connect(); err != nil {
		return nil, err
	}
	return k, nil
}

// connect establishes the card's context if needed and connects. Called without k.mu
// held by anyone else (Connect) or with it (reconnectFresh).
func (k *Card) connect() error {
	if !k.ctxValid {
		h, code := scEstablish()
		if code != codeSuccess {
			return wrap("establish context", code)
		}
		k.ctxh, k.ctxValid = h, true
	}
	h, proto, code := scConnect(k.ctxh, k.reader)
	if serviceLost(code) {
		scRelease(k.ctxh)
		k.ctxValid = false
		nh, c2 := scEstablish()
		if c2 != codeSuccess {
			return wrap("establish context", c2)
		}
		k.ctxh, k.ctxValid = nh, true
		h, proto, code = scConnect(k.ctxh, k.reader)
	}
	if code != codeSuccess {
		scRelease(k.ctxh)
		k.ctxValid = false
		return wrap(fmt.Sprintf("connect %q", k.reader), code)
	}
	_, p2, atr, code := scStatus(h)
	if code != codeSuccess {
		scDisconnect(h, leaveCard)
		scRelease(k.ctxh)
		k.ctxValid = false
		return cardError(fmt.Sprintf("status %q", k.reader), code)
	}
	if p2 != 0 {
		proto = p2
	}
	k.h, k.proto, k.atr, k.dead = h, proto, atr, false
	return nil
}

// Reader is the name of the reader the card is in.
func (k *Card) Reader() string { return k.reader }

// ATR is the card's answer to reset, as read at Connect (or the last reconnection).
func (k *Card) ATR() []byte {
	k.mu.Lock()
	defer k.mu.Unlock()
	return append([]byte(nil), k.atr...)
}

// cardError maps a code from a card call: removal and reset get their sentinels; a dead
// handle (pcscd restarted) reads as a reset, since the card was powered down with it.
func cardError(op string, code uint32) error {
	switch {
	case code == codeNoSmartcard:
		e := wrap(op, code).(*codeError)
		e.sentinel = ErrCardRemoved
		return e
	case serviceLost(code):
		e := wrap(op, code).(*codeError)
		e.sentinel = ErrCardReset
		e.hint = "connection to pcscd lost"
		return e
	}
	return wrap(op, code)
}

// maxCommand is the largest command APDU: header, extended Lc, 65535 data bytes, Le.
const maxCommand = 4 + 3 + 65535 + 2

// Transmit sends one command APDU and returns the response, status word included. It
// fails with ErrCardRemoved or ErrCardReset when the card left or was reset (then Lock
// again: it reports the reset). Every APDU is traced under "apdu", redacted.
func (k *Card) Transmit(ctx context.Context, cmd []byte) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if len(cmd) < 4 || len(cmd) > maxCommand {
		return nil, fmt.Errorf("pcsc: transmit: command of %d bytes", len(cmd))
	}
	h, proto, dead, ok := k.acquire()
	if !ok {
		return nil, ErrClosed
	}
	defer k.release()
	if dead {
		return nil, cardError("transmit", codeInvalidHandle)
	}
	if proto != protoT0 && proto != protoT1 {
		return nil, fmt.Errorf("pcsc: transmit: card in %q uses protocol %d, not T=0 or T=1", k.reader, proto)
	}
	if trace.On("apdu") {
		trace.Printf("apdu", "%s > % X", k.reader, apdu.Redact(cmd))
	}
	resp, code := scTransmit(h, proto, cmd)
	if code != codeSuccess {
		if serviceLost(code) {
			k.markDead(h)
		}
		return nil, cardError("transmit", code)
	}
	if trace.On("apdu") {
		trace.Printf("apdu", "%s < % X", k.reader, k.redact.Redact(cmd, resp))
	}
	return resp, nil
}

func (k *Card) markDead(h cardHandle) {
	k.mu.Lock()
	if k.h == h {
		k.dead = true
	}
	k.mu.Unlock()
}

// Lock begins a PC/SC transaction: until unlock, no other program talks to the card.
// reset is true when the card was reset since the last Lock (by another program, a
// reconnection, or a pcscd restart): the caller re-selects its application and forgets
// login state. A removed card gives ErrCardRemoved; a different card in the reader after
// a pcscd restart reads as removed too. unlock may be called more than once.
//
// While another program holds a transaction Lock waits; ctx ending returns ctx.Err() (the
// transaction, if obtained later, is ended at once).
func (k *Card) Lock(ctx context.Context) (unlock func(), reset bool, err error) {
	if err := ctx.Err(); err != nil {
		return nil, false, err
	}
	for attempt := 0; attempt < 3; attempt++ {
		k.mu.Lock()
		if k.closed {
			k.mu.Unlock()
			return nil, false, ErrClosed
		}
		if k.dead {
			if err := k.reconnectFresh(); err != nil {
				k.mu.Unlock()
				return nil, false, err
			}
			reset = true
		}
		h := k.h
		if k.resetOwn {
			k.resetOwn = false
			reset = true
		}
		k.calls++ // released by begin
		k.mu.Unlock()

		code, err := k.begin(ctx, h)
		if err != nil {
			return nil, false, err
		}
		switch {
		case code == codeSuccess:
			return k.unlocker(h), reset, nil
		case code == codeResetCard:
			if err := k.reconnect(h, leaveCard); err != nil {
				return nil, false, err
			}
			reset = true
		case code == codeRemovedCard || code == codeNoSmartcard:
			return nil, false, cardError("begin transaction", codeRemovedCard)
		case serviceLost(code):
			k.markDead(h)
		default:
			return nil, false, cardError("begin transaction", code)
		}
	}
	return nil, false, fmt.Errorf("pcsc: begin transaction on %q: card keeps resetting", k.reader)
}

// begin runs SCardBeginTransaction, which pcsc-lite retries internally while another
// program holds the card; ctx ending abandons the wait. The caller counted the call
// (k.calls); begin releases it once SCardBeginTransaction has returned and, if the wait
// was abandoned, the transaction obtained too late has been ended.
func (k *Card) begin(ctx context.Context, h cardHandle) (uint32, error) {
	if ctx.Done() == nil {
		defer k.release()
		return scBeginTransaction(h), nil
	}
	res := make(chan uint32, 1)
	go func() { res <- scBeginTransaction(h) }()
	select {
	case code := <-res:
		k.release()
		return code, nil
	case <-ctx.Done():
	}
	go func() {
		defer k.release()
		if code := <-res; code == codeSuccess {
			scEndTransaction(h, leaveCard)
		}
	}()
	return 0, ctx.Err()
}

func (k *Card) unlocker(h cardHandle) func() {
	var once sync.Once
	return func() {
		once.Do(func() {
			// After Close the release of the context ended the transaction.
			if _, _, _, ok := k.acquire(); ok {
				scEndTransaction(h, leaveCard)
				k.release()
			}
		})
	}
}

// reconnect runs SCardReconnect on h with disposition and refreshes the ATR.
func (k *Card) reconnect(h cardHandle, disposition uint32) error {
	if _, _, _, ok := k.acquire(); !ok {
		return ErrClosed
	}
	defer k.release()
	proto, code := scReconnect(h, disposition)
	if code == codeRemovedCard || code == codeNoSmartcard {
		return cardError("reconnect", codeRemovedCard)
	}
	if serviceLost(code) {
		k.markDead(h)
		return nil // the caller's next attempt connects again
	}
	if code != codeSuccess {
		return cardError("reconnect", code)
	}
	_, _, atr, code := scStatus(h)
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.h == h {
		k.proto = proto
		if code == codeSuccess {
			k.atr = atr
		}
	}
	return nil
}

// Reconnect re-negotiates the connection; with reset the card is warm-reset (all
// selection and login state on the card is lost) and the next Lock reports reset=true,
// as it does for a reset by anyone else.
func (k *Card) Reconnect(ctx context.Context, reset bool) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	k.mu.Lock()
	h, closed := k.h, k.closed
	k.mu.Unlock()
	if closed {
		return ErrClosed
	}
	d := uint32(leaveCard)
	if reset {
		d = resetCard
	}
	if err := k.reconnect(h, d); err != nil {
		return err
	}
	if reset {
		k.mu.Lock()
		k.resetOwn = true
		k.mu.Unlock()
	}
	return nil
}

// reconnectFresh replaces a handle lost with pcscd by a new connection. The card was
// powered down meanwhile; a different ATR means a different card: ErrCardRemoved.
// Called with k.mu held.
func (k *Card) reconnectFresh() error {
	k.releaseCtxLocked() // dead with the old pcscd; releases client-side state
	old := k.atr
	if err := k.connect(); err != nil {
		if errors.Is(err, ErrNoCard) {
			return cardError("reconnect", codeRemovedCard)
		}
		return err
	}
	if !bytes.Equal(old, k.atr) {
		scDisconnect(k.h, leaveCard)
		k.dead = true
		return fmt.Errorf("pcsc: reconnect %q: a different card is in the reader: %w", k.reader, ErrCardRemoved)
	}
	return nil
}

// Close releases the card's context, which disconnects its handle, leaving the card as it
// is (SCARD_LEAVE_CARD; reset if a transaction of ours is still open): at once or, with
// calls in flight (a transaction wait given up), when the last one returns. Close is
// idempotent.
func (k *Card) Close() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.closed {
		return nil
	}
	k.closed = true
	if k.calls > 0 {
		return nil // the last call in flight frees the handles
	}
	return k.freeLocked()
}

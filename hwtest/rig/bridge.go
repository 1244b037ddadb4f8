package rig

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"sync"
	"time"

	"github.com/p11-card/p11-card/cards/vcard"
)

// vpcd control messages (vsmartcard vpcd protocol: a one-byte payload).
const (
	ctrlOff   = 0x00
	ctrlOn    = 0x01
	ctrlReset = 0x02
	ctrlATR   = 0x04
)

// swInternal answers a command the card could not handle (a panic in a virtual card, a
// response too long for vpcd's framing): SW 6F00, no precise diagnosis (ISO/IEC 7816-4 §5.6).
var swInternal = []byte{0x6F, 0x00}

// bridge serves one card to one vpcd reader. It dials the reader's port and, when the
// connection drops without being asked to (pcscd restarting), dials again.
type bridge struct {
	card vcard.Card
	addr string

	stop     chan struct{} // closed by close()
	stopOnce sync.Once
	done     chan struct{} // closed when run returns

	mu       sync.Mutex
	removed  bool          // the card pulled itself out (vcard.ErrRemoved)
	powerOns int           // times vpcd powered the card up and read its ATR
	changed  chan struct{} // closed and replaced when powerOns or removed change
}

func newBridge(c vcard.Card, addr string) *bridge {
	return &bridge{card: c, addr: addr, stop: make(chan struct{}), done: make(chan struct{}), changed: make(chan struct{})}
}

func (b *bridge) close() { b.stopOnce.Do(func() { close(b.stop) }) }

func (b *bridge) stopped() bool {
	select {
	case <-b.stop:
		return true
	default:
		return false
	}
}

// state returns the power-on count, whether the card removed itself, and a channel
// closed at the next change.
func (b *bridge) state() (int, bool, <-chan struct{}) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.powerOns, b.removed, b.changed
}

func (b *bridge) update(fn func()) {
	b.mu.Lock()
	fn()
	close(b.changed)
	b.changed = make(chan struct{})
	b.mu.Unlock()
}

// waitPowered waits until vpcd has powered the card up more than n times, or the bridge ends.
func (b *bridge) waitPowered(ctx context.Context, n int) error {
	for {
		k, removed, ch := b.state()
		if k > n {
			return nil
		}
		if removed {
			return errors.New("rig: the card removed itself before pcscd powered it")
		}
		select {
		case <-ch:
		case <-b.done:
			return errors.New("rig: card connection ended before pcscd powered it")
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (b *bridge) run() {
	defer close(b.done)
	for {
		conn := b.dial()
		if conn == nil {
			return
		}
		end := b.serve(conn)
		conn.Close()
		if end != endLost {
			return
		}
	}
}

// dial connects to vpcd, retrying while pcscd is not listening; nil once stopped.
func (b *bridge) dial() *net.TCPConn {
	d := net.Dialer{Timeout: time.Second}
	for {
		if b.stopped() {
			return nil
		}
		c, err := d.Dial("tcp", b.addr)
		if err == nil {
			tc := c.(*net.TCPConn)
			tc.SetNoDelay(true)
			quickAck(tc)
			return tc
		}
		select {
		case <-b.stop:
			return nil
		case <-time.After(10 * time.Millisecond):
		}
	}
}

type endReason int

const (
	endStopped endReason = iota // close() was called
	endRemoved                  // the card returned vcard.ErrRemoved
	endLost                     // vpcd went away: dial again
)

func (b *bridge) serve(conn *net.TCPConn) endReason {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-b.stop:
			cancel()
			conn.Close()
		case <-ctx.Done():
		}
	}()
	var hdr [2]byte
	poweredOn := false
	for {
		if _, err := io.ReadFull(conn, hdr[:]); err != nil {
			return b.lostOrStopped()
		}
		quickAck(conn)
		msg := make([]byte, binary.BigEndian.Uint16(hdr[:]))
		if _, err := io.ReadFull(conn, msg); err != nil {
			return b.lostOrStopped()
		}
		quickAck(conn)
		switch {
		case len(msg) == 0:
			continue
		case len(msg) == 1:
			switch msg[0] {
			case ctrlOff:
				poweredOn = false
			case ctrlOn, ctrlReset:
				b.card.Reset()
				poweredOn = true
			case ctrlATR:
				if err := send(conn, b.card.ATR()); err != nil {
					return b.lostOrStopped()
				}
				if poweredOn {
					// vpcd reads the ATR right after every power-up; its presence
					// polls read it too, which is why a power-on is counted once.
					poweredOn = false
					b.update(func() { b.powerOns++ })
				}
			}
			continue
		}
		resp, err := b.transmit(ctx, msg)
		if err != nil {
			if b.stopped() {
				return endStopped
			}
			// vpcd takes the closed socket for an empty answer: the client gets no
			// bytes for this command (pcscd reports success with a zero-length
			// response) and SCARD_W_REMOVED_CARD from the next one. (A half-sent
			// length header would make the command fail instead, but crashes pcscd
			// 1.9.9's vpcd.)
			b.update(func() { b.removed = true })
			return endRemoved
		}
		if len(resp) > 0xFFFF {
			resp = swInternal
		}
		if err := send(conn, resp); err != nil {
			return b.lostOrStopped()
		}
	}
}

// transmit calls the card, turning a panic of the virtual card into SW 6F00.
func (b *bridge) transmit(ctx context.Context, cmd []byte) (resp []byte, err error) {
	defer func() {
		if recover() != nil {
			resp, err = swInternal, nil
		}
	}()
	return b.card.Transmit(ctx, cmd)
}

func (b *bridge) lostOrStopped() endReason {
	if b.stopped() {
		return endStopped
	}
	return endLost
}

func send(conn net.Conn, payload []byte) error {
	buf := make([]byte, 2+len(payload))
	binary.BigEndian.PutUint16(buf, uint16(len(payload)))
	copy(buf[2:], payload)
	_, err := conn.Write(buf)
	return err
}

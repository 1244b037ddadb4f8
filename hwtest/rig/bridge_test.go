package rig

import (
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/p11-card/p11-card/cards/vcard"
)

// fakeCard answers every command with 9000 and counts resets.
type fakeCard struct{ resets atomic.Int32 }

func (c *fakeCard) ATR() []byte { return []byte{0x3B, 0x02, 0x14, 0x50} }
func (c *fakeCard) Reset()      { c.resets.Add(1) }
func (c *fakeCard) Transmit(ctx context.Context, cmd []byte) ([]byte, error) {
	if len(cmd) > 1 && cmd[1] == 0xEE {
		panic("virtual card bug")
	}
	if len(cmd) > 1 && cmd[1] == 0xBB {
		return make([]byte, 0x10000+2), nil
	}
	return []byte{cmd[1], 0x90, 0x00}, nil
}

// fakeVPCD plays pcscd's side of the vpcd protocol on a listener.
type fakeVPCD struct {
	t *testing.T
	l net.Listener
}

func newFakeVPCD(t *testing.T) *fakeVPCD {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return &fakeVPCD{t, l}
}

func (f *fakeVPCD) accept() net.Conn {
	f.t.Helper()
	f.l.(*net.TCPListener).SetDeadline(time.Now().Add(5 * time.Second))
	c, err := f.l.Accept()
	if err != nil {
		f.t.Fatalf("accept: %v", err)
	}
	c.SetDeadline(time.Now().Add(5 * time.Second))
	return c
}

func write(t *testing.T, c net.Conn, p []byte) {
	t.Helper()
	if err := send(c, p); err != nil {
		t.Fatalf("send: %v", err)
	}
}

func read(t *testing.T, c net.Conn) []byte {
	t.Helper()
	var h [2]byte
	if _, err := io.ReadFull(c, h[:]); err != nil {
		t.Fatalf("read header: %v", err)
	}
	p := make([]byte, binary.BigEndian.Uint16(h[:]))
	if _, err := io.ReadFull(c, p); err != nil {
		t.Fatalf("read payload: %v", err)
	}
	return p
}

func startBridge(t *testing.T, c vcard.Card, f *fakeVPCD) *bridge {
	b := newBridge(c, f.l.Addr().String())
	go b.run()
	t.Cleanup(func() { b.close(); <-b.done })
	return b
}

func TestBridgeProtocol(t *testing.T) {
	f := newFakeVPCD(t)
	card := &fakeCard{}
	b := startBridge(t, card, f)
	c := f.accept()
	defer c.Close()

	write(t, c, []byte{ctrlATR}) // a presence poll: not a power-on
	if got := read(t, c); !bytes.Equal(got, card.ATR()) {
		t.Fatalf("ATR %X", got)
	}
	if n, _, _ := b.state(); n != 0 {
		t.Errorf("a presence poll counted as power-on")
	}
	write(t, c, []byte{ctrlOn})
	write(t, c, []byte{ctrlATR})
	read(t, c)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := b.waitPowered(ctx, 0); err != nil {
		t.Fatalf("waitPowered: %v", err)
	}
	write(t, c, []byte{0x00, 0xA4, 0x04, 0x00})
	if got := read(t, c); !bytes.Equal(got, []byte{0xA4, 0x90, 0x00}) {
		t.Errorf("response %X", got)
	}
	write(t, c, []byte{ctrlReset})
	write(t, c, []byte{ctrlOff})
	write(t, c, []byte{0x07}) // unknown control: ignored
	write(t, c, nil)          // empty message: ignored
	write(t, c, []byte{0x00, 0xEE, 0x00, 0x00})
	if got := read(t, c); !bytes.Equal(got, swInternal) {
		t.Errorf("a panicking card gave %X, want 6F00", got)
	}
	write(t, c, []byte{0x00, 0xBB, 0x00, 0x00})
	if got := read(t, c); !bytes.Equal(got, swInternal) {
		t.Errorf("an oversized answer gave %d bytes, want 6F00", len(got))
	}
	if r := card.resets.Load(); r != 2 {
		t.Errorf("resets = %d, want 2 (power-on and reset)", r)
	}
}

func TestBridgeRedialsWhenVPCDGoesAway(t *testing.T) {
	f := newFakeVPCD(t)
	startBridge(t, &fakeCard{}, f)
	c := f.accept()
	c.Close() // pcscd restarting
	c2 := f.accept()
	defer c2.Close()
	write(t, c2, []byte{ctrlATR})
	read(t, c2)
}

func TestBridgeCardRemovesItself(t *testing.T) {
	f := newFakeVPCD(t)
	b := startBridge(t, vcard.WithFaults(&fakeCard{}, &vcard.Faults{RemoveAt: 1}), f)
	c := f.accept()
	defer c.Close()
	write(t, c, []byte{0x00, 0xA4, 0x04, 0x00})
	var buf [1]byte
	if n, err := c.Read(buf[:]); err != io.EOF {
		t.Fatalf("after removal read %d bytes, err %v; want EOF", n, err)
	}
	select {
	case <-b.done:
	case <-time.After(5 * time.Second):
		t.Fatal("bridge still running after the card removed itself")
	}
	if _, removed, _ := b.state(); !removed {
		t.Error("removal not recorded")
	}
}

func TestBridgeCloseEndsConnection(t *testing.T) {
	f := newFakeVPCD(t)
	b := newBridge(&fakeCard{}, f.l.Addr().String())
	go b.run()
	c := f.accept()
	defer c.Close()
	b.close()
	<-b.done
	var buf [1]byte
	if _, err := c.Read(buf[:]); err != io.EOF {
		t.Errorf("read after close: %v, want EOF", err)
	}
}

func TestStartRejectsOddReaders(t *testing.T) {
	if _, err := Start(context.Background(), Options{Readers: 3}); err == nil {
		t.Error("Start with 3 readers succeeded")
	}
}

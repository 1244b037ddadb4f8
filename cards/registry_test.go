package cards

import (
	"context"
	"errors"
	"strings"
	"testing"
)

// fakeDriver answers MatchATR with m and Open with err (or a token when err is nil).
type fakeDriver struct {
	name   string
	m      Match
	err    error
	opened *[]string
}

func (d fakeDriver) Name() string              { return d.name }
func (d fakeDriver) MatchATR(atr []byte) Match { return d.m }
func (d fakeDriver) Open(ctx context.Context, c Conn, atr []byte) (Token, error) {
	*d.opened = append(*d.opened, d.name)
	unlock, _, err := c.Lock(ctx)
	if err != nil {
		return nil, err
	}
	defer unlock()
	if d.err != nil {
		return nil, d.err
	}
	return fakeToken{name: d.name, conn: c}, nil
}

// fakeToken is a Token whose methods are never called by these tests.
type fakeToken struct {
	Token
	name string
	conn Conn
}

// lockConn counts the transactions begun on it and tells whether one is on.
type lockConn struct {
	nopConn
	locks  int
	locked bool
	reset  bool // what the next Lock says
}

func (c *lockConn) Lock(ctx context.Context) (func(), bool, error) {
	if c.locked {
		return nil, false, errors.New("nested Lock")
	}
	c.locks++
	c.locked = true
	r := c.reset
	c.reset = false
	return func() { c.locked = false }, r, nil
}

type nopConn struct{}

func (nopConn) Transmit(ctx context.Context, cmd []byte) ([]byte, error) { return []byte{0x90, 0}, nil }
func (nopConn) Lock(ctx context.Context) (func(), bool, error)           { return func() {}, false, nil }

// withDrivers replaces the registry for one test.
func withDrivers(t *testing.T, ds ...Driver) {
	t.Helper()
	regMu.Lock()
	saved := drivers
	drivers = nil
	regMu.Unlock()
	for _, d := range ds {
		Register(d)
	}
	t.Cleanup(func() {
		regMu.Lock()
		drivers = saved
		regMu.Unlock()
	})
}

func TestBind(t *testing.T) {
	boom := errors.New("reader gone")
	notMine := func(n string) error { return errors.Join(ErrNotRecognized, errors.New(n)) }
	tests := []struct {
		name    string
		drivers []fakeDriver
		want    string   // driver whose token wins; "" for an error
		tried   []string // Open calls in order
		wantErr error
	}{
		{"yes before maybe", []fakeDriver{{name: "a", m: MatchMaybe}, {name: "b", m: MatchYes}}, "b", []string{"b"}, nil},
		{"maybe in registration order", []fakeDriver{{name: "a", m: MatchMaybe}, {name: "b", m: MatchMaybe}}, "a", []string{"a"}, nil},
		{"no is never probed", []fakeDriver{{name: "a", m: MatchNo}, {name: "b", m: MatchMaybe}}, "b", []string{"b"}, nil},
		{"probe falls through", []fakeDriver{{name: "a", m: MatchYes, err: notMine("a")}, {name: "b", m: MatchMaybe}}, "b", []string{"a", "b"}, nil},
		{"nobody", []fakeDriver{{name: "a", m: MatchMaybe, err: notMine("a")}, {name: "b", m: MatchNo}}, "", []string{"a"}, ErrNotRecognized},
		{"hard error stops", []fakeDriver{{name: "a", m: MatchYes, err: boom}, {name: "b", m: MatchMaybe}}, "", []string{"a"}, boom},
		{"no drivers", nil, "", nil, ErrNotRecognized},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var opened []string
			var ds []Driver
			for _, d := range tc.drivers {
				d.opened = &opened
				ds = append(ds, d)
			}
			withDrivers(t, ds...)
			conn := &lockConn{}
			tok, err := Bind(context.Background(), conn, []byte{0x3B, 0x00})
			if tc.want != "" {
				if err != nil || tok.(fakeToken).name != tc.want {
					t.Fatalf("Bind = %v, %v; want %s", tok, err, tc.want)
				}
			} else if !errors.Is(err, tc.wantErr) {
				t.Fatalf("Bind error %v, want %v", err, tc.wantErr)
			}
			if strings.Join(opened, ",") != strings.Join(tc.tried, ",") {
				t.Errorf("opened %v, want %v", opened, tc.tried)
			}
			// Every driver tried shares one transaction, over when Bind returns.
			if want := min(len(tc.tried), 1); conn.locks != want || conn.locked {
				t.Errorf("%d transactions (want %d), one still on: %v", conn.locks, want, conn.locked)
			}
			if tc.want == "" {
				return
			}
			// The token's own transactions are the card's.
			unlock, _, err := tok.(fakeToken).conn.Lock(context.Background())
			if err != nil || conn.locks != 2 || !conn.locked {
				t.Fatalf("the token's Lock: %v, %d transactions, on %v", err, conn.locks, conn.locked)
			}
			unlock()
		})
	}
}

// TestBindReset: every driver Bind tries hears of a reset the card had before Bind.
func TestBindReset(t *testing.T) {
	var resets []bool
	probe := func(name string, err error) Driver {
		return probeDriver{name, func(c Conn) error {
			unlock, reset, lerr := c.Lock(context.Background())
			if lerr != nil {
				return lerr
			}
			unlock()
			resets = append(resets, reset)
			return err
		}}
	}
	withDrivers(t, probe("a", ErrNotRecognized), probe("b", nil))
	conn := &lockConn{reset: true}
	if _, err := Bind(context.Background(), conn, []byte{0x3B, 0x00}); err != nil {
		t.Fatal(err)
	}
	if len(resets) != 2 || !resets[0] || !resets[1] {
		t.Errorf("resets the drivers saw: %v", resets)
	}
	failing := &failLock{}
	if _, err := Bind(context.Background(), failing, []byte{0x3B, 0x00}); !errors.Is(err, errGone) {
		t.Errorf("Bind on a card that cannot be locked: %v", err)
	}
}

// probeDriver runs open as its Open, on every ATR.
type probeDriver struct {
	name string
	open func(Conn) error
}

func (d probeDriver) Name() string          { return d.name }
func (d probeDriver) MatchATR([]byte) Match { return MatchMaybe }
func (d probeDriver) Open(ctx context.Context, c Conn, atr []byte) (Token, error) {
	if err := d.open(c); err != nil {
		return nil, err
	}
	return fakeToken{name: d.name, conn: c}, nil
}

var errGone = errors.New("card gone")

type failLock struct{ nopConn }

func (failLock) Lock(context.Context) (func(), bool, error) { return nil, false, errGone }

func TestRegisterTwicePanics(t *testing.T) {
	var opened []string
	withDrivers(t, fakeDriver{name: "x", opened: &opened})
	defer func() {
		if recover() == nil {
			t.Error("no panic on a duplicate name")
		}
	}()
	Register(fakeDriver{name: "x", opened: &opened})
}

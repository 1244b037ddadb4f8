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
	if d.err != nil {
		return nil, d.err
	}
	return fakeToken{name: d.name}, nil
}

// fakeToken is a Token whose methods are never called by these tests.
type fakeToken struct {
	Token
	name string
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
			tok, err := Bind(context.Background(), nopConn{}, []byte{0x3B, 0x00})
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
		})
	}
}

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

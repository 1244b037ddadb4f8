package apdu

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"
)

// script is a Transmitter that checks each command against want and answers from resp.
type script struct {
	t    *testing.T
	want [][]byte // nil entry: any command
	resp [][]byte
	err  error // returned instead of a response once resp runs out, if set
	sent [][]byte
}

func (s *script) Transmit(_ context.Context, cmd []byte) ([]byte, error) {
	i := len(s.sent)
	s.sent = append(s.sent, append([]byte(nil), cmd...))
	if i >= len(s.resp) {
		if s.err != nil {
			return nil, s.err
		}
		s.t.Fatalf("unexpected command %d: % X", i, cmd)
	}
	if i < len(s.want) && s.want[i] != nil && !bytes.Equal(cmd, s.want[i]) {
		s.t.Fatalf("command %d = % X, want % X", i, cmd, s.want[i])
	}
	return s.resp[i], nil
}

func TestExchange(t *testing.T) {
	long := bytes.Repeat([]byte{0x5A}, 600)
	tests := []struct {
		name     string
		cmd      Command
		opt      Options
		want     []string // expected commands (hex); "" matches any
		resp     []string
		wantData string
		wantSW   SW
	}{
		{
			name: "plain", cmd: Command{INS: 0xCA, P2: 0x6E, Ne: 256},
			want: []string{"00CA006E00"}, resp: []string{"0102 9000"},
			wantData: "0102", wantSW: 0x9000,
		},
		{
			name: "error status is not an error", cmd: Command{INS: 0xA4, P1: 4, Data: hx("A0")},
			want: []string{"00A40400 01 A0"}, resp: []string{"6A82"},
			wantSW: 0x6A82,
		},
		{
			name: "61xx GET RESPONSE twice", cmd: Command{INS: 0xCB, P1: 0x3F, P2: 0xFF, Data: hx("5C035FC105"), Ne: 256},
			want:     []string{"00CB3FFF 05 5C035FC105 00", "00C00000 10", "00C00000 00"},
			resp:     []string{"AA 6110", "BB 6100", "CC 9000"},
			wantData: "AABBCC", wantSW: 0x9000,
		},
		{
			name: "61xx then warning keeps data", cmd: Command{INS: 0xB0, Ne: 256},
			want:     []string{"00B0000000", "00C0000005"},
			resp:     []string{"01 6105", "02 6282"},
			wantData: "0102", wantSW: 0x6282,
		},
		{
			name: "6Cxx repeats the command with Le", cmd: Command{INS: 0xCA, P2: 0x6E, Ne: 1},
			want:     []string{"00CA006E01", "00CA006E22"},
			resp:     []string{"6C22", "0102 9000"},
			wantData: "0102", wantSW: 0x9000,
		},
		{
			name: "6C00 means 256", cmd: Command{INS: 0xCA, Ne: 1},
			want:   []string{"00CA000001", "00CA000000"},
			resp:   []string{"6C00", "9000"},
			wantSW: 0x9000,
		},
		{
			name: "6Cxx during GET RESPONSE repeats GET RESPONSE", cmd: Command{INS: 0xCB, Ne: 256},
			want:     []string{"00CB000000", "00C0000020", "00C0000003", "00C0000001"},
			resp:     []string{"AA 6120", "6C03", "BBCCDD 6101", "EE 9000"},
			wantData: "AABBCCDDEE", wantSW: 0x9000,
		},
		{
			name: "6Cxx then 61xx", cmd: Command{INS: 0xCA, Ne: 1},
			want:     []string{"00CA000001", "00CA000002", "00C0000001"},
			resp:     []string{"6C02", "AABB 6101", "CC 9000"},
			wantData: "AABBCC", wantSW: 0x9000,
		},
		{
			name: "command chaining", cmd: Command{CLA: 0x00, INS: 0xDB, P1: 0x3F, P2: 0xFF, Data: long},
			want: []string{
				"10DB3FFF FF" + fmt.Sprintf("%X", long[:255]),
				"10DB3FFF FF" + fmt.Sprintf("%X", long[:255]),
				"00DB3FFF 5A" + fmt.Sprintf("%X", long[:90]),
			},
			resp:   []string{"9000", "9000", "9000"},
			wantSW: 0x9000,
		},
		{
			name: "chaining stops at the first error", cmd: Command{INS: 0xDB, Data: long},
			want: []string{""}, resp: []string{"6884"},
			wantSW: 0x6884,
		},
		{
			name: "chaining then GET RESPONSE drops the chaining bit", cmd: Command{CLA: 0x01, INS: 0x87, Data: long[:300], Ne: 256},
			want:     []string{"", "01870000 2D" + fmt.Sprintf("%X", long[:45]) + "00", "01C0000002"},
			resp:     []string{"9000", "AA 6102", "BBCC 9000"},
			wantData: "AABBCC", wantSW: 0x9000,
		},
		{
			name: "extended carries long data in one APDU", cmd: Command{INS: 0xDB, Data: long, Ne: 65536}, opt: Options{Extended: true},
			want: []string{"00DB0000 000258" + fmt.Sprintf("%X", long) + "0000"}, resp: []string{"9000"},
			wantSW: 0x9000,
		},
		{
			name: "short mode caps Ne at 256", cmd: Command{INS: 0xCB, Ne: 4000},
			want: []string{"00CB000000"}, resp: []string{"9000"},
			wantSW: 0x9000,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := &script{t: t}
			for _, w := range tt.want {
				if w == "" {
					s.want = append(s.want, nil)
				} else {
					s.want = append(s.want, hx(w))
				}
			}
			for _, r := range tt.resp {
				s.resp = append(s.resp, hx(r))
			}
			r, err := Exchange(context.Background(), s, tt.cmd, tt.opt)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(r.Data, hx(tt.wantData)) || r.SW != tt.wantSW {
				t.Fatalf("got % X %v, want %s %v", r.Data, r.SW, tt.wantData, tt.wantSW)
			}
			if len(s.sent) != len(tt.want) {
				t.Fatalf("sent %d commands, want %d", len(s.sent), len(tt.want))
			}
		})
	}
}

func TestExchangeBounds(t *testing.T) {
	endless := func(sw string, n int) *script {
		s := &script{t: t}
		for range n {
			s.resp = append(s.resp, hx(sw))
		}
		return s
	}
	t.Run("endless 61xx", func(t *testing.T) {
		s := endless("AA 6101", 100)
		_, err := Exchange(context.Background(), s, Command{INS: 0xCA}, Options{MaxRounds: 10})
		if !errors.Is(err, ErrMalformed) || len(s.sent) != 11 {
			t.Fatalf("err %v after %d commands; want ErrMalformed after 11", err, len(s.sent))
		}
	})
	t.Run("endless 61xx, default bound", func(t *testing.T) {
		s := endless("AA 61FF", 2000)
		_, err := Exchange(context.Background(), s, Command{INS: 0xCA}, Options{})
		if !errors.Is(err, ErrMalformed) || len(s.sent) != defaultMaxRounds+1 {
			t.Fatalf("err %v after %d commands; want ErrMalformed after %d", err, len(s.sent), defaultMaxRounds+1)
		}
	})
	t.Run("endless 6Cxx", func(t *testing.T) {
		s := endless("6C05", 100)
		_, err := Exchange(context.Background(), s, Command{INS: 0xCA, Ne: 1}, Options{})
		if !errors.Is(err, ErrMalformed) || len(s.sent) != 1+maxLeRetries {
			t.Fatalf("err %v after %d commands; want ErrMalformed after %d", err, len(s.sent), 1+maxLeRetries)
		}
	})
	t.Run("too much data", func(t *testing.T) {
		s := endless(fmt.Sprintf("%X6100", bytes.Repeat([]byte{1}, 200)), 100)
		_, err := Exchange(context.Background(), s, Command{INS: 0xCA}, Options{MaxResponse: 1000})
		if !errors.Is(err, ErrMalformed) || len(s.sent) > 6 {
			t.Fatalf("err %v after %d commands", err, len(s.sent))
		}
	})
	t.Run("too much data in the last block", func(t *testing.T) {
		s := &script{t: t, resp: [][]byte{hx("01 6101"), append(bytes.Repeat([]byte{1}, 20), 0x90, 0)}}
		_, err := Exchange(context.Background(), s, Command{INS: 0xCA}, Options{MaxResponse: 10})
		if !errors.Is(err, ErrMalformed) {
			t.Fatalf("err %v", err)
		}
	})
	t.Run("short response", func(t *testing.T) {
		s := &script{t: t, resp: [][]byte{{0x90}}}
		if _, err := Exchange(context.Background(), s, Command{INS: 0xCA}, Options{}); !errors.Is(err, ErrMalformed) {
			t.Fatalf("err %v", err)
		}
	})
	t.Run("bad Ne", func(t *testing.T) {
		s := &script{t: t}
		if _, err := Exchange(context.Background(), s, Command{INS: 0xCA, Ne: -1}, Options{}); err == nil || len(s.sent) != 0 {
			t.Fatalf("err %v, %d sent", err, len(s.sent))
		}
	})
}

func TestExchangeErrors(t *testing.T) {
	boom := errors.New("reader gone")
	s := &script{t: t, resp: [][]byte{hx("AA 6105")}, err: boom}
	if _, err := Exchange(context.Background(), s, Command{INS: 0xCA}, Options{}); !errors.Is(err, boom) {
		t.Fatalf("err %v, want %v", err, boom)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	s = &script{t: t}
	if _, err := Exchange(ctx, s, Command{INS: 0xCA}, Options{}); !errors.Is(err, context.Canceled) || len(s.sent) != 0 {
		t.Fatalf("err %v with %d sent, want context.Canceled and nothing sent", err, len(s.sent))
	}
}

func TestDo(t *testing.T) {
	s := &script{t: t, resp: [][]byte{hx("0102 9000"), hx("6A82"), hx("63C1")}}
	d, err := Do(context.Background(), s, Command{INS: 0xCA}, Options{})
	if err != nil || !bytes.Equal(d, hx("0102")) {
		t.Fatalf("Do = % X, %v", d, err)
	}
	if _, err := Do(context.Background(), s, Command{INS: 0xCA}, Options{}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Do = %v, want ErrNotFound", err)
	}
	var ve *VerifyError
	if _, err := Do(context.Background(), s, Command{INS: 0x20}, Options{}); !errors.As(err, &ve) || ve.Retries != 1 {
		t.Fatalf("Do = %v, want VerifyError 1", err)
	}
}

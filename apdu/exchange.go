package apdu

import (
	"context"
	"fmt"
)

// Transmitter sends one raw command APDU and returns the raw response, SW included.
type Transmitter interface {
	Transmit(ctx context.Context, cmd []byte) ([]byte, error)
}

// Options say what the card accepts; the zero value means short APDUs with command chaining.
type Options struct {
	// Extended sends extended-length APDUs when a command or its answer does not fit short ones.
	Extended bool
	// MaxResponse bounds the bytes collected over GET RESPONSE (default 1 MiB).
	MaxResponse int
	// MaxRounds bounds the GET RESPONSE and Le-retry rounds (default 4096).
	MaxRounds int
}

const (
	insGetResponse = 0xC0 // ISO/IEC 7816-4 §11.3.1
	claChaining    = 0x10 // ISO/IEC 7816-4 §5.4.1, command chaining control
)

// Exchange sends cmd and returns the whole answer. Data longer than one short APDU is sent by
// command chaining unless opt.Extended; 61xx is followed by GET RESPONSE until the card is done,
// and 6Cxx repeats the command with the Le the card named. A status word other than 9000 in the
// final response is returned in Response with a nil error; callers use Response.Err.
func Exchange(ctx context.Context, t Transmitter, cmd Command, opt Options) (Response, error) {
	maxResp, maxRounds := opt.MaxResponse, opt.MaxRounds
	if maxResp <= 0 {
		maxResp = 1 << 20
	}
	if maxRounds <= 0 {
		maxRounds = 4096
	}
	if !opt.Extended && len(cmd.Data) > MaxShortNc {
		// Command chaining: every block but the last carries the chaining bit.
		data := cmd.Data
		for len(data) > MaxShortNc {
			part := Command{CLA: cmd.CLA | claChaining, INS: cmd.INS, P1: cmd.P1, P2: cmd.P2, Data: data[:MaxShortNc]}
			r, err := transmit(ctx, t, part, false)
			if err != nil {
				return Response{}, err
			}
			if r.SW != SWOK {
				return r, nil
			}
			data = data[MaxShortNc:]
		}
		cmd.Data = data
	}
	if !opt.Extended && cmd.Ne > MaxShortNe {
		cmd.Ne = MaxShortNe
	}
	r, err := transmit(ctx, t, cmd, opt.Extended)
	if err != nil {
		return Response{}, err
	}
	var out []byte
	for rounds := 0; ; rounds++ {
		if rounds >= maxRounds {
			return Response{}, fmt.Errorf("%w: more than %d GET RESPONSE rounds", ErrMalformed, maxRounds)
		}
		switch r.SW.SW1() {
		case 0x6C: // wrong Le: repeat with the exact length (ISO/IEC 7816-3 §12.2.4)
			c := cmd
			c.Ne = int(r.SW.SW2())
			if c.Ne == 0 {
				c.Ne = MaxShortNe
			}
			if r, err = transmit(ctx, t, c, false); err != nil {
				return Response{}, err
			}
			continue
		case 0x61: // more data available
			out = append(out, r.Data...)
			if len(out) > maxResp {
				return Response{}, fmt.Errorf("%w: response longer than %d bytes", ErrMalformed, maxResp)
			}
			ne := int(r.SW.SW2())
			if ne == 0 {
				ne = MaxShortNe
			}
			gr := Command{CLA: cmd.CLA &^ claChaining, INS: insGetResponse, Ne: ne}
			if r, err = transmit(ctx, t, gr, false); err != nil {
				return Response{}, err
			}
			continue
		}
		if out == nil {
			return r, nil
		}
		out = append(out, r.Data...)
		if len(out) > maxResp {
			return Response{}, fmt.Errorf("%w: response longer than %d bytes", ErrMalformed, maxResp)
		}
		return Response{Data: out, SW: r.SW}, nil
	}
}

func transmit(ctx context.Context, t Transmitter, c Command, extended bool) (Response, error) {
	raw, err := c.Bytes(extended)
	if err != nil {
		return Response{}, err
	}
	if err := ctx.Err(); err != nil {
		return Response{}, err
	}
	resp, err := t.Transmit(ctx, raw)
	if err != nil {
		return Response{}, err
	}
	return ParseResponse(resp)
}

// Do is Exchange followed by Response.Err: the data on 9000, else an error.
func Do(ctx context.Context, t Transmitter, cmd Command, opt Options) ([]byte, error) {
	r, err := Exchange(ctx, t, cmd, opt)
	if err != nil {
		return nil, err
	}
	if err := r.Err(); err != nil {
		return nil, err
	}
	return r.Data, nil
}

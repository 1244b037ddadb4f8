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
	// MaxRounds bounds the GET RESPONSE and Le-retry rounds (default 1024: the largest
	// answer a card gives, 64 KiB, at 64 bytes a round).
	MaxRounds int
}

const (
	defaultMaxRounds = 1024
	insGetResponse   = 0xC0 // ISO/IEC 7816-4 §7.6.1 GET RESPONSE
	claChaining      = 0x10 // ISO/IEC 7816-4 §5.1.1.1, command chaining control (b5 of CLA)
	sw1MoreData      = 0x61 // ISO/IEC 7816-4 §5.1.3: SW2 bytes still available (GET RESPONSE)
	sw1WrongLe       = 0x6C // ISO/IEC 7816-4 §5.1.3: wrong Le, SW2 is the exact length
	maxLeRetries     = 2    // consecutive 6Cxx answers tolerated for one command
)

// Exchange sends cmd and returns the whole answer.
//
// Data longer than one short APDU is sent by command chaining (ISO/IEC 7816-4 §5.1.1.1: every
// block but the last has CLA b5 set) unless opt.Extended, in which case one extended APDU
// carries it. A chained block answered with anything but 9000 ends the exchange with that
// answer. 61xx is followed by GET RESPONSE until the card is done, and 6Cxx repeats the last
// command sent (the original or a GET RESPONSE) with the Le the card named (ISO/IEC 7816-3
// defines the same two procedures for T=0, where the reader driver may already have run them).
//
// A status word other than 9000 in the final response is returned in Response with a nil
// error; callers use Response.Err. The error is non-nil for transport errors, a malformed
// response (shorter than two bytes), a context that ended, or a card that breaks the bounds
// of opt (too many rounds, too much data, endless 6Cxx): a hostile card cannot make Exchange
// loop or allocate without bound.
func Exchange(ctx context.Context, t Transmitter, cmd Command, opt Options) (Response, error) {
	maxResp, maxRounds := opt.MaxResponse, opt.MaxRounds
	if maxResp <= 0 {
		maxResp = 1 << 20
	}
	if maxRounds <= 0 {
		maxRounds = defaultMaxRounds
	}
	if cmd.Ne < 0 || cmd.Ne > MaxExtendedNe {
		return Response{}, fmt.Errorf("apdu: command %02X: Ne %d out of range", cmd.INS, cmd.Ne)
	}
	if opt.Extended && len(cmd.Data) > MaxExtendedNc {
		return Response{}, fmt.Errorf("apdu: command %02X: Nc %d out of range", cmd.INS, len(cmd.Data))
	}
	if !opt.Extended && len(cmd.Data) > MaxShortNc {
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
	last, lastExt := cmd, opt.Extended
	r, err := transmit(ctx, t, last, lastExt)
	if err != nil {
		return Response{}, err
	}
	var out []byte
	more, leRetries := false, 0
	for rounds := 1; ; rounds++ {
		sw1 := r.SW.SW1()
		if sw1 != sw1MoreData && sw1 != sw1WrongLe {
			if !more {
				return r, nil
			}
			if len(out)+len(r.Data) > maxResp {
				return Response{}, fmt.Errorf("%w: response longer than %d bytes", ErrMalformed, maxResp)
			}
			return Response{Data: append(out, r.Data...), SW: r.SW}, nil
		}
		if rounds > maxRounds {
			return Response{}, fmt.Errorf("%w: more than %d GET RESPONSE/Le rounds", ErrMalformed, maxRounds)
		}
		ne := int(r.SW.SW2())
		if ne == 0 {
			ne = MaxShortNe
		}
		if sw1 == sw1WrongLe {
			// Repeat the command the card refused, original or GET RESPONSE, with its Le.
			leRetries++
			if leRetries > maxLeRetries {
				return Response{}, fmt.Errorf("%w: card answered %04X to %d Le corrections", ErrMalformed, uint16(r.SW), maxLeRetries)
			}
			last.Ne = ne
		} else {
			leRetries = 0
			if len(out)+len(r.Data) > maxResp {
				return Response{}, fmt.Errorf("%w: response longer than %d bytes", ErrMalformed, maxResp)
			}
			out = append(out, r.Data...)
			more = true
			last, lastExt = Command{CLA: cmd.CLA &^ claChaining, INS: insGetResponse, Ne: ne}, false
		}
		if r, err = transmit(ctx, t, last, lastExt); err != nil {
			return Response{}, err
		}
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

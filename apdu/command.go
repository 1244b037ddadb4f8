package apdu

import (
	"errors"
	"fmt"
)

// Limits of ISO/IEC 7816-4 §5.1: Nc and Ne for short and extended length fields.
const (
	MaxShortNc    = 255
	MaxShortNe    = 256
	MaxExtendedNc = 65535
	MaxExtendedNe = 65536
)

// Command is a command APDU (ISO/IEC 7816-4 §5.1). Ne is the maximum number of response
// bytes expected: 0 means no response data, MaxShortNe or MaxExtendedNe mean "as many as
// the card has" in the short and extended cases.
type Command struct {
	CLA, INS, P1, P2 byte
	Data             []byte
	Ne               int
}

// ErrMalformed reports a command or response that does not follow ISO/IEC 7816-4 encoding.
var ErrMalformed = errors.New("apdu: malformed")

// Bytes encodes the command. Short length fields are used when Data and Ne fit them and
// extended is false; otherwise extended fields (ISO/IEC 7816-4 §5.1, cases 2E–4E).
func (c Command) Bytes(extended bool) ([]byte, error) {
	nc, ne := len(c.Data), c.Ne
	if ne < 0 || ne > MaxExtendedNe || nc > MaxExtendedNc {
		return nil, fmt.Errorf("apdu: command %02X: Nc %d / Ne %d out of range", c.INS, nc, ne)
	}
	if !extended && (nc > MaxShortNc || ne > MaxShortNe) {
		extended = true
	}
	out := make([]byte, 0, 4+3+nc+3)
	out = append(out, c.CLA, c.INS, c.P1, c.P2)
	switch {
	case !extended:
		if nc > 0 {
			out = append(out, byte(nc))
			out = append(out, c.Data...)
		}
		if ne > 0 {
			out = append(out, byte(ne)) // 256 encodes as 00
		}
	default:
		if nc > 0 {
			out = append(out, 0, byte(nc>>8), byte(nc))
			out = append(out, c.Data...)
		}
		if ne > 0 {
			if nc == 0 {
				out = append(out, 0)
			}
			out = append(out, byte(ne>>8), byte(ne)) // 65536 encodes as 0000
		}
	}
	return out, nil
}

// ParseCommand decodes an encoded command APDU, as a card sees it.
func ParseCommand(b []byte) (Command, error) {
	if len(b) < 4 {
		return Command{}, fmt.Errorf("%w: command of %d bytes", ErrMalformed, len(b))
	}
	c := Command{CLA: b[0], INS: b[1], P1: b[2], P2: b[3]}
	body := b[4:]
	switch {
	case len(body) == 0: // case 1
		return c, nil
	case len(body) == 1: // case 2S
		c.Ne = int(body[0])
		if c.Ne == 0 {
			c.Ne = MaxShortNe
		}
		return c, nil
	case body[0] != 0: // case 3S or 4S
		nc := int(body[0])
		switch len(body) {
		case 1 + nc:
		case 2 + nc:
			c.Ne = int(body[1+nc])
			if c.Ne == 0 {
				c.Ne = MaxShortNe
			}
		default:
			return Command{}, fmt.Errorf("%w: short Lc %d with %d body bytes", ErrMalformed, nc, len(body))
		}
		c.Data = append([]byte(nil), body[1:1+nc]...)
		return c, nil
	case len(body) == 3: // case 2E
		c.Ne = int(body[1])<<8 | int(body[2])
		if c.Ne == 0 {
			c.Ne = MaxExtendedNe
		}
		return c, nil
	case len(body) < 3:
		return Command{}, fmt.Errorf("%w: extended length field of %d bytes", ErrMalformed, len(body))
	default: // case 3E or 4E
		nc := int(body[1])<<8 | int(body[2])
		if nc == 0 {
			return Command{}, fmt.Errorf("%w: extended Lc of zero", ErrMalformed)
		}
		switch len(body) {
		case 3 + nc:
		case 5 + nc:
			c.Ne = int(body[3+nc])<<8 | int(body[4+nc])
			if c.Ne == 0 {
				c.Ne = MaxExtendedNe
			}
		default:
			return Command{}, fmt.Errorf("%w: extended Lc %d with %d body bytes", ErrMalformed, nc, len(body))
		}
		c.Data = append([]byte(nil), body[3:3+nc]...)
		return c, nil
	}
}

// String shows the header and lengths, never the data (it may hold a PIN).
func (c Command) String() string {
	return fmt.Sprintf("%02X %02X %02X %02X Nc=%d Ne=%d", c.CLA, c.INS, c.P1, c.P2, len(c.Data), c.Ne)
}

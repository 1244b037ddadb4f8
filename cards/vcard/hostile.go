package vcard

import (
	"context"
	"math/rand/v2"
	"sync"
)

// Hostile says how a card wrapped by WithHostile lies: each response is mangled with
// probability Rate, in one of the ways broken and malicious cards answer (see the Mangle*
// names). The choices come from a PCG seeded with Seed, so a run can be repeated. Set
// changes the fields of a card in use.
//
// A mangled response is never empty: vpcd takes an empty answer for none and leaves
// pcscd waiting for good, where a real reader reports a mute card.
type Hostile struct {
	mu   sync.Mutex
	rng  *rand.Rand
	seed uint64
	// Rate is the probability, from 0 to 1, that a response is mangled.
	Rate float64
	// Seed seeds the choices; it takes effect on the first response after it changes.
	Seed uint64

	n      int
	counts map[string]int
	// sticky is the mangling in force for the commands that follow up on a mangled
	// response: GET RESPONSE after an endless 61xx, the retry after a wrong 6Cxx.
	sticky string
	le     byte
}

// The ways a response is mangled, as counted by Hostile.Counts.
const (
	MangleRandom    = "random bytes"          // 1 to 300 random bytes, now and then up to 64 KiB
	MangleTruncate  = "truncated"             // the response cut short, to one byte at least
	MangleFlip      = "flipped byte"          // one byte of the data or status word changed
	MangleBERLength = "huge BER length"       // the first length field in the data claims up to 4 GiB
	MangleMoreData  = "endless 61xx"          // 61xx, and 61xx again to every GET RESPONSE
	MangleWrongLe   = "wrong 6Cxx"            // 6Cxx, and 6Cxx with another length to the retry
	MangleSW        = "random status word"    // the data kept, another status word
	MangleReplay    = "replayed response"     // the previous response again
	MangleOK        = "9000 without the data" // success with no data at all
)

var mangles = []string{MangleRandom, MangleTruncate, MangleFlip, MangleBERLength, MangleMoreData,
	MangleWrongLe, MangleSW, MangleReplay, MangleOK}

// Set changes h under its lock.
func (h *Hostile) Set(fn func(h *Hostile)) {
	h.mu.Lock()
	defer h.mu.Unlock()
	fn(h)
}

// Responses is how many responses passed through the wrapper.
func (h *Hostile) Responses() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.n
}

// Counts is how many responses were mangled in each way (a copy).
func (h *Hostile) Counts() map[string]int {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make(map[string]int, len(h.counts))
	for k, v := range h.counts {
		out[k] = v
	}
	return out
}

// Mangled is how many responses were mangled in all.
func (h *Hostile) Mangled() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, v := range h.counts {
		n += v
	}
	return n
}

// WithHostile wraps c so that its responses lie as h says. The wrapper is safe for
// concurrent use when c is.
func WithHostile(c Card, h *Hostile) Card { return &hostileCard{Card: c, h: h} }

type hostileCard struct {
	Card
	h    *Hostile
	mu   sync.Mutex
	last []byte
}

func (c *hostileCard) Transmit(ctx context.Context, cmd []byte) ([]byte, error) {
	resp, err := c.Card.Transmit(ctx, cmd)
	if err != nil {
		return resp, err
	}
	c.mu.Lock()
	prev := c.last
	c.last = append([]byte(nil), resp...)
	c.mu.Unlock()
	return c.h.mangle(cmd, resp, prev), nil
}

func (h *Hostile) mangle(cmd, resp, prev []byte) []byte {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.rng == nil || h.seed != h.Seed {
		h.seed = h.Seed
		h.rng = rand.New(rand.NewPCG(h.Seed, 0x686f7374696c65))
	}
	h.n++
	if h.counts == nil {
		h.counts = map[string]int{}
	}
	r := h.rng
	// A follow-up to a sticky mangling keeps lying the same way, most of the time.
	switch {
	case h.sticky == MangleMoreData && len(cmd) >= 2 && cmd[1] == 0xC0 && r.IntN(64) != 0:
		h.counts[MangleMoreData]++
		return append(randBytes(r, r.IntN(256)), 0x61, byte(r.IntN(256)))
	case h.sticky == MangleWrongLe && r.IntN(8) != 0:
		h.counts[MangleWrongLe]++
		h.le++
		return []byte{0x6C, h.le}
	}
	h.sticky = ""
	if r.Float64() >= h.Rate {
		return resp
	}
	m := mangles[r.IntN(len(mangles))]
	h.counts[m]++
	data, sw := resp, []byte(nil)
	if len(resp) >= 2 {
		data, sw = resp[:len(resp)-2], resp[len(resp)-2:]
	}
	switch m {
	case MangleRandom:
		n := 1 + r.IntN(300)
		if r.IntN(16) == 0 {
			n = 1 + r.IntN(1<<16-1)
		}
		return randBytes(r, n)
	case MangleTruncate:
		if len(resp) < 2 {
			return append([]byte(nil), resp...)
		}
		return append([]byte(nil), resp[:1+r.IntN(len(resp)-1)]...)
	case MangleFlip:
		out := append([]byte(nil), resp...)
		if len(out) > 0 {
			out[r.IntN(len(out))] ^= byte(1 + r.IntN(255))
		}
		return out
	case MangleBERLength:
		return hugeLength(r, data, sw)
	case MangleMoreData:
		h.sticky = MangleMoreData
		return append(append([]byte(nil), data...), 0x61, byte(r.IntN(256)))
	case MangleWrongLe:
		h.sticky, h.le = MangleWrongLe, byte(r.IntN(256))
		return []byte{0x6C, h.le}
	case MangleSW:
		return append(append([]byte(nil), data...), byte(r.IntN(256)), byte(r.IntN(256)))
	case MangleReplay:
		if len(prev) == 0 {
			return []byte{0x90, 0x00}
		}
		return append([]byte(nil), prev...)
	default: // MangleOK
		return []byte{0x90, 0x00}
	}
}

// hugeLength rewrites the first BER length in data (after its tag) to claim
// far more than follows: a short form's maximum, or a long form of one to four bytes,
// possibly with a fifth that no decoder should accept.
func hugeLength(r *rand.Rand, data, sw []byte) []byte {
	if sw == nil {
		sw = []byte{0x90, 0x00}
	}
	tag := 1 // the tag's length (ISO/IEC 7816-4 §5.2.2.1: subsequent bytes while b8 is set)
	if len(data) > 0 && data[0]&0x1F == 0x1F {
		for tag < len(data) && tag < 4 && data[tag]&0x80 != 0 {
			tag++
		}
		tag++
	}
	if len(data) < tag+1 {
		data = append(append([]byte(nil), data...), make([]byte, tag+1-len(data))...)
	}
	lens := [][]byte{{0x7F}, {0x81, 0xFF}, {0x82, 0xFF, 0xFF}, {0x83, 0xFF, 0xFF, 0xFF},
		{0x84, 0xFF, 0xFF, 0xFF, 0xFF}, {0x85, 0x01, 0x00, 0x00, 0x00, 0x00}, {0x80}, {0xFF}}
	l := lens[r.IntN(len(lens))]
	// Skip the original length field.
	rest := data[tag+1:]
	if b := data[tag]; b > 0x80 && int(b&0x7F) <= len(rest) {
		rest = rest[b&0x7F:]
	}
	out := append(append(append([]byte(nil), data[:tag]...), l...), rest...)
	return append(out, sw...)
}

func randBytes(r *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

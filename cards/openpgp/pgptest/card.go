package pgptest

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sync"

	"github.com/p11-card/p11-card/apdu"
	"github.com/p11-card/p11-card/cards/vcard"
)

// Mode picks how closely the card follows the specification.
type Mode int

const (
	// ModeYubiKey behaves like a YubiKey 5 (firmware 5.4.3) OpenPGP 3.4 applet: an empty
	// VERIFY answers 6A80, a wrong PW 6982 (no counter), 6E carries a fourth (attestation) key (fingerprints of 80
	// bytes, dates of 16), 7F66 sits inside the discretionary data 73, the PW status
	// bytes of a factory card start with FF, extended APDUs are accepted.
	ModeYubiKey Mode = iota
	// ModeStrict follows the OpenPGP card specification 3.4: empty VERIFY reports the
	// counter (63Cx) or 9000, three keys, PW1 valid for one signature by default, and only
	// command chaining and short APDUs (responses over GET RESPONSE).
	ModeStrict
	// ModeV2 is a card of specification 2.1 (like a YubiKey NEO or an older Gnuk): RSA
	// only, one cardholder certificate (no SELECT DATA), no VERIFY with P1=FF, no key
	// information DO, no KDF-DO, maximum lengths in C0; otherwise as ModeStrict.
	ModeV2
)

func (m Mode) String() string {
	switch m {
	case ModeStrict:
		return "strict"
	case ModeV2:
		return "v2"
	}
	return "yubikey"
}

// Options configure a virtual card.
type Options struct {
	Mode Mode
	// Serial is the AID serial number (default 0x12345678).
	Serial uint32
	// StateFile, when set, keeps the persistent state (keys, PINs, counters, DOs) across
	// New calls: a card removed and inserted again is the same card.
	StateFile string
	// Firmware is the YubiKey firmware version GET VERSION (F1) reports (default 5.4.3).
	Firmware [3]byte
}

// Card is a virtual OpenPGP card. It implements vcard.Card and apdu.Transmitter and is safe
// for concurrent use (one command at a time).
type Card struct {
	mu  sync.Mutex
	opt Options
	st  *state
	vol volatile
	// saveErr is the last error writing the state file (tests may look).
	saveErr error
}

// volatile is what a reset clears.
type volatile struct {
	selected         bool
	v81, v82, v83    bool
	chainINS         byte
	chainP1, chainP2 byte
	chain            []byte
	chaining         bool
	pending          []byte // the rest of a long answer, for GET RESPONSE
	certOcc          int
}

var _ vcard.Card = (*Card)(nil)

// New makes a card, loading its state from opt.StateFile when that exists.
func New(opt Options) (*Card, error) {
	if opt.Serial == 0 {
		opt.Serial = 0x12345678
	}
	if opt.Firmware == [3]byte{} {
		opt.Firmware = [3]byte{5, 4, 3}
	}
	c := &Card{opt: opt}
	if opt.StateFile != "" {
		b, err := os.ReadFile(opt.StateFile)
		switch {
		case err == nil:
			var st state
			if err := json.Unmarshal(b, &st); err != nil {
				return nil, fmt.Errorf("pgptest: state file %s: %v", opt.StateFile, err)
			}
			c.st = &st
			return c, nil
		case !errors.Is(err, os.ErrNotExist):
			return nil, fmt.Errorf("pgptest: state file: %v", err)
		}
	}
	c.st = factoryState(opt.Mode)
	return c, c.save()
}

// MustNew is New for tests without a state file.
func MustNew(opt Options) *Card {
	c, err := New(opt)
	if err != nil {
		panic(err)
	}
	return c
}

// Mode reports the card's mode.
func (c *Card) Mode() Mode { return c.opt.Mode }

// ATR implements vcard.Card: a YubiKey 5 ATR in ModeYubiKey, an OpenPGP card ATR (with the
// same historical bytes as DO 5F52) in ModeStrict.
func (c *Card) ATR() []byte {
	if c.opt.Mode == ModeYubiKey {
		return []byte{0x3B, 0xFD, 0x13, 0x00, 0x00, 0x81, 0x31, 0xFE, 0x15, 0x80, 0x73, 0xC0, 0x21,
			0xC0, 0x57, 0x59, 0x75, 0x62, 0x69, 0x4B, 0x65, 0x79, 0x40}
	}
	h := c.historical()
	atr := []byte{0x3B, 0xD0 | byte(len(h)), 0x18, 0xFF, 0x81, 0xB1, 0xFE, 0x75, 0x1F, 0x03}
	atr = append(atr, h...)
	var tck byte
	for _, b := range atr[1:] {
		tck ^= b
	}
	return append(atr, tck)
}

func (c *Card) historical() []byte {
	if c.opt.Mode == ModeYubiKey {
		// Card capabilities E0: command chaining, extended Lc/Le, extended length info.
		return []byte{0x00, 0x73, 0x00, 0x00, 0xE0, 0x05, 0x90, 0x00}
	}
	// Card service data 31 C5; capabilities 80: command chaining only.
	return []byte{0x00, 0x31, 0xC5, 0x73, 0xC0, 0x01, 0x80, 0x05, 0x90, 0x00}
}

// Reset implements vcard.Card.
func (c *Card) Reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.vol = volatile{}
}

// Transmit implements vcard.Card.
func (c *Card) Transmit(ctx context.Context, raw []byte) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	r := c.handle(raw)
	if c.st.dirty {
		c.st.dirty = false
		c.saveErr = c.save()
	}
	return r.Bytes(), nil
}

// SaveError reports the last failure writing the state file.
func (c *Card) SaveError() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.saveErr
}

func (c *Card) save() error {
	if c.opt.StateFile == "" {
		return nil
	}
	b, err := json.Marshal(c.st)
	if err != nil {
		return err
	}
	tmp := c.opt.StateFile + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, c.opt.StateFile)
}

func sw(s apdu.SW) apdu.Response { return apdu.Response{SW: s} }

// maxResponse is the most a single answer carries (YubiKey's 7F66 value); longer answers
// go out over GET RESPONSE.
const maxExtended = 0x0BFE

func (c *Card) handle(raw []byte) apdu.Response {
	cmd, err := apdu.ParseCommand(raw)
	if err != nil {
		return sw(apdu.SWWrongLength)
	}
	extended := len(raw) >= 7 && raw[4] == 0
	if extended && !c.yk() {
		return sw(apdu.SWWrongLength)
	}
	if cmd.CLA&^0x10 != 0 {
		return sw(apdu.SWClaNotSupported)
	}
	// GET RESPONSE continues a long answer.
	if cmd.INS == 0xC0 {
		if c.vol.pending == nil {
			return sw(apdu.SWConditions)
		}
		p := c.vol.pending
		c.vol.pending = nil
		return c.out(p, cmd.Ne, false)
	}
	c.vol.pending = nil
	// Command chaining (ISO/IEC 7816-4 §5.1.1.1).
	if cmd.CLA&0x10 != 0 {
		if c.vol.chaining && (c.vol.chainINS != cmd.INS || c.vol.chainP1 != cmd.P1 || c.vol.chainP2 != cmd.P2) {
			c.vol.chaining, c.vol.chain = false, nil
			return sw(apdu.SWLastCmdChainExpect)
		}
		if len(c.vol.chain)+len(cmd.Data) > 8192 {
			c.vol.chaining, c.vol.chain = false, nil
			return sw(apdu.SWWrongLength)
		}
		c.vol.chaining = true
		c.vol.chainINS, c.vol.chainP1, c.vol.chainP2 = cmd.INS, cmd.P1, cmd.P2
		c.vol.chain = append(c.vol.chain, cmd.Data...)
		return sw(apdu.SWOK)
	}
	if c.vol.chaining {
		if c.vol.chainINS != cmd.INS || c.vol.chainP1 != cmd.P1 || c.vol.chainP2 != cmd.P2 {
			c.vol.chaining, c.vol.chain = false, nil
			return sw(apdu.SWLastCmdChainExpect)
		}
		cmd.Data = append(c.vol.chain, cmd.Data...)
		c.vol.chaining, c.vol.chain = false, nil
	}
	r := c.dispatch(cmd)
	if r.SW != apdu.SWOK || len(r.Data) == 0 {
		return r
	}
	return c.out(r.Data, cmd.Ne, extended)
}

// out sends what fits Ne and keeps the rest for GET RESPONSE (61xx).
func (c *Card) out(data []byte, ne int, extended bool) apdu.Response {
	limit := ne
	if limit == 0 {
		limit = apdu.MaxShortNe
	}
	if extended && limit > maxExtended {
		limit = maxExtended
	}
	if !extended && limit > apdu.MaxShortNe {
		limit = apdu.MaxShortNe
	}
	if len(data) <= limit {
		return apdu.Response{Data: data, SW: apdu.SWOK}
	}
	c.vol.pending = append([]byte(nil), data[limit:]...)
	rest := min(len(c.vol.pending), 256)
	return apdu.Response{Data: data[:limit], SW: apdu.SW(0x6100 | rest&0xFF)}
}

func (c *Card) dispatch(cmd apdu.Command) apdu.Response {
	if cmd.INS == 0xA4 {
		return c.cmdSelect(cmd)
	}
	if !c.vol.selected {
		return sw(apdu.SWInsNotSupported)
	}
	if c.st.Terminated {
		if cmd.INS == 0x44 {
			return c.cmdActivate()
		}
		return sw(0x6285)
	}
	switch cmd.INS {
	case 0xCA:
		return c.cmdGetData(cmd)
	case 0xCC:
		if c.v2() {
			return sw(apdu.SWInsNotSupported)
		}
		return c.cmdGetNextData(cmd)
	case 0xA5:
		if c.v2() {
			return sw(apdu.SWInsNotSupported)
		}
		return c.cmdSelectData(cmd)
	case 0xDA:
		return c.cmdPutData(cmd)
	case 0xDB:
		return c.cmdImport(cmd)
	case 0x20:
		return c.cmdVerify(cmd)
	case 0x24:
		return c.cmdChange(cmd)
	case 0x2C:
		return c.cmdResetRetry(cmd)
	case 0x47:
		return c.cmdGenerate(cmd)
	case 0x2A:
		return c.cmdPSO(cmd)
	case 0x88:
		return c.cmdInternalAuth(cmd)
	case 0x84:
		return c.cmdChallenge(cmd)
	case 0xE6:
		return c.cmdTerminate()
	case 0x44:
		return sw(apdu.SWOK) // ACTIVATE on an active application does nothing
	case 0xF1:
		if c.opt.Mode == ModeYubiKey {
			return apdu.Response{Data: c.opt.Firmware[:], SW: apdu.SWOK}
		}
	}
	return sw(apdu.SWInsNotSupported)
}

func (c *Card) cmdSelect(cmd apdu.Command) apdu.Response {
	aid := []byte{0xD2, 0x76, 0x00, 0x01, 0x24, 0x01}
	if cmd.P1 != 0x04 || len(cmd.Data) < len(aid) || string(cmd.Data[:len(aid)]) != string(aid) {
		c.vol.selected = false
		return sw(apdu.SWFileNotFound)
	}
	if !c.vol.selected {
		c.vol = volatile{}
	}
	c.vol.selected = true
	if c.st.Terminated {
		return sw(0x6285)
	}
	return sw(apdu.SWOK)
}

func (c *Card) cmdChallenge(cmd apdu.Command) apdu.Response {
	if cmd.Ne == 0 || cmd.Ne > maxExtended {
		return sw(apdu.SWWrongLength)
	}
	b := make([]byte, cmd.Ne)
	rand.Read(b)
	return apdu.Response{Data: b, SW: apdu.SWOK}
}

func (c *Card) cmdTerminate() apdu.Response {
	if !c.vol.v83 && c.st.PW3Tries > 0 {
		return sw(apdu.SWSecurityStatus)
	}
	c.st.Terminated = true
	c.st.dirty = true
	c.vol.v81, c.vol.v82, c.vol.v83 = false, false, false
	return sw(apdu.SWOK)
}

func (c *Card) cmdActivate() apdu.Response {
	*c.st = *factoryState(c.opt.Mode)
	c.st.dirty = true
	c.vol = volatile{selected: true}
	return sw(apdu.SWOK)
}

// SetState changes the persistent state directly (test setup without APDUs).
func (c *Card) SetState(f func(s *State)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	f(&c.st.State)
	c.st.dirty = true
	c.saveErr = c.save()
}

// Snapshot returns a copy of the persistent state.
func (c *Card) Snapshot() State {
	c.mu.Lock()
	defer c.mu.Unlock()
	b, _ := json.Marshal(c.st.State)
	var s State
	_ = json.Unmarshal(b, &s)
	return s
}

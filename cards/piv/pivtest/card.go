package pivtest

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/subtle"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/p11-card/p11-card/apdu"
	"github.com/p11-card/p11-card/cards/vcard"
)

// ATR of a YubiKey 5 (NFC and USB): T=1, historical bytes "YubiKey".
var yubiKeyATR = []byte{
	0x3B, 0xFD, 0x13, 0x00, 0x00, 0x81, 0x31, 0xFE, 0x15, 0x80, 0x73, 0xC0, 0x21, 0xC0,
	0x57, 0x59, 0x75, 0x62, 0x69, 0x4B, 0x65, 0x79, 0x40,
}

// ATR of a YubiKey 4 (historical bytes "Yubikey4"), given for firmware before 5.
var yubiKey4ATR = []byte{
	0x3B, 0xF8, 0x13, 0x00, 0x00, 0x81, 0x31, 0xFE, 0x15, 0x59, 0x75, 0x62, 0x69, 0x6B,
	0x65, 0x79, 0x34, 0xD4,
}

// pivAID is the full PIV application identifier (SP 800-73-4 part 1 §2.2): RID A000000308,
// PIX 00001000 0100 (application 0001 0000, version 0100).
var pivAID = []byte{0xA0, 0x00, 0x00, 0x03, 0x08, 0x00, 0x00, 0x10, 0x00, 0x01, 0x00}

// Defaults of a YubiKey out of the box.
var (
	DefaultPIN     = []byte("123456")
	DefaultPUK     = []byte("12345678")
	DefaultMgmtKey = []byte{1, 2, 3, 4, 5, 6, 7, 8, 1, 2, 3, 4, 5, 6, 7, 8, 1, 2, 3, 4, 5, 6, 7, 8}
)

// Instructions (SP 800-73-4 part 2 §3; Yubico extensions).
const (
	insSelect        = 0xA4
	insGetResponse   = 0xC0
	insGetData       = 0xCB
	insPutData       = 0xDB
	insVerify        = 0x20
	insChangeRef     = 0x24
	insResetRetry    = 0x2C
	insGeneralAuth   = 0x87
	insGenerate      = 0x47
	insMoveKey       = 0xF6 // Yubico 5.7
	insGetMetadata   = 0xF7 // Yubico 5.3
	insGetSerial     = 0xF8 // Yubico 5.0
	insAttest        = 0xF9 // Yubico 4.3
	insSetPINRetries = 0xFA
	insReset         = 0xFB
	insGetVersion    = 0xFD
	insImportKey     = 0xFE
	insSetMgmtKey    = 0xFF

	claChain = 0x10 // ISO/IEC 7816-4 §5.4.1 command chaining

	maxChain = 8192 // bytes a chain may accumulate
)

// Options configure a Card. The zero value is a YubiKey 5.7.1 with serial 12345678 and
// factory defaults, kept in memory only.
type Options struct {
	// Firmware version, default 5.7.1. Before 5.7 the default management key is 3DES,
	// and RSA 3072/4096, Ed25519, X25519 and MOVE KEY are unknown.
	Firmware [3]byte
	// Serial reported by GET SERIAL and in attestations; default 12345678.
	Serial uint32
	// StatePath, when set, names a JSON file holding the persistent state: read at New
	// when it exists, rewritten after every change.
	StatePath string
	// PIN, PUK and MgmtKey are the values a fresh card starts with instead of the factory
	// defaults (123456, 12345678, 010203…0708): a card whose owner changed them. MgmtAlg
	// is the management key's algorithm (default AES-192 from firmware 5.7, 3DES before;
	// AlgTDES models a 5.7 key set to 3DES, which tools predating AES keys need). GET
	// METADATA's "default" flag, SET PIN RETRIES and RESET use the factory values.
	PIN, PUK []byte
	MgmtKey  []byte
	MgmtAlg  byte
	// PINRetries and PUKRetries are the retry limits, default 3.
	PINRetries, PUKRetries int
	// OpDelay is slept before every private key operation and key generation (to model
	// a slow token); the wait ends early when the command's context does.
	OpDelay time.Duration
	// ATR replaces the answer to reset (default: a YubiKey 5's, a YubiKey 4's for
	// firmware before 5).
	ATR []byte
	// NoTouch models a user who never touches the key: operations with a key whose touch
	// policy is always or cached fail with 6982, as a YubiKey answers when its touch
	// times out. Without it touch is taken as given at once.
	NoTouch bool
}

// Card is a virtual YubiKey PIV applet.
type Card struct {
	mu      sync.Mutex
	opt     Options
	version [3]byte
	serial  uint32
	st      persistent

	// volatile state, dropped by Reset
	app         byte // the selected application: appNone, appPIV, appManagement
	pinOK       bool // PIN verified (security status)
	pinFresh    bool // PIN verified and not yet used by a PIN-always key
	mgmtOK      bool // management key authenticated
	mgmtPending []byte
	mgmtMode    byte // 0x80 witness given out, 0x81 challenge given out
	chain       []byte
	chainHdr    [4]byte
	chaining    bool
	pending     []byte // response bytes still to fetch with GET RESPONSE
	saveErr     error
}

var (
	_ vcard.Card       = (*Card)(nil)
	_ apdu.Transmitter = (*Card)(nil)
)

// New makes a card. With Options.StatePath naming an existing file, the card's
// persistent state comes from it; otherwise the card is fresh and the file is written.
// New returns an error only for a state file it cannot read or write.
func New(opt Options) (*Card, error) {
	c := &Card{opt: opt, version: opt.Firmware, serial: opt.Serial}
	if c.version == [3]byte{} {
		c.version = [3]byte{5, 7, 1}
	}
	if c.serial == 0 {
		c.serial = 12345678
	}
	if opt.StatePath != "" {
		ok, err := c.load()
		if err != nil {
			return nil, err
		}
		if ok {
			return c, nil
		}
	}
	if err := c.factory(true); err != nil {
		return nil, err
	}
	if err := c.save(); err != nil {
		return nil, err
	}
	return c, nil
}

// MustNew is New for tests: it panics when New fails (bad options or state file).
func MustNew(opt Options) *Card {
	c, err := New(opt)
	if err != nil {
		panic(err)
	}
	return c
}

// factory sets the persistent state to what a new card holds: with initial, the values
// Options ask for; otherwise (RESET) Yubico's factory defaults. The attestation key stays.
func (c *Card) factory(initial bool) error {
	pin, puk, pr, ur, key, alg := DefaultPIN, DefaultPUK, 3, 3, DefaultMgmtKey, c.defaultMgmtAlg()
	if initial {
		if c.opt.PIN != nil {
			pin = c.opt.PIN
		}
		if c.opt.PUK != nil {
			puk = c.opt.PUK
		}
		if c.opt.PINRetries > 0 {
			pr = c.opt.PINRetries
		}
		if c.opt.PUKRetries > 0 {
			ur = c.opt.PUKRetries
		}
		if c.opt.MgmtKey != nil {
			key = c.opt.MgmtKey
		}
		if c.opt.MgmtAlg != 0 {
			alg = c.opt.MgmtAlg
		}
	}
	if mgmtKeyLen(alg) != len(key) {
		return fmt.Errorf("pivtest: management key of %d bytes for algorithm %02X", len(key), alg)
	}
	if !validPIN(padPIN(pin)) || !validPIN(padPIN(puk)) || len(pin) > 8 || len(puk) > 8 {
		return errors.New("pivtest: PIN and PUK must be 6 to 8 bytes, without FF")
	}
	if pr > 255 || ur > 255 {
		return errors.New("pivtest: retry limits are 1 to 255")
	}
	old := c.st
	c.st = persistent{
		PIN: padPIN(pin), PUK: padPIN(puk), PINRetries: pr, PINMax: pr, PUKRetries: ur, PUKMax: ur,
		MgmtAlg: alg, MgmtKey: append([]byte(nil), key...), MgmtTouch: TouchPolicyNever,
		Keys: map[byte]*slotKey{}, Objects: map[uint32][]byte{},
	}
	if k, ok := old.Keys[SlotAttestation]; ok {
		c.st.Keys[SlotAttestation] = k
		c.st.Objects[objAttestation] = old.Objects[objAttestation]
		return nil
	}
	return c.makeAttestation()
}

// defaultMgmtAlg is the factory management key algorithm: AES-192 from 5.7, else 3DES.
func (c *Card) defaultMgmtAlg() byte {
	if c.atLeast(5, 7, 0) {
		return AlgAES192
	}
	return AlgTDES
}

func padPIN(p []byte) []byte {
	out := bytes.Repeat([]byte{0xFF}, 8)
	copy(out, p)
	return out
}

func (c *Card) atLeast(major, minor, patch byte) bool {
	v := c.version
	if v[0] != major {
		return v[0] > major
	}
	if v[1] != minor {
		return v[1] > minor
	}
	return v[2] >= patch
}

// ATR implements vcard.Card.
func (c *Card) ATR() []byte {
	switch {
	case c.opt.ATR != nil:
		return append([]byte(nil), c.opt.ATR...)
	case c.version[0] < 5:
		return append([]byte(nil), yubiKey4ATR...)
	}
	return append([]byte(nil), yubiKeyATR...)
}

// Reset implements vcard.Card: a power cycle drops selection, PIN and management key
// authentication, and any half-done chain or response.
func (c *Card) Reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.resetVolatile()
	c.app = appNone
}

func (c *Card) resetVolatile() {
	c.pinOK, c.pinFresh, c.mgmtOK = false, false, false
	c.mgmtPending, c.mgmtMode = nil, 0
	c.chain, c.chaining = nil, false
	c.pending = nil
}

// SaveError reports the last failure to write the state file (nil when all saves worked).
func (c *Card) SaveError() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.saveErr
}

// status is a response status word.
type status = apdu.SW

// Status words a YubiKey gives.
const (
	swOK          status = 0x9000
	swWrongLength status = 0x6700
	swSecurity    status = 0x6982
	swBlocked     status = 0x6983
	swConditions  status = 0x6985
	swWrongData   status = 0x6A80
	swNotFound    status = 0x6A82
	swNoMemory    status = 0x6A84
	swBadP1P2     status = 0x6A86
	swRefNotFound status = 0x6A88
	swINS         status = 0x6D00
	swCLA         status = 0x6E00
	swNoPrecise   status = 0x6F00
)

// Transmit implements apdu.Transmitter and vcard.Card.
func (c *Card) Transmit(ctx context.Context, raw []byte) ([]byte, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	cmd, err := apdu.ParseCommand(raw)
	if err != nil {
		c.pending = nil
		return swBytes(swWrongLength), nil
	}
	extended := len(raw) > 5 && raw[4] == 0
	if cmd.CLA&^claChain != 0 {
		c.pending = nil
		return swBytes(swCLA), nil
	}
	if cmd.INS == insGetResponse {
		return c.getResponse(cmd), nil
	}
	c.pending = nil

	// Command chaining: collect blocks with CLA b5 set; the last block runs the command.
	hdr := [4]byte{cmd.CLA &^ claChain, cmd.INS, cmd.P1, cmd.P2}
	if c.chaining && hdr != c.chainHdr {
		c.chain, c.chaining = nil, false
	}
	if cmd.CLA&claChain != 0 {
		if len(c.chain)+len(cmd.Data) > maxChain {
			c.chain, c.chaining = nil, false
			return swBytes(swWrongLength), nil
		}
		c.chain = append(c.chain, cmd.Data...)
		c.chainHdr, c.chaining = hdr, true
		return swBytes(swOK), nil
	}
	if c.chaining {
		if len(c.chain)+len(cmd.Data) > maxChain {
			c.chain, c.chaining = nil, false
			return swBytes(swWrongLength), nil
		}
		cmd.Data = append(c.chain, cmd.Data...)
		c.chain, c.chaining = nil, false
	}

	data, sw := c.dispatch(ctx, cmd)
	if sw != swOK {
		data = nil
	}
	return c.respond(data, sw, cmd.Ne, extended), nil
}

// respond sends what fits Ne and keeps the rest for GET RESPONSE (61xx).
func (c *Card) respond(data []byte, sw status, ne int, extended bool) []byte {
	limit := ne
	switch {
	case extended && limit == 0:
		limit = apdu.MaxExtendedNe
	case limit == 0 || (!extended && limit > apdu.MaxShortNe):
		limit = apdu.MaxShortNe
	}
	if len(data) <= limit {
		return apdu.Response{Data: data, SW: sw}.Bytes()
	}
	c.pending = append([]byte(nil), data[limit:]...)
	return apdu.Response{Data: data[:limit], SW: moreData(len(c.pending))}.Bytes()
}

func moreData(n int) status {
	if n > 0xFF {
		n = 0 // 6100: 256 or more
	}
	return status(0x6100 | n)
}

func (c *Card) getResponse(cmd apdu.Command) []byte {
	if cmd.P1 != 0 || cmd.P2 != 0 {
		c.pending = nil
		return swBytes(swBadP1P2)
	}
	if c.pending == nil {
		return swBytes(swConditions)
	}
	n := cmd.Ne
	if n == 0 {
		n = apdu.MaxShortNe
	}
	if n >= len(c.pending) {
		out := apdu.Response{Data: c.pending, SW: swOK}.Bytes()
		c.pending = nil
		return out
	}
	out := apdu.Response{Data: c.pending[:n], SW: moreData(len(c.pending) - n)}.Bytes()
	c.pending = c.pending[n:]
	return out
}

func swBytes(sw status) []byte { return []byte{byte(sw >> 8), byte(sw)} }

// dispatch runs one complete command.
func (c *Card) dispatch(ctx context.Context, cmd apdu.Command) ([]byte, status) {
	if cmd.INS == insSelect {
		return c.doSelect(cmd)
	}
	switch c.app {
	case appManagement:
		return c.managementCommand(cmd)
	case appOTP:
		return c.otpCommand(cmd)
	case appPIV:
	default:
		return nil, swINS
	}
	switch cmd.INS {
	case insGetData:
		return c.doGetData(cmd)
	case insPutData:
		return c.doPutData(cmd)
	case insVerify:
		return c.doVerify(cmd)
	case insChangeRef:
		return c.doChangeRef(cmd)
	case insResetRetry:
		return c.doResetRetry(cmd)
	case insGeneralAuth:
		return c.doGeneralAuth(ctx, cmd)
	case insGenerate:
		return c.doGenerate(ctx, cmd)
	case insGetVersion:
		return c.version[:], swOK
	case insGetSerial:
		if !c.atLeast(5, 0, 0) {
			return nil, swINS
		}
		return []byte{byte(c.serial >> 24), byte(c.serial >> 16), byte(c.serial >> 8), byte(c.serial)}, swOK
	case insGetMetadata:
		if !c.atLeast(5, 3, 0) {
			return nil, swINS
		}
		return c.doMetadata(cmd)
	case insSetMgmtKey:
		return c.doSetMgmtKey(cmd)
	case insImportKey:
		return c.doImport(cmd)
	case insAttest:
		if !c.atLeast(4, 3, 0) {
			return nil, swINS
		}
		return c.doAttest(cmd)
	case insSetPINRetries:
		return c.doSetRetries(cmd)
	case insReset:
		return c.doReset(cmd)
	case insMoveKey:
		if !c.atLeast(5, 7, 0) {
			return nil, swINS
		}
		return c.doMoveKey(cmd)
	}
	return nil, swINS
}

// doSelect answers SELECT by AID (SP 800-73-4 part 2 §3.1.1). The PIV AID may be given in
// full or truncated (at least the RID). The answer is the application property template
// a YubiKey sends: 61 { 4F PIX-with-version, 79 { 4F RID } }. The YubiKey management
// application is modelled too (see managementCommand); other AIDs are 6A82 and leave the
// selection alone. Selection by file identifier (P1 ≠ 04) is not supported: 6D00, which
// is what GnuPG's scdaemon expects of a YubiKey when it probes SELECT MF.
func (c *Card) doSelect(cmd apdu.Command) ([]byte, status) {
	if cmd.P1 != 0x04 {
		return nil, swINS
	}
	aid := cmd.Data
	if bytes.Equal(aid, managementAID) {
		c.leavePIV()
		c.app = appManagement
		return c.managementSelect(), swOK
	}
	if isOTPAID(aid) {
		c.leavePIV()
		c.app = appOTP
		return c.otpStatus(), swOK
	}
	if len(aid) < 5 || len(aid) > len(pivAID) || !bytes.Equal(aid, pivAID[:len(aid)]) {
		return nil, swNotFound
	}
	c.app = appPIV
	c.mgmtPending, c.mgmtMode = nil, 0
	inner := apdu.TLVBytes(0x4F, pivAID[5:])
	inner = apdu.AppendTLV(inner, 0x79, apdu.TLVBytes(0x4F, pivAID[:5]))
	return apdu.TLVBytes(0x61, inner), swOK
}

// persist saves the state after a change and remembers a failure for SaveError.
func (c *Card) persist() {
	if err := c.save(); err != nil {
		c.saveErr = err
	}
}

// wait sleeps the configured per-operation delay.
func (c *Card) wait(ctx context.Context) {
	if c.opt.OpDelay <= 0 {
		return
	}
	t := time.NewTimer(c.opt.OpDelay)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic("pivtest: crypto/rand failed: " + err.Error()) // impossible on supported systems
	}
	return b
}

func equalCT(a, b []byte) bool { return len(a) == len(b) && subtle.ConstantTimeCompare(a, b) == 1 }

// parseTLVMap decodes a flat list of data objects; duplicates keep the first.
func parseTLVMap(b []byte) (map[apdu.Tag][]byte, bool) {
	all, err := apdu.ParseAll(b)
	if err != nil {
		return nil, false
	}
	m := make(map[apdu.Tag][]byte, len(all))
	for _, t := range all {
		if _, dup := m[t.Tag]; !dup {
			m[t.Tag] = t.Value
		}
	}
	return m, true
}

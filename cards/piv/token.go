package piv

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"errors"
	"fmt"
	"io"

	"github.com/p11-card/p11-card/apdu"
	"github.com/p11-card/p11-card/cards"
	"github.com/p11-card/p11-card/internal/cert"
	"github.com/p11-card/p11-card/internal/trace"
)

// Token is a bound PIV card. Not safe for concurrent use (see cards.Token).
type Token struct {
	conn    cards.Conn
	atr     []byte
	opt     apdu.Options
	info    cards.TokenInfo
	yubico  bool
	fw      cards.Version
	hasMeta bool // GET METADATA (YubiKey 5.3)
	serial  uint32
	disc    *discovery
	// noPINQuery: the card answered an empty VERIFY as a command it does not take, so the
	// PIN's state is unknown and not asked again.
	noPINQuery bool

	// What this token did to the card's security state since the last reset. pinSent:
	// a PIN change or unblock was sent, after which a card may count the PIN as verified.
	userIn, soIn, pinSent bool
	// reselect: a transport error left the card's state unknown; the next operation
	// selects the application first.
	reselect bool
	// first: the next command is the first of this transaction.
	first bool
	// lazy: an operation under beginLazy has not needed the card yet; the first command
	// begins the transaction (lazyUnlock ends it).
	lazy       bool
	lazyUnlock func()

	// Caches, per insertion.
	slots     map[Slot]*slotCache
	data      map[uint32]*dataCache
	mgmtAlg   byte // 0 until known
	mgmtMeta  *metadata
	admin     *adminData
	adminRead bool
	pinMax    int

	// journal tells of changes other processes made to the card's objects (nil: off).
	journal *cards.Journal

	// opened is the PIN state Open read, until OpenedPINs hands it out.
	opened *openedPIN

	// rand replaces crypto/rand for the host challenge (deterministic transcripts).
	rand io.Reader
}

// slotCache is what was read about one key slot.
type slotCache struct {
	metaRead bool
	meta     *metadata // nil: no key (6A88) or not read
	certRead bool
	cert     []byte // DER; nil when the object is absent or empty
	attRead  bool
	att      []byte // attestation certificate; nil when the card gives none
	pubRead  bool
	pub      *keyState
}

// keyState is what the driver knows of a slot's key.
type keyState struct {
	alg         byte
	pub         publicKey // Key nil when unknown
	pinPolicy   string
	touchPolicy string
	origin      byte // 0 unknown, 1 generated, 2 imported
}

type dataCache struct {
	read  bool
	value []byte // nil: absent
}

var _ cards.Token = (*Token)(nil)

// Info describes the token; no I/O.
func (t *Token) Info() cards.TokenInfo { return t.info }

func (t *Token) fwAtLeast(maj, min, patch int) bool {
	v := t.fw
	if v.Major != maj {
		return v.Major > maj
	}
	if v.Minor != min {
		return v.Minor > min
	}
	return v.Patch >= patch
}

// begin starts one operation: Lock, and after a reset (or a transport failure) SELECT
// with every login forgotten.
func (t *Token) begin(ctx context.Context) (func(), error) {
	unlock, reset, err := t.conn.Lock(ctx)
	if err != nil {
		return nil, fmt.Errorf("piv: %w", err)
	}
	// Inside the transaction: no other application can change the card until we are done.
	t.syncJournal()
	t.first = true
	if reset || t.reselect {
		trace.Printf("piv", "card reset (or in doubt): selecting PIV again, logins forgotten")
		t.userIn, t.soIn, t.pinSent = false, false, false
		if err := t.selectApp(ctx); err != nil {
			unlock()
			return nil, err
		}
	}
	return unlock, nil
}

// beginLazy is begin for an operation the caches may answer whole (an object listing
// after the first): the transaction starts with the first command sent, so an answer from
// memory costs no PC/SC call at all. The returned func ends the operation.
func (t *Token) beginLazy() func() {
	t.syncJournal()
	t.lazy = true
	return func() {
		t.lazy = false
		if u := t.lazyUnlock; u != nil {
			t.lazyUnlock = nil
			u()
		}
	}
}

func (t *Token) selectApp(ctx context.Context) error {
	t.reselect, t.first = true, false
	if _, err := cards.SelectAID(ctx, t.conn, aidPIV, short); err != nil {
		return fmt.Errorf("piv: select: %w", err)
	}
	t.reselect = false
	return nil
}

// tx is the token's apdu.Transmitter. A transport error marks the card for re-selection.
// Only the first command of a transaction can meet another application (another process
// may select one between our transactions without resetting the card); when its answer
// says so, PIV is selected again (logins are gone then) and the command sent once more.
type tx struct{ t *Token }

func (x tx) Transmit(ctx context.Context, cmd []byte) ([]byte, error) {
	t := x.t
	if t.lazy {
		t.lazy = false
		unlock, err := t.begin(ctx)
		if err != nil {
			return nil, err
		}
		t.lazyUnlock = unlock
	}
	first := t.first
	t.first = false
	resp, err := t.conn.Transmit(ctx, cmd)
	if err != nil {
		t.reselect = true
		return nil, err
	}
	if !first || !otherApplet(cmd, resp) {
		return resp, nil
	}
	trace.Printf("piv", "another application was selected: selecting PIV again, logins forgotten")
	t.userIn, t.soIn, t.pinSent = false, false, false
	if err := t.selectApp(ctx); err != nil {
		return nil, err
	}
	resp, err = t.conn.Transmit(ctx, cmd)
	if err != nil {
		t.reselect = true
	}
	return resp, err
}

// otherApplet tells the answers a PIV command gets from another application: unknown
// instruction or class for any command; for GET DATA and the PIN commands also the
// "not found" and "wrong parameters" words a PIV application never gives them for the
// references we use (an absent object read first costs one SELECT more).
func otherApplet(cmd, resp []byte) bool {
	if len(cmd) < 4 || len(resp) < 2 {
		return false
	}
	sw := apdu.SW(resp[len(resp)-2])<<8 | apdu.SW(resp[len(resp)-1])
	switch sw {
	case apdu.SWInsNotSupported, apdu.SWClaNotSupported:
		return true
	case apdu.SWFileNotFound, apdu.SWRefDataNotFound, apdu.SWIncorrectP1P2, apdu.SWWrongP1P2:
		switch cmd[1] {
		case insGetData, 0x20, 0x24, 0x2C:
			return true
		}
	}
	return false
}

// exchange sends one command through tx. Cancelled halfway (a command chain or GET
// RESPONSE cut short), the card's state is in doubt: the next operation selects again.
func (t *Token) exchange(ctx context.Context, cmd apdu.Command) (apdu.Response, error) {
	r, err := apdu.Exchange(ctx, tx{t}, cmd, t.optFor(cmd))
	if err != nil && ctx.Err() != nil {
		t.reselect = true
	}
	return r, err
}

// do is exchange plus the status word as an error (6982 wraps cards.ErrLoginRequired).
func (t *Token) do(ctx context.Context, cmd apdu.Command) ([]byte, error) {
	r, err := t.exchange(ctx, cmd)
	if err != nil {
		return nil, err
	}
	if err := r.Err(); err != nil {
		return nil, cards.StatusError(err)
	}
	return r.Data, nil
}

// short is for commands that fit short APDUs (PIN commands, SELECT): the encoding every
// card and reader takes.
var short = apdu.Options{}

// optFor encodes a command short when it fits, extended (where the card takes it) when not.
func (t *Token) optFor(cmd apdu.Command) apdu.Options {
	if len(cmd.Data) <= apdu.MaxShortNc && cmd.Ne <= apdu.MaxShortNe {
		return short
	}
	return t.opt
}

func (t *Token) maxNe() int {
	if t.opt.Extended {
		return apdu.MaxExtendedNe
	}
	return apdu.MaxShortNe
}

// readData is GET DATA for one object (SP 800-73-4 part 2 §3.1.2): the value of template
// 53 (of 7E for the discovery object). Absent objects give cards.ErrObjectNotFound.
func (t *Token) readData(ctx context.Context, tag uint32) ([]byte, error) {
	id := apdu.AppendTag(nil, apdu.Tag(tag))
	b, err := t.do(ctx, apdu.Command{INS: insGetData, P1: 0x3F, P2: 0xFF, Data: apdu.TLVBytes(0x5C, id), Ne: t.maxNe()})
	if err != nil {
		if errors.Is(err, apdu.ErrNotFound) {
			return nil, fmt.Errorf("piv: object %X: %w", tag, cards.ErrObjectNotFound)
		}
		return nil, fmt.Errorf("piv: read object %X: %w", tag, err)
	}
	if tag == tagDiscovery {
		return b, nil
	}
	return unwrapObject(b, 0x53)
}

// writeData is PUT DATA (part 2 §3.3.1) of value under tag; admin rights are the caller's.
func (t *Token) writeData(ctx context.Context, tag uint32, value []byte) error {
	body := apdu.TLVBytes(0x5C, apdu.AppendTag(nil, apdu.Tag(tag)))
	body = apdu.AppendTLV(body, 0x53, value)
	if _, err := t.do(ctx, apdu.Command{INS: insPutData, P1: 0x3F, P2: 0xFF, Data: body}); err != nil {
		return t.adminErr(fmt.Errorf("piv: write object %X: %w", tag, err))
	}
	t.noteWrite()
	return nil
}

func (t *Token) slot(s Slot) *slotCache {
	c := t.slots[s]
	if c == nil {
		c = &slotCache{}
		t.slots[s] = c
	}
	return c
}

// forget drops what is known of a slot after its key or certificate changed.
func (t *Token) forget(s Slot) { delete(t.slots, s) }

// keyReplaced drops what is known of a slot's key and its attestation after the key was
// generated, imported or deleted, and keeps its certificate, which the card leaves as it
// was (a YubiKey keeps an old certificate beside a new key): reading it again would cost
// an APDU.
func (t *Token) keyReplaced(s Slot) *slotCache {
	old := t.slots[s]
	t.forget(s)
	c := t.slot(s)
	if old != nil {
		c.cert, c.certRead = old.cert, old.certRead
	}
	return c
}

// syncJournal drops what is known of the card's objects when another application changed
// them since we last looked (cards.Journal).
func (t *Token) syncJournal() {
	if t.journal.Changed() {
		trace.Printf("piv", "another application changed the card: reading its objects again")
		t.dropObjects()
	}
}

// noteWrite tells other applications that this one changed the card's objects; when one
// of them did so first, what this token knows is dropped as well.
func (t *Token) noteWrite() {
	if t.journal.Note() {
		t.dropObjects()
	}
}

func (t *Token) dropObjects() {
	t.slots = map[Slot]*slotCache{}
	t.data = map[uint32]*dataCache{}
	t.admin, t.adminRead = nil, false
}

// metaMissing reports whether err is a card's answer that it has no GET METADATA after
// all, though its version promised it; the token does without from then on.
func (t *Token) metaMissing(err error) bool {
	if !isUnsupported(err) {
		return false
	}
	t.hasMeta = false
	return true
}

// loadMeta reads GET METADATA for a slot once (YubiKey 5.3+).
func (t *Token) loadMeta(ctx context.Context, s Slot) (*metadata, error) {
	c := t.slot(s)
	if c.metaRead || !t.hasMeta {
		return c.meta, nil
	}
	b, err := t.do(ctx, apdu.Command{INS: insGetMetadata, P2: byte(s), Ne: t.maxNe()})
	switch {
	case err == nil:
		m, err := parseMetadata(b)
		if err != nil {
			return nil, err
		}
		c.meta = &m
	case errors.Is(err, apdu.ErrNotFound):
	case t.metaMissing(err):
		// Fall back to certificates.
		return nil, nil
	default:
		return nil, fmt.Errorf("piv: metadata of slot %s: %w", s, err)
	}
	c.metaRead = true
	return c.meta, nil
}

// loadCert reads a slot's certificate object once.
func (t *Token) loadCert(ctx context.Context, si *slotInfo) ([]byte, error) {
	c := t.slot(si.slot)
	if c.certRead {
		return c.cert, nil
	}
	b, err := t.readData(ctx, si.certTag)
	switch {
	case err == nil:
		cc, err := parseCertContainer(b)
		if err != nil {
			return nil, err
		}
		c.cert = cc.DER
	case errors.Is(err, cards.ErrObjectNotFound):
	case errors.Is(err, cards.ErrLoginRequired):
		// A card that protects certificates behind the PIN: treat as absent for now.
		return nil, nil
	default:
		return nil, err
	}
	c.certRead = true
	return c.cert, nil
}

// loadKey works out the slot's key: from metadata where the card has it, else from the
// certificate. nil when the slot holds no key (as far as the card tells).
func (t *Token) loadKey(ctx context.Context, si *slotInfo) (*keyState, error) {
	c := t.slot(si.slot)
	if c.pubRead {
		return c.pub, nil
	}
	var ks *keyState
	if si.slot == 0xF9 {
		// The attestation key's public half is in its certificate, which a listing reads
		// anyway; its metadata would add an APDU for policies that never apply to it (the
		// key signs attestations only).
		der, err := t.loadCert(ctx, si)
		if err != nil {
			return nil, err
		}
		if ks = keyFromCertDER(der); ks != nil {
			c.pubRead, c.pub = true, ks
			return ks, nil
		}
	}
	m, err := t.loadMeta(ctx, si.slot)
	if err != nil {
		return nil, err
	}
	if t.hasMeta {
		if m != nil {
			ks = &keyState{alg: m.Alg, origin: m.Origin}
			if m.HasPolicy {
				ks.pinPolicy, ks.touchPolicy = pinPolicies[m.PINPolicy], touchPolicies[m.TouchPolicy]
			}
			if len(m.Public) > 0 {
				if ks.pub, err = parsePublicKey(m.Alg, m.Public); err != nil {
					return nil, err
				}
			} else if _, _, ok := algInfo(m.Alg); !ok {
				return nil, badCard("slot %s: key of algorithm %02X", si.slot, m.Alg)
			} else {
				// Metadata without the public key: the certificate may hold it.
				der, err := t.loadCert(ctx, si)
				if err != nil {
					return nil, err
				}
				if c := keyFromCertDER(der); c != nil && c.alg == m.Alg {
					ks.pub = c.pub
				}
			}
		}
	} else {
		der, err := t.loadCert(ctx, si)
		if err != nil {
			return nil, err
		}
		if der != nil {
			ks = keyFromCert(der)
			if ks != nil {
				ks.pinPolicy = si.defaultPIN
			}
		}
	}
	c.pubRead, c.pub = true, ks
	return ks, nil
}

func keyFromCertDER(der []byte) *keyState {
	if der == nil {
		return nil
	}
	return keyFromCert(der)
}

// keyFromCert takes the key's algorithm and public key from a certificate; nil when the
// certificate does not parse or holds a key PIV cannot have.
func keyFromCert(der []byte) *keyState {
	c, err := cert.Parse(der)
	if err != nil {
		return nil
	}
	switch k := c.PublicKey.(type) {
	case *rsa.PublicKey:
		if a, ok := pivAlg(cards.AlgRSA, k.N.BitLen()); ok {
			return &keyState{alg: a, pub: publicKey{Key: k}}
		}
	case *ecdsa.PublicKey:
		pt, err := k.Bytes()
		if err != nil {
			return nil
		}
		switch k.Curve {
		case elliptic.P256():
			return &keyState{alg: algP256, pub: publicKey{Key: k, Point: pt}}
		case elliptic.P384():
			return &keyState{alg: algP384, pub: publicKey{Key: k, Point: pt}}
		}
	case ed25519.PublicKey:
		return &keyState{alg: algEd25519, pub: publicKey{Key: k, Point: bytes.Clone(k)}}
	case *ecdh.PublicKey:
		if k.Curve() == ecdh.X25519() {
			return &keyState{alg: algX25519, pub: publicKey{Key: k, Point: k.Bytes()}}
		}
	}
	return nil
}

// keyInfo turns a key state into the interface's description.
func (t *Token) keyInfo(si *slotInfo, ks *keyState) *cards.KeyInfo {
	ka, bits, _ := algInfo(ks.alg)
	ki := &cards.KeyInfo{
		Alg:         ka,
		Bits:        bits,
		Public:      ks.pub.Key,
		ECPoint:     ks.pub.Point,
		PINPolicy:   ks.pinPolicy,
		TouchPolicy: ks.touchPolicy,
		Local:       ks.origin == 1,
		Slot:        si.slot.String(),
	}
	switch ka {
	case cards.AlgRSA:
		ki.Sign, ki.Decrypt, ki.RawRSA = true, true, true
	case cards.AlgECP256, cards.AlgECP384:
		ki.Sign, ki.Derive = true, true
	case cards.AlgEd25519:
		ki.Sign = true
	case cards.AlgX25519:
		ki.Derive = true
	}
	ki.AlwaysAuth = ks.pinPolicy == "always"
	if si.slot == 0xF9 {
		ki.Sign, ki.Decrypt, ki.Derive, ki.RawRSA = false, false, false, false
	}
	return ki
}

// KeySlots lists the 24 key slots (9A, 9C, 9D, 9E, 82–95) with what the firmware can
// generate or import there. F9 (attestation) is left out: replacing it is a provisioning
// step, not something an application does.
func (t *Token) KeySlots() []cards.KeySlot {
	algs := []cards.KeyAlg{cards.AlgRSA, cards.AlgECP256, cards.AlgECP384}
	bits := []int{1024, 2048}
	if t.fwAtLeast(5, 7, 0) {
		algs = append(algs, cards.AlgEd25519, cards.AlgX25519)
		bits = append(bits, 3072, 4096)
	}
	var out []cards.KeySlot
	for _, s := range slots {
		if s.slot == 0xF9 {
			continue
		}
		out = append(out, cards.KeySlot{ID: []byte{s.id}, Name: s.slot.String(), Label: s.label, Algs: algs, RSABits: bits})
	}
	return out
}

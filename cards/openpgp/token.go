package openpgp

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/p11-card/p11-card/apdu"
	"github.com/p11-card/p11-card/cards"
	"github.com/p11-card/p11-card/internal/trace"
)

// Token is an open OpenPGP card. It implements cards.Token; like every token it is not
// safe for concurrent use.
type Token struct {
	conn       cards.Conn
	atr        []byte
	opt        apdu.Options
	ad         *AppData
	terminated bool

	kdf       KDF
	kdfLoaded bool

	// verified holds the PW references (bit ref-0x81: 81, 82, 83) this token verified
	// since the application was last selected: what Logout resets.
	verified uint8

	keys [3]keyCache

	// journal tells of changes other processes made to the card (nil: off); stale says
	// one came before a write of ours, so what is cached is read again at the next begin.
	journal *cards.Journal
	stale   bool

	// opened is the PW status Open read, until OpenedPINs hands it out.
	opened *openedPW
}

type openedPW struct {
	pw PWStatus
	at time.Time
}

type keyCache struct {
	pubLoaded  bool
	pub        *cards.KeyInfo // nil: no key in the slot
	certLoaded bool
	cert       []byte
}

var _ cards.Token = (*Token)(nil)

// AppData returns the cached application related data (read at Open and after key changes).
func (t *Token) AppData() *AppData { return t.ad }

// begin takes the card for one operation. After a reset the application is selected again
// and the card's security state is gone.
func (t *Token) begin(ctx context.Context) (func(), error) {
	unlock, reset, err := t.conn.Lock(ctx)
	if err != nil {
		return nil, err
	}
	if reset {
		trace.Printf("openpgp", "openpgp: card was reset, selecting the application again")
		t.kdfLoaded = false
		if err := t.selectApp(ctx); err != nil {
			unlock()
			return nil, err
		}
	}
	if t.syncJournal(); t.stale {
		if err := t.readAppData(ctx); err != nil {
			unlock()
			return nil, err
		}
		t.stale = false
	}
	return unlock, nil
}

// syncJournal drops the cached keys and certificates when another application changed the
// card since we last looked (cards.Journal); the next begin reads DO 6E again.
func (t *Token) syncJournal() {
	if t.journal.Changed() {
		trace.Printf("openpgp", "openpgp: another application changed the card: reading its data again")
		t.dropCaches()
	}
}

// noteWrite tells other applications that this one changed the card (cards.Journal); when
// one of them did so first, what this token knows is read again at the next begin.
func (t *Token) noteWrite() {
	if t.journal.Note() {
		t.dropCaches()
	}
}

// dropCaches forgets the keys, certificates and KDF-DO, and has begin read 6E again.
func (t *Token) dropCaches() {
	t.keys = [3]keyCache{}
	t.kdfLoaded = false
	t.stale = true
}

// Info implements cards.Token.
func (t *Token) Info() cards.TokenInfo {
	a := t.ad.AID
	man := manufacturerName(a.Manufacturer)
	label := fmt.Sprintf("OpenPGP card #%08X", a.Serial)
	// Model fits CK_TOKEN_INFO's 16 bytes.
	model := fmt.Sprintf("OpenPGP card %d.%d", a.Version.Major, a.Version.Minor)
	if a.Manufacturer == 0x0006 {
		label = fmt.Sprintf("YubiKey OpenPGP #%08X", a.Serial)
		model = "YubiKey OpenPGP"
	}
	pmax := t.ad.PW.PW1Max
	if pmax == 0 {
		pmax = 127
	}
	return cards.TokenInfo{
		Driver:       "openpgp",
		Label:        label,
		Manufacturer: man,
		Model:        model,
		Serial:       fmt.Sprintf("%04X%08X", a.Manufacturer, a.Serial),
		Firmware:     a.Version,
		HasRandom:    t.ad.Caps.GetChallenge,
		SOSecret:     "pin",
		PINMin:       minPW1,
		PINMax:       pmax,
	}
}

// Minimum lengths of the spec (3.4 §4.3).
const (
	minPW1 = 6
	minPW3 = 8
	minRC  = 8
)

var keyLabels = [3]string{"Signature key", "Encryption key", "Authentication key"}

// KeySlots implements cards.Token. Without writable algorithm attributes only the
// current algorithm of each slot is offered.
func (t *Token) KeySlots() []cards.KeySlot {
	var out []cards.KeySlot
	for k := KeySIG; k <= KeyAUT; k++ {
		s := cards.KeySlot{ID: k.ID(), Name: k.String(), Label: keyLabels[k]}
		if t.ad.Caps.AlgoAttrsWritable {
			s.Algs = []cards.KeyAlg{cards.AlgRSA, cards.AlgECP256, cards.AlgECP384, cards.AlgECP521,
				cards.AlgBrainpoolP256, cards.AlgBrainpoolP384, cards.AlgBrainpoolP512}
			if k == KeyDEC {
				s.Algs = append(s.Algs, cards.AlgX25519)
			} else {
				s.Algs = append(s.Algs, cards.AlgEd25519)
			}
			s.RSABits = []int{2048, 3072, 4096}
		} else if a := t.ad.Algo[k]; a.Alg != 0 {
			s.Algs = []cards.KeyAlg{a.Alg}
			if a.Alg == cards.AlgRSA {
				s.RSABits = []int{a.Bits}
			}
		}
		out = append(out, s)
	}
	return out
}

// loadPub reads the public key of slot k (GENERATE ASYMMETRIC KEY PAIR 81, spec 3.4
// §7.2.14) once; the caller holds the lock.
func (t *Token) loadPub(ctx context.Context, k KeyRef) (*cards.KeyInfo, error) {
	c := &t.keys[k]
	if c.pubLoaded {
		return c.pub, nil
	}
	if !t.ad.keyPresent(int(k)) {
		c.pubLoaded, c.pub = true, nil
		return nil, nil
	}
	b, err := t.do(ctx, apdu.Command{INS: insGenerate, P1: 0x81, Data: []byte{k.crt(), 0}})
	if err != nil {
		if errors.Is(err, apdu.ErrNotFound) || errors.Is(err, apdu.ErrConditions) {
			c.pubLoaded, c.pub = true, nil
			return nil, nil
		}
		return nil, fmt.Errorf("openpgp: read %s public key: %w", k, err)
	}
	ki, err := ParsePublicKey(b, t.ad.Algo[k])
	if err != nil {
		return nil, err
	}
	t.decorate(k, ki)
	c.pubLoaded, c.pub = true, ki
	return ki, nil
}

// decorate fills the usage and policy fields of a key from the cached application data.
func (t *Token) decorate(k KeyRef, ki *cards.KeyInfo) {
	ki.Slot = k.String()
	ki.Sign, ki.Decrypt, ki.Derive = false, false, false
	switch k {
	case KeySIG, KeyAUT:
		ki.Sign = true
	case KeyDEC:
		if ki.Alg == cards.AlgRSA {
			ki.Decrypt = true
		} else {
			ki.Derive = true
		}
	}
	ki.RawRSA = false
	ki.PINPolicy = "once"
	ki.AlwaysAuth = false
	if k == KeySIG && !t.ad.PW.PW1Multi {
		ki.AlwaysAuth = true
		ki.PINPolicy = "always"
	}
	ki.TouchPolicy = ""
	if u := t.ad.UIF[k]; len(u) > 0 {
		switch u[0] {
		case 0x00:
			ki.TouchPolicy = "never"
		case 0x01, 0x02:
			ki.TouchPolicy = "always"
		case 0x03, 0x04:
			ki.TouchPolicy = "cached"
		}
	}
	ki.Local = t.ad.KeyStatus != nil && t.ad.KeyStatus[byte(k)+1] == 0x01
}

// certSupported tells whether slot k has a cardholder certificate DO: three on 3.x
// (SELECT DATA), one for the AUT key on 2.x.
func (t *Token) certSupported(k KeyRef) bool {
	if t.ad.Caps.MaxCert == 0 {
		return false
	}
	return t.ad.AID.Version.Major >= 3 || k == KeyAUT
}

// selectCert points DO 7F21 at slot k's certificate (SELECT DATA, spec 3.4 §7.2.5).
func (t *Token) selectCert(ctx context.Context, k KeyRef) error {
	if t.ad.AID.Version.Major < 3 {
		return nil
	}
	data := []byte{0x60, 0x04, 0x5C, 0x02, 0x7F, 0x21}
	_, err := apdu.Do(ctx, t.conn, apdu.Command{INS: insSelectData, P1: k.certOccurrence(), P2: 0x04, Data: data}, t.opt)
	if err != nil {
		return fmt.Errorf("openpgp: select %s certificate: %w", k, err)
	}
	return nil
}

func (t *Token) loadCert(ctx context.Context, k KeyRef) ([]byte, error) {
	c := &t.keys[k]
	if c.certLoaded {
		return c.cert, nil
	}
	if !t.certSupported(k) {
		c.certLoaded = true
		return nil, nil
	}
	if err := t.selectCert(ctx, k); err != nil {
		if errors.Is(err, apdu.ErrInsNotSupported) || errors.Is(err, apdu.ErrWrongP1P2) || errors.Is(err, apdu.ErrNotFound) {
			c.certLoaded = true
			return nil, nil
		}
		return nil, err
	}
	b, err := t.getData(ctx, doCert)
	if err != nil && !errors.Is(err, apdu.ErrNotFound) {
		return nil, fmt.Errorf("openpgp: read %s certificate: %w", k, err)
	}
	// Some cards wrap the value in its own tag.
	if v, ok, err := apdu.Find(b, doCert); err == nil && ok {
		b = v
	}
	c.certLoaded = true
	if len(b) > 0 && !allZero(b) {
		c.cert = clone(b)
	}
	return c.cert, nil
}

// Objects implements cards.Token: per present key a private and a public key object
// (CKA_ID 01 SIG, 02 DEC, 03 AUT) and the certificate where one is stored. Public keys
// come from the card (GENERATE ASYMMETRIC KEY PAIR 81), read once per insertion.
func (t *Token) Objects(ctx context.Context, f cards.Filter) ([]cards.Object, error) {
	t.syncJournal()
	var unlock func()
	defer func() {
		if unlock != nil {
			unlock()
		}
	}()
	lock := func() error {
		if unlock != nil {
			return nil
		}
		u, err := t.begin(ctx)
		if err != nil {
			return err
		}
		unlock = u
		return nil
	}
	var out []cards.Object
	for k := KeySIG; k <= KeyAUT; k++ {
		if f.ID != nil && (len(f.ID) != 1 || f.ID[0] != byte(k)+1) {
			continue
		}
		wantKey := f.Kind == 0 || f.Kind == cards.KindPrivateKey || f.Kind == cards.KindPublicKey
		wantCert := f.Kind == 0 || f.Kind == cards.KindCertificate
		if wantKey {
			if !t.keys[k].pubLoaded {
				if err := lock(); err != nil {
					return nil, err
				}
			}
			ki, err := t.loadPub(ctx, k)
			if err != nil {
				return nil, err
			}
			if ki != nil {
				if f.Kind != cards.KindPublicKey {
					out = append(out, t.keyObject(k, ki, cards.KindPrivateKey))
				}
				if f.Kind != cards.KindPrivateKey {
					out = append(out, t.keyObject(k, ki, cards.KindPublicKey))
				}
			}
		}
		if wantCert {
			if !t.keys[k].certLoaded {
				if err := lock(); err != nil {
					return nil, err
				}
			}
			der, err := t.loadCert(ctx, k)
			if err != nil {
				return nil, err
			}
			if der != nil {
				out = append(out, cards.Object{
					Handle: k.String() + "/cert", Kind: cards.KindCertificate, ID: k.ID(),
					Label: keyLabels[k], Cert: clone(der), Modifiable: true, Destroyable: true,
				})
			}
		}
	}
	return out, nil
}

func (t *Token) keyObject(k KeyRef, ki *cards.KeyInfo, kind cards.Kind) cards.Object {
	cp := *ki
	cp.ECPoint = clone(ki.ECPoint)
	o := cards.Object{Kind: kind, ID: k.ID(), Label: keyLabels[k], Key: &cp}
	if kind == cards.KindPrivateKey {
		o.Handle, o.Private = k.String()+"/priv", true
	} else {
		o.Handle = k.String() + "/pub"
	}
	return o
}

// SignatureCount reads the digital signature counter (DO 7A, spec 3.4 §4.4.3.6).
func (t *Token) SignatureCount(ctx context.Context) (int, error) {
	unlock, err := t.begin(ctx)
	if err != nil {
		return 0, err
	}
	defer unlock()
	b, err := t.getData(ctx, doSecSupport)
	if err != nil {
		return 0, fmt.Errorf("openpgp: signature counter: %w", err)
	}
	return ParseSignatureCounter(b)
}

// CardholderData reads DO 65 (name, language, sex).
func (t *Token) CardholderData(ctx context.Context) (Cardholder, error) {
	unlock, err := t.begin(ctx)
	if err != nil {
		return Cardholder{}, err
	}
	defer unlock()
	b, err := t.getData(ctx, doCardholder)
	if err != nil {
		return Cardholder{}, fmt.Errorf("openpgp: cardholder data: %w", err)
	}
	return ParseCardholder(b)
}

// Refresh re-reads the application related data and drops cached keys and certificates
// (after another program changed the card).
func (t *Token) Refresh(ctx context.Context) error {
	unlock, err := t.begin(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	t.keys = [3]keyCache{}
	return t.readAppData(ctx)
}

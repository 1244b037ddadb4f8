package piv

import (
	"bytes"
	"context"
	"crypto"
	"encoding/asn1"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/p11-card/p11-card/apdu"
	"github.com/p11-card/p11-card/cards"
	"github.com/p11-card/p11-card/internal/cert"
)

// dataObject is a PIV container shown as a data object (CKO_DATA).
type dataObject struct {
	tag   uint32
	label string
	oid   asn1.ObjectIdentifier // SP 800-73-4 part 1 table 3
	// private containers are read with the PIN (part 1 table 3): listed after a user
	// login only.
	private bool
}

var dataObjects = []dataObject{
	{tagCCC, "Card Capability Container", asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 7, 1, 219, 0}, false},
	{tagCHUID, "Card Holder Unique Identifier", asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 7, 2, 48, 0}, false},
	{tagSecurityObj, "Security Object", asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 7, 2, 144, 0}, false},
	{tagDiscovery, "Discovery Object", asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 7, 2, 96, 80}, false},
	{tagKeyHistory, "Key History Object", asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 7, 2, 96, 96}, false},
	{tagPrinted, "Printed Information", asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 7, 2, 48, 1}, true},
	{tagFacial, "Cardholder Facial Image", asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 7, 2, 96, 48}, true},
	{tagFingerprint, "Cardholder Fingerprints", asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 7, 2, 96, 16}, true},
	{tagIris, "Cardholder Iris Images", asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 7, 2, 16, 21}, true},
}

// dataID is a data object's CKA_ID: its tag's bytes.
func dataID(tag uint32) []byte { return apdu.AppendTag(nil, apdu.Tag(tag)) }

// Handles: "9a/cert", "9a/pub", "9a/priv", "9a/attest", "data/5fc102".
func handle(s Slot, what string) string { return s.String() + "/" + what }

// Objects lists the card's objects matching f. It reads only what f needs, once per
// insertion:
//   - private keys: GET METADATA of each slot asked for (YubiKey 5.3+), else the slot's
//     certificate (whose presence is the only sign of a key on other cards);
//   - public keys: the same metadata (it holds the public key), else the certificate;
//   - certificates: the certificate objects; attestation statements (ATTEST) for slots
//     whose key the card generated;
//   - data objects: the PIV containers; those that need the PIN only after a user login.
//
// A filter with an ID picks one slot (01…19), one attestation (81…98) or one container
// (its tag bytes); an ID naming nothing costs no APDU.
func (t *Token) Objects(ctx context.Context, f cards.Filter) ([]cards.Object, error) {
	want := func(k cards.Kind) bool { return f.Kind == 0 || f.Kind == k }
	var keySlots []*slotInfo // slots whose key/cert objects are asked for
	var attSlots []*slotInfo // slots whose attestation is asked for
	var datas []dataObject
	switch {
	case f.ID == nil:
		for i := range slots {
			keySlots = append(keySlots, &slots[i])
			if slots[i].slot != 0xF9 {
				attSlots = append(attSlots, &slots[i])
			}
		}
		datas = dataObjects
	default:
		if si, ok := slotByID(f.ID); ok {
			keySlots = append(keySlots, si)
		}
		if len(f.ID) == 1 && f.ID[0] > attestIDBase {
			if si, ok := slotByID([]byte{f.ID[0] - attestIDBase}); ok && si.slot != 0xF9 {
				attSlots = append(attSlots, si)
			}
		}
		for _, d := range dataObjects {
			if bytes.Equal(dataID(d.tag), f.ID) {
				datas = append(datas, d)
			}
		}
	}
	if !want(cards.KindCertificate) || !t.canAttest() {
		attSlots = nil
	}
	if !want(cards.KindData) {
		datas = nil
	}
	needKey := want(cards.KindPrivateKey) || want(cards.KindPublicKey)
	needCert := want(cards.KindCertificate)
	if len(keySlots) == 0 && len(attSlots) == 0 && len(datas) == 0 || !needKey && !needCert && len(attSlots) == 0 && len(datas) == 0 {
		return nil, nil
	}
	// Listings after the first come from the caches: no transaction unless a read is due.
	defer t.beginLazy()()

	var err error
	if f.ID == nil && !t.hasMeta && (needKey || needCert || len(attSlots) > 0) {
		// Without metadata every retired slot costs a certificate read; the key history
		// object (part 1 §3.3.2) says how many retired keys have on-card certificates,
		// numbered from 82 up: read those only.
		if keySlots, err = t.trimRetired(ctx, keySlots); err != nil {
			return nil, err
		}
		if attSlots, err = t.trimRetired(ctx, attSlots); err != nil {
			return nil, err
		}
	}
	var out []cards.Object
	for _, si := range keySlots {
		// The key first: on a YubiKey its metadata is the cheapest first command of a
		// transaction (an empty slot answers 6A88, which no other application gives).
		var ks *keyState
		if needKey && (si.slot != 0xF9 || want(cards.KindPublicKey)) {
			if ks, err = t.loadKey(ctx, si); err != nil {
				return nil, err
			}
		}
		if needCert {
			der, err := t.loadSlotCert(ctx, si)
			if err != nil {
				return nil, err
			}
			if der != nil {
				out = append(out, cards.Object{
					Handle: handle(si.slot, "cert"), Kind: cards.KindCertificate, ID: []byte{si.id},
					Label: si.label, Cert: der, Destroyable: true,
				})
			}
		}
		if ks == nil {
			continue
		}
		if want(cards.KindPublicKey) && ks.pub.Key != nil {
			out = append(out, cards.Object{
				Handle: handle(si.slot, "pub"), Kind: cards.KindPublicKey, ID: []byte{si.id},
				Label: si.label, Key: t.keyInfo(si, ks),
			})
		}
		// F9's private key signs attestations only (the card refuses GENERAL AUTHENTICATE
		// with it): its certificate and public key are listed, not the private key.
		if want(cards.KindPrivateKey) && si.slot != 0xF9 {
			out = append(out, cards.Object{
				Handle: handle(si.slot, "priv"), Kind: cards.KindPrivateKey, ID: []byte{si.id},
				Label: si.label, Private: true, Key: t.keyInfo(si, ks),
				Destroyable: t.fwAtLeast(5, 7, 0),
			})
		}
	}
	for _, si := range attSlots {
		der, err := t.loadAttestation(ctx, si)
		if err != nil {
			return nil, err
		}
		if der != nil {
			out = append(out, cards.Object{
				Handle: handle(si.slot, "attest"), Kind: cards.KindCertificate, ID: []byte{si.id + attestIDBase},
				Label: "Attestation for " + si.label, Cert: der,
			})
		}
	}
	for _, d := range datas {
		if d.private && !t.userIn {
			continue // unreadable without the PIN; read after login
		}
		v, err := t.loadData(ctx, d.tag)
		if err != nil {
			return nil, err
		}
		if v == nil {
			continue
		}
		oid, _ := asn1.Marshal(d.oid)
		out = append(out, cards.Object{
			Handle: fmt.Sprintf("data/%x", dataID(d.tag)), Kind: cards.KindData, ID: dataID(d.tag),
			Label: d.label, Value: v, App: "PIV", OID: oid, Private: d.private, Destroyable: true,
		})
	}
	return out, nil
}

// trimRetired drops the retired slots past the key history's on-card count. Without a
// (well-formed) key history object every slot stays.
func (t *Token) trimRetired(ctx context.Context, in []*slotInfo) ([]*slotInfo, error) {
	v, err := t.loadData(ctx, tagKeyHistory)
	if err != nil || v == nil {
		return in, err
	}
	kh, err := parseKeyHistory(v)
	if err != nil {
		return in, nil
	}
	var out []*slotInfo
	for _, si := range in {
		if si.slot >= 0x82 && si.slot <= 0x95 && int(si.slot-0x82) >= kh.OnCard {
			continue
		}
		out = append(out, si)
	}
	return out, nil
}

func (t *Token) canAttest() bool { return t.yubico && t.fwAtLeast(4, 3, 0) }

// loadSlotCert is a listed slot's certificate. A retired slot (82–95) that the card's
// metadata says holds no key is taken as empty without reading its certificate object:
// retired slots hold old key management keys, a certificate there without its key serves
// no operation, and the read would cost an APDU per empty slot (20 of the 50 a YubiKey
// listing takes). Certificates in the named slots are read whatever the metadata says.
func (t *Token) loadSlotCert(ctx context.Context, si *slotInfo) ([]byte, error) {
	if si.slot >= 0x82 && si.slot <= 0x95 && t.hasMeta {
		m, err := t.loadMeta(ctx, si.slot)
		if err != nil {
			return nil, err
		}
		if t.hasMeta && m == nil {
			return nil, nil
		}
	}
	return t.loadCert(ctx, si)
}

// loadAttestation asks the card to attest a slot's key (Yubico ATTEST), once per
// insertion. Only keys generated on the card can be attested: with metadata the origin is
// checked first (no ATTEST for imported keys or empty slots); without, the card's refusal
// means "no statement".
func (t *Token) loadAttestation(ctx context.Context, si *slotInfo) ([]byte, error) {
	c := t.slot(si.slot)
	if c.attRead {
		return c.att, nil
	}
	if t.hasMeta {
		m, err := t.loadMeta(ctx, si.slot)
		if err != nil {
			return nil, err
		}
		if t.hasMeta && (m == nil || m.Origin != 1) {
			c.attRead = true
			return nil, nil
		}
		kept, err := t.keptAttestation(ctx, si)
		if err != nil {
			return nil, err
		}
		if kept != nil {
			c.att, c.attRead = kept, true
			return kept, nil
		}
	} else {
		// Without metadata a key shows only through its certificate.
		ks, err := t.loadKey(ctx, si)
		if err != nil {
			return nil, err
		}
		if ks == nil {
			c.attRead = true
			return nil, nil
		}
	}
	b, err := t.do(ctx, apdu.Command{INS: insAttest, P1: byte(si.slot), Ne: t.maxNe()})
	switch {
	case err == nil:
		if len(b) == 0 || len(b) > maxCertSize {
			return nil, badCard("attestation of %d bytes", len(b))
		}
		c.att = bytes.Clone(b)
		if t.hasMeta {
			cards.Keep("piv", t.info.Serial, keptAttestationName(si), c.att)
		}
	case errors.Is(err, apdu.ErrWrongData), errors.Is(err, apdu.ErrNotFound), errors.Is(err, apdu.ErrConditions), isUnsupported(err):
	default:
		return nil, fmt.Errorf("piv: attest slot %s: %w", si.slot, err)
	}
	c.attRead = true
	return c.att, nil
}

func keptAttestationName(si *slotInfo) string { return "attest-" + si.slot.String() }

// keptAttestation is the statement an earlier process kept for si's key, if it still
// holds: it certifies the public key the slot's metadata gives now, and the attestation
// key of F9 signed it (its certificate is read from the card, as a listing does anyway).
// A YubiKey makes a signature for each ATTEST, tenths of a second per key in every
// process that lists the card; checking a kept statement costs no APDU in a listing.
// nil when none is kept or it fails a check (the key was replaced, F9 was re-keyed).
func (t *Token) keptAttestation(ctx context.Context, si *slotInfo) ([]byte, error) {
	der := cards.Kept("piv", t.info.Serial, keptAttestationName(si))
	if der == nil {
		return nil, nil
	}
	att, err := cert.Parse(der)
	if err != nil {
		return nil, nil
	}
	ks, err := t.loadKey(ctx, si)
	if err != nil || ks == nil {
		return nil, err
	}
	pub, ok := ks.pub.Key.(interface{ Equal(crypto.PublicKey) bool })
	if !ok || att.PublicKey == nil || !pub.Equal(att.PublicKey) {
		return nil, nil
	}
	f9, _ := slotByID([]byte{0x19})
	f9der, err := t.loadCert(ctx, f9)
	if err != nil || f9der == nil {
		return nil, err
	}
	issuer, err := cert.Parse(f9der)
	if err != nil || att.CheckSignatureFrom(issuer.PublicKey) != nil {
		return nil, nil
	}
	return der, nil
}

// loadData reads a data container once; nil when absent.
func (t *Token) loadData(ctx context.Context, tag uint32) ([]byte, error) {
	c := t.data[tag]
	if c != nil && c.read {
		return c.value, nil
	}
	v, err := t.readData(ctx, tag)
	switch {
	case err == nil:
		if len(v) == 0 {
			v = nil
		} else if tag == tagPrinted && hasProtectedKey(v) {
			// YubiKey tools keep the PIN-protected management key here: neither kept
			// nor shown as an object's value.
			zero(v)
			v = nil
		} else {
			v = bytes.Clone(v)
		}
	case errors.Is(err, cards.ErrObjectNotFound):
		v = nil
	case errors.Is(err, cards.ErrLoginRequired):
		return nil, nil // not cached: readable after a login
	default:
		return nil, err
	}
	t.data[tag] = &dataCache{read: true, value: v}
	return v, nil
}

func hasProtectedKey(v []byte) bool {
	k, err := parseProtectedMgmtKey(v)
	zero(k)
	return !errors.Is(err, errNoProtectedKey)
}

// parseHandle splits "9a/cert" into the slot and the part; data objects give slot nil and
// their tag.
func parseHandle(h string) (si *slotInfo, part string, tag uint32, err error) {
	a, b, ok := strings.Cut(h, "/")
	if !ok {
		return nil, "", 0, fmt.Errorf("piv: handle %q: %w", h, cards.ErrObjectNotFound)
	}
	if a == "data" {
		v, perr := strconv.ParseUint(b, 16, 32)
		if perr != nil {
			return nil, "", 0, fmt.Errorf("piv: handle %q: %w", h, cards.ErrObjectNotFound)
		}
		for _, d := range dataObjects {
			if d.tag == uint32(v) {
				return nil, "data", d.tag, nil
			}
		}
		return nil, "", 0, fmt.Errorf("piv: handle %q: %w", h, cards.ErrObjectNotFound)
	}
	si, ok = slotByName(a)
	if !ok {
		return nil, "", 0, fmt.Errorf("piv: handle %q: %w", h, cards.ErrObjectNotFound)
	}
	switch b {
	case "cert", "pub", "priv", "attest":
		return si, b, 0, nil
	}
	return nil, "", 0, fmt.Errorf("piv: handle %q: %w", h, cards.ErrObjectNotFound)
}

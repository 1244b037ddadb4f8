package openpgp

import (
	"context"
	"crypto"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"encoding/binary"
	"fmt"
	"math/big"
	"strings"
	"time"

	"github.com/p11-card/p11-card/apdu"
	"github.com/p11-card/p11-card/cards"
)

// now is the key creation time source (tests pin it).
var now = time.Now

// setAlgo writes the slot's algorithm attributes when they differ (PW3 needed).
func (t *Token) setAlgo(ctx context.Context, k KeyRef, want AlgoAttr) error {
	cur := t.ad.Algo[k]
	if sameKeyType(cur, want) {
		return nil
	}
	if !t.ad.Caps.AlgoAttrsWritable {
		return fmt.Errorf("%w: openpgp: %s slot holds %s and the card cannot change it", cards.ErrMechanismUnsupported, k, cur.Alg)
	}
	if err := t.putData(ctx, doAlgoSig+apdu.Tag(k), want.Bytes()); err != nil {
		return opErr(fmt.Sprintf("set %s algorithm to %s", k, want.Alg), err)
	}
	t.ad.Algo[k] = want
	return nil
}

// setPolicies applies a KeyGenSpec's PIN and touch policies where the card has the DOs.
func (t *Token) setPolicies(ctx context.Context, k KeyRef, spec cards.KeyGenSpec) error {
	if spec.PINPolicy != "" {
		if k != KeySIG {
			if spec.PINPolicy != "once" {
				return fmt.Errorf("%w: openpgp: PIN policy %q for the %s key", cards.ErrNotSupported, spec.PINPolicy, k)
			}
		} else {
			var v byte
			switch spec.PINPolicy {
			case "always":
				v = 0
			case "once":
				v = 1
			default:
				return fmt.Errorf("%w: openpgp: PIN policy %q", cards.ErrNotSupported, spec.PINPolicy)
			}
			if (v == 1) != t.ad.PW.PW1Multi {
				if !t.ad.Caps.PWStatusWritable {
					return fmt.Errorf("%w: openpgp: PW status not writable", cards.ErrNotSupported)
				}
				if err := t.putData(ctx, doPWStatus, []byte{v}); err != nil {
					return opErr("set PIN policy", err)
				}
				t.ad.PW.PW1Multi = v == 1
			}
		}
	}
	if spec.TouchPolicy != "" {
		var v byte
		switch spec.TouchPolicy {
		case "never":
			v = 0
		case "always":
			v = 1
		case "cached":
			v = 3
		default:
			return fmt.Errorf("%w: openpgp: touch policy %q", cards.ErrNotSupported, spec.TouchPolicy)
		}
		if t.ad.UIF[k] == nil {
			if v == 0 {
				return nil
			}
			return fmt.Errorf("%w: openpgp: the card has no touch policy", cards.ErrNotSupported)
		}
		uif := clone(t.ad.UIF[k])
		uif[0] = v
		if err := t.putData(ctx, doUIFSig+apdu.Tag(k), uif); err != nil {
			return opErr("set touch policy", err)
		}
	}
	return nil
}

// storeIdentity writes the OpenPGP fingerprint and creation date of a new key (C7–C9,
// CE–D0) so GnuPG and other OpenPGP software know the key.
func (t *Token) storeIdentity(ctx context.Context, k KeyRef, ki *cards.KeyInfo, attr AlgoAttr) error {
	ts := uint32(now().Unix())
	fp, err := Fingerprint(ki, attr, ts)
	if err != nil {
		return err
	}
	var d [4]byte
	binary.BigEndian.PutUint32(d[:], ts)
	if err := t.putData(ctx, doFprSig+apdu.Tag(k), fp); err != nil {
		return opErr("store fingerprint", err)
	}
	if err := t.putData(ctx, doDateSig+apdu.Tag(k), d[:]); err != nil {
		return opErr("store generation date", err)
	}
	return nil
}

// refreshAfterKeyChange re-reads DO 6E (key status, fingerprints) and forgets slot k's
// cached public key.
func (t *Token) refreshAfterKeyChange(ctx context.Context, k KeyRef, ki *cards.KeyInfo) error {
	if err := t.readAppData(ctx); err != nil {
		return err
	}
	t.keys[k].pubLoaded, t.keys[k].pub = ki != nil, nil
	if ki != nil {
		t.decorate(k, ki)
		t.keys[k].pub = ki
	}
	return nil
}

// GenerateKey implements cards.Token: algorithm attributes (PUT DATA C1–C3) when they
// change, GENERATE ASYMMETRIC KEY PAIR 80 (spec 3.4 §7.2.14), then fingerprint and date.
// The administrator PIN (PW3) must have been verified.
func (t *Token) GenerateKey(ctx context.Context, spec cards.KeyGenSpec) (cards.Object, error) {
	k, ok := keyRefOfID(spec.ID)
	if !ok {
		return cards.Object{}, fmt.Errorf("%w: openpgp: key id % X", cards.ErrKeyNotFound, spec.ID)
	}
	attr, err := attrFor(k, spec.Alg, spec.Bits, t.ad.Algo[k])
	if err != nil {
		return cards.Object{}, err
	}
	unlock, err := t.begin(ctx)
	if err != nil {
		return cards.Object{}, err
	}
	defer unlock()
	if err := t.setAlgo(ctx, k, attr); err != nil {
		return cards.Object{}, err
	}
	if err := t.setPolicies(ctx, k, spec); err != nil {
		return cards.Object{}, err
	}
	b, err := t.do(ctx, apdu.Command{INS: insGenerate, P1: 0x80, Data: []byte{k.crt(), 0}})
	t.noteWrite()
	if err != nil {
		return cards.Object{}, opErr("generate "+k.String(), err)
	}
	ki, err := ParsePublicKey(b, t.ad.Algo[k])
	if err != nil {
		return cards.Object{}, err
	}
	if err := t.storeIdentity(ctx, k, ki, t.ad.Algo[k]); err != nil {
		return cards.Object{}, err
	}
	if err := t.refreshAfterKeyChange(ctx, k, ki); err != nil {
		return cards.Object{}, err
	}
	return t.keyObject(k, t.keys[k].pub, cards.KindPublicKey), nil
}

// ImportKey implements cards.Token: PUT DATA (odd, 3F FF) with the extended header list 4D
// (spec 3.4 §4.4.3.12). The administrator PIN (PW3) must have been verified.
func (t *Token) ImportKey(ctx context.Context, spec cards.KeyGenSpec, key crypto.PrivateKey) error {
	k, ok := keyRefOfID(spec.ID)
	if !ok {
		return fmt.Errorf("%w: openpgp: key id % X", cards.ErrKeyNotFound, spec.ID)
	}
	if !t.ad.Caps.KeyImport {
		return fmt.Errorf("%w: openpgp: key import", cards.ErrNotSupported)
	}
	alg, bits, err := algOfKey(key)
	if err != nil {
		return err
	}
	if spec.Alg != 0 && spec.Alg != alg {
		return fmt.Errorf("%w: openpgp: spec says %s, key is %s", cards.ErrBadInput, spec.Alg, alg)
	}
	attr, err := attrFor(k, alg, bits, t.ad.Algo[k])
	if err != nil {
		return err
	}
	if cur := t.ad.Algo[k]; sameKeyType(cur, attr) {
		attr = cur // keep the card's import format
	}
	ehl, pub, err := extHeaderList(k, attr, key)
	if err != nil {
		return err
	}
	defer wipe(ehl)
	unlock, err := t.begin(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	if err := t.setAlgo(ctx, k, attr); err != nil {
		return err
	}
	if err := t.setPolicies(ctx, k, spec); err != nil {
		return err
	}
	_, err = apdu.Do(ctx, t.conn, apdu.Command{INS: insPutDataOdd, P1: 0x3F, P2: 0xFF, Data: ehl}, t.opt)
	t.noteWrite()
	if err != nil {
		return opErr("import "+k.String(), err)
	}
	if err := t.storeIdentity(ctx, k, pub, attr); err != nil {
		return err
	}
	return t.refreshAfterKeyChange(ctx, k, pub)
}

func algOfKey(key crypto.PrivateKey) (cards.KeyAlg, int, error) {
	switch p := key.(type) {
	case *rsa.PrivateKey:
		return cards.AlgRSA, p.N.BitLen(), nil
	case *ecdsa.PrivateKey:
		switch p.Curve.Params().Name {
		case "P-256":
			return cards.AlgECP256, 256, nil
		case "P-384":
			return cards.AlgECP384, 384, nil
		case "P-521":
			return cards.AlgECP521, 521, nil
		}
	case ed25519.PrivateKey:
		return cards.AlgEd25519, 256, nil
	case *ecdh.PrivateKey:
		if p.Curve() == ecdh.X25519() {
			return cards.AlgX25519, 256, nil
		}
	}
	return 0, 0, fmt.Errorf("%w: openpgp: import of %T", cards.ErrMechanismUnsupported, key)
}

// extHeaderList builds the 4D template for a key import and the public KeyInfo of the key.
func extHeaderList(k KeyRef, attr AlgoAttr, key crypto.PrivateKey) ([]byte, *cards.KeyInfo, error) {
	type part struct {
		tag apdu.Tag
		v   []byte
	}
	var parts []part
	ki := &cards.KeyInfo{Alg: attr.Alg, Bits: attr.Bits}
	switch p := key.(type) {
	case *rsa.PrivateKey:
		if len(p.Primes) != 2 {
			return nil, nil, fmt.Errorf("%w: openpgp: multi-prime RSA", cards.ErrMechanismUnsupported)
		}
		p.Precompute()
		half := attr.Bits / 16
		eLen := (attr.EBits + 7) / 8
		e := big.NewInt(int64(p.E)).Bytes()
		if len(e) > eLen {
			return nil, nil, fmt.Errorf("%w: openpgp: public exponent longer than the card's %d bits", cards.ErrBadInput, attr.EBits)
		}
		parts = append(parts, part{0x91, leftPad(e, eLen)},
			part{0x92, leftPad(p.Primes[0].Bytes(), half)},
			part{0x93, leftPad(p.Primes[1].Bytes(), half)})
		if attr.ImportFormat == 2 || attr.ImportFormat == 3 {
			parts = append(parts, part{0x94, leftPad(p.Precomputed.Qinv.Bytes(), half)},
				part{0x95, leftPad(p.Precomputed.Dp.Bytes(), half)},
				part{0x96, leftPad(p.Precomputed.Dq.Bytes(), half)})
		}
		if attr.ImportFormat == 1 || attr.ImportFormat == 3 {
			parts = append(parts, part{0x97, leftPad(p.N.Bytes(), attr.Bits/8)})
		}
		ki.Public = &p.PublicKey
	case *ecdsa.PrivateKey:
		d, err := p.Bytes()
		if err != nil {
			return nil, nil, fmt.Errorf("%w: openpgp: %v", cards.ErrBadInput, err)
		}
		pt, err := p.PublicKey.Bytes()
		if err != nil {
			return nil, nil, fmt.Errorf("%w: openpgp: %v", cards.ErrBadInput, err)
		}
		parts = append(parts, part{0x92, d})
		if attr.PubInImport {
			parts = append(parts, part{0x99, pt})
		}
		ki.Public, ki.ECPoint = &p.PublicKey, pt
	case ed25519.PrivateKey:
		pub := p.Public().(ed25519.PublicKey)
		parts = append(parts, part{0x92, clone(p.Seed())})
		if attr.PubInImport {
			parts = append(parts, part{0x99, clone(pub)})
		}
		ki.Public, ki.ECPoint = pub, clone(pub)
	case *ecdh.PrivateKey:
		// The card takes the X25519 scalar big-endian, as OpenPGP stores it (GnuPG's form):
		// the reverse of the RFC 7748 byte string.
		s := clone(p.Bytes())
		for i, j := 0, len(s)-1; i < j; i, j = i+1, j-1 {
			s[i], s[j] = s[j], s[i]
		}
		pub := p.PublicKey().Bytes()
		parts = append(parts, part{0x92, s})
		if attr.PubInImport {
			parts = append(parts, part{0x99, pub})
		}
		ki.Public, ki.ECPoint = p.PublicKey(), clone(pub)
	default:
		return nil, nil, fmt.Errorf("%w: openpgp: import of %T", cards.ErrMechanismUnsupported, key)
	}
	var hdr, body []byte
	for _, p := range parts {
		hdr = apdu.AppendTag(hdr, p.tag)
		hdr = apdu.AppendLength(hdr, len(p.v))
		body = append(body, p.v...)
		wipe(p.v)
	}
	out := apdu.TLVBytes(doExtHeaderList, []byte{k.crt(), 0}, apdu.TLVBytes(doCardholderKey, hdr), apdu.TLVBytes(doKeyData, body))
	wipe(body)
	return out, ki, nil
}

// WriteCertificate implements cards.Token: SELECT DATA for the slot's 7F21 (3.x) and PUT
// DATA. 2.x cards hold one certificate, for the AUT key.
func (t *Token) WriteCertificate(ctx context.Context, id []byte, der []byte) error {
	k, ok := keyRefOfID(id)
	if !ok {
		return fmt.Errorf("%w: openpgp: key id % X", cards.ErrKeyNotFound, id)
	}
	if !t.certSupported(k) {
		return fmt.Errorf("%w: openpgp: no certificate DO for the %s key", cards.ErrNotSupported, k)
	}
	if len(der) > t.ad.Caps.MaxCert {
		return fmt.Errorf("%w: openpgp: certificate of %d bytes, card takes %d", cards.ErrCardFull, len(der), t.ad.Caps.MaxCert)
	}
	unlock, err := t.begin(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	if err := t.selectCert(ctx, k); err != nil {
		return err
	}
	if err := t.putData(ctx, doCert, der); err != nil {
		return opErr("write "+k.String()+" certificate", err)
	}
	t.keys[k].certLoaded = true
	t.keys[k].cert = nil
	if len(der) > 0 {
		t.keys[k].cert = clone(der)
	}
	return nil
}

// DeleteObject implements cards.Token: a certificate is emptied; keys cannot be deleted
// from an OpenPGP card (only replaced, or the card reset).
func (t *Token) DeleteObject(ctx context.Context, handle string) error {
	name, kind, ok := strings.Cut(handle, "/")
	if !ok {
		return fmt.Errorf("%w: openpgp: %q", cards.ErrObjectNotFound, handle)
	}
	for k := KeySIG; k <= KeyAUT; k++ {
		if name != k.String() {
			continue
		}
		switch kind {
		case "cert":
			return t.WriteCertificate(ctx, k.ID(), nil)
		case "priv", "pub":
			return fmt.Errorf("%w: openpgp: deleting the %s key", cards.ErrNotSupported, k)
		}
	}
	return fmt.Errorf("%w: openpgp: %q", cards.ErrObjectNotFound, handle)
}

// FactoryReset resets the application to factory state (TERMINATE DF then
// ACTIVATE FILE, spec 3.4 §7.2.16–17): every key, PIN and DO goes. PW3 must be verified
// or blocked. The token re-reads its data afterwards.
func (t *Token) FactoryReset(ctx context.Context) error {
	unlock, err := t.begin(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	t.noteWrite()
	if _, err := apdu.Do(ctx, t.conn, apdu.Command{INS: insTerminate}, t.opt); err != nil {
		return opErr("terminate", err)
	}
	if _, err := apdu.Do(ctx, t.conn, apdu.Command{INS: insActivate}, t.opt); err != nil {
		return opErr("activate", err)
	}
	t.terminated = false
	if err := t.selectApp(ctx); err != nil {
		return err
	}
	t.keys = [3]keyCache{}
	t.kdfLoaded = false
	return t.readAppData(ctx)
}

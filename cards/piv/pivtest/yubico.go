package pivtest

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"fmt"
	"math/big"
	"sync"
	"time"

	"github.com/p11-card/p11-card/apdu"
)

// Tags of GENERATE ASYMMETRIC KEY PAIR (part 2 §3.3.2) and Yubico's policies.
const (
	tagGenTemplate = 0xAC
	tagGenAlg      = 0x80
	tagPINPolicy   = 0xAA
	tagTouchPolicy = 0xAB
	tagPublicKey   = 0x7F49
)

// GET METADATA tags (Yubico extension, firmware 5.3).
const (
	tagMetaAlg     = 0x01
	tagMetaPolicy  = 0x02
	tagMetaOrigin  = 0x03
	tagMetaPublic  = 0x04
	tagMetaDefault = 0x05
	tagMetaRetries = 0x06
)

// Yubico attestation extensions (developers.yubico.com/PIV/Introduction/PIV_attestation.html).
var (
	oidFirmware   = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 41482, 3, 3}
	oidSerial     = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 41482, 3, 7}
	oidPolicy     = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 41482, 3, 8}
	oidFormFactor = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 41482, 3, 9}
)

// policies reads and resolves AA/AB policies; ok is false for values the card refuses.
// Policies came with firmware 4.0, the cached touch policy with 4.3.
func (c *Card) policies(slot byte, tl map[apdu.Tag][]byte) (pin, touch byte, ok bool) {
	pin, touch = defaultPINPolicy(slot), TouchPolicyNever
	_, hasPIN := tl[tagPINPolicy]
	_, hasTouch := tl[tagTouchPolicy]
	if (hasPIN || hasTouch) && !c.atLeast(4, 0, 0) {
		return 0, 0, false
	}
	if v := tl[tagTouchPolicy]; len(v) == 1 && v[0] == TouchPolicyCached && !c.atLeast(4, 3, 0) {
		return 0, 0, false
	}
	if v, present := tl[tagPINPolicy]; present {
		if len(v) != 1 || v[0] > PINPolicyAlways {
			return 0, 0, false
		}
		if v[0] != PINPolicyDefault {
			pin = v[0]
		}
	}
	if v, present := tl[tagTouchPolicy]; present {
		if len(v) != 1 || v[0] > TouchPolicyCached {
			return 0, 0, false
		}
		if v[0] != TouchPolicyDefault {
			touch = v[0]
		}
	}
	return pin, touch, true
}

// userSlot reports the slots that hold user keys: those ATTEST and MOVE KEY accept and
// GENERAL AUTHENTICATE uses. The attestation key F9 only signs attestations, but GENERATE
// and IMPORT may replace it (keySlotValid), as on a YubiKey (its factory key is then lost).
func userSlot(ref byte) bool { return keySlotValid(ref) && ref != SlotAttestation }

// doGenerate is GENERATE ASYMMETRIC KEY PAIR (part 2 §3.3.2): P2 slot, data AC { 80 alg,
// AA pin policy, AB touch policy }; answer 7F49 with the public key.
func (c *Card) doGenerate(ctx context.Context, cmd apdu.Command) ([]byte, status) {
	if cmd.P1 != 0x00 || !keySlotValid(cmd.P2) {
		return nil, swBadP1P2
	}
	if !c.mgmtOK {
		return nil, swSecurity
	}
	tpl, rest, err := apdu.ParseTLV(cmd.Data)
	if err != nil || tpl.Tag != tagGenTemplate || len(rest) != 0 {
		return nil, swWrongData
	}
	tl, ok := parseTLVMap(tpl.Value)
	if !ok {
		return nil, swWrongData
	}
	algv := tl[tagGenAlg]
	if len(algv) != 1 || !c.isAsymAlg(algv[0]) {
		return nil, swWrongData
	}
	pin, touch, ok := c.policies(cmd.P2, tl)
	if !ok {
		return nil, swWrongData
	}
	c.wait(ctx)
	key, err := generateKey(algv[0])
	if err != nil {
		return nil, swNoPrecise
	}
	c.st.Keys[cmd.P2] = &slotKey{Alg: algv[0], PINPolicy: pin, TouchPolicy: touch, Origin: originGenerated, key: key}
	c.persist()
	return apdu.TLVBytes(tagPublicKey, encodePublic(publicOf(key))), swOK
}

// doImport is Yubico's IMPORT KEY (FE): P1 algorithm, P2 slot, data the key parts and
// optional AA/AB policies.
func (c *Card) doImport(cmd apdu.Command) ([]byte, status) {
	if !keySlotValid(cmd.P2) {
		return nil, swBadP1P2
	}
	if !c.mgmtOK {
		return nil, swSecurity
	}
	if !c.isAsymAlg(cmd.P1) {
		return nil, swBadP1P2
	}
	tl, ok := parseTLVMap(cmd.Data)
	if !ok {
		return nil, swWrongData
	}
	pin, touch, ok := c.policies(cmd.P2, tl)
	if !ok {
		return nil, swWrongData
	}
	key, err := importKey(cmd.P1, tl)
	if err != nil {
		return nil, swWrongData
	}
	c.st.Keys[cmd.P2] = &slotKey{Alg: cmd.P1, PINPolicy: pin, TouchPolicy: touch, Origin: originImported, key: key}
	c.persist()
	return nil, swOK
}

// doMetadata is Yubico's GET METADATA (F7): P2 is the PIN (80), PUK (81), management key
// (9B) or a key slot.
func (c *Card) doMetadata(cmd apdu.Command) ([]byte, status) {
	if cmd.P1 != 0x00 {
		return nil, swBadP1P2
	}
	var out []byte
	switch ref := cmd.P2; {
	case ref == refPIN || ref == refPUK:
		val, def, tries, max := c.st.PIN, DefaultPIN, c.st.PINRetries, c.st.PINMax
		if ref == refPUK {
			val, def, tries, max = c.st.PUK, DefaultPUK, c.st.PUKRetries, c.st.PUKMax
		}
		out = apdu.TLVBytes(tagMetaAlg, []byte{algPINOrPUK})
		out = apdu.AppendTLV(out, tagMetaDefault, []byte{boolByte(equalCT(val, padPIN(def)))})
		out = apdu.AppendTLV(out, tagMetaRetries, []byte{byte(max), byte(tries)})
	case ref == SlotManagement:
		out = apdu.TLVBytes(tagMetaAlg, []byte{c.st.MgmtAlg})
		out = apdu.AppendTLV(out, tagMetaPolicy, []byte{PINPolicyDefault, c.st.MgmtTouch})
		out = apdu.AppendTLV(out, tagMetaDefault, []byte{boolByte(equalCT(c.st.MgmtKey, DefaultMgmtKey))})
	case keySlotValid(ref):
		k, ok := c.st.Keys[ref]
		if !ok {
			return nil, swRefNotFound
		}
		out = apdu.TLVBytes(tagMetaAlg, []byte{k.Alg})
		out = apdu.AppendTLV(out, tagMetaPolicy, []byte{k.PINPolicy, k.TouchPolicy})
		out = apdu.AppendTLV(out, tagMetaOrigin, []byte{k.Origin})
		out = apdu.AppendTLV(out, tagMetaPublic, encodePublic(publicOf(k.key)))
	default:
		return nil, swRefNotFound
	}
	return out, swOK
}

func boolByte(b bool) byte {
	if b {
		return 1
	}
	return 0
}

// doAttest is Yubico's ATTEST (F9): P1 slot; answer an X.509 certificate for the slot's
// generated key, signed by the F9 key.
func (c *Card) doAttest(cmd apdu.Command) ([]byte, status) {
	if cmd.P2 != 0x00 || !userSlot(cmd.P1) {
		return nil, swBadP1P2
	}
	k, ok := c.st.Keys[cmd.P1]
	if !ok {
		return nil, swRefNotFound
	}
	if k.Origin != originGenerated {
		return nil, swWrongData
	}
	der, err := c.attestation(cmd.P1, k)
	if err != nil {
		return nil, swNoPrecise
	}
	return der, swOK
}

// attestationKey is one RSA 2048 key per process: generating one per card would cost
// a second each; a card with a state file keeps the key it was made with.
var attestationKey = sync.OnceValues(func() (*rsa.PrivateKey, error) {
	return rsa.GenerateKey(rand.Reader, 2048)
})

// makeAttestation puts an attestation key and its self-signed CA certificate in F9 and
// 5FFF01.
func (c *Card) makeAttestation() error {
	key, err := attestationKey()
	if err != nil {
		return fmt.Errorf("pivtest: attestation key: %w", err)
	}
	now := time.Now().UTC().Truncate(time.Second)
	tmpl := &x509.Certificate{
		SerialNumber:          randSerial(),
		Subject:               pkix.Name{CommonName: "pivtest PIV Attestation", SerialNumber: fmt.Sprint(c.serial)},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              time.Date(2071, 12, 31, 23, 59, 59, 0, time.UTC),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return fmt.Errorf("pivtest: attestation certificate: %w", err)
	}
	c.st.Keys[SlotAttestation] = &slotKey{Alg: AlgRSA2048, PINPolicy: PINPolicyNever, TouchPolicy: TouchPolicyNever, Origin: originImported, key: key}
	c.st.Objects[objAttestation] = certContainer(der)
	return nil
}

func randSerial() *big.Int {
	b := randomBytes(16)
	b[0] &= 0x7F
	return new(big.Int).SetBytes(b)
}

// certContainer is the content of a PIV certificate object (part 1 Appendix A): 70
// certificate, 71 CertInfo 00 (uncompressed), FE error detection code (empty).
func certContainer(der []byte) []byte {
	out := apdu.TLVBytes(0x70, der)
	out = apdu.AppendTLV(out, 0x71, []byte{0})
	return apdu.AppendTLV(out, 0xFE, nil)
}

func (c *Card) attestation(slot byte, k *slotKey) ([]byte, error) {
	ak, ok := c.st.Keys[SlotAttestation]
	if !ok {
		return nil, fmt.Errorf("pivtest: no attestation key")
	}
	signer, ok := ak.key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("pivtest: attestation key cannot sign")
	}
	// The issuer is named by the certificate in 5FFF01, but the signature comes from
	// whatever key F9 holds now (it may have been replaced without the certificate).
	parent := &x509.Certificate{
		Subject:   pkix.Name{CommonName: "pivtest PIV Attestation"},
		NotBefore: time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC),
		NotAfter:  time.Date(2071, 12, 31, 23, 59, 59, 0, time.UTC),
	}
	if cont, ok := c.st.Objects[objAttestation]; ok {
		if der, ok, err := apdu.Find(cont, 0x70); err == nil && ok {
			if issuer, err := x509.ParseCertificate(der); err == nil {
				parent.Subject, parent.RawSubject, parent.SubjectKeyId = issuer.Subject, issuer.RawSubject, issuer.SubjectKeyId
				parent.NotBefore, parent.NotAfter = issuer.NotBefore, issuer.NotAfter
			}
		}
	}
	parent.PublicKey = signer.Public()
	serial, err := asn1.Marshal(int64(c.serial))
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: randSerial(),
		Subject:      pkix.Name{CommonName: fmt.Sprintf("YubiKey PIV Attestation %02x", slot)},
		NotBefore:    parent.NotBefore,
		NotAfter:     parent.NotAfter,
		ExtraExtensions: []pkix.Extension{
			{Id: oidFirmware, Value: c.version[:]},
			{Id: oidSerial, Value: serial},
			{Id: oidPolicy, Value: []byte{k.PINPolicy, k.TouchPolicy}},
			{Id: oidFormFactor, Value: []byte{0x01}},
		},
	}
	pub := publicOf(k.key)
	return createCertificate(tmpl, parent, pub, signer)
}

// doReset is Yubico's RESET (FB): allowed only when PIN and PUK are both blocked; wipes
// keys, objects, PIN, PUK and management key, keeps the attestation key.
func (c *Card) doReset(cmd apdu.Command) ([]byte, status) {
	if cmd.P1 != 0 || cmd.P2 != 0 {
		return nil, swBadP1P2
	}
	if c.st.PINRetries != 0 || c.st.PUKRetries != 0 {
		return nil, swConditions
	}
	if err := c.factory(false); err != nil {
		return nil, swNoPrecise
	}
	c.resetVolatile()
	c.persist()
	return nil, swOK
}

// doMoveKey is Yubico's MOVE KEY (F6, firmware 5.7): P1 destination slot (FF deletes), P2
// source slot. Needs the management key; the attestation slot cannot take part and the
// destination must be empty.
func (c *Card) doMoveKey(cmd apdu.Command) ([]byte, status) {
	dst, src := cmd.P1, cmd.P2
	if !userSlot(src) || (dst != 0xFF && !userSlot(dst)) || dst == src {
		return nil, swBadP1P2
	}
	if !c.mgmtOK {
		return nil, swSecurity
	}
	k, ok := c.st.Keys[src]
	if !ok {
		return nil, swRefNotFound
	}
	if dst != 0xFF {
		if _, busy := c.st.Keys[dst]; busy {
			return nil, swConditions
		}
		c.st.Keys[dst] = k
	}
	delete(c.st.Keys, src)
	c.persist()
	return nil, swOK
}

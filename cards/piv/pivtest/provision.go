package pivtest

import (
	"crypto"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"time"

	"github.com/p11-card/p11-card/apdu"
)

// KeySpec describes a key put in a slot by a test helper.
type KeySpec struct {
	// Alg is the PIV algorithm to generate (ignored when Key is set).
	Alg byte
	// Key, when set, is imported instead of generated (origin "imported").
	Key crypto.PrivateKey
	// PINPolicy and TouchPolicy default to the slot's YubiKey defaults.
	PINPolicy, TouchPolicy byte
	// Subject is the common name of the self-signed certificate (default "pivtest SLOT").
	Subject string
	// NoCert leaves the slot's certificate object alone.
	NoCert bool
}

// ErrBadSlot is returned by the helpers for a slot that cannot hold the key.
var ErrBadSlot = errors.New("pivtest: bad slot")

// GenerateInSlot generates a key of alg in slot and stores a self-signed certificate for
// it in the slot's certificate object, without APDUs. It returns the certificate (for
// X25519, which cannot sign, the certificate is signed by the attestation key).
func (c *Card) GenerateInSlot(slot, alg byte) (*x509.Certificate, error) {
	return c.Provision(slot, KeySpec{Alg: alg})
}

// ImportInSlot puts key in slot (origin imported) with a self-signed certificate.
func (c *Card) ImportInSlot(slot byte, key crypto.PrivateKey) (*x509.Certificate, error) {
	return c.Provision(slot, KeySpec{Key: key})
}

// Provision puts a key (generated or given) and, unless spec.NoCert, a certificate in
// slot. The certificate is nil with NoCert.
func (c *Card) Provision(slot byte, spec KeySpec) (*x509.Certificate, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !keySlotValid(slot) {
		return nil, fmt.Errorf("%w: %02X", ErrBadSlot, slot)
	}
	origin, key := originImported, spec.Key
	if key == nil {
		if !c.isAsymAlg(spec.Alg) {
			return nil, fmt.Errorf("pivtest: algorithm %02X not supported by firmware %d.%d.%d", spec.Alg, c.version[0], c.version[1], c.version[2])
		}
		var err error
		if key, err = generateKey(spec.Alg); err != nil {
			return nil, err
		}
		origin = originGenerated
	}
	alg := algOf(key)
	if alg == 0 || !c.isAsymAlg(alg) {
		return nil, fmt.Errorf("pivtest: key type %T: %w", key, errBadKey)
	}
	pin, touch := spec.PINPolicy, spec.TouchPolicy
	if pin == PINPolicyDefault {
		pin = defaultPINPolicy(slot)
	}
	if touch == TouchPolicyDefault {
		touch = TouchPolicyNever
	}
	if pin > PINPolicyAlways || touch > TouchPolicyCached {
		return nil, fmt.Errorf("pivtest: policy %d/%d: %w", pin, touch, errBadKey)
	}
	sk := &slotKey{Alg: alg, PINPolicy: pin, TouchPolicy: touch, Origin: origin, key: key}
	var cert *x509.Certificate
	if !spec.NoCert {
		subject := spec.Subject
		if subject == "" {
			subject = fmt.Sprintf("pivtest %02X", slot)
		}
		der, err := c.selfSigned(sk, subject)
		if err != nil {
			return nil, err
		}
		if cert, err = x509.ParseCertificate(der); err != nil {
			return nil, err
		}
		obj, _ := certObject(slot)
		c.st.Objects[obj] = certContainer(der)
	}
	c.st.Keys[slot] = sk
	if err := c.save(); err != nil {
		return nil, err
	}
	return cert, nil
}

func (c *Card) selfSigned(k *slotKey, subject string) ([]byte, error) {
	now := time.Now().UTC().Truncate(time.Second)
	tmpl := &x509.Certificate{
		SerialNumber: randSerial(),
		Subject:      pkix.Name{CommonName: subject},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.AddDate(10, 0, 0),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment | x509.KeyUsageKeyAgreement,
	}
	signer, ok := k.key.(crypto.Signer)
	parent := tmpl
	if !ok { // X25519 cannot sign: the attestation key issues its certificate
		ak := c.st.Keys[SlotAttestation]
		if ak == nil {
			return nil, errors.New("pivtest: no attestation key to sign an X25519 certificate")
		}
		signer = ak.key.(crypto.Signer)
		parent = &x509.Certificate{Subject: pkix.Name{CommonName: "pivtest PIV Attestation"}, SerialNumber: randSerial()}
	}
	return createCertificate(tmpl, parent, publicOf(k.key), signer)
}

// PublicKey returns the public key in slot, or nil when the slot is empty.
func (c *Card) PublicKey(slot byte) crypto.PublicKey {
	c.mu.Lock()
	defer c.mu.Unlock()
	k, ok := c.st.Keys[slot]
	if !ok {
		return nil
	}
	return publicOf(k.key)
}

// PutObject stores value as the content of data object tag (the 53 container), or
// deletes the object when value is nil.
func (c *Card) PutObject(tag uint32, value []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !storable(tag) {
		return fmt.Errorf("pivtest: object %06X cannot be stored", tag)
	}
	if value == nil {
		delete(c.st.Objects, tag)
	} else {
		c.st.Objects[tag] = append([]byte(nil), value...)
	}
	return c.save()
}

// Object returns the content of a stored data object.
func (c *Card) Object(tag uint32) ([]byte, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	v, ok := c.st.Objects[tag]
	return append([]byte(nil), v...), ok
}

// PutCertificate stores der in the certificate object of slot.
func (c *Card) PutCertificate(slot byte, der []byte) error {
	obj, ok := certObject(slot)
	if !ok {
		return fmt.Errorf("%w: %02X", ErrBadSlot, slot)
	}
	return c.PutObject(obj, certContainer(der))
}

// Retries reports the PIN and PUK tries left.
func (c *Card) Retries() (pin, puk int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.st.PINRetries, c.st.PUKRetries
}

// SetCHUID stores a CHUID (part 1 §3.1.2) with a random GUID and an expiry date, like
// `yubico-piv-tool -a set-chuid` does, and a CCC; some hosts want them present.
func (c *Card) SetCHUID() error {
	fascn := []byte{0xD4, 0xE7, 0x39, 0xDA, 0x73, 0x9C, 0xED, 0x39, 0xCE, 0x73, 0x9D, 0x83, 0x68, 0x58, 0x21, 0x08, 0x42, 0x10, 0x84, 0x21, 0xC8, 0x42, 0x10, 0xC3, 0xEB}
	chuid := apdu.TLVBytes(0x30, fascn)
	chuid = append(chuid, apdu.TLVBytes(0x34, randomBytes(16))...)
	chuid = append(chuid, apdu.TLVBytes(0x35, []byte("20301231"))...)
	chuid = append(chuid, apdu.TLVBytes(0x3E, nil)...)
	chuid = append(chuid, apdu.TLVBytes(0xFE, nil)...)
	if err := c.PutObject(objCHUID, chuid); err != nil {
		return err
	}
	ccc := apdu.TLVBytes(0xF0, append([]byte{0xA0, 0x00, 0x00, 0x01, 0x16, 0xFF, 0x02}, randomBytes(14)...))
	for _, t := range []byte{0xF1, 0xF2, 0xF3, 0xF4, 0xF5, 0xF6, 0xF7, 0xFA, 0xFB, 0xFC, 0xFD, 0xFE} {
		v := []byte{}
		switch t {
		case 0xF1:
			v = []byte{0x21}
		case 0xF2:
			v = []byte{0x21}
		case 0xF4:
			v = []byte{0x00}
		case 0xF5:
			v = []byte{0x10}
		}
		ccc = append(ccc, apdu.TLVBytes(apdu.Tag(t), v)...)
	}
	return c.PutObject(objCCC, ccc)
}

// Security is the card's volatile security state, for test assertions.
type Security struct {
	Selected          bool // the PIV application is selected
	PINVerified       bool // VERIFY succeeded since the last reset, failure or P1 FF
	MgmtAuthenticated bool // the management key authenticated
}

// Security reports the volatile security state.
func (c *Card) Security() Security {
	c.mu.Lock()
	defer c.mu.Unlock()
	return Security{Selected: c.app == appPIV, PINVerified: c.pinOK, MgmtAuthenticated: c.mgmtOK}
}

// SetTries sets the PIN and PUK tries left (0 blocks), within the current limits.
func (c *Card) SetTries(pin, puk int) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if pin < 0 || pin > c.st.PINMax || puk < 0 || puk > c.st.PUKMax {
		return fmt.Errorf("pivtest: tries %d/%d outside 0..%d/0..%d", pin, puk, c.st.PINMax, c.st.PUKMax)
	}
	c.st.PINRetries, c.st.PUKRetries = pin, puk
	if pin == 0 {
		c.pinOK, c.pinFresh = false, false
	}
	return c.save()
}

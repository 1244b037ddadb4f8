package pivtest

import (
	"crypto"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
)

// slotKey is a private key in a slot with its Yubico attributes.
type slotKey struct {
	Alg         byte
	PINPolicy   byte // resolved: never, once or always
	TouchPolicy byte // resolved: never, always or cached
	Origin      byte
	key         crypto.PrivateKey
}

// persistent is everything a YubiKey keeps across power cycles.
type persistent struct {
	PIN, PUK             []byte // 8 bytes, FF padded
	PINRetries, PINMax   int
	PUKRetries, PUKMax   int
	MgmtAlg              byte
	MgmtKey              []byte
	MgmtTouch            byte
	Keys                 map[byte]*slotKey
	Objects              map[uint32][]byte // value of the 53 container
	AttestationGenerated bool
}

// stateFile is the JSON form: keys as PKCS#8.
type stateFile struct {
	Format     int               `json:"format"`
	Version    [3]byte           `json:"version"`
	Serial     uint32            `json:"serial"`
	PIN        []byte            `json:"pin"`
	PUK        []byte            `json:"puk"`
	PINRetries int               `json:"pin_retries"`
	PINMax     int               `json:"pin_max"`
	PUKRetries int               `json:"puk_retries"`
	PUKMax     int               `json:"puk_max"`
	MgmtAlg    byte              `json:"mgmt_alg"`
	MgmtKey    []byte            `json:"mgmt_key"`
	MgmtTouch  byte              `json:"mgmt_touch"`
	Keys       map[byte]fileKey  `json:"keys"`
	Objects    map[uint32][]byte `json:"objects"`
}

type fileKey struct {
	Alg         byte   `json:"alg"`
	PINPolicy   byte   `json:"pin_policy"`
	TouchPolicy byte   `json:"touch_policy"`
	Origin      byte   `json:"origin"`
	PKCS8       []byte `json:"pkcs8"`
}

const stateFormat = 1

func (c *Card) marshalState() ([]byte, error) {
	p := &c.st
	f := stateFile{
		Format: stateFormat, Version: c.version, Serial: c.serial,
		PIN: p.PIN, PUK: p.PUK, PINRetries: p.PINRetries, PINMax: p.PINMax,
		PUKRetries: p.PUKRetries, PUKMax: p.PUKMax,
		MgmtAlg: p.MgmtAlg, MgmtKey: p.MgmtKey, MgmtTouch: p.MgmtTouch,
		Keys: map[byte]fileKey{}, Objects: p.Objects,
	}
	for ref, k := range p.Keys {
		der, err := x509.MarshalPKCS8PrivateKey(k.key)
		if err != nil {
			return nil, fmt.Errorf("pivtest: slot %02X: %w", ref, err)
		}
		f.Keys[ref] = fileKey{Alg: k.Alg, PINPolicy: k.PINPolicy, TouchPolicy: k.TouchPolicy, Origin: k.Origin, PKCS8: der}
	}
	return json.MarshalIndent(&f, "", " ")
}

// save writes the state file (when there is one) atomically.
func (c *Card) save() error {
	if c.opt.StatePath == "" {
		return nil
	}
	b, err := c.marshalState()
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(c.opt.StatePath), ".pivtest-*")
	if err != nil {
		return fmt.Errorf("pivtest: save state: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return fmt.Errorf("pivtest: save state: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("pivtest: save state: %w", err)
	}
	if err := os.Rename(tmp.Name(), c.opt.StatePath); err != nil {
		return fmt.Errorf("pivtest: save state: %w", err)
	}
	return nil
}

// load reads the state file; ok is false when there is none.
func (c *Card) load() (ok bool, err error) {
	b, err := os.ReadFile(c.opt.StatePath)
	if os.IsNotExist(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("pivtest: load state: %w", err)
	}
	var f stateFile
	if err := json.Unmarshal(b, &f); err != nil {
		return false, fmt.Errorf("pivtest: load state %s: %w", c.opt.StatePath, err)
	}
	if f.Format != stateFormat || len(f.PIN) != 8 || len(f.PUK) != 8 {
		return false, fmt.Errorf("pivtest: load state %s: unknown format", c.opt.StatePath)
	}
	c.version, c.serial = f.Version, f.Serial
	st := persistent{
		PIN: f.PIN, PUK: f.PUK, PINRetries: f.PINRetries, PINMax: f.PINMax,
		PUKRetries: f.PUKRetries, PUKMax: f.PUKMax,
		MgmtAlg: f.MgmtAlg, MgmtKey: f.MgmtKey, MgmtTouch: f.MgmtTouch,
		Keys: map[byte]*slotKey{}, Objects: f.Objects,
	}
	if st.Objects == nil {
		st.Objects = map[uint32][]byte{}
	}
	for ref, fk := range f.Keys {
		k, err := x509.ParsePKCS8PrivateKey(fk.PKCS8)
		if err != nil {
			return false, fmt.Errorf("pivtest: load state: slot %02X: %w", ref, err)
		}
		if algOf(k) != fk.Alg {
			return false, fmt.Errorf("pivtest: load state: slot %02X: algorithm mismatch", ref)
		}
		st.Keys[ref] = &slotKey{Alg: fk.Alg, PINPolicy: fk.PINPolicy, TouchPolicy: fk.TouchPolicy, Origin: fk.Origin, key: k}
	}
	c.st = st
	return true, nil
}

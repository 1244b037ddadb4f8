package core

import (
	"crypto"
	_ "crypto/sha1" // registers SHA-1 for crypto.Hash
	_ "crypto/sha256"
	_ "crypto/sha512"
	"slices"
	"sort"

	"github.com/p11-card/p11-card/cards"
)

// Mechanism is a CK_MECHANISM with its parameters decoded by the cgo layer.
type Mechanism struct {
	Type uint64
	// Exactly one of these is set when the mechanism carried parameters of that kind.
	PSS  *PSSParams
	OAEP *OAEPParams
	ECDH *ECDHParams
	// Param is set (possibly empty) when parameters came but are of no decoded kind.
	Param []byte
}

// PSSParams is CK_RSA_PKCS_PSS_PARAMS.
type PSSParams struct{ Hash, MGF, SaltLen uint64 }

// OAEPParams is CK_RSA_PKCS_OAEP_PARAMS.
type OAEPParams struct {
	Hash, MGF, Source uint64
	Label             []byte
}

// ECDHParams is CK_ECDH1_DERIVE_PARAMS.
type ECDHParams struct {
	KDF                    uint64
	SharedData, PublicData []byte
}

// MechInfo is CK_MECHANISM_INFO.
type MechInfo struct{ Min, Max, Flags uint64 }

const ecFlags = CKF_EC_F_P | CKF_EC_OID | CKF_EC_UNCOMPRESS

var digestMechs = map[uint64]crypto.Hash{CKM_SHA_1: crypto.SHA1, CKM_SHA224: crypto.SHA224, CKM_SHA256: crypto.SHA256, CKM_SHA384: crypto.SHA384, CKM_SHA512: crypto.SHA512}

var rsaPKCSHash = map[uint64]crypto.Hash{CKM_SHA1_RSA_PKCS: crypto.SHA1, CKM_SHA224_RSA_PKCS: crypto.SHA224, CKM_SHA256_RSA_PKCS: crypto.SHA256, CKM_SHA384_RSA_PKCS: crypto.SHA384, CKM_SHA512_RSA_PKCS: crypto.SHA512}

var rsaPSSHash = map[uint64]crypto.Hash{CKM_SHA1_RSA_PKCS_PSS: crypto.SHA1, CKM_SHA224_RSA_PKCS_PSS: crypto.SHA224, CKM_SHA256_RSA_PKCS_PSS: crypto.SHA256, CKM_SHA384_RSA_PKCS_PSS: crypto.SHA384, CKM_SHA512_RSA_PKCS_PSS: crypto.SHA512}

var ecdsaHash = map[uint64]crypto.Hash{CKM_ECDSA_SHA1: crypto.SHA1, CKM_ECDSA_SHA224: crypto.SHA224, CKM_ECDSA_SHA256: crypto.SHA256, CKM_ECDSA_SHA384: crypto.SHA384, CKM_ECDSA_SHA512: crypto.SHA512}

var mgfHash = map[uint64]crypto.Hash{CKG_MGF1_SHA1: crypto.SHA1, CKG_MGF1_SHA224: crypto.SHA224, CKG_MGF1_SHA256: crypto.SHA256, CKG_MGF1_SHA384: crypto.SHA384, CKG_MGF1_SHA512: crypto.SHA512}

// hashMech maps a digest mechanism (PSS/OAEP hashAlg) to its hash.
func hashMech(t uint64) (crypto.Hash, bool) {
	h, ok := digestMechs[t]
	return h, ok
}

// rawRSA reports whether the token's RSA keys can do the bare RSA operation (PIV can, an
// OpenPGP card pads on the card).
func rawRSA(ts *tokenState) bool { return ts.info.Driver != "openpgp" }

// mechanisms is the token's mechanism table, from the algorithms its key slots hold:
// built once per token (every operation's Init consults it). Callers must not change it.
func (m *Module) mechanisms(ts *tokenState) map[uint64]MechInfo {
	ts.mechOnce.Do(func() { ts.mechs = m.buildMechanisms(ts) })
	return ts.mechs
}

func (m *Module) buildMechanisms(ts *tokenState) map[uint64]MechInfo {
	out := map[uint64]MechInfo{}
	for t := range digestMechs {
		out[t] = MechInfo{Flags: CKF_DIGEST}
	}
	var rsaMin, rsaMax, ecMin, ecMax int
	var ed, x bool
	for _, ks := range ts.tok.KeySlots() {
		for _, a := range ks.Algs {
			switch {
			case a == cards.AlgRSA:
				bits := ks.RSABits
				if len(bits) == 0 {
					bits = []int{2048}
				}
				for _, b := range bits {
					if rsaMin == 0 || b < rsaMin {
						rsaMin = b
					}
					rsaMax = max(rsaMax, b)
				}
			case a.IsEC():
				b := curveBits[a]
				if ecMin == 0 || b < ecMin {
					ecMin = b
				}
				ecMax = max(ecMax, b)
			case a == cards.AlgEd25519:
				ed = true
			case a == cards.AlgX25519:
				x = true
			}
		}
	}
	if rsaMax > 0 {
		lo, hi := uint64(rsaMin), uint64(rsaMax)
		out[CKM_RSA_PKCS_KEY_PAIR_GEN] = MechInfo{lo, hi, CKF_HW | CKF_GENERATE_KEY_PAIR}
		pkcs := uint64(CKF_HW | CKF_ENCRYPT | CKF_SIGN | CKF_VERIFY | CKF_SIGN_RECOVER | CKF_VERIFY_RECOVER)
		if !m.opts.NoPKCS1Decrypt {
			pkcs |= CKF_DECRYPT
		}
		out[CKM_RSA_PKCS] = MechInfo{lo, hi, pkcs}
		for t := range rsaPKCSHash {
			out[t] = MechInfo{lo, hi, CKF_HW | CKF_SIGN | CKF_VERIFY}
		}
		if rawRSA(ts) {
			out[CKM_RSA_X_509] = MechInfo{lo, hi, CKF_HW | CKF_ENCRYPT | CKF_DECRYPT | CKF_SIGN | CKF_VERIFY | CKF_SIGN_RECOVER | CKF_VERIFY_RECOVER}
			out[CKM_RSA_PKCS_PSS] = MechInfo{lo, hi, CKF_HW | CKF_SIGN | CKF_VERIFY}
			for t := range rsaPSSHash {
				out[t] = MechInfo{lo, hi, CKF_HW | CKF_SIGN | CKF_VERIFY}
			}
			out[CKM_RSA_PKCS_OAEP] = MechInfo{lo, hi, CKF_HW | CKF_ENCRYPT | CKF_DECRYPT}
		}
	}
	if ecMax > 0 {
		lo, hi := uint64(ecMin), uint64(ecMax)
		out[CKM_EC_KEY_PAIR_GEN] = MechInfo{lo, hi, CKF_HW | CKF_GENERATE_KEY_PAIR | ecFlags}
		out[CKM_ECDSA] = MechInfo{lo, hi, CKF_HW | CKF_SIGN | CKF_VERIFY | ecFlags}
		for t := range ecdsaHash {
			out[t] = MechInfo{lo, hi, CKF_HW | CKF_SIGN | CKF_VERIFY | ecFlags}
		}
		out[CKM_ECDH1_DERIVE] = MechInfo{lo, hi, CKF_HW | CKF_DERIVE | ecFlags}
	}
	if ed {
		out[CKM_EC_EDWARDS_KEY_PAIR_GEN] = MechInfo{255, 255, CKF_HW | CKF_GENERATE_KEY_PAIR}
		out[CKM_EDDSA] = MechInfo{255, 255, CKF_HW | CKF_SIGN | CKF_VERIFY}
	}
	if x {
		out[CKM_EC_MONTGOMERY_KEY_PAIR_GEN] = MechInfo{255, 255, CKF_HW | CKF_GENERATE_KEY_PAIR}
		mi := out[CKM_ECDH1_DERIVE]
		mi.Flags |= CKF_HW | CKF_DERIVE
		if mi.Min == 0 || mi.Min > 255 {
			mi.Min = 255
		}
		mi.Max = max(mi.Max, 255)
		out[CKM_ECDH1_DERIVE] = mi
	}
	return out
}

// Mechanisms lists the mechanism types of the token in slot id, sorted.
func (m *Module) Mechanisms(slot uint64) ([]uint64, error) {
	ts, err := m.token(slot)
	if err != nil {
		return nil, err
	}
	var out []uint64
	for t := range m.mechanisms(ts) {
		out = append(out, t)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out, nil
}

// MechanismInfo describes one mechanism of the token in slot id.
func (m *Module) MechanismInfo(slot, mech uint64) (MechInfo, error) {
	ts, err := m.token(slot)
	if err != nil {
		return MechInfo{}, err
	}
	mi, ok := m.mechanisms(ts)[mech]
	if !ok {
		return MechInfo{}, errRV(CKR_MECHANISM_INVALID, "mechanism not supported by this token")
	}
	return mi, nil
}

// keyMechanisms lists what a key allows (CKA_ALLOWED_MECHANISMS and the Init checks).
func keyMechanisms(ts *tokenState, k *cards.KeyInfo) []uint64 {
	var out []uint64
	switch {
	case k.Alg == cards.AlgRSA:
		if k.Sign {
			out = append(out, CKM_RSA_PKCS)
			for t := range rsaPKCSHash {
				out = append(out, t)
			}
		}
		if k.Decrypt && !slices.Contains(out, CKM_RSA_PKCS) {
			out = append(out, CKM_RSA_PKCS)
		}
		if k.RawRSA {
			out = append(out, CKM_RSA_X_509)
			if k.Sign {
				out = append(out, CKM_RSA_PKCS_PSS)
				for t := range rsaPSSHash {
					out = append(out, t)
				}
			}
			if k.Decrypt {
				out = append(out, CKM_RSA_PKCS_OAEP)
			}
		}
	case k.Alg.IsEC():
		if k.Sign {
			out = append(out, CKM_ECDSA)
			for t := range ecdsaHash {
				out = append(out, t)
			}
		}
		if k.Derive {
			out = append(out, CKM_ECDH1_DERIVE)
		}
	case k.Alg == cards.AlgEd25519:
		if k.Sign {
			out = append(out, CKM_EDDSA)
		}
	case k.Alg == cards.AlgX25519:
		if k.Derive {
			out = append(out, CKM_ECDH1_DERIVE)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

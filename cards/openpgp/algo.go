package openpgp

import (
	"bytes"
	"encoding/binary"
	"fmt"

	"github.com/p11-card/p11-card/cards"
)

// KeyRef names one of the card's key slots.
type KeyRef int

// The three key slots of the OpenPGP card (spec 3.4 §4.4.3.8) and their CKA_IDs 01, 02, 03.
const (
	KeySIG KeyRef = iota // signature key, PSO:COMPUTE DIGITAL SIGNATURE, PW1 81
	KeyDEC               // decryption key, PSO:DECIPHER, PW1 82
	KeyAUT               // authentication key, INTERNAL AUTHENTICATE, PW1 82
)

func (k KeyRef) String() string {
	switch k {
	case KeySIG:
		return "sig"
	case KeyDEC:
		return "dec"
	case KeyAUT:
		return "aut"
	}
	return fmt.Sprintf("key(%d)", int(k))
}

// ID is the key's CKA_ID: 01 SIG, 02 DEC, 03 AUT (the numbering OpenSC and GnuPG use).
func (k KeyRef) ID() []byte { return []byte{byte(k) + 1} }

// crt is the control reference template naming the key in GENERATE ASYMMETRIC KEY PAIR and
// the extended header list (spec 3.4 §7.2.14, §4.4.3.12).
func (k KeyRef) crt() byte {
	switch k {
	case KeySIG:
		return 0xB6
	case KeyDEC:
		return 0xB8
	}
	return 0xA4
}

// certOccurrence is the occurrence of DO 7F21 holding the key's certificate for SELECT DATA
// (spec 3.4 §7.2.5): the first is AUT, then DEC, then SIG.
func (k KeyRef) certOccurrence() byte { return byte(2 - k) }

// keyRefOfID maps a CKA_ID back to a key slot.
func keyRefOfID(id []byte) (KeyRef, bool) {
	if len(id) != 1 || id[0] < 1 || id[0] > 3 {
		return 0, false
	}
	return KeyRef(id[0] - 1), true
}

// Algorithm IDs of the algorithm attributes (spec 3.4 §4.4.3.10; RFC 4880 / RFC 6637 numbers).
const (
	algoRSA   = 0x01
	algoECDH  = 0x12
	algoECDSA = 0x13
	algoEdDSA = 0x16
)

// Curve OIDs without the 06/length header, as the algorithm attributes carry them.
var (
	oidP256         = []byte{0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x03, 0x01, 0x07}
	oidP384         = []byte{0x2B, 0x81, 0x04, 0x00, 0x22}
	oidP521         = []byte{0x2B, 0x81, 0x04, 0x00, 0x23}
	oidBrainpool256 = []byte{0x2B, 0x24, 0x03, 0x03, 0x02, 0x08, 0x01, 0x01, 0x07}
	oidBrainpool384 = []byte{0x2B, 0x24, 0x03, 0x03, 0x02, 0x08, 0x01, 0x01, 0x0B}
	oidBrainpool512 = []byte{0x2B, 0x24, 0x03, 0x03, 0x02, 0x08, 0x01, 0x01, 0x0D}
	oidEd25519      = []byte{0x2B, 0x06, 0x01, 0x04, 0x01, 0xDA, 0x47, 0x0F, 0x01}
	oidCurve25519   = []byte{0x2B, 0x06, 0x01, 0x04, 0x01, 0x97, 0x55, 0x01, 0x05, 0x01}
)

var curveOIDs = []struct {
	alg cards.KeyAlg
	oid []byte
}{
	{cards.AlgECP256, oidP256},
	{cards.AlgECP384, oidP384},
	{cards.AlgECP521, oidP521},
	{cards.AlgBrainpoolP256, oidBrainpool256},
	{cards.AlgBrainpoolP384, oidBrainpool384},
	{cards.AlgBrainpoolP512, oidBrainpool512},
	{cards.AlgEd25519, oidEd25519},
	{cards.AlgX25519, oidCurve25519},
}

func oidOf(a cards.KeyAlg) []byte {
	for _, c := range curveOIDs {
		if c.alg == a {
			return c.oid
		}
	}
	return nil
}

// AlgoAttr is one algorithm attributes DO (C1, C2, C3).
type AlgoAttr struct {
	ID  byte // algoRSA, algoECDH, algoECDSA, algoEdDSA; 0 unknown
	Alg cards.KeyAlg
	// RSA: modulus and public exponent sizes in bits, import format (00 e,p,q; 01 with n;
	// 02 CRT; 03 CRT with n).
	Bits, EBits  int
	ImportFormat byte
	// OID is the curve (ECC); PubInImport is the trailing FF of ECC attributes.
	OID         []byte
	PubInImport bool
}

// ParseAlgoAttr decodes an algorithm attributes DO value.
func ParseAlgoAttr(b []byte) (AlgoAttr, error) {
	if len(b) == 0 {
		return AlgoAttr{}, fmt.Errorf("%w: openpgp: empty algorithm attributes", cards.ErrBadCard)
	}
	a := AlgoAttr{ID: b[0]}
	switch b[0] {
	case algoRSA:
		if len(b) < 5 {
			return AlgoAttr{}, fmt.Errorf("%w: openpgp: RSA attributes of %d bytes", cards.ErrBadCard, len(b))
		}
		a.Alg = cards.AlgRSA
		a.Bits = int(binary.BigEndian.Uint16(b[1:]))
		a.EBits = int(binary.BigEndian.Uint16(b[3:]))
		if len(b) > 5 {
			a.ImportFormat = b[5]
		}
		if a.Bits < 512 || a.Bits > 16384 || a.EBits == 0 || a.EBits > 64 {
			return AlgoAttr{}, fmt.Errorf("%w: openpgp: RSA %d bits, e of %d bits", cards.ErrBadCard, a.Bits, a.EBits)
		}
		return a, nil
	case algoECDH, algoECDSA, algoEdDSA:
		oid := b[1:]
		// Some cards prefix the OID with its DER header (06 len).
		if len(oid) > 2 && oid[0] == 0x06 && int(oid[1]) <= len(oid)-2 && int(oid[1]) >= len(oid)-3 {
			oid = oid[2:]
		}
		// A trailing 00 or FF says whether the public key goes with an import (3.x).
		for _, c := range curveOIDs {
			if bytes.Equal(oid, c.oid) {
				a.OID, a.Alg = c.oid, c.alg
				break
			}
			if len(oid) == len(c.oid)+1 && bytes.HasPrefix(oid, c.oid) && (oid[len(oid)-1] == 0xFF || oid[len(oid)-1] == 0x00) {
				a.OID, a.Alg = c.oid, c.alg
				a.PubInImport = oid[len(oid)-1] == 0xFF
				break
			}
		}
		if a.Alg == 0 {
			return AlgoAttr{ID: b[0]}, fmt.Errorf("%w: openpgp: unknown curve % X", cards.ErrNotSupported, oid)
		}
		a.Bits = curveBits(a.Alg)
		// Ed25519 belongs with EdDSA, X25519 with ECDH; reject mixed pairs.
		if (a.Alg == cards.AlgEd25519) != (a.ID == algoEdDSA) || (a.Alg == cards.AlgX25519 && a.ID != algoECDH) {
			return AlgoAttr{ID: b[0]}, fmt.Errorf("%w: openpgp: algorithm %02X with curve %s", cards.ErrNotSupported, a.ID, a.Alg)
		}
		return a, nil
	}
	return AlgoAttr{ID: b[0]}, fmt.Errorf("%w: openpgp: algorithm %02X", cards.ErrNotSupported, b[0])
}

// Bytes encodes the attributes for PUT DATA.
func (a AlgoAttr) Bytes() []byte {
	switch a.ID {
	case algoRSA:
		out := []byte{algoRSA, byte(a.Bits >> 8), byte(a.Bits), byte(a.EBits >> 8), byte(a.EBits), a.ImportFormat}
		return out
	case algoECDH, algoECDSA, algoEdDSA:
		out := append([]byte{a.ID}, a.OID...)
		if a.PubInImport {
			out = append(out, 0xFF)
		}
		return out
	}
	return nil
}

func curveBits(a cards.KeyAlg) int {
	switch a {
	case cards.AlgECP256, cards.AlgBrainpoolP256, cards.AlgEd25519, cards.AlgX25519:
		return 256
	case cards.AlgECP384, cards.AlgBrainpoolP384:
		return 384
	case cards.AlgECP521:
		return 521
	case cards.AlgBrainpoolP512:
		return 512
	}
	return 0
}

// coordLen is the byte length of one coordinate (or of a scalar) on the curve.
func coordLen(a cards.KeyAlg) int { return (curveBits(a) + 7) / 8 }

// attrFor builds the attributes a key slot needs for alg (bits for RSA): ECDH for the DEC
// slot, ECDSA or EdDSA for SIG and AUT. cur is the card's current value, whose RSA exponent
// size and import format are kept.
func attrFor(k KeyRef, alg cards.KeyAlg, bits int, cur AlgoAttr) (AlgoAttr, error) {
	switch {
	case alg == cards.AlgRSA:
		if bits != 2048 && bits != 3072 && bits != 4096 && bits != 1024 {
			return AlgoAttr{}, fmt.Errorf("%w: openpgp: RSA %d", cards.ErrMechanismUnsupported, bits)
		}
		a := AlgoAttr{ID: algoRSA, Alg: alg, Bits: bits, EBits: 32, ImportFormat: 0}
		if cur.ID == algoRSA {
			a.EBits, a.ImportFormat = cur.EBits, cur.ImportFormat
		}
		return a, nil
	case alg == cards.AlgEd25519:
		if k == KeyDEC {
			return AlgoAttr{}, fmt.Errorf("%w: openpgp: Ed25519 in the decryption slot", cards.ErrMechanismUnsupported)
		}
		return AlgoAttr{ID: algoEdDSA, Alg: alg, Bits: 256, OID: oidEd25519}, nil
	case alg == cards.AlgX25519:
		if k != KeyDEC {
			return AlgoAttr{}, fmt.Errorf("%w: openpgp: X25519 outside the decryption slot", cards.ErrMechanismUnsupported)
		}
		return AlgoAttr{ID: algoECDH, Alg: alg, Bits: 256, OID: oidCurve25519}, nil
	case alg.IsEC():
		id := byte(algoECDSA)
		if k == KeyDEC {
			id = algoECDH
		}
		return AlgoAttr{ID: id, Alg: alg, Bits: curveBits(alg), OID: oidOf(alg)}, nil
	}
	return AlgoAttr{}, fmt.Errorf("%w: openpgp: %s", cards.ErrMechanismUnsupported, alg)
}

// sameKeyType reports whether two attributes describe the same key type and size (the
// import format and the public-key flag aside).
func sameKeyType(a, b AlgoAttr) bool {
	if a.ID != b.ID || a.Alg != b.Alg {
		return false
	}
	if a.ID == algoRSA {
		return a.Bits == b.Bits
	}
	return bytes.Equal(a.OID, b.OID)
}

package piv

import (
	"encoding/hex"
	"fmt"

	"github.com/p11-card/p11-card/cards"
)

// aidPIV is the PIV application identifier (SP 800-73-4 part 1 §2.2): RID A000000308,
// PIX 0000 1000 0100.
var aidPIV = []byte{0xA0, 0x00, 0x00, 0x03, 0x08, 0x00, 0x00, 0x10, 0x00, 0x01, 0x00}

// Instructions: SP 800-73-4 part 2 §3, and Yubico's PIV extensions.
const (
	insGetData     = 0xCB // SP 800-73-4 part 2 §3.1.2 GET DATA
	insPutData     = 0xDB // SP 800-73-4 part 2 §3.3.1 PUT DATA
	insGeneralAuth = 0x87 // SP 800-73-4 part 2 §3.2.4 GENERAL AUTHENTICATE
	insGenerate    = 0x47 // SP 800-73-4 part 2 §3.3.2 GENERATE ASYMMETRIC KEY PAIR
	insMoveKey     = 0xF6 // Yubico 5.7: MOVE or DELETE KEY
	insGetMetadata = 0xF7 // Yubico 5.3: GET METADATA
	insGetSerial   = 0xF8 // Yubico 5.0: GET SERIAL
	insAttest      = 0xF9 // Yubico 4.3: ATTEST
	insGetVersion  = 0xFD // Yubico: GET VERSION
	insImportKey   = 0xFE // Yubico: IMPORT ASYMMETRIC KEY
	insSetMgmtKey  = 0xFF // Yubico: SET MANAGEMENT KEY
)

// Key references (SP 800-73-4 part 1 §5.1 table 4).
const (
	refGlobalPIN = 0x00
	refPIN       = 0x80
	refPUK       = 0x81
	refMgmt      = 0x9B
)

// Algorithm identifiers (SP 800-78-4 table 6-2; Yubico for RSA 3072/4096, Ed25519, X25519).
const (
	alg3DES    = 0x03
	algAES128  = 0x08
	algAES192  = 0x0A
	algAES256  = 0x0C
	algRSA1024 = 0x06
	algRSA2048 = 0x07
	algRSA3072 = 0x05
	algRSA4096 = 0x16
	algP256    = 0x11
	algP384    = 0x14
	algEd25519 = 0xE0
	algX25519  = 0xE1
)

// Data object tags (SP 800-73-4 part 1 table 3; Yubico).
const (
	tagCHUID       = 0x5FC102
	tagCCC         = 0x5FC107
	tagSecurityObj = 0x5FC106
	tagPrinted     = 0x5FC109 // printed information; YubiKeys keep the protected management key here
	tagFacial      = 0x5FC108
	tagFingerprint = 0x5FC103
	tagIris        = 0x5FC121
	tagKeyHistory  = 0x5FC10C
	tagDiscovery   = 0x7E
	tagAdminData   = 0x5FFF00 // Yubico: admin data (protected management key flags)
	tagAttestCert  = 0x5FFF01 // Yubico: certificate of the attestation key F9
)

// Tags inside GENERAL AUTHENTICATE's dynamic authentication template (part 2 §3.2.4).
const (
	tagDynAuth   = 0x7C
	tagWitness   = 0x80
	tagChallenge = 0x81
	tagResponse  = 0x82
	tagExp       = 0x85
)

// Slot is a PIV key reference holding an asymmetric key.
type Slot byte

// String is the slot's usual lowercase hex name: "9a".
func (s Slot) String() string { return hex.EncodeToString([]byte{byte(s)}) }

// slotInfo describes one key slot.
type slotInfo struct {
	slot    Slot
	id      byte   // CKA_ID
	certTag uint32 // certificate data object
	label   string
	// defaultPIN is the PIN policy a YubiKey gives keys in this slot.
	defaultPIN string
}

// slots lists every key slot in CKA_ID order: 9A→01, 9C→02, 9D→03, 9E→04, 82…95→05…18,
// F9→19 (the convention of OpenSC and ykcs11).
var slots = func() []slotInfo {
	s := []slotInfo{
		{0x9A, 0x01, 0x5FC105, "PIV Authentication", "once"},
		{0x9C, 0x02, 0x5FC10A, "Digital Signature", "always"},
		{0x9D, 0x03, 0x5FC10B, "Key Management", "once"},
		{0x9E, 0x04, 0x5FC101, "Card Authentication", "never"},
	}
	for i := 0; i < 20; i++ {
		s = append(s, slotInfo{Slot(0x82 + i), byte(0x05 + i), uint32(0x5FC10D + i), fmt.Sprintf("Retired Key Management %d", i+1), "once"})
	}
	s = append(s, slotInfo{0xF9, 0x19, tagAttestCert, "Attestation", "never"})
	return s
}()

// attestIDBase is added to a slot's CKA_ID to name the attestation statement for its key:
// 9A's is 81, 9C's 82, … 95's 98. One byte, clear of the key IDs 01…19.
const attestIDBase = 0x80

func slotByID(id []byte) (*slotInfo, bool) {
	if len(id) != 1 {
		return nil, false
	}
	for i := range slots {
		if slots[i].id == id[0] {
			return &slots[i], true
		}
	}
	return nil, false
}

func slotByName(name string) (*slotInfo, bool) {
	for i := range slots {
		if slots[i].slot.String() == name {
			return &slots[i], true
		}
	}
	return nil, false
}

// algInfo maps a PIV algorithm to our key algorithm.
func algInfo(a byte) (cards.KeyAlg, int, bool) {
	switch a {
	case algRSA1024:
		return cards.AlgRSA, 1024, true
	case algRSA2048:
		return cards.AlgRSA, 2048, true
	case algRSA3072:
		return cards.AlgRSA, 3072, true
	case algRSA4096:
		return cards.AlgRSA, 4096, true
	case algP256:
		return cards.AlgECP256, 256, true
	case algP384:
		return cards.AlgECP384, 384, true
	case algEd25519:
		return cards.AlgEd25519, 256, true
	case algX25519:
		return cards.AlgX25519, 256, true
	}
	return 0, 0, false
}

// pivAlg is the PIV algorithm for a key algorithm and size.
func pivAlg(a cards.KeyAlg, bits int) (byte, bool) {
	switch a {
	case cards.AlgRSA:
		switch bits {
		case 1024:
			return algRSA1024, true
		case 2048:
			return algRSA2048, true
		case 3072:
			return algRSA3072, true
		case 4096:
			return algRSA4096, true
		}
	case cards.AlgECP256:
		return algP256, true
	case cards.AlgECP384:
		return algP384, true
	case cards.AlgEd25519:
		return algEd25519, true
	case cards.AlgX25519:
		return algX25519, true
	}
	return 0, false
}

// Policies in GET METADATA (tag 02), generation and import (tags AA, AB).
var (
	pinPolicies   = map[byte]string{1: "never", 2: "once", 3: "always"}
	touchPolicies = map[byte]string{1: "never", 2: "always", 3: "cached"}
)

func policyByte(m map[byte]string, s string) (byte, bool) {
	if s == "" {
		return 0, true
	}
	for k, v := range m {
		if v == s {
			return k, true
		}
	}
	return 0, false
}

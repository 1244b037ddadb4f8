package openpgp

import (
	"crypto/sha256"
	"crypto/sha512"
	"encoding/binary"
	"fmt"
	"hash"

	"github.com/p11-card/p11-card/apdu"
	"github.com/p11-card/p11-card/cards"
)

// KDF-DO F9 (spec 3.4 §4.3.2): how the card expects PINs hashed.
const (
	kdfAlgo          apdu.Tag = 0x81
	kdfHash          apdu.Tag = 0x82
	kdfCount         apdu.Tag = 0x83
	kdfSaltPW1       apdu.Tag = 0x84
	kdfSaltRC        apdu.Tag = 0x85
	kdfSaltPW3       apdu.Tag = 0x86
	kdfInitPW1       apdu.Tag = 0x87
	kdfInitPW3       apdu.Tag = 0x88
	kdfNone                   = 0x00
	kdfItersaltedS2K          = 0x03
	kdfHashSHA256             = 0x08
	kdfHashSHA512             = 0x0A
	maxKDFIterations          = 1 << 26 // bytes hashed; refuses a hostile card's huge count
)

// KDF is a parsed KDF-DO. The zero value (and Algo kdfNone) means PINs go to the card as is.
type KDF struct {
	Algo  byte
	Hash  byte
	Count uint32
	// Salts of PW1, the reset code and PW3.
	Salt [3][]byte
}

// ParseKDF decodes DO F9 (with or without its outer tag).
func ParseKDF(b []byte) (KDF, error) {
	if v, ok, err := apdu.Find(b, doKDF); err == nil && ok {
		b = v
	}
	all, err := apdu.ParseAll(b)
	if err != nil {
		return KDF{}, fmt.Errorf("%w: openpgp: KDF-DO: %v", cards.ErrBadCard, err)
	}
	var k KDF
	for _, t := range all {
		switch t.Tag {
		case kdfAlgo:
			if len(t.Value) == 1 {
				k.Algo = t.Value[0]
			}
		case kdfHash:
			if len(t.Value) == 1 {
				k.Hash = t.Value[0]
			}
		case kdfCount:
			if len(t.Value) == 4 {
				k.Count = binary.BigEndian.Uint32(t.Value)
			}
		case kdfSaltPW1, kdfSaltRC, kdfSaltPW3:
			k.Salt[t.Tag-kdfSaltPW1] = clone(t.Value)
		}
	}
	if k.Algo == kdfItersaltedS2K {
		if k.Hash != kdfHashSHA256 && k.Hash != kdfHashSHA512 {
			return KDF{}, fmt.Errorf("%w: openpgp: KDF hash %02X", cards.ErrNotSupported, k.Hash)
		}
		if k.Count == 0 || k.Count > maxKDFIterations {
			return KDF{}, fmt.Errorf("%w: openpgp: KDF count %d", cards.ErrNotSupported, k.Count)
		}
	} else if k.Algo != kdfNone {
		return KDF{}, fmt.Errorf("%w: openpgp: KDF algorithm %02X", cards.ErrNotSupported, k.Algo)
	}
	return k, nil
}

// Active reports whether PINs are hashed.
func (k KDF) Active() bool { return k.Algo == kdfItersaltedS2K }

// pwIndex: 0 PW1, 1 reset code, 2 PW3.
func (k KDF) derive(pin []byte, pw int) []byte {
	if !k.Active() {
		return append([]byte(nil), pin...)
	}
	var h hash.Hash
	if k.Hash == kdfHashSHA512 {
		h = sha512.New()
	} else {
		h = sha256.New()
	}
	return S2K(h, k.Salt[pw], pin, int(k.Count))
}

// S2K is the iterated and salted string-to-key of RFC 4880 §3.7.1.3: salt‖pin is hashed
// repeatedly until count bytes went in (at least once whole).
func S2K(h hash.Hash, salt, pin []byte, count int) []byte {
	data := make([]byte, 0, len(salt)+len(pin))
	data = append(append(data, salt...), pin...)
	if count < len(data) {
		count = len(data)
	}
	for count > 0 {
		n := min(count, len(data))
		h.Write(data[:n])
		count -= n
	}
	for i := range data {
		data[i] = 0
	}
	return h.Sum(nil)
}

// Encode builds a KDF-DO value (for the virtual card and for setting up a KDF).
func (k KDF) Encode() []byte {
	var out []byte
	out = apdu.AppendTLV(out, kdfAlgo, []byte{k.Algo})
	if !k.Active() {
		return out
	}
	var cnt [4]byte
	binary.BigEndian.PutUint32(cnt[:], k.Count)
	out = apdu.AppendTLV(out, kdfHash, []byte{k.Hash})
	out = apdu.AppendTLV(out, kdfCount, cnt[:])
	for i, s := range k.Salt {
		if s != nil {
			out = apdu.AppendTLV(out, kdfSaltPW1+apdu.Tag(i), s)
		}
	}
	return out
}

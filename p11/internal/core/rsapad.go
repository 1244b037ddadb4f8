package core

import (
	"crypto"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"hash"
	"math/big"
	"sync"
)

// DigestInfo prefixes (RFC 8017 §9.2 note 1).
var digestInfoPrefix = map[crypto.Hash][]byte{
	crypto.SHA1:   {0x30, 0x21, 0x30, 0x09, 0x06, 0x05, 0x2b, 0x0e, 0x03, 0x02, 0x1a, 0x05, 0x00, 0x04, 0x14},
	crypto.SHA224: {0x30, 0x2d, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x04, 0x05, 0x00, 0x04, 0x1c},
	crypto.SHA256: {0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0x04, 0x20},
	crypto.SHA384: {0x30, 0x41, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02, 0x05, 0x00, 0x04, 0x30},
	crypto.SHA512: {0x30, 0x51, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x03, 0x05, 0x00, 0x04, 0x40},
}

func digestInfo(h crypto.Hash, sum []byte) []byte {
	return append(append([]byte{}, digestInfoPrefix[h]...), sum...)
}

// mgf1XOR XORs out with MGF1(seed) using h (RFC 8017 §B.2.1).
func mgf1XOR(out []byte, h hash.Hash, seed []byte) {
	var ctr [4]byte
	done := 0
	for done < len(out) {
		h.Reset()
		h.Write(seed)
		h.Write(ctr[:])
		d := h.Sum(nil)
		for i := 0; i < len(d) && done < len(out); i++ {
			out[done] ^= d[i]
			done++
		}
		binary.BigEndian.PutUint32(ctr[:], binary.BigEndian.Uint32(ctr[:])+1)
	}
}

var errPSSEncoding = errors.New("p11: PSS encoding impossible for this key size")

// emsaPSSEncode builds the PSS encoded message for a key of modBits (RFC 8017 §9.1.1),
// left-padded to the modulus length k.
func emsaPSSEncode(mHash []byte, modBits int, hf, mgf crypto.Hash, sLen int) ([]byte, error) {
	emBits := modBits - 1
	emLen := (emBits + 7) / 8
	hLen := hf.Size()
	if len(mHash) != hLen || emLen < hLen+sLen+2 {
		return nil, errPSSEncoding
	}
	salt := make([]byte, sLen)
	if _, err := rand.Read(salt); err != nil {
		return nil, err
	}
	h := hf.New()
	h.Write(make([]byte, 8))
	h.Write(mHash)
	h.Write(salt)
	H := h.Sum(nil)
	db := make([]byte, emLen-hLen-1)
	db[len(db)-sLen-1] = 0x01
	copy(db[len(db)-sLen:], salt)
	mgf1XOR(db, mgf.New(), H)
	db[0] &= 0xFF >> (8*emLen - emBits)
	em := append(append(db, H...), 0xBC)
	k := (modBits + 7) / 8
	if len(em) < k {
		em = append(make([]byte, k-len(em)), em...)
	}
	return em, nil
}

var errDecryption = errors.New("p11: decryption error")

// oaepDecode removes OAEP padding from the raw RSA output em (k bytes), RFC 8017 §7.1.2
// step 3, without branches on secret data until the final verdict.
func oaepDecode(em []byte, hf, mgf crypto.Hash, label []byte) ([]byte, error) {
	hLen := hf.Size()
	k := len(em)
	if k < 2*hLen+2 {
		return nil, errDecryption
	}
	h := hf.New()
	h.Write(label)
	lHash := h.Sum(nil)
	firstZero := subtle.ConstantTimeByteEq(em[0], 0)
	seed := append([]byte{}, em[1:1+hLen]...)
	db := append([]byte{}, em[1+hLen:]...)
	mgf1XOR(seed, mgf.New(), db)
	mgf1XOR(db, mgf.New(), seed)
	lHashGood := subtle.ConstantTimeCompare(db[:hLen], lHash)
	lookingForIndex, index, invalid := 1, 0, 0
	rest := db[hLen:]
	for i := 0; i < len(rest); i++ {
		equals0 := subtle.ConstantTimeByteEq(rest[i], 0)
		equals1 := subtle.ConstantTimeByteEq(rest[i], 1)
		index = subtle.ConstantTimeSelect(lookingForIndex&equals1, i, index)
		lookingForIndex = subtle.ConstantTimeSelect(equals1, 0, lookingForIndex)
		invalid = subtle.ConstantTimeSelect(lookingForIndex&^equals0, 1, invalid)
	}
	if firstZero&lHashGood&^invalid&^lookingForIndex != 1 {
		return nil, errDecryption
	}
	return append([]byte{}, rest[index+1:]...), nil
}

// pkcs1Unpad removes PKCS#1 v1.5 type 2 padding from em in constant time. On bad padding
// it returns a synthetic message derived from kdk and em (implicit rejection), so the
// caller sees no difference between valid and invalid ciphertexts: the same code path,
// the same timing, no error.
func pkcs1Unpad(em []byte, kdk []byte) []byte {
	k := len(em)
	// Synthetic message: length and bytes from a PRF over the ciphertext block.
	mac := hmac.New(sha256.New, kdk)
	mac.Write(em)
	seed := mac.Sum(nil)
	synth := make([]byte, k)
	for off, ctr := 0, uint32(0); off < k; ctr++ {
		m2 := hmac.New(sha256.New, seed)
		var c [4]byte
		binary.BigEndian.PutUint32(c[:], ctr)
		m2.Write(c[:])
		off += copy(synth[off:], m2.Sum(nil))
	}
	maxLen := k - 11
	synthLen := 0
	if maxLen > 0 {
		synthLen = int(binary.BigEndian.Uint16(seed[:2])) % (maxLen + 1)
	}

	good := 0
	if k >= 11 {
		good = subtle.ConstantTimeByteEq(em[0], 0) & subtle.ConstantTimeByteEq(em[1], 2)
	}
	lookingForIndex, index := 1, 0
	for i := 2; i < k; i++ {
		eq0 := subtle.ConstantTimeByteEq(em[i], 0)
		index = subtle.ConstantTimeSelect(lookingForIndex&eq0, i, index)
		lookingForIndex = subtle.ConstantTimeSelect(eq0, 0, lookingForIndex)
	}
	// At least eight non-zero padding bytes.
	validPS := subtle.ConstantTimeLessOrEq(2+8, index)
	good &= ^lookingForIndex & 1 & validPS
	msgLen := k - index - 1
	outLen := subtle.ConstantTimeSelect(good, msgLen, synthLen)
	// Copy the real message (right-aligned in em) or the synthetic one without branching.
	out := make([]byte, k)
	for i := 0; i < k; i++ {
		out[i] = byte(subtle.ConstantTimeSelect(good, int(em[i]), int(synth[i])))
	}
	// The message is the last outLen bytes of out.
	res := make([]byte, outLen)
	copy(res, out[k-outLen:])
	return res
}

// pkcs1Type1Unpad removes PKCS#1 v1.5 type 1 (signature) padding (verify-recover).
func pkcs1Type1Unpad(em []byte) ([]byte, bool) {
	if len(em) < 11 || em[0] != 0 || em[1] != 1 {
		return nil, false
	}
	i := 2
	for i < len(em) && em[i] == 0xFF {
		i++
	}
	if i < 10 || i >= len(em) || em[i] != 0 {
		return nil, false
	}
	return em[i+1:], true
}

// rsaPublic computes s^e mod n, left-padded to the modulus length.
func rsaPublic(n *big.Int, e int, s []byte) ([]byte, bool) {
	c := new(big.Int).SetBytes(s)
	if c.Cmp(n) >= 0 {
		return nil, false
	}
	m := new(big.Int).Exp(c, big.NewInt(int64(e)), n)
	k := (n.BitLen() + 7) / 8
	return m.FillBytes(make([]byte, k)), true
}

// leftPad pads b with zeros to k bytes.
func leftPad(b []byte, k int) []byte {
	if len(b) >= k {
		return b
	}
	return append(make([]byte, k-len(b)), b...)
}

var (
	kdkMu sync.Mutex
	kdks  = map[string][]byte{}
)

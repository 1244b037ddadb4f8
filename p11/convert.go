package main

/*
#include "pkcs11.h"
*/
import "C"

import (
	"strings"
	"unicode/utf8"
	"unsafe"

	"github.com/p11-card/p11-card/cards"
	"github.com/p11-card/p11-card/p11/internal/core"
)

// maxLen bounds every length the caller gives: nothing a card handles comes near it.
const maxLen = 1 << 28

// ckLen converts a CK_ULONG length with a bound check.
func ckLen(n C.CK_ULONG) (int, bool) {
	if uint64(n) > maxLen {
		return 0, false
	}
	return int(n), true
}

// goBytes copies a caller's buffer into Go memory; NULL with a zero length is an empty
// slice. ok is false for NULL with a length, or an absurd length.
func goBytes(p C.CK_BYTE_PTR, n C.CK_ULONG) ([]byte, bool) {
	l, ok := ckLen(n)
	if !ok || (p == nil && l != 0) {
		return nil, false
	}
	b := make([]byte, l)
	if l > 0 {
		copy(b, unsafe.Slice((*byte)(unsafe.Pointer(p)), l))
	}
	return b, true
}

// pinBytes copies a PIN; NULL (PIN pad) gives nil.
func pinBytes(p C.CK_UTF8CHAR_PTR, n C.CK_ULONG) ([]byte, bool) {
	if p == nil {
		return nil, true
	}
	return goBytes((*C.CK_BYTE)(unsafe.Pointer(p)), n)
}

// template copies a CK_ATTRIBUTE array.
func template(p C.CK_ATTRIBUTE_PTR, n C.CK_ULONG) ([]core.Attr, bool) {
	l, ok := ckLen(n)
	if !ok || (p == nil && l != 0) || l > 4096 {
		return nil, false
	}
	if l == 0 {
		return nil, true
	}
	in := unsafe.Slice(p, l)
	out := make([]core.Attr, l)
	for i, a := range in {
		v, ok := goBytes((*C.CK_BYTE)(a.pValue), a.ulValueLen)
		if !ok {
			return nil, false
		}
		out[i] = core.Attr{Type: uint64(a._type), Value: v}
	}
	return out, true
}

// capacity is the size of an output buffer: -1 for a NULL buffer (length query).
func capacity(buf C.CK_BYTE_PTR, plen C.CK_ULONG_PTR) int {
	if buf == nil {
		return -1
	}
	if uint64(*plen) > maxLen {
		return maxLen
	}
	return int(*plen)
}

// putOut is the one output routine: with CKR_OK or CKR_BUFFER_TOO_SMALL it sets the
// length, and with CKR_OK and a buffer it copies.
func putOut(out []byte, err error, buf C.CK_BYTE_PTR, plen C.CK_ULONG_PTR) C.CK_RV {
	rv := core.RV(err)
	if rv != core.CKR_OK && rv != core.CKR_BUFFER_TOO_SMALL {
		return C.CK_RV(rv)
	}
	*plen = C.CK_ULONG(len(out))
	if rv == core.CKR_OK && buf != nil && len(out) > 0 {
		copy(unsafe.Slice((*byte)(unsafe.Pointer(buf)), len(out)), out)
	}
	return C.CK_RV(rv)
}

// putULongs returns a CK_ULONG list with the same size-query rules.
func putULongs(vals []uint64, buf *C.CK_ULONG, pcount C.CK_ULONG_PTR) C.CK_RV {
	n := len(vals)
	if buf == nil {
		*pcount = C.CK_ULONG(n)
		return C.CKR_OK
	}
	if uint64(*pcount) < uint64(n) {
		*pcount = C.CK_ULONG(n)
		return C.CKR_BUFFER_TOO_SMALL
	}
	dst := unsafe.Slice(buf, n)
	for i, v := range vals {
		dst[i] = C.CK_ULONG(v)
	}
	*pcount = C.CK_ULONG(n)
	return C.CKR_OK
}

// padded fills a fixed blank-padded field (no NUL), cutting at a character boundary.
func padded(dst []C.CK_UTF8CHAR, s string) {
	for len(s) > len(dst) || !utf8.ValidString(s) {
		if !utf8.ValidString(s) {
			s = strings.ToValidUTF8(s, "?")
			continue
		}
		s = s[:len(s)-1]
		for len(s) > 0 && !utf8.ValidString(s) {
			s = s[:len(s)-1]
		}
	}
	for i := range dst {
		dst[i] = ' '
	}
	for i := 0; i < len(s); i++ {
		dst[i] = C.CK_UTF8CHAR(s[i])
	}
}

func version(v cards.Version) C.CK_VERSION {
	return C.CK_VERSION{major: C.CK_BYTE(clamp(v.Major)), minor: C.CK_BYTE(clamp(v.Minor))}
}

func clamp(n int) int { return min(max(n, 0), 255) }

// mechanism copies a CK_MECHANISM and decodes the parameters of the mechanisms we know.
func mechanism(p C.CK_MECHANISM_PTR) (core.Mechanism, C.CK_RV) {
	if p == nil {
		return core.Mechanism{}, C.CKR_ARGUMENTS_BAD
	}
	m := core.Mechanism{Type: uint64(p.mechanism)}
	plen, ok := ckLen(p.ulParameterLen)
	if !ok || (p.pParameter == nil && plen != 0) {
		return m, C.CKR_ARGUMENTS_BAD
	}
	if p.pParameter == nil {
		return m, C.CKR_OK
	}
	bad := core.Mechanism{}
	switch m.Type {
	case core.CKM_RSA_PKCS_PSS, core.CKM_SHA1_RSA_PKCS_PSS, core.CKM_SHA224_RSA_PKCS_PSS, core.CKM_SHA256_RSA_PKCS_PSS, core.CKM_SHA384_RSA_PKCS_PSS, core.CKM_SHA512_RSA_PKCS_PSS:
		if plen != C.sizeof_CK_RSA_PKCS_PSS_PARAMS {
			return bad, C.CKR_MECHANISM_PARAM_INVALID
		}
		q := (*C.CK_RSA_PKCS_PSS_PARAMS)(p.pParameter)
		m.PSS = &core.PSSParams{Hash: uint64(q.hashAlg), MGF: uint64(q.mgf), SaltLen: uint64(q.sLen)}
	case core.CKM_RSA_PKCS_OAEP:
		if plen != C.sizeof_CK_RSA_PKCS_OAEP_PARAMS {
			return bad, C.CKR_MECHANISM_PARAM_INVALID
		}
		q := (*C.CK_RSA_PKCS_OAEP_PARAMS)(p.pParameter)
		label, ok := goBytes((*C.CK_BYTE)(q.pSourceData), q.ulSourceDataLen)
		if !ok {
			return bad, C.CKR_MECHANISM_PARAM_INVALID
		}
		m.OAEP = &core.OAEPParams{Hash: uint64(q.hashAlg), MGF: uint64(q.mgf), Source: uint64(q.source), Label: label}
	case core.CKM_ECDH1_DERIVE:
		if plen != C.sizeof_CK_ECDH1_DERIVE_PARAMS {
			return bad, C.CKR_MECHANISM_PARAM_INVALID
		}
		q := (*C.CK_ECDH1_DERIVE_PARAMS)(p.pParameter)
		shared, ok1 := goBytes(q.pSharedData, q.ulSharedDataLen)
		pub, ok2 := goBytes(q.pPublicData, q.ulPublicDataLen)
		if !ok1 || !ok2 {
			return bad, C.CKR_MECHANISM_PARAM_INVALID
		}
		m.ECDH = &core.ECDHParams{KDF: uint64(q.kdf), SharedData: shared, PublicData: pub}
	case core.CKM_EDDSA:
		if plen != C.sizeof_CK_EDDSA_PARAMS {
			return bad, C.CKR_MECHANISM_PARAM_INVALID
		}
		q := (*C.CK_EDDSA_PARAMS)(p.pParameter)
		if q.phFlag != 0 || q.ulContextDataLen != 0 {
			return bad, C.CKR_MECHANISM_PARAM_INVALID // only pure Ed25519
		}
	default:
		b, ok := goBytes((*C.CK_BYTE)(p.pParameter), p.ulParameterLen)
		if !ok {
			return bad, C.CKR_ARGUMENTS_BAD
		}
		m.Param = b
	}
	return m, C.CKR_OK
}

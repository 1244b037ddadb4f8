package main

/*
#include "pkcs11.h"
#include "ops.h"
*/
import "C"

import (
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"strings"
	"time"
	"unsafe"

	"github.com/p11-card/p11-card/internal/trace"
	"github.com/p11-card/p11-card/p11/internal/core"
)

// guard, deferred first in every export with the time the call began, turns a panic into
// CKR_GENERAL_ERROR and logs the stack (never the arguments); the "p11" trace gives each
// call's return value and duration.
func guard(rv *C.CK_RV, start time.Time) {
	if r := recover(); r != nil {
		fmt.Fprintf(os.Stderr, "p11-card: internal error: %v\n%s", r, debug.Stack())
		*rv = C.CKR_GENERAL_ERROR
	}
	if trace.On("p11") {
		name := "?"
		if pc, _, _, ok := runtime.Caller(1); ok {
			if f := runtime.FuncForPC(pc); f != nil {
				name = strings.TrimPrefix(f.Name(), "main.")
			}
		}
		trace.Printf("p11", "%s -> %s (%v)", name, core.RVName(uint64(*rv)), time.Since(start).Round(time.Microsecond))
	}
}

func rvOf(err error) C.CK_RV { return C.CK_RV(core.RV(err)) }

//export p11Initialize
func p11Initialize(args C.CK_VOID_PTR) (rv C.CK_RV) {
	defer guard(&rv, time.Now())
	if args != nil {
		a := (*C.CK_C_INITIALIZE_ARGS)(args)
		if a.pReserved != nil {
			return C.CKR_ARGUMENTS_BAD
		}
		n := 0
		for _, f := range []bool{a.CreateMutex != nil, a.DestroyMutex != nil, a.LockMutex != nil, a.UnlockMutex != nil} {
			if f {
				n++
			}
		}
		if n != 0 && n != 4 {
			return C.CKR_ARGUMENTS_BAD
		}
		// CKF_LIBRARY_CANT_CREATE_OS_THREADS: the Go runtime's threads exist from the
		// moment the library is loaded, before any C_Initialize, and we start no thread
		// that calls the application. GnuTLS (through p11-kit) sets the flag and cannot
		// use a module that refuses it, as OpenSC and ykcs11 do not; so it is accepted.
		if n == 4 && a.flags&C.CKF_OS_LOCKING_OK == 0 {
			return C.CKR_CANT_LOCK
		}
	}
	return rvOf(mod.Initialize())
}

//export p11Finalize
func p11Finalize(reserved C.CK_VOID_PTR) (rv C.CK_RV) {
	defer guard(&rv, time.Now())
	if reserved != nil {
		return C.CKR_ARGUMENTS_BAD
	}
	return rvOf(mod.Finalize())
}

//export p11GetInfo
func p11GetInfo(info C.CK_INFO_PTR) (rv C.CK_RV) {
	defer guard(&rv, time.Now())
	if info == nil {
		return C.CKR_ARGUMENTS_BAD
	}
	in, err := mod.Info()
	if err != nil {
		return rvOf(err)
	}
	*info = C.CK_INFO{}
	info.cryptokiVersion = C.CK_VERSION{major: 2, minor: 40}
	padded(info.manufacturerID[:], in.Manufacturer)
	padded(info.libraryDescription[:], in.Description)
	info.libraryVersion = version(in.Version)
	return C.CKR_OK
}

//export p11GetSlotList
func p11GetSlotList(present C.CK_BBOOL, list C.CK_SLOT_ID_PTR, count C.CK_ULONG_PTR) (rv C.CK_RV) {
	defer guard(&rv, time.Now())
	if count == nil {
		return C.CKR_ARGUMENTS_BAD
	}
	ids, err := mod.SlotList(present != 0, list == nil)
	if err != nil {
		return rvOf(err)
	}
	return putULongs(ids, (*C.CK_ULONG)(list), count)
}

//export p11GetSlotInfo
func p11GetSlotInfo(slot C.CK_SLOT_ID, info C.CK_SLOT_INFO_PTR) (rv C.CK_RV) {
	defer guard(&rv, time.Now())
	if info == nil {
		return C.CKR_ARGUMENTS_BAD
	}
	si, err := mod.SlotInfo(uint64(slot))
	if err != nil {
		return rvOf(err)
	}
	*info = C.CK_SLOT_INFO{}
	padded(info.slotDescription[:], si.Description)
	padded(info.manufacturerID[:], si.Manufacturer)
	info.flags = C.CK_FLAGS(si.Flags)
	info.hardwareVersion = version(si.Firmware)
	info.firmwareVersion = version(si.Firmware)
	return C.CKR_OK
}

//export p11GetTokenInfo
func p11GetTokenInfo(slot C.CK_SLOT_ID, info C.CK_TOKEN_INFO_PTR) (rv C.CK_RV) {
	defer guard(&rv, time.Now())
	if info == nil {
		return C.CKR_ARGUMENTS_BAD
	}
	ti, err := mod.TokenInfo(uint64(slot))
	if err != nil {
		return rvOf(err)
	}
	*info = C.CK_TOKEN_INFO{}
	padded(info.label[:], ti.Label)
	padded(info.manufacturerID[:], ti.Manufacturer)
	padded(info.model[:], ti.Model)
	padded(info.serialNumber[:], ti.Serial)
	info.flags = C.CK_FLAGS(ti.Flags)
	info.ulMaxSessionCount = C.CK_EFFECTIVELY_INFINITE
	info.ulSessionCount = C.CK_ULONG(ti.SessionCount)
	info.ulMaxRwSessionCount = C.CK_EFFECTIVELY_INFINITE
	info.ulRwSessionCount = C.CK_ULONG(ti.RWSessionCount)
	info.ulMaxPinLen = C.CK_ULONG(ti.MaxPIN)
	info.ulMinPinLen = C.CK_ULONG(ti.MinPIN)
	info.ulTotalPublicMemory = C.CK_UNAVAILABLE_INFORMATION
	info.ulFreePublicMemory = C.CK_UNAVAILABLE_INFORMATION
	info.ulTotalPrivateMemory = C.CK_UNAVAILABLE_INFORMATION
	info.ulFreePrivateMemory = C.CK_UNAVAILABLE_INFORMATION
	info.hardwareVersion = version(ti.Firmware)
	info.firmwareVersion = version(ti.Firmware)
	padded(info.utcTime[:], "")
	return C.CKR_OK
}

//export p11GetMechanismList
func p11GetMechanismList(slot C.CK_SLOT_ID, list C.CK_MECHANISM_TYPE_PTR, count C.CK_ULONG_PTR) (rv C.CK_RV) {
	defer guard(&rv, time.Now())
	if count == nil {
		return C.CKR_ARGUMENTS_BAD
	}
	ms, err := mod.Mechanisms(uint64(slot))
	if err != nil {
		return rvOf(err)
	}
	return putULongs(ms, (*C.CK_ULONG)(list), count)
}

//export p11GetMechanismInfo
func p11GetMechanismInfo(slot C.CK_SLOT_ID, typ C.CK_MECHANISM_TYPE, info C.CK_MECHANISM_INFO_PTR) (rv C.CK_RV) {
	defer guard(&rv, time.Now())
	if info == nil {
		return C.CKR_ARGUMENTS_BAD
	}
	mi, err := mod.MechanismInfo(uint64(slot), uint64(typ))
	if err != nil {
		return rvOf(err)
	}
	info.ulMinKeySize = C.CK_ULONG(mi.Min)
	info.ulMaxKeySize = C.CK_ULONG(mi.Max)
	info.flags = C.CK_FLAGS(mi.Flags)
	return C.CKR_OK
}

//export p11InitToken
func p11InitToken(slot C.CK_SLOT_ID, pin C.CK_UTF8CHAR_PTR, pinLen C.CK_ULONG, label C.CK_UTF8CHAR_PTR) (rv C.CK_RV) {
	defer guard(&rv, time.Now())
	if !mod.Initialized() {
		return C.CKR_CRYPTOKI_NOT_INITIALIZED
	}
	if label == nil {
		return C.CKR_ARGUMENTS_BAD
	}
	return rvOf(mod.InitToken(uint64(slot)))
}

//export p11InitPIN
func p11InitPIN(h C.CK_SESSION_HANDLE, pin C.CK_UTF8CHAR_PTR, pinLen C.CK_ULONG) (rv C.CK_RV) {
	defer guard(&rv, time.Now())
	p, ok := pinBytes(pin, pinLen)
	if !ok {
		return C.CKR_ARGUMENTS_BAD
	}
	defer clear(p)
	return rvOf(mod.InitPIN(uint64(h), p))
}

//export p11SetPIN
func p11SetPIN(h C.CK_SESSION_HANDLE, old C.CK_UTF8CHAR_PTR, oldLen C.CK_ULONG, new C.CK_UTF8CHAR_PTR, newLen C.CK_ULONG) (rv C.CK_RV) {
	defer guard(&rv, time.Now())
	o, ok1 := pinBytes(old, oldLen)
	n, ok2 := pinBytes(new, newLen)
	defer clear(o)
	defer clear(n)
	if !ok1 || !ok2 {
		return C.CKR_ARGUMENTS_BAD
	}
	return rvOf(mod.SetPIN(uint64(h), o, n))
}

//export p11OpenSession
func p11OpenSession(slot C.CK_SLOT_ID, flags C.CK_FLAGS, ph C.CK_SESSION_HANDLE_PTR) (rv C.CK_RV) {
	defer guard(&rv, time.Now())
	if ph == nil {
		return C.CKR_ARGUMENTS_BAD
	}
	h, err := mod.OpenSession(uint64(slot), uint64(flags))
	if err != nil {
		return rvOf(err)
	}
	*ph = C.CK_SESSION_HANDLE(h)
	return C.CKR_OK
}

//export p11CloseSession
func p11CloseSession(h C.CK_SESSION_HANDLE) (rv C.CK_RV) {
	defer guard(&rv, time.Now())
	return rvOf(mod.CloseSession(uint64(h)))
}

//export p11CloseAllSessions
func p11CloseAllSessions(slot C.CK_SLOT_ID) (rv C.CK_RV) {
	defer guard(&rv, time.Now())
	return rvOf(mod.CloseAllSessions(uint64(slot)))
}

//export p11GetSessionInfo
func p11GetSessionInfo(h C.CK_SESSION_HANDLE, info C.CK_SESSION_INFO_PTR) (rv C.CK_RV) {
	defer guard(&rv, time.Now())
	if info == nil {
		return C.CKR_ARGUMENTS_BAD
	}
	si, err := mod.SessionInfo(uint64(h))
	if err != nil {
		return rvOf(err)
	}
	info.slotID = C.CK_SLOT_ID(si.Slot)
	info.state = C.CK_STATE(si.State)
	info.flags = C.CK_FLAGS(si.Flags)
	info.ulDeviceError = 0
	return C.CKR_OK
}

// p11Unsupported answers functions no card here can do, after the session check.
//
//export p11Unsupported
func p11Unsupported(h C.CK_SESSION_HANDLE) (rv C.CK_RV) {
	defer guard(&rv, time.Now())
	if _, err := mod.SessionInfo(uint64(h)); err != nil {
		return rvOf(err)
	}
	return C.CKR_FUNCTION_NOT_SUPPORTED
}

// p11Legacy answers C_GetFunctionStatus and C_CancelFunction.
//
//export p11Legacy
func p11Legacy(h C.CK_SESSION_HANDLE) (rv C.CK_RV) {
	defer guard(&rv, time.Now())
	if _, err := mod.SessionInfo(uint64(h)); err != nil {
		return rvOf(err)
	}
	return C.CKR_FUNCTION_NOT_PARALLEL
}

//export p11Login
func p11Login(h C.CK_SESSION_HANDLE, user C.CK_USER_TYPE, pin C.CK_UTF8CHAR_PTR, pinLen C.CK_ULONG) (rv C.CK_RV) {
	defer guard(&rv, time.Now())
	p, ok := pinBytes(pin, pinLen)
	defer clear(p)
	if !ok {
		return C.CKR_ARGUMENTS_BAD
	}
	return rvOf(mod.Login(uint64(h), uint64(user), p))
}

//export p11LoginUser
func p11LoginUser(h C.CK_SESSION_HANDLE, user C.CK_USER_TYPE, pin C.CK_UTF8CHAR_PTR, pinLen C.CK_ULONG, name C.CK_UTF8CHAR_PTR, nameLen C.CK_ULONG) (rv C.CK_RV) {
	defer guard(&rv, time.Now())
	// Cards have no user names: a name is ignored, as 3.0 allows for tokens without them.
	return p11Login(h, user, pin, pinLen)
}

//export p11SessionCancel
func p11SessionCancel(h C.CK_SESSION_HANDLE, flags C.CK_FLAGS) (rv C.CK_RV) {
	defer guard(&rv, time.Now())
	return rvOf(mod.SessionCancel(uint64(h), uint64(flags)))
}

//export p11Logout
func p11Logout(h C.CK_SESSION_HANDLE) (rv C.CK_RV) {
	defer guard(&rv, time.Now())
	return rvOf(mod.Logout(uint64(h)))
}

//export p11CreateObject
func p11CreateObject(h C.CK_SESSION_HANDLE, tmpl C.CK_ATTRIBUTE_PTR, n C.CK_ULONG, ph C.CK_OBJECT_HANDLE_PTR) (rv C.CK_RV) {
	defer guard(&rv, time.Now())
	t, ok := template(tmpl, n)
	if !ok || ph == nil {
		return C.CKR_ARGUMENTS_BAD
	}
	o, err := mod.CreateObject(uint64(h), t)
	if err != nil {
		return rvOf(err)
	}
	*ph = C.CK_OBJECT_HANDLE(o)
	return C.CKR_OK
}

//export p11CopyObject
func p11CopyObject(h C.CK_SESSION_HANDLE, obj C.CK_OBJECT_HANDLE, tmpl C.CK_ATTRIBUTE_PTR, n C.CK_ULONG, ph C.CK_OBJECT_HANDLE_PTR) (rv C.CK_RV) {
	defer guard(&rv, time.Now())
	t, ok := template(tmpl, n)
	if !ok || ph == nil {
		return C.CKR_ARGUMENTS_BAD
	}
	o, err := mod.CopyObject(uint64(h), uint64(obj), t)
	if err != nil {
		return rvOf(err)
	}
	*ph = C.CK_OBJECT_HANDLE(o)
	return C.CKR_OK
}

//export p11DestroyObject
func p11DestroyObject(h C.CK_SESSION_HANDLE, obj C.CK_OBJECT_HANDLE) (rv C.CK_RV) {
	defer guard(&rv, time.Now())
	return rvOf(mod.DestroyObject(uint64(h), uint64(obj)))
}

//export p11GetObjectSize
func p11GetObjectSize(h C.CK_SESSION_HANDLE, obj C.CK_OBJECT_HANDLE, size C.CK_ULONG_PTR) (rv C.CK_RV) {
	defer guard(&rv, time.Now())
	if size == nil {
		return C.CKR_ARGUMENTS_BAD
	}
	n, err := mod.ObjectSize(uint64(h), uint64(obj))
	if err != nil {
		return rvOf(err)
	}
	*size = C.CK_ULONG(n)
	return C.CKR_OK
}

//export p11GetAttributeValue
func p11GetAttributeValue(h C.CK_SESSION_HANDLE, obj C.CK_OBJECT_HANDLE, tmpl C.CK_ATTRIBUTE_PTR, n C.CK_ULONG) (rv C.CK_RV) {
	defer guard(&rv, time.Now())
	l, ok := ckLen(n)
	if !ok || (tmpl == nil && l != 0) || l > 4096 {
		return C.CKR_ARGUMENTS_BAD
	}
	var attrs []C.CK_ATTRIBUTE
	if l > 0 {
		attrs = unsafe.Slice(tmpl, l)
	}
	types := make([]uint64, l)
	for i := range attrs {
		types[i] = uint64(attrs[i]._type)
	}
	vals, err := mod.GetAttributeValue(uint64(h), uint64(obj), types)
	if err != nil {
		return rvOf(err)
	}
	rv = C.CKR_OK
	small := false
	for i := range attrs {
		a := &attrs[i]
		v := vals[i]
		switch {
		case v.RV != core.CKR_OK:
			a.ulValueLen = C.CK_UNAVAILABLE_INFORMATION
			rv = C.CK_RV(v.RV)
		case a.pValue == nil:
			a.ulValueLen = C.CK_ULONG(len(v.Value))
		case uint64(a.ulValueLen) < uint64(len(v.Value)):
			a.ulValueLen = C.CK_UNAVAILABLE_INFORMATION
			small = true
		default:
			if len(v.Value) > 0 {
				copy(unsafe.Slice((*byte)(a.pValue), len(v.Value)), v.Value)
			}
			a.ulValueLen = C.CK_ULONG(len(v.Value))
		}
	}
	if rv == C.CKR_OK && small {
		rv = C.CKR_BUFFER_TOO_SMALL
	}
	return rv
}

//export p11SetAttributeValue
func p11SetAttributeValue(h C.CK_SESSION_HANDLE, obj C.CK_OBJECT_HANDLE, tmpl C.CK_ATTRIBUTE_PTR, n C.CK_ULONG) (rv C.CK_RV) {
	defer guard(&rv, time.Now())
	t, ok := template(tmpl, n)
	if !ok {
		return C.CKR_ARGUMENTS_BAD
	}
	return rvOf(mod.SetAttributeValue(uint64(h), uint64(obj), t))
}

//export p11FindObjectsInit
func p11FindObjectsInit(h C.CK_SESSION_HANDLE, tmpl C.CK_ATTRIBUTE_PTR, n C.CK_ULONG) (rv C.CK_RV) {
	defer guard(&rv, time.Now())
	t, ok := template(tmpl, n)
	if !ok {
		return C.CKR_ARGUMENTS_BAD
	}
	return rvOf(mod.FindObjectsInit(uint64(h), t))
}

//export p11FindObjects
func p11FindObjects(h C.CK_SESSION_HANDLE, out C.CK_OBJECT_HANDLE_PTR, max C.CK_ULONG, count C.CK_ULONG_PTR) (rv C.CK_RV) {
	defer guard(&rv, time.Now())
	l, ok := ckLen(max)
	if !ok || count == nil || (out == nil && l != 0) {
		return C.CKR_ARGUMENTS_BAD
	}
	hs, err := mod.FindObjects(uint64(h), l)
	if err != nil {
		return rvOf(err)
	}
	if len(hs) > 0 {
		dst := unsafe.Slice(out, len(hs))
		for i, v := range hs {
			dst[i] = C.CK_OBJECT_HANDLE(v)
		}
	}
	*count = C.CK_ULONG(len(hs))
	return C.CKR_OK
}

//export p11FindObjectsFinal
func p11FindObjectsFinal(h C.CK_SESSION_HANDLE) (rv C.CK_RV) {
	defer guard(&rv, time.Now())
	return rvOf(mod.FindObjectsFinal(uint64(h)))
}

//export p11OpInit
func p11OpInit(h C.CK_SESSION_HANDLE, op C.int, mp C.CK_MECHANISM_PTR, key C.CK_OBJECT_HANDLE) (rv C.CK_RV) {
	defer guard(&rv, time.Now())
	m, r := mechanism(mp)
	if r != C.CKR_OK {
		return r
	}
	hh, k := uint64(h), uint64(key)
	switch op {
	case C.OP_SIGN:
		return rvOf(mod.SignInit(hh, m, k))
	case C.OP_VERIFY:
		return rvOf(mod.VerifyInit(hh, m, k))
	case C.OP_ENCRYPT:
		return rvOf(mod.EncryptInit(hh, m, k))
	case C.OP_DECRYPT:
		return rvOf(mod.DecryptInit(hh, m, k))
	case C.OP_DIGEST:
		return rvOf(mod.DigestInit(hh, m))
	case C.OP_SIGN_RECOVER:
		return rvOf(mod.SignRecoverInit(hh, m, k))
	case C.OP_VERIFY_RECOVER:
		return rvOf(mod.VerifyRecoverInit(hh, m, k))
	}
	return C.CKR_GENERAL_ERROR
}

//export p11OpData
func p11OpData(h C.CK_SESSION_HANDLE, op C.int, in C.CK_BYTE_PTR, inLen C.CK_ULONG, out C.CK_BYTE_PTR, outLen C.CK_ULONG_PTR) (rv C.CK_RV) {
	defer guard(&rv, time.Now())
	data, ok := goBytes(in, inLen)
	if !ok || outLen == nil {
		return C.CKR_ARGUMENTS_BAD
	}
	hh, c := uint64(h), capacity(out, outLen)
	var res []byte
	var err error
	switch op {
	case C.OP_SIGN:
		res, err = mod.Sign(hh, data, c)
	case C.OP_ENCRYPT:
		res, err = mod.Encrypt(hh, data, c)
	case C.OP_DECRYPT:
		res, err = mod.Decrypt(hh, data, c)
	case C.OP_DIGEST:
		res, err = mod.Digest(hh, data, c)
	case C.OP_SIGN_RECOVER:
		res, err = mod.SignRecover(hh, data, c)
	case C.OP_VERIFY_RECOVER:
		res, err = mod.VerifyRecover(hh, data, c)
	default:
		return C.CKR_GENERAL_ERROR
	}
	return putOut(res, err, out, outLen)
}

//export p11OpUpdate
func p11OpUpdate(h C.CK_SESSION_HANDLE, op C.int, in C.CK_BYTE_PTR, inLen C.CK_ULONG) (rv C.CK_RV) {
	defer guard(&rv, time.Now())
	data, ok := goBytes(in, inLen)
	if !ok {
		return C.CKR_ARGUMENTS_BAD
	}
	hh := uint64(h)
	switch op {
	case C.OP_SIGN:
		return rvOf(mod.SignUpdate(hh, data))
	case C.OP_VERIFY:
		return rvOf(mod.VerifyUpdate(hh, data))
	case C.OP_DIGEST:
		return rvOf(mod.DigestUpdate(hh, data))
	case C.OP_ENCRYPT:
		return rvOf(mod.EncryptUpdate(hh))
	case C.OP_DECRYPT:
		return rvOf(mod.DecryptUpdate(hh))
	}
	return C.CKR_GENERAL_ERROR
}

//export p11OpFinal
func p11OpFinal(h C.CK_SESSION_HANDLE, op C.int, out C.CK_BYTE_PTR, outLen C.CK_ULONG_PTR) (rv C.CK_RV) {
	defer guard(&rv, time.Now())
	if outLen == nil {
		return C.CKR_ARGUMENTS_BAD
	}
	hh, c := uint64(h), capacity(out, outLen)
	var res []byte
	var err error
	switch op {
	case C.OP_SIGN:
		res, err = mod.SignFinal(hh, c)
	case C.OP_DIGEST:
		res, err = mod.DigestFinal(hh, c)
	case C.OP_ENCRYPT:
		err = mod.EncryptUpdate(hh)
	case C.OP_DECRYPT:
		err = mod.DecryptUpdate(hh)
	default:
		return C.CKR_GENERAL_ERROR
	}
	return putOut(res, err, out, outLen)
}

//export p11Verify
func p11Verify(h C.CK_SESSION_HANDLE, in C.CK_BYTE_PTR, inLen C.CK_ULONG, sig C.CK_BYTE_PTR, sigLen C.CK_ULONG) (rv C.CK_RV) {
	defer guard(&rv, time.Now())
	data, ok1 := goBytes(in, inLen)
	s, ok2 := goBytes(sig, sigLen)
	if !ok1 || !ok2 {
		return C.CKR_ARGUMENTS_BAD
	}
	return rvOf(mod.Verify(uint64(h), data, s))
}

//export p11VerifyFinal
func p11VerifyFinal(h C.CK_SESSION_HANDLE, sig C.CK_BYTE_PTR, sigLen C.CK_ULONG) (rv C.CK_RV) {
	defer guard(&rv, time.Now())
	s, ok := goBytes(sig, sigLen)
	if !ok {
		return C.CKR_ARGUMENTS_BAD
	}
	return rvOf(mod.VerifyFinal(uint64(h), s))
}

//export p11DigestKey
func p11DigestKey(h C.CK_SESSION_HANDLE, key C.CK_OBJECT_HANDLE) (rv C.CK_RV) {
	defer guard(&rv, time.Now())
	return rvOf(mod.DigestKey(uint64(h), uint64(key)))
}

//export p11GenerateKeyPair
func p11GenerateKeyPair(h C.CK_SESSION_HANDLE, mp C.CK_MECHANISM_PTR, pubT C.CK_ATTRIBUTE_PTR, pubN C.CK_ULONG, privT C.CK_ATTRIBUTE_PTR, privN C.CK_ULONG, pubH, privH C.CK_OBJECT_HANDLE_PTR) (rv C.CK_RV) {
	defer guard(&rv, time.Now())
	m, r := mechanism(mp)
	if r != C.CKR_OK {
		return r
	}
	pt, ok1 := template(pubT, pubN)
	qt, ok2 := template(privT, privN)
	if !ok1 || !ok2 || pubH == nil || privH == nil {
		return C.CKR_ARGUMENTS_BAD
	}
	ph, qh, err := mod.GenerateKeyPair(uint64(h), m, pt, qt)
	if err != nil {
		return rvOf(err)
	}
	*pubH, *privH = C.CK_OBJECT_HANDLE(ph), C.CK_OBJECT_HANDLE(qh)
	return C.CKR_OK
}

//export p11DeriveKey
func p11DeriveKey(h C.CK_SESSION_HANDLE, mp C.CK_MECHANISM_PTR, base C.CK_OBJECT_HANDLE, tmpl C.CK_ATTRIBUTE_PTR, n C.CK_ULONG, ph C.CK_OBJECT_HANDLE_PTR) (rv C.CK_RV) {
	defer guard(&rv, time.Now())
	m, r := mechanism(mp)
	if r != C.CKR_OK {
		return r
	}
	t, ok := template(tmpl, n)
	if !ok || ph == nil {
		return C.CKR_ARGUMENTS_BAD
	}
	o, err := mod.DeriveKey(uint64(h), m, uint64(base), t)
	if err != nil {
		return rvOf(err)
	}
	*ph = C.CK_OBJECT_HANDLE(o)
	return C.CKR_OK
}

//export p11SeedRandom
func p11SeedRandom(h C.CK_SESSION_HANDLE, seed C.CK_BYTE_PTR, n C.CK_ULONG) (rv C.CK_RV) {
	defer guard(&rv, time.Now())
	if _, ok := goBytes(seed, n); !ok {
		return C.CKR_ARGUMENTS_BAD
	}
	if _, err := mod.SessionInfo(uint64(h)); err != nil {
		return rvOf(err)
	}
	return C.CKR_RANDOM_SEED_NOT_SUPPORTED
}

//export p11GenerateRandom
func p11GenerateRandom(h C.CK_SESSION_HANDLE, out C.CK_BYTE_PTR, n C.CK_ULONG) (rv C.CK_RV) {
	defer guard(&rv, time.Now())
	l, ok := ckLen(n)
	if !ok || (out == nil && l != 0) {
		return C.CKR_ARGUMENTS_BAD
	}
	b, err := mod.GenerateRandom(uint64(h), l)
	if err != nil {
		return rvOf(err)
	}
	if l > 0 {
		copy(unsafe.Slice((*byte)(unsafe.Pointer(out)), l), b)
	}
	return C.CKR_OK
}

//export p11WaitForSlotEvent
func p11WaitForSlotEvent(flags C.CK_FLAGS, slot C.CK_SLOT_ID_PTR, reserved C.CK_VOID_PTR) (rv C.CK_RV) {
	defer guard(&rv, time.Now())
	if slot == nil || reserved != nil {
		return C.CKR_ARGUMENTS_BAD
	}
	id, err := mod.WaitForSlotEvent(flags&C.CKF_DONT_BLOCK != 0)
	if err != nil {
		return rvOf(err)
	}
	*slot = C.CK_SLOT_ID(id)
	return C.CKR_OK
}

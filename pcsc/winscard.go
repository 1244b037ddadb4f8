package pcsc

// The C boundary: one thin wrapper per SCard* call, returning Go values and the raw code.
// Everything above works with these and never sees a C type. Each wrapper counts the call
// (Stats), traces it under "pcsc" and passes the gate (gate.go) that keeps libpcsclite's
// handle lookups apart from the calls that change its handle lists.
//
// These wrappers call libpcsclite directly instead of through github.com/ebfe/scard: its
// GetStatusChange writes a package-global map without a lock (a data race between two
// contexts waiting at once), drops the ATR field on removal, and its Transmit panics on a
// protocol other than T=0/T=1. The PC/SC API itself is small and stable.

/*
#cgo pkg-config: libpcsclite
#include <stdlib.h>
#include <string.h>
#include <winscard.h>
#include <reader.h>
#include "early.h"
int p11_pcsc_take_early(SCARDCONTEXT *h);

static LONG p11_transmit(SCARDHANDLE h, DWORD proto, const BYTE *cmd, DWORD n, BYTE *rsp, DWORD *rlen) {
	SCARD_IO_REQUEST pci;
	pci.dwProtocol = proto;
	pci.cbPciLength = sizeof(pci);
	return SCardTransmit(h, &pci, cmd, n, NULL, rsp, rlen);
}

// p11_list_readers lets libpcsclite size the list: one request to pcscd, where a size
// query and a read take two.
static LONG p11_list_readers(SCARDCONTEXT h, char **out, DWORD *n) {
	*n = SCARD_AUTOALLOCATE;
	return SCardListReaders(h, NULL, (LPSTR)out, n);
}

static SCARD_READERSTATE *p11_states(size_t n) {
	return (SCARD_READERSTATE *)calloc(n ? n : 1, sizeof(SCARD_READERSTATE));
}

static void p11_free_states(SCARD_READERSTATE *rs, size_t n) {
	for (size_t i = 0; i < n; i++) free((void *)rs[i].szReader);
	free(rs);
}
*/
import "C"

import (
	"fmt"
	"sync"
	"time"
	"unsafe"

	"github.com/p11-card/p11-card/internal/trace"
)

const (
	scopeSystem   = C.SCARD_SCOPE_SYSTEM
	shareShared   = C.SCARD_SHARE_SHARED
	protoT0       = C.SCARD_PROTOCOL_T0
	protoT1       = C.SCARD_PROTOCOL_T1
	leaveCard     = C.SCARD_LEAVE_CARD
	resetCard     = C.SCARD_RESET_CARD
	maxATR        = C.MAX_ATR_SIZE
	maxReaderName = C.MAX_READERNAME
	maxResponse   = C.MAX_BUFFER_SIZE_EXTENDED
	infinite      = C.INFINITE
	// ioctlGetFeatureRequest asks a reader for its PC/SC part 10 features.
	ioctlGetFeatureRequest = C.CM_IOCTL_GET_FEATURE_REQUEST
)

// ctxHandle and cardHandle are SCARDCONTEXT and SCARDHANDLE, kept as plain integers.
type (
	ctxHandle  uintptr
	cardHandle uintptr
)

func rc(r C.LONG) uint32 { return uint32(r) }

func traceCall(name string, start time.Time, code uint32, detail string) {
	if trace.On("pcsc") {
		trace.Printf("pcsc", "%s%s → %s (%v)", name, detail, codeName(code), time.Since(start).Round(time.Microsecond))
	}
}

func scEstablish() (ctxHandle, uint32) {
	stats.establish.Add(1)
	t := time.Now()
	var h C.SCARDCONTEXT
	if C.p11_pcsc_take_early(&h) != 0 {
		traceCall("SCardEstablishContext", t, codeSuccess, " (made in C_Initialize)")
		return ctxHandle(h), codeSuccess
	}
	scGate.lock()
	code := rc(C.SCardEstablishContext(scopeSystem, nil, nil, &h))
	scGate.unlock()
	traceCall("SCardEstablishContext", t, code, "")
	return ctxHandle(h), code
}

// openEarly opens the contexts early.c keeps, as the module's first C_Initialize does
// (tests).
func openEarly() { C.p11_pcsc_open_early() }

// ReleaseEarly releases the contexts the module's first C_Initialize opened (early.c)
// that no Establish or Connect took. The slot manager calls it once its start is done:
// they were opened for that start, and a context kept idle would only meet a pcscd
// restart unawares. A first C_Initialize refused for its arguments starts nothing, and
// releases them itself (p11_pcsc_drop_early) before it returns.
func ReleaseEarly() {
	var h C.SCARDCONTEXT
	for C.p11_pcsc_take_early(&h) != 0 {
		stats.establish.Add(1) // it was opened, in C
		scRelease(ctxHandle(h))
	}
}

func scRelease(h ctxHandle) uint32 {
	stats.release.Add(1)
	t := time.Now()
	scGate.lock()
	code := rc(C.SCardReleaseContext(C.SCARDCONTEXT(h)))
	scGate.unlock()
	traceCall("SCardReleaseContext", t, code, "")
	return code
}

func scCancel(h ctxHandle) uint32 {
	stats.cancel.Add(1)
	t := time.Now()
	code := rc(C.SCardCancel(C.SCARDCONTEXT(h)))
	traceCall("SCardCancel", t, code, "")
	return code
}

// scListReaders returns the reader names; SCARD_E_NO_READERS_AVAILABLE is passed up.
func scListReaders(h ctxHandle) ([]string, uint32) {
	stats.listReaders.Add(1)
	t := time.Now()
	var p *C.char
	var n C.DWORD
	code := rc(C.p11_list_readers(C.SCARDCONTEXT(h), &p, &n))
	traceCall("SCardListReaders", t, code, "")
	if code != 0 || p == nil {
		return nil, code
	}
	defer C.SCardFreeMemory(C.SCARDCONTEXT(h), C.LPCVOID(unsafe.Pointer(p)))
	if n == 0 {
		return nil, 0
	}
	return splitMultiString(C.GoBytes(unsafe.Pointer(p), C.int(min(n, 1<<20)))), 0
}

// splitMultiString decodes a PC/SC multi-string: NUL-terminated strings, ended by an
// empty one.
func splitMultiString(b []byte) []string {
	var out []string
	for len(b) > 0 {
		i := 0
		for i < len(b) && b[i] != 0 {
			i++
		}
		if i == 0 {
			break
		}
		out = append(out, string(b[:i]))
		if i == len(b) {
			break
		}
		b = b[i+1:]
	}
	return out
}

// scState is one entry of SCardGetStatusChange, in and out.
type scState struct {
	reader  string
	current uint32 // in: dwCurrentState
	event   uint32 // out: dwEventState
	atr     []byte // out
}

// scGetStatusChange blocks up to timeout (infinite for INFINITE) for a change in states.
func scGetStatusChange(h ctxHandle, timeout uint32, states []scState) uint32 {
	stats.getStatusChange.Add(1)
	t := time.Now()
	n := len(states)
	rs := C.p11_states(C.size_t(n))
	if rs == nil {
		return codeNoMemory
	}
	defer C.p11_free_states(rs, C.size_t(n))
	arr := unsafe.Slice(rs, max(n, 1))
	for i := range states {
		arr[i].szReader = C.CString(states[i].reader)
		arr[i].dwCurrentState = C.DWORD(states[i].current)
	}
	code := rc(C.SCardGetStatusChange(C.SCARDCONTEXT(h), C.DWORD(timeout), rs, C.DWORD(n)))
	if code == 0 {
		for i := range states {
			states[i].event = uint32(arr[i].dwEventState)
			l := min(int(arr[i].cbAtr), maxATR)
			states[i].atr = C.GoBytes(unsafe.Pointer(&arr[i].rgbAtr[0]), C.int(l))
		}
	}
	if trace.On("pcsc") {
		var d []byte
		for _, s := range states {
			d = append(d, ' ')
			d = append(d, s.reader...)
			d = append(d, '=')
			d = append(d, stateString(s.current)...)
			d = append(d, "→"...)
			d = append(d, stateString(s.event)...)
		}
		traceCall("SCardGetStatusChange", t, code, string(d))
	}
	return code
}

func scConnect(h ctxHandle, reader string) (cardHandle, uint32, uint32) {
	stats.connect.Add(1)
	t := time.Now()
	cs := C.CString(reader)
	defer C.free(unsafe.Pointer(cs))
	var card C.SCARDHANDLE
	var proto C.DWORD
	scGate.lock()
	code := rc(C.SCardConnect(C.SCARDCONTEXT(h), cs, shareShared, protoT0|protoT1, &card, &proto))
	scGate.unlock()
	traceCall("SCardConnect", t, code, " "+reader)
	return cardHandle(card), uint32(proto), code
}

func scReconnect(k cardHandle, disposition uint32) (uint32, uint32) {
	stats.reconnect.Add(1)
	t := time.Now()
	var proto C.DWORD
	g := scGate.enter()
	code := rc(C.SCardReconnect(C.SCARDHANDLE(k), shareShared, protoT0|protoT1, C.DWORD(disposition), &proto))
	scGate.leave(g)
	traceCall("SCardReconnect", t, code, dispositionName(disposition))
	return uint32(proto), code
}

func scDisconnect(k cardHandle, disposition uint32) uint32 {
	stats.disconnect.Add(1)
	t := time.Now()
	scGate.lock()
	code := rc(C.SCardDisconnect(C.SCARDHANDLE(k), C.DWORD(disposition)))
	scGate.unlock()
	traceCall("SCardDisconnect", t, code, dispositionName(disposition))
	return code
}

func scBeginTransaction(k cardHandle) uint32 {
	stats.beginTransaction.Add(1)
	t := time.Now()
	g := scGate.enter()
	code := rc(C.SCardBeginTransaction(C.SCARDHANDLE(k)))
	scGate.leave(g)
	traceCall("SCardBeginTransaction", t, code, "")
	return code
}

func scEndTransaction(k cardHandle, disposition uint32) uint32 {
	stats.endTransaction.Add(1)
	t := time.Now()
	g := scGate.enter()
	code := rc(C.SCardEndTransaction(C.SCARDHANDLE(k), C.DWORD(disposition)))
	scGate.leave(g)
	traceCall("SCardEndTransaction", t, code, dispositionName(disposition))
	return code
}

// scStatus returns the card's state flags, protocol and ATR.
func scStatus(k cardHandle) (state, proto uint32, atr []byte, code uint32) {
	stats.status.Add(1)
	t := time.Now()
	var name [maxReaderName + 1]C.char
	nameLen := C.DWORD(len(name))
	var st, pr C.DWORD
	var atrBuf [maxATR]C.BYTE
	atrLen := C.DWORD(len(atrBuf))
	g := scGate.enter()
	code = rc(C.SCardStatus(C.SCARDHANDLE(k), &name[0], &nameLen, &st, &pr, &atrBuf[0], &atrLen))
	scGate.leave(g)
	traceCall("SCardStatus", t, code, "")
	if code != 0 {
		return 0, 0, nil, code
	}
	return uint32(st), uint32(pr), C.GoBytes(unsafe.Pointer(&atrBuf[0]), C.int(min(int(atrLen), maxATR))), 0
}

// scTransmit sends cmd with the PCI of proto and returns the response.
func scTransmit(k cardHandle, proto uint32, cmd []byte) ([]byte, uint32) {
	stats.transmit.Add(1)
	t := time.Now()
	bp := respPool.Get().(*[]byte)
	defer respPool.Put(bp)
	rsp := *bp
	n := C.DWORD(len(rsp))
	g := scGate.enter()
	code := rc(C.p11_transmit(C.SCARDHANDLE(k), C.DWORD(proto), (*C.BYTE)(unsafe.Pointer(&cmd[0])), C.DWORD(len(cmd)),
		(*C.BYTE)(unsafe.Pointer(&rsp[0])), &n))
	scGate.leave(g)
	traceCall("SCardTransmit", t, code, "")
	if code != 0 {
		return nil, code
	}
	return append([]byte(nil), rsp[:min(int(n), len(rsp))]...), 0
}

// respPool holds response buffers of the largest size PC/SC may fill (SCardTransmit's
// and SCardControl's).
var respPool = sync.Pool{New: func() any { b := make([]byte, maxResponse); return &b }}

// scControl sends a reader control code (SCardControl) and returns the answer.
func scControl(k cardHandle, code uint32, in []byte) ([]byte, uint32) {
	stats.control.Add(1)
	t := time.Now()
	bp := respPool.Get().(*[]byte)
	defer respPool.Put(bp)
	out := *bp
	var n C.DWORD
	var inPtr C.LPCVOID
	if len(in) > 0 {
		inPtr = C.LPCVOID(unsafe.Pointer(&in[0]))
	}
	g := scGate.enter()
	rcode := rc(C.SCardControl(C.SCARDHANDLE(k), C.DWORD(code), inPtr, C.DWORD(len(in)),
		C.LPVOID(unsafe.Pointer(&out[0])), C.DWORD(len(out)), &n))
	scGate.leave(g)
	traceCall("SCardControl", t, rcode, fmt.Sprintf(" 0x%08X", code))
	if rcode != 0 {
		return nil, rcode
	}
	return append([]byte(nil), out[:min(int(n), len(out))]...), 0
}

func dispositionName(d uint32) string {
	switch d {
	case leaveCard:
		return " LEAVE_CARD"
	case resetCard:
		return " RESET_CARD"
	}
	return ""
}

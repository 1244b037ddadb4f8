// Package pcsc talks to smart card readers through the PC/SC service (pcsc-lite's pcscd on
// Linux and BSD, the system service on macOS and Windows) and identifies USB readers.
// It is the only package that calls libpcsclite (directly through cgo); its subpackage usb
// is the only one that calls libusb (through github.com/google/gousb).
//
// # What it offers
//
//   - Context: Establish (SCARD_SCOPE_SYSTEM), Readers, Status, Wait, Connect, Close.
//     A Context survives a pcscd restart: calls that meet SCARD_E_NO_SERVICE,
//     SCARD_E_SERVICE_STOPPED, SCARD_E_INVALID_HANDLE or SCARD_F_COMM_ERROR establish a
//     new context once and repeat themselves when that is harmless (listing, status).
//   - Wait uses SCardGetStatusChange with the `\\?PnP?\Notification` reader, so adding or
//     removing a reader wakes it, and passes the previous event state back, including the
//     pcsc-lite event counter in its upper 16 bits, so a card swapped between two waits is
//     seen. It is cancelled through SCardCancel when ctx ends. WaitFor watches chosen
//     readers only.
//   - Card (shared mode, T=0 or T=1): Transmit with the PCI of the active protocol, Lock
//     (SCardBeginTransaction; a reset by another program is answered by SCardReconnect
//     with SCARD_LEAVE_CARD and reported as reset=true), Reconnect, Close (the release of
//     the card's own context, which pcscd answers by disconnecting with SCARD_LEAVE_CARD,
//     or with a reset if the handle still holds the transaction), Features (PC/SC part 10:
//     does the reader have a PIN pad). It implements apdu.Transmitter and cards.Conn.
//   - Errors: PC/SC codes become ErrNoService, ErrNoReader, ErrNoCard, ErrCardRemoved,
//     ErrCardReset, ErrSharingViolation, ErrTimeout, ErrCardUnresponsive; each error also
//     wraps *Error with the raw code.
//   - usb.Readers and MatchUSB put a USB identity (VID:PID, strings, serial) on a reader.
//     The enumeration is in package pcsc/usb, so that the PKCS#11 module, which shows no
//     USB identities, loads neither libusb nor libudev and never enumerates the bus.
//   - Stats counts PC/SC calls, for benchmarks that hold us to few round trips.
//   - Contexts opened early: the PKCS#11 module's first C_Initialize opens, in C and
//     while the Go runtime is still starting, the contexts the slot manager's start takes
//     (early.c). Establish and Connect take them before opening new ones; ReleaseEarly
//     releases those left over.
//
// # Tracing
//
// With P11CARD_DEBUG=pcsc every PC/SC call is traced with its result and duration; with
// apdu every command and response, passed through apdu.Redact and apdu.RedactResponse
// first: PINs, keys and decrypted data never reach the trace.
//
// # Concurrency
//
// Context and Card are safe for concurrent use. A Context holds one PC/SC context for
// listing and status and one for Wait; every Card has a context of its own, because
// pcsc-lite serialises calls per context and a transaction waiting for another program
// would otherwise stall every reader. Wait runs one at a time per Context.
//
// # Limits
//
// Shared mode only; no direct (reader control) connections. PIN pads are detected, not yet
// used for verification (FEATURE_VERIFY_PIN_DIRECT). pcsc-lite retries SCardBeginTransaction internally while another program holds the
// card; Lock returns when ctx ends, but Close of that Card waits for the retry loop. A
// Card does not follow its card across removal: after ErrCardRemoved connect again.
package pcsc

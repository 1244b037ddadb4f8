// Command p11 is the PKCS#11 (Cryptoki) module of p11-card, built with
//
//	go build -buildmode=c-shared -o bin/p11-card-pkcs11.so ./p11
//
// (make build adds -ldflags=-extldflags=-Wl,-z,pack-relative-relocs where the toolchain
// has it: packed relative relocations, 260 KB less resident memory per process.)
//
// Layout: pkcs11.h declares the types, constants and function lists (our own header,
// written from PKCS #11 2.40 and 3.0); module.c holds the C_* entry points, each a one-line
// shim into a Go export, and the static CK_FUNCTION_LIST (2.40) and CK_FUNCTION_LIST_3_0
// behind C_GetFunctionList, C_GetInterfaceList and C_GetInterface ("PKCS 11", versions
// 3.0 and 2.40). exports.go holds the //export functions: every one defers guard first
// (a panic becomes CKR_GENERAL_ERROR with the stack logged, never the arguments), rejects
// NULL and absurd lengths with CKR_ARGUMENTS_BAD, converts lengths with ckLen, copies
// inputs into Go memory and writes outputs through putOut, the single implementation of
// the size-query rules. All semantics live in p11/internal/core, plain Go.
//
// exports.ld.so is an implicit GNU ld script (VERSION command): only C_* symbols are
// exported (check with nm -D --defined-only).
//
// Use: point an application at the file (pkcs11-tool --module, p11tool --provider,
// ssh-add -s, modutil -add -libfile), or register it with p11-kit by a module file such as
// /etc/pkcs11/modules/p11-card.module holding "module: /path/to/p11-card-pkcs11.so".
// P11CARD_DEBUG=p11 traces every call and its return value (never arguments);
// P11CARD_NO_PKCS1_DECRYPT=1 switches off PKCS#1 v1.5 decryption; P11CARD_PIN_CACHE=1
// keeps the user PIN in memory while logged in, to log in again after another
// application reset the card (off by default). Processes using the module tell each other
// when they change a card's objects through a counter file per card in
// $XDG_RUNTIME_DIR/p11-card (P11CARD_JOURNAL_DIR names another directory, "off" turns
// this off): a certificate one application deletes is gone from the others' next look.
// The same directory keeps each YubiKey key's attestation statement, which a later
// process takes once it checked it against the card (the slot's public key, the
// attestation key's signature) instead of having the card sign a new one.
//
// The Go runtime starts when the library is loaded, and every call into Go waits until
// it has initialised. The first C_Initialize of a process spends that wait opening, in C,
// the two PC/SC contexts the first reader scan and the first card take (module.c,
// pcsc/early.c): 0.2 to 0.5 ms less for a short-lived process on our test machines.
// The first call into Go from the process's main thread has the runtime ask for that
// thread's stack, which glibc finds by reading /proc/self/maps; stackbound.c answers in
// its place for the main thread (the link wraps pthread_getattr_np): glibc's answer takes
// 0.16 to 0.22 ms in pkcs11-tool (timed around the call), more in a process with more
// mappings.
//
// Limits, by design:
//   - The library cannot be unloaded (the Go runtime cannot stop).
//   - A forked child cannot use the Go runtime it inherited: module.c records the pid at
//     load, and in a child that did not exec every call fails without entering Go
//     (C_Initialize: CKR_FUNCTION_FAILED; the rest: CKR_CRYPTOKI_NOT_INITIALIZED).
//   - Go's c-shared libraries use initial-exec TLS (readelf: STATIC_TLS): a process that
//     has already exhausted its static TLS space cannot dlopen the module.
//   - CKF_LIBRARY_CANT_CREATE_OS_THREADS is accepted (the runtime's threads predate
//     C_Initialize); application mutex callbacks are accepted only with
//     CKF_OS_LOCKING_OK (CKR_CANT_LOCK otherwise): we lock with Go primitives.
//   - The SO is the card's administrator (a PIV card's management key): an SO session
//     writes certificates and data objects and generates or imports key pairs, the one
//     private object the SO may create. The private key of a pair the SO generates is
//     still a private object, which an SO session may not see: its handle answers
//     CKR_OBJECT_HANDLE_INVALID (pkcs11-tool warns that it cannot read its attributes)
//     and dies with the SO's logout; the user, logged in, finds it by CKA_ID. ykcs11 shows
//     private keys to the SO; PKCS #11 does not.
//   - The 3.0 message-based functions answer CKR_FUNCTION_NOT_SUPPORTED, as do
//     C_InitToken, C_GenerateKey, C_WrapKey, C_UnwrapKey, the dual-function updates and
//     operation state; C_GetFunctionStatus and C_CancelFunction answer
//     CKR_FUNCTION_NOT_PARALLEL.
package main

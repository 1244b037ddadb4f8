// Package core is the PKCS#11 state machine of p11-card in plain Go: slots (from a
// SlotSource, normally *slotmgr.Manager), sessions, login state, object handles,
// attributes, searches, mechanisms and the cryptographic operations. The cgo layer in
// p11 converts C arguments and calls one Module; tests build several Modules to model
// several applications (processes) sharing one card.
//
// Semantics follow PKCS #11 2.40 (base specification §5, usage guide) and 3.0 where noted;
// see /work/shared/pkcs11-usage.md for the digest we test against:
//   - login state is per application and token, not per session; SO and user exclude
//     each other; no R/O SO sessions; CKU_CONTEXT_SPECIFIC gives the PIN of the session's
//     current operation on a CKA_ALWAYS_AUTHENTICATE key, and that PIN is verified again
//     inside the operation's own card transaction (cards.Auth), so concurrent signers
//     never consume each other's authorisation;
//   - a token generation (slotmgr's Gen) scopes sessions and object handles: after a
//     removal or swap, handles give CKR_SESSION_HANDLE_INVALID, and an operation under
//     way when the card left gives CKR_DEVICE_REMOVED;
//   - object handles are counters, never 0, stable while the token stays; session objects
//     (ECDH results, caller-created data, certificates and public keys) die with their
//     session; private objects are invisible until the user logs in, and logout
//     invalidates their handles;
//   - CK_TOKEN_INFO's PIN flags come from the card; a reading (or the one a driver made
//     while binding the card, cards.OpenedPINs) serves further calls for pinStatusFresh
//     (1 s), kept up to date by this module's logins, and read again after any
//     operation that may have changed it;
//   - outputs follow the size-query rules; a Sign or Decrypt result is computed once and
//     kept between the length query and the real call (PIN-always keys sign once);
//   - RSA PSS, OAEP and raw run on the card's bare RSA primitive; verification,
//     encryption and digests run in software with the public key; PKCS#1 v1.5
//     decryption unpads in constant time with implicit rejection (no error path an
//     attacker can tell apart), and can be switched off (P11CARD_NO_PKCS1_DECRYPT=1).
//
// errmap.go is the only place an error becomes a CKR_* code.
//
// Concurrency: an RWMutex guards the session, object and token tables; each token has
// an I/O mutex held for one card operation; each session a mutex for its operation
// state. No table lock is held during card I/O or a wait; WaitForSlotEvent blocks on the
// slot source and wakes with CKR_CRYPTOKI_NOT_INITIALIZED at Finalize.
//
// A card is an attacker too: its signatures, plaintexts and shared secrets are held to
// the sizes the mechanism defines (CKR_DEVICE_ERROR otherwise), certificates that do not
// parse give empty attributes, never a failure of the whole object.
//
// On the token, C_CreateObject writes certificates and imports private keys (RSA, EC,
// Ed25519, X25519; an SO session, as ykcs11 requires, since the card's administrator
// key authorises it); key generation needs a login (the driver asks for the right one).
//
// Limits: C_InitPIN needs the card's unblocking secret, which an SO login does not carry
// (CKR_FUNCTION_NOT_SUPPORTED; use `p11-card pin unblock`). Token objects accept no
// attribute changes other than their current values (cards store no labels). Data
// objects can be created as session objects only. The module does not cache PINs unless told
// to (Options.PINCache, P11CARD_PIN_CACHE=1): when another application resets the card
// or logs it out, a key operation answers CKR_USER_NOT_LOGGED_IN and the application is
// logged out, so it can log in again; with the cache, the module logs in again once by
// itself (a failure drops the cache: at most one PIN try).
package core

// Package pivtest is a virtual PIV card modelled on the PIV applet of a YubiKey 5
// (firmware 5.7 by default). It implements vcard.Card and apdu.Transmitter, so the same
// card backs in-process driver tests and, served to pcscd through vpcd by the hwtest rig,
// tests of software we did not write (yubico-piv-tool, OpenSC, ykcs11).
//
// Implemented (NIST SP 800-73-4 part 2 §3 unless noted):
//   - SELECT of the PIV AID, full or truncated (§3.1.1), answering the application property
//     template a YubiKey gives; other AIDs are 6A82.
//   - GET DATA / PUT DATA (§3.1.2, §3.3.2) for every PIV container, the discovery object
//     and Yubico's admin (5FFF00) and attestation certificate (5FFF01) objects, with the
//     access rules of part 1 table 3 (fingerprints, facial image, printed information and
//     iris read only after the PIN; every write after the management key).
//   - VERIFY, CHANGE REFERENCE DATA, RESET RETRY COUNTER (§3.2.1–3.2.3) with retry
//     counters, blocking and the YubiKey's 8-byte, FF-padded PIN/PUK format.
//   - GENERAL AUTHENTICATE (§3.2.4): management key authentication (witness/challenge
//     and challenge/response) with 3DES or AES, and private key operations: raw RSA
//     1024–4096, ECDSA P-256/P-384 over a hash, ECDH (tag 85), Ed25519 and X25519.
//   - GENERATE ASYMMETRIC KEY PAIR (§3.3.2) with Yubico's PIN (AA) and touch (AB) policies.
//   - Yubico extensions (developers.yubico.com/PIV/Introduction/Yubico_extensions.html):
//     GET VERSION FD, GET SERIAL F8, GET METADATA F7, SET MANAGEMENT KEY FF, IMPORT KEY FE,
//     ATTEST F9, SET PIN RETRIES FA, RESET FB, MOVE/DELETE KEY F6 (5.7).
//   - Short APDUs with command chaining (CLA 10) and 61xx response chaining (GET RESPONSE
//     C0), and extended-length APDUs (ISO/IEC 7816-4 §5.1, §5.3.4).
//
// PIN policies follow the YubiKey: 9A once, 9C always (a VERIFY must come before each
// use), 9D once, 9E never, retired slots once, unless set at generation or import. Touch
// policies are recorded and reported but never wait for a touch.
//
// Persistent state (keys, PINs, counters, objects, management key) lives in memory and,
// when Options.StatePath is set, in a JSON file rewritten after every change, so a card
// survives removal, reinsertion and process restarts. Reset drops the volatile state
// (selection, PIN and management key authentication, chaining buffers).
//
// Test helpers (GenerateInSlot, ImportInSlot, Provision, PutObject, SetCHUID, …) set up a
// card without APDUs. An APDU log and fault injection come from wrapping the card:
// vcard.WithLog(vcard.WithFaults(card, faults), log).
//
// Concurrency: a Card is safe for concurrent use; commands are serialised by a mutex
// (Options.OpDelay sleeps while holding it, as a busy token would).
//
// Status words follow Yubico's documentation where it gives one (6982 without the
// management key or PIN, 63Cx, 6983, 6985 for RESET with PIN or PUK unblocked and for a
// new PIN/PUK that breaks the rules, 6A82 for a missing object); elsewhere they are our
// best reading of the YubiKey: 6A80 for bad data, a wrong algorithm or an empty slot in
// GENERAL AUTHENTICATE, 6A86 for bad P1/P2 or key references (F9 cannot sign data), 6A88
// for GET METADATA and ATTEST of an empty slot or a non-existent reference, 6D00 before
// SELECT and for unknown instructions.
//
// Limits and known deviations from a real YubiKey: no secure messaging, no biometrics
// (match-on-card policies are refused), no real touch, no
// PIN complexity policy, objects are opaque bytes (no certificate decompression). The
// attestation key is one RSA 2048 software key per process with a self-signed
// certificate made per card (a YubiKey's chains to Yubico's CA); the attestation form
// factor extension is always 01. Besides PIV, two other applications are modelled as far
// as hosts use them to identify a YubiKey: management (SELECT answers its version, READ
// CONFIG 1D the device information GnuPG and yubikit read) and OTP (status, and the
// serial that ykpiv reads there before firmware 5). Selecting any other AID (OpenPGP,
// OATH, FIDO) answers 6A82 and leaves the selection alone, where a YubiKey would switch
// applets. Leaving PIV drops PIN and management key authentication. The state file holds
// private keys in clear: it is a test instrument.
package pivtest

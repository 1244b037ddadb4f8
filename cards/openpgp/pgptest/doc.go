// Package pgptest is a virtual OpenPGP card (specification 3.4) for tests: in-process
// through Conn, and served to pcscd through vpcd by the hwtest rig (it implements
// vcard.Card).
//
// Three modes: ModeYubiKey models a YubiKey 5 (firmware 5.4.x) OpenPGP applet with its
// quirks (ATR, empty VERIFY answers 6A80, a wrong PW 6982 without the counter, a fourth
// attestation key in 6E, 7F66 inside 73, PW status byte 1 FF on a fresh card, UIF DOs
// D6–D9, GET VERSION F1, extended APDUs);
// ModeStrict follows the specification (empty VERIFY gives 63Cx/9000, PIN for every
// signature by default, short APDUs with command chaining and GET RESPONSE only); ModeV2
// is a 2.1 card (RSA only, one certificate, no VERIFY P1=FF, KDF-DO or key information).
//
// Modelled: SELECT, GET DATA for every DO the spec lists (6E, 65, 7A, 5E, 5F50, 5F52, 7F21
// with SELECT DATA and GET NEXT DATA, C0–CD, DE, F9, private DOs), PUT DATA with the spec's
// access conditions, VERIFY (P1 FF resets), CHANGE REFERENCE DATA, RESET RETRY COUNTER with
// counters and blocking, GENERATE ASYMMETRIC KEY PAIR (RSA 2048/3072/4096, P-256/384/521,
// Ed25519, X25519; no brainpool: Go has no brainpool curves), key import by the extended
// header list, PSO:CDS, PSO:DECIPHER (RSA, ECDH, X25519), INTERNAL AUTHENTICATE, GET
// CHALLENGE, TERMINATE DF / ACTIVATE FILE, KDF-DO (setting it resets PW1/PW3 as a YubiKey
// does), command chaining and extended APDUs.
//
// State (keys as PKCS#8, PINs, counters, DOs) persists to Options.StateFile after every
// change, so a card removed and made again with the same file is the same card. Fault
// injection and APDU logs come from wrapping the card with vcard.WithFaults / vcard.WithLog.
// Touch (UIF) is stored but never waited for. A Card is safe for concurrent use.
package pgptest

// Package cards is what the PKCS#11 engine knows of smart cards: the Token interface a
// bound card offers, the Driver registry that binds cards, and the ISO/IEC 7816-4 routines
// drivers share. It knows no CK_* type and imports nothing of p11.
//
// # Drivers and binding
//
// Drivers (cards/piv, cards/openpgp) call Register from init. Bind offers a card to the
// drivers: those whose MatchATR says MatchYes first, then MatchMaybe, in registration
// order; MatchNo is never probed. The first Open that succeeds wins; an Open error
// wrapping ErrNotRecognized moves on to the next driver (the probe's SELECT found no
// application), any other error (card gone, reader failure) stops the search.
//
// # Shared ISO/IEC 7816-4 routines (iso.go)
//
//   - SelectAID: SELECT by DF name (§11.2.2); a missing application wraps ErrNotRecognized.
//   - Verify, VerifyStatus (empty VERIFY: tries left without a try), ResetSecurityStatus
//     (VERIFY P1=FF, SP 800-73-4), ChangeReferenceData, ResetRetryCounter (§11.5.6, 11.5.7,
//     11.5.10), GetChallenge (§11.5.3).
//   - AuthError and StatusError map status words to the sentinels here: 63Cx stays an
//     *apdu.VerifyError (wrapping ErrPINBlocked at zero tries), 6983 wraps ErrPINBlocked,
//     6982 wraps ErrLoginRequired. The apdu status error stays reachable with errors.As.
//   - ParseATRCaps and HistoricalBytes read the ATR (ISO/IEC 7816-3 §8.2, 7816-4 §8.1.1):
//     whether the card takes extended lengths and command chaining.
//
// Callers pass the data already formatted (PIV pads PINs with FF to 8 bytes; OpenPGP
// sends them as they are): the routines own the command encoding and the error mapping,
// the drivers own their card's formats.
//
// # Concurrency
//
// Register and Drivers are safe for concurrent use. A Token is not (see Token); the
// routines here hold no state.
package cards

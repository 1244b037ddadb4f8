// Package apdu encodes and decodes smart card command and response APDUs, turns status
// words into typed errors, runs the transport-level procedures every card driver needs
// (command chaining, GET RESPONSE, Le correction) and reads and builds BER-TLV and
// SIMPLE-TLV data objects.
//
// # Specifications
//
// Clause numbers refer to ISO/IEC 7816-4:2005.
//
//   - §5.1 command-response pairs: short and extended Lc/Le fields, cases 1, 2S/2E, 3S/3E,
//     4S/4E (Command.Bytes, ParseCommand, ParseResponse).
//   - §5.1.1.1 command chaining: CLA b5 set on every block but the last (Exchange).
//   - §5.1.3 status bytes, tables 5 and 6: 61xx (more data, GET RESPONSE §7.6.1), 6Cxx (wrong
//     Le, repeat with SW2), 63Cx (verification failed, x tries left), the 67xx–6Fxx errors
//     (sw.go: SW, StatusError, VerifyError and the Err… sentinels).
//   - §5.2 data objects: SIMPLE-TLV (one-byte tag 01–FE, length 00–FE or FF xx xx) and
//     BER-TLV after ISO/IEC 8825-1 (multi-byte tags up to four bytes, long-form lengths of
//     81–84, constructed bit b6; the indefinite length 80 and the invalid 85–FF are
//     rejected; 00 and FF between objects are padding).
//   - §7.5.6 VERIFY, §7.5.7 CHANGE REFERENCE DATA, §7.5.10 RESET RETRY COUNTER, §7.4.3 PUT
//     DATA, plus the Yubico PIV and OpenPGP card 3.4 key import commands: their data never
//     reaches a log (Redact, Secret). Answers that may hold plaintext (GENERAL
//     AUTHENTICATE, PERFORM SECURITY OPERATION, and their GET RESPONSE continuations) are
//     hidden too (RedactResponse, ResponseRedactor).
//
// # Non-goals
//
// No I/O (a Transmitter does it), no secure messaging, no logical channel management, and
// no card-specific status words: a driver wraps those itself.
//
// # Robustness
//
// Every decoder treats its input as hostile: no panics, no allocation beyond the input
// size, nesting bounded by MaxDepth. Exchange bounds GET RESPONSE rounds, collected bytes
// and consecutive Le corrections (Options), so a misbehaving card ends the exchange with an
// error wrapping ErrMalformed rather than looping.
//
// # Concurrency
//
// All functions are safe for concurrent use; values are not shared. Exchange calls its
// Transmitter sequentially; serialising access to one card (a PC/SC transaction) is the
// caller's job.
package apdu

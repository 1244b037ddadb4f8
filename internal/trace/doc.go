// Package trace writes debug output by category, chosen at run time by the environment:
//
//	P11CARD_DEBUG=pcsc,apdu        categories (comma or space separated; "all" or "1" for every one)
//	P11CARD_DEBUG_FILE=/tmp/p11.log append there instead of stderr
//
// Categories in use: pcsc (PC/SC calls), apdu (every command and response, redacted by
// apdu.Redact and apdu.RedactResponse before they get here), p11 (Cryptoki calls), slot
// (slot manager), piv, openpgp. The environment is read once, at the first call; Setup
// re-reads it (tests, C_Initialize).
//
// When tracing is off, On and Printf cost one atomic load and no allocation. Callers that
// build expensive arguments guard them with On.
//
// Nothing here redacts: callers never pass a PIN, key or plaintext.
//
// Concurrency: all functions are safe for concurrent use; lines from concurrent callers
// are written whole.
package trace

package vcard

import "github.com/p11-card/p11-card/apdu"

// Redact returns a copy of the command APDU cmd fit for a log: the data of commands that
// carry a secret (VERIFY, CHANGE REFERENCE DATA, RESET RETRY COUNTER, Yubico IMPORT KEY
// and SET MANAGEMENT KEY, OpenPGP key import and secret PUT DATA) is hidden, the header
// and lengths kept. It is apdu.Redact, the one list every trace uses.
func Redact(cmd []byte) []byte { return apdu.Redact(cmd) }

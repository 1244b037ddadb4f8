// Package apdutest replays and records APDU transcripts, so card drivers are tested
// byte for byte without a card.
//
// A transcript is text, one exchange per command/response pair:
//
//	# SELECT PIV
//	> 00 A4 04 00 09 A0 00 00 03 08 00 00 10 00 00
//	< 61 11 4F 06 00 00 10 00 01 00 79 07 4F 05 A0 00 00 03 08 90 00
//	# mutual authentication: the host challenge is random
//	> 00 87 03 9B 16 7C 14 80 08 .. .. .. .. .. .. .. .. 81 08 .. .. .. .. .. .. .. ..
//	< 90 00
//
// '#' starts a comment, '>' a command, '<' its response. Bytes are hex, spaces optional;
// ".." in a command matches any byte (challenges, nonces). Responses are exact bytes.
//
// The Replayer implements apdu.Transmitter (and Lock, so it satisfies cards.Conn). It fails
// the test on the first command that differs from the transcript, with a hex diff, on
// commands past the end, and at cleanup on exchanges never used.
//
// The Recorder wraps a real Transmitter and writes what passed through it as a transcript.
// The data of VERIFY, CHANGE REFERENCE DATA and RESET RETRY COUNTER is replaced by the test
// PIN (default "123456"), and the data of other secret-bearing commands (apdu.Secret: key
// imports, management key changes) by ".." wildcards, so transcripts are safe to commit.
//
// Concurrency: Replayer and Recorder are safe for concurrent use, though a transcript only
// makes sense for one sequence of commands.
package apdutest

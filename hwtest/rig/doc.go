// Package rig runs a private PC/SC stack for tests and demos: its own pcscd, with vpcd
// virtual readers, serving in-process virtual cards (vcard.Card) to any PC/SC client.
//
// # How
//
// Start writes a reader.conf.d directory with one vpcd entry per reader pair (vpcd gives
// two readers per entry, on TCP port P and P+1; free ports are picked), and runs
//
//	unshare -m sh -c 'mount --bind DIR/pcscd /run/pcscd && exec pcscd -f -c DIR/reader.conf.d'
//
// so pcscd's socket and pid file land in DIR/pcscd, out of the way of a pcscd the machine
// may already run. Clients reach the rig with PCSCLITE_CSOCK_NAME=DIR/pcscd/pcscd.comm
// (Env, Setenv). pcscd itself keeps its compiled-in path, hence the mount namespace.
//
// Insert connects a card to a reader's port and speaks vpcd's protocol (every message a
// 2-byte big-endian length plus payload; one-byte messages from vpcd are control: 00 power
// off, 01 power on, 02 reset, 04 send the ATR; anything else is a command APDU answered with
// the response APDU). TCP_NODELAY is set and TCP_QUICKACK renewed after every read, which
// takes a round trip through pcscd from ~55 ms (delayed ACKs) to a fraction of a millisecond.
// Closing the socket removes the card; a card whose Transmit returns vcard.ErrRemoved is
// pulled out the same way.
//
// # Waiting for pcscd
//
// Insert and Remove return once pcscd reports the change. libpcsclite reads
// PCSCLITE_CSOCK_NAME once per process, at its first call, so the process must point at
// this rig before it uses PC/SC (Setenv right after Start); then the rig asks pcscd. When
// the process points elsewhere, Insert waits for pcscd to power the card up and Remove
// waits one pcscd polling period (vpcd readers are polled every 400 ms).
//
// # Concurrency and limits
//
// A Rig's methods are safe for concurrent use. Linux only: it needs unshare(1), mount
// namespaces (root, or unprivileged user namespaces) and pcscd with the vpcd driver
// (Debian: pcscd, vsmartcard-vpcd). One process talks to one pcscd (see above).
package rig

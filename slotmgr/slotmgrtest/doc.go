// Package slotmgrtest is an in-process PC/SC for tests of slotmgr and of what stands on
// it: readers come and go, virtual cards (cards/vcard) are inserted, removed and swapped,
// and the service stops and restarts, all by method calls that take effect at once.
// Waits are woken over channels; nothing polls or sleeps.
//
// The model follows pcsc-lite where it matters to a slot manager: a per-reader event
// counter that moves on every insertion and removal, handles that fail once their card
// left, and contexts and handles that all die when the service restarts (with Healing,
// only the handles: package pcsc's contexts re-establish themselves).
//
// Concurrency: every method is safe for concurrent use. Limits: no transactions between
// handles beyond a per-handle lock, no protocols, no control codes other than the part
// 10 feature request.
package slotmgrtest

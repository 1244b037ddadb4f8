package pcsc

import (
	"sync"
	"time"
)

// libpcsclite (1.9.9, and the same code in 2.x) finds the client state behind a card
// handle by walking every context of the process and, in each, its list of card handles,
// under its own locks. SCardConnect, SCardDisconnect and SCardReleaseContext change those
// lists (append, delete, destroy) without the lock the walk holds, so a card call on one
// handle that starts while another thread connects, disconnects or releases a context can
// follow a freed pointer: the SIGSEGV in SCardDisconnect seen once in make soak, which
// TestRig/HandleCallsBesideContextChurn reproduces within seconds without the gate.
//
// The gate keeps the two apart. Card calls (transmit, transactions, status, control,
// reconnect) pass it shared and run beside each other; the calls that change the lists
// (connect, disconnect, release) and SCardEstablishContext (which holds libpcsclite's
// client lock through a round trip to pcscd, stalling every walk) pass it alone.
//
// A card call walks the lists once, as it starts; a call that has run for settle is past
// its walk, and an exclusive call does not wait for it. That keeps a long card call (a
// touch the card waits for, a key generation, a PIN typed on a reader's keypad) from
// holding every connect and disconnect of the process back. The exception is a
// transaction that another program holds: libpcsclite's SCardBeginTransaction (and
// SCardReconnect) repeats its walk every 100 ms while it waits, a window of microseconds
// that an exclusive call may still meet.
//
// While an exclusive call waits, new card calls wait too, so a steady stream of them
// cannot starve it; card calls that waited go ahead of the next exclusive call, so a
// stream of those cannot starve them either.
type gate struct {
	mu      sync.Mutex
	cond    sync.Cond
	shared  map[uint64]time.Time // card calls in flight, by ticket: when they started
	next    uint64
	excl    bool   // an exclusive call runs
	waiting int    // exclusive calls waiting
	done    uint64 // exclusive calls finished
	queued  int    // card calls waiting
	owed    int    // card calls that waited through the last exclusive call, still to enter
	settle  time.Duration
}

// settle is how long a card call may take to walk libpcsclite's lists after it starts.
const settle = 200 * time.Millisecond

var scGate = newGate(settle)

func newGate(settle time.Duration) *gate {
	g := &gate{shared: map[uint64]time.Time{}, settle: settle}
	g.cond.L = &g.mu
	return g
}

// enter admits a card call; leave(ticket) must follow. A card call that arrives while
// an exclusive call waits or runs lets it go first, but only that one: the card calls
// waiting when it ends enter before the next exclusive call.
func (g *gate) enter() uint64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.excl || g.waiting > 0 {
		arrived := g.done
		g.queued++
		for g.excl || g.waiting > 0 && g.done == arrived {
			g.cond.Wait()
		}
		g.queued--
		if g.done != arrived && g.owed > 0 {
			g.owed--
		}
	}
	g.next++
	g.shared[g.next] = time.Now()
	return g.next
}

func (g *gate) leave(ticket uint64) {
	g.mu.Lock()
	delete(g.shared, ticket)
	g.mu.Unlock()
	g.cond.Broadcast()
}

// lock admits an exclusive call once no other runs and every card call in flight is
// past its walk; unlock must follow.
func (g *gate) lock() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.waiting++
	for {
		wait := g.youngest()
		if !g.excl && g.owed == 0 && wait <= 0 {
			break
		}
		if wait > 0 {
			t := time.AfterFunc(wait, g.cond.Broadcast)
			g.cond.Wait()
			t.Stop()
		} else {
			g.cond.Wait()
		}
	}
	g.waiting--
	g.excl = true
}

func (g *gate) unlock() {
	g.mu.Lock()
	g.excl = false
	g.done++
	g.owed = g.queued
	g.mu.Unlock()
	g.cond.Broadcast()
}

// youngest is how long until every card call in flight has run for settle (≤ 0: now).
// g.mu is held.
func (g *gate) youngest() time.Duration {
	var wait time.Duration
	now := time.Now()
	for _, start := range g.shared {
		wait = max(wait, g.settle-now.Sub(start))
	}
	return wait
}

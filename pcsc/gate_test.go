package pcsc

import (
	"testing"
	"time"
)

// locked runs g.lock in a goroutine and returns a channel closed once it holds the gate.
func locked(g *gate) chan struct{} {
	ch := make(chan struct{})
	go func() {
		g.lock()
		close(ch)
	}()
	return ch
}

func held(ch chan struct{}, within time.Duration) bool {
	select {
	case <-ch:
		return true
	case <-time.After(within):
		return false
	}
}

func TestGateExclusiveWaitsForCardCallStarting(t *testing.T) {
	g := newGate(time.Hour)
	ticket := g.enter()
	ch := locked(g)
	if held(ch, 50*time.Millisecond) {
		t.Fatal("an exclusive call ran beside a card call that had just started")
	}
	g.leave(ticket)
	if !held(ch, 5*time.Second) {
		t.Fatal("the exclusive call still waits after the card call left")
	}
	g.unlock()
}

func TestGateExclusiveSkipsLongCardCall(t *testing.T) {
	g := newGate(30 * time.Millisecond)
	ticket := g.enter()
	defer g.leave(ticket)
	start := time.Now()
	if !held(locked(g), 5*time.Second) {
		t.Fatal("an exclusive call waits for a card call past its walk")
	}
	if d := time.Since(start); d < 25*time.Millisecond {
		t.Fatalf("the exclusive call ran after %v, before the card call was %v old", d, g.settle)
	}
	g.unlock()
}

func TestGateCardCallWaitsForExclusive(t *testing.T) {
	g := newGate(time.Hour)
	g.lock()
	entered := make(chan struct{})
	go func() {
		g.leave(g.enter())
		close(entered)
	}()
	if held(entered, 50*time.Millisecond) {
		t.Fatal("a card call ran beside an exclusive call")
	}
	g.unlock()
	if !held(entered, 5*time.Second) {
		t.Fatal("the card call still waits after the exclusive call ended")
	}
}

// TestGateTakesTurns: with exclusive calls queued back to back, a card call that waited
// enters before the second of them, and an exclusive call is not held off by a stream of
// card calls.
func TestGateTakesTurns(t *testing.T) {
	g := newGate(time.Hour)
	g.lock()
	second := locked(g) // waits behind the first
	entered := make(chan struct{})
	go func() {
		g.leave(g.enter()) // waits: an exclusive call runs
		close(entered)
	}()
	time.Sleep(20 * time.Millisecond)
	g.unlock()
	if !held(entered, 5*time.Second) {
		t.Fatal("the card call that waited did not enter before the next exclusive call")
	}
	if !held(second, 5*time.Second) {
		t.Fatal("the second exclusive call never ran")
	}
	g.unlock()

	stop := make(chan struct{})
	done := make(chan struct{})
	for range 4 {
		go func() {
			for {
				select {
				case <-stop:
					done <- struct{}{}
					return
				default:
				}
				g.leave(g.enter())
			}
		}()
	}
	if !held(locked(g), 5*time.Second) {
		t.Fatal("a stream of card calls starves an exclusive call")
	}
	g.unlock()
	close(stop)
	for range 4 {
		<-done
	}
}

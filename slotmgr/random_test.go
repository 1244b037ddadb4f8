package slotmgr_test

import (
	"context"
	"fmt"
	"math/rand"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/p11-card/p11-card/slotmgr"
	"github.com/p11-card/p11-card/slotmgr/slotmgrtest"
)

// TestRandomOperations drives the fake service through a fixed pseudo-random sequence of
// insertions, removals, swaps, reader unplugs and service restarts, and checks after
// each step (and a Rescan, as C_GetSlotList does) that the table tells the truth: the
// readers attached, which hold a card and a token, IDs that never move, and a new
// generation exactly when a card was inserted, swapped or lost its connection.
func TestRandomOperations(t *testing.T) {
	seeds := []int64{1, 2, 3}
	if s := os.Getenv("SLOTMGR_RANDOM_SEEDS"); s != "" { // a longer hunt by hand
		n, _ := strconv.Atoi(s)
		for i := 4; i < 4+n; i++ {
			seeds = append(seeds, int64(i))
		}
	}
	for _, seed := range seeds {
		for _, healing := range []bool{false, true} {
			randomRun(t, seed, healing)
		}
	}
}

func randomRun(t *testing.T, seed int64, healing bool) {
	{
		t.Run(fmt.Sprintf("seed=%d/healing=%v", seed, healing), func(t *testing.T) {
			b := slotmgrtest.New()
			b.Healing = healing
			e := start(t, b, slotmgr.Options{NoPINPad: true, RetryInterval: time.Millisecond})
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()

			names := []string{"R0", "R1", "R2", "R3"}
			type model struct {
				attached bool
				card     []byte // ATR, nil when empty
			}
			world := map[string]*model{}
			for _, n := range names {
				world[n] = &model{}
			}
			ids := map[string]uint64{}
			lastGen := map[string]uint64{}
			newGen := map[string]bool{}
			maybeGen := map[string]bool{}
			var maxGen uint64
			rng := rand.New(rand.NewSource(seed))
			atrs := [][]byte{atrGood, atrGood2, atrUnknown}

			for step := 0; step < 300; step++ {
				n := names[rng.Intn(len(names))]
				w := world[n]
				var what string
				switch op := rng.Intn(10); {
				case op < 3: // insert or swap
					if !w.attached {
						b.AddReader(n)
						w.attached = true
						what = "plug"
						break
					}
					w.card = atrs[rng.Intn(len(atrs))]
					if err := b.Insert(n, slotmgrtest.NewCard(w.card)); err != nil {
						t.Fatal(err)
					}
					newGen[n] = true
					what = fmt.Sprintf("insert %X", w.card)
				case op < 5:
					b.Remove(n)
					w.card = nil
					what = "remove"
				case op < 6:
					b.RemoveReader(n)
					w.attached, w.card = false, nil
					what = "unplug"
				case op < 7 && step%5 == 0:
					b.Restart()
					for _, m := range names {
						if world[m].card == nil {
							continue
						}
						if string(world[m].card) == string(atrUnknown) {
							// No connection of ours to lose: a new generation only if the
							// restarted counter differs.
							maybeGen[m] = true
						} else {
							newGen[m] = true
						}
					}
					what = "restart" // checked at once: the Rescan must not wait for the watcher
				default:
					what = "nothing"
				}
				if err := e.m.Rescan(ctx); err != nil {
					t.Fatal(err)
				}
				slots := e.m.Slots()
				seen := map[string]bool{}
				prevMax := maxGen
				gens := map[uint64]string{}
				for _, s := range slots {
					seen[s.Reader] = true
					if id, ok := ids[s.Reader]; ok && id != s.ID {
						t.Fatalf("step %d (%s %s): %q moved from slot %d to %d", step, what, n, s.Reader, id, s.ID)
					}
					ids[s.Reader] = s.ID
					m := world[s.Reader]
					wantCard := m.card != nil
					wantToken := wantCard && string(m.card) != string(atrUnknown)
					if s.CardPresent != wantCard || s.Present != wantToken {
						t.Fatalf("step %d (%s %s): %q card %v token %v, want %v %v (err %v)", step, what, n,
							s.Reader, s.CardPresent, s.Present, wantCard, wantToken, s.Err)
					}
					if !wantCard {
						lastGen[s.Reader] = 0
						newGen[s.Reader], maybeGen[s.Reader] = false, false
						continue
					}
					if o, dup := gens[s.Gen]; dup {
						t.Fatalf("step %d (%s %s): %q and %q share gen %d", step, what, n, o, s.Reader, s.Gen)
					}
					gens[s.Gen] = s.Reader
					switch {
					case newGen[s.Reader] || lastGen[s.Reader] == 0:
						if s.Gen <= prevMax {
							t.Fatalf("step %d (%s %s): %q gen %d, want a new one (> %d)", step, what, n, s.Reader, s.Gen, prevMax)
						}
					case maybeGen[s.Reader]:
					default:
						if s.Gen != lastGen[s.Reader] {
							t.Fatalf("step %d (%s %s): %q gen moved %d → %d without a new card", step, what, n,
								s.Reader, lastGen[s.Reader], s.Gen)
						}
					}
					lastGen[s.Reader] = s.Gen
					maxGen = max(maxGen, s.Gen)
					newGen[s.Reader], maybeGen[s.Reader] = false, false
				}
				for _, n := range names {
					if seen[n] != world[n].attached {
						t.Fatalf("step %d (%s): reader %q listed %v, attached %v", step, what, n, seen[n], world[n].attached)
					}
					if !world[n].attached {
						lastGen[n] = 0
						newGen[n], maybeGen[n] = false, false
					}
				}
			}
		})
	}
}

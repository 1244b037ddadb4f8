package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/p11-card/p11-card/slotmgr"
)

func init() {
	register(&command{
		name:    "watch",
		summary: "print reader and card events as they happen, until interrupted",
		usage:   "[--json]",
		help: `Prints one line per event, with an RFC 3339 timestamp, until Ctrl-C:

  reader added / reader removed     a reader was plugged in or out (a YubiKey is both
                                    reader and card, so it shows both events)
  card inserted / card removed      with the ATR and what the card is when inserted

It starts with the readers and cards already there (marked "(present)"), then says
on stderr that it is watching. Events come from pcscd as the PKCS#11 module sees them:
a card swapped for another between two looks is still a removal and an insertion.

  --json   one JSON object per line: {"time", "event" (reader-added, reader-removed,
           card-inserted, card-removed), "initial" (true for what was there at the
           start), "slot", "reader", "atr", "token": {...}, "error"}`,
		run: runWatch,
	})
}

// now is the clock of watch's timestamps; tests fix it.
var now = time.Now

type watchEvent struct {
	Time    string       `json:"time"`
	Event   string       `json:"event"`
	Initial bool         `json:"initial,omitempty"`
	Slot    uint64       `json:"slot"`
	Reader  string       `json:"reader"`
	ATR     string       `json:"atr,omitempty"`
	Token   *tokenReport `json:"token,omitempty"`
	Error   string       `json:"error,omitempty"`
}

// watcher turns slot table snapshots into events.
type watcher struct {
	w      io.Writer
	json   bool
	seen   map[uint64]*watchSeen
	events int
}

type watchSeen struct {
	attached bool
	gen      uint64 // generation of the card reported inserted, 0 when none
}

func (wt *watcher) emit(ev watchEvent) {
	wt.events++
	ev.Time = now().Format(time.RFC3339)
	if wt.json {
		b, _ := json.Marshal(ev)
		fmt.Fprintf(wt.w, "%s\n", b)
		return
	}
	what := map[string]string{
		"reader-added": "reader added", "reader-removed": "reader removed",
		"card-inserted": "card inserted", "card-removed": "card removed",
	}[ev.Event]
	if ev.Initial {
		what = map[string]string{"reader-added": "reader", "card-inserted": "card"}[ev.Event] + " (present)"
	}
	line := fmt.Sprintf("%s  %-16s slot %d  %s", ev.Time, what, ev.Slot, ev.Reader)
	if ev.ATR != "" {
		line += "  ATR " + ev.ATR
	}
	if t := ev.Token; t != nil {
		line += fmt.Sprintf("  %s: %s", t.Driver, t.Label)
	} else if ev.Error != "" {
		line += "  (" + ev.Error + ")"
	}
	fmt.Fprintln(wt.w, line)
}

// update compares a snapshot with what was reported and emits the differences:
// removals before insertions, a card before its reader.
func (wt *watcher) update(slots []slotmgr.SlotInfo, initial bool) {
	for _, s := range slots {
		st := wt.seen[s.ID]
		if st == nil {
			st = &watchSeen{}
			wt.seen[s.ID] = st
		}
		attached := !s.ReaderGone
		if attached && !st.attached {
			st.attached = true
			wt.emit(watchEvent{Event: "reader-added", Initial: initial, Slot: s.ID, Reader: s.Reader})
		}
		if st.gen != 0 && s.Gen != st.gen {
			wt.emit(watchEvent{Event: "card-removed", Slot: s.ID, Reader: s.Reader})
			st.gen = 0
		}
		if st.gen == 0 && s.Gen != 0 && s.CardPresent && !s.Binding {
			st.gen = s.Gen
			r := reportOf(s)
			wt.emit(watchEvent{Event: "card-inserted", Initial: initial, Slot: s.ID, Reader: s.Reader, ATR: r.ATR, Token: r.Token, Error: r.Error})
		}
		if !attached && st.attached {
			st.attached = false
			wt.emit(watchEvent{Event: "reader-removed", Slot: s.ID, Reader: s.Reader})
		}
	}
}

func runWatch(ctx context.Context, e *env, args []string) error {
	fs := newFlags("watch")
	asJSON := fs.Bool("json", false, "JSON lines")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Sprintf("unexpected argument %q", fs.Arg(0))}
	}
	m, err := openSlots(ctx)
	if err != nil {
		return err
	}
	defer m.Close()
	return watchLoop(ctx, e, m, *asJSON)
}

func watchLoop(ctx context.Context, e *env, m *slotmgr.Manager, asJSON bool) error {
	wt := &watcher{w: e.stdout, json: asJSON, seen: map[uint64]*watchSeen{}}
	since := m.Counter()
	wt.update(m.AllSlots(), true)
	fmt.Fprintln(e.stderr, "watching for reader and card events (Ctrl-C stops)")
	var svcErr error
	for {
		c, err := m.WaitChange(ctx, since)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, slotmgr.ErrClosed) {
				return nil
			}
			return err
		}
		since = c
		switch err := m.ServiceErr(); {
		case err != nil && svcErr == nil:
			fmt.Fprintf(e.stderr, "pcscd went away (%v); waiting for it to come back\n", err)
		case err == nil && svcErr != nil:
			fmt.Fprintln(e.stderr, "pcscd is back")
		}
		svcErr = m.ServiceErr()
		wt.update(m.AllSlots(), false)
	}
}

package cards

import (
	"os"
	"path/filepath"
	"testing"
)

func tempJournals(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "journals")
	old := journalDir
	journalDir = func() string { return dir }
	t.Cleanup(func() { journalDir = old })
	return dir
}

func TestJournalTellsOtherProcesses(t *testing.T) {
	tempJournals(t)
	a, b := OpenJournal("piv", "123"), OpenJournal("piv", "123")
	other := OpenJournal("piv", "456")
	if a == nil || b == nil || other == nil {
		t.Fatal("journal off")
	}
	if a.Changed() || b.Changed() {
		t.Error("a change before any write")
	}
	if a.Note() {
		t.Error("a's first write: another change reported")
	}
	if a.Changed() {
		t.Error("a sees its own write as another's")
	}
	if !b.Changed() || b.Changed() {
		t.Error("b must see a's write once")
	}
	if other.Changed() {
		t.Error("another card's journal changed")
	}
	// Both write; each then knows the other wrote too.
	b.Note()
	if !a.Note() {
		t.Error("a's write after b's: b's change not reported")
	}
	if !b.Changed() {
		t.Error("b does not see a's second write")
	}
	// One file per card and process.
	if a.f != b.f {
		t.Error("two files for one card")
	}
	// A journal opened later starts from the current count.
	if c := OpenJournal("piv", "123"); c == nil || c.Changed() {
		t.Error("a new journal reports old changes")
	}
}

func TestJournalOff(t *testing.T) {
	var nilJ *Journal
	if nilJ.Changed() || nilJ.Note() {
		t.Error("nil journal")
	}
	tempJournals(t)
	if OpenJournal("piv", "") != nil {
		t.Error("a card without identity gets a journal")
	}
	journalDir = defaultJournalDir
	t.Setenv("P11CARD_JOURNAL_DIR", "off")
	if OpenJournal("piv", "1") != nil {
		t.Error("P11CARD_JOURNAL_DIR=off")
	}
	// A directory others may write to is refused.
	dir := tempJournals(t)
	if err := os.Mkdir(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o777)
	if OpenJournal("piv", "1") != nil {
		t.Error("journal in a directory open to all")
	}
	// A symlink in its place is refused.
	dir = tempJournals(t)
	if err := os.Symlink(t.TempDir(), dir); err != nil {
		t.Fatal(err)
	}
	if OpenJournal("piv", "1") != nil {
		t.Error("journal through a symlink")
	}
	// Odd characters in an identity stay inside the directory.
	dir = tempJournals(t)
	j := OpenJournal("piv", "../../x y")
	if j == nil {
		t.Fatal("journal off")
	}
	if _, err := os.Stat(filepath.Join(dir, "piv-______x_y")); err != nil {
		t.Errorf("journal file: %v", err)
	}
}

// A lazy journal opens nothing before its first look, which takes the count then: a
// change noted before it is not reported (the driver held nothing of the card yet), a
// change after it is, once.
func TestLazyJournal(t *testing.T) {
	dir := tempJournals(t)
	l := LazyJournal("piv", "123")
	if l == nil {
		t.Fatal("journal off")
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("the journal directory is there before the first look: %v", err)
	}
	w := OpenJournal("piv", "123")
	if w == nil {
		t.Fatal("journal off")
	}
	w.Note()
	if l.Changed() {
		t.Error("the first look reports a change made before it")
	}
	w.Note()
	if !l.Changed() || l.Changed() {
		t.Error("a change after the first look must be reported once")
	}
	// A first look that is a write: no change of another reported, and the others see it.
	if LazyJournal("piv", "123").Note() {
		t.Error("a first write reports another's change")
	}
	if !w.Changed() {
		t.Error("the lazy journal's write is not seen")
	}

	if LazyJournal("piv", "") != nil {
		t.Error("a card without identity gets a journal")
	}
	t.Setenv("P11CARD_JOURNAL_DIR", "off")
	journalDir = defaultJournalDir
	if LazyJournal("piv", "1") != nil {
		t.Error("P11CARD_JOURNAL_DIR=off")
	}
	// A directory others may write to turns it off at the first look, making nothing.
	dir = tempJournals(t)
	if err := os.Mkdir(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o777)
	open := LazyJournal("piv", "1")
	if open.Note() || open.Changed() || open.Note() {
		t.Error("a journal in a directory open to all")
	}
	if _, err := os.Stat(filepath.Join(dir, "piv-1")); !os.IsNotExist(err) {
		t.Errorf("a file made in a directory open to all: %v", err)
	}
}

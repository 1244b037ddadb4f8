package cards

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"

	"github.com/p11-card/p11-card/internal/trace"
)

// A Journal tells the processes of one user that use these drivers when one of them
// changed a card's objects: a counter per card in a small file under the user's runtime
// directory ($XDG_RUNTIME_DIR/p11-card, else a private directory in the temporary one;
// P11CARD_JOURNAL_DIR names another, "off" turns journals off).
// A driver that keeps the card's objects in memory notes its own writes, and asks
// Changed before it answers from memory: another application that deleted a certificate
// shows in the next listing, as PKCS#11 wants (pkcs11-usage.md §4.3, §7). Changes made
// by programs that do not use this package go unnoticed until the card is inserted
// again, as with every module that caches.
//
// The file holds a counter and nothing else. Where it cannot be made (no writable
// directory, a directory another user owns) the journal is off: Changed is always false.
// A nil *Journal is off too. Safe for concurrent use. A process keeps one open file per
// card it met, however often the card comes and goes: a Journal needs no closing.
type Journal struct {
	mu   sync.Mutex
	f    *os.File
	seen uint64
	// lazy, for a LazyJournal not yet looked at: the file to open at the first look.
	lazy *lazyJournal
}

type lazyJournal struct{ dir, driver, id string }

var (
	journalMu    sync.Mutex
	journalFiles = map[string]*os.File{} // by path
)

// journalDir is where journals live; tests point it elsewhere.
var journalDir = defaultJournalDir

func defaultJournalDir() string {
	if d := os.Getenv("P11CARD_JOURNAL_DIR"); d != "" {
		return d
	}
	if d := os.Getenv("XDG_RUNTIME_DIR"); d != "" {
		return filepath.Join(d, "p11-card")
	}
	return filepath.Join(os.TempDir(), fmt.Sprintf("p11-card-%d", os.Getuid()))
}

// OpenJournal opens the journal of the card that driver knows by id (its serial number,
// or another identity that is unique per card). An empty id gives nil (off).
func OpenJournal(driver, id string) *Journal {
	dir := journalDir()
	if id == "" || dir == "off" {
		return nil
	}
	f, err := journalFile(dir, driver, id)
	if err != nil {
		trace.Printf("cards", "journal off: %v", err)
		return nil
	}
	j := &Journal{f: f}
	j.seen, _ = j.read()
	return j
}

// LazyJournal is OpenJournal for a driver that holds nothing of the card's objects until
// its first Changed or Note: the file is opened, and its count taken, at that first look,
// which therefore reports no change. A process that never looks (pkcs11-tool -L lists
// the slots and their tokens and no object) opens no file. A file that cannot be made
// then turns the journal off, as OpenJournal's nil would have.
func LazyJournal(driver, id string) *Journal {
	dir := journalDir()
	if id == "" || dir == "off" {
		return nil
	}
	return &Journal{lazy: &lazyJournal{dir: dir, driver: driver, id: id}}
}

// ready opens a lazy journal's file at the first look (j.mu held); false: the journal is
// off.
func (j *Journal) ready() bool {
	if l := j.lazy; l != nil {
		j.lazy = nil
		f, err := journalFile(l.dir, l.driver, l.id)
		if err != nil {
			trace.Printf("cards", "journal off: %v", err)
			return false
		}
		j.f = f
		j.seen, _ = j.read()
	}
	return j.f != nil
}

// journalFile opens a card's journal file, once per process.
func journalFile(dir, driver, id string) (*os.File, error) {
	name := cardFile(driver, id)
	path := filepath.Join(dir, name)
	journalMu.Lock()
	defer journalMu.Unlock()
	if f := journalFiles[path]; f != nil {
		return f, nil
	}
	if err := privateDir(dir); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, err
	}
	journalFiles[path] = f
	return f, nil
}

// cardFile is the name of a card's file in the journal directory.
func cardFile(driver, id string) string {
	return driver + "-" + strings.Map(func(r rune) rune {
		if r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r == '-' {
			return r
		}
		return '_'
	}, id)
}

// privateDir makes dir if needed and checks that it is ours and private: not a symlink,
// not another user's, not open to others.
func privateDir(dir string) error {
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return err
	}
	fi, err := os.Lstat(dir)
	if err != nil {
		return err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !fi.IsDir() || !ok || int(st.Uid) != os.Getuid() || fi.Mode().Perm()&0o077 != 0 {
		return fmt.Errorf("%s is not a private directory of this user", dir)
	}
	return nil
}

func (j *Journal) read() (uint64, error) {
	var b [8]byte
	if _, err := j.f.ReadAt(b[:], 0); err != nil {
		if errors.Is(err, io.EOF) {
			return 0, nil // a new journal
		}
		return 0, err
	}
	return binary.BigEndian.Uint64(b[:]), nil
}

// Changed reports whether another process noted a change since this journal last looked
// (Changed, Note or OpenJournal); each change is reported once.
func (j *Journal) Changed() bool {
	if j == nil {
		return false
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	if !j.ready() {
		return false
	}
	n, err := j.read()
	if err != nil || n == j.seen {
		return false
	}
	j.seen = n
	return true
}

// Note records that this process changed the card (call it after the write, inside the
// card transaction). It returns whether a change by another process came first, which
// the caller's memory has not seen either.
func (j *Journal) Note() (otherFirst bool) {
	if j == nil {
		return false
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	if !j.ready() {
		return false
	}
	if err := syscall.Flock(int(j.f.Fd()), syscall.LOCK_EX); err != nil {
		return false
	}
	defer syscall.Flock(int(j.f.Fd()), syscall.LOCK_UN)
	n, err := j.read()
	if err != nil {
		return false
	}
	otherFirst = n != j.seen
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], n+1)
	if _, err := j.f.WriteAt(b[:], 0); err != nil {
		return otherFirst
	}
	j.seen = n + 1
	return otherFirst
}

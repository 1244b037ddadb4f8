package cards

import (
	"io"
	"os"
	"path/filepath"
	"syscall"

	"github.com/p11-card/p11-card/internal/trace"
)

// Kept values are what a driver keeps about a card for the user's later processes, in the
// journal's directory: values it can check against the card for less than reading them
// again costs (an attestation statement, checked against the slot's public key and the
// attestation key's signature, instead of a signature made by the card). One file per
// value, private to the user. What a file holds is only ever a candidate: the caller
// checks it before use, so a file left stale, cut short by a crash or changed by hand
// costs the read it would have saved and nothing more.

// maxKept bounds a kept value.
const maxKept = 64 << 10

// Kept returns the value a process kept for the card that driver knows by id under name,
// or nil.
func Kept(driver, id, name string) []byte {
	path := keptPath(driver, id, name)
	if path == "" || privateDir(filepath.Dir(path)) != nil {
		return nil
	}
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0)
	if err != nil {
		return nil
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxKept+1))
	if err != nil || len(b) == 0 || len(b) > maxKept {
		return nil
	}
	return b
}

// Keep stores v under name for the card; errors only leave it unkept.
func Keep(driver, id, name string, v []byte) {
	path := keptPath(driver, id, name)
	if path == "" || len(v) == 0 || len(v) > maxKept {
		return
	}
	dir := filepath.Dir(path)
	if err := privateDir(dir); err != nil {
		trace.Printf("cards", "not kept: %v", err)
		return
	}
	f, err := os.CreateTemp(dir, ".kept-*")
	if err != nil {
		trace.Printf("cards", "not kept: %v", err)
		return
	}
	_, err = f.Write(v)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path) // whole or not at all, for a reader at any moment
	}
	if err != nil {
		os.Remove(f.Name())
		trace.Printf("cards", "not kept: %v", err)
	}
}

// keptPath is the file of a kept value; "" when journals are off or id is empty.
func keptPath(driver, id, name string) string {
	dir := journalDir()
	if id == "" || name == "" || dir == "off" {
		return ""
	}
	return filepath.Join(dir, cardFile(driver, id)+"."+cardFile("kept", name))
}

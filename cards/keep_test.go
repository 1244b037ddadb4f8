package cards

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

func TestKept(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "j")
	old := journalDir
	journalDir = func() string { return dir }
	t.Cleanup(func() { journalDir = old })

	if v := Kept("piv", "1", "a"); v != nil {
		t.Fatalf("nothing kept yet: %q", v)
	}
	Keep("piv", "1", "a", []byte("one"))
	Keep("piv", "1", "a", []byte("two")) // replaces
	Keep("piv", "2", "a", []byte("other card"))
	if v := Kept("piv", "1", "a"); !bytes.Equal(v, []byte("two")) {
		t.Errorf("Kept = %q, want two", v)
	}
	if v := Kept("openpgp", "1", "a"); v != nil {
		t.Errorf("another driver's card: %q", v)
	}
	Keep("piv", "1", "big", make([]byte, maxKept+1))
	if v := Kept("piv", "1", "big"); v != nil {
		t.Errorf("a value over %d bytes was kept", maxKept)
	}
	// A kept file replaced by a symlink is not followed.
	path := keptPath("piv", "1", "a")
	target := filepath.Join(t.TempDir(), "elsewhere")
	if err := os.WriteFile(target, []byte("planted"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, path); err != nil {
		t.Fatal(err)
	}
	if v := Kept("piv", "1", "a"); v != nil {
		t.Errorf("followed a symlink: %q", v)
	}
	// A directory open to others neither keeps nor gives back.
	Keep("piv", "3", "a", []byte("x"))
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	Keep("piv", "4", "a", []byte("x"))
	if v, w := Kept("piv", "3", "a"), Kept("piv", "4", "a"); v != nil || w != nil {
		t.Errorf("a directory open to others: gave %q, kept %q", v, w)
	}
	journalDir = func() string { return "off" }
	Keep("piv", "1", "a", []byte("off"))
	if v := Kept("piv", "1", "a"); v != nil {
		t.Errorf("journals off: %q", v)
	}
}

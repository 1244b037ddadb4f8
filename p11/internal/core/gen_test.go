package core

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
)

// TestGeneratedConstantsFresh fails when p11/pkcs11.h changed without `go generate`.
func TestGeneratedConstantsFresh(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the generator")
	}
	out := filepath.Join(t.TempDir(), "zck.go")
	cmd := exec.Command(filepath.Join(runtime.GOROOT(), "bin", "go"), "run", "../ckgen", "-in", "../../pkcs11.h", "-out", out)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("ckgen: %v\n%s", err, b)
	}
	want, _ := os.ReadFile(out)
	got, _ := os.ReadFile("zck.go")
	if !bytes.Equal(want, got) {
		t.Error("zck.go is stale: run go generate ./p11/internal/core")
	}
	if CKR_PIN_INCORRECT != 0xA0 || CKM_EDDSA != 0x1057 || CKA_ALWAYS_AUTHENTICATE != 0x202 || CK_UNAVAILABLE_INFORMATION != ^uint64(0) {
		t.Error("spot-checked constants differ from the specification")
	}
}

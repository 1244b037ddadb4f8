package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/miekg/pkcs11"
)

func init() {
	register(&command{
		name:    "slots",
		summary: "list slots and tokens as PKCS#11 applications see them (through the module)",
		usage:   "[--module PATH] [--json]",
		help: `Loads the PKCS#11 module (p11-card-pkcs11.so) and lists what an application
sees: every slot (C_GetSlotList), its token (C_GetTokenInfo: label, manufacturer,
model, serial, flags, PIN state) and how many mechanisms it offers.

  --module PATH   the module; default $P11CARD_MODULE, else p11-card-pkcs11.so next
                  to this program, else bin/p11-card-pkcs11.so
  --json          {"module", "library": {"manufacturer", "description", "version"},
                  "slots": [{"id", "description", "token_present", "token": {"label",
                  "manufacturer", "model", "serial", "flags": [...], "mechanisms",
                  "min_pin", "max_pin"}}]}`,
		run: runSlots,
	})
}

// modulePath picks the module file.
func modulePath(flagValue string) (string, error) {
	cands := []string{flagValue, os.Getenv("P11CARD_MODULE")}
	if exe, err := os.Executable(); err == nil {
		cands = append(cands, filepath.Join(filepath.Dir(exe), "p11-card-pkcs11.so"))
	}
	cands = append(cands, filepath.Join("bin", "p11-card-pkcs11.so"))
	for i, c := range cands {
		if c == "" {
			continue
		}
		if _, err := os.Stat(c); err == nil {
			if abs, err := filepath.Abs(c); err == nil {
				return abs, nil
			}
			return c, nil
		} else if i < 2 {
			return "", fmt.Errorf("module %s: %v", c, err)
		}
	}
	return "", errors.New("no PKCS#11 module found: build it (make build) or give --module")
}

// loadModule loads and initialises the module.
func loadModule(path string) (*pkcs11.Ctx, error) {
	p := pkcs11.New(path)
	if p == nil {
		return nil, fmt.Errorf("cannot load %s", path)
	}
	if err := p.Initialize(); err != nil {
		p.Destroy()
		return nil, fmt.Errorf("C_Initialize: %v", err)
	}
	return p, nil
}

func closeModule(p *pkcs11.Ctx) {
	p.Finalize()
	p.Destroy()
}

var tokenFlagNames = []struct {
	f    uint
	name string
}{
	{pkcs11.CKF_RNG, "rng"}, {pkcs11.CKF_WRITE_PROTECTED, "write-protected"}, {pkcs11.CKF_LOGIN_REQUIRED, "login-required"},
	{pkcs11.CKF_USER_PIN_INITIALIZED, "user-pin-initialized"}, {pkcs11.CKF_PROTECTED_AUTHENTICATION_PATH, "pin-pad"},
	{pkcs11.CKF_TOKEN_INITIALIZED, "token-initialized"}, {pkcs11.CKF_USER_PIN_COUNT_LOW, "user-pin-count-low"},
	{pkcs11.CKF_USER_PIN_FINAL_TRY, "user-pin-final-try"}, {pkcs11.CKF_USER_PIN_LOCKED, "user-pin-locked"},
	{pkcs11.CKF_USER_PIN_TO_BE_CHANGED, "user-pin-to-be-changed"}, {pkcs11.CKF_SO_PIN_COUNT_LOW, "so-pin-count-low"},
	{pkcs11.CKF_SO_PIN_FINAL_TRY, "so-pin-final-try"}, {pkcs11.CKF_SO_PIN_LOCKED, "so-pin-locked"},
	{pkcs11.CKF_SO_PIN_TO_BE_CHANGED, "so-pin-to-be-changed"},
}

type slotJSON struct {
	ID           uint      `json:"id"`
	Description  string    `json:"description"`
	TokenPresent bool      `json:"token_present"`
	Token        *tokenP11 `json:"token,omitempty"`
	Error        string    `json:"error,omitempty"`
}

type tokenP11 struct {
	Label        string   `json:"label"`
	Manufacturer string   `json:"manufacturer"`
	Model        string   `json:"model"`
	Serial       string   `json:"serial"`
	Flags        []string `json:"flags"`
	Mechanisms   int      `json:"mechanisms"`
	MinPIN       uint     `json:"min_pin"`
	MaxPIN       uint     `json:"max_pin"`
}

func runSlots(ctx context.Context, e *env, args []string) error {
	fs := newFlags("slots")
	mod := fs.String("module", "", "module path")
	asJSON := fs.Bool("json", false, "JSON output")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	path, err := modulePath(*mod)
	if err != nil {
		return err
	}
	p, err := loadModule(path)
	if err != nil {
		return err
	}
	defer closeModule(p)
	info, err := p.GetInfo()
	if err != nil {
		return err
	}
	ids, err := p.GetSlotList(false)
	if err != nil {
		return fmt.Errorf("C_GetSlotList: %v", err)
	}
	slots := []slotJSON{}
	for _, id := range ids {
		s := slotJSON{ID: id}
		si, err := p.GetSlotInfo(id)
		if err != nil {
			s.Error = err.Error()
			slots = append(slots, s)
			continue
		}
		s.Description = strings.TrimSpace(si.SlotDescription)
		s.TokenPresent = si.Flags&pkcs11.CKF_TOKEN_PRESENT != 0
		if s.TokenPresent {
			ti, err := p.GetTokenInfo(id)
			if err != nil {
				s.Error = err.Error()
			} else {
				t := &tokenP11{Label: strings.TrimSpace(ti.Label), Manufacturer: strings.TrimSpace(ti.ManufacturerID),
					Model: strings.TrimSpace(ti.Model), Serial: strings.TrimSpace(ti.SerialNumber), Flags: []string{},
					MinPIN: ti.MinPinLen, MaxPIN: ti.MaxPinLen}
				for _, f := range tokenFlagNames {
					if ti.Flags&f.f != 0 {
						t.Flags = append(t.Flags, f.name)
					}
				}
				if ms, err := p.GetMechanismList(id); err == nil {
					t.Mechanisms = len(ms)
				}
				s.Token = t
			}
		}
		slots = append(slots, s)
	}
	if *asJSON {
		return writeJSON(e, map[string]any{
			"module":  path,
			"library": map[string]any{"manufacturer": strings.TrimSpace(info.ManufacturerID), "description": strings.TrimSpace(info.LibraryDescription), "version": fmt.Sprintf("%d.%d", info.LibraryVersion.Major, info.LibraryVersion.Minor)},
			"slots":   slots,
		})
	}
	fmt.Fprintf(e.stdout, "%s (%s %d.%d)\n", strings.TrimSpace(info.LibraryDescription), path, info.LibraryVersion.Major, info.LibraryVersion.Minor)
	if len(slots) == 0 {
		fmt.Fprintln(e.stdout, "no slots (no readers, or pcscd is not running)")
	}
	for _, s := range slots {
		fmt.Fprintf(e.stdout, "Slot %d  %s\n", s.ID, s.Description)
		switch {
		case s.Error != "":
			fmt.Fprintf(e.stdout, "  error:  %s\n", s.Error)
		case s.Token == nil:
			fmt.Fprintln(e.stdout, "  token:  none")
		default:
			t := s.Token
			fmt.Fprintf(e.stdout, "  token:  %s (%s %s, serial %s)\n  flags:  %s\n  mechanisms: %d, PIN length %d-%d\n",
				t.Label, t.Manufacturer, t.Model, t.Serial, strings.Join(t.Flags, " "), t.Mechanisms, t.MinPIN, t.MaxPIN)
		}
	}
	return nil
}

package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"

	"github.com/p11-card/p11-card/apdu"
	"github.com/p11-card/p11-card/cards"
)

func init() {
	register(&command{
		name:    "pin",
		summary: "verify, change or unblock a card's PIN",
		usage:   "verify|change|unblock|status [--so] [--slot ID | --reader NAME] [--json]",
		help: `Works on the user PIN (or, with --so, the administrator secret where the card has
a PIN-like one: OpenPGP PW3) through the card's driver. Secrets are read from
standard input, one per line, never from the command line:

  verify    PIN                checks the PIN (a wrong one costs a try)
  change    old PIN, new PIN   changes it
  unblock   PUK, new PIN       sets a new user PIN with the unblocking secret (PIV
                               PUK, OpenPGP reset code; with --so the OpenPGP admin PIN)
  status                       tries left, blocked, still the factory value

  --so          the SO/administrator secret instead of the user PIN
  --slot ID     the slot (see 'p11-card readers'); default the first with a token
  --reader NAME a reader name or part of it
  --json        {"slot", "reader", "action", "ok", "retries", "blocked", "default",
                "error"}

A wrong PIN exits 1 and reports the tries left.`,
		run: runPIN,
	})
}

type pinReport struct {
	Slot    uint64 `json:"slot"`
	Reader  string `json:"reader"`
	Action  string `json:"action"`
	OK      bool   `json:"ok"`
	Retries *int   `json:"retries,omitempty"`
	Blocked bool   `json:"blocked"`
	Default bool   `json:"default"`
	Error   string `json:"error,omitempty"`
}

// pinInput is where secrets come from: standard input; tests replace it.
var pinInput = func(e *env) *secretReader { return newSecretReader(os.Stdin) }

func runPIN(ctx context.Context, e *env, args []string) error {
	if len(args) == 0 {
		return usageError{"pin needs an action: verify, change, unblock or status"}
	}
	action := args[0]
	fs := newFlags("pin")
	so := fs.Bool("so", false, "administrator secret")
	asJSON := fs.Bool("json", false, "JSON output")
	slot, reader := tokenFlags(fs)
	if err := parseFlags(fs, args[1:]); err != nil {
		return err
	}
	role := cards.RoleUser
	if *so {
		role = cards.RoleSO
	}
	in := pinInput(e)
	var a, b []byte
	var err error
	switch action {
	case "verify":
		a, err = in.next("PIN")
	case "change":
		if a, err = in.next("current PIN"); err == nil {
			b, err = in.next("new PIN")
		}
	case "unblock":
		if a, err = in.next("unblocking secret"); err == nil {
			b, err = in.next("new PIN")
		}
	case "status":
	default:
		return usageError{fmt.Sprintf("unknown pin action %q", action)}
	}
	defer wipe(a, b)
	if err != nil {
		return err
	}
	ct, done, err := openToken(ctx, *slot, *reader)
	if err != nil {
		return err
	}
	defer done()
	rep := pinReport{Slot: ct.slot, Reader: ct.reader, Action: action}
	var opErr error
	switch action {
	case "verify":
		opErr = ct.tok.Login(ctx, role, a)
		if opErr == nil {
			ct.tok.Logout(ctx)
		}
	case "change":
		opErr = ct.tok.ChangePIN(ctx, role, a, b)
	case "unblock":
		ur := cards.RolePUK
		if *so {
			ur = cards.RoleSO
		}
		opErr = ct.tok.Unblock(ctx, ur, a, b)
	}
	rep.OK = opErr == nil
	statusRole := role
	if action == "unblock" {
		statusRole = cards.RoleUser
	}
	if st, err := ct.tok.PINStatus(ctx, statusRole); err == nil {
		if st.Retries >= 0 {
			r := st.Retries
			rep.Retries = &r
		}
		rep.Blocked, rep.Default = st.Blocked, st.Default
	} else if action == "status" {
		opErr = err
		rep.OK = false
	}
	if opErr != nil {
		rep.Error = pinErrText(opErr)
	}
	if *asJSON {
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return err
		}
	} else {
		switch {
		case opErr != nil:
		case action == "status":
			fmt.Fprintf(e.stdout, "slot %d (%s): ", rep.Slot, rep.Reader)
			if rep.Retries != nil {
				fmt.Fprintf(e.stdout, "%d tries left", *rep.Retries)
			} else {
				fmt.Fprint(e.stdout, "tries left unknown")
			}
			if rep.Blocked {
				fmt.Fprint(e.stdout, ", blocked")
			}
			if rep.Default {
				fmt.Fprint(e.stdout, ", factory default: change it")
			}
			fmt.Fprintln(e.stdout)
		default:
			fmt.Fprintf(e.stdout, "%s: done\n", action)
		}
	}
	if opErr != nil {
		return errors.New(rep.Error)
	}
	return nil
}

// pinErrText explains a PIN failure without repeating any secret.
func pinErrText(err error) string {
	var v *apdu.VerifyError
	switch {
	case errors.As(err, &v) && v.Retries == 0, errors.Is(err, cards.ErrPINBlocked), errors.Is(err, apdu.ErrAuthBlocked):
		return "blocked: no tries left"
	case errors.As(err, &v):
		return fmt.Sprintf("wrong secret, %d tries left", v.Retries)
	case errors.Is(err, cards.ErrPINLength):
		return "new PIN has a length the card does not accept"
	case errors.Is(err, cards.ErrNotSupported):
		return "the card cannot do this"
	}
	return err.Error()
}

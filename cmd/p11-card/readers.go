package main

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/p11-card/p11-card/cards"
	"github.com/p11-card/p11-card/pcsc"
	"github.com/p11-card/p11-card/pcsc/usb"
	"github.com/p11-card/p11-card/slotmgr"
)

func init() {
	register(&command{
		name:    "readers",
		summary: "list smart-card readers and what card each holds",
		usage:   "[--json]",
		help: `Lists every reader pcscd knows, in slot order (the slot IDs the PKCS#11 module
uses), with the card in it: its ATR and, when a driver recognises it, what it is
(driver, manufacturer, model, firmware version, serial number and token label), and
the USB device behind the reader when it can be found (vendor and product IDs, names,
serial number, bus and address).

A card that no driver takes shows why ("not recognized": p11-card does not support it).

  --json   one JSON object: {"readers": [{"slot", "name", "card_present", "atr",
           "token": {"driver", "label", "manufacturer", "model", "serial",
           "firmware"}, "error", "pinpad", "usb": {"vid", "pid", "manufacturer",
           "product", "serial", "bus", "address"}}]}

Readers come from pcscd. With PCSCLITE_CSOCK_NAME set, that pcscd (for example the
one of 'p11-card rig up') is used instead of the system's.`,
		run: runReaders,
	})
}

// newBackend opens the PC/SC service the commands use; tests put a fake here.
var newBackend = func() slotmgr.Backend { return slotmgr.NewPCSCWithUSB(usb.Readers) }

// readerReport is one reader in `readers` (and, in part, in `watch`).
type readerReport struct {
	Slot        uint64       `json:"slot"`
	Name        string       `json:"name"`
	CardPresent bool         `json:"card_present"`
	ATR         string       `json:"atr,omitempty"`
	Token       *tokenReport `json:"token,omitempty"`
	Error       string       `json:"error,omitempty"` // why a card present has no token
	PINPad      bool         `json:"pinpad"`
	USB         *usbReport   `json:"usb,omitempty"` // the USB device behind the reader, when found
}

type usbReport struct {
	VID          string `json:"vid"` // 4 hex digits
	PID          string `json:"pid"`
	Manufacturer string `json:"manufacturer,omitempty"`
	Product      string `json:"product,omitempty"`
	Serial       string `json:"serial,omitempty"`
	Bus          int    `json:"bus"`
	Address      int    `json:"address"`
	text         string
}

func usbOf(d *pcsc.USBInfo) *usbReport {
	if d == nil {
		return nil
	}
	return &usbReport{VID: fmt.Sprintf("%04x", d.VID), PID: fmt.Sprintf("%04x", d.PID), Manufacturer: d.Manufacturer,
		Product: d.Product, Serial: d.Serial, Bus: d.Bus, Address: d.Address, text: d.String()}
}

type tokenReport struct {
	Driver       string `json:"driver"`
	Label        string `json:"label"`
	Manufacturer string `json:"manufacturer"`
	Model        string `json:"model"`
	Serial       string `json:"serial"`
	Firmware     string `json:"firmware,omitempty"`
}

func tokenOf(t cards.Token) *tokenReport {
	if t == nil {
		return nil
	}
	i := t.Info()
	r := &tokenReport{Driver: i.Driver, Label: i.Label, Manufacturer: i.Manufacturer, Model: i.Model, Serial: i.Serial}
	if i.Firmware != (cards.Version{}) {
		r.Firmware = i.Firmware.String()
	}
	return r
}

func reportOf(s slotmgr.SlotInfo) readerReport {
	r := readerReport{Slot: s.ID, Name: s.Reader, CardPresent: s.CardPresent, PINPad: s.PINPad, USB: usbOf(s.USB)}
	if s.CardPresent {
		r.ATR = strings.ToUpper(hex.EncodeToString(s.ATR))
		if s.Present {
			r.Token = tokenOf(s.Token)
		} else if s.Err != nil {
			r.Error = describeSlotErr(s.Err)
		}
	}
	return r
}

func describeSlotErr(err error) string {
	switch {
	case errors.Is(err, cards.ErrNotRecognized):
		return "not recognized: no p11-card driver supports this card"
	case errors.Is(err, slotmgr.ErrCardMute):
		return "the card does not answer (inserted the wrong way, or broken)"
	}
	return err.Error()
}

// noPCSCD explains a PC/SC service that cannot be reached, and what to do.
func noPCSCD(err error) error {
	where := "pcscd"
	if s := os.Getenv("PCSCLITE_CSOCK_NAME"); s != "" {
		where = "the pcscd at PCSCLITE_CSOCK_NAME=" + s
	}
	return fmt.Errorf("cannot reach %s (%v).\n"+
		"Start it (as root: `systemctl start pcscd.socket`, or run `pcscd`), or try virtual cards:\n"+
		"`p11-card rig up` and export the PCSCLITE_CSOCK_NAME line it prints", where, err)
}

// openSlots starts a slot manager over the PC/SC service and returns once the readers
// present and their cards are known.
func openSlots(ctx context.Context) (*slotmgr.Manager, error) {
	m := slotmgr.New(newBackend(), slotmgr.Options{})
	sctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	if err := m.Start(sctx); err != nil {
		m.Close()
		return nil, err
	}
	if err := m.ServiceErr(); err != nil {
		m.Close()
		return nil, noPCSCD(err)
	}
	return m, nil
}

func runReaders(ctx context.Context, e *env, args []string) error {
	fs := newFlags("readers")
	asJSON := fs.Bool("json", false, "JSON output")
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
	var rs []readerReport
	for _, s := range m.Slots() {
		rs = append(rs, reportOf(s))
	}
	if *asJSON {
		if rs == nil {
			rs = []readerReport{}
		}
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(struct {
			Readers []readerReport `json:"readers"`
		}{rs})
	}
	printReaders(e.stdout, rs)
	return nil
}

func printReaders(w io.Writer, rs []readerReport) {
	if len(rs) == 0 {
		fmt.Fprintln(w, "No readers: pcscd is running but sees no smart-card reader. Plug one in (a YubiKey is one).")
		return
	}
	for _, r := range rs {
		fmt.Fprintf(w, "Slot %d  %s\n", r.Slot, r.Name)
		if r.USB != nil {
			fmt.Fprintf(w, "  usb:       %s\n", r.USB.text)
		}
		if !r.CardPresent {
			fmt.Fprintln(w, "  card:      none")
			continue
		}
		fmt.Fprintf(w, "  card:      present, ATR %s\n", r.ATR)
		if t := r.Token; t != nil {
			desc := strings.TrimSpace(t.Manufacturer + " " + t.Model)
			fmt.Fprintf(w, "  token:     %s, driver %s\n", desc, t.Driver)
			if t.Firmware != "" {
				fmt.Fprintf(w, "  firmware:  %s\n", t.Firmware)
			}
			fmt.Fprintf(w, "  serial:    %s\n", t.Serial)
			fmt.Fprintf(w, "  label:     %s\n", t.Label)
		} else if r.Error != "" {
			fmt.Fprintf(w, "  token:     none: %s\n", r.Error)
		}
		if r.PINPad {
			fmt.Fprintln(w, "  pin pad:   yes (PINs are entered on the reader)")
		}
	}
}

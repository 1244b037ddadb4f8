package pcsc

import (
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// USBInfo identifies a USB smart card reader (or token with a built-in reader, such as a
// YubiKey's CCID interface).
type USBInfo struct {
	VID, PID                      uint16
	Manufacturer, Product, Serial string
	CCID                          bool // has an interface of class 0x0B (chip/smart card)
	Bus, Address                  int
}

// String is "1050:0407 Yubico YubiKey OTP+FIDO+CCID (serial) bus 1 addr 4".
func (u USBInfo) String() string {
	s := fmt.Sprintf("%04x:%04x %s %s", u.VID, u.PID, u.Manufacturer, u.Product)
	if u.Serial != "" {
		s += " (" + u.Serial + ")"
	}
	return s + fmt.Sprintf(" bus %d addr %d", u.Bus, u.Address)
}

// readerName is a pcsc-lite reader name taken apart: "Product [Interface] (Serial) RR SS".
type readerName struct {
	product, iface, serial string
	index, slot            int
}

var errNotPCSCLiteName = errors.New("pcsc: not a pcsc-lite reader name")

// parseReaderName splits a pcsc-lite reader name. pcsc-lite appends the reader index and
// slot as two hex bytes; the CCID driver builds the rest from the USB strings (or a
// friendly name from its Info.plist), adding the interface string in brackets and the
// serial number in parentheses when the device has them.
func parseReaderName(s string) (readerName, error) {
	var n readerName
	f := strings.Fields(s)
	if len(f) < 3 {
		return n, errNotPCSCLiteName
	}
	idx, err1 := strconv.ParseUint(f[len(f)-2], 16, 8)
	slot, err2 := strconv.ParseUint(f[len(f)-1], 16, 8)
	if err1 != nil || err2 != nil || len(f[len(f)-2]) != 2 || len(f[len(f)-1]) != 2 {
		return n, errNotPCSCLiteName
	}
	n.index, n.slot = int(idx), int(slot)
	rest := strings.Join(f[:len(f)-2], " ")
	if strings.HasSuffix(rest, ")") {
		if i := strings.LastIndex(rest, " ("); i >= 0 {
			n.serial = rest[i+2 : len(rest)-1]
			rest = rest[:i]
		}
	}
	if strings.HasSuffix(rest, "]") {
		if i := strings.LastIndex(rest, " ["); i >= 0 {
			n.iface = rest[i+2 : len(rest)-1]
			rest = rest[:i]
		}
	}
	n.product = strings.TrimSpace(rest)
	if n.product == "" {
		return n, errNotPCSCLiteName
	}
	return n, nil
}

func norm(s string) string { return strings.ToLower(strings.Join(strings.Fields(s), " ")) }

// nameMatches reports whether the product part of a reader name fits the device: its
// product string, manufacturer and product, or a friendly name ending in the product.
func nameMatches(product string, d USBInfo) bool {
	p, dp, dm := norm(product), norm(d.Product), norm(d.Manufacturer)
	if dp == "" {
		return false
	}
	return p == dp || (dm != "" && p == dm+" "+dp) || strings.HasSuffix(p, " "+dp) || strings.HasPrefix(dp, p)
}

// MatchUSB finds the device behind a pcsc-lite reader name. A serial number in the name
// must equal the device's. When several identical devices without serial numbers match,
// the reader index in the name picks among them in bus/address order (pcsc-lite numbers
// same-named readers in the order they appeared, which address order follows on one bus):
// a best guess, reported as a match.
func MatchUSB(reader string, devs []USBInfo) (USBInfo, bool) {
	n, err := parseReaderName(reader)
	if err != nil {
		return USBInfo{}, false
	}
	var cands []USBInfo
	for _, d := range devs {
		if !nameMatches(n.product, d) {
			continue
		}
		if n.serial != "" {
			if d.Serial == n.serial {
				return d, true
			}
			continue
		}
		cands = append(cands, d)
	}
	switch {
	case len(cands) == 1:
		return cands[0], true
	case len(cands) > 1:
		sort.SliceStable(cands, func(i, j int) bool {
			if cands[i].Bus != cands[j].Bus {
				return cands[i].Bus < cands[j].Bus
			}
			return cands[i].Address < cands[j].Address
		})
		if n.index < len(cands) {
			return cands[n.index], true
		}
	}
	return USBInfo{}, false
}

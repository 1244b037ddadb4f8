package pcsc

import (
	"testing"
)

func TestParseReaderName(t *testing.T) {
	tests := []struct {
		in                     string
		product, iface, serial string
		index, slot            int
		bad                    bool
	}{
		{in: "Yubico YubiKey OTP+FIDO+CCID 00 00", product: "Yubico YubiKey OTP+FIDO+CCID"},
		{in: "SCM Microsystems Inc. SCR 3310 [CCID Interface] (21120844306107) 01 00", product: "SCM Microsystems Inc. SCR 3310", iface: "CCID Interface", serial: "21120844306107", index: 1},
		{in: "Gemalto PC Twin Reader (645D7CF2) 00 00", product: "Gemalto PC Twin Reader", serial: "645D7CF2"},
		{in: "Nitrokey Nitrokey 3 [CCID/ICCD Interface] 00 00", product: "Nitrokey Nitrokey 3", iface: "CCID/ICCD Interface"},
		{in: "Virtual PCD 00 01", product: "Virtual PCD", slot: 1},
		{in: "Reader (with parens) inside 0A 00", product: "Reader (with parens) inside", index: 10},
		{in: "Virtual PCD", bad: true},
		{in: "00 00", bad: true},
		{in: "Reader 0 0", bad: true},
		{in: "Reader 000 00", bad: true},
		{in: "", bad: true},
	}
	for _, tt := range tests {
		n, err := parseReaderName(tt.in)
		if tt.bad {
			if err == nil {
				t.Errorf("%q: parsed as %+v", tt.in, n)
			}
			continue
		}
		if err != nil || n.product != tt.product || n.iface != tt.iface || n.serial != tt.serial || n.index != tt.index || n.slot != tt.slot {
			t.Errorf("%q: %+v %v", tt.in, n, err)
		}
	}
}

func TestMatchUSB(t *testing.T) {
	yk1 := USBInfo{VID: 0x1050, PID: 0x0407, Manufacturer: "Yubico", Product: "YubiKey OTP+FIDO+CCID", CCID: true, Bus: 1, Address: 9}
	yk2 := USBInfo{VID: 0x1050, PID: 0x0407, Manufacturer: "Yubico", Product: "YubiKey OTP+FIDO+CCID", CCID: true, Bus: 1, Address: 4}
	scm := USBInfo{VID: 0x04E6, PID: 0x5116, Manufacturer: "SCM Microsystems Inc.", Product: "SCR 3310", Serial: "21120844306107", CCID: true, Bus: 2, Address: 3}
	scm2 := scm
	scm2.Serial, scm2.Address = "99999999", 5
	gem := USBInfo{VID: 0x08E6, PID: 0x3437, Manufacturer: "Gemalto", Product: "PC Twin Reader", Serial: "645D7CF2", CCID: true, Bus: 1, Address: 2}
	devs := []USBInfo{yk1, yk2, scm, scm2, gem}
	tests := []struct {
		reader string
		want   USBInfo
		ok     bool
	}{
		{"SCM Microsystems Inc. SCR 3310 [CCID Interface] (21120844306107) 00 00", scm, true},
		{"SCM Microsystems Inc. SCR 3310 [CCID Interface] (99999999) 01 00", scm2, true},
		{"SCM Microsystems Inc. SCR 3310 [CCID Interface] (00000000) 00 00", USBInfo{}, false},
		{"Gemalto PC Twin Reader (645D7CF2) 00 00", gem, true},
		{"gemalto  pc twin reader (645D7CF2) 00 00", gem, true},
		// Two YubiKeys without serials: the reader index picks by address order.
		{"Yubico YubiKey OTP+FIDO+CCID 00 00", yk2, true},
		{"Yubico YubiKey OTP+FIDO+CCID 01 00", yk1, true},
		{"Yubico YubiKey OTP+FIDO+CCID 02 00", USBInfo{}, false},
		{"Virtual PCD 00 00", USBInfo{}, false},
		{"not a pcsc-lite name", USBInfo{}, false},
	}
	for _, tt := range tests {
		got, ok := MatchUSB(tt.reader, devs)
		if ok != tt.ok || got != tt.want {
			t.Errorf("MatchUSB(%q) = %v, %v; want %v, %v", tt.reader, got, ok, tt.want, tt.ok)
		}
	}
	// A single YubiKey matches by product name alone, and a friendly name that only ends
	// in the product string matches too.
	if got, ok := MatchUSB("Yubico YubiKey OTP+FIDO+CCID 00 00", []USBInfo{yk1}); !ok || got != yk1 {
		t.Errorf("single YubiKey: %v %v", got, ok)
	}
	if got, ok := MatchUSB("YubiKey OTP+FIDO+CCID 00 00", []USBInfo{yk1}); !ok || got != yk1 {
		t.Errorf("product only: %v %v", got, ok)
	}
	if _, ok := MatchUSB("Yubico YubiKey 00 00", nil); ok {
		t.Error("matched in an empty list")
	}
}

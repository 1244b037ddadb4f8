// Package usb lists the USB devices with a CCID interface (github.com/google/gousb, over
// libusb), for pcsc.MatchUSB to put a USB identity on a reader. It is apart from package
// pcsc so that what does not ask for USB identities (the PKCS#11 module) neither links
// libusb nor pays for its enumeration.
package usb

import (
	"sort"
	"sync"

	"github.com/google/gousb"

	"github.com/p11-card/p11-card/pcsc"
)

// classSmartCard is the USB interface class of CCID devices (USB CCID spec rev 1.1 §4).
const classSmartCard = 0x0B

// usbMu serialises enumerations: libusb contexts are cheap but not free.
var usbMu sync.Mutex

// Readers lists USB devices with a CCID interface. Where no USB bus is visible
// (containers, no permission, libusb failing) the list is quietly empty with a nil error;
// a device whose strings cannot be read is listed without them.
func Readers() (devs []pcsc.USBInfo, err error) {
	usbMu.Lock()
	defer usbMu.Unlock()
	defer func() {
		if r := recover(); r != nil { // gousb.NewContext panics when libusb_init fails
			devs, err = nil, nil
		}
	}()
	uctx := gousb.NewContext()
	defer uctx.Close()
	var found []pcsc.USBInfo
	opened, _ := uctx.OpenDevices(func(d *gousb.DeviceDesc) bool {
		if !hasCCID(d) {
			return false
		}
		found = append(found, pcsc.USBInfo{VID: uint16(d.Vendor), PID: uint16(d.Product), CCID: true, Bus: d.Bus, Address: d.Address})
		return true
	})
	byAddr := map[[2]int]*gousb.Device{}
	for _, d := range opened {
		if d != nil {
			byAddr[[2]int{d.Desc.Bus, d.Desc.Address}] = d
		}
	}
	for i := range found {
		if d := byAddr[[2]int{found[i].Bus, found[i].Address}]; d != nil {
			found[i].Manufacturer, _ = d.Manufacturer()
			found[i].Product, _ = d.Product()
			found[i].Serial, _ = d.SerialNumber()
		}
	}
	for _, d := range opened {
		if d != nil {
			d.Close()
		}
	}
	sort.Slice(found, func(i, j int) bool {
		if found[i].Bus != found[j].Bus {
			return found[i].Bus < found[j].Bus
		}
		return found[i].Address < found[j].Address
	})
	if found == nil {
		found = []pcsc.USBInfo{}
	}
	return found, nil
}

func hasCCID(d *gousb.DeviceDesc) bool {
	if d.Class == classSmartCard {
		return true
	}
	for _, cfg := range d.Configs {
		for _, intf := range cfg.Interfaces {
			for _, alt := range intf.AltSettings {
				if alt.Class == classSmartCard {
					return true
				}
			}
		}
	}
	return false
}

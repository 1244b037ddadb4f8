package pivtest

import (
	"bytes"
	"fmt"

	"github.com/p11-card/p11-card/apdu"
)

// The selected application.
const (
	appNone       byte = iota
	appPIV             // A000000308…
	appManagement      // Yubico management A000000527471117
	appOTP             // Yubico OTP A0000005272001
)

// managementAID is the YubiKey management application: enough of it for hosts that
// identify a YubiKey through it (GnuPG's scdaemon reads its configuration before it
// enables its PIV support; yubikit reads the version from the SELECT answer).
var managementAID = []byte{0xA0, 0x00, 0x00, 0x05, 0x27, 0x47, 0x11, 0x17}

// otpAID is the YubiKey OTP application (hosts also send it with a trailing 01). Before
// firmware 5 the PIV applet has no GET SERIAL: ykpiv reads the serial here.
var otpAID = []byte{0xA0, 0x00, 0x00, 0x05, 0x27, 0x20, 0x01}

const (
	insOTPConfig     = 0x01 // OTP: configure / read a slot; P1 10 reads the serial
	insOTPStatus     = 0x03 // OTP: read status
	otpSlotSerial    = 0x10
	otpStatusTouchLo = 0x00 // touch level: no slot programmed
)

const (
	insReadConfig = 0x1D // management: read device information

	// Device information tags (yubikit management, DeviceInfo).
	tagUSBSupported = 0x01
	tagSerial       = 0x02
	tagUSBEnabled   = 0x03
	tagFormFactor   = 0x04
	tagFirmware     = 0x05
	tagAutoEject    = 0x06
	tagChalRespTO   = 0x07
	tagDeviceFlags  = 0x08
	tagConfigLock   = 0x0A
	tagNFCSupported = 0x0D
	tagNFCEnabled   = 0x0E

	// Capability bits: OTP, U2F, OpenPGP, PIV, OATH, HSM auth, FIDO2.
	capabilities = 0x0001 | 0x0002 | 0x0008 | 0x0010 | 0x0020 | 0x0100 | 0x0200
	formFactorA  = 0x01 // USB-A keychain
)

// leavePIV drops what a YubiKey forgets when another application is selected.
func (c *Card) leavePIV() {
	c.pinOK, c.pinFresh, c.mgmtOK = false, false, false
	c.mgmtPending, c.mgmtMode = nil, 0
}

// managementSelect is the SELECT answer of the management application: its version as text.
func (c *Card) managementSelect() []byte {
	return []byte(fmt.Sprintf("%d.%d.%d", c.version[0], c.version[1], c.version[2]))
}

// isOTPAID matches the OTP AID with or without its trailing 01.
func isOTPAID(aid []byte) bool {
	return bytes.Equal(aid, otpAID) || bytes.Equal(aid, append(append([]byte(nil), otpAID...), 0x01))
}

// otpStatus is the OTP status block: version, programming sequence, touch level.
func (c *Card) otpStatus() []byte {
	return []byte{c.version[0], c.version[1], c.version[2], 0, otpStatusTouchLo, 0}
}

// otpCommand handles READ STATUS and the serial read of the OTP application.
func (c *Card) otpCommand(cmd apdu.Command) ([]byte, status) {
	switch {
	case cmd.INS == insOTPStatus:
		return c.otpStatus(), swOK
	case cmd.INS == insOTPConfig && cmd.P1 == otpSlotSerial:
		return []byte{byte(c.serial >> 24), byte(c.serial >> 16), byte(c.serial >> 8), byte(c.serial)}, swOK
	}
	return nil, swINS
}

// managementCommand handles the one management command hosts use to identify a YubiKey:
// read configuration (1D), answered as a length byte then device information TLVs.
func (c *Card) managementCommand(cmd apdu.Command) ([]byte, status) {
	if cmd.INS != insReadConfig {
		return nil, swINS
	}
	if cmd.P1 != 0 || cmd.P2 != 0 {
		return nil, swBadP1P2
	}
	caps := []byte{byte(capabilities >> 8), byte(capabilities & 0xFF)}
	var tl []byte
	tl = apdu.AppendTLV(tl, tagUSBSupported, caps)
	tl = apdu.AppendTLV(tl, tagSerial, []byte{byte(c.serial >> 24), byte(c.serial >> 16), byte(c.serial >> 8), byte(c.serial)})
	tl = apdu.AppendTLV(tl, tagUSBEnabled, caps)
	tl = apdu.AppendTLV(tl, tagFormFactor, []byte{formFactorA})
	tl = apdu.AppendTLV(tl, tagFirmware, c.version[:])
	tl = apdu.AppendTLV(tl, tagAutoEject, []byte{0, 0})
	tl = apdu.AppendTLV(tl, tagChalRespTO, []byte{15})
	tl = apdu.AppendTLV(tl, tagDeviceFlags, []byte{0})
	tl = apdu.AppendTLV(tl, tagConfigLock, []byte{0})
	tl = apdu.AppendTLV(tl, tagNFCSupported, caps)
	tl = apdu.AppendTLV(tl, tagNFCEnabled, caps)
	return append([]byte{byte(len(tl))}, tl...), swOK
}

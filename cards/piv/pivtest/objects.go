package pivtest

import (
	"github.com/p11-card/p11-card/apdu"
)

// Data objects (SP 800-73-4 part 1 table 3; Yubico's 5FFFxx range).
const (
	objDiscovery         uint32 = 0x7E
	objBIT               uint32 = 0x7F61 // biometric information templates group
	objCardAuthCert      uint32 = 0x5FC101
	objCHUID             uint32 = 0x5FC102
	objFingerprints      uint32 = 0x5FC103 // PIN protected
	objAuthCert          uint32 = 0x5FC105
	objSecurity          uint32 = 0x5FC106
	objCCC               uint32 = 0x5FC107
	objFacial            uint32 = 0x5FC108 // PIN protected
	objPrinted           uint32 = 0x5FC109 // PIN protected; YubiKey tools keep the protected management key here
	objSignCert          uint32 = 0x5FC10A
	objKeyMgmtCert       uint32 = 0x5FC10B
	objKeyHistory        uint32 = 0x5FC10C
	objIris              uint32 = 0x5FC121 // PIN protected
	objSMCert            uint32 = 0x5FC122
	objPairingCode       uint32 = 0x5FC123
	objAdmin             uint32 = 0x5FFF00 // Yubico PIV manager data
	objAttestation       uint32 = 0x5FFF01 // certificate of the F9 attestation key
	objYubicoLast        uint32 = 0x5FFF15
	maxObjectSize               = 3063 // content of the 53 container a YubiKey 5 stores
	tagObjectID                 = 0x5C
	tagObjectData               = 0x53
	tagDiscoveryTemplate        = 0x7E
	tagPINUsagePolicy           = 0x5F2F
)

// Exported names of data objects, for test setup (PutObject, Object).
const (
	ObjectCHUID       = objCHUID
	ObjectCCC         = objCCC
	ObjectPrinted     = objPrinted
	ObjectKeyHistory  = objKeyHistory
	ObjectAdmin       = objAdmin
	ObjectAttestation = objAttestation
)

// pinProtected reports the objects whose read needs the PIN (part 1 table 3).
func pinProtected(tag uint32) bool {
	switch tag {
	case objFingerprints, objFacial, objPrinted, objIris:
		return true
	}
	return false
}

// storable reports whether tag is a data object the card keeps.
func storable(tag uint32) bool {
	return (tag >= objCardAuthCert && tag <= objPairingCode) || (tag >= objAdmin && tag <= objYubicoLast)
}

// objectTag decodes the 5C object identifier of GET/PUT DATA.
func objectTag(v []byte) (uint32, bool) {
	if len(v) == 0 || len(v) > 3 {
		return 0, false
	}
	var t uint32
	for _, b := range v {
		t = t<<8 | uint32(b)
	}
	return t, true
}

// discovery is the discovery object a YubiKey answers (part 1 §3.3.2): the PIV AID and a
// PIN usage policy of 40 00 (PIV PIN only, no global PIN).
func discovery() []byte {
	inner := apdu.TLVBytes(0x4F, pivAID)
	inner = apdu.AppendTLV(inner, tagPINUsagePolicy, []byte{0x40, 0x00})
	return apdu.TLVBytes(tagDiscoveryTemplate, inner)
}

// doGetData is GET DATA (part 2 §3.1.2): P1P2 3FFF, data 5C tag; answer 53 container, or
// the 7E template for the discovery object.
func (c *Card) doGetData(cmd apdu.Command) ([]byte, status) {
	if cmd.P1 != 0x3F || cmd.P2 != 0xFF {
		return nil, swBadP1P2
	}
	tl, err := apdu.ParseAll(cmd.Data)
	if err != nil || len(tl) != 1 || tl[0].Tag != tagObjectID {
		return nil, swWrongData
	}
	tag, ok := objectTag(tl[0].Value)
	if !ok {
		return nil, swWrongData
	}
	switch {
	case tag == objDiscovery:
		return discovery(), swOK
	case tag == objBIT:
		return nil, swNotFound
	case !storable(tag):
		return nil, swWrongData
	}
	if pinProtected(tag) && !c.pinOK {
		return nil, swSecurity
	}
	v, ok := c.st.Objects[tag]
	if !ok {
		return nil, swNotFound
	}
	return apdu.TLVBytes(tagObjectData, v), swOK
}

// doPutData is PUT DATA (part 2 §3.3.2): 5C tag then 53 container; an empty container
// deletes the object. Needs the management key.
func (c *Card) doPutData(cmd apdu.Command) ([]byte, status) {
	if cmd.P1 != 0x3F || cmd.P2 != 0xFF {
		return nil, swBadP1P2
	}
	if !c.mgmtOK {
		return nil, swSecurity
	}
	id, rest, err := apdu.ParseTLV(cmd.Data)
	if err != nil || id.Tag != tagObjectID {
		return nil, swWrongData
	}
	tag, ok := objectTag(id.Value)
	if !ok || !storable(tag) {
		return nil, swWrongData
	}
	body, rest, err := apdu.ParseTLV(rest)
	if err != nil || body.Tag != tagObjectData || len(rest) != 0 {
		return nil, swWrongData
	}
	if len(body.Value) > maxObjectSize {
		return nil, swNoMemory
	}
	if len(body.Value) == 0 {
		delete(c.st.Objects, tag)
	} else {
		c.st.Objects[tag] = append([]byte(nil), body.Value...)
	}
	c.persist()
	return nil, swOK
}

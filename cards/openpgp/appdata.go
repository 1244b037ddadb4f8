package openpgp

import (
	"bytes"
	"encoding/binary"
	"fmt"

	"github.com/p11-card/p11-card/apdu"
	"github.com/p11-card/p11-card/cards"
)

// Data object tags (OpenPGP card spec 3.4 §4.4.1, "DOs for GET DATA" and "DOs for PUT DATA").
const (
	doAID            apdu.Tag = 0x4F
	doLoginData      apdu.Tag = 0x5E
	doName           apdu.Tag = 0x5B
	doLanguage       apdu.Tag = 0x5F2D
	doSex            apdu.Tag = 0x5F35
	doURL            apdu.Tag = 0x5F50
	doHistorical     apdu.Tag = 0x5F52
	doCardholder     apdu.Tag = 0x65
	doAppData        apdu.Tag = 0x6E
	doDiscretionary  apdu.Tag = 0x73
	doSecSupport     apdu.Tag = 0x7A
	doSigCounter     apdu.Tag = 0x93
	doCert           apdu.Tag = 0x7F21
	doExtLenInfo     apdu.Tag = 0x7F66
	doGeneralFeature apdu.Tag = 0x7F74
	doExtCaps        apdu.Tag = 0xC0
	doAlgoSig        apdu.Tag = 0xC1
	doAlgoDec        apdu.Tag = 0xC2
	doAlgoAut        apdu.Tag = 0xC3
	doPWStatus       apdu.Tag = 0xC4
	doFingerprints   apdu.Tag = 0xC5
	doCAFingerprints apdu.Tag = 0xC6
	doFprSig         apdu.Tag = 0xC7 // PUT DATA: fingerprint of the SIG key; C8 DEC, C9 AUT
	doGenDates       apdu.Tag = 0xCD
	doDateSig        apdu.Tag = 0xCE // PUT DATA: generation date of the SIG key; CF DEC, D0 AUT
	doResetCode      apdu.Tag = 0xD3
	doKeyInfo        apdu.Tag = 0xDE
	doUIFSig         apdu.Tag = 0xD6 // user interaction flag (Yubico and 3.4): D6 SIG, D7 DEC, D8 AUT
	doKDF            apdu.Tag = 0xF9
	doPubKey         apdu.Tag = 0x7F49
	doExtHeaderList  apdu.Tag = 0x4D
	doCardholderKey  apdu.Tag = 0x7F48
	doKeyData        apdu.Tag = 0x5F48
)

// maxKeys bounds the key entries read from lists (fingerprints, dates): three keys in the
// spec, a fourth (attestation) on YubiKey, room for a few more.
const maxKeys = 8

// AID is the OpenPGP application identifier (spec 3.4 §4.2.1):
// D2 76 00 01 24 | 01 | version (2) | manufacturer (2) | serial (4) | RFU (2).
type AID struct {
	Raw          []byte
	Version      cards.Version // OpenPGP spec version the card implements (Major.Minor)
	Manufacturer uint16
	Serial       uint32
}

// ridOpenPGP is the registered application provider identifier and application of OpenPGP.
var ridOpenPGP = []byte{0xD2, 0x76, 0x00, 0x01, 0x24, 0x01}

func parseAID(b []byte) (AID, error) {
	if len(b) < 14 || !bytes.HasPrefix(b, ridOpenPGP) {
		return AID{}, fmt.Errorf("%w: openpgp: AID of %d bytes % X", cards.ErrBadCard, len(b), b)
	}
	a := AID{Raw: append([]byte(nil), b...)}
	a.Version = cards.Version{Major: bcd(b[6]), Minor: bcd(b[7])}
	a.Manufacturer = binary.BigEndian.Uint16(b[8:10])
	a.Serial = binary.BigEndian.Uint32(b[10:14])
	return a, nil
}

// bcd reads one byte as two decimal digits; cards that write binary versions (0x0A) still
// read sensibly.
func bcd(b byte) int {
	if b>>4 <= 9 && b&0xF <= 9 {
		return int(b>>4)*10 + int(b&0xF)
	}
	return int(b)
}

// manufacturerName maps the AID manufacturer ID (list kept by the spec's maintainers).
func manufacturerName(id uint16) string {
	switch id {
	case 0x0001:
		return "PPC Card Systems"
	case 0x0002:
		return "Prism"
	case 0x0003:
		return "OpenFortress"
	case 0x0004:
		return "Wewid"
	case 0x0005:
		return "ZeitControl"
	case 0x0006:
		return "Yubico"
	case 0x0007:
		return "OpenKMS"
	case 0x0008:
		return "LogoEmail"
	case 0x0009:
		return "Fidesmo"
	case 0x000A:
		return "VivoKey"
	case 0x000B:
		return "Feitian"
	case 0x000D:
		return "Dangerous Things"
	case 0x000E:
		return "Excelsecu"
	case 0x000F:
		return "Nitrokey"
	case 0x002A:
		return "Magrathea"
	case 0x0042:
		return "GnuPG e.V."
	case 0x1337:
		return "Warsaw Hackerspace"
	case 0x2342:
		return "warpzone"
	case 0x4354:
		return "Confidential Technologies"
	case 0x5443:
		return "TIF-IT e.V."
	case 0x63AF:
		return "Trustica"
	case 0xBA53:
		return "c-base e.V."
	case 0xBD0E:
		return "Paranoidlabs"
	case 0xF1D0:
		return "CanoKeys"
	case 0xF517:
		return "FSIJ"
	case 0xF5EC:
		return "F-Secure"
	case 0x0000, 0xFFFF:
		return "test card"
	}
	return fmt.Sprintf("unknown (%04X)", id)
}

// ExtCaps is the extended capabilities DO C0 (spec 3.4 §4.4.3.7; 2.x layout in §4.4.1 of 2.1).
type ExtCaps struct {
	SecureMessaging   bool
	GetChallenge      bool
	KeyImport         bool
	PWStatusWritable  bool
	PrivateDOs        bool
	AlgoAttrsWritable bool
	AESDecrypt        bool
	KDF               bool
	MaxChallenge      int // bytes; 0 when unknown
	MaxCert           int // bytes of a cardholder certificate; 0: no certificate DO
	MaxSpecialDO      int // 3.x
	// MaxCommand and MaxResponse are from the 2.x layout (3.x moved them to 7F66).
	MaxCommand, MaxResponse int
	PINBlock2               bool // 3.x byte 9
	MSE                     bool // 3.x byte 10: MANAGE SECURITY ENVIRONMENT for DEC/AUT
}

func parseExtCaps(b []byte, v3 bool) ExtCaps {
	var e ExtCaps
	if len(b) == 0 {
		return e
	}
	f := b[0]
	e.SecureMessaging = f&0x80 != 0
	e.GetChallenge = f&0x40 != 0
	e.KeyImport = f&0x20 != 0
	e.PWStatusWritable = f&0x10 != 0
	e.PrivateDOs = f&0x08 != 0
	e.AlgoAttrsWritable = f&0x04 != 0
	e.AESDecrypt = f&0x02 != 0
	e.KDF = f&0x01 != 0
	u16 := func(i int) int {
		if len(b) < i+2 {
			return 0
		}
		return int(binary.BigEndian.Uint16(b[i:]))
	}
	e.MaxChallenge = u16(2)
	e.MaxCert = u16(4)
	if v3 {
		e.MaxSpecialDO = u16(6)
		if len(b) > 8 {
			e.PINBlock2 = b[8] == 1
		}
		if len(b) > 9 {
			e.MSE = b[9] == 1
		}
	} else {
		e.MaxCommand = u16(6)
		e.MaxResponse = u16(8)
	}
	return e
}

// PWStatus is the PW status bytes DO C4 (spec 3.4 §4.4.3.9).
type PWStatus struct {
	// PW1Multi is false when PW1 (81) is valid for one signature only ("PIN for every
	// signature"): byte 1 equal to 00. A YubiKey fresh from the factory reports FF here.
	PW1Multi bool
	// Max lengths of PW1, reset code and PW3 (bit 8 of PW1's byte flags PIN block format 2).
	PW1Max, RCMax, PW3Max int
	PINBlock2             bool
	// Retries left for PW1, reset code and PW3.
	PW1Retries, RCRetries, PW3Retries int
}

func parsePWStatus(b []byte) (PWStatus, error) {
	if len(b) < 7 {
		return PWStatus{}, fmt.Errorf("%w: openpgp: PW status of %d bytes", cards.ErrBadCard, len(b))
	}
	return PWStatus{
		PW1Multi:   b[0] != 0,
		PW1Max:     int(b[1] & 0x7F),
		PINBlock2:  b[1]&0x80 != 0,
		RCMax:      int(b[2]),
		PW3Max:     int(b[3]),
		PW1Retries: int(b[4]),
		RCRetries:  int(b[5]),
		PW3Retries: int(b[6]),
	}, nil
}

// AppData is the parsed application related data DO 6E (spec 3.4 §4.4.3.1). Every field is
// found by tag, at whatever depth the card puts it (YubiKey nests 7F66 in 73).
type AppData struct {
	AID            AID
	Historical     []byte
	Caps           ExtCaps
	Algo           [3]AlgoAttr // SIG, DEC, AUT
	AlgoRaw        [3][]byte
	PW             PWStatus
	Fingerprints   [][]byte // 20 bytes each: SIG, DEC, AUT (YubiKey: and ATT)
	CAFingerprints [][]byte
	GenDates       []uint32
	// KeyStatus maps key reference (1 SIG, 2 DEC, 3 AUT) to 00 absent, 01 generated,
	// 02 imported (DE, 3.3+); nil when the card does not tell.
	KeyStatus map[byte]byte
	// MaxCommand and MaxResponse are the extended length limits (7F66, or C0 on 2.x); 0 unknown.
	MaxCommand, MaxResponse int
	// Chaining and Extended tell what the card accepts (historical bytes, 7F66).
	Chaining, Extended bool
	UIF                [3][]byte
}

// ParseAppData decodes DO 6E (with or without its outer tag). Unknown tags are skipped; a
// missing AID, PW status or an unparsable structure is an error wrapping cards.ErrBadCard.
func ParseAppData(b []byte) (*AppData, error) {
	if v, ok, err := apdu.Find(b, doAppData); err == nil && ok {
		b = v
	}
	objs := map[apdu.Tag][]byte{}
	if err := collect(b, objs, 0); err != nil {
		return nil, fmt.Errorf("%w: openpgp: application data: %v", cards.ErrBadCard, err)
	}
	a := &AppData{}
	aid, ok := objs[doAID]
	if !ok {
		return nil, fmt.Errorf("%w: openpgp: application data without AID", cards.ErrBadCard)
	}
	var err error
	if a.AID, err = parseAID(aid); err != nil {
		return nil, err
	}
	v3 := a.AID.Version.Major >= 3
	a.Historical = clone(objs[doHistorical])
	a.Caps = parseExtCaps(objs[doExtCaps], v3)
	for i, t := range []apdu.Tag{doAlgoSig, doAlgoDec, doAlgoAut} {
		if raw, ok := objs[t]; ok {
			a.AlgoRaw[i] = clone(raw)
			a.Algo[i], _ = ParseAlgoAttr(raw) // an unknown algorithm stays AlgoUnknown
		}
	}
	pw, ok := objs[doPWStatus]
	if !ok {
		return nil, fmt.Errorf("%w: openpgp: application data without PW status", cards.ErrBadCard)
	}
	if a.PW, err = parsePWStatus(pw); err != nil {
		return nil, err
	}
	a.Fingerprints = split(objs[doFingerprints], 20)
	a.CAFingerprints = split(objs[doCAFingerprints], 20)
	for _, d := range split(objs[doGenDates], 4) {
		a.GenDates = append(a.GenDates, binary.BigEndian.Uint32(d))
	}
	if ki, ok := objs[doKeyInfo]; ok {
		a.KeyStatus = map[byte]byte{}
		for i := 0; i+1 < len(ki) && i < 2*maxKeys; i += 2 {
			a.KeyStatus[ki[i]] = ki[i+1]
		}
	}
	for i := range a.UIF {
		a.UIF[i] = clone(objs[doUIFSig+apdu.Tag(i)])
	}
	a.Chaining, a.Extended = histCaps(a.Historical)
	if el, ok := objs[doExtLenInfo]; ok {
		if vals := ints(el); len(vals) >= 2 {
			a.MaxCommand, a.MaxResponse = vals[0], vals[1]
			a.Extended = true
		}
	} else if !v3 && a.Caps.MaxCommand > 0 {
		a.MaxCommand, a.MaxResponse = a.Caps.MaxCommand, a.Caps.MaxResponse
	}
	return a, nil
}

// collect gathers the objects of b into m, descending into the constructed templates the
// spec nests (73, 7F74 is left alone). The first occurrence of a tag wins.
func collect(b []byte, m map[apdu.Tag][]byte, depth int) error {
	if depth > 3 {
		return nil
	}
	all, err := apdu.ParseAll(b)
	if err != nil {
		return err
	}
	for _, t := range all {
		if _, dup := m[t.Tag]; !dup {
			m[t.Tag] = t.Value
		}
		if t.Tag == doDiscretionary || t.Tag == doAppData {
			if err := collect(t.Value, m, depth+1); err != nil {
				return err
			}
		}
	}
	return nil
}

// ints reads the INTEGER (02) objects of 7F66.
func ints(b []byte) []int {
	all, err := apdu.ParseAll(b)
	if err != nil {
		return nil
	}
	var out []int
	for _, t := range all {
		if t.Tag != 0x02 || len(t.Value) == 0 || len(t.Value) > 4 {
			continue
		}
		n := 0
		for _, c := range t.Value {
			n = n<<8 | int(c)
		}
		out = append(out, n)
	}
	return out
}

// histCaps reads the card capabilities (compact-TLV tag 7, third software function table
// byte) from historical bytes (ISO/IEC 7816-4 §8.1.1.2.7): bit 8 command chaining, bit 7
// extended Lc and Le. Category 00 ends with three status bytes, 80 does not.
func histCaps(h []byte) (chaining, extended bool) {
	if len(h) < 1 || (h[0] != 0x00 && h[0] != 0x80) {
		return false, false
	}
	body := h[1:]
	if h[0] == 0x00 && len(body) >= 3 {
		body = body[:len(body)-3]
	}
	for len(body) > 0 {
		tag, l := body[0]>>4, int(body[0]&0xF)
		if 1+l > len(body) {
			break
		}
		if tag == 7 && l >= 3 {
			c := body[3]
			return c&0x80 != 0, c&0x40 != 0
		}
		body = body[1+l:]
	}
	return false, false
}

// atrHistorical returns the historical bytes of an ATR (ISO/IEC 7816-3 §8.2), nil when the
// ATR is malformed.
func atrHistorical(atr []byte) []byte {
	if len(atr) < 2 {
		return nil
	}
	k := int(atr[1] & 0x0F)
	y := atr[1] >> 4
	i := 2
	for {
		for bit := byte(1); bit <= 8; bit <<= 1 {
			if y&bit != 0 {
				i++
			}
		}
		if y&0x8 == 0 {
			break
		}
		if i-1 >= len(atr) {
			return nil
		}
		y = atr[i-1] >> 4
	}
	if i+k > len(atr) {
		return nil
	}
	return atr[i : i+k]
}

func split(b []byte, n int) [][]byte {
	var out [][]byte
	for len(b) >= n && len(out) < maxKeys {
		out = append(out, clone(b[:n]))
		b = b[n:]
	}
	return out
}

func clone(b []byte) []byte {
	if b == nil {
		return nil
	}
	return append([]byte{}, b...)
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// keyPresent tells whether the card holds key i (0 SIG, 1 DEC, 2 AUT): the key information
// DO (DE) when the card has it, else a fingerprint that is not all zeros.
func (a *AppData) keyPresent(i int) bool {
	if a.KeyStatus != nil {
		if s, ok := a.KeyStatus[byte(i+1)]; ok {
			return s != 0
		}
	}
	return i < len(a.Fingerprints) && !allZero(a.Fingerprints[i])
}

// Cardholder is DO 65 (spec 3.4 §4.4.3.3).
type Cardholder struct {
	Name     string // "Surname<<Given names", as stored
	Language string
	Sex      byte // ISO 5218: '1' male, '2' female, '9' not applicable
}

// ParseCardholder decodes DO 65 (with or without its outer tag).
func ParseCardholder(b []byte) (Cardholder, error) {
	if v, ok, err := apdu.Find(b, doCardholder); err == nil && ok {
		b = v
	}
	all, err := apdu.ParseAll(b)
	if err != nil {
		return Cardholder{}, fmt.Errorf("%w: openpgp: cardholder data: %v", cards.ErrBadCard, err)
	}
	var c Cardholder
	for _, t := range all {
		switch t.Tag {
		case doName:
			c.Name = string(t.Value)
		case doLanguage:
			c.Language = string(t.Value)
		case doSex:
			if len(t.Value) > 0 {
				c.Sex = t.Value[0]
			}
		}
	}
	return c, nil
}

// ParseSignatureCounter reads the digital signature counter (93) from the security support
// template DO 7A (with or without its outer tag).
func ParseSignatureCounter(b []byte) (int, error) {
	if v, ok, err := apdu.Find(b, doSecSupport); err == nil && ok {
		b = v
	}
	v, ok, err := apdu.Find(b, doSigCounter)
	if err != nil || !ok || len(v) == 0 || len(v) > 4 {
		return 0, fmt.Errorf("%w: openpgp: security support template without counter", cards.ErrBadCard)
	}
	n := 0
	for _, c := range v {
		n = n<<8 | int(c)
	}
	return n, nil
}

package piv

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/p11-card/p11-card/apdu"
	"github.com/p11-card/p11-card/cards"
	"github.com/p11-card/p11-card/internal/trace"
)

func init() { cards.Register(Driver{}) }

// Driver binds PIV cards. The zero value is ready; init registers one.
type Driver struct{}

// Name is "piv".
func (Driver) Name() string { return "piv" }

// MatchATR says yes to YubiKeys (historical bytes naming "YubiKey") and maybe to anything
// else: PIV is an application any ISO/IEC 7816-4 card may carry, so Open probes with SELECT.
func (Driver) MatchATR(atr []byte) cards.Match {
	if isYubiKeyATR(atr) {
		return cards.MatchYes
	}
	return cards.MatchMaybe
}

func isYubiKeyATR(atr []byte) bool {
	return bytes.Contains(bytes.ToLower(cards.HistoricalBytes(atr)), []byte("yubikey"))
}

// Open selects the PIV application and reads what identifies the card, in one transaction:
// SELECT, then on a YubiKey GET VERSION and GET SERIAL; a card without the Yubico
// extensions answers GET VERSION with an error and has its CHUID and discovery object read
// instead. Last comes the PIN's state, as PINStatus reads it (GET METADATA of 80 on a
// YubiKey 5.3+, else an empty VERIFY): nearly every application asks for CK_TOKEN_INFO
// right after it lists the slots, and it costs no transaction of its own then
// (cards.OpenedPINs). 4 APDUs on a YubiKey 5, 5 on other cards.
func (Driver) Open(ctx context.Context, c cards.Conn, atr []byte) (cards.Token, error) {
	t := newToken(c, atr)
	unlock, _, err := c.Lock(ctx)
	if err != nil {
		return nil, fmt.Errorf("piv: open: %w", err)
	}
	defer unlock()
	if _, err := cards.SelectAID(ctx, c, aidPIV, short); err != nil {
		return nil, fmt.Errorf("piv: open: %w", err)
	}
	if err := t.identify(ctx); err != nil {
		return nil, fmt.Errorf("piv: open: %w", err)
	}
	// A card whose answer fails is bound all the same, and TokenInfo asks again; one that
	// takes neither query is not asked again (readPINStatus).
	if st, err := t.readPINStatus(ctx, cards.RoleUser, refPIN); err == nil {
		t.opened = &openedPIN{st: st, at: time.Now()}
	}
	// The token holds none of the card's objects until its first operation, whose begin
	// looks at the journal first: the journal's file can wait for that look.
	t.journal = cards.LazyJournal("piv", t.info.Serial)
	return t, nil
}

// newToken makes a token for a card; no I/O.
func newToken(c cards.Conn, atr []byte) *Token {
	caps := cards.ParseATRCaps(atr)
	t := &Token{
		conn:  c,
		atr:   bytes.Clone(atr),
		slots: map[Slot]*slotCache{},
		data:  map[uint32]*dataCache{},
	}
	// Extended APDUs when the ATR says the card takes them (a YubiKey's does); command
	// chaining and GET RESPONSE otherwise (SP 800-73-4 part 2 §3: every PIV card chains).
	t.opt.Extended = caps.Extended
	return t
}

// identify reads the version, serial and, on non-Yubico cards, CHUID and discovery.
func (t *Token) identify(ctx context.Context) error {
	r, err := apdu.Exchange(ctx, t.conn, apdu.Command{INS: insGetVersion, Ne: 3}, short)
	if err != nil {
		return err
	}
	info := cards.TokenInfo{
		Driver:   "piv",
		SOSecret: "key-hex",
		PINMin:   6,
		PINMax:   8,
	}
	if r.SW == apdu.SWOK && len(r.Data) == 3 {
		t.yubico = true
		t.fw = cards.Version{Major: int(r.Data[0]), Minor: int(r.Data[1]), Patch: int(r.Data[2])}
		if t.fw.Major >= 4 {
			t.opt.Extended = true // YubiKey 4 and later take extended APDUs on every interface
		}
		t.hasMeta = t.fwAtLeast(5, 3, 0)
		info.Manufacturer = "Yubico"
		info.Firmware = t.fw
		info.Model = fmt.Sprintf("YubiKey %d (PIV)", t.fw.Major)
		if t.fw.Major < 4 {
			info.Model = "YubiKey NEO (PIV)"
		}
		if t.fwAtLeast(5, 0, 0) {
			s, err := apdu.Do(ctx, t.conn, apdu.Command{INS: insGetSerial, Ne: 4}, short)
			if err != nil && !isUnsupported(err) {
				return err
			}
			if err == nil && len(s) == 4 {
				t.serial = binary.BigEndian.Uint32(s)
				info.Serial = strconv.FormatUint(uint64(t.serial), 10)
			}
		}
		if info.Serial == "" {
			// YubiKey NEO and 4 have no GET SERIAL in PIV: the CHUID names the card.
			if err := t.serialFromCHUID(ctx, &info); err != nil {
				return err
			}
		}
		if info.Serial != "" {
			info.Label = "YubiKey PIV #" + info.Serial
		}
	} else {
		info.Manufacturer = "PIV"
		info.Model = "PIV card"
		// Not a YubiKey: the CHUID's GUID names the card; the discovery object says which
		// PIN is primary.
		if err := t.serialFromCHUID(ctx, &info); err != nil {
			return err
		}
		if b, err := t.readData(ctx, tagDiscovery); err == nil {
			if d, err := parseDiscovery(b); err == nil {
				t.disc = &d
			}
		} else if !errors.Is(err, cards.ErrObjectNotFound) && !errors.Is(err, cards.ErrLoginRequired) {
			return err
		}
	}
	if info.Label == "" {
		info.Label = "PIV card"
		if info.Serial != "" {
			info.Label += " " + info.Serial
		}
	}
	t.info = info
	trace.Printf("piv", "bound %s: firmware %v, serial %q, metadata %v, extended APDUs %v", info.Model, t.fw, info.Serial, t.hasMeta, t.opt.Extended)
	return nil
}

// serialFromCHUID reads the CHUID (once: it stays cached as a data object) for a serial.
func (t *Token) serialFromCHUID(ctx context.Context, info *cards.TokenInfo) error {
	b, err := t.loadData(ctx, tagCHUID)
	if err != nil {
		return err
	}
	if b != nil {
		if ch, err := parseCHUID(b); err == nil {
			info.Serial = chuidSerial(ch)
		}
	}
	return nil
}

// chuidSerial derives a 16-character serial from the CHUID: the GUID's first eight bytes
// in hex when it is set, else the FASC-N's last eight bytes.
func chuidSerial(c chuid) string {
	src := c.GUID
	if len(src) == 0 || bytes.Equal(src, make([]byte, len(src))) {
		src = c.FASCN
		if len(src) > 8 {
			src = src[len(src)-8:]
		}
	}
	if len(src) > 8 {
		src = src[:8]
	}
	if len(src) == 0 || bytes.Equal(src, make([]byte, len(src))) {
		return ""
	}
	return fmt.Sprintf("%X", src)
}

// isUnsupported reports status words meaning "this card has no such command".
func isUnsupported(err error) bool {
	return errors.Is(err, apdu.ErrInsNotSupported) || errors.Is(err, apdu.ErrClaNotSupported) ||
		errors.Is(err, apdu.ErrFuncNotSupported) || errors.Is(err, apdu.ErrWrongP1P2)
}

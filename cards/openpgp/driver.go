package openpgp

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/p11-card/p11-card/apdu"
	"github.com/p11-card/p11-card/cards"
	"github.com/p11-card/p11-card/internal/trace"
)

// Instructions (spec 3.4 §7.2).
const (
	insSelect            = 0xA4
	insSelectData        = 0xA5
	insGetData           = 0xCA
	insGetNextData       = 0xCC
	insVerify            = 0x20
	insChangeRef         = 0x24
	insResetRetry        = 0x2C
	insPutData           = 0xDA
	insPutDataOdd        = 0xDB
	insGenerate          = 0x47
	insPSO               = 0x2A
	insInternalAuth      = 0x88
	insGetChallenge      = 0x84
	insTerminate         = 0xE6
	insActivate          = 0x44
	insMSE               = 0x22
	pwSign          byte = 0x81 // PW1 for PSO:CDS
	pwOther         byte = 0x82 // PW1 for the other operations
	pwAdmin         byte = 0x83 // PW3
)

// Driver is the OpenPGP card driver; registered in init.
type Driver struct{}

func init() { cards.Register(Driver{}) }

// Name implements cards.Driver.
func (Driver) Name() string { return "openpgp" }

// yubiKeyATRPrefix is the start of the YubiKey 4/5 ATRs (…"YubiKey" in the historical bytes).
var yubiATRMark = []byte("YubiKey")

// MatchATR implements cards.Driver: any ATR is worth a SELECT; a YubiKey or one with
// "OpenPGP"/"Gnuk" in its historical bytes is tried first among the maybes. A YubiKey also
// runs PIV, so it stays MatchMaybe: the PIV driver answers first for it.
func (Driver) MatchATR(atr []byte) cards.Match {
	if len(atr) < 2 {
		return cards.MatchNo
	}
	for _, m := range [][]byte{[]byte("OpenPGP"), []byte("Gnuk"), []byte("Nitrokey")} {
		if bytes.Contains(atr, m) {
			return cards.MatchYes
		}
	}
	return cards.MatchMaybe
}

// Open implements cards.Driver: SELECT and one GET DATA 6E, under one Lock.
func (d Driver) Open(ctx context.Context, c cards.Conn, atr []byte) (cards.Token, error) {
	unlock, _, err := c.Lock(ctx)
	if err != nil {
		return nil, err
	}
	defer unlock()
	t := &Token{conn: c, atr: clone(atr)}
	// A card whose ATR announces extended lengths gets 6E in one extended GET DATA.
	if _, ext := histCaps(atrHistorical(atr)); ext {
		t.opt.Extended = true
	}
	if err := t.selectApp(ctx); err != nil {
		return nil, err
	}
	if err := t.readAppData(ctx); err != nil {
		if errors.Is(err, cards.ErrBadCard) {
			// Whatever answered the SELECT is no OpenPGP card we can use: let other
			// drivers try.
			return nil, fmt.Errorf("%w: %w", cards.ErrNotRecognized, err)
		}
		return nil, err
	}
	t.opened = &openedPW{pw: t.ad.PW, at: time.Now()}
	t.journal = cards.OpenJournal("openpgp", t.Info().Serial)
	return t, nil
}

func (t *Token) selectApp(ctx context.Context) error {
	t.verified = 0 // a SELECT (or the reset before it) clears the card's security state
	r, err := apdu.Exchange(ctx, t.conn, apdu.Command{INS: insSelect, P1: 0x04, Data: ridOpenPGP}, apdu.Options{})
	if err != nil {
		return err
	}
	switch {
	case r.SW == apdu.SWOK:
	case r.SW == 0x6285: // selected file in termination state (spec 3.4 §7.2.16)
		t.terminated = true
	case r.SW.SW1() == 0x6A || r.SW == apdu.SWInsNotSupported || r.SW == apdu.SWClaNotSupported || r.SW == apdu.SWWrongP1P2 || r.SW == apdu.SWUnknown:
		return fmt.Errorf("%w: openpgp: SELECT answered %04X", cards.ErrNotRecognized, uint16(r.SW))
	default:
		return fmt.Errorf("openpgp: select: %w", r.Err())
	}
	return nil
}

// readAppData reads and caches DO 6E (spec 3.4 §4.4.3.1).
func (t *Token) readAppData(ctx context.Context) error {
	if t.terminated {
		return fmt.Errorf("%w: openpgp: application terminated (factory reset pending ACTIVATE)", cards.ErrNotRecognized)
	}
	b, err := t.getData(ctx, doAppData)
	if err != nil {
		if errors.Is(err, apdu.ErrNotFound) || errors.Is(err, apdu.ErrInsNotSupported) {
			return fmt.Errorf("%w: openpgp: no application related data", cards.ErrNotRecognized)
		}
		return fmt.Errorf("openpgp: application data: %w", err)
	}
	ad, err := ParseAppData(b)
	if err != nil {
		return err
	}
	t.ad = ad
	t.opt = apdu.Options{Extended: ad.Extended}
	if trace.On("openpgp") {
		trace.Printf("openpgp", "openpgp: card %04X/%08X spec %s, extended %v, chaining %v, algorithms % X / % X / % X, PW status %+v",
			ad.AID.Manufacturer, ad.AID.Serial, ad.AID.Version, ad.Extended, ad.Chaining, ad.AlgoRaw[0], ad.AlgoRaw[1], ad.AlgoRaw[2], ad.PW)
	}
	return nil
}

// getData sends GET DATA for tag (spec 3.4 §7.2.6), asking for as much as the card has.
func (t *Token) getData(ctx context.Context, tag apdu.Tag) ([]byte, error) {
	ne := apdu.MaxShortNe
	if t.opt.Extended {
		ne = apdu.MaxExtendedNe
	}
	return apdu.Do(ctx, t.conn, apdu.Command{INS: insGetData, P1: byte(tag >> 8), P2: byte(tag), Ne: ne}, t.opt)
}

// putData writes a data object; whether or not the card took it, other applications hear
// that the card may have changed.
func (t *Token) putData(ctx context.Context, tag apdu.Tag, v []byte) error {
	_, err := apdu.Do(ctx, t.conn, apdu.Command{INS: insPutData, P1: byte(tag >> 8), P2: byte(tag), Data: v}, t.opt)
	t.noteWrite()
	return err
}

// do is apdu.Do with the card's options and the largest Ne.
func (t *Token) do(ctx context.Context, cmd apdu.Command) ([]byte, error) {
	if cmd.Ne == 0 {
		cmd.Ne = apdu.MaxShortNe
		if t.opt.Extended {
			cmd.Ne = apdu.MaxExtendedNe
		}
	}
	return apdu.Do(ctx, t.conn, cmd, t.opt)
}

package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/p11-card/p11-card/cards"
	_ "github.com/p11-card/p11-card/cards/openpgp" // registers the OpenPGP driver
	_ "github.com/p11-card/p11-card/cards/piv"     // registers the PIV driver
)

// cardToken is a bound token for the administration commands (pin, keygen, cert).
type cardToken struct {
	slot   uint64
	reader string
	tok    cards.Token
}

// openToken finds the token to work on: --slot ID, --reader NAME (a part of the name),
// or the first slot holding a token. Tests replace it.
var openToken = slotmgrToken

func slotmgrToken(ctx context.Context, slot uint64, reader string) (cardToken, func(), error) {
	m, err := openSlots(ctx)
	if err != nil {
		return cardToken{}, nil, err
	}
	for _, s := range m.Slots() {
		switch {
		case slot != 0 && s.ID != slot:
			continue
		case reader != "" && !strings.Contains(strings.ToLower(s.Reader), strings.ToLower(reader)):
			continue
		}
		if !s.Present {
			if slot != 0 || reader != "" {
				m.Close()
				if s.Err != nil {
					return cardToken{}, nil, fmt.Errorf("slot %d (%s): %v", s.ID, s.Reader, s.Err)
				}
				return cardToken{}, nil, fmt.Errorf("slot %d (%s): no token", s.ID, s.Reader)
			}
			continue
		}
		return cardToken{slot: s.ID, reader: s.Reader, tok: s.Token}, func() { m.Close() }, nil
	}
	m.Close()
	return cardToken{}, nil, errors.New("no token found (see `p11-card readers`)")
}

// tokenFlags adds --slot and --reader to a command's flags.
func tokenFlags(fs interface {
	Uint64(string, uint64, string) *uint64
	String(string, string, string) *string
}) (*uint64, *string) {
	return fs.Uint64("slot", 0, "slot ID (see `p11-card readers`)"), fs.String("reader", "", "reader name or part of it")
}

// secretReader reads secrets (PINs, PUK, management key), one per line, from the
// command's input: never from the command line, where other users could see them.
type secretReader struct{ r *bufio.Reader }

func newSecretReader(r io.Reader) *secretReader { return &secretReader{bufio.NewReader(r)} }

// next reads one line; what names it for the error message.
func (s *secretReader) next(what string) ([]byte, error) {
	line, err := s.r.ReadBytes('\n')
	if err != nil && !(errors.Is(err, io.EOF) && len(line) > 0) {
		return nil, fmt.Errorf("reading the %s from standard input: %w", what, err)
	}
	for len(line) > 0 && (line[len(line)-1] == '\n' || line[len(line)-1] == '\r') {
		line = line[:len(line)-1]
	}
	if len(line) == 0 {
		return nil, fmt.Errorf("empty %s", what)
	}
	return line, nil
}

func wipe(bs ...[]byte) {
	for _, b := range bs {
		clear(b)
	}
}

// parseID reads a key location: a CKA_ID in hex ("01") or a slot name ("9a", "sig").
func parseID(tok cards.Token, s string) ([]byte, error) {
	for _, ks := range tok.KeySlots() {
		if strings.EqualFold(ks.Name, s) {
			return ks.ID, nil
		}
	}
	v, err := strconv.ParseUint(s, 16, 8)
	if err != nil {
		return nil, fmt.Errorf("no key location %q (use a CKA_ID in hex or a slot name)", s)
	}
	for _, ks := range tok.KeySlots() {
		if len(ks.ID) == 1 && ks.ID[0] == byte(v) {
			return ks.ID, nil
		}
	}
	return nil, fmt.Errorf("no key location with CKA_ID %02x on this card", v)
}

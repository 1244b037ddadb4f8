package apdutest

import (
	"github.com/p11-card/p11-card/apdu"
	"github.com/p11-card/p11-card/cards"
)

// Replayer and Recorder stand in for a card connection.
var (
	_ apdu.Transmitter = (*Replayer)(nil)
	_ cards.Conn       = (*Replayer)(nil)
	_ cards.Conn       = (*Recorder)(nil)
)

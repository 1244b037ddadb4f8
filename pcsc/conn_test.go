package pcsc

import (
	"github.com/p11-card/p11-card/apdu"
	"github.com/p11-card/p11-card/cards"
)

// Card is what drivers talk to.
var (
	_ apdu.Transmitter = (*Card)(nil)
	_ cards.Conn       = (*Card)(nil)
)

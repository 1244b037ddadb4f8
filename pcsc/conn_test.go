package pcsc

import (
	"context"

	"github.com/p11-card/p11-card/apdu"
	"github.com/p11-card/p11-card/cards"
)

// Card is what drivers talk to.
var (
	_ apdu.Transmitter = (*Card)(nil)
	_ cards.Conn       = (*Card)(nil)
	// slotmgr's Controller
	_ interface {
		Control(ctx context.Context, code uint32, in []byte) ([]byte, error)
	} = (*Card)(nil)
)

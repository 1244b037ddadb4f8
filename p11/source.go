package main

import (
	_ "github.com/p11-card/p11-card/cards/openpgp" // registers the OpenPGP driver
	_ "github.com/p11-card/p11-card/cards/piv"     // registers the PIV driver
	"github.com/p11-card/p11-card/p11/internal/core"
	"github.com/p11-card/p11-card/slotmgr"
)

// newSource makes the slot source at C_Initialize: the slot manager over pcsc-lite.
func newSource() core.SlotSource { return slotmgr.New(slotmgr.NewPCSC(), slotmgr.Options{}) }

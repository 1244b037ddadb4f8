package main

import (
	"github.com/p11-card/p11-card/p11/internal/core"
)

// newSource makes the slot source at C_Initialize.
//
// TODO(module): switch to slotmgr.New(slotmgr.NewPCSC(), slotmgr.Options{}) once the
// pcsc backend lands.
func newSource() core.SlotSource { return nil }

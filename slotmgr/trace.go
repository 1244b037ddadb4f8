package slotmgr

import "github.com/p11-card/p11-card/internal/trace"

// tracef is the default Options.Logf: the "slot" category of P11CARD_DEBUG.
func tracef(format string, args ...any) { trace.Printf("slot", format, args...) }

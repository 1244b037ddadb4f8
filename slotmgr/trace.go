package slotmgr

// tracef is the default Options.Logf. It stays silent until the internal/trace package
// (P11CARD_DEBUG=slot) is wired in.
func tracef(format string, args ...any) {}

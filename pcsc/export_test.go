package pcsc

// Freed tells whether k's handles went back to libpcsclite (tests).
func (k *Card) Freed() bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.freed
}

// OpenEarly opens the contexts the module's first C_Initialize opens (tests).
var OpenEarly = openEarly

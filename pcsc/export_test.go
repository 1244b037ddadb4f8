package pcsc

// Freed tells whether k's handles went back to libpcsclite (tests).
func (k *Card) Freed() bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.freed
}

package vcard

import "os"

// RunWithPrivateJournals runs a test binary's tests (m is its *testing.M) with the
// journals of cards.Journal in a directory of their own: test processes running at once
// write to virtual cards that share serial numbers, and must not see each other's
// changes. Use it as TestMain's body: os.Exit(vcard.RunWithPrivateJournals(m)).
func RunWithPrivateJournals(m interface{ Run() int }) int {
	dir, err := os.MkdirTemp("", "p11card-journals-")
	if err != nil {
		return m.Run()
	}
	defer os.RemoveAll(dir)
	os.Setenv("P11CARD_JOURNAL_DIR", dir)
	return m.Run()
}

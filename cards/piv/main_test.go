package piv

import (
	"os"
	"testing"

	"github.com/p11-card/p11-card/cards/vcard"
)

func TestMain(m *testing.M) { os.Exit(vcard.RunWithPrivateJournals(m)) }

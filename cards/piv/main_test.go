package piv

import (
	"os"
	"testing"

	"github.com/p11-card/p11-card/cards/piv/pivtest"
)

func TestMain(m *testing.M) { os.Exit(pivtest.RunWithPrivateJournals(m)) }

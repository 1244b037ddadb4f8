package slotmgr_test

import (
	"context"
	"fmt"

	"github.com/p11-card/p11-card/cards"
	"github.com/p11-card/p11-card/slotmgr"
	"github.com/p11-card/p11-card/slotmgr/slotmgrtest"
)

// A manager over the fake service: the slot table after Start, then a removal seen
// through WaitChange and the generation's Removed channel.
func Example() {
	svc := slotmgrtest.New()
	svc.AddReader("Reader A")
	svc.AddReader("Reader B")
	_ = svc.Insert("Reader A", slotmgrtest.NewCard([]byte{0x3B, 0x01}))

	bind := func(ctx context.Context, c cards.Conn, atr []byte) (cards.Token, error) {
		return &testToken{info: cards.TokenInfo{Driver: "demo"}}, nil
	}
	m := slotmgr.New(svc, slotmgr.Options{Bind: bind, NoPINPad: true})
	ctx := context.Background()
	if err := m.Start(ctx); err != nil { // the first scan is done on return
		panic(err)
	}
	defer m.Close()
	for _, s := range m.Slots() {
		fmt.Printf("slot %d %q token=%v gen=%d\n", s.ID, s.Reader, s.Present, s.Gen)
	}

	a, _ := m.Slot(1)
	since, _ := m.WaitChange(ctx, 0) // the current counter
	svc.Remove("Reader A")
	for {
		var err error
		if since, err = m.WaitChange(ctx, since); err != nil {
			panic(err)
		}
		if s, _ := m.Slot(1); !s.CardPresent {
			break
		}
	}
	<-a.Removed // the old generation has ended: its sessions go
	s, _ := m.Slot(1)
	fmt.Printf("slot %d %q token=%v gen=%d\n", s.ID, s.Reader, s.Present, s.Gen)
	// Output:
	// slot 1 "Reader A" token=true gen=1
	// slot 2 "Reader B" token=false gen=0
	// slot 1 "Reader A" token=false gen=0
}

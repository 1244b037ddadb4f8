//go:build hwtest

package core

import (
	"context"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"fmt"
	"math/big"
	mrand "math/rand/v2"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/p11-card/p11-card/cards/piv/pivtest"
	"github.com/p11-card/p11-card/hwtest/rig"
	"github.com/p11-card/p11-card/slotmgr"

	_ "github.com/p11-card/p11-card/cards/piv"
)

// TestRigMixedThreads is the engine as the module runs it (slot manager, pcsc-lite, a real
// pcscd through vpcd, the PIV driver) under 32 goroutines of mixed operations on two
// tokens (16 rounds each; 200 under `make soak`); `make hwtest` runs it with -race. Every result is checked: signatures verify,
// decryptions and derived secrets match.
func TestRigMixedThreads(t *testing.T) {
	r := rig.ForTest(t, rig.Options{Readers: 2})

	cards := make([]*pivtest.Card, 2)
	for i := range cards {
		c := pivtest.MustNew(pivtest.Options{Serial: uint32(5100 + i)})
		for _, s := range []struct{ slot, alg byte }{{0x9A, pivtest.AlgRSA2048}, {0x9C, pivtest.AlgECCP256}, {0x9D, pivtest.AlgRSA2048}, {0x9E, pivtest.AlgECCP256}, {0x82, pivtest.AlgECCP256}} {
			if _, err := c.GenerateInSlot(s.slot, s.alg); err != nil {
				t.Fatal(err)
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		err := r.Insert(ctx, i, c)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		cards[i] = c
	}

	m := New(Options{NewSource: func() SlotSource { return slotmgr.New(slotmgr.NewPCSC(), slotmgr.Options{}) }})
	if err := m.Initialize(); err != nil {
		t.Fatal(err)
	}
	defer m.Finalize()
	slots, err := m.SlotList(true, false)
	if err != nil || len(slots) != 2 {
		t.Fatalf("slots with a token: %v %v", slots, err)
	}
	// The tokens in slot order, matched to their cards by serial.
	bySerial := map[string]*pivtest.Card{}
	for i, c := range cards {
		bySerial[fmt.Sprint(5100+i)] = c
	}
	tokCard := make([]*pivtest.Card, 2)
	for i, id := range slots {
		ti, err := m.TokenInfo(id)
		if err != nil {
			t.Fatal(err)
		}
		if tokCard[i] = bySerial[trimSpace(ti.Serial)]; tokCard[i] == nil {
			t.Fatalf("slot %d: serial %q", id, ti.Serial)
		}
		s, err := m.OpenSession(id, CKF_SERIAL_SESSION)
		if err != nil {
			t.Fatal(err)
		}
		login(t, m, s) // the application is logged in on both tokens from here on
	}

	const threads = 32
	rounds := 16
	if os.Getenv("P11CARD_SOAK") == "1" {
		rounds = 200
	}
	var wg sync.WaitGroup
	errs := make(chan error, threads*rounds)
	counts := make([]map[string]int, threads)
	for g := 0; g < threads; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			rnd := mrand.New(mrand.NewPCG(uint64(g), 7))
			counts[g] = map[string]int{}
			tok := g % 2
			s, err := m.OpenSession(slots[tok], CKF_SERIAL_SESSION)
			if err != nil {
				errs <- fmt.Errorf("goroutine %d: OpenSession: %w", g, err)
				return
			}
			defer m.CloseSession(s)
			for i := 0; i < rounds; i++ {
				op := mixedOps[rnd.IntN(len(mixedOps))]
				if err := op.run(m, s, tokCard[tok], rnd); err != nil {
					errs <- fmt.Errorf("goroutine %d, token %d, %s: %w", g, tok, op.name, err)
					return
				}
				counts[g][op.name]++
			}
		}(g)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	total := map[string]int{}
	for _, c := range counts {
		for k, v := range c {
			total[k] += v
		}
	}
	t.Logf("operations: %v", total)
}

func trimSpace(s string) string {
	for len(s) > 0 && s[len(s)-1] == ' ' {
		s = s[:len(s)-1]
	}
	return s
}

type mixedOp struct {
	name string
	run  func(m *Module, s uint64, card *pivtest.Card, rnd *mrand.Rand) error
}

// key finds the one object of class and CKA_ID id in session s.
func mixedKey(m *Module, s, class uint64, id byte) (uint64, error) {
	if err := m.FindObjectsInit(s, classTmpl(class, []byte{id})); err != nil {
		return 0, err
	}
	hs, err := m.FindObjects(s, 2)
	m.FindObjectsFinal(s)
	if err != nil {
		return 0, err
	}
	if len(hs) != 1 {
		return 0, fmt.Errorf("%d objects of class %d with id %02x", len(hs), class, id)
	}
	return hs[0], nil
}

// ecdsaSign signs msg with key id's ECDSA key (a context login first when always is set)
// and checks the signature against the card's key in slot.
func ecdsaSign(m *Module, s uint64, card *pivtest.Card, id, slot byte, always bool) error {
	k, err := mixedKey(m, s, CKO_PRIVATE_KEY, id)
	if err != nil {
		return err
	}
	msg := make([]byte, 20)
	rand.Read(msg)
	if err := m.SignInit(s, Mechanism{Type: CKM_ECDSA_SHA256}, k); err != nil {
		return err
	}
	if always {
		if err := m.Login(s, CKU_CONTEXT_SPECIFIC, []byte("123456")); err != nil {
			return err
		}
	}
	sig, err := m.Sign(s, msg, 64)
	if err != nil {
		return err
	}
	h := sha256.Sum256(msg)
	if len(sig) != 64 || !ecdsa.Verify(card.PublicKey(slot).(*ecdsa.PublicKey), h[:], new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])) {
		return fmt.Errorf("signature %x does not verify", sig)
	}
	return nil
}

var mixedOps = []mixedOp{
	{"list", func(m *Module, s uint64, _ *pivtest.Card, _ *mrand.Rand) error {
		// Token objects: the session objects of the application include the derived keys
		// other goroutines destroy at any moment (ecdh).
		if err := m.FindObjectsInit(s, []Attr{{CKA_TOKEN, []byte{1}}}); err != nil {
			return err
		}
		hs, err := m.FindObjects(s, 1000)
		m.FindObjectsFinal(s)
		if err != nil {
			return err
		}
		if len(hs) < 15 {
			return fmt.Errorf("%d objects", len(hs))
		}
		for _, h := range hs {
			if _, err := m.GetAttributeValue(s, h, []uint64{CKA_CLASS, CKA_ID, CKA_LABEL}); err != nil {
				return err
			}
		}
		return nil
	}},
	{"ecdsa", func(m *Module, s uint64, c *pivtest.Card, _ *mrand.Rand) error {
		return ecdsaSign(m, s, c, 4, 0x9E, false)
	}},
	{"ecdsa-pin-always", func(m *Module, s uint64, c *pivtest.Card, _ *mrand.Rand) error {
		return ecdsaSign(m, s, c, 2, 0x9C, true)
	}},
	{"rsa-sign", func(m *Module, s uint64, c *pivtest.Card, _ *mrand.Rand) error {
		k, err := mixedKey(m, s, CKO_PRIVATE_KEY, 1)
		if err != nil {
			return err
		}
		if err := m.SignInit(s, Mechanism{Type: CKM_SHA256_RSA_PKCS}, k); err != nil {
			return err
		}
		sig, err := m.Sign(s, []byte("mixed"), 256)
		if err != nil {
			return err
		}
		h := sha256.Sum256([]byte("mixed"))
		return rsa.VerifyPKCS1v15(c.PublicKey(0x9A).(*rsa.PublicKey), 5, h[:], sig)
	}},
	{"rsa-decrypt", func(m *Module, s uint64, c *pivtest.Card, _ *mrand.Rand) error {
		k, err := mixedKey(m, s, CKO_PRIVATE_KEY, 3)
		if err != nil {
			return err
		}
		ct, _ := rsa.EncryptPKCS1v15(rand.Reader, c.PublicKey(0x9D).(*rsa.PublicKey), []byte("secret"))
		if err := m.DecryptInit(s, Mechanism{Type: CKM_RSA_PKCS}, k); err != nil {
			return err
		}
		pt, err := m.Decrypt(s, ct, 256)
		if err != nil {
			return err
		}
		if string(pt) != "secret" {
			return fmt.Errorf("decrypted %q", pt)
		}
		return nil
	}},
	{"ecdh", func(m *Module, s uint64, c *pivtest.Card, _ *mrand.Rand) error {
		k, err := mixedKey(m, s, CKO_PRIVATE_KEY, 5)
		if err != nil {
			return err
		}
		peer, _ := ecdh.P256().GenerateKey(rand.Reader)
		o, err := m.DeriveKey(s, Mechanism{Type: CKM_ECDH1_DERIVE, ECDH: &ECDHParams{KDF: CKD_NULL, PublicData: peer.PublicKey().Bytes()}}, k, []Attr{{CKA_SENSITIVE, []byte{0}}})
		if err != nil {
			return err
		}
		defer m.DestroyObject(s, o)
		v, err := m.GetAttributeValue(s, o, []uint64{CKA_VALUE})
		if err != nil {
			return err
		}
		cardPub, _ := c.PublicKey(0x82).(*ecdsa.PublicKey).ECDH()
		want, _ := peer.ECDH(cardPub)
		if string(v[0].Value) != string(want) {
			return fmt.Errorf("derived %x, want %x", v[0].Value, want)
		}
		return nil
	}},
	{"random", func(m *Module, s uint64, _ *pivtest.Card, rnd *mrand.Rand) error {
		b, err := m.GenerateRandom(s, 1+rnd.IntN(64))
		if err == nil && len(b) == 0 {
			err = fmt.Errorf("no random bytes")
		}
		return err
	}},
	{"session", func(m *Module, _ uint64, _ *pivtest.Card, _ *mrand.Rand) error {
		slots, err := m.SlotList(true, false)
		if err != nil {
			return err
		}
		for _, id := range slots {
			s, err := m.OpenSession(id, CKF_SERIAL_SESSION)
			if err != nil {
				return err
			}
			if _, err := m.TokenInfo(id); err != nil {
				return err
			}
			if err := m.CloseSession(s); err != nil {
				return err
			}
		}
		return nil
	}},
}

package pivtest

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/des"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"

	"github.com/p11-card/p11-card/apdu"
)

// Dynamic authentication template tags (SP 800-73-4 part 2 §3.2.4, table 7).
const (
	tagDynAuth     = 0x7C
	tagWitness     = 0x80
	tagChallenge   = 0x81
	tagResponse    = 0x82
	tagExponentiat = 0x85

	algTDESDefault = 0x00 // SP 800-78-4 table 6-2: 3 key Triple DES, ECB
)

func mgmtKeyLen(alg byte) int {
	switch alg {
	case AlgTDES:
		return 24
	case AlgAES128:
		return 16
	case AlgAES192:
		return 24
	case AlgAES256:
		return 32
	}
	return 0
}

func mgmtCipher(alg byte, key []byte) (cipher.Block, error) {
	if alg == AlgTDES {
		return des.NewTripleDESCipher(key)
	}
	return aes.NewCipher(key)
}

// doGeneralAuth is GENERAL AUTHENTICATE (part 2 §3.2.4): P1 algorithm, P2 key reference,
// data a 7C dynamic authentication template.
func (c *Card) doGeneralAuth(ctx context.Context, cmd apdu.Command) ([]byte, status) {
	tpl, rest, err := apdu.ParseTLV(cmd.Data)
	if err != nil || tpl.Tag != tagDynAuth || len(rest) != 0 {
		return nil, swWrongData
	}
	all, err := apdu.ParseAll(tpl.Value)
	if err != nil {
		return nil, swWrongData
	}
	items := map[apdu.Tag][]byte{}
	present := map[apdu.Tag]bool{}
	for _, t := range all {
		if present[t.Tag] {
			return nil, swWrongData
		}
		items[t.Tag], present[t.Tag] = t.Value, true
	}
	if cmd.P2 == SlotManagement {
		return c.mgmtAuth(cmd.P1, items, present)
	}
	if !userSlot(cmd.P2) { // F9 signs attestations only
		return nil, swBadP1P2
	}
	return c.privateOp(ctx, cmd.P1, cmd.P2, items, present)
}

// mgmtAuth runs the management key protocols: mutual authentication (80 empty → witness;
// 80 decrypted witness + 81 challenge → 82 encrypted challenge) and external
// authentication (81 empty → challenge; 82 encrypted challenge).
func (c *Card) mgmtAuth(alg byte, items map[apdu.Tag][]byte, present map[apdu.Tag]bool) ([]byte, status) {
	if alg == algTDESDefault && c.st.MgmtAlg == AlgTDES {
		alg = AlgTDES // SP 800-78-4 table 6-2: 00 is 3DES too, and a YubiKey takes it
	}
	if alg != c.st.MgmtAlg {
		c.mgmtPending, c.mgmtMode = nil, 0
		return nil, swBadP1P2
	}
	blk, err := mgmtCipher(alg, c.st.MgmtKey)
	if err != nil {
		return nil, swNoPrecise
	}
	bs := blk.BlockSize()
	pending, mode := c.mgmtPending, c.mgmtMode
	c.mgmtPending, c.mgmtMode = nil, 0
	switch {
	case present[tagWitness] && len(items[tagWitness]) == 0 && len(items) == 1:
		c.mgmtOK = false
		witness := randomBytes(bs)
		enc := make([]byte, bs)
		blk.Encrypt(enc, witness)
		c.mgmtPending, c.mgmtMode = witness, tagWitness
		return apdu.TLVBytes(tagDynAuth, apdu.TLVBytes(tagWitness, enc)), swOK
	case present[tagWitness] && present[tagChallenge] && len(items) <= 3:
		if r, ok := items[tagResponse]; ok && len(r) != 0 {
			return nil, swWrongData
		}
		w, ch := items[tagWitness], items[tagChallenge]
		if mode != tagWitness {
			return nil, swSecurity
		}
		if len(w) != bs || len(ch) != bs {
			return nil, swWrongData
		}
		if !equalCT(w, pending) {
			c.mgmtOK = false
			return nil, swSecurity
		}
		c.mgmtOK = true
		enc := make([]byte, bs)
		blk.Encrypt(enc, ch)
		return apdu.TLVBytes(tagDynAuth, apdu.TLVBytes(tagResponse, enc)), swOK
	case present[tagChallenge] && len(items[tagChallenge]) == 0 && len(items) == 1:
		c.mgmtOK = false
		ch := randomBytes(bs)
		c.mgmtPending, c.mgmtMode = ch, tagChallenge
		return apdu.TLVBytes(tagDynAuth, apdu.TLVBytes(tagChallenge, ch)), swOK
	case present[tagResponse] && len(items) == 1:
		r := items[tagResponse]
		if mode != tagChallenge {
			return nil, swSecurity
		}
		if len(r) != bs {
			return nil, swWrongData
		}
		want := make([]byte, bs)
		blk.Encrypt(want, pending)
		if !equalCT(r, want) {
			c.mgmtOK = false
			return nil, swSecurity
		}
		c.mgmtOK = true
		return nil, swOK
	}
	return nil, swWrongData
}

// pinAllows applies the slot's PIN policy; a PIN-always key consumes the fresh VERIFY.
func (c *Card) pinAllows(k *slotKey) bool {
	switch k.PINPolicy {
	case PINPolicyNever:
		return true
	case PINPolicyAlways:
		return c.pinOK && c.pinFresh
	}
	return c.pinOK
}

// privateOp signs, decrypts or derives with the key in slot: 82 empty and 81 data (sign or
// raw RSA), or 82 empty and 85 peer point (key agreement). Answer 7C { 82 result }.
func (c *Card) privateOp(ctx context.Context, alg, slot byte, items map[apdu.Tag][]byte, present map[apdu.Tag]bool) ([]byte, status) {
	k, ok := c.st.Keys[slot]
	if !ok {
		return nil, swWrongData
	}
	if alg != k.Alg {
		return nil, swWrongData
	}
	if !present[tagResponse] || len(items[tagResponse]) != 0 || len(items) != 2 {
		return nil, swWrongData
	}
	ch, sign := items[tagChallenge]
	peer, derive := items[tagExponentiat]
	if sign == derive {
		return nil, swWrongData
	}
	if !c.pinAllows(k) {
		return nil, swSecurity
	}
	c.wait(ctx)
	if c.opt.NoTouch && k.TouchPolicy != TouchPolicyNever {
		return nil, swSecurity // the touch timed out
	}
	var out []byte
	var err error
	switch key := k.key.(type) {
	case *rsa.PrivateKey:
		if !sign {
			return nil, swWrongData
		}
		out, err = rawRSA(key, ch)
	case *ecdsa.PrivateKey:
		if sign {
			out, err = ecdsaSign(key, ch)
		} else {
			out, err = ecdhShared(key, peer)
		}
	case ed25519.PrivateKey:
		if !sign {
			return nil, swWrongData
		}
		out = ed25519.Sign(key, ch)
	default: // X25519
		if sign {
			return nil, swWrongData
		}
		out, err = ecdhShared(key, peer)
	}
	if err != nil {
		return nil, swWrongData
	}
	if k.PINPolicy == PINPolicyAlways {
		c.pinFresh = false
	}
	return apdu.TLVBytes(tagDynAuth, apdu.TLVBytes(tagResponse, out)), swOK
}

// doSetMgmtKey is Yubico's SET MANAGEMENT KEY (FF): P1 FF, P2 FF (no touch), FE (touch)
// or FD (touch, cached), data algorithm || 9B length key.
func (c *Card) doSetMgmtKey(cmd apdu.Command) ([]byte, status) {
	if cmd.P1 != 0xFF || cmd.P2 < 0xFD {
		return nil, swBadP1P2
	}
	if !c.mgmtOK {
		return nil, swSecurity
	}
	if len(cmd.Data) < 1 {
		return nil, swWrongData
	}
	alg := cmd.Data[0]
	t, rest, err := apdu.ParseTLV(cmd.Data[1:])
	if err != nil || len(rest) != 0 || t.Tag != apdu.Tag(SlotManagement) {
		return nil, swWrongData
	}
	n := mgmtKeyLen(alg)
	if n == 0 || len(t.Value) != n || (alg != AlgTDES && !c.atLeast(5, 4, 0)) {
		return nil, swWrongData
	}
	c.st.MgmtAlg = alg
	c.st.MgmtKey = append([]byte(nil), t.Value...)
	c.st.MgmtTouch = map[byte]byte{0xFF: TouchPolicyNever, 0xFE: TouchPolicyAlways, 0xFD: TouchPolicyCached}[cmd.P2]
	c.persist()
	return nil, swOK
}

package main

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"strings"

	"github.com/miekg/pkcs11"
)

func init() {
	register(&command{
		name:    "test",
		summary: "sign and verify with every signing key through the PKCS#11 module",
		usage:   "[--module PATH] [--slot ID] [--json]",
		help: `A self-test of the built module against a card: loads p11-card-pkcs11.so, logs in
with the PIN read from standard input (one line), and for every private key that
may sign: signs a random message (RSA: SHA256-RSA-PKCS; EC: ECDSA-SHA256; Ed25519:
EdDSA), giving the PIN again for keys that need it for every use, then verifies the
signature through the module with the matching public key.

  --module PATH   as for 'p11-card slots'
  --slot ID       the slot; default the first with a token
  --json          {"module", "slot", "keys": [{"id", "label", "mechanism", "ok",
                  "error"}], "ok"}

Exits 1 when a key fails.`,
		run: runTest,
	})
}

type keyTest struct {
	ID        string `json:"id"`
	Label     string `json:"label"`
	Mechanism string `json:"mechanism"`
	OK        bool   `json:"ok"`
	Error     string `json:"error,omitempty"`
}

func runTest(ctx context.Context, e *env, args []string) error {
	fs := newFlags("test")
	mod := fs.String("module", "", "module path")
	slotFlag := fs.Uint64("slot", 0, "slot")
	asJSON := fs.Bool("json", false, "JSON output")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	path, err := modulePath(*mod)
	if err != nil {
		return err
	}
	pinB, err := pinInput(e).next("PIN")
	if err != nil {
		return err
	}
	pin := string(pinB)
	wipe(pinB)
	p, err := loadModule(path)
	if err != nil {
		return err
	}
	defer closeModule(p)
	slots, err := p.GetSlotList(true)
	if err != nil {
		return fmt.Errorf("C_GetSlotList: %v", err)
	}
	var slot uint
	found := false
	for _, s := range slots {
		if *slotFlag == 0 || uint64(s) == *slotFlag {
			slot, found = s, true
			break
		}
	}
	if !found {
		return errors.New("no token (see 'p11-card slots')")
	}
	sh, err := p.OpenSession(slot, pkcs11.CKF_SERIAL_SESSION)
	if err != nil {
		return fmt.Errorf("C_OpenSession: %v", err)
	}
	defer p.CloseSession(sh)
	if err := p.Login(sh, pkcs11.CKU_USER, pin); err != nil {
		return fmt.Errorf("C_Login: %v", err)
	}
	defer p.Logout(sh)
	privs, err := findAll(p, sh, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PRIVATE_KEY), pkcs11.NewAttribute(pkcs11.CKA_SIGN, true)})
	if err != nil {
		return err
	}
	results := []keyTest{}
	allOK := true
	for _, k := range privs {
		r := testKey(p, sh, k, pin)
		allOK = allOK && r.OK
		results = append(results, r)
	}
	if *asJSON {
		if err := writeJSON(e, map[string]any{"module": path, "slot": slot, "keys": results, "ok": allOK}); err != nil {
			return err
		}
	} else {
		for _, r := range results {
			status := "ok"
			if !r.OK {
				status = "FAILED: " + r.Error
			}
			fmt.Fprintf(e.stdout, "key %s %-28q %-14s %s\n", r.ID, r.Label, r.Mechanism, status)
		}
		if len(results) == 0 {
			fmt.Fprintln(e.stdout, "no signing keys")
		}
	}
	if !allOK {
		return errors.New("some keys failed")
	}
	return nil
}

func findAll(p *pkcs11.Ctx, sh pkcs11.SessionHandle, tmpl []*pkcs11.Attribute) ([]pkcs11.ObjectHandle, error) {
	if err := p.FindObjectsInit(sh, tmpl); err != nil {
		return nil, fmt.Errorf("C_FindObjectsInit: %v", err)
	}
	defer p.FindObjectsFinal(sh)
	var all []pkcs11.ObjectHandle
	for {
		hs, _, err := p.FindObjects(sh, 32)
		if err != nil {
			return nil, fmt.Errorf("C_FindObjects: %v", err)
		}
		if len(hs) == 0 {
			return all, nil
		}
		all = append(all, hs...)
	}
}

func testKey(p *pkcs11.Ctx, sh pkcs11.SessionHandle, k pkcs11.ObjectHandle, pin string) keyTest {
	var r keyTest
	attrs, err := p.GetAttributeValue(sh, k, []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_ID, nil), pkcs11.NewAttribute(pkcs11.CKA_LABEL, nil),
		pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, nil), pkcs11.NewAttribute(pkcs11.CKA_ALWAYS_AUTHENTICATE, nil),
	})
	if err != nil {
		r.Error = fmt.Sprintf("C_GetAttributeValue: %v", err)
		return r
	}
	id := attrs[0].Value
	r.ID, r.Label = fmt.Sprintf("%x", id), strings.TrimSpace(string(attrs[1].Value))
	var kt uint
	for i, b := range attrs[2].Value {
		kt |= uint(b) << (8 * i) // CK_ULONG, little-endian hosts
	}
	always := len(attrs[3].Value) == 1 && attrs[3].Value[0] == 1
	var mech uint
	switch kt {
	case pkcs11.CKK_RSA:
		mech, r.Mechanism = pkcs11.CKM_SHA256_RSA_PKCS, "SHA256-RSA-PKCS"
	case pkcs11.CKK_EC:
		mech, r.Mechanism = pkcs11.CKM_ECDSA_SHA256, "ECDSA-SHA256"
	case ckkECEdwards:
		mech, r.Mechanism = ckmEdDSA, "EDDSA"
	default:
		r.Error = fmt.Sprintf("key type %#x not tested", kt)
		r.OK = true
		return r
	}
	msg := make([]byte, 64)
	rand.Read(msg)
	m := []*pkcs11.Mechanism{pkcs11.NewMechanism(mech, nil)}
	if err := p.SignInit(sh, m, k); err != nil {
		r.Error = fmt.Sprintf("C_SignInit: %v", err)
		return r
	}
	if always {
		if err := p.Login(sh, pkcs11.CKU_CONTEXT_SPECIFIC, pin); err != nil {
			r.Error = fmt.Sprintf("C_Login (context specific): %v", err)
			return r
		}
	}
	sig, err := p.Sign(sh, msg)
	if err != nil {
		r.Error = fmt.Sprintf("C_Sign: %v", err)
		return r
	}
	pubs, err := findAll(p, sh, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PUBLIC_KEY), pkcs11.NewAttribute(pkcs11.CKA_ID, id)})
	if err != nil || len(pubs) == 0 {
		r.Error = fmt.Sprintf("no public key with CKA_ID %x: %v", id, err)
		return r
	}
	if err := p.VerifyInit(sh, m, pubs[0]); err != nil {
		r.Error = fmt.Sprintf("C_VerifyInit: %v", err)
		return r
	}
	if err := p.Verify(sh, msg, sig); err != nil {
		r.Error = fmt.Sprintf("C_Verify: %v", err)
		return r
	}
	r.OK = true
	return r
}

// ckkECEdwards is CKK_EC_EDWARDS (PKCS #11 3.0), which github.com/miekg/pkcs11 v1.1.2
// does not name.
const ckkECEdwards = 0x40

// ckmEdDSA is CKM_EDDSA (PKCS #11 3.0).
const ckmEdDSA = 0x1057

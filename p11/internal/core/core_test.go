package core

import (
	"bytes"
	"crypto"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/asn1"
	"fmt"
	"math/big"
	"sync"
	"testing"
	"time"

	"github.com/p11-card/p11-card/apdu"
	"github.com/p11-card/p11-card/cards"
)

func classTmpl(class uint64, id []byte) []Attr {
	t := []Attr{{CKA_CLASS, EncodeULong(class)}}
	if id != nil {
		t = append(t, Attr{CKA_ID, id})
	}
	return t
}

func find(t testing.TB, m *Module, s uint64, tmpl []Attr) []uint64 {
	t.Helper()
	if err := m.FindObjectsInit(s, tmpl); err != nil {
		t.Fatal(err)
	}
	var all []uint64
	for {
		hs, err := m.FindObjects(s, 2)
		if err != nil {
			t.Fatal(err)
		}
		if len(hs) == 0 {
			break
		}
		all = append(all, hs...)
	}
	if err := m.FindObjectsFinal(s); err != nil {
		t.Fatal(err)
	}
	return all
}

func find1(t testing.TB, m *Module, s uint64, class uint64, id byte) uint64 {
	t.Helper()
	hs := find(t, m, s, classTmpl(class, []byte{id}))
	if len(hs) != 1 {
		t.Fatalf("found %d objects of class %d id %d", len(hs), class, id)
	}
	return hs[0]
}

func attr(t testing.TB, m *Module, s, o, typ uint64) AttrValue {
	t.Helper()
	v, err := m.GetAttributeValue(s, o, []uint64{typ})
	if err != nil {
		t.Fatal(err)
	}
	return v[0]
}

func setup(t testing.TB) (*Module, *fakeSource, *fakeCard) {
	src := newFakeSource()
	c := newFakeCard(t)
	src.insert(c)
	return newApp(t, src), src, c
}

func login(t testing.TB, m *Module, s uint64) {
	t.Helper()
	if err := m.Login(s, CKU_USER, []byte("123456")); err != nil {
		t.Fatal(err)
	}
}

func TestInitializeFinalize(t *testing.T) {
	m := New(Options{})
	_, err := m.SlotList(false, false)
	wantRV(t, err, CKR_CRYPTOKI_NOT_INITIALIZED)
	wantRV(t, m.Finalize(), CKR_CRYPTOKI_NOT_INITIALIZED)
	wantRV(t, m.Initialize(), CKR_OK)
	wantRV(t, m.Initialize(), CKR_CRYPTOKI_ALREADY_INITIALIZED)
	ids, err := m.SlotList(false, false)
	if err != nil || len(ids) != 0 {
		t.Fatalf("no source: slots %v, %v", ids, err)
	}
	wantRV(t, m.Finalize(), CKR_OK)
	wantRV(t, m.Initialize(), CKR_OK) // re-initialise after finalize
	wantRV(t, m.Finalize(), CKR_OK)
}

func TestSlotsAndTokenInfo(t *testing.T) {
	m, src, c := setup(t)
	ids, _ := m.SlotList(true, false)
	if len(ids) != 1 || ids[0] != 1 {
		t.Fatalf("slots %v", ids)
	}
	si, err := m.SlotInfo(1)
	if err != nil || si.Flags&CKF_TOKEN_PRESENT == 0 || si.Flags&CKF_REMOVABLE_DEVICE == 0 {
		t.Fatalf("slot info %+v %v", si, err)
	}
	_, err = m.SlotInfo(99)
	wantRV(t, err, CKR_SLOT_ID_INVALID)
	ti, err := m.TokenInfo(1)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []uint64{CKF_LOGIN_REQUIRED, CKF_USER_PIN_INITIALIZED, CKF_TOKEN_INITIALIZED, CKF_RNG} {
		if ti.Flags&f == 0 {
			t.Errorf("flag %#x missing", f)
		}
	}
	if ti.Label != "Fake PIV #42" || ti.Serial != "42" || ti.MinPIN != 6 || ti.MaxPIN != 8 {
		t.Errorf("token info %+v", ti)
	}
	s, _ := m.OpenSession(1, CKF_SERIAL_SESSION)
	wantRV(t, m.Login(s, CKU_USER, []byte("000000")), CKR_PIN_INCORRECT)
	ti, _ = m.TokenInfo(1)
	if ti.Flags&CKF_USER_PIN_COUNT_LOW == 0 {
		t.Error("count low not set after a wrong PIN")
	}
	m.Login(s, CKU_USER, []byte("000000"))
	ti, _ = m.TokenInfo(1)
	if ti.Flags&CKF_USER_PIN_FINAL_TRY == 0 {
		t.Error("final try not set")
	}
	wantRV(t, m.Login(s, CKU_USER, []byte("000000")), CKR_PIN_LOCKED)
	ti, _ = m.TokenInfo(1)
	if ti.Flags&CKF_USER_PIN_LOCKED == 0 {
		t.Error("locked not set")
	}
	wantRV(t, m.Login(s, CKU_USER, []byte("123456")), CKR_PIN_LOCKED)
	src.remove()
	ids, _ = m.SlotList(true, false)
	all, _ := m.SlotList(false, false)
	if len(ids) != 0 || len(all) != 1 {
		t.Fatalf("after removal: present %v all %v", ids, all)
	}
	_, err = m.TokenInfo(1)
	wantRV(t, err, CKR_TOKEN_NOT_PRESENT)
	_ = c
}

func TestSessionsAndLogin(t *testing.T) {
	m, _, _ := setup(t)
	_, err := m.OpenSession(1, 0)
	wantRV(t, err, CKR_SESSION_PARALLEL_NOT_SUPPORTED)
	_, err = m.OpenSession(7, CKF_SERIAL_SESSION)
	wantRV(t, err, CKR_SLOT_ID_INVALID)
	ro, _ := m.OpenSession(1, CKF_SERIAL_SESSION)
	rw, _ := m.OpenSession(1, CKF_SERIAL_SESSION|CKF_RW_SESSION)
	if ro == 0 || rw == 0 || ro == rw {
		t.Fatal("handles")
	}
	wantRV(t, m.Logout(ro), CKR_USER_NOT_LOGGED_IN)
	wantRV(t, m.Login(rw, CKU_SO, []byte("12345678")), CKR_SESSION_READ_ONLY_EXISTS)
	wantRV(t, m.Login(rw, 7, []byte("x")), CKR_USER_TYPE_INVALID)
	wantRV(t, m.Login(rw, CKU_USER, nil), CKR_ARGUMENTS_BAD)
	wantRV(t, m.Login(rw, CKU_CONTEXT_SPECIFIC, []byte("123456")), CKR_OPERATION_NOT_INITIALIZED)
	login(t, m, ro)
	wantRV(t, m.Login(rw, CKU_USER, []byte("123456")), CKR_USER_ALREADY_LOGGED_IN)
	wantRV(t, m.Login(rw, CKU_SO, []byte("12345678")), CKR_USER_ANOTHER_ALREADY_LOGGED_IN)
	for h, want := range map[uint64]uint64{ro: CKS_RO_USER_FUNCTIONS, rw: CKS_RW_USER_FUNCTIONS} {
		si, _ := m.SessionInfo(h)
		if si.State != want {
			t.Errorf("session %d state %d want %d", h, si.State, want)
		}
	}
	s3, _ := m.OpenSession(1, CKF_SERIAL_SESSION)
	if si, _ := m.SessionInfo(s3); si.State != CKS_RO_USER_FUNCTIONS {
		t.Error("new session not logged in")
	}
	wantRV(t, m.Logout(s3), CKR_OK)
	if si, _ := m.SessionInfo(rw); si.State != CKS_RW_PUBLIC_SESSION {
		t.Error("logout not application-wide")
	}
	wantRV(t, m.CloseSession(s3), CKR_OK)
	wantRV(t, m.CloseSession(s3), CKR_SESSION_HANDLE_INVALID)
	wantRV(t, m.CloseSession(0), CKR_SESSION_HANDLE_INVALID)
	// SO: no R/O session may exist, and none may open.
	wantRV(t, m.CloseSession(ro), CKR_OK)
	wantRV(t, m.Login(rw, CKU_SO, []byte("12345678")), CKR_OK)
	_, err = m.OpenSession(1, CKF_SERIAL_SESSION)
	wantRV(t, err, CKR_SESSION_READ_WRITE_SO_EXISTS)
	if si, _ := m.SessionInfo(rw); si.State != CKS_RW_SO_FUNCTIONS {
		t.Error("not SO")
	}
	wantRV(t, m.CloseAllSessions(1), CKR_OK)
	s4, _ := m.OpenSession(1, CKF_SERIAL_SESSION)
	if si, _ := m.SessionInfo(s4); si.State != CKS_RO_PUBLIC_SESSION {
		t.Error("closing all sessions must log out")
	}
}

func TestObjectsAndAttributes(t *testing.T) {
	m, _, _ := setup(t)
	s, _ := m.OpenSession(1, CKF_SERIAL_SESSION)
	if n := len(find(t, m, s, classTmpl(CKO_PRIVATE_KEY, nil))); n != 0 {
		t.Fatalf("%d private keys visible before login", n)
	}
	pubs := find(t, m, s, classTmpl(CKO_PUBLIC_KEY, nil))
	certs := find(t, m, s, classTmpl(CKO_CERTIFICATE, nil))
	if len(pubs) != 5 || len(certs) != 2 {
		t.Fatalf("public %d certs %d", len(pubs), len(certs))
	}
	if again := find(t, m, s, classTmpl(CKO_PUBLIC_KEY, nil)); again[0] != pubs[0] && again[0] != pubs[1] {
		t.Error("handles not stable")
	}
	login(t, m, s)
	privs := find(t, m, s, classTmpl(CKO_PRIVATE_KEY, nil))
	if len(privs) != 5 {
		t.Fatalf("private keys %d", len(privs))
	}
	all := find(t, m, s, nil)
	if len(all) != 12 {
		t.Fatalf("all objects %d", len(all))
	}
	cert := find1(t, m, s, CKO_CERTIFICATE, 1)
	priv := find1(t, m, s, CKO_PRIVATE_KEY, 1)
	pub := find1(t, m, s, CKO_PUBLIC_KEY, 1)
	ecPub := find1(t, m, s, CKO_PUBLIC_KEY, 3)
	edPub := find1(t, m, s, CKO_PUBLIC_KEY, 4)
	ecPriv := find1(t, m, s, CKO_PRIVATE_KEY, 2)

	v := attr(t, m, s, cert, CKA_SUBJECT)
	var name asn1.RawValue
	if _, err := asn1.Unmarshal(v.Value, &name); err != nil || v.RV != 0 {
		t.Fatalf("CKA_SUBJECT %x", v.Value)
	}
	if sn := attr(t, m, s, cert, CKA_SERIAL_NUMBER).Value; !bytes.Equal(sn, []byte{2, 2, 0x12, 0x67}) {
		t.Errorf("serial %x", sn)
	}
	if d := attr(t, m, s, cert, CKA_START_DATE).Value; string(d) != "20240102" {
		t.Errorf("start date %q", d)
	}
	if cv := attr(t, m, s, cert, CKA_CHECK_VALUE).Value; len(cv) != 3 {
		t.Errorf("check value %x", cv)
	}
	if cat, _ := DecodeULong(attr(t, m, s, cert, CKA_CERTIFICATE_CATEGORY).Value); cat != CK_CERTIFICATE_CATEGORY_TOKEN_USER {
		t.Errorf("category %d", cat)
	}
	if ct, _ := DecodeULong(attr(t, m, s, cert, CKA_CERTIFICATE_TYPE).Value); ct != CKC_X_509 {
		t.Error("cert type")
	}
	if subj := attr(t, m, s, priv, CKA_SUBJECT).Value; !bytes.Equal(subj, v.Value) {
		t.Error("private key subject differs from its certificate's")
	}
	if n := attr(t, m, s, pub, CKA_MODULUS).Value; !bytes.Equal(n, keyRSA.N.Bytes()) {
		t.Error("modulus")
	}
	if e := attr(t, m, s, pub, CKA_PUBLIC_EXPONENT).Value; !bytes.Equal(e, []byte{1, 0, 1}) {
		t.Errorf("exponent %x", e)
	}
	if bits, _ := DecodeULong(attr(t, m, s, priv, CKA_MODULUS_BITS).Value); bits != 2048 {
		t.Error("modulus bits")
	}
	for _, tc := range []struct {
		o, typ uint64
		rv     uint64
		val    []byte
	}{
		{priv, CKA_PRIVATE_EXPONENT, CKR_ATTRIBUTE_SENSITIVE, nil},
		{priv, CKA_PRIME_1, CKR_ATTRIBUTE_SENSITIVE, nil},
		{ecPriv, CKA_VALUE, CKR_ATTRIBUTE_SENSITIVE, nil},
		{priv, 0x7777, CKR_ATTRIBUTE_TYPE_INVALID, nil},
		{cert, CKA_MODULUS, CKR_ATTRIBUTE_TYPE_INVALID, nil},
		{priv, CKA_SENSITIVE, 0, []byte{1}},
		{priv, CKA_EXTRACTABLE, 0, []byte{0}},
		{priv, CKA_NEVER_EXTRACTABLE, 0, []byte{1}},
		{priv, CKA_PRIVATE, 0, []byte{1}},
		{pub, CKA_PRIVATE, 0, []byte{0}},
		{ecPriv, CKA_ALWAYS_AUTHENTICATE, 0, []byte{1}},
		{priv, CKA_ALWAYS_AUTHENTICATE, 0, []byte{0}},
		{priv, CKA_TOKEN, 0, []byte{1}},
		{priv, CKA_ID, 0, []byte{1}},
		{ecPub, CKA_EC_PARAMS, 0, []byte{6, 8, 0x2a, 0x86, 0x48, 0xce, 0x3d, 3, 1, 7}},
		{edPub, CKA_EC_PARAMS, 0, []byte{6, 3, 0x2b, 101, 112}},
		{edPub, CKA_KEY_TYPE, 0, EncodeULong(CKK_EC_EDWARDS)},
		{find1(t, m, s, CKO_PUBLIC_KEY, 5), CKA_KEY_TYPE, 0, EncodeULong(CKK_EC_MONTGOMERY)},
	} {
		got := attr(t, m, s, tc.o, tc.typ)
		if got.RV != tc.rv || (tc.val != nil && !bytes.Equal(got.Value, tc.val)) {
			t.Errorf("object %d attr %#x: got %s %x, want %s %x", tc.o, tc.typ, RVName(got.RV), got.Value, RVName(tc.rv), tc.val)
		}
	}
	var pt []byte
	if rest, err := asn1.Unmarshal(attr(t, m, s, ecPub, CKA_EC_POINT).Value, &pt); err != nil || len(rest) != 0 || len(pt) != 65 || pt[0] != 4 {
		t.Errorf("EC point not a DER OCTET STRING of an uncompressed point: %x", pt)
	}
	// Find by a boolean attribute and by value.
	if signers := find(t, m, s, []Attr{{CKA_SIGN, []byte{1}}}); len(signers) != 4 {
		t.Errorf("signing keys %d", len(signers))
	}
	if none := find(t, m, s, []Attr{{CKA_CLASS, EncodeULong(CKO_SECRET_KEY)}}); len(none) != 0 {
		t.Error("secret keys on card")
	}
	_, err := m.GetAttributeValue(s, 9999, []uint64{CKA_CLASS})
	wantRV(t, err, CKR_OBJECT_HANDLE_INVALID)
	// Logout invalidates private handles.
	wantRV(t, m.Logout(s), CKR_OK)
	_, err = m.GetAttributeValue(s, priv, []uint64{CKA_CLASS})
	wantRV(t, err, CKR_OBJECT_HANDLE_INVALID)
	// Operation exclusivity.
	wantRV(t, m.FindObjectsInit(s, nil), CKR_OK)
	wantRV(t, m.FindObjectsInit(s, nil), CKR_OPERATION_ACTIVE)
	wantRV(t, m.DigestInit(s, Mechanism{Type: CKM_SHA256}), CKR_OPERATION_ACTIVE)
	wantRV(t, m.FindObjectsFinal(s), CKR_OK)
	wantRV(t, m.FindObjectsFinal(s), CKR_OPERATION_NOT_INITIALIZED)
}

func TestSessionObjects(t *testing.T) {
	m, _, _ := setup(t)
	s, _ := m.OpenSession(1, CKF_SERIAL_SESSION)
	o, err := m.CreateObject(s, []Attr{{CKA_CLASS, EncodeULong(CKO_DATA)}, {CKA_LABEL, []byte("d")}, {CKA_VALUE, []byte("hello")}})
	if err != nil {
		t.Fatal(err)
	}
	if v := attr(t, m, s, o, CKA_VALUE).Value; string(v) != "hello" {
		t.Error("value")
	}
	_, err = m.CreateObject(s, []Attr{{CKA_CLASS, EncodeULong(CKO_DATA)}, {CKA_PRIVATE, []byte{1}}})
	wantRV(t, err, CKR_USER_NOT_LOGGED_IN)
	_, err = m.CreateObject(s, []Attr{{CKA_LABEL, []byte("x")}})
	wantRV(t, err, CKR_TEMPLATE_INCOMPLETE)
	_, err = m.CreateObject(s, []Attr{{CKA_CLASS, EncodeULong(CKO_DATA)}, {CKA_LABEL, []byte("x")}, {CKA_LABEL, []byte("y")}})
	wantRV(t, err, CKR_TEMPLATE_INCONSISTENT)
	_, err = m.CreateObject(s, []Attr{{CKA_CLASS, EncodeULong(CKO_CERTIFICATE)}, {CKA_TOKEN, []byte{1}}, {CKA_VALUE, []byte{1}}, {CKA_ID, []byte{1}}})
	wantRV(t, err, CKR_SESSION_READ_ONLY)
	wantRV(t, m.SetAttributeValue(s, o, []Attr{{CKA_LABEL, []byte("new")}}), CKR_OK)
	wantRV(t, m.SetAttributeValue(s, o, []Attr{{CKA_CLASS, EncodeULong(CKO_CERTIFICATE)}}), CKR_ATTRIBUTE_READ_ONLY)
	cp, err := m.CopyObject(s, o, []Attr{{CKA_LABEL, []byte("copy")}})
	if err != nil || string(attr(t, m, s, cp, CKA_LABEL).Value) != "copy" {
		t.Fatal("copy", err)
	}
	sz, err := m.ObjectSize(s, o)
	if err != nil || sz == 0 {
		t.Error("object size", sz, err)
	}
	wantRV(t, m.DestroyObject(s, o), CKR_OK)
	wantRV(t, m.DestroyObject(s, o), CKR_OBJECT_HANDLE_INVALID)
	// Token certificate lifecycle on a R/W session.
	rw, _ := m.OpenSession(1, CKF_SERIAL_SESSION|CKF_RW_SESSION)
	der := selfSigned(t, keyRSA, "new")
	c, err := m.CreateObject(rw, []Attr{{CKA_CLASS, EncodeULong(CKO_CERTIFICATE)}, {CKA_TOKEN, []byte{1}}, {CKA_VALUE, der}, {CKA_ID, []byte{3}}})
	if err != nil {
		t.Fatal(err)
	}
	if c != find1(t, m, s, CKO_CERTIFICATE, 3) {
		t.Error("created certificate has another handle")
	}
	wantRV(t, m.SetAttributeValue(s, c, []Attr{{CKA_LABEL, []byte("cert")}}), CKR_SESSION_READ_ONLY)
	wantRV(t, m.SetAttributeValue(rw, c, []Attr{{CKA_LABEL, []byte("cert")}}), CKR_OK)
	wantRV(t, m.SetAttributeValue(rw, c, []Attr{{CKA_LABEL, []byte("other")}}), CKR_ATTRIBUTE_READ_ONLY)
	wantRV(t, m.DestroyObject(s, c), CKR_SESSION_READ_ONLY)
	wantRV(t, m.DestroyObject(rw, c), CKR_OK)
	_, err = m.GetAttributeValue(s, c, []uint64{CKA_CLASS})
	wantRV(t, err, CKR_OBJECT_HANDLE_INVALID)
	// Closing a session destroys its objects.
	wantRV(t, m.CloseSession(s), CKR_OK)
	_, err = m.GetAttributeValue(rw, cp, []uint64{CKA_CLASS})
	wantRV(t, err, CKR_OBJECT_HANDLE_INVALID)
}

// signOnce runs init + size query + sign and checks the result is computed once.
func signOnce(t *testing.T, m *Module, c *fakeCard, s uint64, mech Mechanism, key uint64, data []byte) []byte {
	t.Helper()
	if err := m.SignInit(s, mech, key); err != nil {
		t.Fatalf("SignInit %#x: %v", mech.Type, err)
	}
	before := c.signs
	q, err := m.Sign(s, data, -1)
	if err != nil {
		t.Fatalf("Sign query %#x: %v", mech.Type, err)
	}
	_, err = m.Sign(s, data, len(q)-1)
	wantRV(t, err, CKR_BUFFER_TOO_SMALL)
	sig, err := m.Sign(s, data, len(q))
	if err != nil {
		t.Fatal(err)
	}
	if c.signs != before+1 {
		t.Errorf("card signed %d times for one signature", c.signs-before)
	}
	_, err = m.Sign(s, data, 1000)
	wantRV(t, err, CKR_OPERATION_NOT_INITIALIZED)
	return sig
}

func TestSignVerify(t *testing.T) {
	m, _, c := setup(t)
	s, _ := m.OpenSession(1, CKF_SERIAL_SESSION)
	pub := find1(t, m, s, CKO_PUBLIC_KEY, 1)
	wantRV(t, m.SignInit(s, Mechanism{Type: CKM_RSA_PKCS}, pub), CKR_KEY_TYPE_INCONSISTENT)
	login(t, m, s)
	rsaK := find1(t, m, s, CKO_PRIVATE_KEY, 1)
	ecK := find1(t, m, s, CKO_PRIVATE_KEY, 3)
	edK := find1(t, m, s, CKO_PRIVATE_KEY, 4)
	xK := find1(t, m, s, CKO_PRIVATE_KEY, 5)
	msg := []byte("the message")
	sum := sha256.Sum256(msg)
	pss := &PSSParams{Hash: CKM_SHA256, MGF: CKG_MGF1_SHA256, SaltLen: 32}
	for _, tc := range []struct {
		name string
		mech Mechanism
		key  uint64
		data []byte
	}{
		{"rsa-pkcs", Mechanism{Type: CKM_RSA_PKCS}, rsaK, digestInfo(crypto.SHA256, sum[:])},
		{"sha256-rsa-pkcs", Mechanism{Type: CKM_SHA256_RSA_PKCS}, rsaK, msg},
		{"sha1-rsa-pkcs", Mechanism{Type: CKM_SHA1_RSA_PKCS}, rsaK, msg},
		{"sha512-rsa-pkcs", Mechanism{Type: CKM_SHA512_RSA_PKCS}, rsaK, msg},
		{"rsa-pss", Mechanism{Type: CKM_RSA_PKCS_PSS, PSS: pss}, rsaK, sum[:]},
		{"sha256-rsa-pss", Mechanism{Type: CKM_SHA256_RSA_PKCS_PSS, PSS: pss}, rsaK, msg},
		{"ecdsa", Mechanism{Type: CKM_ECDSA}, ecK, sum[:]},
		{"ecdsa-sha256", Mechanism{Type: CKM_ECDSA_SHA256}, ecK, msg},
		{"ecdsa-sha384", Mechanism{Type: CKM_ECDSA_SHA384}, ecK, msg},
		{"eddsa", Mechanism{Type: CKM_EDDSA}, edK, msg},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sig := signOnce(t, m, c, s, tc.mech, tc.key, tc.data)
			pubH := find1(t, m, s, CKO_PUBLIC_KEY, byte(attr(t, m, s, tc.key, CKA_ID).Value[0]))
			wantRV(t, m.VerifyInit(s, tc.mech, pubH), CKR_OK)
			wantRV(t, m.Verify(s, tc.data, sig), CKR_OK)
			bad := append([]byte{}, sig...)
			bad[len(bad)-1] ^= 1
			wantRV(t, m.VerifyInit(s, tc.mech, pubH), CKR_OK)
			wantRV(t, m.Verify(s, tc.data, bad), CKR_SIGNATURE_INVALID)
			wantRV(t, m.VerifyInit(s, tc.mech, pubH), CKR_OK)
			wantRV(t, m.Verify(s, tc.data, sig[:len(sig)-1]), CKR_SIGNATURE_LEN_RANGE)
			// Multi-part where the mechanism hashes (or buffers).
			if tc.mech.Type != CKM_RSA_PKCS && tc.mech.Type != CKM_ECDSA && tc.mech.Type != CKM_RSA_PKCS_PSS {
				wantRV(t, m.SignInit(s, tc.mech, tc.key), CKR_OK)
				wantRV(t, m.SignUpdate(s, tc.data[:3]), CKR_OK)
				wantRV(t, m.SignUpdate(s, tc.data[3:]), CKR_OK)
				sig2, err := m.SignFinal(s, 4096)
				if err != nil {
					t.Fatal(err)
				}
				wantRV(t, m.VerifyInit(s, tc.mech, pubH), CKR_OK)
				wantRV(t, m.VerifyUpdate(s, tc.data[:5]), CKR_OK)
				wantRV(t, m.VerifyUpdate(s, tc.data[5:]), CKR_OK)
				wantRV(t, m.VerifyFinal(s, sig2), CKR_OK)
			}
		})
	}
	// Independent checks with the standard library.
	sig := signOnce(t, m, c, s, Mechanism{Type: CKM_SHA256_RSA_PKCS_PSS, PSS: pss}, rsaK, msg)
	if err := rsa.VerifyPSS(&keyRSA.PublicKey, crypto.SHA256, sum[:], sig, &rsa.PSSOptions{SaltLength: 32}); err != nil {
		t.Errorf("PSS signature rejected by crypto/rsa: %v", err)
	}
	sig = signOnce(t, m, c, s, Mechanism{Type: CKM_SHA256_RSA_PKCS}, rsaK, msg)
	if err := rsa.VerifyPKCS1v15(&keyRSA.PublicKey, crypto.SHA256, sum[:], sig); err != nil {
		t.Errorf("PKCS#1 signature rejected: %v", err)
	}
	// Wrong combinations.
	wantRV(t, m.SignInit(s, Mechanism{Type: CKM_ECDSA}, rsaK), CKR_KEY_TYPE_INCONSISTENT)
	wantRV(t, m.SignInit(s, Mechanism{Type: CKM_EDDSA}, xK), CKR_KEY_FUNCTION_NOT_PERMITTED)
	wantRV(t, m.SignInit(s, Mechanism{Type: 0x9999}, rsaK), CKR_MECHANISM_INVALID)
	wantRV(t, m.SignInit(s, Mechanism{Type: CKM_RSA_PKCS_PSS}, rsaK), CKR_MECHANISM_PARAM_INVALID)
	wantRV(t, m.SignInit(s, Mechanism{Type: CKM_RSA_PKCS}, 12345), CKR_KEY_HANDLE_INVALID)
	wantRV(t, m.SignInit(s, Mechanism{Type: CKM_RSA_PKCS}, rsaK), CKR_OK)
	wantRV(t, m.SignInit(s, Mechanism{Type: CKM_RSA_PKCS}, rsaK), CKR_OPERATION_ACTIVE)
	_, err := m.Sign(s, make([]byte, 250), 512)
	wantRV(t, err, CKR_DATA_LEN_RANGE)
	_, err = m.Sign(s, msg, 512)
	wantRV(t, err, CKR_OPERATION_NOT_INITIALIZED) // an error ends the operation
	// Sign/verify recover (raw and PKCS#1).
	for _, mt := range []uint64{CKM_RSA_PKCS, CKM_RSA_X_509} {
		wantRV(t, m.SignRecoverInit(s, Mechanism{Type: mt}, rsaK), CKR_OK)
		sig, err := m.SignRecover(s, msg, 256)
		if err != nil {
			t.Fatal(err)
		}
		wantRV(t, m.VerifyRecoverInit(s, Mechanism{Type: mt}, find1(t, m, s, CKO_PUBLIC_KEY, 1)), CKR_OK)
		got, err := m.VerifyRecover(s, sig, 256)
		if err != nil {
			t.Fatal(err)
		}
		if mt == CKM_RSA_X_509 {
			got = bytes.TrimLeft(got, "\x00")
		}
		if !bytes.Equal(got, msg) {
			t.Errorf("recovered %q", got)
		}
	}
}

func TestAlwaysAuthenticate(t *testing.T) {
	m, _, c := setup(t)
	s, _ := m.OpenSession(1, CKF_SERIAL_SESSION)
	login(t, m, s)
	k := find1(t, m, s, CKO_PRIVATE_KEY, 2)
	sum := sha256.Sum256([]byte("x"))
	wantRV(t, m.SignInit(s, Mechanism{Type: CKM_ECDSA}, k), CKR_OK)
	_, err := m.Sign(s, sum[:], 64)
	wantRV(t, err, CKR_USER_NOT_LOGGED_IN)
	wantRV(t, m.SignInit(s, Mechanism{Type: CKM_ECDSA}, k), CKR_OK)
	wantRV(t, m.Login(s, CKU_CONTEXT_SPECIFIC, []byte("999999")), CKR_PIN_INCORRECT)
	wantRV(t, m.Login(s, CKU_CONTEXT_SPECIFIC, []byte("123456")), CKR_OK)
	if _, err := m.Sign(s, sum[:], 64); err != nil {
		t.Fatal(err)
	}
	// Sixteen threads, each with its own session, sign with the PIN-always key.
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for i := 0; i < 16; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			h, err := m.OpenSession(1, CKF_SERIAL_SESSION)
			if err == nil {
				err = m.SignInit(h, Mechanism{Type: CKM_ECDSA_SHA256}, k)
			}
			if err == nil {
				err = m.Login(h, CKU_CONTEXT_SPECIFIC, []byte("123456"))
			}
			if err == nil {
				var sig []byte
				sig, err = m.Sign(h, []byte("thread"), 64)
				if err == nil && len(sig) != 64 {
					err = errRV(CKR_GENERAL_ERROR, "sig length")
				}
			}
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("thread: %v", err)
		}
	}
	_ = c
}

func TestDecryptEncrypt(t *testing.T) {
	m, _, _ := setup(t)
	s, _ := m.OpenSession(1, CKF_SERIAL_SESSION)
	login(t, m, s)
	priv := find1(t, m, s, CKO_PRIVATE_KEY, 1)
	pub := find1(t, m, s, CKO_PUBLIC_KEY, 1)
	msg := []byte("secret message")
	oaep := &OAEPParams{Hash: CKM_SHA256, MGF: CKG_MGF1_SHA256, Source: CKZ_DATA_SPECIFIED}
	for _, mech := range []Mechanism{{Type: CKM_RSA_PKCS}, {Type: CKM_RSA_PKCS_OAEP, OAEP: oaep}, {Type: CKM_RSA_X_509}} {
		wantRV(t, m.EncryptInit(s, mech, pub), CKR_OK)
		ct, err := m.Encrypt(s, msg, 256)
		if err != nil {
			t.Fatal(err)
		}
		wantRV(t, m.DecryptInit(s, mech, priv), CKR_OK)
		n, err := m.Decrypt(s, ct, -1)
		if err != nil {
			t.Fatal(err)
		}
		pt, err := m.Decrypt(s, ct, len(n))
		if err != nil {
			t.Fatal(err)
		}
		if mech.Type == CKM_RSA_X_509 {
			pt = bytes.TrimLeft(pt, "\x00")
		}
		if !bytes.Equal(pt, msg) {
			t.Errorf("mech %#x: decrypted %q", mech.Type, pt)
		}
	}
	// Ciphertexts made by crypto/rsa.
	ct, _ := rsa.EncryptOAEP(sha256.New(), rand.Reader, &keyRSA.PublicKey, msg, []byte("L"))
	wantRV(t, m.DecryptInit(s, Mechanism{Type: CKM_RSA_PKCS_OAEP, OAEP: &OAEPParams{Hash: CKM_SHA256, MGF: CKG_MGF1_SHA256, Source: CKZ_DATA_SPECIFIED, Label: []byte("L")}}, priv), CKR_OK)
	if pt, err := m.Decrypt(s, ct, 256); err != nil || !bytes.Equal(pt, msg) {
		t.Errorf("OAEP with label: %q %v", pt, err)
	}
	// Bad PKCS#1 padding: no error, a deterministic synthetic message.
	bad := new(big.Int).Exp(big.NewInt(12345), big.NewInt(65537), keyRSA.N).FillBytes(make([]byte, 256))
	var outs [2][]byte
	for i := range outs {
		wantRV(t, m.DecryptInit(s, Mechanism{Type: CKM_RSA_PKCS}, priv), CKR_OK)
		out, err := m.Decrypt(s, bad, 256)
		if err != nil {
			t.Fatalf("bad padding distinguishable: %v", err)
		}
		outs[i] = out
	}
	if !bytes.Equal(outs[0], outs[1]) {
		t.Error("implicit rejection not deterministic")
	}
	wantRV(t, m.DecryptInit(s, Mechanism{Type: CKM_RSA_PKCS}, priv), CKR_OK)
	_, err := m.Decrypt(s, []byte{1, 2, 3}, 256)
	wantRV(t, err, CKR_ENCRYPTED_DATA_LEN_RANGE)
	// Switched off.
	m2 := New(Options{NoPKCS1Decrypt: true})
	if !m2.opts.NoPKCS1Decrypt {
		t.Fatal("option")
	}
}

func TestPKCS1UnpadMatchesStdlib(t *testing.T) {
	kdk := []byte("k")
	for i := 0; i < 20; i++ {
		msg := make([]byte, i*5)
		rand.Read(msg)
		ct, _ := rsa.EncryptPKCS1v15(rand.Reader, &keyRSA.PublicKey, msg)
		em := new(big.Int).Exp(new(big.Int).SetBytes(ct), keyRSA.D, keyRSA.N).FillBytes(make([]byte, 256))
		if got := pkcs1Unpad(em, kdk); !bytes.Equal(got, msg) {
			t.Fatalf("len %d: got %x", len(msg), got)
		}
	}
	for _, em := range [][]byte{make([]byte, 256), append([]byte{0, 2}, bytes.Repeat([]byte{1}, 254)...), append([]byte{0, 2, 1, 0}, make([]byte, 252)...)} {
		got := pkcs1Unpad(em, kdk)
		if len(got) > 245 {
			t.Errorf("synthetic message too long: %d", len(got))
		}
	}
}

func TestDigest(t *testing.T) {
	m, _, _ := setup(t)
	s, _ := m.OpenSession(1, CKF_SERIAL_SESSION)
	want := sha256.Sum256([]byte("abcdef"))
	wantRV(t, m.DigestInit(s, Mechanism{Type: CKM_SHA256}), CKR_OK)
	if d, err := m.Digest(s, []byte("abcdef"), 32); err != nil || !bytes.Equal(d, want[:]) {
		t.Error("digest", err)
	}
	wantRV(t, m.DigestInit(s, Mechanism{Type: CKM_SHA256}), CKR_OK)
	wantRV(t, m.DigestUpdate(s, []byte("abc")), CKR_OK)
	wantRV(t, m.DigestUpdate(s, []byte("def")), CKR_OK)
	wantRV(t, m.DigestKey(s, 5), CKR_KEY_INDIGESTIBLE)
	if d, err := m.DigestFinal(s, 32); err != nil || !bytes.Equal(d, want[:]) {
		t.Error("digest final", err)
	}
	wantRV(t, m.DigestInit(s, Mechanism{Type: CKM_RSA_PKCS}), CKR_MECHANISM_INVALID)
}

func TestDerive(t *testing.T) {
	m, _, _ := setup(t)
	s, _ := m.OpenSession(1, CKF_SERIAL_SESSION)
	login(t, m, s)
	for _, tc := range []struct {
		id    byte
		curve ecdh.Curve
		wrap  bool
	}{{3, ecdh.P256(), false}, {3, ecdh.P256(), true}, {5, ecdh.X25519(), false}} {
		peer, _ := tc.curve.GenerateKey(rand.Reader)
		pub := peer.PublicKey().Bytes()
		if tc.wrap {
			pub, _ = asn1.Marshal(pub)
		}
		k := find1(t, m, s, CKO_PRIVATE_KEY, tc.id)
		o, err := m.DeriveKey(s, Mechanism{Type: CKM_ECDH1_DERIVE, ECDH: &ECDHParams{KDF: CKD_NULL, PublicData: pub}}, k,
			[]Attr{{CKA_CLASS, EncodeULong(CKO_SECRET_KEY)}, {CKA_KEY_TYPE, EncodeULong(CKK_GENERIC_SECRET)}, {CKA_SENSITIVE, []byte{0}}, {CKA_EXTRACTABLE, []byte{1}}})
		if err != nil {
			t.Fatal(err)
		}
		cardPub := attr(t, m, s, find1(t, m, s, CKO_PUBLIC_KEY, tc.id), CKA_EC_POINT).Value
		var pt []byte
		asn1.Unmarshal(cardPub, &pt)
		cp, _ := tc.curve.NewPublicKey(pt)
		want, _ := peer.ECDH(cp)
		if got := attr(t, m, s, o, CKA_VALUE).Value; !bytes.Equal(got, want) {
			t.Errorf("derived %x want %x", got, want)
		}
	}
	k := find1(t, m, s, CKO_PRIVATE_KEY, 3)
	_, err := m.DeriveKey(s, Mechanism{Type: CKM_ECDH1_DERIVE, ECDH: &ECDHParams{KDF: CKD_NULL, PublicData: []byte{4, 1}}}, k, nil)
	wantRV(t, err, CKR_MECHANISM_PARAM_INVALID)
	// A sensitive derived key hides its value.
	peer, _ := ecdh.P256().GenerateKey(rand.Reader)
	o, err := m.DeriveKey(s, Mechanism{Type: CKM_ECDH1_DERIVE, ECDH: &ECDHParams{KDF: CKD_NULL, PublicData: peer.PublicKey().Bytes()}}, k, []Attr{{CKA_SENSITIVE, []byte{1}}})
	if err != nil {
		t.Fatal(err)
	}
	if v := attr(t, m, s, o, CKA_VALUE); v.RV != CKR_ATTRIBUTE_SENSITIVE {
		t.Error("sensitive derived key readable")
	}
	wantRV(t, m.SetAttributeValue(s, o, []Attr{{CKA_SENSITIVE, []byte{0}}}), CKR_ATTRIBUTE_READ_ONLY)
}

func TestGenerateKeyPairAndRandom(t *testing.T) {
	m, _, _ := setup(t)
	s, _ := m.OpenSession(1, CKF_SERIAL_SESSION|CKF_RW_SESSION)
	ecParamsP256, _ := asn1.Marshal(oidP256)
	_, _, err := m.GenerateKeyPair(s, Mechanism{Type: CKM_EC_KEY_PAIR_GEN}, []Attr{{CKA_EC_PARAMS, ecParamsP256}}, nil)
	wantRV(t, err, CKR_USER_NOT_LOGGED_IN)
	login(t, m, s)
	ph, qh, err := m.GenerateKeyPair(s, Mechanism{Type: CKM_EC_KEY_PAIR_GEN}, []Attr{{CKA_EC_PARAMS, ecParamsP256}, {CKA_ID, []byte{6}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if ph == 0 || qh == 0 || ph == qh {
		t.Fatal("handles")
	}
	wantRV(t, m.SignInit(s, Mechanism{Type: CKM_ECDSA_SHA256}, qh), CKR_OK)
	sig, err := m.Sign(s, []byte("m"), 64)
	if err != nil {
		t.Fatal(err)
	}
	wantRV(t, m.VerifyInit(s, Mechanism{Type: CKM_ECDSA_SHA256}, ph), CKR_OK)
	wantRV(t, m.Verify(s, []byte("m"), sig), CKR_OK)
	_, _, err = m.GenerateKeyPair(s, Mechanism{Type: CKM_RSA_PKCS_KEY_PAIR_GEN}, []Attr{{CKA_ID, []byte{6}}}, nil)
	wantRV(t, err, CKR_TEMPLATE_INCOMPLETE)
	_, _, err = m.GenerateKeyPair(s, Mechanism{Type: CKM_EC_KEY_PAIR_GEN}, []Attr{{CKA_EC_PARAMS, []byte{6, 1, 1}}}, nil)
	wantRV(t, err, CKR_CURVE_NOT_SUPPORTED)
	_, _, err = m.GenerateKeyPair(s, Mechanism{Type: CKM_EC_KEY_PAIR_GEN}, []Attr{{CKA_EC_PARAMS, ecParamsP256}, {CKA_ID, []byte{0x70}}}, nil)
	wantRV(t, err, CKR_ATTRIBUTE_VALUE_INVALID)
	b, err := m.GenerateRandom(s, 300)
	if err != nil || len(b) != 300 {
		t.Fatal("random", err)
	}
}

// The SO (a PIV card's management key) generates key pairs, but the private key is a private
// token object, which an SO session may not see (pkcs11-usage.md §3.3): its handle answers
// CKR_OBJECT_HANDLE_INVALID and C_FindObjects skips it. Like every handle to a private
// object it dies with the login (PKCS #11 2.40 §2.4: a handle lasts while the object is
// accessible); the user, logged in, finds the key and signs with it.
// A size query for the slots with a token and the listing after it agree even when the
// rescan of a later call would bind a card whose first bind failed (a card that misread):
// the listing answers from the size query's view; the next size query rescans.
func TestSlotListAgreesWithItsSizeQuery(t *testing.T) {
	src := newFakeSource()
	m := newApp(t, src)
	c := newFakeCard(t)
	rescans := func() int {
		src.mu.Lock()
		defer src.mu.Unlock()
		return src.rescans
	}
	src.mu.Lock()
	src.rescans = 0
	src.onRescan = func(n int) {
		if n == 2 {
			src.insert(c) // the retried bind works
		}
	}
	src.mu.Unlock()
	if ids, _ := m.SlotList(true, true); len(ids) != 0 {
		t.Fatalf("size query: %v", ids)
	}
	if ids, _ := m.SlotList(true, false); len(ids) != 0 {
		t.Fatalf("the listing after the size query: %v, want what it counted", ids)
	}
	if ids, _ := m.SlotList(true, true); len(ids) != 1 {
		t.Fatalf("the next size query: %v", ids)
	}
	if ids, _ := m.SlotList(true, false); len(ids) != 1 {
		t.Fatalf("its listing: %v", ids)
	}
	n := rescans()
	m.SlotList(true, false)
	if rescans() != n+1 {
		t.Errorf("a listing without a size query before it did not rescan")
	}
}

func TestSOGeneratesKeyPairItCannotSee(t *testing.T) {
	m, _, _ := setup(t)
	s, _ := m.OpenSession(1, CKF_SERIAL_SESSION|CKF_RW_SESSION)
	wantRV(t, m.Login(s, CKU_SO, []byte("12345678")), CKR_OK)
	ecParamsP256, _ := asn1.Marshal(oidP256)
	ph, qh, err := m.GenerateKeyPair(s, Mechanism{Type: CKM_EC_KEY_PAIR_GEN}, []Attr{{CKA_EC_PARAMS, ecParamsP256}, {CKA_ID, []byte{6}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.GetAttributeValue(s, ph, []uint64{CKA_ID}); err != nil {
		t.Errorf("the SO reads the public key: %v", err)
	}
	_, err = m.GetAttributeValue(s, qh, []uint64{CKA_ID})
	wantRV(t, err, CKR_OBJECT_HANDLE_INVALID)
	wantRV(t, m.FindObjectsInit(s, []Attr{{CKA_CLASS, EncodeULong(CKO_PRIVATE_KEY)}}), CKR_OK)
	if got, _ := m.FindObjects(s, 10); len(got) != 0 {
		t.Errorf("the SO finds %d private keys", len(got))
	}
	wantRV(t, m.FindObjectsFinal(s), CKR_OK)
	wantRV(t, m.Logout(s), CKR_OK)
	login(t, m, s)
	_, err = m.GetAttributeValue(s, qh, []uint64{CKA_ID})
	wantRV(t, err, CKR_OBJECT_HANDLE_INVALID)
	k := find1(t, m, s, CKO_PRIVATE_KEY, 6)
	wantRV(t, m.SignInit(s, Mechanism{Type: CKM_ECDSA_SHA256}, k), CKR_OK)
	if _, err := m.Sign(s, []byte("m"), 64); err != nil {
		t.Errorf("sign with the SO's key: %v", err)
	}
}

func TestRemoval(t *testing.T) {
	m, src, c := setup(t)
	s, _ := m.OpenSession(1, CKF_SERIAL_SESSION)
	login(t, m, s)
	k := find1(t, m, s, CKO_PRIVATE_KEY, 1)
	// An operation under way when the card leaves.
	c.block, c.started = make(chan struct{}), make(chan struct{})
	wantRV(t, m.SignInit(s, Mechanism{Type: CKM_SHA256_RSA_PKCS}, k), CKR_OK)
	done := make(chan error)
	go func() {
		_, err := m.Sign(s, []byte("x"), 256)
		done <- err
	}()
	<-c.started
	src.remove()
	close(c.block)
	wantRV(t, <-done, CKR_DEVICE_REMOVED)
	_, err := m.SessionInfo(s)
	wantRV(t, err, CKR_SESSION_HANDLE_INVALID)
	// Same card back: a new generation; old handles stay dead.
	c.block = nil
	src.insert(c)
	_, err = m.SessionInfo(s)
	wantRV(t, err, CKR_SESSION_HANDLE_INVALID)
	s2, err := m.OpenSession(1, CKF_SERIAL_SESSION)
	if err != nil {
		t.Fatal(err)
	}
	if si, _ := m.SessionInfo(s2); si.State != CKS_RO_PUBLIC_SESSION {
		t.Error("login survived removal")
	}
	_, err = m.GetAttributeValue(s2, k, []uint64{CKA_CLASS})
	wantRV(t, err, CKR_OBJECT_HANDLE_INVALID)
}

func TestWaitForSlotEvent(t *testing.T) {
	src := newFakeSource()
	m := newApp(t, src)
	_, err := m.WaitForSlotEvent(true)
	wantRV(t, err, CKR_NO_EVENT)
	src.insert(newFakeCard(t))
	id, err := m.WaitForSlotEvent(true)
	if err != nil || id != 1 {
		t.Fatalf("event %d %v", id, err)
	}
	_, err = m.WaitForSlotEvent(true)
	wantRV(t, err, CKR_NO_EVENT)
	got := make(chan error, 1)
	go func() {
		_, err := m.WaitForSlotEvent(false)
		got <- err
	}()
	src.remove()
	if err := <-got; err != nil {
		t.Fatal(err)
	}
	go func() {
		_, err := m.WaitForSlotEvent(false)
		got <- err
	}()
	select {
	case err := <-got:
		t.Fatalf("returned without an event: %v", err)
	case <-time.After(20 * time.Millisecond):
	}
	m.Finalize()
	wantRV(t, <-got, CKR_CRYPTOKI_NOT_INITIALIZED)
}

// TestTwoApplications is pkcs11-usage.md §7: two Modules model two processes.
func TestTwoApplications(t *testing.T) {
	src := newFakeSource()
	card := newFakeCard(t)
	src.insert(card)
	A, B := newApp(t, src), newApp(t, src)
	// 1.
	sA7, _ := A.OpenSession(1, CKF_SERIAL_SESSION|CKF_RW_SESSION)
	sA4, _ := A.OpenSession(1, CKF_SERIAL_SESSION)
	// 2.
	wantRV(t, A.Login(sA7, CKU_SO, []byte("12345678")), CKR_SESSION_READ_ONLY_EXISTS)
	login(t, A, sA7)
	for h, st := range map[uint64]uint64{sA7: CKS_RW_USER_FUNCTIONS, sA4: CKS_RO_USER_FUNCTIONS} {
		if si, _ := A.SessionInfo(h); si.State != st {
			t.Errorf("step 2: session state %d want %d", si.State, st)
		}
	}
	// 3.
	sA9, _ := A.OpenSession(1, CKF_SERIAL_SESSION|CKF_RW_SESSION)
	if si, _ := A.SessionInfo(sA9); si.State != CKS_RW_USER_FUNCTIONS {
		t.Error("step 3: new session not a user session")
	}
	wantRV(t, A.CloseSession(sA9), CKR_OK)
	// 4.
	_, err := B.SessionInfo(sA7)
	wantRV(t, err, CKR_SESSION_HANDLE_INVALID)
	// 5.
	sB, _ := B.OpenSession(1, CKF_SERIAL_SESSION|CKF_RW_SESSION)
	wantRV(t, B.Login(sB, CKU_SO, []byte("12345678")), CKR_OK)
	if si, _ := A.SessionInfo(sA4); si.State != CKS_RO_USER_FUNCTIONS {
		t.Error("step 5: A affected by B's SO login")
	}
	// 6.
	O1, err := A.CreateObject(sA7, []Attr{{CKA_CLASS, EncodeULong(CKO_DATA)}, {CKA_LABEL, []byte("O1")}})
	if err != nil {
		t.Fatal(err)
	}
	der := selfSigned(t, keyRSA, "O2")
	O2b, err := B.CreateObject(sB, []Attr{{CKA_CLASS, EncodeULong(CKO_CERTIFICATE)}, {CKA_TOKEN, []byte{1}}, {CKA_VALUE, der}, {CKA_ID, []byte{3}}, {CKA_LABEL, []byte("cert")}})
	if err != nil {
		t.Fatal(err)
	}
	_, err = B.CreateObject(sB, []Attr{{CKA_CLASS, EncodeULong(CKO_DATA)}, {CKA_TOKEN, []byte{1}}, {CKA_PRIVATE, []byte{1}}})
	wantRV(t, err, CKR_USER_NOT_LOGGED_IN)
	// 7.
	O2a := find1(t, A, sA4, CKO_CERTIFICATE, 3)
	wantRV(t, A.SetAttributeValue(sA4, O2a, []Attr{{CKA_LABEL, []byte("cert")}}), CKR_SESSION_READ_ONLY)
	wantRV(t, A.SetAttributeValue(sA7, O2a, []Attr{{CKA_LABEL, []byte("cert")}}), CKR_OK)
	for _, h := range find(t, B, sB, []Attr{{CKA_CLASS, EncodeULong(CKO_DATA)}}) {
		if h == O1 {
			t.Error("step 7: B found A's session object")
		}
	}
	if len(find(t, B, sB, []Attr{{CKA_LABEL, []byte("O1")}})) != 0 {
		t.Error("step 7: B sees O1")
	}
	// 8.
	wantRV(t, A.DestroyObject(sA7, O2a), CKR_OK)
	_, err = B.GetAttributeValue(sB, O2b, []uint64{CKA_LABEL})
	wantRV(t, err, CKR_OBJECT_HANDLE_INVALID)
	// 9.
	wantRV(t, A.Logout(sA4), CKR_OK)
	for h, st := range map[uint64]uint64{sA7: CKS_RW_PUBLIC_SESSION, sA4: CKS_RO_PUBLIC_SESSION} {
		if si, _ := A.SessionInfo(h); si.State != st {
			t.Errorf("step 9: state %d want %d", si.State, st)
		}
	}
	// 10.
	wantRV(t, A.CloseSession(sA7), CKR_OK)
	_, err = A.GetAttributeValue(sA4, O1, []uint64{CKA_LABEL})
	wantRV(t, err, CKR_OBJECT_HANDLE_INVALID)
	// 11.
	wantRV(t, A.CloseAllSessions(1), CKR_OK)
	sNew, _ := A.OpenSession(1, CKF_SERIAL_SESSION)
	if si, _ := A.SessionInfo(sNew); si.State != CKS_RO_PUBLIC_SESSION {
		t.Error("step 11: new session not public")
	}
	wantRV(t, B.CloseSession(sB), CKR_OK)
	wantRV(t, A.Finalize(), CKR_OK)
	wantRV(t, B.Finalize(), CKR_OK)
}

func TestErrMap(t *testing.T) {
	for _, tc := range []struct {
		err error
		rv  uint64
	}{
		{nil, CKR_OK},
		{cards.ErrPINBlocked, CKR_PIN_LOCKED},
		{&struct{ error }{cards.ErrLoginRequired}, CKR_FUNCTION_FAILED},
		{wrap(cards.ErrLoginRequired), CKR_USER_NOT_LOGGED_IN},
		{wrap(cards.ErrNotSupported), CKR_FUNCTION_NOT_SUPPORTED},
		{wrap(cards.ErrKeyNotFound), CKR_KEY_HANDLE_INVALID},
		{wrap(cards.ErrCardFull), CKR_DEVICE_MEMORY},
		{wrap(cards.ErrPINIncorrect), CKR_PIN_INCORRECT},
		{fmt.Errorf("piv: management key not accepted: %w: %w", cards.ErrPINIncorrect, &apdu.VerifyError{Retries: -1}), CKR_PIN_INCORRECT},
		{&apdu.VerifyError{Retries: 0}, CKR_PIN_LOCKED},
		{&apdu.VerifyError{Retries: 2}, CKR_PIN_INCORRECT},
		{wrap(apdu.ErrSecurityStatus), CKR_USER_NOT_LOGGED_IN},
		{wrap(apdu.ErrMalformed), CKR_DEVICE_ERROR},
		{errRV(CKR_PIN_LEN_RANGE, "x"), CKR_PIN_LEN_RANGE},
	} {
		if got := RV(tc.err); got != tc.rv {
			t.Errorf("%v: %s want %s", tc.err, RVName(got), RVName(tc.rv))
		}
	}
}

func wrap(err error) error { return &wrapped{err} }

type wrapped struct{ err error }

func (w *wrapped) Error() string { return "ctx: " + w.err.Error() }
func (w *wrapped) Unwrap() error { return w.err }

var _ = ecdsa.Verify
var _ = ed25519.Verify

func TestSinglePartMechanismsInParts(t *testing.T) {
	m, _, _ := setup(t)
	s, _ := m.OpenSession(1, CKF_SERIAL_SESSION)
	login(t, m, s)
	k := find1(t, m, s, CKO_PRIVATE_KEY, 1)
	sum := sha256.Sum256([]byte("m"))
	di := digestInfo(crypto.SHA256, sum[:])
	wantRV(t, m.SignInit(s, Mechanism{Type: CKM_RSA_PKCS}, k), CKR_OK)
	wantRV(t, m.SignUpdate(s, di[:10]), CKR_OK)
	wantRV(t, m.SignUpdate(s, di[10:]), CKR_OK)
	sig, err := m.SignFinal(s, 256)
	if err != nil {
		t.Fatal(err)
	}
	if err := rsa.VerifyPKCS1v15(&keyRSA.PublicKey, crypto.SHA256, sum[:], sig); err != nil {
		t.Error(err)
	}
	// A card without a generator: random bytes come from the host.
	src := newFakeSource()
	c := newFakeCard(t)
	c.random = false
	src.insert(c)
	m2 := newApp(t, src)
	ti, _ := m2.TokenInfo(1)
	if ti.Flags&CKF_RNG != 0 {
		t.Error("CKF_RNG without a card generator")
	}
	s2, _ := m2.OpenSession(1, CKF_SERIAL_SESSION)
	if b, err := m2.GenerateRandom(s2, 16); err != nil || len(b) != 16 {
		t.Error("random", err)
	}
}

// TestFinalizeUnderLoad finalizes while threads work: no panic, no corruption, every
// call answers with a code.
func TestFinalizeUnderLoad(t *testing.T) {
	src := newFakeSource()
	src.insert(newFakeCard(t))
	m := New(Options{NewSource: func() SlotSource { return src }})
	if err := m.Initialize(); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	progress := make(chan struct{}, 64)
	waitLoops := func(n int) {
		for i := 0; i < n; i++ {
			<-progress
		}
	}
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				s, err := m.OpenSession(1, CKF_SERIAL_SESSION)
				if err != nil {
					continue
				}
				m.Login(s, CKU_USER, []byte("123456"))
				m.FindObjectsInit(s, nil)
				m.FindObjects(s, 10)
				m.FindObjectsFinal(s)
				m.CreateObject(s, []Attr{{CKA_CLASS, EncodeULong(CKO_DATA)}})
				m.DigestInit(s, Mechanism{Type: CKM_SHA256})
				m.Digest(s, []byte("x"), 64)
				m.CloseSession(s)
				select {
				case progress <- struct{}{}:
				default:
				}
			}
		}()
	}
	waitLoops(16)
	wantRV(t, m.Finalize(), CKR_OK)
	wantRV(t, m.Initialize(), CKR_OK)
	waitLoops(16)
	close(stop)
	wg.Wait()
	wantRV(t, m.Finalize(), CKR_OK)
}

func TestImportKey(t *testing.T) {
	m, _, _ := setup(t)
	s, _ := m.OpenSession(1, CKF_SERIAL_SESSION|CKF_RW_SESSION)
	k, _ := rsa.GenerateKey(rand.Reader, 2048)
	// CreateObject wipes the key material it was given: a fresh template each time.
	tmpl := func() []Attr {
		return []Attr{{CKA_CLASS, EncodeULong(CKO_PRIVATE_KEY)}, {CKA_TOKEN, []byte{1}}, {CKA_KEY_TYPE, EncodeULong(CKK_RSA)}, {CKA_ID, []byte{6}},
			{CKA_MODULUS, k.N.Bytes()}, {CKA_PUBLIC_EXPONENT, big.NewInt(int64(k.E)).Bytes()}, {CKA_PRIVATE_EXPONENT, k.D.Bytes()},
			{CKA_PRIME_1, k.Primes[0].Bytes()}, {CKA_PRIME_2, k.Primes[1].Bytes()}}
	}
	_, err := m.CreateObject(s, tmpl())
	wantRV(t, err, CKR_USER_NOT_LOGGED_IN)
	wantRV(t, m.Login(s, CKU_SO, []byte("12345678")), CKR_OK)
	bad := tmpl()
	bad[6] = Attr{CKA_PRIVATE_EXPONENT, []byte{1, 2, 3}}
	_, err = m.CreateObject(s, bad)
	wantRV(t, err, CKR_ATTRIBUTE_VALUE_INVALID)
	if _, err := m.CreateObject(s, tmpl()); err != nil {
		t.Fatal(err)
	}
	// An EC key too.
	ec := mustEC()
	p256, _ := asn1.Marshal(oidP256)
	if _, err := m.CreateObject(s, []Attr{{CKA_CLASS, EncodeULong(CKO_PRIVATE_KEY)}, {CKA_TOKEN, []byte{1}}, {CKA_KEY_TYPE, EncodeULong(CKK_EC)}, {CKA_ID, []byte{3}},
		{CKA_EC_PARAMS, p256}, {CKA_VALUE, ec.D.Bytes()}}); err != nil {
		t.Fatal(err)
	}
	wantRV(t, m.Logout(s), CKR_OK)
	login(t, m, s)
	wantRV(t, m.SignInit(s, Mechanism{Type: CKM_SHA256_RSA_PKCS}, find1(t, m, s, CKO_PRIVATE_KEY, 6)), CKR_OK)
	sig, err := m.Sign(s, []byte("imported"), 256)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte("imported"))
	if err := rsa.VerifyPKCS1v15(&k.PublicKey, crypto.SHA256, sum[:], sig); err != nil {
		t.Error("imported key does not sign as the original")
	}
	if pub, ok := attrPub(t, m, s, 3); !ok || !pub.Equal(&ec.PublicKey) {
		t.Error("imported EC key's public key differs")
	}
}

func attrPub(t *testing.T, m *Module, s uint64, id byte) (*ecdsa.PublicKey, bool) {
	v := attr(t, m, s, find1(t, m, s, CKO_PUBLIC_KEY, id), CKA_PUBLIC_KEY_INFO).Value
	k, err := x509ParsePKIX(v)
	if err != nil {
		return nil, false
	}
	p, ok := k.(*ecdsa.PublicKey)
	return p, ok
}

func TestBrokenCardAnswers(t *testing.T) {
	m, _, c := setup(t)
	s, _ := m.OpenSession(1, CKF_SERIAL_SESSION)
	login(t, m, s)
	ec := find1(t, m, s, CKO_PRIVATE_KEY, 3)
	rsaK := find1(t, m, s, CKO_PRIVATE_KEY, 1)
	sum := sha256.Sum256([]byte("x"))
	for _, tc := range []struct {
		name   string
		key    uint64
		mech   uint64
		mangle func([]byte) []byte
		rv     uint64
	}{
		{"ecdsa short", ec, CKM_ECDSA, func(b []byte) []byte { return b[:63] }, CKR_DEVICE_ERROR},
		{"ecdsa long", ec, CKM_ECDSA, func(b []byte) []byte { return append(b, 0) }, CKR_DEVICE_ERROR},
		{"rsa long", rsaK, CKM_RSA_PKCS, func(b []byte) []byte { return append(b, 0) }, CKR_DEVICE_ERROR},
		{"rsa empty", rsaK, CKM_RSA_PKCS, func(b []byte) []byte { return nil }, CKR_DEVICE_ERROR},
		{"rsa leading zero dropped", rsaK, CKM_RSA_PKCS, func(b []byte) []byte { return append([]byte{}, b[1:]...) }, CKR_OK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c.mangle = tc.mangle
			wantRV(t, m.SignInit(s, Mechanism{Type: tc.mech}, tc.key), CKR_OK)
			sig, err := m.Sign(s, sum[:], 512)
			wantRV(t, err, tc.rv)
			if err == nil && len(sig) != 256 {
				t.Errorf("signature of %d bytes", len(sig))
			}
		})
	}
}

func TestPINPad(t *testing.T) {
	src := newFakeSource()
	src.pinPad = true
	c := newFakeCard(t)
	c.pinPadPIN = []byte("123456")
	src.insert(c)
	m := newApp(t, src)
	ti, _ := m.TokenInfo(1)
	if ti.Flags&CKF_PROTECTED_AUTHENTICATION_PATH == 0 {
		t.Fatal("no CKF_PROTECTED_AUTHENTICATION_PATH on a PIN-pad reader")
	}
	s, _ := m.OpenSession(1, CKF_SERIAL_SESSION)
	wantRV(t, m.Login(s, CKU_USER, nil), CKR_OK)
	k := find1(t, m, s, CKO_PRIVATE_KEY, 2)
	wantRV(t, m.SignInit(s, Mechanism{Type: CKM_ECDSA_SHA256}, k), CKR_OK)
	wantRV(t, m.Login(s, CKU_CONTEXT_SPECIFIC, nil), CKR_OK)
	if _, err := m.Sign(s, []byte("pad"), 64); err != nil {
		t.Fatal(err)
	}
}

func TestCertificateCategory(t *testing.T) {
	m, _, c := setup(t)
	c.certs["\x09"] = selfSigned(t, keyRSA, "no key here")
	s, _ := m.OpenSession(1, CKF_SERIAL_SESSION)
	o := find1(t, m, s, CKO_CERTIFICATE, 9)
	if cat, _ := DecodeULong(attr(t, m, s, o, CKA_CERTIFICATE_CATEGORY).Value); cat != CK_CERTIFICATE_CATEGORY_UNSPECIFIED {
		t.Errorf("category of a certificate without key: %d", cat)
	}
}

// TestCardForgetsLogin: another application reset the card; the next operation reports
// CKR_USER_NOT_LOGGED_IN and the application can log in again.
func TestCardForgetsLogin(t *testing.T) {
	m, _, c := setup(t)
	s, _ := m.OpenSession(1, CKF_SERIAL_SESSION)
	login(t, m, s)
	k := find1(t, m, s, CKO_PRIVATE_KEY, 1)
	c.mu.Lock()
	c.verified = false
	c.mu.Unlock()
	wantRV(t, m.SignInit(s, Mechanism{Type: CKM_SHA256_RSA_PKCS}, k), CKR_OK)
	_, err := m.Sign(s, []byte("x"), 256)
	wantRV(t, err, CKR_USER_NOT_LOGGED_IN)
	if si, _ := m.SessionInfo(s); si.State != CKS_RO_PUBLIC_SESSION {
		t.Errorf("state %d after the card forgot the login", si.State)
	}
	login(t, m, s)
	k = find1(t, m, s, CKO_PRIVATE_KEY, 1)
	wantRV(t, m.SignInit(s, Mechanism{Type: CKM_SHA256_RSA_PKCS}, k), CKR_OK)
	if _, err := m.Sign(s, []byte("x"), 256); err != nil {
		t.Fatal(err)
	}
}

func TestPINCache(t *testing.T) {
	src := newFakeSource()
	c := newFakeCard(t)
	src.insert(c)
	m := New(Options{NewSource: func() SlotSource { return src }, PINCache: true})
	if err := m.Initialize(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Finalize() })
	s, _ := m.OpenSession(1, CKF_SERIAL_SESSION)
	login(t, m, s)
	k := find1(t, m, s, CKO_PRIVATE_KEY, 1)
	forget := func() {
		c.mu.Lock()
		c.verified = false
		c.mu.Unlock()
	}
	// Another application reset the card: the cached PIN logs in again.
	forget()
	wantRV(t, m.SignInit(s, Mechanism{Type: CKM_SHA256_RSA_PKCS}, k), CKR_OK)
	if _, err := m.Sign(s, []byte("x"), 256); err != nil {
		t.Fatalf("sign after reset with the PIN cache: %v", err)
	}
	// The PIN changed meanwhile: one failed try, then logged out, cache gone. C_Sign
	// gives no PIN codes: the login it needs no longer holds.
	forget()
	c.mu.Lock()
	c.pin = []byte("999999")
	c.mu.Unlock()
	wantRV(t, m.SignInit(s, Mechanism{Type: CKM_SHA256_RSA_PKCS}, k), CKR_OK)
	_, err := m.Sign(s, []byte("x"), 256)
	wantRV(t, err, CKR_USER_NOT_LOGGED_IN)
	if c.retries != 2 {
		t.Errorf("retries %d: the cache tried more than once", c.retries)
	}
	if si, _ := m.SessionInfo(s); si.State != CKS_RO_PUBLIC_SESSION {
		t.Error("still logged in after the cached PIN failed")
	}
	m.mu.RLock()
	for _, ts := range m.tokens {
		if ts.pin != nil {
			t.Error("PIN still cached")
		}
	}
	m.mu.RUnlock()
}

// TestCertificateAttributesX509Refuses: a certificate crypto/x509 refuses for a negative
// serial number still gives its subject, issuer, serial number (as encoded) and dates.
func TestCertificateAttributesX509Refuses(t *testing.T) {
	m, _, c := setup(t)
	der := bytes.Replace(c.certs["\x01"], []byte{0x02, 0x02, 0x12, 0x67}, []byte{0x02, 0x02, 0x92, 0x67}, 1)
	if _, err := x509.ParseCertificate(der); err == nil {
		t.Fatal("crypto/x509 accepts the certificate: the test shows nothing")
	}
	c.certs["\x01"] = der
	s, _ := m.OpenSession(1, CKF_SERIAL_SESSION)
	cert := find1(t, m, s, CKO_CERTIFICATE, 1)
	if sn := attr(t, m, s, cert, CKA_SERIAL_NUMBER).Value; !bytes.Equal(sn, []byte{0x02, 0x02, 0x92, 0x67}) {
		t.Errorf("CKA_SERIAL_NUMBER % X", sn)
	}
	subj := attr(t, m, s, cert, CKA_SUBJECT).Value
	if len(subj) == 0 || !bytes.Contains(subj, []byte("RSA key")) || !bytes.Equal(attr(t, m, s, cert, CKA_ISSUER).Value, subj) {
		t.Errorf("CKA_SUBJECT % X", subj)
	}
	if d := attr(t, m, s, cert, CKA_END_DATE).Value; string(d) != "20340102" {
		t.Errorf("CKA_END_DATE %q", d)
	}
}

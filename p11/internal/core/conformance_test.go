package core

import (
	"bytes"
	"crypto/elliptic"
	"testing"

	"github.com/p11-card/p11-card/apdu"
	"github.com/p11-card/p11-card/cards"
)

// TestConformanceTable lists the specification's edge cases, each with the return value
// PKCS #11 2.40 §5 prescribes. Every row runs on a fresh application with a fresh card:
// ro and rw are sessions (public), key is the RSA private key handle after user login in
// the rows that log in.
func TestConformanceTable(t *testing.T) {
	type env struct {
		m      *Module
		ro, rw uint64
		src    *fakeSource
		card   *fakeCard
	}
	privKey := func(t *testing.T, e *env) uint64 { return find1(t, e.m, e.rw, CKO_PRIVATE_KEY, 1) }
	pubKey := func(t *testing.T, e *env) uint64 { return find1(t, e.m, e.rw, CKO_PUBLIC_KEY, 1) }
	// refused runs f, the card answering its next call of the kind named (fakeCard.refuse)
	// with refusal.
	refused := func(call string, refusal error, f func(e *env) error) func(t *testing.T, e *env) error {
		return func(t *testing.T, e *env) error {
			e.card.refuse = map[string]error{call: refusal}
			return f(e)
		}
	}
	userLogin := func(e *env) error { return e.m.Login(e.ro, CKU_USER, []byte("123456")) }
	// signRefused signs with the RSA key, the card answering the signature with refusal.
	signRefused := func(refusal error) func(t *testing.T, e *env) error {
		return func(t *testing.T, e *env) error {
			wantRV(t, e.m.SignInit(e.ro, Mechanism{Type: CKM_SHA256_RSA_PKCS}, privKey(t, e)), CKR_OK)
			e.card.refuse = map[string]error{"key": refusal}
			_, err := e.m.Sign(e.ro, []byte("x"), 256)
			return err
		}
	}
	rows := []struct {
		name  string
		login bool
		run   func(t *testing.T, e *env) error
		want  uint64
	}{
		{"open session: no serial flag", false, func(t *testing.T, e *env) error { _, err := e.m.OpenSession(1, CKF_RW_SESSION); return err }, CKR_SESSION_PARALLEL_NOT_SUPPORTED},
		{"open session: bad slot", false, func(t *testing.T, e *env) error { _, err := e.m.OpenSession(42, CKF_SERIAL_SESSION); return err }, CKR_SLOT_ID_INVALID},
		{"open session: card removed", false, func(t *testing.T, e *env) error {
			e.src.remove()
			_, err := e.m.OpenSession(1, CKF_SERIAL_SESSION)
			return err
		}, CKR_TOKEN_NOT_PRESENT},
		{"session info: handle 0", false, func(t *testing.T, e *env) error { _, err := e.m.SessionInfo(0); return err }, CKR_SESSION_HANDLE_INVALID},
		{"close twice", false, func(t *testing.T, e *env) error { e.m.CloseSession(e.ro); return e.m.CloseSession(e.ro) }, CKR_SESSION_HANDLE_INVALID},
		{"logout when not logged in", false, func(t *testing.T, e *env) error { return e.m.Logout(e.ro) }, CKR_USER_NOT_LOGGED_IN},
		{"login twice", true, func(t *testing.T, e *env) error { return e.m.Login(e.ro, CKU_USER, []byte("123456")) }, CKR_USER_ALREADY_LOGGED_IN},
		{"SO while user", true, func(t *testing.T, e *env) error { return e.m.Login(e.rw, CKU_SO, []byte("12345678")) }, CKR_USER_ANOTHER_ALREADY_LOGGED_IN},
		{"SO with R/O session open", false, func(t *testing.T, e *env) error { return e.m.Login(e.rw, CKU_SO, []byte("12345678")) }, CKR_SESSION_READ_ONLY_EXISTS},
		{"R/O session while SO", false, func(t *testing.T, e *env) error {
			e.m.CloseSession(e.ro)
			if err := e.m.Login(e.rw, CKU_SO, []byte("12345678")); err != nil {
				return err
			}
			_, err := e.m.OpenSession(1, CKF_SERIAL_SESSION)
			return err
		}, CKR_SESSION_READ_WRITE_SO_EXISTS},
		{"bad user type", false, func(t *testing.T, e *env) error { return e.m.Login(e.ro, 9, []byte("1")) }, CKR_USER_TYPE_INVALID},
		{"wrong PIN", false, func(t *testing.T, e *env) error { return e.m.Login(e.ro, CKU_USER, []byte("000000")) }, CKR_PIN_INCORRECT},
		{"PIN of bad length on change", true, func(t *testing.T, e *env) error { return e.m.SetPIN(e.rw, []byte("123456"), []byte("1")) }, CKR_PIN_LEN_RANGE},
		{"set PIN in R/O session", true, func(t *testing.T, e *env) error { return e.m.SetPIN(e.ro, []byte("123456"), []byte("654321")) }, CKR_SESSION_READ_ONLY},
		{"context login without operation", true, func(t *testing.T, e *env) error { return e.m.Login(e.ro, CKU_CONTEXT_SPECIFIC, []byte("123456")) }, CKR_OPERATION_NOT_INITIALIZED},
		{"find final without init", false, func(t *testing.T, e *env) error { return e.m.FindObjectsFinal(e.ro) }, CKR_OPERATION_NOT_INITIALIZED},
		{"find objects without init", false, func(t *testing.T, e *env) error { _, err := e.m.FindObjects(e.ro, 1); return err }, CKR_OPERATION_NOT_INITIALIZED},
		{"private key invisible before login", false, func(t *testing.T, e *env) error {
			if n := len(find(t, e.m, e.ro, classTmpl(CKO_PRIVATE_KEY, nil))); n != 0 {
				return errRV(CKR_GENERAL_ERROR, "visible")
			}
			return nil
		}, CKR_OK},
		{"sensitive attribute", true, func(t *testing.T, e *env) error {
			return rvOfAttr(attr(t, e.m, e.ro, privKey(t, e), CKA_PRIVATE_EXPONENT))
		}, CKR_ATTRIBUTE_SENSITIVE},
		{"unknown attribute", false, func(t *testing.T, e *env) error { return rvOfAttr(attr(t, e.m, e.ro, pubKey(t, e), 0x7FFF)) }, CKR_ATTRIBUTE_TYPE_INVALID},
		{"attribute of unknown object", false, func(t *testing.T, e *env) error {
			_, err := e.m.GetAttributeValue(e.ro, 99999, []uint64{CKA_CLASS})
			return err
		}, CKR_OBJECT_HANDLE_INVALID},
		{"sign init twice", true, func(t *testing.T, e *env) error {
			k := privKey(t, e)
			e.m.SignInit(e.ro, Mechanism{Type: CKM_RSA_PKCS}, k)
			return e.m.SignInit(e.ro, Mechanism{Type: CKM_RSA_PKCS}, k)
		}, CKR_OPERATION_ACTIVE},
		{"find while signing", true, func(t *testing.T, e *env) error {
			e.m.SignInit(e.ro, Mechanism{Type: CKM_RSA_PKCS}, privKey(t, e))
			return e.m.FindObjectsInit(e.ro, nil)
		}, CKR_OPERATION_ACTIVE},
		{"sign without init", true, func(t *testing.T, e *env) error { _, err := e.m.Sign(e.ro, []byte("x"), 256); return err }, CKR_OPERATION_NOT_INITIALIZED},
		{"sign with a public key", false, func(t *testing.T, e *env) error {
			return e.m.SignInit(e.ro, Mechanism{Type: CKM_RSA_PKCS}, pubKey(t, e))
		}, CKR_KEY_TYPE_INCONSISTENT},
		{"sign with a bad handle", true, func(t *testing.T, e *env) error { return e.m.SignInit(e.ro, Mechanism{Type: CKM_RSA_PKCS}, 4242) }, CKR_KEY_HANDLE_INVALID},
		{"unknown mechanism", true, func(t *testing.T, e *env) error { return e.m.SignInit(e.ro, Mechanism{Type: 0x7FFF}, privKey(t, e)) }, CKR_MECHANISM_INVALID},
		{"decrypt-only mechanism for signing", true, func(t *testing.T, e *env) error {
			return e.m.SignInit(e.ro, Mechanism{Type: CKM_RSA_PKCS_OAEP, OAEP: &OAEPParams{Hash: CKM_SHA256, MGF: CKG_MGF1_SHA256}}, privKey(t, e))
		}, CKR_MECHANISM_INVALID},
		{"PSS without parameters", true, func(t *testing.T, e *env) error {
			return e.m.SignInit(e.ro, Mechanism{Type: CKM_RSA_PKCS_PSS}, privKey(t, e))
		}, CKR_MECHANISM_PARAM_INVALID},
		{"PSS hash mismatch", true, func(t *testing.T, e *env) error {
			return e.m.SignInit(e.ro, Mechanism{Type: CKM_SHA256_RSA_PKCS_PSS, PSS: &PSSParams{Hash: CKM_SHA_1, MGF: CKG_MGF1_SHA1, SaltLen: 20}}, privKey(t, e))
		}, CKR_MECHANISM_PARAM_INVALID},
		{"PSS salt too long for the key", true, func(t *testing.T, e *env) error {
			return e.m.SignInit(e.ro, Mechanism{Type: CKM_SHA256_RSA_PKCS_PSS, PSS: &PSSParams{Hash: CKM_SHA256, MGF: CKG_MGF1_SHA256, SaltLen: 300}}, privKey(t, e))
		}, CKR_MECHANISM_PARAM_INVALID},
		{"PSS verification with another MGF1 hash: at init", false, func(t *testing.T, e *env) error {
			return e.m.VerifyInit(e.ro, Mechanism{Type: CKM_SHA256_RSA_PKCS_PSS, PSS: &PSSParams{Hash: CKM_SHA256, MGF: CKG_MGF1_SHA1, SaltLen: 32}}, pubKey(t, e))
		}, CKR_MECHANISM_PARAM_INVALID},
		{"OAEP encryption with another MGF1 hash: at init", false, func(t *testing.T, e *env) error {
			return e.m.EncryptInit(e.ro, Mechanism{Type: CKM_RSA_PKCS_OAEP, OAEP: &OAEPParams{Hash: CKM_SHA256, MGF: CKG_MGF1_SHA1}}, pubKey(t, e))
		}, CKR_MECHANISM_PARAM_INVALID},
		{"parameter for a mechanism that takes none", true, func(t *testing.T, e *env) error {
			return e.m.SignInit(e.ro, Mechanism{Type: CKM_SHA256_RSA_PKCS, Param: []byte{1, 2, 3, 4}}, privKey(t, e))
		}, CKR_MECHANISM_PARAM_INVALID},
		{"parameter for a digest", false, func(t *testing.T, e *env) error {
			return e.m.DigestInit(e.ro, Mechanism{Type: CKM_SHA256, Param: []byte{1}})
		}, CKR_MECHANISM_PARAM_INVALID},
		{"empty parameter for a mechanism that takes none", true, func(t *testing.T, e *env) error {
			return e.m.SignInit(e.ro, Mechanism{Type: CKM_SHA256_RSA_PKCS, Param: []byte{}}, privKey(t, e))
		}, CKR_OK},
		{"ECDH with an RSA key", true, func(t *testing.T, e *env) error {
			_, err := e.m.DeriveKey(e.ro, Mechanism{Type: CKM_ECDH1_DERIVE, ECDH: &ECDHParams{KDF: CKD_NULL, PublicData: p256Base()}}, privKey(t, e), nil)
			return err
		}, CKR_KEY_TYPE_INCONSISTENT},
		{"ECDH peer point off the curve", true, func(t *testing.T, e *env) error {
			pt := bytes.Repeat([]byte{1}, 65)
			pt[0] = 4
			_, err := e.m.DeriveKey(e.ro, Mechanism{Type: CKM_ECDH1_DERIVE, ECDH: &ECDHParams{KDF: CKD_NULL, PublicData: pt}}, find1(t, e.m, e.ro, CKO_PRIVATE_KEY, 3), nil)
			return err
		}, CKR_MECHANISM_PARAM_INVALID},
		{"ECDH peer point on the curve", true, func(t *testing.T, e *env) error {
			_, err := e.m.DeriveKey(e.ro, Mechanism{Type: CKM_ECDH1_DERIVE, ECDH: &ECDHParams{KDF: CKD_NULL, PublicData: p256Base()}}, find1(t, e.m, e.ro, CKO_PRIVATE_KEY, 3), nil)
			return err
		}, CKR_OK},
		// The card refusing inside an operation, held to the codes of the call that runs it.
		{"sign: another application deleted the key", true, func(t *testing.T, e *env) error {
			wantRV(t, e.m.SignInit(e.ro, Mechanism{Type: CKM_SHA256_RSA_PKCS}, privKey(t, e)), CKR_OK)
			e.card.keys = e.card.keys[1:]
			_, err := e.m.Sign(e.ro, []byte("x"), 256)
			return err
		}, CKR_OBJECT_HANDLE_INVALID},
		{"sign: the card refuses the PIN inside the operation", true, signRefused(&apdu.VerifyError{Retries: 2}), CKR_USER_NOT_LOGGED_IN},
		{"sign: the card refuses the key's algorithm", true, signRefused(cards.ErrMechanismUnsupported), CKR_FUNCTION_FAILED},
		{"sign: no touch (conditions of use)", true, signRefused(apdu.ErrConditions), CKR_FUNCTION_REJECTED},
		{"decrypt: the card refuses a ciphertext above the modulus", true, func(t *testing.T, e *env) error {
			wantRV(t, e.m.DecryptInit(e.ro, Mechanism{Type: CKM_RSA_X_509}, privKey(t, e)), CKR_OK)
			_, err := e.m.Decrypt(e.ro, bytes.Repeat([]byte{0xFF}, 256), 256)
			return err
		}, CKR_ENCRYPTED_DATA_INVALID},
		{"decrypt: the card refuses the length", true, func(t *testing.T, e *env) error {
			wantRV(t, e.m.DecryptInit(e.ro, Mechanism{Type: CKM_RSA_X_509}, privKey(t, e)), CKR_OK)
			e.card.refuse = map[string]error{"key": cards.ErrInputLength}
			_, err := e.m.Decrypt(e.ro, make([]byte, 256), 256)
			return err
		}, CKR_ENCRYPTED_DATA_LEN_RANGE},
		{"decrypt: another application deleted the key", true, func(t *testing.T, e *env) error {
			wantRV(t, e.m.DecryptInit(e.ro, Mechanism{Type: CKM_RSA_X_509}, privKey(t, e)), CKR_OK)
			e.card.keys = e.card.keys[1:]
			_, err := e.m.Decrypt(e.ro, make([]byte, 256), 256)
			return err
		}, CKR_OBJECT_HANDLE_INVALID},
		{"ECDH: the card refuses the peer's point", true, func(t *testing.T, e *env) error {
			e.card.refuse = map[string]error{"key": cards.ErrBadInput}
			_, err := e.m.DeriveKey(e.ro, Mechanism{Type: CKM_ECDH1_DERIVE, ECDH: &ECDHParams{KDF: CKD_NULL, PublicData: p256Base()}}, find1(t, e.m, e.ro, CKO_PRIVATE_KEY, 3), nil)
			return err
		}, CKR_MECHANISM_PARAM_INVALID},
		{"ECDH: the card refuses the PIN", true, func(t *testing.T, e *env) error {
			e.card.refuse = map[string]error{"key": cards.ErrPINBlocked}
			_, err := e.m.DeriveKey(e.ro, Mechanism{Type: CKM_ECDH1_DERIVE, ECDH: &ECDHParams{KDF: CKD_NULL, PublicData: p256Base()}}, find1(t, e.m, e.ro, CKO_PRIVATE_KEY, 3), nil)
			return err
		}, CKR_USER_NOT_LOGGED_IN},
		{"ECDH: another application deleted the key", true, func(t *testing.T, e *env) error {
			k := find1(t, e.m, e.ro, CKO_PRIVATE_KEY, 3)
			e.card.refuse = map[string]error{"key": cards.ErrKeyNotFound}
			_, err := e.m.DeriveKey(e.ro, Mechanism{Type: CKM_ECDH1_DERIVE, ECDH: &ECDHParams{KDF: CKD_NULL, PublicData: p256Base()}}, k, nil)
			return err
		}, CKR_KEY_HANDLE_INVALID},
		{"find: the card refuses a read (conditions of use)", false, refused("list", apdu.ErrConditions, func(e *env) error { return e.m.FindObjectsInit(e.ro, nil) }), CKR_DEVICE_ERROR},
		{"find: the card says a read is not supported", false, refused("list", cards.ErrNotSupported, func(e *env) error { return e.m.FindObjectsInit(e.ro, nil) }), CKR_DEVICE_ERROR},
		{"find: the driver answers a listing with object not found", false, refused("list", cards.ErrObjectNotFound, func(e *env) error { return e.m.FindObjectsInit(e.ro, nil) }), CKR_DEVICE_ERROR},
		{"login: the card refuses the VERIFY (conditions of use)", false, refused("login", apdu.ErrConditions, userLogin), CKR_DEVICE_ERROR},
		{"login: the card answers the VERIFY with security status not satisfied", false, refused("login", apdu.ErrSecurityStatus, userLogin), CKR_PIN_INCORRECT},
		{"init token: bad slot", false, func(t *testing.T, e *env) error { return e.m.InitToken(42) }, CKR_SLOT_ID_INVALID},
		{"init token: card removed", false, func(t *testing.T, e *env) error {
			e.src.remove()
			return e.m.InitToken(1)
		}, CKR_TOKEN_NOT_PRESENT},
		{"init token", false, func(t *testing.T, e *env) error { return e.m.InitToken(1) }, CKR_FUNCTION_NOT_SUPPORTED},
		{"size query then short buffer", true, func(t *testing.T, e *env) error {
			e.m.SignInit(e.ro, Mechanism{Type: CKM_SHA256_RSA_PKCS}, privKey(t, e))
			e.m.Sign(e.ro, []byte("x"), -1)
			_, err := e.m.Sign(e.ro, []byte("x"), 10)
			return err
		}, CKR_BUFFER_TOO_SMALL},
		{"digest key", false, func(t *testing.T, e *env) error {
			e.m.DigestInit(e.ro, Mechanism{Type: CKM_SHA_1})
			return e.m.DigestKey(e.ro, 1)
		}, CKR_KEY_INDIGESTIBLE},
		{"create token object in R/O session", true, func(t *testing.T, e *env) error {
			_, err := e.m.CreateObject(e.ro, []Attr{{CKA_CLASS, EncodeULong(CKO_CERTIFICATE)}, {CKA_TOKEN, []byte{1}}, {CKA_VALUE, []byte{1}}, {CKA_ID, []byte{1}}})
			return err
		}, CKR_SESSION_READ_ONLY},
		{"private session object while public", false, func(t *testing.T, e *env) error {
			_, err := e.m.CreateObject(e.ro, []Attr{{CKA_CLASS, EncodeULong(CKO_DATA)}, {CKA_PRIVATE, []byte{1}}})
			return err
		}, CKR_USER_NOT_LOGGED_IN},
		{"attribute twice", false, func(t *testing.T, e *env) error {
			_, err := e.m.CreateObject(e.ro, []Attr{{CKA_CLASS, EncodeULong(CKO_DATA)}, {CKA_CLASS, EncodeULong(CKO_DATA)}})
			return err
		}, CKR_TEMPLATE_INCONSISTENT},
		{"bool attribute of wrong size", false, func(t *testing.T, e *env) error {
			_, err := e.m.CreateObject(e.ro, []Attr{{CKA_CLASS, EncodeULong(CKO_DATA)}, {CKA_PRIVATE, []byte{1, 0}}})
			return err
		}, CKR_ATTRIBUTE_VALUE_INVALID},
		{"destroy token key not destroyable", true, func(t *testing.T, e *env) error { return e.m.DestroyObject(e.rw, privKey(t, e)) }, CKR_ACTION_PROHIBITED},
		{"copy token object", false, func(t *testing.T, e *env) error { _, err := e.m.CopyObject(e.ro, pubKey(t, e), nil); return err }, CKR_ACTION_PROHIBITED},
		{"wait without block", false, func(t *testing.T, e *env) error { _, err := e.m.WaitForSlotEvent(true); return err }, CKR_NO_EVENT},
		{"init PIN without SO", true, func(t *testing.T, e *env) error { return e.m.InitPIN(e.rw, []byte("123456")) }, CKR_USER_NOT_LOGGED_IN},
		{"session after removal", false, func(t *testing.T, e *env) error {
			e.src.remove()
			_, err := e.m.SessionInfo(e.ro)
			return err
		}, CKR_SESSION_HANDLE_INVALID},
	}
	for _, r := range rows {
		t.Run(r.name, func(t *testing.T) {
			src := newFakeSource()
			card := newFakeCard(t)
			src.insert(card)
			e := &env{m: newApp(t, src), src: src, card: card}
			e.ro, _ = e.m.OpenSession(1, CKF_SERIAL_SESSION)
			e.rw, _ = e.m.OpenSession(1, CKF_SERIAL_SESSION|CKF_RW_SESSION)
			if r.login {
				login(t, e.m, e.ro)
			}
			wantRV(t, r.run(t, e), r.want)
		})
	}
}

func rvOfAttr(v AttrValue) error {
	if v.RV == CKR_OK {
		return nil
	}
	return errRV(v.RV, "attribute")
}

// p256Base is the P-256 base point, uncompressed: a valid ECDH peer value.
func p256Base() []byte {
	c := elliptic.P256().Params()
	return append(append([]byte{4}, c.Gx.FillBytes(make([]byte, 32))...), c.Gy.FillBytes(make([]byte, 32))...)
}

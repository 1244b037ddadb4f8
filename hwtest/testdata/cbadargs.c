// cbadargs.c: the bad-argument table of TestModuleCBadArguments. Loaded against the built
// module and modCard's virtual PIV card (CKA_ID 01 RSA-2048 9A, 02 P-256 PIN-always 9C,
// 03 RSA-2048 9D, 04 P-256 9E, 05 P-256 82; 19 is the attestation key F9, public half only).
//
// Every row is one call and the return values PKCS #11 2.40 allows for it (§ numbers are
// of the base specification, pkcs11-base-v2.40): §5.1 (return values: 5.1.2 for session
// handles, 5.1.3 for tokens, 5.1.6 all others), §5.2 (output in a variable-length buffer),
// the per-function lists of §5.4–5.15 (5.5 slots and tokens, 5.6 sessions, 5.7 objects,
// 5.8 encrypt, 5.9 decrypt, 5.10 digest, 5.11 sign, 5.12 verify, 5.14 keys, 5.15 random),
// and the mechanisms of pkcs11-curr-v2.40 (§2.1 RSA: PSS and OAEP parameters; §2.3
// elliptic curves: ECDSA, ECDH1 derive). Where the
// specification leaves a choice, a row accepts each code it allows, and says so.
//
// The PIN is never locked: one wrong user PIN is sent, followed by a correct login.
// No key is generated: key generation rows fail on their arguments or the session state.
//
// Output: one "PASS name: CKR_…" or "FAIL name: got … want …" line per row, then
// "ROWS n" and "ALL PASS" or "FAILURES n".
#include <dlfcn.h>
#include <stdio.h>
#include <string.h>
#include "pkcs11.h"

static CK_FUNCTION_LIST *f;
static CK_FUNCTION_LIST_3_0 *f3;
#include "p11find.h"
static int rows, failures;

static const struct { CK_RV rv; const char *name; } rvNames[] = {
#define N(x) {x, #x},
	N(CKR_OK) N(CKR_HOST_MEMORY) N(CKR_SLOT_ID_INVALID) N(CKR_GENERAL_ERROR) N(CKR_FUNCTION_FAILED)
	N(CKR_ARGUMENTS_BAD) N(CKR_ATTRIBUTE_READ_ONLY) N(CKR_ATTRIBUTE_SENSITIVE) N(CKR_ATTRIBUTE_TYPE_INVALID)
	N(CKR_ATTRIBUTE_VALUE_INVALID) N(CKR_ACTION_PROHIBITED) N(CKR_DATA_INVALID) N(CKR_DATA_LEN_RANGE)
	N(CKR_DEVICE_ERROR) N(CKR_DEVICE_REMOVED) N(CKR_ENCRYPTED_DATA_INVALID) N(CKR_ENCRYPTED_DATA_LEN_RANGE)
	N(CKR_FUNCTION_NOT_PARALLEL) N(CKR_FUNCTION_NOT_SUPPORTED) N(CKR_KEY_HANDLE_INVALID)
	N(CKR_KEY_TYPE_INCONSISTENT) N(CKR_KEY_FUNCTION_NOT_PERMITTED) N(CKR_MECHANISM_INVALID)
	N(CKR_MECHANISM_PARAM_INVALID) N(CKR_OBJECT_HANDLE_INVALID) N(CKR_OPERATION_ACTIVE)
	N(CKR_OPERATION_NOT_INITIALIZED) N(CKR_PIN_INCORRECT) N(CKR_PIN_LEN_RANGE) N(CKR_PIN_LOCKED)
	N(CKR_SESSION_HANDLE_INVALID) N(CKR_SESSION_PARALLEL_NOT_SUPPORTED) N(CKR_SESSION_READ_ONLY)
	N(CKR_SESSION_READ_ONLY_EXISTS) N(CKR_SESSION_READ_WRITE_SO_EXISTS) N(CKR_SIGNATURE_INVALID)
	N(CKR_SIGNATURE_LEN_RANGE) N(CKR_TEMPLATE_INCOMPLETE) N(CKR_TEMPLATE_INCONSISTENT)
	N(CKR_TOKEN_NOT_PRESENT) N(CKR_USER_ALREADY_LOGGED_IN) N(CKR_USER_NOT_LOGGED_IN)
	N(CKR_USER_TYPE_INVALID) N(CKR_USER_ANOTHER_ALREADY_LOGGED_IN) N(CKR_BUFFER_TOO_SMALL)
	N(CKR_RANDOM_SEED_NOT_SUPPORTED) N(CKR_CRYPTOKI_NOT_INITIALIZED) N(CKR_CRYPTOKI_ALREADY_INITIALIZED)
	N(CKR_NO_EVENT) N(CKR_KEY_INDIGESTIBLE)
#undef N
};

static const char *rvName(CK_RV rv) {
	static char buf[4][24];
	static int next;
	for (size_t i = 0; i < sizeof rvNames / sizeof rvNames[0]; i++)
		if (rvNames[i].rv == rv)
			return rvNames[i].name;
	char *b = buf[next++ % 4];
	snprintf(b, sizeof buf[0], "CKR_0x%lX", rv);
	return b;
}

static CK_SESSION_HANDLE ro, rw; // the table's sessions

// row checks one return value against the set the specification allows. A call that
// wrongly succeeded may have started an operation: it is cancelled, so that one wrong
// row does not turn the following ones into CKR_OPERATION_ACTIVE.
static void row(const char *name, CK_RV got, const CK_RV *want, int n) {
	rows++;
	for (int i = 0; i < n; i++) {
		if (got == want[i]) {
			printf("PASS %s: %s\n", name, rvName(got));
			return;
		}
	}
	failures++;
	printf("FAIL %s: got %s want %s", name, rvName(got), rvName(want[0]));
	for (int i = 1; i < n; i++)
		printf(" or %s", rvName(want[i]));
	printf("\n");
	if (got == CKR_OK && f3 != NULL) {
		CK_FLAGS all = CKF_ENCRYPT | CKF_DECRYPT | CKF_DIGEST | CKF_SIGN | CKF_SIGN_RECOVER | CKF_VERIFY | CKF_VERIFY_RECOVER | CKF_FIND_OBJECTS;
		f3->C_SessionCancel(ro, all);
		f3->C_SessionCancel(rw, all);
	}
}

#define EXPECT(name, call, ...) do { const CK_RV w_[] = {__VA_ARGS__}; row((name), (call), w_, (int)(sizeof w_ / sizeof w_[0])); } while (0)

// EQUAL checks a value a call set (a length, a count, a flag).
#define EQUAL(name, got, want) do { unsigned long g_ = (unsigned long)(got), e_ = (unsigned long)(want); rows++; \
	if (g_ != e_) { failures++; printf("FAIL %s: got %lu want %lu\n", (name), g_, e_); } else printf("PASS %s: %lu\n", (name), g_); } while (0)

static CK_SLOT_ID slot;
static CK_BYTE data[] = "abc";
static CK_BYTE sha256abc[32] = {0xba, 0x78, 0x16, 0xbf, 0x8f, 0x01, 0xcf, 0xea, 0x41, 0x41, 0x40, 0xde, 0x5d, 0xae, 0x22, 0x23,
	0xb0, 0x03, 0x61, 0xa3, 0x96, 0x17, 0x7a, 0x9c, 0xb4, 0x10, 0xff, 0x61, 0xf2, 0x00, 0x15, 0xad};
// The P-256 base point, uncompressed: a valid peer public value for ECDH.
static CK_BYTE p256G[65] = {0x04,
	0x6b, 0x17, 0xd1, 0xf2, 0xe1, 0x2c, 0x42, 0x47, 0xf8, 0xbc, 0xe6, 0xe5, 0x63, 0xa4, 0x40, 0xf2,
	0x77, 0x03, 0x7d, 0x81, 0x2d, 0xeb, 0x33, 0xa0, 0xf4, 0xa1, 0x39, 0x45, 0xd8, 0x98, 0xc2, 0x96,
	0x4f, 0xe3, 0x42, 0xe2, 0xfe, 0x1a, 0x7f, 0x9b, 0x8e, 0xe7, 0xeb, 0x4a, 0x7c, 0x0f, 0x9e, 0x16,
	0x2b, 0xce, 0x33, 0x57, 0x6b, 0x31, 0x5e, 0xce, 0xcb, 0xb6, 0x40, 0x68, 0x37, 0xbf, 0x51, 0xf5};
static CK_BYTE p256OID[] = {0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07};
static CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
#define PIN ((CK_UTF8CHAR_PTR) "123456")
#define MGMT ((CK_UTF8CHAR_PTR) "010203040506070801020304050607080102030405060708")

static CK_BBOOL boolAttr(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE o, CK_ATTRIBUTE_TYPE t) {
	CK_BBOOL v = 0xFF;
	CK_ATTRIBUTE a = {t, &v, sizeof v};
	f->C_GetAttributeValue(s, o, &a, 1);
	return v;
}

// Every function taking a session handle, with arguments that are otherwise valid: a bad
// handle must give CKR_SESSION_HANDLE_INVALID (§5.1.2) from each.
static CK_MECHANISM mSHA256 = {CKM_SHA256, NULL, 0}, mECDSA = {CKM_ECDSA, NULL, 0}, mRSA = {CKM_RSA_PKCS, NULL, 0};
static CK_MECHANISM mECGen = {CKM_EC_KEY_PAIR_GEN, NULL, 0};
static CK_ECDH1_DERIVE_PARAMS ecdh = {CKD_NULL, 0, NULL, sizeof p256G, p256G};
static CK_MECHANISM mECDH = {CKM_ECDH1_DERIVE, &ecdh, sizeof ecdh};
static CK_BYTE buf[512];
static CK_ULONG bufLen;
static CK_OBJECT_HANDLE anyObject = 1, outH, outH2;
static CK_OBJECT_CLASS dataClass = CKO_DATA;
static CK_ATTRIBUTE dataTmpl[] = {{CKA_CLASS, &dataClass, sizeof dataClass}};
static CK_SESSION_INFO si;
static CK_ULONG ul;

#define SESSION_FUNCS(X) \
	X(C_CloseSession, f->C_CloseSession(h)) \
	X(C_GetSessionInfo, f->C_GetSessionInfo(h, &si)) \
	X(C_GetOperationState, f->C_GetOperationState(h, NULL, &ul)) \
	X(C_SetOperationState, f->C_SetOperationState(h, buf, 16, 0, 0)) \
	X(C_Login, f->C_Login(h, CKU_USER, PIN, 6)) \
	X(C_Logout, f->C_Logout(h)) \
	X(C_InitPIN, f->C_InitPIN(h, PIN, 6)) \
	X(C_SetPIN, f->C_SetPIN(h, PIN, 6, PIN, 6)) \
	X(C_CreateObject, f->C_CreateObject(h, dataTmpl, 1, &outH)) \
	X(C_CopyObject, f->C_CopyObject(h, anyObject, NULL, 0, &outH)) \
	X(C_DestroyObject, f->C_DestroyObject(h, anyObject)) \
	X(C_GetObjectSize, f->C_GetObjectSize(h, anyObject, &ul)) \
	X(C_GetAttributeValue, f->C_GetAttributeValue(h, anyObject, dataTmpl, 1)) \
	X(C_SetAttributeValue, f->C_SetAttributeValue(h, anyObject, dataTmpl, 1)) \
	X(C_FindObjectsInit, f->C_FindObjectsInit(h, NULL, 0)) \
	X(C_FindObjects, f->C_FindObjects(h, &outH, 1, &ul)) \
	X(C_FindObjectsFinal, f->C_FindObjectsFinal(h)) \
	X(C_EncryptInit, f->C_EncryptInit(h, &mRSA, anyObject)) \
	X(C_Encrypt, (bufLen = sizeof buf, f->C_Encrypt(h, data, 3, buf, &bufLen))) \
	X(C_EncryptUpdate, (bufLen = sizeof buf, f->C_EncryptUpdate(h, data, 3, buf, &bufLen))) \
	X(C_EncryptFinal, (bufLen = sizeof buf, f->C_EncryptFinal(h, buf, &bufLen))) \
	X(C_DecryptInit, f->C_DecryptInit(h, &mRSA, anyObject)) \
	X(C_Decrypt, (bufLen = sizeof buf, f->C_Decrypt(h, buf, 256, buf, &bufLen))) \
	X(C_DecryptUpdate, (bufLen = sizeof buf, f->C_DecryptUpdate(h, buf, 256, buf, &bufLen))) \
	X(C_DecryptFinal, (bufLen = sizeof buf, f->C_DecryptFinal(h, buf, &bufLen))) \
	X(C_DigestInit, f->C_DigestInit(h, &mSHA256)) \
	X(C_Digest, (bufLen = sizeof buf, f->C_Digest(h, data, 3, buf, &bufLen))) \
	X(C_DigestUpdate, f->C_DigestUpdate(h, data, 3)) \
	X(C_DigestKey, f->C_DigestKey(h, anyObject)) \
	X(C_DigestFinal, (bufLen = sizeof buf, f->C_DigestFinal(h, buf, &bufLen))) \
	X(C_SignInit, f->C_SignInit(h, &mECDSA, anyObject)) \
	X(C_Sign, (bufLen = sizeof buf, f->C_Sign(h, data, 3, buf, &bufLen))) \
	X(C_SignUpdate, f->C_SignUpdate(h, data, 3)) \
	X(C_SignFinal, (bufLen = sizeof buf, f->C_SignFinal(h, buf, &bufLen))) \
	X(C_SignRecoverInit, f->C_SignRecoverInit(h, &mRSA, anyObject)) \
	X(C_SignRecover, (bufLen = sizeof buf, f->C_SignRecover(h, data, 3, buf, &bufLen))) \
	X(C_VerifyInit, f->C_VerifyInit(h, &mECDSA, anyObject)) \
	X(C_Verify, f->C_Verify(h, data, 3, buf, 64)) \
	X(C_VerifyUpdate, f->C_VerifyUpdate(h, data, 3)) \
	X(C_VerifyFinal, f->C_VerifyFinal(h, buf, 64)) \
	X(C_VerifyRecoverInit, f->C_VerifyRecoverInit(h, &mRSA, anyObject)) \
	X(C_VerifyRecover, (bufLen = sizeof buf, f->C_VerifyRecover(h, buf, 256, buf, &bufLen))) \
	X(C_DigestEncryptUpdate, (bufLen = sizeof buf, f->C_DigestEncryptUpdate(h, data, 3, buf, &bufLen))) \
	X(C_DecryptDigestUpdate, (bufLen = sizeof buf, f->C_DecryptDigestUpdate(h, data, 3, buf, &bufLen))) \
	X(C_SignEncryptUpdate, (bufLen = sizeof buf, f->C_SignEncryptUpdate(h, data, 3, buf, &bufLen))) \
	X(C_DecryptVerifyUpdate, (bufLen = sizeof buf, f->C_DecryptVerifyUpdate(h, data, 3, buf, &bufLen))) \
	X(C_GenerateKey, f->C_GenerateKey(h, &mECGen, NULL, 0, &outH)) \
	X(C_GenerateKeyPair, f->C_GenerateKeyPair(h, &mECGen, NULL, 0, NULL, 0, &outH, &outH2)) \
	X(C_WrapKey, (bufLen = sizeof buf, f->C_WrapKey(h, &mRSA, anyObject, anyObject, buf, &bufLen))) \
	X(C_UnwrapKey, f->C_UnwrapKey(h, &mRSA, anyObject, buf, 16, NULL, 0, &outH)) \
	X(C_DeriveKey, f->C_DeriveKey(h, &mECDH, anyObject, NULL, 0, &outH)) \
	X(C_SeedRandom, f->C_SeedRandom(h, buf, 16)) \
	X(C_GenerateRandom, f->C_GenerateRandom(h, buf, 16)) \
	X(C_GetFunctionStatus, f->C_GetFunctionStatus(h)) \
	X(C_CancelFunction, f->C_CancelFunction(h)) \
	X(C_LoginUser, f3->C_LoginUser(h, CKU_USER, PIN, 6, NULL, 0)) \
	X(C_SessionCancel, f3->C_SessionCancel(h, CKF_SIGN))

#define DEF(fn, call) static CK_RV sf_##fn(CK_SESSION_HANDLE h) { return call; }
SESSION_FUNCS(DEF)
#undef DEF
#define ENTRY(fn, call) {#fn, sf_##fn},
static const struct { const char *name; CK_RV (*call)(CK_SESSION_HANDLE); } sessionFuncs[] = {SESSION_FUNCS(ENTRY)};
#undef ENTRY

int main(int argc, char **argv) {
	char name[160];
	void *lib = dlopen(argv[1], RTLD_NOW);
	if (!lib) { printf("FAIL dlopen: %s\n", dlerror()); return 1; }
	CK_RV (*gfl)(CK_FUNCTION_LIST_PTR_PTR) = dlsym(lib, "C_GetFunctionList");
	CK_RV (*gi)(CK_UTF8CHAR_PTR, CK_VERSION_PTR, CK_INTERFACE_PTR_PTR, CK_FLAGS) = dlsym(lib, "C_GetInterface");
	CK_INTERFACE_PTR ip;
	CK_VERSION v30 = {3, 0};
	if (gfl(&f) != CKR_OK || gi((CK_UTF8CHAR_PTR) "PKCS 11", &v30, &ip, 0) != CKR_OK) { printf("FAIL function lists\n"); return 1; }
	f3 = ip->pFunctionList;
	EXPECT("C_Initialize", f->C_Initialize(NULL), CKR_OK);

	CK_SLOT_ID slots[16], all[16];
	CK_ULONG ns = 16, na = 16;
	EXPECT("C_GetSlotList present", f->C_GetSlotList(CK_TRUE, slots, &ns), CKR_OK);
	EXPECT("C_GetSlotList all", f->C_GetSlotList(CK_FALSE, all, &na), CKR_OK);
	if (ns != 1 || na < 2) { printf("FAIL want one token and an empty reader: %lu tokens, %lu slots\n", ns, na); return 1; }
	slot = slots[0];
	CK_SLOT_ID empty = all[0] == slot ? all[1] : all[0];
	CK_SESSION_HANDLE closed;
	EXPECT("open R/O session", f->C_OpenSession(slot, CKF_SERIAL_SESSION, NULL, NULL, &ro), CKR_OK);
	EXPECT("open R/W session", f->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &rw), CKR_OK);
	EXPECT("open session to close", f->C_OpenSession(slot, CKF_SERIAL_SESSION, NULL, NULL, &closed), CKR_OK);
	EXPECT("close it", f->C_CloseSession(closed), CKR_OK);
	CK_OBJECT_HANDLE pub01 = findObject(ro, CKO_PUBLIC_KEY, 1), pub03 = findObject(ro, CKO_PUBLIC_KEY, 3), pub04 = findObject(ro, CKO_PUBLIC_KEY, 4);
	CK_OBJECT_HANDLE cert01 = findObject(ro, CKO_CERTIFICATE, 1), attestPub = findObject(ro, CKO_PUBLIC_KEY, 0x19);
	if (!pub01 || !pub03 || !pub04 || !cert01) { printf("FAIL public objects not found\n"); return 1; }
	anyObject = pub01;

	// --- NULL pointers: CKR_ARGUMENTS_BAD (§5.1.6 "All other Cryptoki function return values",
	// CKR_ARGUMENTS_BAD: "a pointer argument is NULL_PTR where a value is needed").
	CK_SLOT_INFO slotInfo;
	CK_MECHANISM_TYPE mechs[64];
	CK_ULONG n = 0;
	EXPECT("C_GetInfo(NULL)", f->C_GetInfo(NULL), CKR_ARGUMENTS_BAD);
	EXPECT("C_GetSlotList(NULL list, NULL count)", f->C_GetSlotList(CK_TRUE, NULL, NULL), CKR_ARGUMENTS_BAD);
	EXPECT("C_GetSlotList(list, NULL count)", f->C_GetSlotList(CK_TRUE, slots, NULL), CKR_ARGUMENTS_BAD);
	EXPECT("C_GetSlotInfo(NULL)", f->C_GetSlotInfo(slot, NULL), CKR_ARGUMENTS_BAD);
	EXPECT("C_GetTokenInfo(NULL)", f->C_GetTokenInfo(slot, NULL), CKR_ARGUMENTS_BAD);
	EXPECT("C_GetMechanismList(NULL list, NULL count)", f->C_GetMechanismList(slot, NULL, NULL), CKR_ARGUMENTS_BAD);
	EXPECT("C_GetMechanismList(list, NULL count)", f->C_GetMechanismList(slot, mechs, NULL), CKR_ARGUMENTS_BAD);
	EXPECT("C_GetMechanismInfo(NULL)", f->C_GetMechanismInfo(slot, CKM_ECDSA, NULL), CKR_ARGUMENTS_BAD);
	EXPECT("C_OpenSession(phSession NULL)", f->C_OpenSession(slot, CKF_SERIAL_SESSION, NULL, NULL, NULL), CKR_ARGUMENTS_BAD);
	EXPECT("C_GetSessionInfo(NULL)", f->C_GetSessionInfo(ro, NULL), CKR_ARGUMENTS_BAD);
	EXPECT("C_Login(NULL PIN, 6) without a PIN pad", f->C_Login(ro, CKU_USER, NULL, 6), CKR_ARGUMENTS_BAD);
	EXPECT("C_FindObjectsInit(NULL template, 2)", f->C_FindObjectsInit(ro, NULL, 2), CKR_ARGUMENTS_BAD);
	EXPECT("C_FindObjectsInit(NULL template, 0)", f->C_FindObjectsInit(ro, NULL, 0), CKR_OK);
	EXPECT("C_FindObjects(phObject NULL, 1)", f->C_FindObjects(ro, NULL, 1, &n), CKR_ARGUMENTS_BAD);
	EXPECT("C_FindObjects(pulObjectCount NULL)", f->C_FindObjects(ro, &outH, 1, NULL), CKR_ARGUMENTS_BAD);
	EXPECT("C_FindObjectsFinal after bad arguments", f->C_FindObjectsFinal(ro), CKR_OK);
	EXPECT("C_GetAttributeValue(NULL template, 1)", f->C_GetAttributeValue(ro, pub01, NULL, 1), CKR_ARGUMENTS_BAD);
	EXPECT("C_SetAttributeValue(NULL template, 1)", f->C_SetAttributeValue(rw, pub01, NULL, 1), CKR_ARGUMENTS_BAD);
	EXPECT("C_GetObjectSize(NULL)", f->C_GetObjectSize(ro, pub01, NULL), CKR_ARGUMENTS_BAD);
	EXPECT("C_CreateObject(NULL template, 1)", f->C_CreateObject(ro, NULL, 1, &outH), CKR_ARGUMENTS_BAD);
	EXPECT("C_CreateObject(phObject NULL)", f->C_CreateObject(ro, dataTmpl, 1, NULL), CKR_ARGUMENTS_BAD);
	EXPECT("C_CopyObject(phNewObject NULL)", f->C_CopyObject(ro, pub01, NULL, 0, NULL), CKR_ARGUMENTS_BAD);
	EXPECT("C_GenerateRandom(NULL, 16)", f->C_GenerateRandom(ro, NULL, 16), CKR_ARGUMENTS_BAD);
	EXPECT("C_SeedRandom(NULL, 16)", f->C_SeedRandom(ro, NULL, 16), CKR_ARGUMENTS_BAD);
	EXPECT("C_WaitForSlotEvent(pSlot NULL)", f->C_WaitForSlotEvent(CKF_DONT_BLOCK, NULL, NULL), CKR_ARGUMENTS_BAD);
	EXPECT("C_WaitForSlotEvent(pReserved set)", f->C_WaitForSlotEvent(CKF_DONT_BLOCK, &slot, buf), CKR_ARGUMENTS_BAD);
	{
		CK_ATTRIBUTE pubT[] = {{CKA_EC_PARAMS, p256OID, sizeof p256OID}, {CKA_TOKEN, &yes, 1}};
		// Before login, so that no key could be generated even if the NULL slipped through.
		EXPECT("C_GenerateKeyPair(phPublicKey NULL)", f->C_GenerateKeyPair(rw, &mECGen, pubT, 2, NULL, 0, NULL, &outH2), CKR_ARGUMENTS_BAD);
		EXPECT("C_GenerateKeyPair(phPrivateKey NULL)", f->C_GenerateKeyPair(rw, &mECGen, pubT, 2, NULL, 0, &outH, NULL), CKR_ARGUMENTS_BAD);
		EXPECT("C_GenerateKeyPair(NULL template, 2)", f->C_GenerateKeyPair(rw, &mECGen, NULL, 2, NULL, 0, &outH, &outH2), CKR_ARGUMENTS_BAD);
		EXPECT("C_GenerateKeyPair(pMechanism NULL)", f->C_GenerateKeyPair(rw, NULL, pubT, 2, NULL, 0, &outH, &outH2), CKR_ARGUMENTS_BAD);
	}
	EXPECT("C_DeriveKey(phKey NULL)", f->C_DeriveKey(ro, &mECDH, pub04, NULL, 0, NULL), CKR_ARGUMENTS_BAD);
	EXPECT("C_DeriveKey(pMechanism NULL)", f->C_DeriveKey(ro, NULL, pub04, NULL, 0, &outH), CKR_ARGUMENTS_BAD);
	EXPECT("C_SignInit(pMechanism NULL)", f->C_SignInit(ro, NULL, pub01), CKR_ARGUMENTS_BAD);
	EXPECT("C_VerifyInit(pMechanism NULL)", f->C_VerifyInit(ro, NULL, pub01), CKR_ARGUMENTS_BAD);
	EXPECT("C_EncryptInit(pMechanism NULL)", f->C_EncryptInit(ro, NULL, pub01), CKR_ARGUMENTS_BAD);
	EXPECT("C_DecryptInit(pMechanism NULL)", f->C_DecryptInit(ro, NULL, pub01), CKR_ARGUMENTS_BAD);
	EXPECT("C_DigestInit(pMechanism NULL)", f->C_DigestInit(ro, NULL), CKR_ARGUMENTS_BAD);
	EXPECT("C_SignRecoverInit(pMechanism NULL)", f->C_SignRecoverInit(ro, NULL, pub01), CKR_ARGUMENTS_BAD);
	EXPECT("C_VerifyRecoverInit(pMechanism NULL)", f->C_VerifyRecoverInit(ro, NULL, pub01), CKR_ARGUMENTS_BAD);
	{
		// pParameter NULL with a length: a NULL pointer where a value is needed, or invalid
		// parameters (§5.1.6 CKR_MECHANISM_PARAM_INVALID): either.
		CK_MECHANISM m = {CKM_ECDSA, NULL, 8};
		EXPECT("C_VerifyInit(pParameter NULL, ulParameterLen 8)", f->C_VerifyInit(ro, &m, pub04), CKR_ARGUMENTS_BAD, CKR_MECHANISM_PARAM_INVALID);
	}
	EXPECT("C_DigestInit SHA256", f->C_DigestInit(ro, &mSHA256), CKR_OK);
	EXPECT("C_Digest(pulDigestLen NULL)", f->C_Digest(ro, data, 3, buf, NULL), CKR_ARGUMENTS_BAD);
	EXPECT("C_Digest(NULL data, 3)", f->C_Digest(ro, NULL, 3, buf, &bufLen), CKR_ARGUMENTS_BAD);
	EXPECT("C_DigestFinal(pulDigestLen NULL)", f->C_DigestFinal(ro, buf, NULL), CKR_ARGUMENTS_BAD);
	bufLen = sizeof buf;
	EXPECT("C_Digest after the bad calls", f->C_Digest(ro, data, 3, buf, &bufLen), CKR_OK);
	EXPECT("C_VerifyInit ECDSA", f->C_VerifyInit(ro, &mECDSA, pub04), CKR_OK);
	EXPECT("C_Verify(NULL signature, 64)", f->C_Verify(ro, data, 3, NULL, 64), CKR_ARGUMENTS_BAD);
	memset(buf, 0x11, 64);
	EXPECT("C_Verify of a bad signature", f->C_Verify(ro, sha256abc, 32, buf, 64), CKR_SIGNATURE_INVALID);
	EXPECT("C_Verify after the failed verification", f->C_Verify(ro, sha256abc, 32, buf, 64), CKR_OPERATION_NOT_INITIALIZED);
	EXPECT("C_EncryptInit RSA", f->C_EncryptInit(ro, &mRSA, pub03), CKR_OK);
	EXPECT("C_Encrypt(pulEncryptedDataLen NULL)", f->C_Encrypt(ro, data, 3, buf, NULL), CKR_ARGUMENTS_BAD);
	CK_BYTE ct[256];
	CK_ULONG ctLen = 10;
	EXPECT("C_Encrypt short buffer", f->C_Encrypt(ro, data, 3, ct, &ctLen), CKR_BUFFER_TOO_SMALL);
	EQUAL("C_Encrypt short buffer: length set", ctLen, 256);
	EXPECT("C_Encrypt after the short buffer", f->C_Encrypt(ro, data, 3, ct, &ctLen), CKR_OK);

	// --- Invalid handles. Sessions: CKR_SESSION_HANDLE_INVALID (§5.1.2) from every function
	// taking one, for 0 (CK_INVALID_HANDLE), a large unknown value and a closed session.
	// The message-based 3.0 functions answer CKR_FUNCTION_NOT_SUPPORTED without a look at
	// their arguments (doc.go), so they are not listed.
	CK_SESSION_HANDLE badSessions[] = {0, 0x7FFFF123UL, closed};
	const char *badNames[] = {"0", "0x7FFFF123", "closed"};
	for (int b = 0; b < 3; b++) {
		for (size_t i = 0; i < sizeof sessionFuncs / sizeof sessionFuncs[0]; i++) {
			snprintf(name, sizeof name, "%s(session %s)", sessionFuncs[i].name, badNames[b]);
			EXPECT(name, sessionFuncs[i].call(badSessions[b]), CKR_SESSION_HANDLE_INVALID);
		}
	}
	// Slots: CKR_SLOT_ID_INVALID for an unknown slot (§5.1.6), CKR_TOKEN_NOT_PRESENT for
	// an empty reader's slot (§5.1.3; §5.5 C_GetTokenInfo, C_GetMechanismList, C_InitToken;
	// §5.6 C_OpenSession).
	CK_TOKEN_INFO ti;
	CK_MECHANISM_INFO mi;
	CK_SESSION_HANDLE sx;
	n = 64;
	EXPECT("C_GetSlotInfo(slot 9999)", f->C_GetSlotInfo(9999, &slotInfo), CKR_SLOT_ID_INVALID);
	EXPECT("C_GetTokenInfo(slot 9999)", f->C_GetTokenInfo(9999, &ti), CKR_SLOT_ID_INVALID);
	EXPECT("C_GetMechanismList(slot 9999)", f->C_GetMechanismList(9999, mechs, &n), CKR_SLOT_ID_INVALID);
	EXPECT("C_GetMechanismInfo(slot 9999)", f->C_GetMechanismInfo(9999, CKM_ECDSA, &mi), CKR_SLOT_ID_INVALID);
	EXPECT("C_InitToken(slot 9999)", f->C_InitToken(9999, MGMT, 48, (CK_UTF8CHAR_PTR) "label                           "), CKR_SLOT_ID_INVALID);
	EXPECT("C_OpenSession(slot 9999)", f->C_OpenSession(9999, CKF_SERIAL_SESSION, NULL, NULL, &sx), CKR_SLOT_ID_INVALID);
	EXPECT("C_CloseAllSessions(slot 9999)", f->C_CloseAllSessions(9999), CKR_SLOT_ID_INVALID);
	EXPECT("C_GetSlotInfo(empty reader)", f->C_GetSlotInfo(empty, &slotInfo), CKR_OK);
	EQUAL("empty reader: CKF_TOKEN_PRESENT clear", slotInfo.flags & CKF_TOKEN_PRESENT, 0);
	n = 64;
	EXPECT("C_GetTokenInfo(empty reader)", f->C_GetTokenInfo(empty, &ti), CKR_TOKEN_NOT_PRESENT);
	EXPECT("C_GetMechanismList(empty reader)", f->C_GetMechanismList(empty, mechs, &n), CKR_TOKEN_NOT_PRESENT);
	EXPECT("C_OpenSession(empty reader)", f->C_OpenSession(empty, CKF_SERIAL_SESSION, NULL, NULL, &sx), CKR_TOKEN_NOT_PRESENT);
	EXPECT("C_InitToken(empty reader)", f->C_InitToken(empty, MGMT, 48, (CK_UTF8CHAR_PTR) "label                           "), CKR_TOKEN_NOT_PRESENT);
	// §5.6 C_OpenSession: CKF_SERIAL_SESSION must be set.
	EXPECT("C_OpenSession without CKF_SERIAL_SESSION", f->C_OpenSession(slot, 0, NULL, NULL, &sx), CKR_SESSION_PARALLEL_NOT_SUPPORTED);
	// Objects: CKR_OBJECT_HANDLE_INVALID (§5.7) for 0 and an unknown handle.
	CK_OBJECT_HANDLE badObjects[] = {0, 0x7FFFF321UL};
	const char *badObjNames[] = {"0", "0x7FFFF321"};
	for (int b = 0; b < 2; b++) {
		CK_OBJECT_HANDLE o = badObjects[b];
		CK_ATTRIBUTE a = {CKA_CLASS, buf, 8};
		snprintf(name, sizeof name, "C_GetAttributeValue(object %s)", badObjNames[b]);
		EXPECT(name, f->C_GetAttributeValue(ro, o, &a, 1), CKR_OBJECT_HANDLE_INVALID);
		snprintf(name, sizeof name, "C_SetAttributeValue(object %s)", badObjNames[b]);
		EXPECT(name, f->C_SetAttributeValue(rw, o, &a, 1), CKR_OBJECT_HANDLE_INVALID);
		snprintf(name, sizeof name, "C_GetObjectSize(object %s)", badObjNames[b]);
		EXPECT(name, f->C_GetObjectSize(ro, o, &ul), CKR_OBJECT_HANDLE_INVALID);
		snprintf(name, sizeof name, "C_DestroyObject(object %s)", badObjNames[b]);
		EXPECT(name, f->C_DestroyObject(rw, o), CKR_OBJECT_HANDLE_INVALID);
		snprintf(name, sizeof name, "C_CopyObject(object %s)", badObjNames[b]);
		EXPECT(name, f->C_CopyObject(rw, o, NULL, 0, &outH), CKR_OBJECT_HANDLE_INVALID);
	}

	// --- Login state: before login.
	// §5.6 C_Logout: not logged in.
	EXPECT("C_Logout when not logged in", f->C_Logout(ro), CKR_USER_NOT_LOGGED_IN);
	// §5.6 C_Login: an SO cannot log in while a R/O session exists (checked before any PIN
	// reaches the card).
	EXPECT("C_Login(CKU_SO) while a R/O session exists", f->C_Login(rw, CKU_SO, MGMT, 48), CKR_SESSION_READ_ONLY_EXISTS);
	EXPECT("C_Login(user type 7)", f->C_Login(ro, 7, PIN, 6), CKR_USER_TYPE_INVALID);
	// §5.5 C_InitPIN is for the SO only.
	EXPECT("C_InitPIN not logged in", f->C_InitPIN(rw, PIN, 6), CKR_USER_NOT_LOGGED_IN);
	// One wrong PIN (the correct login right after resets the counter).
	EXPECT("C_Login wrong PIN (once)", f->C_Login(ro, CKU_USER, (CK_UTF8CHAR_PTR) "000000", 6), CKR_PIN_INCORRECT);
	EXPECT("C_Login", f->C_Login(ro, CKU_USER, PIN, 6), CKR_OK);
	EXPECT("C_Login twice", f->C_Login(rw, CKU_USER, PIN, 6), CKR_USER_ALREADY_LOGGED_IN);
	// Both "another user" and the R/O session rule apply: either code (§5.6 C_Login).
	EXPECT("C_Login(CKU_SO) while the user is logged in", f->C_Login(rw, CKU_SO, MGMT, 48), CKR_USER_ANOTHER_ALREADY_LOGGED_IN, CKR_SESSION_READ_ONLY_EXISTS);
	EXPECT("C_InitPIN as the user", f->C_InitPIN(rw, PIN, 6), CKR_USER_NOT_LOGGED_IN);
	// §5.5 C_SetPIN: "can only be called in the R/W Public Session state, R/W SO Functions
	// state, or R/W User Functions state"; a R/O session gives CKR_SESSION_READ_ONLY.
	EXPECT("C_SetPIN in a R/O session", f->C_SetPIN(ro, PIN, 6, PIN, 6), CKR_SESSION_READ_ONLY);
	// §5.6 C_Login with CKU_CONTEXT_SPECIFIC needs an operation that asks for it.
	EXPECT("C_Login(CKU_CONTEXT_SPECIFIC) without an operation", f->C_Login(ro, CKU_CONTEXT_SPECIFIC, PIN, 6), CKR_OPERATION_NOT_INITIALIZED);

	CK_OBJECT_HANDLE priv01 = findObject(ro, CKO_PRIVATE_KEY, 1), priv02 = findObject(ro, CKO_PRIVATE_KEY, 2), priv03 = findObject(ro, CKO_PRIVATE_KEY, 3);
	CK_OBJECT_HANDLE priv04 = findObject(ro, CKO_PRIVATE_KEY, 4), priv05 = findObject(ro, CKO_PRIVATE_KEY, 5);
	if (!priv01 || !priv02 || !priv03 || !priv04 || !priv05) { printf("FAIL private keys not found\n"); return 1; }

	// Key handles: CKR_KEY_HANDLE_INVALID (§5.8–5.12 the *Init functions, §5.14 C_DeriveKey).
	for (int b = 0; b < 2; b++) {
		CK_OBJECT_HANDLE o = badObjects[b];
		snprintf(name, sizeof name, "C_SignInit(key %s)", badObjNames[b]);
		EXPECT(name, f->C_SignInit(ro, &mECDSA, o), CKR_KEY_HANDLE_INVALID);
		snprintf(name, sizeof name, "C_VerifyInit(key %s)", badObjNames[b]);
		EXPECT(name, f->C_VerifyInit(ro, &mECDSA, o), CKR_KEY_HANDLE_INVALID);
		snprintf(name, sizeof name, "C_EncryptInit(key %s)", badObjNames[b]);
		EXPECT(name, f->C_EncryptInit(ro, &mRSA, o), CKR_KEY_HANDLE_INVALID);
		snprintf(name, sizeof name, "C_DecryptInit(key %s)", badObjNames[b]);
		EXPECT(name, f->C_DecryptInit(ro, &mRSA, o), CKR_KEY_HANDLE_INVALID);
		snprintf(name, sizeof name, "C_SignRecoverInit(key %s)", badObjNames[b]);
		EXPECT(name, f->C_SignRecoverInit(ro, &mRSA, o), CKR_KEY_HANDLE_INVALID);
		snprintf(name, sizeof name, "C_VerifyRecoverInit(key %s)", badObjNames[b]);
		EXPECT(name, f->C_VerifyRecoverInit(ro, &mRSA, o), CKR_KEY_HANDLE_INVALID);
		snprintf(name, sizeof name, "C_DeriveKey(base key %s)", badObjNames[b]);
		EXPECT(name, f->C_DeriveKey(ro, &mECDH, o, NULL, 0, &outH), CKR_KEY_HANDLE_INVALID);
	}
	// A certificate is no key: the handle is not a key's, or the wrong kind of object.
	EXPECT("C_SignInit(a certificate)", f->C_SignInit(ro, &mECDSA, cert01), CKR_KEY_HANDLE_INVALID, CKR_KEY_TYPE_INCONSISTENT);

	// --- Short buffers (§5.2): CKR_BUFFER_TOO_SMALL, the length set to (at least) what is
	// needed, and the operation still active: the next call with a big enough buffer works.
	n = 0;
	EXPECT("C_GetSlotList(all) count", f->C_GetSlotList(CK_FALSE, NULL, &n), CKR_OK);
	CK_ULONG want = n;
	n = 1;
	EXPECT("C_GetSlotList(all) short", f->C_GetSlotList(CK_FALSE, all, &n), CKR_BUFFER_TOO_SMALL);
	EQUAL("C_GetSlotList(all) short: count set", n, want);
	n = 0;
	EXPECT("C_GetMechanismList count", f->C_GetMechanismList(slot, NULL, &n), CKR_OK);
	want = n;
	n = 2;
	EXPECT("C_GetMechanismList short", f->C_GetMechanismList(slot, mechs, &n), CKR_BUFFER_TOO_SMALL);
	EQUAL("C_GetMechanismList short: count set", n, want);
	n = 64;
	EXPECT("C_GetMechanismList", f->C_GetMechanismList(slot, mechs, &n), CKR_OK);
	EQUAL("C_GetMechanismList count", n, want);

	EXPECT("C_DigestInit", f->C_DigestInit(ro, &mSHA256), CKR_OK);
	bufLen = 0;
	EXPECT("C_Digest length query", f->C_Digest(ro, data, 3, NULL, &bufLen), CKR_OK);
	EQUAL("C_Digest length", bufLen, 32);
	bufLen = 10;
	EXPECT("C_Digest short", f->C_Digest(ro, data, 3, buf, &bufLen), CKR_BUFFER_TOO_SMALL);
	EQUAL("C_Digest short: length set", bufLen, 32);
	bufLen = sizeof buf;
	EXPECT("C_Digest after the short buffer", f->C_Digest(ro, data, 3, buf, &bufLen), CKR_OK);
	EQUAL("C_Digest value", bufLen == 32 && memcmp(buf, sha256abc, 32) == 0, 1);
	EXPECT("C_Digest after it finished", f->C_Digest(ro, data, 3, buf, &bufLen), CKR_OPERATION_NOT_INITIALIZED);
	EXPECT("C_DigestInit (multi-part)", f->C_DigestInit(ro, &mSHA256), CKR_OK);
	EXPECT("C_DigestUpdate", f->C_DigestUpdate(ro, data, 3), CKR_OK);
	bufLen = 31;
	EXPECT("C_DigestFinal short", f->C_DigestFinal(ro, buf, &bufLen), CKR_BUFFER_TOO_SMALL);
	EQUAL("C_DigestFinal short: length set", bufLen, 32);
	EXPECT("C_DigestFinal after the short buffer", f->C_DigestFinal(ro, buf, &bufLen), CKR_OK);
	EQUAL("C_DigestFinal value", bufLen == 32 && memcmp(buf, sha256abc, 32) == 0, 1);

	EXPECT("C_SignInit ECDSA (9E)", f->C_SignInit(ro, &mECDSA, priv04), CKR_OK);
	EXPECT("C_Sign(pulSignatureLen NULL)", f->C_Sign(ro, sha256abc, 32, buf, NULL), CKR_ARGUMENTS_BAD);
	bufLen = 8;
	EXPECT("C_Sign short", f->C_Sign(ro, sha256abc, 32, buf, &bufLen), CKR_BUFFER_TOO_SMALL);
	EQUAL("C_Sign short: length set", bufLen, 64);
	bufLen = sizeof buf;
	EXPECT("C_Sign after the short buffer", f->C_Sign(ro, sha256abc, 32, buf, &bufLen), CKR_OK);
	EQUAL("C_Sign length", bufLen, 64);
	CK_BYTE sig[64];
	memcpy(sig, buf, 64);
	// §5.11 C_Sign: a single-part C_Sign ends the operation.
	EXPECT("C_SignUpdate after C_Sign finished", f->C_SignUpdate(ro, data, 3), CKR_OPERATION_NOT_INITIALIZED);
	EXPECT("C_Sign after C_Sign finished", f->C_Sign(ro, sha256abc, 32, buf, &bufLen), CKR_OPERATION_NOT_INITIALIZED);
	EXPECT("C_VerifyInit ECDSA (9E public key)", f->C_VerifyInit(ro, &mECDSA, pub04), CKR_OK);
	EXPECT("C_Verify the signature", f->C_Verify(ro, sha256abc, 32, sig, 64), CKR_OK);
	{
		CK_MECHANISM m = {CKM_SHA256_RSA_PKCS, NULL, 0};
		EXPECT("C_SignInit SHA256-RSA (9A, multi-part)", f->C_SignInit(ro, &m, priv01), CKR_OK);
		EXPECT("C_SignUpdate", f->C_SignUpdate(ro, data, 3), CKR_OK);
		bufLen = 255;
		EXPECT("C_SignFinal short", f->C_SignFinal(ro, buf, &bufLen), CKR_BUFFER_TOO_SMALL);
		EQUAL("C_SignFinal short: length set", bufLen, 256);
		EXPECT("C_SignFinal after the short buffer", f->C_SignFinal(ro, buf, &bufLen), CKR_OK);
		EXPECT("C_SignFinal after it finished", f->C_SignFinal(ro, buf, &bufLen), CKR_OPERATION_NOT_INITIALIZED);
	}
	EXPECT("C_DecryptInit RSA (9D)", f->C_DecryptInit(ro, &mRSA, priv03), CKR_OK);
	EXPECT("C_Decrypt(pulDataLen NULL)", f->C_Decrypt(ro, ct, ctLen, buf, NULL), CKR_ARGUMENTS_BAD);
	bufLen = 0;
	EXPECT("C_Decrypt length query", f->C_Decrypt(ro, ct, ctLen, NULL, &bufLen), CKR_OK);
	CK_ULONG q = bufLen;
	EQUAL("C_Decrypt length query: at least the plaintext", q >= 3 && q <= 256, 1);
	bufLen = 2;
	EXPECT("C_Decrypt short", f->C_Decrypt(ro, ct, ctLen, buf, &bufLen), CKR_BUFFER_TOO_SMALL);
	EQUAL("C_Decrypt short: length set", bufLen >= 3 && bufLen <= 256, 1);
	bufLen = sizeof buf;
	EXPECT("C_Decrypt after the short buffer", f->C_Decrypt(ro, ct, ctLen, buf, &bufLen), CKR_OK);
	EQUAL("C_Decrypt plaintext", bufLen == 3 && memcmp(buf, data, 3) == 0, 1);
	EXPECT("C_Decrypt after it finished", f->C_Decrypt(ro, ct, ctLen, buf, &bufLen), CKR_OPERATION_NOT_INITIALIZED);
	{
		// §5.7 C_GetAttributeValue: a buffer too small for an attribute sets its
		// ulValueLen to CK_UNAVAILABLE_INFORMATION and the call gives CKR_BUFFER_TOO_SMALL.
		CK_ATTRIBUTE a[] = {{CKA_MODULUS, buf, 8}, {CKA_ID, buf + 300, 1}};
		EXPECT("C_GetAttributeValue short", f->C_GetAttributeValue(ro, pub01, a, 2), CKR_BUFFER_TOO_SMALL);
		EQUAL("C_GetAttributeValue short: CK_UNAVAILABLE_INFORMATION", a[0].ulValueLen, CK_UNAVAILABLE_INFORMATION);
		EQUAL("C_GetAttributeValue short: the other attribute copied", a[1].ulValueLen, 1);
		a[0].ulValueLen = 256;
		EXPECT("C_GetAttributeValue big enough", f->C_GetAttributeValue(ro, pub01, a, 1), CKR_OK);
		EQUAL("C_GetAttributeValue length", a[0].ulValueLen, 256);
	}

	// --- Mechanisms and their parameters (pkcs11-curr-v2.40 §2.1 CK_RSA_PKCS_PSS_PARAMS,
	// CK_RSA_PKCS_OAEP_PARAMS; §2.3 ECDSA, CK_ECDH1_DERIVE_PARAMS; base §5.1.6: CKR_MECHANISM_INVALID,
	// CKR_MECHANISM_PARAM_INVALID, CKR_KEY_TYPE_INCONSISTENT, CKR_KEY_FUNCTION_NOT_PERMITTED).
	{
		CK_RSA_PKCS_PSS_PARAMS pss = {CKM_SHA256, CKG_MGF1_SHA256, 32};
		CK_BYTE big[sizeof pss + 8];
		memcpy(big, &pss, sizeof pss);
		struct { CK_MECHANISM m; const char *name; } bad[] = {
			{{CKM_RSA_PKCS_PSS, NULL, 0}, "PSS without parameters"},
			{{CKM_SHA256_RSA_PKCS_PSS, NULL, 0}, "SHA256-PSS without parameters"},
			{{CKM_RSA_PKCS_PSS, &pss, sizeof pss - 1}, "PSS ulParameterLen short"},
			{{CKM_RSA_PKCS_PSS, big, sizeof big}, "PSS ulParameterLen long"},
		};
		for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
			snprintf(name, sizeof name, "C_SignInit %s", bad[i].name);
			EXPECT(name, f->C_SignInit(ro, &bad[i].m, priv01), CKR_MECHANISM_PARAM_INVALID);
		}
		struct { CK_RSA_PKCS_PSS_PARAMS p; CK_MECHANISM_TYPE mech; const char *name; } badp[] = {
			{{CKM_SHA_1, CKG_MGF1_SHA1, 20}, CKM_SHA256_RSA_PKCS_PSS, "SHA256-PSS with hashAlg SHA-1"},
			{{CKM_SHA256, 0x99, 32}, CKM_SHA256_RSA_PKCS_PSS, "SHA256-PSS with an unknown mgf"},
			{{CKM_RSA_PKCS, CKG_MGF1_SHA256, 32}, CKM_RSA_PKCS_PSS, "PSS with hashAlg no digest"},
			{{CKM_SHA256, CKG_MGF1_SHA256, 300}, CKM_SHA256_RSA_PKCS_PSS, "SHA256-PSS with sLen too long for RSA-2048"},
		};
		for (size_t i = 0; i < sizeof badp / sizeof badp[0]; i++) {
			CK_MECHANISM m = {badp[i].mech, &badp[i].p, sizeof badp[i].p};
			snprintf(name, sizeof name, "C_SignInit %s", badp[i].name);
			EXPECT(name, f->C_SignInit(ro, &m, priv01), CKR_MECHANISM_PARAM_INVALID);
			snprintf(name, sizeof name, "C_VerifyInit %s", badp[i].name);
			EXPECT(name, f->C_VerifyInit(ro, &m, pub01), CKR_MECHANISM_PARAM_INVALID);
		}
		// MGF1 over another hash than hashAlg is allowed by RFC 8017 and signs (the module
		// pads on the host); verification in software needs them equal and says so at
		// C_VerifyInit, not at C_Verify (whose return values have no parameter error).
		CK_RSA_PKCS_PSS_PARAMS mix = {CKM_SHA256, CKG_MGF1_SHA1, 32};
		CK_MECHANISM m = {CKM_SHA256_RSA_PKCS_PSS, &mix, sizeof mix};
		EXPECT("C_VerifyInit SHA256-PSS with MGF1-SHA1", f->C_VerifyInit(ro, &m, pub01), CKR_MECHANISM_PARAM_INVALID);
		EXPECT("C_SignInit SHA256-PSS with MGF1-SHA1", f->C_SignInit(ro, &m, priv01), CKR_OK);
		bufLen = sizeof buf;
		EXPECT("C_Sign SHA256-PSS with MGF1-SHA1", f->C_Sign(ro, data, 3, buf, &bufLen), CKR_OK);
		m.pParameter = &pss;
		EXPECT("C_SignInit SHA256-PSS", f->C_SignInit(ro, &m, priv01), CKR_OK);
		bufLen = sizeof buf;
		EXPECT("C_Sign SHA256-PSS", f->C_Sign(ro, data, 3, buf, &bufLen), CKR_OK);
		memcpy(ct, buf, 256);
		EXPECT("C_VerifyInit SHA256-PSS", f->C_VerifyInit(ro, &m, pub01), CKR_OK);
		EXPECT("C_Verify SHA256-PSS", f->C_Verify(ro, data, 3, ct, 256), CKR_OK);
	}
	{
		CK_BYTE label[4] = "lbl";
		struct { CK_RSA_PKCS_OAEP_PARAMS p; CK_ULONG len; const char *name; } bad[] = {
			{{CKM_SHA256, CKG_MGF1_SHA256, CKZ_DATA_SPECIFIED, NULL, 0}, sizeof(CK_RSA_PKCS_OAEP_PARAMS) - 1, "ulParameterLen short"},
			{{0x99, CKG_MGF1_SHA256, CKZ_DATA_SPECIFIED, NULL, 0}, sizeof(CK_RSA_PKCS_OAEP_PARAMS), "unknown hashAlg"},
			{{CKM_SHA256, 0x99, CKZ_DATA_SPECIFIED, NULL, 0}, sizeof(CK_RSA_PKCS_OAEP_PARAMS), "unknown mgf"},
			{{CKM_SHA256, CKG_MGF1_SHA256, 5, label, 3}, sizeof(CK_RSA_PKCS_OAEP_PARAMS), "unknown source"},
			{{CKM_SHA256, CKG_MGF1_SHA256, CKZ_DATA_SPECIFIED, NULL, 3}, sizeof(CK_RSA_PKCS_OAEP_PARAMS), "pSourceData NULL, length 3"},
		};
		for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
			CK_MECHANISM m = {CKM_RSA_PKCS_OAEP, &bad[i].p, bad[i].len};
			snprintf(name, sizeof name, "C_DecryptInit OAEP %s", bad[i].name);
			EXPECT(name, f->C_DecryptInit(ro, &m, priv03), CKR_MECHANISM_PARAM_INVALID);
			snprintf(name, sizeof name, "C_EncryptInit OAEP %s", bad[i].name);
			EXPECT(name, f->C_EncryptInit(ro, &m, pub03), CKR_MECHANISM_PARAM_INVALID);
		}
		CK_MECHANISM m = {CKM_RSA_PKCS_OAEP, NULL, 0};
		EXPECT("C_DecryptInit OAEP without parameters", f->C_DecryptInit(ro, &m, priv03), CKR_MECHANISM_PARAM_INVALID);
		EXPECT("C_EncryptInit OAEP without parameters", f->C_EncryptInit(ro, &m, pub03), CKR_MECHANISM_PARAM_INVALID);
		// As for PSS: software encryption needs the MGF1 hash to be hashAlg; say so at Init.
		CK_RSA_PKCS_OAEP_PARAMS mix = {CKM_SHA256, CKG_MGF1_SHA1, CKZ_DATA_SPECIFIED, NULL, 0};
		m.pParameter = &mix;
		m.ulParameterLen = sizeof mix;
		EXPECT("C_EncryptInit OAEP with MGF1-SHA1", f->C_EncryptInit(ro, &m, pub03), CKR_MECHANISM_PARAM_INVALID);
		CK_RSA_PKCS_OAEP_PARAMS good = {CKM_SHA256, CKG_MGF1_SHA256, CKZ_DATA_SPECIFIED, label, 3};
		m.pParameter = &good;
		EXPECT("C_EncryptInit OAEP", f->C_EncryptInit(ro, &m, pub03), CKR_OK);
		ctLen = sizeof ct;
		EXPECT("C_Encrypt OAEP", f->C_Encrypt(ro, data, 3, ct, &ctLen), CKR_OK);
		EXPECT("C_DecryptInit OAEP", f->C_DecryptInit(ro, &m, priv03), CKR_OK);
		bufLen = sizeof buf;
		EXPECT("C_Decrypt OAEP", f->C_Decrypt(ro, ct, ctLen, buf, &bufLen), CKR_OK);
		EQUAL("C_Decrypt OAEP plaintext", bufLen == 3 && memcmp(buf, data, 3) == 0, 1);
	}
	{
		CK_BYTE notOnCurve[65], badPrefix[65];
		memset(notOnCurve, 0x01, sizeof notOnCurve);
		notOnCurve[0] = 0x04;
		memcpy(badPrefix, p256G, sizeof badPrefix);
		badPrefix[0] = 0x05;
		struct { CK_ECDH1_DERIVE_PARAMS p; CK_ULONG len; const char *name; } bad[] = {
			{{CKD_NULL, 0, NULL, sizeof p256G, p256G}, sizeof(CK_ECDH1_DERIVE_PARAMS) - 1, "ulParameterLen short"},
			{{0x99, 0, NULL, sizeof p256G, p256G}, sizeof(CK_ECDH1_DERIVE_PARAMS), "unknown kdf"},
			{{CKD_NULL, 0, NULL, 0, NULL}, sizeof(CK_ECDH1_DERIVE_PARAMS), "no public value"},
			{{CKD_NULL, 0, NULL, 65, NULL}, sizeof(CK_ECDH1_DERIVE_PARAMS), "pPublicData NULL, length 65"},
			{{CKD_NULL, 0, NULL, 10, p256G}, sizeof(CK_ECDH1_DERIVE_PARAMS), "public value of 10 bytes"},
			{{CKD_NULL, 0, NULL, sizeof badPrefix, badPrefix}, sizeof(CK_ECDH1_DERIVE_PARAMS), "public value not uncompressed (05)"},
			{{CKD_NULL, 0, NULL, sizeof notOnCurve, notOnCurve}, sizeof(CK_ECDH1_DERIVE_PARAMS), "public point not on the curve"},
		};
		for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
			CK_MECHANISM m = {CKM_ECDH1_DERIVE, &bad[i].p, bad[i].len};
			snprintf(name, sizeof name, "C_DeriveKey ECDH1 %s", bad[i].name);
			EXPECT(name, f->C_DeriveKey(ro, &m, priv05, NULL, 0, &outH), CKR_MECHANISM_PARAM_INVALID);
		}
		CK_MECHANISM m = {CKM_ECDH1_DERIVE, NULL, 0};
		EXPECT("C_DeriveKey ECDH1 without parameters", f->C_DeriveKey(ro, &m, priv05, NULL, 0, &outH), CKR_MECHANISM_PARAM_INVALID);
		EXPECT("C_DeriveKey ECDH1 with an RSA key", f->C_DeriveKey(ro, &mECDH, priv03, NULL, 0, &outH), CKR_KEY_TYPE_INCONSISTENT);
		EXPECT("C_DeriveKey ECDH1 (82)", f->C_DeriveKey(ro, &mECDH, priv05, NULL, 0, &outH), CKR_OK);
		EXPECT("C_DestroyObject the derived session key (R/O session)", f->C_DestroyObject(ro, outH), CKR_OK);
	}
	{
		CK_BYTE param[4] = {1, 2, 3, 4};
		CK_MECHANISM m = {CKM_ECDSA, param, sizeof param};
		EXPECT("C_SignInit ECDSA with a parameter", f->C_SignInit(ro, &m, priv04), CKR_MECHANISM_PARAM_INVALID);
		EXPECT("C_VerifyInit ECDSA with a parameter", f->C_VerifyInit(ro, &m, pub04), CKR_MECHANISM_PARAM_INVALID);
		m.mechanism = CKM_SHA256_RSA_PKCS;
		EXPECT("C_SignInit SHA256-RSA with a parameter", f->C_SignInit(ro, &m, priv01), CKR_MECHANISM_PARAM_INVALID);
		m.mechanism = CKM_SHA256;
		EXPECT("C_DigestInit SHA256 with a parameter", f->C_DigestInit(ro, &m), CKR_MECHANISM_PARAM_INVALID);
		m.mechanism = CKM_RSA_PKCS;
		EXPECT("C_DecryptInit RSA with a parameter", f->C_DecryptInit(ro, &m, priv03), CKR_MECHANISM_PARAM_INVALID);
	}
	EXPECT("C_SignInit ECDSA with an RSA key", f->C_SignInit(ro, &mECDSA, priv01), CKR_KEY_TYPE_INCONSISTENT);
	EXPECT("C_VerifyInit ECDSA with an RSA key", f->C_VerifyInit(ro, &mECDSA, pub01), CKR_KEY_TYPE_INCONSISTENT);
	{
		CK_MECHANISM m = {CKM_SHA256_RSA_PKCS, NULL, 0};
		EXPECT("C_SignInit SHA256-RSA with an EC key", f->C_SignInit(ro, &m, priv04), CKR_KEY_TYPE_INCONSISTENT);
	}
	// EC keys have CKA_DECRYPT false and are of the wrong type for RSA: either code.
	EQUAL("P-256 key (9E): CKA_DECRYPT false", boolAttr(ro, priv04, CKA_DECRYPT), CK_FALSE);
	EXPECT("C_DecryptInit RSA with an EC key", f->C_DecryptInit(ro, &mRSA, priv04), CKR_KEY_FUNCTION_NOT_PERMITTED, CKR_KEY_TYPE_INCONSISTENT);
	// The attestation key (F9) signs attestations only: its public key has CKA_VERIFY false.
	if (attestPub) {
		CK_KEY_TYPE kt = 0;
		CK_ATTRIBUTE a = {CKA_KEY_TYPE, &kt, sizeof kt};
		f->C_GetAttributeValue(ro, attestPub, &a, 1);
		EQUAL("attestation public key: CKA_VERIFY false", boolAttr(ro, attestPub, CKA_VERIFY), CK_FALSE);
		EXPECT("C_VerifyInit with the attestation key (CKA_VERIFY false)", f->C_VerifyInit(ro, kt == CKK_EC ? &mECDSA : &mRSA, attestPub), CKR_KEY_FUNCTION_NOT_PERMITTED);
	} else {
		printf("FAIL attestation public key (CKA_ID 19) not found\n");
		failures++;
	}
	{
		CK_MECHANISM unknown = {0x7FFFFFF0UL, NULL, 0};
		CK_MECHANISM oaep = {CKM_RSA_PKCS_OAEP, NULL, 0};
		EXPECT("C_SignInit unknown mechanism", f->C_SignInit(ro, &unknown, priv01), CKR_MECHANISM_INVALID);
		EXPECT("C_DigestInit unknown mechanism", f->C_DigestInit(ro, &unknown), CKR_MECHANISM_INVALID);
		EXPECT("C_DigestInit with a signature mechanism", f->C_DigestInit(ro, &mECDSA), CKR_MECHANISM_INVALID);
		EXPECT("C_GetMechanismInfo unknown mechanism", f->C_GetMechanismInfo(slot, 0x7FFFFFF0UL, &mi), CKR_MECHANISM_INVALID);
		EXPECT("C_DecryptInit with a signature-only mechanism", f->C_DecryptInit(ro, &mECDSA, priv03), CKR_MECHANISM_INVALID);
		EXPECT("C_SignInit with a decryption-only mechanism", f->C_SignInit(ro, &oaep, priv01), CKR_MECHANISM_INVALID);
		EXPECT("C_GenerateKeyPair with a digest mechanism", f->C_GenerateKeyPair(rw, &mSHA256, NULL, 0, NULL, 0, &outH, &outH2), CKR_MECHANISM_INVALID);
		EXPECT("C_DeriveKey with a signature mechanism", f->C_DeriveKey(ro, &mECDSA, priv05, NULL, 0, &outH), CKR_MECHANISM_INVALID);
	}

	// --- Data of the wrong size (§5.8, 5.9, 5.11, 5.12: CKR_DATA_LEN_RANGE, CKR_ENCRYPTED_DATA_LEN_RANGE,
	// CKR_SIGNATURE_LEN_RANGE; a signature of the wrong length may also be just invalid).
	{
		CK_BYTE longData[300];
		memset(longData, 0x42, sizeof longData);
		EXPECT("C_EncryptInit RSA (for too much data)", f->C_EncryptInit(ro, &mRSA, pub03), CKR_OK);
		ctLen = sizeof ct;
		EXPECT("C_Encrypt RSA-PKCS 300 bytes into RSA-2048", f->C_Encrypt(ro, longData, sizeof longData, ct, &ctLen), CKR_DATA_LEN_RANGE);
		EXPECT("C_SignInit RSA-PKCS (for too much data)", f->C_SignInit(ro, &mRSA, priv01), CKR_OK);
		bufLen = sizeof buf;
		EXPECT("C_Sign RSA-PKCS 300 bytes with RSA-2048", f->C_Sign(ro, longData, sizeof longData, buf, &bufLen), CKR_DATA_LEN_RANGE);
		EXPECT("C_DecryptInit RSA (for a short ciphertext)", f->C_DecryptInit(ro, &mRSA, priv03), CKR_OK);
		bufLen = sizeof buf;
		EXPECT("C_Decrypt a ciphertext of 100 bytes with RSA-2048", f->C_Decrypt(ro, longData, 100, buf, &bufLen), CKR_ENCRYPTED_DATA_LEN_RANGE);
		EXPECT("C_VerifyInit ECDSA (for a short signature)", f->C_VerifyInit(ro, &mECDSA, pub04), CKR_OK);
		EXPECT("C_Verify a signature of 10 bytes with P-256", f->C_Verify(ro, sha256abc, 32, longData, 10), CKR_SIGNATURE_LEN_RANGE, CKR_SIGNATURE_INVALID);
		EXPECT("C_FindObjectsInit (for zero objects)", f->C_FindObjectsInit(ro, NULL, 0), CKR_OK);
		n = 7;
		EXPECT("C_FindObjects(NULL, 0)", f->C_FindObjects(ro, NULL, 0, &n), CKR_OK);
		EQUAL("C_FindObjects(NULL, 0): count", n, 0);
		EXPECT("C_FindObjectsFinal (zero objects)", f->C_FindObjectsFinal(ro), CKR_OK);
		EXPECT("C_GenerateRandom(NULL, 0)", f->C_GenerateRandom(ro, NULL, 0), CKR_OK);
		EXPECT("C_GenerateRandom(16)", f->C_GenerateRandom(ro, buf, 16), CKR_OK);
		// §5.15 C_SeedRandom: a token without a seedable generator answers CKR_RANDOM_SEED_NOT_SUPPORTED.
		EXPECT("C_SeedRandom", f->C_SeedRandom(ro, buf, 16), CKR_RANDOM_SEED_NOT_SUPPORTED, CKR_OK);
		EXPECT("C_DigestInit (for a key)", f->C_DigestInit(ro, &mSHA256), CKR_OK);
		// §5.10 C_DigestKey: a key that cannot be digested (on the card, sensitive).
		EXPECT("C_DigestKey of a card key", f->C_DigestKey(ro, pub01), CKR_KEY_INDIGESTIBLE, CKR_FUNCTION_NOT_SUPPORTED);
		f3->C_SessionCancel(ro, CKF_DIGEST);
	}
	// §5.5 C_SetPIN: NULL PINs without a PIN pad, and a new PIN of the wrong length (the
	// old PIN is right, so the card's counter is not touched).
	EXPECT("C_SetPIN(NULL old PIN, 6)", f->C_SetPIN(rw, NULL, 6, PIN, 6), CKR_ARGUMENTS_BAD);
	EXPECT("C_SetPIN(NULL new PIN, 6)", f->C_SetPIN(rw, PIN, 6, NULL, 6), CKR_ARGUMENTS_BAD);
	EXPECT("C_SetPIN new PIN of 3 digits", f->C_SetPIN(rw, PIN, 6, (CK_UTF8CHAR_PTR) "123", 3), CKR_PIN_LEN_RANGE);

	// --- Session state.
	{
		// §5.7 and §4 (sessions): in a R/O session token objects are read-only (CKR_SESSION_READ_ONLY); session
		// objects may be created and destroyed.
		CK_BYTE id = 0x14; // retired slot 95, empty: harmless even if a key were made
		CK_ATTRIBUTE pubT[] = {{CKA_EC_PARAMS, p256OID, sizeof p256OID}, {CKA_TOKEN, &yes, 1}, {CKA_ID, &id, 1}};
		CK_ATTRIBUTE privT[] = {{CKA_TOKEN, &yes, 1}, {CKA_ID, &id, 1}};
		EXPECT("C_GenerateKeyPair in a R/O session", f->C_GenerateKeyPair(ro, &mECGen, pubT, 3, privT, 2, &outH, &outH2), CKR_SESSION_READ_ONLY);
		CK_ATTRIBUTE tokData[] = {{CKA_CLASS, &dataClass, sizeof dataClass}, {CKA_TOKEN, &yes, 1}, {CKA_PRIVATE, &no, 1},
			{CKA_LABEL, "x", 1}, {CKA_VALUE, "x", 1}};
		EXPECT("C_CreateObject token object in a R/O session", f->C_CreateObject(ro, tokData, 5, &outH), CKR_SESSION_READ_ONLY);
		CK_ATTRIBUTE label = {CKA_LABEL, "x", 1};
		EXPECT("C_SetAttributeValue token object in a R/O session", f->C_SetAttributeValue(ro, cert01, &label, 1), CKR_SESSION_READ_ONLY);
		EXPECT("C_DestroyObject token object in a R/O session", f->C_DestroyObject(ro, cert01), CKR_SESSION_READ_ONLY);
		EXPECT("the certificate is still there", f->C_GetObjectSize(ro, cert01, &ul), CKR_OK);
		CK_ATTRIBUTE sesData[] = {{CKA_CLASS, &dataClass, sizeof dataClass}, {CKA_TOKEN, &no, 1}, {CKA_VALUE, "x", 1}};
		EXPECT("C_CreateObject session object in a R/O session", f->C_CreateObject(ro, sesData, 3, &outH), CKR_OK);
		EXPECT("C_DestroyObject session object in a R/O session", f->C_DestroyObject(ro, outH), CKR_OK);
	}
	// §5.1.6 CKR_OPERATION_ACTIVE, CKR_OPERATION_NOT_INITIALIZED: one operation at a time.
	EXPECT("C_FindObjects without C_FindObjectsInit", f->C_FindObjects(ro, &outH, 1, &n), CKR_OPERATION_NOT_INITIALIZED);
	EXPECT("C_FindObjectsFinal without C_FindObjectsInit", f->C_FindObjectsFinal(ro), CKR_OPERATION_NOT_INITIALIZED);
	EXPECT("C_FindObjectsInit", f->C_FindObjectsInit(ro, NULL, 0), CKR_OK);
	EXPECT("C_FindObjectsInit twice", f->C_FindObjectsInit(ro, NULL, 0), CKR_OPERATION_ACTIVE);
	EXPECT("C_SignInit while finding", f->C_SignInit(ro, &mECDSA, priv04), CKR_OPERATION_ACTIVE);
	EXPECT("C_FindObjectsFinal", f->C_FindObjectsFinal(ro), CKR_OK);
	EXPECT("C_SignInit", f->C_SignInit(ro, &mECDSA, priv04), CKR_OK);
	EXPECT("C_SignInit twice", f->C_SignInit(ro, &mECDSA, priv04), CKR_OPERATION_ACTIVE);
	EXPECT("C_FindObjectsInit while signing", f->C_FindObjectsInit(ro, NULL, 0), CKR_OPERATION_ACTIVE);
	bufLen = sizeof buf;
	EXPECT("C_Sign", f->C_Sign(ro, sha256abc, 32, buf, &bufLen), CKR_OK);
	bufLen = sizeof buf;
	EXPECT("C_Sign without C_SignInit", f->C_Sign(ro, sha256abc, 32, buf, &bufLen), CKR_OPERATION_NOT_INITIALIZED);
	EXPECT("C_DecryptFinal without C_DecryptInit", f->C_DecryptFinal(ro, buf, &bufLen), CKR_OPERATION_NOT_INITIALIZED);
	EXPECT("C_VerifyFinal without C_VerifyInit", f->C_VerifyFinal(ro, buf, 64), CKR_OPERATION_NOT_INITIALIZED);
	EXPECT("C_DigestUpdate without C_DigestInit", f->C_DigestUpdate(ro, data, 3), CKR_OPERATION_NOT_INITIALIZED);
	// A PIN-always key (9C) signs only after a context-specific login (§5.6 C_Login,
	// CKA_ALWAYS_AUTHENTICATE): without one, C_Sign gives CKR_USER_NOT_LOGGED_IN.
	EXPECT("C_SignInit PIN-always key (9C)", f->C_SignInit(ro, &mECDSA, priv02), CKR_OK);
	bufLen = sizeof buf;
	EXPECT("C_Sign PIN-always key without context login", f->C_Sign(ro, sha256abc, 32, buf, &bufLen), CKR_USER_NOT_LOGGED_IN);
	// "A call to C_Sign always terminates the active signing operation unless it returns
	// CKR_BUFFER_TOO_SMALL or is a successful call … to determine the length" (§5.11).
	EXPECT("C_SignInit PIN-always key again", f->C_SignInit(ro, &mECDSA, priv02), CKR_OK);
	EXPECT("C_Login(CKU_CONTEXT_SPECIFIC)", f->C_Login(ro, CKU_CONTEXT_SPECIFIC, PIN, 6), CKR_OK);
	bufLen = sizeof buf;
	EXPECT("C_Sign PIN-always key", f->C_Sign(ro, sha256abc, 32, buf, &bufLen), CKR_OK);
	// §5.6 C_Logout: "any of the application's handles to private objects become invalid
	// (even if a user is later logged back into the token, those handles remain invalid)".
	// So a private key has no handle before login, and an old one stays invalid.
	EXPECT("C_Logout", f->C_Logout(rw), CKR_OK);
	EXPECT("C_SignInit with a private key handle after logout", f->C_SignInit(ro, &mECDSA, priv04), CKR_KEY_HANDLE_INVALID);
	EXPECT("C_GetAttributeValue of a private key handle after logout", f->C_GetAttributeValue(ro, priv04, dataTmpl, 1), CKR_OBJECT_HANDLE_INVALID);
	EQUAL("no private key visible before login", findObject(ro, CKO_PRIVATE_KEY, 4), 0);
	EXPECT("C_Logout twice", f->C_Logout(ro), CKR_USER_NOT_LOGGED_IN);
	EXPECT("C_Login again", f->C_Login(ro, CKU_USER, PIN, 6), CKR_OK);
	EXPECT("C_SignInit with the old handle after a new login", f->C_SignInit(ro, &mECDSA, priv04), CKR_KEY_HANDLE_INVALID);
	CK_OBJECT_HANDLE k = findObject(ro, CKO_PRIVATE_KEY, 4);
	EXPECT("C_SignInit with a new handle", f->C_SignInit(ro, &mECDSA, k), CKR_OK);
	bufLen = sizeof buf;
	EXPECT("C_Sign with a new handle", f->C_Sign(ro, sha256abc, 32, buf, &bufLen), CKR_OK);
	EXPECT("C_CloseSession", f->C_CloseSession(rw), CKR_OK);
	EXPECT("C_CloseSession twice", f->C_CloseSession(rw), CKR_SESSION_HANDLE_INVALID);
	// §5.6 C_CloseAllSessions: every session of the application on the token goes, and
	// with the last one the login (§5.6 C_CloseSession).
	EXPECT("C_CloseAllSessions", f->C_CloseAllSessions(slot), CKR_OK);
	EXPECT("R/O session after C_CloseAllSessions", f->C_GetSessionInfo(ro, &si), CKR_SESSION_HANDLE_INVALID);
	// The SO (PIV management key): no R/O session may be opened while the SO is logged in
	// (§5.6 C_OpenSession, CKR_SESSION_READ_WRITE_SO_EXISTS), and the SO is not the user.
	EXPECT("open R/W session (SO)", f->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &rw), CKR_OK);
	EXPECT("C_GetSessionInfo after C_CloseAllSessions", f->C_GetSessionInfo(rw, &si), CKR_OK);
	EQUAL("a new session starts public", si.state, CKS_RW_PUBLIC_SESSION);
	EXPECT("C_Login(CKU_SO)", f->C_Login(rw, CKU_SO, MGMT, 48), CKR_OK);
	EXPECT("C_Login(CKU_SO) twice", f->C_Login(rw, CKU_SO, MGMT, 48), CKR_USER_ALREADY_LOGGED_IN);
	EXPECT("C_Login(CKU_USER) while the SO is logged in", f->C_Login(rw, CKU_USER, PIN, 6), CKR_USER_ANOTHER_ALREADY_LOGGED_IN);
	EXPECT("C_OpenSession R/O while the SO is logged in", f->C_OpenSession(slot, CKF_SERIAL_SESSION, NULL, NULL, &sx), CKR_SESSION_READ_WRITE_SO_EXISTS);
	EXPECT("C_Login(CKU_CONTEXT_SPECIFIC) as SO without an operation", f->C_Login(rw, CKU_CONTEXT_SPECIFIC, PIN, 6), CKR_OPERATION_NOT_INITIALIZED, CKR_USER_NOT_LOGGED_IN);
	EXPECT("C_Logout (SO)", f->C_Logout(rw), CKR_OK);
	EXPECT("C_OpenSession R/O after the SO left", f->C_OpenSession(slot, CKF_SERIAL_SESSION, NULL, NULL, &ro), CKR_OK);

	// --- After C_Finalize: CKR_CRYPTOKI_NOT_INITIALIZED (§5.1.6) from everything but
	// C_Initialize and C_GetFunctionList.
	EXPECT("C_Finalize", f->C_Finalize(NULL), CKR_OK);
	EXPECT("C_Finalize twice", f->C_Finalize(NULL), CKR_CRYPTOKI_NOT_INITIALIZED);
	CK_INFO info;
	n = 16;
	EXPECT("after C_Finalize: C_GetInfo", f->C_GetInfo(&info), CKR_CRYPTOKI_NOT_INITIALIZED);
	EXPECT("after C_Finalize: C_GetSlotList", f->C_GetSlotList(CK_TRUE, slots, &n), CKR_CRYPTOKI_NOT_INITIALIZED);
	EXPECT("after C_Finalize: C_GetSlotInfo", f->C_GetSlotInfo(slot, &slotInfo), CKR_CRYPTOKI_NOT_INITIALIZED);
	EXPECT("after C_Finalize: C_GetTokenInfo", f->C_GetTokenInfo(slot, &ti), CKR_CRYPTOKI_NOT_INITIALIZED);
	n = 64;
	EXPECT("after C_Finalize: C_GetMechanismList", f->C_GetMechanismList(slot, mechs, &n), CKR_CRYPTOKI_NOT_INITIALIZED);
	EXPECT("after C_Finalize: C_GetMechanismInfo", f->C_GetMechanismInfo(slot, CKM_ECDSA, &mi), CKR_CRYPTOKI_NOT_INITIALIZED);
	EXPECT("after C_Finalize: C_InitToken", f->C_InitToken(slot, MGMT, 48, (CK_UTF8CHAR_PTR) "label                           "), CKR_CRYPTOKI_NOT_INITIALIZED);
	EXPECT("after C_Finalize: C_OpenSession", f->C_OpenSession(slot, CKF_SERIAL_SESSION, NULL, NULL, &sx), CKR_CRYPTOKI_NOT_INITIALIZED);
	EXPECT("after C_Finalize: C_CloseAllSessions", f->C_CloseAllSessions(slot), CKR_CRYPTOKI_NOT_INITIALIZED);
	EXPECT("after C_Finalize: C_WaitForSlotEvent", f->C_WaitForSlotEvent(CKF_DONT_BLOCK, &sx, NULL), CKR_CRYPTOKI_NOT_INITIALIZED);
	for (size_t i = 0; i < sizeof sessionFuncs / sizeof sessionFuncs[0]; i++) {
		snprintf(name, sizeof name, "after C_Finalize: %s(old session)", sessionFuncs[i].name);
		EXPECT(name, sessionFuncs[i].call(ro), CKR_CRYPTOKI_NOT_INITIALIZED);
	}
	EXPECT("C_Initialize again", f->C_Initialize(NULL), CKR_OK);
	EXPECT("old session after re-initialisation", f->C_GetSessionInfo(ro, &si), CKR_SESSION_HANDLE_INVALID);
	EXPECT("final C_Finalize", f->C_Finalize(NULL), CKR_OK);

	printf("ROWS %d\n", rows);
	printf(failures ? "FAILURES %d\n" : "ALL PASS\n", failures);
	return failures != 0;
}

// module.c: the C face of p11-card. Every C_* function is a one-line shim into a Go
// export (exports.go); the function lists are static. The shims notice a fork: a child
// process that did not exec cannot run the Go runtime it inherited, so every call there
// fails without entering Go (C_Initialize with CKR_FUNCTION_FAILED, the rest with
// CKR_CRYPTOKI_NOT_INITIALIZED).
#include <pthread.h>
#include <string.h>
#include <unistd.h>
#include "pkcs11.h"
#include "ops.h"
#include "_cgo_export.h"
#include "../pcsc/early.h"

static pid_t p11_pid;

__attribute__((constructor)) static void p11_record_pid(void) { p11_pid = getpid(); }

#define FORKED() (getpid() != p11_pid)
#define SHIM(call) do { if (FORKED()) return CKR_CRYPTOKI_NOT_INITIALIZED; return call; } while (0)

// Every call into Go waits until the Go runtime, which starts when the library is loaded,
// has initialised: a millisecond or more. The first C_Initialize of a process spends that
// wait connecting to pcscd, in C: it opens the PC/SC contexts the slot manager's start
// takes (pcsc/early.c), and releases them if it fails (the arguments refused: no start).
// It holds the mutex throughout, so a second C_Initialize racing with it enters Go only
// after it, and none of our PC/SC calls runs beside those made here (pcsc/gate.go).
static pthread_mutex_t p11_early_mu = PTHREAD_MUTEX_INITIALIZER;
static int p11_early_done;

CK_RV C_Initialize(CK_VOID_PTR pInitArgs) {
	if (FORKED()) return CKR_FUNCTION_FAILED;
	pthread_mutex_lock(&p11_early_mu);
	if (p11_early_done) {
		pthread_mutex_unlock(&p11_early_mu);
		return p11Initialize(pInitArgs);
	}
	p11_early_done = 1;
	p11_pcsc_open_early();
	CK_RV rv = p11Initialize(pInitArgs);
	if (rv != CKR_OK) p11_pcsc_drop_early();
	pthread_mutex_unlock(&p11_early_mu);
	return rv;
}
CK_RV C_Finalize(CK_VOID_PTR pReserved) { SHIM(p11Finalize(pReserved)); }
CK_RV C_GetInfo(CK_INFO_PTR pInfo) { SHIM(p11GetInfo(pInfo)); }
CK_RV C_GetSlotList(CK_BBOOL tokenPresent, CK_SLOT_ID_PTR pSlotList, CK_ULONG_PTR pulCount) { SHIM(p11GetSlotList(tokenPresent, pSlotList, pulCount)); }
CK_RV C_GetSlotInfo(CK_SLOT_ID slotID, CK_SLOT_INFO_PTR pInfo) { SHIM(p11GetSlotInfo(slotID, pInfo)); }
CK_RV C_GetTokenInfo(CK_SLOT_ID slotID, CK_TOKEN_INFO_PTR pInfo) { SHIM(p11GetTokenInfo(slotID, pInfo)); }
CK_RV C_GetMechanismList(CK_SLOT_ID slotID, CK_MECHANISM_TYPE_PTR pMechanismList, CK_ULONG_PTR pulCount) { SHIM(p11GetMechanismList(slotID, pMechanismList, pulCount)); }
CK_RV C_GetMechanismInfo(CK_SLOT_ID slotID, CK_MECHANISM_TYPE type, CK_MECHANISM_INFO_PTR pInfo) { SHIM(p11GetMechanismInfo(slotID, type, pInfo)); }
CK_RV C_InitToken(CK_SLOT_ID slotID, CK_UTF8CHAR_PTR pPin, CK_ULONG ulPinLen, CK_UTF8CHAR_PTR pLabel) { SHIM(p11InitToken(slotID, pPin, ulPinLen, pLabel)); }
CK_RV C_InitPIN(CK_SESSION_HANDLE hSession, CK_UTF8CHAR_PTR pPin, CK_ULONG ulPinLen) { SHIM(p11InitPIN(hSession, pPin, ulPinLen)); }
CK_RV C_SetPIN(CK_SESSION_HANDLE hSession, CK_UTF8CHAR_PTR pOldPin, CK_ULONG ulOldLen, CK_UTF8CHAR_PTR pNewPin, CK_ULONG ulNewLen) { SHIM(p11SetPIN(hSession, pOldPin, ulOldLen, pNewPin, ulNewLen)); }
CK_RV C_OpenSession(CK_SLOT_ID slotID, CK_FLAGS flags, CK_VOID_PTR pApplication, CK_NOTIFY Notify, CK_SESSION_HANDLE_PTR phSession) { SHIM(p11OpenSession(slotID, flags, phSession)); }
CK_RV C_CloseSession(CK_SESSION_HANDLE hSession) { SHIM(p11CloseSession(hSession)); }
CK_RV C_CloseAllSessions(CK_SLOT_ID slotID) { SHIM(p11CloseAllSessions(slotID)); }
CK_RV C_GetSessionInfo(CK_SESSION_HANDLE hSession, CK_SESSION_INFO_PTR pInfo) { SHIM(p11GetSessionInfo(hSession, pInfo)); }
CK_RV C_GetOperationState(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pOperationState, CK_ULONG_PTR pulOperationStateLen) { SHIM(p11Unsupported(hSession)); }
CK_RV C_SetOperationState(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pOperationState, CK_ULONG ulOperationStateLen, CK_OBJECT_HANDLE hEncryptionKey, CK_OBJECT_HANDLE hAuthenticationKey) { SHIM(p11Unsupported(hSession)); }
CK_RV C_Login(CK_SESSION_HANDLE hSession, CK_USER_TYPE userType, CK_UTF8CHAR_PTR pPin, CK_ULONG ulPinLen) { SHIM(p11Login(hSession, userType, pPin, ulPinLen)); }
CK_RV C_Logout(CK_SESSION_HANDLE hSession) { SHIM(p11Logout(hSession)); }
CK_RV C_CreateObject(CK_SESSION_HANDLE hSession, CK_ATTRIBUTE_PTR pTemplate, CK_ULONG ulCount, CK_OBJECT_HANDLE_PTR phObject) { SHIM(p11CreateObject(hSession, pTemplate, ulCount, phObject)); }
CK_RV C_CopyObject(CK_SESSION_HANDLE hSession, CK_OBJECT_HANDLE hObject, CK_ATTRIBUTE_PTR pTemplate, CK_ULONG ulCount, CK_OBJECT_HANDLE_PTR phNewObject) { SHIM(p11CopyObject(hSession, hObject, pTemplate, ulCount, phNewObject)); }
CK_RV C_DestroyObject(CK_SESSION_HANDLE hSession, CK_OBJECT_HANDLE hObject) { SHIM(p11DestroyObject(hSession, hObject)); }
CK_RV C_GetObjectSize(CK_SESSION_HANDLE hSession, CK_OBJECT_HANDLE hObject, CK_ULONG_PTR pulSize) { SHIM(p11GetObjectSize(hSession, hObject, pulSize)); }
CK_RV C_GetAttributeValue(CK_SESSION_HANDLE hSession, CK_OBJECT_HANDLE hObject, CK_ATTRIBUTE_PTR pTemplate, CK_ULONG ulCount) { SHIM(p11GetAttributeValue(hSession, hObject, pTemplate, ulCount)); }
CK_RV C_SetAttributeValue(CK_SESSION_HANDLE hSession, CK_OBJECT_HANDLE hObject, CK_ATTRIBUTE_PTR pTemplate, CK_ULONG ulCount) { SHIM(p11SetAttributeValue(hSession, hObject, pTemplate, ulCount)); }
CK_RV C_FindObjectsInit(CK_SESSION_HANDLE hSession, CK_ATTRIBUTE_PTR pTemplate, CK_ULONG ulCount) { SHIM(p11FindObjectsInit(hSession, pTemplate, ulCount)); }
CK_RV C_FindObjects(CK_SESSION_HANDLE hSession, CK_OBJECT_HANDLE_PTR phObject, CK_ULONG ulMaxObjectCount, CK_ULONG_PTR pulObjectCount) { SHIM(p11FindObjects(hSession, phObject, ulMaxObjectCount, pulObjectCount)); }
CK_RV C_FindObjectsFinal(CK_SESSION_HANDLE hSession) { SHIM(p11FindObjectsFinal(hSession)); }
CK_RV C_EncryptInit(CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism, CK_OBJECT_HANDLE hKey) { SHIM(p11OpInit(hSession, OP_ENCRYPT, pMechanism, hKey)); }
CK_RV C_Encrypt(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pData, CK_ULONG ulDataLen, CK_BYTE_PTR pEncryptedData, CK_ULONG_PTR pulEncryptedDataLen) { SHIM(p11OpData(hSession, OP_ENCRYPT, pData, ulDataLen, pEncryptedData, pulEncryptedDataLen)); }
CK_RV C_EncryptUpdate(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pPart, CK_ULONG ulPartLen, CK_BYTE_PTR pEncryptedPart, CK_ULONG_PTR pulEncryptedPartLen) { SHIM(p11OpUpdate(hSession, OP_ENCRYPT, pPart, ulPartLen)); }
CK_RV C_EncryptFinal(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pLastEncryptedPart, CK_ULONG_PTR pulLastEncryptedPartLen) { SHIM(p11OpFinal(hSession, OP_ENCRYPT, pLastEncryptedPart, pulLastEncryptedPartLen)); }
CK_RV C_DecryptInit(CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism, CK_OBJECT_HANDLE hKey) { SHIM(p11OpInit(hSession, OP_DECRYPT, pMechanism, hKey)); }
CK_RV C_Decrypt(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pEncryptedData, CK_ULONG ulEncryptedDataLen, CK_BYTE_PTR pData, CK_ULONG_PTR pulDataLen) { SHIM(p11OpData(hSession, OP_DECRYPT, pEncryptedData, ulEncryptedDataLen, pData, pulDataLen)); }
CK_RV C_DecryptUpdate(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pEncryptedPart, CK_ULONG ulEncryptedPartLen, CK_BYTE_PTR pPart, CK_ULONG_PTR pulPartLen) { SHIM(p11OpUpdate(hSession, OP_DECRYPT, pEncryptedPart, ulEncryptedPartLen)); }
CK_RV C_DecryptFinal(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pLastPart, CK_ULONG_PTR pulLastPartLen) { SHIM(p11OpFinal(hSession, OP_DECRYPT, pLastPart, pulLastPartLen)); }
CK_RV C_DigestInit(CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism) { SHIM(p11OpInit(hSession, OP_DIGEST, pMechanism, 0)); }
CK_RV C_Digest(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pData, CK_ULONG ulDataLen, CK_BYTE_PTR pDigest, CK_ULONG_PTR pulDigestLen) { SHIM(p11OpData(hSession, OP_DIGEST, pData, ulDataLen, pDigest, pulDigestLen)); }
CK_RV C_DigestUpdate(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pPart, CK_ULONG ulPartLen) { SHIM(p11OpUpdate(hSession, OP_DIGEST, pPart, ulPartLen)); }
CK_RV C_DigestKey(CK_SESSION_HANDLE hSession, CK_OBJECT_HANDLE hKey) { SHIM(p11DigestKey(hSession, hKey)); }
CK_RV C_DigestFinal(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pDigest, CK_ULONG_PTR pulDigestLen) { SHIM(p11OpFinal(hSession, OP_DIGEST, pDigest, pulDigestLen)); }
CK_RV C_SignInit(CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism, CK_OBJECT_HANDLE hKey) { SHIM(p11OpInit(hSession, OP_SIGN, pMechanism, hKey)); }
CK_RV C_Sign(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pData, CK_ULONG ulDataLen, CK_BYTE_PTR pSignature, CK_ULONG_PTR pulSignatureLen) { SHIM(p11OpData(hSession, OP_SIGN, pData, ulDataLen, pSignature, pulSignatureLen)); }
CK_RV C_SignUpdate(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pPart, CK_ULONG ulPartLen) { SHIM(p11OpUpdate(hSession, OP_SIGN, pPart, ulPartLen)); }
CK_RV C_SignFinal(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pSignature, CK_ULONG_PTR pulSignatureLen) { SHIM(p11OpFinal(hSession, OP_SIGN, pSignature, pulSignatureLen)); }
CK_RV C_SignRecoverInit(CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism, CK_OBJECT_HANDLE hKey) { SHIM(p11OpInit(hSession, OP_SIGN_RECOVER, pMechanism, hKey)); }
CK_RV C_SignRecover(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pData, CK_ULONG ulDataLen, CK_BYTE_PTR pSignature, CK_ULONG_PTR pulSignatureLen) { SHIM(p11OpData(hSession, OP_SIGN_RECOVER, pData, ulDataLen, pSignature, pulSignatureLen)); }
CK_RV C_VerifyInit(CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism, CK_OBJECT_HANDLE hKey) { SHIM(p11OpInit(hSession, OP_VERIFY, pMechanism, hKey)); }
CK_RV C_Verify(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pData, CK_ULONG ulDataLen, CK_BYTE_PTR pSignature, CK_ULONG ulSignatureLen) { SHIM(p11Verify(hSession, pData, ulDataLen, pSignature, ulSignatureLen)); }
CK_RV C_VerifyUpdate(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pPart, CK_ULONG ulPartLen) { SHIM(p11OpUpdate(hSession, OP_VERIFY, pPart, ulPartLen)); }
CK_RV C_VerifyFinal(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pSignature, CK_ULONG ulSignatureLen) { SHIM(p11VerifyFinal(hSession, pSignature, ulSignatureLen)); }
CK_RV C_VerifyRecoverInit(CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism, CK_OBJECT_HANDLE hKey) { SHIM(p11OpInit(hSession, OP_VERIFY_RECOVER, pMechanism, hKey)); }
CK_RV C_VerifyRecover(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pSignature, CK_ULONG ulSignatureLen, CK_BYTE_PTR pData, CK_ULONG_PTR pulDataLen) { SHIM(p11OpData(hSession, OP_VERIFY_RECOVER, pSignature, ulSignatureLen, pData, pulDataLen)); }
CK_RV C_DigestEncryptUpdate(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pPart, CK_ULONG ulPartLen, CK_BYTE_PTR pEncryptedPart, CK_ULONG_PTR pulEncryptedPartLen) { SHIM(p11Unsupported(hSession)); }
CK_RV C_DecryptDigestUpdate(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pEncryptedPart, CK_ULONG ulEncryptedPartLen, CK_BYTE_PTR pPart, CK_ULONG_PTR pulPartLen) { SHIM(p11Unsupported(hSession)); }
CK_RV C_SignEncryptUpdate(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pPart, CK_ULONG ulPartLen, CK_BYTE_PTR pEncryptedPart, CK_ULONG_PTR pulEncryptedPartLen) { SHIM(p11Unsupported(hSession)); }
CK_RV C_DecryptVerifyUpdate(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pEncryptedPart, CK_ULONG ulEncryptedPartLen, CK_BYTE_PTR pPart, CK_ULONG_PTR pulPartLen) { SHIM(p11Unsupported(hSession)); }
CK_RV C_GenerateKey(CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism, CK_ATTRIBUTE_PTR pTemplate, CK_ULONG ulCount, CK_OBJECT_HANDLE_PTR phKey) { SHIM(p11Unsupported(hSession)); }
CK_RV C_GenerateKeyPair(CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism, CK_ATTRIBUTE_PTR pPublicKeyTemplate, CK_ULONG ulPublicKeyAttributeCount, CK_ATTRIBUTE_PTR pPrivateKeyTemplate, CK_ULONG ulPrivateKeyAttributeCount, CK_OBJECT_HANDLE_PTR phPublicKey, CK_OBJECT_HANDLE_PTR phPrivateKey) { SHIM(p11GenerateKeyPair(hSession, pMechanism, pPublicKeyTemplate, ulPublicKeyAttributeCount, pPrivateKeyTemplate, ulPrivateKeyAttributeCount, phPublicKey, phPrivateKey)); }
CK_RV C_WrapKey(CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism, CK_OBJECT_HANDLE hWrappingKey, CK_OBJECT_HANDLE hKey, CK_BYTE_PTR pWrappedKey, CK_ULONG_PTR pulWrappedKeyLen) { SHIM(p11Unsupported(hSession)); }
CK_RV C_UnwrapKey(CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism, CK_OBJECT_HANDLE hUnwrappingKey, CK_BYTE_PTR pWrappedKey, CK_ULONG ulWrappedKeyLen, CK_ATTRIBUTE_PTR pTemplate, CK_ULONG ulAttributeCount, CK_OBJECT_HANDLE_PTR phKey) { SHIM(p11Unsupported(hSession)); }
CK_RV C_DeriveKey(CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism, CK_OBJECT_HANDLE hBaseKey, CK_ATTRIBUTE_PTR pTemplate, CK_ULONG ulAttributeCount, CK_OBJECT_HANDLE_PTR phKey) { SHIM(p11DeriveKey(hSession, pMechanism, hBaseKey, pTemplate, ulAttributeCount, phKey)); }
CK_RV C_SeedRandom(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pSeed, CK_ULONG ulSeedLen) { SHIM(p11SeedRandom(hSession, pSeed, ulSeedLen)); }
CK_RV C_GenerateRandom(CK_SESSION_HANDLE hSession, CK_BYTE_PTR RandomData, CK_ULONG ulRandomLen) { SHIM(p11GenerateRandom(hSession, RandomData, ulRandomLen)); }
CK_RV C_GetFunctionStatus(CK_SESSION_HANDLE hSession) { SHIM(p11Legacy(hSession)); }
CK_RV C_CancelFunction(CK_SESSION_HANDLE hSession) { SHIM(p11Legacy(hSession)); }
CK_RV C_WaitForSlotEvent(CK_FLAGS flags, CK_SLOT_ID_PTR pSlot, CK_VOID_PTR pReserved) { SHIM(p11WaitForSlotEvent(flags, pSlot, pReserved)); }

/* 3.0 */
CK_RV C_LoginUser(CK_SESSION_HANDLE hSession, CK_USER_TYPE userType, CK_UTF8CHAR_PTR pPin, CK_ULONG ulPinLen, CK_UTF8CHAR_PTR pUsername, CK_ULONG ulUsernameLen) { SHIM(p11LoginUser(hSession, userType, pPin, ulPinLen, pUsername, ulUsernameLen)); }
CK_RV C_SessionCancel(CK_SESSION_HANDLE hSession, CK_FLAGS flags) { SHIM(p11SessionCancel(hSession, flags)); }
/* The message-based API (3.0 §5.x): no card this module drives has an AEAD or message
 * signature primitive, so these are not supported. */
CK_RV C_MessageEncryptInit(CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism, CK_OBJECT_HANDLE hKey) { return CKR_FUNCTION_NOT_SUPPORTED; }
CK_RV C_EncryptMessage(CK_SESSION_HANDLE hSession, CK_VOID_PTR pParameter, CK_ULONG ulParameterLen, CK_BYTE_PTR pAssociatedData, CK_ULONG ulAssociatedDataLen, CK_BYTE_PTR pPlaintext, CK_ULONG ulPlaintextLen, CK_BYTE_PTR pCiphertext, CK_ULONG_PTR pulCiphertextLen) { return CKR_FUNCTION_NOT_SUPPORTED; }
CK_RV C_EncryptMessageBegin(CK_SESSION_HANDLE hSession, CK_VOID_PTR pParameter, CK_ULONG ulParameterLen, CK_BYTE_PTR pAssociatedData, CK_ULONG ulAssociatedDataLen) { return CKR_FUNCTION_NOT_SUPPORTED; }
CK_RV C_EncryptMessageNext(CK_SESSION_HANDLE hSession, CK_VOID_PTR pParameter, CK_ULONG ulParameterLen, CK_BYTE_PTR pPlaintextPart, CK_ULONG ulPlaintextPartLen, CK_BYTE_PTR pCiphertextPart, CK_ULONG_PTR pulCiphertextPartLen, CK_FLAGS flags) { return CKR_FUNCTION_NOT_SUPPORTED; }
CK_RV C_MessageEncryptFinal(CK_SESSION_HANDLE hSession) { return CKR_FUNCTION_NOT_SUPPORTED; }
CK_RV C_MessageDecryptInit(CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism, CK_OBJECT_HANDLE hKey) { return CKR_FUNCTION_NOT_SUPPORTED; }
CK_RV C_DecryptMessage(CK_SESSION_HANDLE hSession, CK_VOID_PTR pParameter, CK_ULONG ulParameterLen, CK_BYTE_PTR pAssociatedData, CK_ULONG ulAssociatedDataLen, CK_BYTE_PTR pCiphertext, CK_ULONG ulCiphertextLen, CK_BYTE_PTR pPlaintext, CK_ULONG_PTR pulPlaintextLen) { return CKR_FUNCTION_NOT_SUPPORTED; }
CK_RV C_DecryptMessageBegin(CK_SESSION_HANDLE hSession, CK_VOID_PTR pParameter, CK_ULONG ulParameterLen, CK_BYTE_PTR pAssociatedData, CK_ULONG ulAssociatedDataLen) { return CKR_FUNCTION_NOT_SUPPORTED; }
CK_RV C_DecryptMessageNext(CK_SESSION_HANDLE hSession, CK_VOID_PTR pParameter, CK_ULONG ulParameterLen, CK_BYTE_PTR pCiphertextPart, CK_ULONG ulCiphertextPartLen, CK_BYTE_PTR pPlaintextPart, CK_ULONG_PTR pulPlaintextPartLen, CK_FLAGS flags) { return CKR_FUNCTION_NOT_SUPPORTED; }
CK_RV C_MessageDecryptFinal(CK_SESSION_HANDLE hSession) { return CKR_FUNCTION_NOT_SUPPORTED; }
CK_RV C_MessageSignInit(CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism, CK_OBJECT_HANDLE hKey) { return CKR_FUNCTION_NOT_SUPPORTED; }
CK_RV C_SignMessage(CK_SESSION_HANDLE hSession, CK_VOID_PTR pParameter, CK_ULONG ulParameterLen, CK_BYTE_PTR pData, CK_ULONG ulDataLen, CK_BYTE_PTR pSignature, CK_ULONG_PTR pulSignatureLen) { return CKR_FUNCTION_NOT_SUPPORTED; }
CK_RV C_SignMessageBegin(CK_SESSION_HANDLE hSession, CK_VOID_PTR pParameter, CK_ULONG ulParameterLen) { return CKR_FUNCTION_NOT_SUPPORTED; }
CK_RV C_SignMessageNext(CK_SESSION_HANDLE hSession, CK_VOID_PTR pParameter, CK_ULONG ulParameterLen, CK_BYTE_PTR pData, CK_ULONG ulDataLen, CK_BYTE_PTR pSignature, CK_ULONG_PTR pulSignatureLen) { return CKR_FUNCTION_NOT_SUPPORTED; }
CK_RV C_MessageSignFinal(CK_SESSION_HANDLE hSession) { return CKR_FUNCTION_NOT_SUPPORTED; }
CK_RV C_MessageVerifyInit(CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism, CK_OBJECT_HANDLE hKey) { return CKR_FUNCTION_NOT_SUPPORTED; }
CK_RV C_VerifyMessage(CK_SESSION_HANDLE hSession, CK_VOID_PTR pParameter, CK_ULONG ulParameterLen, CK_BYTE_PTR pData, CK_ULONG ulDataLen, CK_BYTE_PTR pSignature, CK_ULONG ulSignatureLen) { return CKR_FUNCTION_NOT_SUPPORTED; }
CK_RV C_VerifyMessageBegin(CK_SESSION_HANDLE hSession, CK_VOID_PTR pParameter, CK_ULONG ulParameterLen) { return CKR_FUNCTION_NOT_SUPPORTED; }
CK_RV C_VerifyMessageNext(CK_SESSION_HANDLE hSession, CK_VOID_PTR pParameter, CK_ULONG ulParameterLen, CK_BYTE_PTR pData, CK_ULONG ulDataLen, CK_BYTE_PTR pSignature, CK_ULONG ulSignatureLen) { return CKR_FUNCTION_NOT_SUPPORTED; }
CK_RV C_MessageVerifyFinal(CK_SESSION_HANDLE hSession) { return CKR_FUNCTION_NOT_SUPPORTED; }

#define P11CARD_ENTRY(name, args) name,

static CK_FUNCTION_LIST p11_functions = {
	{2, 40},
	P11CARD_FUNCTIONS_2_40(P11CARD_ENTRY)
};

static CK_FUNCTION_LIST_3_0 p11_functions_3_0 = {
	{3, 0},
	P11CARD_FUNCTIONS_2_40(P11CARD_ENTRY)
	P11CARD_FUNCTIONS_3_0(P11CARD_ENTRY)
};

static CK_CHAR p11_interface_name[] = "PKCS 11";

static CK_INTERFACE p11_interfaces[] = {
	{p11_interface_name, &p11_functions_3_0, 0},
	{p11_interface_name, &p11_functions, 0},
};

#define P11_NINTERFACES (sizeof(p11_interfaces) / sizeof(p11_interfaces[0]))

CK_RV C_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR ppFunctionList) {
	if (ppFunctionList == NULL)
		return CKR_ARGUMENTS_BAD;
	*ppFunctionList = &p11_functions;
	return CKR_OK;
}

CK_RV C_GetInterfaceList(CK_INTERFACE_PTR pInterfacesList, CK_ULONG_PTR pulCount) {
	if (pulCount == NULL)
		return CKR_ARGUMENTS_BAD;
	if (pInterfacesList == NULL) {
		*pulCount = P11_NINTERFACES;
		return CKR_OK;
	}
	if (*pulCount < P11_NINTERFACES) {
		*pulCount = P11_NINTERFACES;
		return CKR_BUFFER_TOO_SMALL;
	}
	memcpy(pInterfacesList, p11_interfaces, sizeof(p11_interfaces));
	*pulCount = P11_NINTERFACES;
	return CKR_OK;
}

CK_RV C_GetInterface(CK_UTF8CHAR_PTR pInterfaceName, CK_VERSION_PTR pVersion, CK_INTERFACE_PTR_PTR ppInterface, CK_FLAGS flags) {
	if (ppInterface == NULL)
		return CKR_ARGUMENTS_BAD;
	if (pInterfaceName != NULL && strcmp((const char *)pInterfaceName, (const char *)p11_interface_name) != 0)
		return CKR_ARGUMENTS_BAD;
	for (size_t i = 0; i < P11_NINTERFACES; i++) {
		CK_VERSION *v = (CK_VERSION *)p11_interfaces[i].pFunctionList;
		if ((p11_interfaces[i].flags & flags) != flags)
			continue;
		if (pVersion != NULL && (v->major != pVersion->major || v->minor != pVersion->minor))
			continue;
		*ppInterface = &p11_interfaces[i];
		return CKR_OK;
	}
	return CKR_ARGUMENTS_BAD;
}

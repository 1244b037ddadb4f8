// floor.c is a PKCS#11 library that does nothing: C_Initialize succeeds and there is one
// slot, always empty (pkcs11-tool -L fails when there are none). The benchmark times pkcs11-tool -L on it, built in C
// alone and inside a Go c-shared library (main.go: C_Initialize calls into Go first, as
// every call of p11-card does), to show what loading a library costs before any card
// work, and what the Go runtime adds to that.
#include <string.h>
#include "pkcs11.h"

#ifdef FLOOR_GO
#include "_cgo_export.h"
#endif

static CK_RV floorInitialize(CK_VOID_PTR args) {
	(void)args;
#ifdef FLOOR_GO
	return floorGo();
#else
	return CKR_OK;
#endif
}

static CK_RV floorFinalize(CK_VOID_PTR reserved) {
	(void)reserved;
	return CKR_OK;
}

static CK_RV floorGetInfo(CK_INFO_PTR info) {
	if (info == NULL)
		return CKR_ARGUMENTS_BAD;
	memset(info, ' ', sizeof *info);
	info->cryptokiVersion.major = 2;
	info->cryptokiVersion.minor = 40;
	info->flags = 0;
	info->libraryVersion.major = 0;
	info->libraryVersion.minor = 0;
	memcpy(info->manufacturerID, "floor", 5);
	memcpy(info->libraryDescription, "does nothing", 12);
	return CKR_OK;
}

static CK_RV floorGetSlotList(CK_BBOOL present, CK_SLOT_ID_PTR list, CK_ULONG_PTR count) {
	CK_ULONG n = present ? 0 : 1;
	if (count == NULL)
		return CKR_ARGUMENTS_BAD;
	if (list != NULL) {
		if (*count < n) {
			*count = n;
			return CKR_BUFFER_TOO_SMALL;
		}
		if (n > 0)
			list[0] = 1;
	}
	*count = n;
	return CKR_OK;
}

static CK_RV floorGetSlotInfo(CK_SLOT_ID id, CK_SLOT_INFO_PTR info) {
	if (id != 1)
		return CKR_SLOT_ID_INVALID;
	if (info == NULL)
		return CKR_ARGUMENTS_BAD;
	memset(info, ' ', sizeof *info);
	memcpy(info->slotDescription, "no reader", 9);
	memcpy(info->manufacturerID, "floor", 5);
	info->flags = CKF_REMOVABLE_DEVICE | CKF_HW_SLOT;
	info->hardwareVersion.major = info->hardwareVersion.minor = 0;
	info->firmwareVersion.major = info->firmwareVersion.minor = 0;
	return CKR_OK;
}

static CK_RV floorGetTokenInfo(CK_SLOT_ID id, CK_TOKEN_INFO_PTR info) {
	(void)info;
	return id == 1 ? CKR_TOKEN_NOT_PRESENT : CKR_SLOT_ID_INVALID;
}

static CK_FUNCTION_LIST floorFunctions = {
	.version = {2, 40},
	.C_Initialize = floorInitialize,
	.C_Finalize = floorFinalize,
	.C_GetInfo = floorGetInfo,
	.C_GetSlotList = floorGetSlotList,
	.C_GetSlotInfo = floorGetSlotInfo,
	.C_GetTokenInfo = floorGetTokenInfo,
};

CK_RV C_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR list) {
	if (list == NULL)
		return CKR_ARGUMENTS_BAD;
	*list = &floorFunctions;
	return CKR_OK;
}

/* p11find.h: what the C test programs share. Include it after pkcs11.h, with a
 * `static CK_FUNCTION_LIST *f;` declared before it. */

/* findObject returns the one object of class cls with CKA_ID id in session s (0 when there
 * is none, or more than one). */
static CK_OBJECT_HANDLE findObject(CK_SESSION_HANDLE s, CK_OBJECT_CLASS cls, CK_BYTE id) {
	CK_ATTRIBUTE t[] = {{CKA_CLASS, &cls, sizeof cls}, {CKA_ID, &id, 1}};
	CK_OBJECT_HANDLE h[2] = {0, 0};
	CK_ULONG n = 0;
	if (f->C_FindObjectsInit(s, t, 2) != CKR_OK)
		return 0;
	if (f->C_FindObjects(s, h, 2, &n) != CKR_OK || n != 1)
		h[0] = 0;
	f->C_FindObjectsFinal(s);
	return h[0];
}

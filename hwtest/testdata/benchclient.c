/* benchclient: the C side of `make bench` (hwtest/bench_test.go).
 *
 *   benchclient rss [MODULE]           C_Initialize and C_GetSlotList, then prints
 *                                      "rss KB hwm KB" (without MODULE: the bare process)
 *   benchclient sign MODULE PIN ID N   logs in, signs a SHA-256 digest N times with
 *                                      CKM_ECDSA and the private key of CKA_ID ID (one
 *                                      byte, hex), prints "sign NS" per C_Sign, in ns
 */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "pkcs11.h"

static CK_FUNCTION_LIST *load(const char *path) {
	void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (!h) { fprintf(stderr, "dlopen: %s\n", dlerror()); exit(2); }
	CK_RV (*gfl)(CK_FUNCTION_LIST_PTR_PTR) = (CK_RV (*)(CK_FUNCTION_LIST_PTR_PTR))dlsym(h, "C_GetFunctionList");
	CK_FUNCTION_LIST *f;
	if (!gfl || gfl(&f) != CKR_OK) { fprintf(stderr, "C_GetFunctionList\n"); exit(2); }
	CK_C_INITIALIZE_ARGS args = {0};
	args.flags = CKF_OS_LOCKING_OK;
	CK_RV rv = f->C_Initialize(&args);
	if (rv != CKR_OK) { fprintf(stderr, "C_Initialize: 0x%lx\n", rv); exit(2); }
	return f;
}

static void status(void) {
	FILE *s = fopen("/proc/self/status", "r");
	char line[256];
	long rss = -1, hwm = -1;
	while (s && fgets(line, sizeof line, s)) {
		sscanf(line, "VmRSS: %ld", &rss);
		sscanf(line, "VmHWM: %ld", &hwm);
	}
	printf("rss %ld hwm %ld\n", rss, hwm);
}

static long long now(void) {
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int main(int argc, char **argv) {
	if (argc >= 2 && !strcmp(argv[1], "rss")) {
		if (argc >= 3) {
			CK_FUNCTION_LIST *f = load(argv[2]);
			CK_ULONG n = 0;
			f->C_GetSlotList(CK_FALSE, NULL, &n);
		}
		status();
		return 0;
	}
	if (argc != 6 || strcmp(argv[1], "sign")) {
		fprintf(stderr, "usage: benchclient rss [MODULE] | sign MODULE PIN ID N\n");
		return 2;
	}
	CK_FUNCTION_LIST *f = load(argv[2]);
	CK_SLOT_ID slots[16];
	CK_ULONG n = 16;
	if (f->C_GetSlotList(CK_TRUE, slots, &n) != CKR_OK || n == 0) { fprintf(stderr, "no token\n"); return 1; }
	CK_SESSION_HANDLE s;
	CK_RV rv = f->C_OpenSession(slots[0], CKF_SERIAL_SESSION, NULL, NULL, &s);
	if (rv == CKR_OK) rv = f->C_Login(s, CKU_USER, (CK_UTF8CHAR *)argv[3], strlen(argv[3]));
	if (rv != CKR_OK) { fprintf(stderr, "login: 0x%lx\n", rv); return 1; }
	CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
	CK_BYTE id = (CK_BYTE)strtol(argv[4], NULL, 16);
	CK_ATTRIBUTE tmpl[] = {{CKA_CLASS, &cls, sizeof cls}, {CKA_ID, &id, 1}};
	CK_OBJECT_HANDLE key;
	CK_ULONG found = 0;
	f->C_FindObjectsInit(s, tmpl, 2);
	f->C_FindObjects(s, &key, 1, &found);
	f->C_FindObjectsFinal(s);
	if (!found) { fprintf(stderr, "no private key %s\n", argv[4]); return 1; }
	CK_MECHANISM mech = {CKM_ECDSA, NULL, 0};
	CK_BYTE digest[32], sig[256];
	memset(digest, 0x5A, sizeof digest);
	for (int i = 0, runs = atoi(argv[5]); i < runs; i++) {
		CK_ULONG len = sizeof sig;
		if ((rv = f->C_SignInit(s, &mech, key)) != CKR_OK) { fprintf(stderr, "C_SignInit: 0x%lx\n", rv); return 1; }
		long long t0 = now();
		rv = f->C_Sign(s, digest, sizeof digest, sig, &len);
		long long t1 = now();
		if (rv != CKR_OK) { fprintf(stderr, "C_Sign: 0x%lx\n", rv); return 1; }
		printf("sign %lld\n", t1 - t0);
	}
	f->C_Finalize(NULL);
	return 0;
}

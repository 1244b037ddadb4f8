//go:build hwtest

package hwtest

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/p11-card/p11-card/cards/piv/pivtest"
)

// cConformance exercises the C boundary the way only C can: initialisation arguments,
// NULL pointers, the 3.0 interface functions, size queries on attributes, a waiter woken
// by C_Finalize, and a fork (the child must fail cleanly, never hang).
const cConformance = `
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include "pkcs11.h"

static int failures;
#define CHECK(name, got, want) do { CK_RV g_ = (got); if (g_ != (want)) { printf("FAIL %s: got 0x%lx want 0x%lx\n", name, g_, (CK_RV)(want)); failures++; } else printf("PASS %s\n", name); } while (0)

static CK_FUNCTION_LIST *f;
static CK_RV dummy_create(CK_VOID_PTR_PTR m) { return CKR_OK; }
static CK_RV dummy_mutex(CK_VOID_PTR m) { return CKR_OK; }

static void *waiter(void *arg) {
	CK_SLOT_ID slot;
	*(CK_RV *)arg = f->C_WaitForSlotEvent(0, &slot, NULL);
	return NULL;
}

int main(int argc, char **argv) {
	void *h = dlopen(argv[1], RTLD_NOW);
	if (!h) { printf("FAIL dlopen: %s\n", dlerror()); return 1; }
	CK_RV (*gfl)(CK_FUNCTION_LIST_PTR_PTR) = dlsym(h, "C_GetFunctionList");
	CK_RV (*gil)(CK_INTERFACE_PTR, CK_ULONG_PTR) = dlsym(h, "C_GetInterfaceList");
	CK_RV (*gi)(CK_UTF8CHAR_PTR, CK_VERSION_PTR, CK_INTERFACE_PTR_PTR, CK_FLAGS) = dlsym(h, "C_GetInterface");
	CHECK("C_GetFunctionList(NULL)", gfl(NULL), CKR_ARGUMENTS_BAD);
	CHECK("C_GetFunctionList", gfl(&f), CKR_OK);
	CHECK("function list version 2.40", f->version.major * 100 + f->version.minor, 240);
	CK_ULONG n = 0;
	CHECK("C_GetInterfaceList count", gil(NULL, &n), CKR_OK);
	CHECK("two interfaces", n, 2);
	CK_INTERFACE ifs[2];
	CK_ULONG small = 1;
	CHECK("C_GetInterfaceList small", gil(ifs, &small), CKR_BUFFER_TOO_SMALL);
	CHECK("C_GetInterfaceList", gil(ifs, &n), CKR_OK);
	CHECK("interface name", strcmp((char *)ifs[0].pInterfaceName, "PKCS 11"), 0);
	CK_INTERFACE_PTR ip;
	CK_VERSION v30 = {3, 0};
	CHECK("C_GetInterface 3.0", gi((CK_UTF8CHAR_PTR)"PKCS 11", &v30, &ip, 0), CKR_OK);
	CK_FUNCTION_LIST_3_0 *f3 = ip->pFunctionList;
	CHECK("3.0 list version", f3->version.major, 3);
	CHECK("C_GetInterface other name", gi((CK_UTF8CHAR_PTR)"Vendor X", NULL, &ip, 0), CKR_ARGUMENTS_BAD);

	CK_SLOT_ID slots[8];
	CK_ULONG ns = 8;
	CHECK("before C_Initialize", f->C_GetSlotList(CK_TRUE, slots, &ns), CKR_CRYPTOKI_NOT_INITIALIZED);
	CK_C_INITIALIZE_ARGS args;
	memset(&args, 0, sizeof args);
	args.pReserved = &args;
	CHECK("pReserved set", f->C_Initialize(&args), CKR_ARGUMENTS_BAD);
	memset(&args, 0, sizeof args);
	args.CreateMutex = dummy_create;
	CHECK("some mutex callbacks", f->C_Initialize(&args), CKR_ARGUMENTS_BAD);
	args.DestroyMutex = dummy_mutex; args.LockMutex = dummy_mutex; args.UnlockMutex = dummy_mutex;
	CHECK("mutex callbacks without OS locking", f->C_Initialize(&args), CKR_CANT_LOCK);
	args.flags = CKF_OS_LOCKING_OK;
	CHECK("C_Initialize", f->C_Initialize(&args), CKR_OK);
	CHECK("C_Initialize twice", f->C_Initialize(NULL), CKR_CRYPTOKI_ALREADY_INITIALIZED);
	CHECK("C_GetInfo(NULL)", f->C_GetInfo(NULL), CKR_ARGUMENTS_BAD);
	CHECK("C_GetSlotList(NULL count)", f->C_GetSlotList(CK_TRUE, NULL, NULL), CKR_ARGUMENTS_BAD);
	ns = 0;
	CHECK("C_GetSlotList count", f->C_GetSlotList(CK_TRUE, NULL, &ns), CKR_OK);
	CHECK("one token", ns, 1);
	ns = 0;
	CHECK("C_GetSlotList small", f->C_GetSlotList(CK_TRUE, slots, &ns), CKR_BUFFER_TOO_SMALL);
	ns = 8;
	CHECK("C_GetSlotList", f->C_GetSlotList(CK_TRUE, slots, &ns), CKR_OK);
	CK_SESSION_HANDLE s;
	CHECK("C_OpenSession(NULL)", f->C_OpenSession(slots[0], CKF_SERIAL_SESSION, NULL, NULL, NULL), CKR_ARGUMENTS_BAD);
	CHECK("C_OpenSession", f->C_OpenSession(slots[0], CKF_SERIAL_SESSION, NULL, NULL, &s), CKR_OK);
	CHECK("C_Login", f->C_Login(s, CKU_USER, (CK_UTF8CHAR_PTR)"123456", 6), CKR_OK);
	CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
	CK_BYTE id = 1;
	CK_ATTRIBUTE tmpl[] = {{CKA_CLASS, &cls, sizeof cls}, {CKA_ID, &id, 1}};
	CHECK("C_FindObjectsInit(NULL, 2)", f->C_FindObjectsInit(s, NULL, 2), CKR_ARGUMENTS_BAD);
	CHECK("C_FindObjectsInit", f->C_FindObjectsInit(s, tmpl, 2), CKR_OK);
	CK_OBJECT_HANDLE k; CK_ULONG found = 0;
	CHECK("C_FindObjects", f->C_FindObjects(s, &k, 1, &found), CKR_OK);
	CHECK("found one", found, 1);
	CHECK("C_FindObjectsFinal", f->C_FindObjectsFinal(s), CKR_OK);
	CK_ATTRIBUTE q[] = {{CKA_MODULUS, NULL, 0}, {CKA_PRIVATE_EXPONENT, NULL, 0}, {0x7777, NULL, 0}, {CKA_ID, NULL, 0}};
	CK_RV rv = f->C_GetAttributeValue(s, k, q, 4);
	if (rv != CKR_ATTRIBUTE_SENSITIVE && rv != CKR_ATTRIBUTE_TYPE_INVALID) { printf("FAIL size query rv 0x%lx\n", rv); failures++; }
	CHECK("modulus length", q[0].ulValueLen, 256);
	CHECK("sensitive length", q[1].ulValueLen, CK_UNAVAILABLE_INFORMATION);
	CHECK("invalid length", q[2].ulValueLen, CK_UNAVAILABLE_INFORMATION);
	CHECK("id length", q[3].ulValueLen, 1);
	CK_BYTE buf[8];
	CK_ATTRIBUTE q2[] = {{CKA_MODULUS, buf, sizeof buf}, {CKA_ID, buf, 1}};
	CHECK("short buffer", f->C_GetAttributeValue(s, k, q2, 2), CKR_BUFFER_TOO_SMALL);
	CHECK("short buffer length", q2[0].ulValueLen, CK_UNAVAILABLE_INFORMATION);
	CHECK("other attribute copied", q2[1].ulValueLen, 1);
	CK_MECHANISM m = {CKM_SHA256_RSA_PKCS, NULL, 0};
	CHECK("C_SignInit(NULL mech)", f->C_SignInit(s, NULL, k), CKR_ARGUMENTS_BAD);
	CHECK("C_SignInit", f->C_SignInit(s, &m, k), CKR_OK);
	CK_ULONG sl = 0;
	CHECK("C_Sign length query", f->C_Sign(s, (CK_BYTE_PTR)"x", 1, NULL, &sl), CKR_OK);
	CHECK("signature length", sl, 256);
	CK_BYTE sig[256];
	sl = 10;
	CHECK("C_Sign small", f->C_Sign(s, (CK_BYTE_PTR)"x", 1, sig, &sl), CKR_BUFFER_TOO_SMALL);
	CHECK("C_Sign small length", sl, 256);
	CHECK("C_Sign", f->C_Sign(s, (CK_BYTE_PTR)"x", 1, sig, &sl), CKR_OK);
	CHECK("C_Sign(NULL data, 5)", f->C_Sign(s, NULL, 5, sig, &sl), CKR_ARGUMENTS_BAD);
	CHECK("C_GetFunctionStatus", f->C_GetFunctionStatus(s), CKR_FUNCTION_NOT_PARALLEL);
	CHECK("C_GenerateKey", f->C_GenerateKey(s, &m, NULL, 0, &k), CKR_FUNCTION_NOT_SUPPORTED);
	CHECK("3.0 C_SessionCancel", f3->C_SessionCancel(s, CKF_SIGN), CKR_OK);
	CHECK("3.0 C_MessageSignInit", f3->C_MessageSignInit(s, &m, k), CKR_FUNCTION_NOT_SUPPORTED);
	CHECK("3.0 C_LoginUser", f3->C_LoginUser(s, CKU_USER, (CK_UTF8CHAR_PTR)"123456", 6, NULL, 0), CKR_USER_ALREADY_LOGGED_IN);
	CK_SLOT_ID ev;
	CHECK("C_WaitForSlotEvent(NULL)", f->C_WaitForSlotEvent(CKF_DONT_BLOCK, NULL, NULL), CKR_ARGUMENTS_BAD);
	CHECK("C_WaitForSlotEvent DONT_BLOCK", f->C_WaitForSlotEvent(CKF_DONT_BLOCK, &ev, NULL), CKR_NO_EVENT);

	// Fork: the child did not initialise; it must not reach the parent's Go state.
	fflush(stdout);
	pid_t pid = fork();
	if (pid == 0) {
		CK_ULONG cn = 8;
		int bad = 0;
		if (f->C_GetSlotList(CK_TRUE, slots, &cn) != CKR_CRYPTOKI_NOT_INITIALIZED) bad |= 1;
		if (f->C_GetSessionInfo(s, NULL) != CKR_CRYPTOKI_NOT_INITIALIZED) bad |= 2;
		if (f->C_Initialize(NULL) != CKR_FUNCTION_FAILED) bad |= 4;
		if (f->C_Finalize(NULL) != CKR_CRYPTOKI_NOT_INITIALIZED) bad |= 8;
		_exit(bad);
	}
	int st = 0;
	waitpid(pid, &st, 0);
	CHECK("forked child fails cleanly", WIFEXITED(st) ? WEXITSTATUS(st) : 100, 0);
	CK_SESSION_INFO si;
	CHECK("parent still works after fork", f->C_GetSessionInfo(s, &si), CKR_OK);

	// A blocked waiter is woken by C_Finalize.
	pthread_t th;
	CK_RV wrv = 0;
	pthread_create(&th, NULL, waiter, &wrv);
	usleep(200000);
	CHECK("C_Finalize(non-NULL)", f->C_Finalize(&args), CKR_ARGUMENTS_BAD);
	CHECK("C_Finalize", f->C_Finalize(NULL), CKR_OK);
	pthread_join(th, NULL);
	CHECK("waiter woken by C_Finalize", wrv, CKR_CRYPTOKI_NOT_INITIALIZED);
	CHECK("C_Finalize twice", f->C_Finalize(NULL), CKR_CRYPTOKI_NOT_INITIALIZED);
	CHECK("re-initialise", f->C_Initialize(NULL), CKR_OK);
	CHECK("final C_Finalize", f->C_Finalize(NULL), CKR_OK);
	printf(failures ? "FAILURES %d\n" : "ALL PASS\n", failures);
	return failures != 0;
}
`

func TestModuleCConformance(t *testing.T) {
	modCard(t, pivtest.Options{})
	so, _ := modBuild(t)
	gcc := needTool(t, "gcc")
	dir := t.TempDir()
	src := filepath.Join(dir, "conf.c")
	if err := os.WriteFile(src, []byte(cConformance), 0o644); err != nil {
		t.Fatal(err)
	}
	hdr, _ := filepath.Abs("../p11")
	bin := filepath.Join(dir, "conf")
	if out, err := exec.Command(gcc, "-Wall", "-I", hdr, "-o", bin, src, "-ldl", "-lpthread").CombinedOutput(); err != nil {
		t.Fatalf("gcc: %v\n%s", err, out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := toolCmd(t, ctx, bin, so).CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("conformance program hung:\n%s", out)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(line, "FAIL") {
			t.Error(line)
		}
	}
	if err != nil || !strings.Contains(string(out), "ALL PASS") {
		t.Errorf("conformance: %v\n%s", err, out)
	}
}

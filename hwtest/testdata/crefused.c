// crefused: a client whose first C_Initialize is refused (pReserved set). It waits for a
// line on stdin before it initialises again, lists the tokens and finalises
// (TestModuleEarlyContextsRefused).
#include <dlfcn.h>
#include <stdio.h>
#include "pkcs11.h"

int main(int argc, char **argv) {
	void *h = dlopen(argv[1], RTLD_NOW);
	if (!h) { printf("dlopen: %s\n", dlerror()); return 1; }
	CK_RV (*gfl)(CK_FUNCTION_LIST_PTR_PTR) = dlsym(h, "C_GetFunctionList");
	CK_FUNCTION_LIST_PTR f;
	if (gfl(&f) != CKR_OK) return 1;
	CK_C_INITIALIZE_ARGS a = {0};
	a.pReserved = &a;
	printf("refused 0x%lx\n", f->C_Initialize(&a));
	fflush(stdout);
	char line[8];
	if (!fgets(line, sizeof line, stdin)) return 1;
	printf("initialize 0x%lx\n", f->C_Initialize(NULL));
	CK_ULONG n = 0;
	f->C_GetSlotList(CK_TRUE, NULL, &n);
	printf("tokens %lu\n", n);
	printf("finalize 0x%lx\n", f->C_Finalize(NULL));
	return 0;
}

/* benchclient: the C side of `make bench` (hwtest/bench_test.go).
 *
 *   benchclient rss [MODULE]           C_Initialize and C_GetSlotList, then prints
 *                                      "rss KB hwm KB anon KB" (without MODULE: the bare process)
 *   benchclient sign MODULE PIN ID N   logs in, signs a SHA-256 digest N times with
 *                                      CKM_ECDSA and the private key of CKA_ID ID (one
 *                                      byte, hex), prints "sign NS" per C_Sign, in ns
 *   benchclient wait MODULE            prints "waiting", then "event SLOT present" or
 *                                      "event SLOT absent" per C_WaitForSlotEvent until a
 *                                      token leaves
 *   benchclient pair MODULE PIN ID N T signs N times with CKM_ECDSA and key ID on each of
 *                                      the first two tokens: T=1 one thread alternating
 *                                      between them, T=2 a thread per token; prints
 *                                      "pair NS" for all N
 *   benchclient bare READER N HEX...   connects to READER through libpcsclite and sends
 *                                      the APDUs HEX... in one transaction, N times;
 *                                      prints "bare NS" per round: what the module's
 *                                      C_Sign is held against
 *   benchclient phases MODULE          a child process loads MODULE, initializes it, lists
 *                                      the slots and their tokens as pkcs11-tool -L does,
 *                                      finalizes and exits; prints "phases LOAD INIT FINAL
 *                                      EXIT" in ns: dlopen and C_GetFunctionList, C_Initialize
 *                                      to the last C_GetTokenInfo, C_Finalize, and _exit to
 *                                      the parent's waitpid
 */
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <winscard.h>
#include "pkcs11.h"

/* The module's function list; exits on failure. */
static CK_FUNCTION_LIST *open_module(const char *path) {
	void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (!h) { fprintf(stderr, "dlopen: %s\n", dlerror()); exit(2); }
	CK_RV (*gfl)(CK_FUNCTION_LIST_PTR_PTR) = (CK_RV (*)(CK_FUNCTION_LIST_PTR_PTR))dlsym(h, "C_GetFunctionList");
	CK_FUNCTION_LIST *f;
	if (!gfl || gfl(&f) != CKR_OK) { fprintf(stderr, "C_GetFunctionList\n"); exit(2); }
	return f;
}

/* C_Initialize with CKF_OS_LOCKING_OK, as NSS and p11-kit call it; exits on failure. */
static void initialize(CK_FUNCTION_LIST *f) {
	CK_C_INITIALIZE_ARGS args = {0};
	args.flags = CKF_OS_LOCKING_OK;
	CK_RV rv = f->C_Initialize(&args);
	if (rv != CKR_OK) { fprintf(stderr, "C_Initialize: 0x%lx\n", rv); exit(2); }
}

static CK_FUNCTION_LIST *load(const char *path) {
	CK_FUNCTION_LIST *f = open_module(path);
	initialize(f);
	return f;
}

static void status(void) {
	FILE *s = fopen("/proc/self/status", "r");
	char line[256];
	long rss = -1, hwm = -1, anon = -1;
	while (s && fgets(line, sizeof line, s)) {
		sscanf(line, "VmRSS: %ld", &rss);
		sscanf(line, "VmHWM: %ld", &hwm);
		sscanf(line, "RssAnon: %ld", &anon);
	}
	printf("rss %ld hwm %ld anon %ld\n", rss, hwm, anon);
}

static long long now(void) {
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* A session on a token, logged in, with the private key of CKA_ID id. */
struct signer {
	CK_FUNCTION_LIST *f;
	CK_SESSION_HANDLE s;
	CK_OBJECT_HANDLE key;
};

static int open_key(CK_FUNCTION_LIST *f, CK_SLOT_ID slot, const char *pin, CK_BYTE id, struct signer *sg) {
	sg->f = f;
	CK_RV rv = f->C_OpenSession(slot, CKF_SERIAL_SESSION, NULL, NULL, &sg->s);
	if (rv == CKR_OK) rv = f->C_Login(sg->s, CKU_USER, (CK_UTF8CHAR *)pin, strlen(pin));
	if (rv != CKR_OK && rv != CKR_USER_ALREADY_LOGGED_IN) { fprintf(stderr, "login: 0x%lx\n", rv); return 0; }
	CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
	CK_ATTRIBUTE tmpl[] = {{CKA_CLASS, &cls, sizeof cls}, {CKA_ID, &id, 1}};
	CK_ULONG found = 0;
	f->C_FindObjectsInit(sg->s, tmpl, 2);
	f->C_FindObjects(sg->s, &sg->key, 1, &found);
	f->C_FindObjectsFinal(sg->s);
	if (!found) { fprintf(stderr, "no private key %02x\n", id); return 0; }
	return 1;
}

static CK_RV sign_once(struct signer *sg) {
	CK_MECHANISM mech = {CKM_ECDSA, NULL, 0};
	CK_BYTE digest[32], sig[256];
	CK_ULONG len = sizeof sig;
	memset(digest, 0x5A, sizeof digest);
	CK_RV rv = sg->f->C_SignInit(sg->s, &mech, sg->key);
	return rv != CKR_OK ? rv : sg->f->C_Sign(sg->s, digest, sizeof digest, sig, &len);
}

/* A thread's share of `pair`: n signatures, round robin over m signers. */
struct job {
	struct signer *sg;
	int m, n;
	CK_RV rv;
};

static void *run_job(void *arg) {
	struct job *j = arg;
	for (int i = 0; i < j->n && j->rv == CKR_OK; i++) j->rv = sign_once(&j->sg[i % j->m]);
	return NULL;
}

static int pair(CK_FUNCTION_LIST *f, const char *pin, CK_BYTE id, int n, int threads) {
	CK_SLOT_ID slots[16];
	CK_ULONG count = 16;
	if (f->C_GetSlotList(CK_TRUE, slots, &count) != CKR_OK || count < 2) { fprintf(stderr, "want two tokens, have %lu\n", count); return 1; }
	struct signer sg[2];
	for (int i = 0; i < 2; i++)
		if (!open_key(f, slots[i], pin, id, &sg[i])) return 1;
	struct job jobs[2] = {{sg, 2, n, CKR_OK}, {NULL, 1, 0, CKR_OK}};
	if (threads == 2) {
		jobs[0] = (struct job){&sg[0], 1, n / 2, CKR_OK};
		jobs[1] = (struct job){&sg[1], 1, n - n / 2, CKR_OK};
	}
	pthread_t th[2];
	long long t0 = now();
	for (int i = 0; i < threads; i++) pthread_create(&th[i], NULL, run_job, &jobs[i]);
	for (int i = 0; i < threads; i++) pthread_join(th[i], NULL);
	long long t1 = now();
	for (int i = 0; i < threads; i++)
		if (jobs[i].rv != CKR_OK) { fprintf(stderr, "C_Sign: 0x%lx\n", jobs[i].rv); return 1; }
	printf("pair %lld\n", t1 - t0);
	return 0;
}

static int wait_events(CK_FUNCTION_LIST *f) {
	CK_ULONG n = 0;
	f->C_GetSlotList(CK_FALSE, NULL, &n);
	printf("waiting\n");
	fflush(stdout);
	for (;;) {
		CK_SLOT_ID slot;
		CK_RV rv = f->C_WaitForSlotEvent(0, &slot, NULL);
		if (rv != CKR_OK) { printf("wait: 0x%lx\n", rv); return 1; }
		CK_SLOT_INFO si;
		int present = f->C_GetSlotInfo(slot, &si) == CKR_OK && (si.flags & CKF_TOKEN_PRESENT);
		printf("event %lu %s\n", slot, present ? "present" : "absent");
		fflush(stdout);
		if (!present) return 0;
	}
}

static int unhex(const char *h, BYTE *out, DWORD max) {
	DWORD n = 0;
	for (; h[0] && h[1] && n < max; h += 2) {
		unsigned v;
		if (sscanf(h, "%2x", &v) != 1) return -1;
		out[n++] = (BYTE)v;
	}
	return h[0] ? -1 : (int)n;
}

static int bare(const char *reader, int runs, int napdus, char **hex) {
	SCARDCONTEXT ctx;
	SCARDHANDLE card;
	DWORD proto;
	if (SCardEstablishContext(SCARD_SCOPE_SYSTEM, NULL, NULL, &ctx) != SCARD_S_SUCCESS) { fprintf(stderr, "no context\n"); return 1; }
	if (SCardConnect(ctx, reader, SCARD_SHARE_SHARED, SCARD_PROTOCOL_T0 | SCARD_PROTOCOL_T1, &card, &proto) != SCARD_S_SUCCESS) {
		fprintf(stderr, "cannot connect to %s\n", reader);
		return 1;
	}
	const SCARD_IO_REQUEST *pci = proto == SCARD_PROTOCOL_T0 ? SCARD_PCI_T0 : SCARD_PCI_T1;
	static BYTE cmds[16][4096];
	int lens[16];
	if (napdus > 16) napdus = 16;
	for (int i = 0; i < napdus; i++)
		if ((lens[i] = unhex(hex[i], cmds[i], sizeof cmds[i])) < 0) { fprintf(stderr, "bad hex %s\n", hex[i]); return 2; }
	for (int r = 0; r < runs; r++) {
		long long t0 = now();
		if (SCardBeginTransaction(card) != SCARD_S_SUCCESS) { fprintf(stderr, "SCardBeginTransaction failed\n"); return 1; }
		for (int i = 0; i < napdus; i++) {
			BYTE resp[65538];
			DWORD rl = sizeof resp;
			if (SCardTransmit(card, pci, cmds[i], lens[i], NULL, resp, &rl) != SCARD_S_SUCCESS) { fprintf(stderr, "SCardTransmit failed\n"); return 1; }
		}
		SCardEndTransaction(card, SCARD_LEAVE_CARD);
		printf("bare %lld\n", now() - t0);
	}
	SCardDisconnect(card, SCARD_LEAVE_CARD);
	SCardReleaseContext(ctx);
	return 0;
}

/* The child of phases: what pkcs11-tool -L asks of a module, timed call by call. */
static void phases_child(const char *path, int out) {
	long long t[4];
	t[0] = now();
	CK_FUNCTION_LIST *f = open_module(path);
	t[1] = now();
	initialize(f);
	CK_SLOT_ID slots[16];
	CK_ULONG n = 16;
	if (f->C_GetSlotList(CK_FALSE, NULL, &n) != CKR_OK) _exit(5);
	n = 16;
	if (f->C_GetSlotList(CK_FALSE, slots, &n) != CKR_OK) _exit(5);
	for (CK_ULONG i = 0; i < n; i++) {
		CK_SLOT_INFO si;
		CK_TOKEN_INFO ti;
		if (f->C_GetSlotInfo(slots[i], &si) == CKR_OK && (si.flags & CKF_TOKEN_PRESENT)) f->C_GetTokenInfo(slots[i], &ti);
	}
	t[2] = now();
	f->C_Finalize(NULL);
	t[3] = now();
	if (write(out, t, sizeof t) != sizeof t) _exit(6);
	_exit(0);
}

static int phases(const char *path) {
	int p[2];
	if (pipe(p) != 0) return 1;
	fflush(stdout);
	pid_t pid = fork();
	if (pid < 0) return 1;
	if (pid == 0) {
		close(p[0]);
		phases_child(path, p[1]);
	}
	close(p[1]);
	long long t[4];
	ssize_t got = read(p[0], t, sizeof t);
	int st;
	waitpid(pid, &st, 0);
	long long end = now();
	if (got != sizeof t || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
		fprintf(stderr, "phases: the child failed (status 0x%x)\n", st);
		return 1;
	}
	printf("phases %lld %lld %lld %lld\n", t[1] - t[0], t[2] - t[1], t[3] - t[2], end - t[3]);
	return 0;
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
	if (argc == 3 && !strcmp(argv[1], "wait")) return wait_events(load(argv[2]));
	if (argc == 3 && !strcmp(argv[1], "phases")) return phases(argv[2]);
	if (argc >= 5 && !strcmp(argv[1], "bare")) return bare(argv[2], atoi(argv[3]), argc - 4, argv + 4);
	if (argc == 7 && !strcmp(argv[1], "pair"))
		return pair(load(argv[2]), argv[3], (CK_BYTE)strtol(argv[4], NULL, 16), atoi(argv[5]), atoi(argv[6]) == 2 ? 2 : 1);
	if (argc != 6 || strcmp(argv[1], "sign")) {
		fprintf(stderr, "usage: benchclient rss [MODULE] | sign MODULE PIN ID N | wait MODULE | pair MODULE PIN ID N T | bare READER N HEX... | phases MODULE\n");
		return 2;
	}
	CK_FUNCTION_LIST *f = load(argv[2]);
	CK_SLOT_ID slots[16];
	CK_ULONG n = 16;
	if (f->C_GetSlotList(CK_TRUE, slots, &n) != CKR_OK || n == 0) { fprintf(stderr, "no token\n"); return 1; }
	struct signer sg;
	if (!open_key(f, slots[0], argv[3], (CK_BYTE)strtol(argv[4], NULL, 16), &sg)) return 1;
	for (int i = 0, runs = atoi(argv[5]); i < runs; i++) {
		long long t0 = now();
		CK_RV rv = sign_once(&sg);
		long long t1 = now();
		if (rv != CKR_OK) { fprintf(stderr, "C_Sign: 0x%lx\n", rv); return 1; }
		printf("sign %lld\n", t1 - t0);
	}
	f->C_Finalize(NULL);
	return 0;
}

// cforks.c: the fork test of TestModuleCForks. A parent that initialised the module,
// logged in and keeps two threads busy in it (one signing in a loop, one listing slots,
// tokens and objects) forks 100 children, 10 at a time, so that forks land while Go is
// mid-call and holds its locks. Each child arms alarm(10), then calls C_Initialize,
// C_GetSlotList and C_Finalize, and reports the three return values through a pipe.
// By design (p11/doc.go) a child that did not exec fails without entering Go:
// C_Initialize gives CKR_FUNCTION_FAILED, the rest CKR_CRYPTOKI_NOT_INITIALIZED. A child
// may also work (a module that can); anything else fails the row, and so does a child
// killed by SIGALRM (a hang) or by any other signal (a crash). Then the parent must
// still sign. Last, children that exec this program in "child" mode load the module
// fresh, initialise it and list the token: the way a forked child gets a working module.
//
// Usage: cforks <module.so>          parent
//        cforks <module.so> child    exec'd child (exit 0: initialised, listed the token)
//
// Output: PASS/FAIL lines, "FORKS worked=… clean=… hung=… crashed=… bad=… seconds=…",
// "EXEC ok=…/…", "SIGNATURES n", then "ALL PASS" or "FAILURES n".
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "pkcs11.h"

#define CHILDREN 100
#define BATCH 10
#define EXECS 4

static CK_FUNCTION_LIST *f;
#include "p11find.h"
static int failures;
static CK_SLOT_ID slot;
static CK_BYTE digest[32] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32};

#define CHECK(name, got, want) do { CK_RV g_ = (got); if (g_ != (CK_RV)(want)) { printf("FAIL %s: got 0x%lx want 0x%lx\n", (name), g_, (CK_RV)(want)); failures++; } else printf("PASS %s\n", (name)); } while (0)

static double now(void) {
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static CK_FUNCTION_LIST *load(const char *path) {
	void *h = dlopen(path, RTLD_NOW);
	if (!h) { printf("FAIL dlopen: %s\n", dlerror()); return NULL; }
	CK_RV (*gfl)(CK_FUNCTION_LIST_PTR_PTR) = dlsym(h, "C_GetFunctionList");
	CK_FUNCTION_LIST *l = NULL;
	if (!gfl || gfl(&l) != CKR_OK) { printf("FAIL C_GetFunctionList\n"); return NULL; }
	return l;
}

// childMode is the exec'd child: a fresh process image loads the module and uses it.
static int childMode(const char *so) {
	if (!(f = load(so)))
		return 10;
	if (f->C_Initialize(NULL) != CKR_OK)
		return 11;
	CK_SLOT_ID slots[8];
	CK_ULONG n = 8;
	if (f->C_GetSlotList(CK_TRUE, slots, &n) != CKR_OK || n != 1)
		return 12;
	CK_TOKEN_INFO ti;
	if (f->C_GetTokenInfo(slots[0], &ti) != CKR_OK)
		return 13;
	CK_SESSION_HANDLE s;
	if (f->C_OpenSession(slots[0], CKF_SERIAL_SESSION, NULL, NULL, &s) != CKR_OK)
		return 14;
	if (findObject(s, CKO_PUBLIC_KEY, 4) == 0)
		return 15;
	if (f->C_Finalize(NULL) != CKR_OK)
		return 16;
	return 0;
}

static volatile int stop;
static CK_OBJECT_HANDLE signKey;

struct worker {
	CK_SESSION_HANDLE s;
	long ok, bad;
	CK_RV lastBad;
};

// signer signs in a loop in its own session (sessions are per thread here).
static void *signer(void *arg) {
	struct worker *w = arg;
	CK_MECHANISM m = {CKM_ECDSA, NULL, 0};
	while (!stop) {
		CK_BYTE sig[128];
		CK_ULONG sl = sizeof sig;
		CK_RV rv = f->C_SignInit(w->s, &m, signKey);
		if (rv == CKR_OK)
			rv = f->C_Sign(w->s, digest, sizeof digest, sig, &sl);
		if (rv == CKR_OK) w->ok++; else { w->bad++; w->lastBad = rv; }
	}
	return NULL;
}

// lister lists slots, token info and objects in a loop, in its own session.
static void *lister(void *arg) {
	struct worker *w = arg;
	while (!stop) {
		CK_SLOT_ID slots[8];
		CK_ULONG n = 8;
		CK_TOKEN_INFO ti;
		CK_RV rv = f->C_GetSlotList(CK_TRUE, slots, &n);
		if (rv == CKR_OK)
			rv = f->C_GetTokenInfo(slot, &ti);
		if (rv == CKR_OK && findObject(w->s, CKO_PUBLIC_KEY, 1) == 0)
			rv = CKR_GENERAL_ERROR;
		if (rv == CKR_OK) w->ok++; else { w->bad++; w->lastBad = rv; }
	}
	return NULL;
}

// forkChild runs in the child: only async-signal-safe calls before the module's shims
// (which call getpid and return), then _exit.
static void forkChild(int fd) {
	alarm(10);
	CK_RV rv[3];
	CK_SLOT_ID slots[8];
	CK_ULONG n = 8;
	rv[0] = f->C_Initialize(NULL);
	rv[1] = f->C_GetSlotList(CK_TRUE, slots, &n);
	rv[2] = f->C_Finalize(NULL);
	ssize_t w = write(fd, rv, sizeof rv);
	(void)w;
	_exit(0);
}

int main(int argc, char **argv) {
	if (argc == 3 && strcmp(argv[2], "child") == 0)
		return childMode(argv[1]);
	if (!(f = load(argv[1])))
		return 1;
	CHECK("C_Initialize", f->C_Initialize(NULL), CKR_OK);
	CK_SLOT_ID slots[8];
	CK_ULONG n = 8;
	CHECK("C_GetSlotList", f->C_GetSlotList(CK_TRUE, slots, &n), CKR_OK);
	if (n != 1) { printf("FAIL want one token, have %lu\n", n); return 1; }
	slot = slots[0];
	CK_SESSION_HANDLE s;
	struct worker sw = {0}, lw = {0};
	CHECK("C_OpenSession", f->C_OpenSession(slot, CKF_SERIAL_SESSION, NULL, NULL, &s), CKR_OK);
	CHECK("C_OpenSession (signer)", f->C_OpenSession(slot, CKF_SERIAL_SESSION, NULL, NULL, &sw.s), CKR_OK);
	CHECK("C_OpenSession (lister)", f->C_OpenSession(slot, CKF_SERIAL_SESSION, NULL, NULL, &lw.s), CKR_OK);
	CHECK("C_Login", f->C_Login(s, CKU_USER, (CK_UTF8CHAR_PTR) "123456", 6), CKR_OK);
	signKey = findObject(s, CKO_PRIVATE_KEY, 4);
	if (!signKey) { printf("FAIL private key 04 not found\n"); return 1; }

	pthread_t st, lt;
	pthread_create(&st, NULL, signer, &sw);
	pthread_create(&lt, NULL, lister, &lw);
	usleep(100000);

	int worked = 0, clean = 0, hung = 0, crashed = 0, bad = 0;
	long signed0 = sw.ok, listed0 = lw.ok;
	double start = now(), slowest = 0;
	for (int b = 0; b < CHILDREN / BATCH; b++) {
		pid_t pids[BATCH];
		int fds[BATCH];
		double t0[BATCH];
		fflush(stdout);
		for (int i = 0; i < BATCH; i++) {
			int p[2];
			if (pipe(p) != 0) { printf("FAIL pipe: %s\n", strerror(errno)); return 1; }
			t0[i] = now();
			pids[i] = fork();
			if (pids[i] == 0) {
				close(p[0]);
				forkChild(p[1]);
			}
			close(p[1]);
			fds[i] = p[0];
			if (pids[i] < 0) { printf("FAIL fork: %s\n", strerror(errno)); return 1; }
			if (i % 3 == 2)
				usleep(2000); // vary where in the workers' calls the next forks land
		}
		for (int i = 0; i < BATCH; i++) {
			int c = b * BATCH + i, st = 0;
			CK_RV rv[3] = {~0UL, ~0UL, ~0UL};
			ssize_t got = read(fds[i], rv, sizeof rv);
			close(fds[i]);
			waitpid(pids[i], &st, 0);
			double d = now() - t0[i];
			if (d > slowest) slowest = d;
			if (WIFSIGNALED(st) && WTERMSIG(st) == SIGALRM) {
				hung++;
				printf("FAIL fork child %d: hung (killed by SIGALRM)\n", c);
				failures++;
			} else if (WIFSIGNALED(st)) {
				crashed++;
				printf("FAIL fork child %d: crashed (signal %d)\n", c, WTERMSIG(st));
				failures++;
			} else if (got != (ssize_t)sizeof rv || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
				bad++;
				printf("FAIL fork child %d: no report (read %zd, status 0x%x)\n", c, got, st);
				failures++;
			} else if (rv[0] == CKR_FUNCTION_FAILED && rv[1] == CKR_CRYPTOKI_NOT_INITIALIZED && rv[2] == CKR_CRYPTOKI_NOT_INITIALIZED) {
				clean++;
				printf("PASS fork child %d: failed cleanly\n", c);
			} else if (rv[0] == CKR_OK && rv[1] == CKR_OK && rv[2] == CKR_OK) {
				worked++;
				printf("PASS fork child %d: worked\n", c);
			} else {
				bad++;
				printf("FAIL fork child %d: C_Initialize 0x%lx, C_GetSlotList 0x%lx, C_Finalize 0x%lx\n", c, rv[0], rv[1], rv[2]);
				failures++;
			}
		}
	}
	double dur = now() - start;
	long signedDuring = sw.ok - signed0, listedDuring = lw.ok - listed0;
	printf("FORKS worked=%d clean=%d hung=%d crashed=%d bad=%d seconds=%.2f slowest=%.3f signatures=%ld listings=%ld\n",
		worked, clean, hung, crashed, bad, dur, slowest, signedDuring, listedDuring);
	CHECK("every fork child worked or failed cleanly", worked + clean, CHILDREN);

	// Children that exec: a fresh image loads the module and lists the token, while the
	// parent's threads keep going.
	pid_t ep[EXECS];
	int eok = 0;
	fflush(stdout);
	for (int i = 0; i < EXECS; i++) {
		ep[i] = fork();
		if (ep[i] == 0) {
			alarm(30); // survives exec: a hang in the child dies by SIGALRM
			char *args[] = {"/proc/self/exe", argv[1], "child", NULL};
			execv("/proc/self/exe", args);
			_exit(99);
		}
	}
	for (int i = 0; i < EXECS; i++) {
		int st = 0;
		char name[64];
		waitpid(ep[i], &st, 0);
		snprintf(name, sizeof name, "exec'd child %d initialises and lists the token", i);
		if (WIFSIGNALED(st)) {
			printf("FAIL %s: killed by signal %d%s\n", name, WTERMSIG(st), WTERMSIG(st) == SIGALRM ? " (hung)" : "");
			failures++;
			continue;
		}
		CHECK(name, WIFEXITED(st) ? WEXITSTATUS(st) : 100, 0);
		if (WIFEXITED(st) && WEXITSTATUS(st) == 0)
			eok++;
	}
	printf("EXEC ok=%d/%d\n", eok, EXECS);

	stop = 1;
	pthread_join(st, NULL);
	pthread_join(lt, NULL);
	printf("SIGNATURES %ld (failed %ld), LISTINGS %ld (failed %ld)\n", sw.ok, sw.bad, lw.ok, lw.bad);
	CHECK("signer thread: no failure while forking", sw.lastBad, CKR_OK);
	CHECK("lister thread: no failure while forking", lw.lastBad, CKR_OK);
	if (signedDuring + listedDuring == 0) { printf("FAIL the threads made no call while the children were forked\n"); failures++; }
	CK_MECHANISM m = {CKM_ECDSA, NULL, 0};
	CK_BYTE sig[128];
	CK_ULONG sl = sizeof sig;
	CHECK("parent: C_SignInit after the forks", f->C_SignInit(s, &m, signKey), CKR_OK);
	CHECK("parent: C_Sign after the forks", f->C_Sign(s, digest, sizeof digest, sig, &sl), CKR_OK);
	CHECK("C_Finalize", f->C_Finalize(NULL), CKR_OK);
	printf(failures ? "FAILURES %d\n" : "ALL PASS\n", failures);
	return failures != 0;
}

// stackbound.c (test): ../stackbound.c's answer for the main thread against the stack's
// mapping in /proc/self/maps and glibc's answer, under several stack limits, and its
// answer for another thread, which must be glibc's own. Linked with
// -Wl,--wrap=pthread_getattr_np as the module is. Prints a FAIL line for every mismatch
// and ALL PASS at the end when there was none.
#define _GNU_SOURCE
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

int __real_pthread_getattr_np(pthread_t th, pthread_attr_t *attr);

static int failed;

static void fail(const char *who, const char *what, uintptr_t got, uintptr_t want) {
	printf("FAIL %s: %s %#lx, want %#lx\n", who, what, (unsigned long)got, (unsigned long)want);
	failed = 1;
}

// bounds asks f for the calling thread's stack: lo and hi, or 0 when f fails.
static int bounds(int (*f)(pthread_t, pthread_attr_t *), uintptr_t *lo, uintptr_t *hi) {
	pthread_attr_t a;
	void *addr;
	size_t size;
	if (f(pthread_self(), &a) != 0) return 0;
	pthread_attr_getstack(&a, &addr, &size);
	pthread_attr_destroy(&a);
	*lo = (uintptr_t)addr;
	*hi = *lo + size;
	return 1;
}

// stack_end is the end of the [stack] mapping, 0 if not found.
static uintptr_t stack_end(void) {
	FILE *f = fopen("/proc/self/maps", "r");
	char line[512];
	unsigned long from, to, end = 0;
	while (f != NULL && fgets(line, sizeof line, f) != NULL)
		if (strstr(line, "[stack]") != NULL && sscanf(line, "%lx-%lx", &from, &to) == 2) end = to;
	if (f != NULL) fclose(f);
	return end;
}

// check compares the wrapped pthread_getattr_np (the one the module's runtime calls) with
// glibc's. For the main thread (size != 0): the top must be the mapping's end, and the
// bottom size below it, which for a limit of 32 MB or less is glibc's bottom (glibc's top
// is the page the process started in, below the arguments and the environment). For
// another thread (size 0) the answers must be the same.
static void check(const char *who, uintptr_t size, int glibc_bottom) {
	uintptr_t lo, hi, glo, ghi;
	char here;
	uintptr_t sp = (uintptr_t)&here;
	if (!bounds(pthread_getattr_np, &lo, &hi) || !bounds(__real_pthread_getattr_np, &glo, &ghi)) {
		printf("FAIL %s: pthread_getattr_np failed\n", who);
		failed = 1;
		return;
	}
	if (size == 0) {
		if (hi != ghi) fail(who, "top", hi, ghi);
		if (lo != glo) fail(who, "bottom", lo, glo);
	} else {
		uintptr_t end = stack_end();
		if (hi != end) fail(who, "top", hi, end);
		if (hi - lo != size) fail(who, "bottom", lo, hi - size);
		if (glibc_bottom && lo != glo) fail(who, "bottom against glibc's", lo, glo);
		if (ghi > hi) fail(who, "glibc's top above ours", ghi, hi);
	}
	if (sp <= lo || sp > hi) fail(who, "stack pointer outside", sp, lo);
}

static void *thread(void *arg) {
	check("another thread", 0, 0);
	return NULL;
}

int main(void) {
	struct rlimit rl;
	getrlimit(RLIMIT_STACK, &rl);
	const struct {
		const char *name;
		rlim_t limit;
		uintptr_t size;
		int glibc_bottom;
	} limits[] = {
		{"main thread, 8 MB limit", 8 << 20, 8 << 20, 1},
		{"main thread, 1 MB + 100 bytes limit", (1 << 20) + 100, 1 << 20, 1},
		{"main thread, no limit", RLIM_INFINITY, 32 << 20, 0},
		{"main thread, 1 GB limit", 1 << 30, 32 << 20, 0},
	};
	for (size_t i = 0; i < sizeof limits / sizeof limits[0]; i++) {
		struct rlimit set = {limits[i].limit, rl.rlim_max};
		if (rl.rlim_max != RLIM_INFINITY && limits[i].limit > rl.rlim_max) continue;
		if (setrlimit(RLIMIT_STACK, &set) != 0) {
			printf("FAIL %s: setrlimit\n", limits[i].name);
			failed = 1;
			continue;
		}
		check(limits[i].name, limits[i].size, limits[i].glibc_bottom);
	}
	setrlimit(RLIMIT_STACK, &rl);
	pthread_t t;
	pthread_create(&t, NULL, thread, NULL);
	pthread_join(t, NULL);
	if (!failed) printf("ALL PASS\n");
	return failed;
}

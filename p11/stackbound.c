//go:build linux

// stackbound.c: the main thread's stack bounds for the Go runtime, without glibc's read of
// /proc/self/maps. The first call into Go from a thread the runtime did not create asks
// for that thread's stack (runtime/cgo: pthread_getattr_np). For a thread made by
// pthread_create glibc answers from its own records; for the process's main thread it has
// none and reads /proc/self/maps to find the stack's mapping: about 0.2 ms in
// pkcs11-tool, 1 ms in a process with a thousand mappings more. Applications mostly call
// C_Initialize from the main thread, so every process paid it. The linker sends the
// runtime's call here (-Wl,--wrap in main.go); other threads, and the other libraries of
// the process, get glibc's answer.
#define _GNU_SOURCE
#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

int __real_pthread_getattr_np(pthread_t th, pthread_attr_t *attr);

// A larger or unlimited main-thread stack is taken as this, glibc's default for a new
// thread: the runtime only needs bounds that hold the frames it runs on, and the kernel
// keeps at least 128 MB below the stack's top free of other mappings.
#define UNLIMITED_STACK (32u << 20)

int __wrap_pthread_getattr_np(pthread_t th, pthread_attr_t *attr) {
#ifndef __GLIBC__
	return __real_pthread_getattr_np(th, attr);
#else
	if (!pthread_equal(th, pthread_self()) || syscall(SYS_gettid) != getpid())
		return __real_pthread_getattr_np(th, attr);
	// The top is the end of the stack's mapping: exec puts the executable's name last,
	// one pointer below it. The kernel lets the mapping grow down to the limit from there.
	const char *fn = (const char *)getauxval(AT_EXECFN);
	struct rlimit rl;
	char here;
	if (fn == NULL || getrlimit(RLIMIT_STACK, &rl) != 0) return __real_pthread_getattr_np(th, attr);
	uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
	uintptr_t top = ((uintptr_t)fn + strlen(fn) + 1 + sizeof(void *) + page - 1) & -page;
	uintptr_t size = rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur > UNLIMITED_STACK ? UNLIMITED_STACK : rl.rlim_cur;
	size &= -page;
	if ((uintptr_t)&here >= top || size >= top || (uintptr_t)&here <= top - size)
		return __real_pthread_getattr_np(th, attr);
	int rv = pthread_attr_init(attr);
	if (rv != 0) return rv;
	return pthread_attr_setstack(attr, (void *)(top - size), size);
#endif
}

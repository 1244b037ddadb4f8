// early.c: the PC/SC contexts the PKCS#11 module opens in its first C_Initialize while the
// Go runtime is still starting. Every call into Go waits until the runtime, which starts
// when the library is loaded, has initialised: a millisecond or more, which the first
// C_Initialize would otherwise spend waiting. scEstablish (winscard.go) takes these
// contexts before it opens new ones; ReleaseEarly lets go of those the start left over,
// p11_pcsc_drop_early of those a refused C_Initialize did not use.
#include <pthread.h>
#include <stddef.h>
#include <winscard.h>
#include "early.h"

#define EARLY_MAX 2

static pthread_mutex_t early_mu = PTHREAD_MUTEX_INITIALIZER;
static SCARDCONTEXT early[EARLY_MAX];
static int early_n;

void p11_pcsc_open_early(void) {
	pthread_mutex_lock(&early_mu);
	while (early_n < EARLY_MAX) {
		SCARDCONTEXT h;
		// pcscd down: the first attempt fails at once, and Go meets the same answer.
		if (SCardEstablishContext(SCARD_SCOPE_SYSTEM, NULL, NULL, &h) != SCARD_S_SUCCESS) break;
		early[early_n++] = h;
	}
	pthread_mutex_unlock(&early_mu);
}

// p11_pcsc_take_early hands out one of them: 1 and *h set, or 0 when none is left.
int p11_pcsc_take_early(SCARDCONTEXT *h) {
	int ok = 0;
	pthread_mutex_lock(&early_mu);
	if (early_n > 0) {
		*h = early[--early_n];
		ok = 1;
	}
	pthread_mutex_unlock(&early_mu);
	return ok;
}

void p11_pcsc_drop_early(void) {
	SCARDCONTEXT h;
	while (p11_pcsc_take_early(&h)) SCardReleaseContext(h);
}

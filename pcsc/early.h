// early.h: PC/SC contexts opened before the Go runtime is ready (early.c). Free of PC/SC
// headers, so that the module's C (p11/module.c) can include it.
#ifndef P11_PCSC_EARLY_H
#define P11_PCSC_EARLY_H

// p11_pcsc_open_early opens the contexts a slot manager's start takes (one to read the
// readers, one for the first card), stopping at the first failure. The PKCS#11 module
// calls it from the first C_Initialize, in C, before any PC/SC call of ours can run.
void p11_pcsc_open_early(void);

// p11_pcsc_drop_early releases those still there, in C. Only where no PC/SC call of ours
// can run beside it: after the first C_Initialize failed, before it returns.
void p11_pcsc_drop_early(void);

#endif

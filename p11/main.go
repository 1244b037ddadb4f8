// Command p11 is built with -buildmode=c-shared into p11-card-pkcs11.so, the PKCS#11
// module. See doc.go.
package main

/*
#cgo CFLAGS: -std=gnu11 -Wall
#cgo linux LDFLAGS: ${SRCDIR}/exports.ld.so -Wl,--wrap=pthread_getattr_np
#include "pkcs11.h"
*/
import "C"

import (
	"github.com/p11-card/p11-card/cards"
	"github.com/p11-card/p11-card/p11/internal/core"
)

// Version is the library version reported in CK_INFO.
var Version = cards.Version{Major: 0, Minor: 1}

// mod is this process's Cryptoki application state.
var mod = core.New(core.Options{NewSource: newSource, Version: Version})

func init() {
	if C.sizeof_CK_ULONG != C.size_t(core.ULongSize) {
		panic("p11: CK_ULONG size differs between C and core")
	}
}

func main() {}

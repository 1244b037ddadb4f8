//go:build tools

// Package tools pins modules that the project uses, so go.mod lists them while packages
// that import them are being written. Removed once every import is real.
package tools

import (
	_ "github.com/ebfe/scard"
	_ "github.com/google/gousb"
	_ "github.com/miekg/pkcs11"
	_ "golang.org/x/crypto/hkdf"
)

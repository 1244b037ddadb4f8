// Command floor is floor.c inside a Go c-shared library: the benchmark's measure of what
// the Go runtime costs a PKCS#11 library before any work.
package main

// #cgo CFLAGS: -DFLOOR_GO -I${SRCDIR}/../../../p11
import "C"

//export floorGo
func floorGo() C.ulong { return 0 }

func main() {}

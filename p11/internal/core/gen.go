package core

//go:generate go run ../ckgen -in ../../pkcs11.h -out zck.go

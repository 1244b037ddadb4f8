module github.com/p11-card/p11-card

go 1.26.0

require (
	github.com/ebfe/scard v0.0.0-20230420082256-7db3f9b7c8a7
	github.com/google/gousb v1.1.3
	github.com/miekg/pkcs11 v1.1.2
	golang.org/x/crypto v0.58.0
)

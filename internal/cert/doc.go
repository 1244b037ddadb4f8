// Package cert reads the parts of an X.509 certificate (RFC 5280) that a token needs: the
// raw subject, issuer and serial number (CKA_SUBJECT, CKA_ISSUER, CKA_SERIAL_NUMBER), the
// validity dates, whether it is a CA certificate, the subject public key, and the signature
// (to check a certificate against its issuer's key). It also writes a SubjectPublicKeyInfo
// (CKA_PUBLIC_KEY_INFO).
//
// Why not crypto/x509: a certificate on a card is data the card hands us, and the module
// must still show it. crypto/x509 refuses whole certificates for faults that do not touch
// what we read: a negative or zero serial number (RFC 5280 4.1.2.2 asks users to cope with
// them; older CAs issued them), a string type holding a character it does not allow, a
// duplicate or malformed extension. When it refused, the module lost the certificate's
// subject and, on a card that tells key algorithms only through certificates (any PIV card
// but a YubiKey 5.3+), the key itself. Here only the structure of the fields we read must
// be sound; a field we cannot read (a date, an extension, a public key algorithm we do not
// know) is left empty and the rest is still given. crypto/x509 also brought net, net/url
// and net/netip into the module for names we never look at.
//
// The structure is read as DER (definite, minimal lengths, through
// golang.org/x/crypto/cryptobyte); nothing past the end of an element is read, and bytes
// after the certificate are left to the caller (Cert.Raw is the certificate alone). Public keys read: RSA, EC on P-256, P-384 and P-521 (uncompressed
// points), Ed25519 and X25519. Signatures checked: RSA PKCS #1 v1.5 and ECDSA with SHA-256,
// SHA-384 or SHA-512, and Ed25519; SHA-1 and RSA-PSS are refused.
//
// Non-goals: path building, chain validation, name constraints, key usage, revocation.
//
// Concurrency: a Cert is immutable after Parse; all functions are safe for concurrent use.
package cert

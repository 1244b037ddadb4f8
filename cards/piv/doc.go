// Package piv is the driver for PIV cards (NIST SP 800-73-4) and the PIV application of
// YubiKeys with Yubico's extensions. Importing it registers the driver with cards.Register.
//
// # What it does
//
//   - Key slots 9A, 9C, 9D, 9E, the 20 retired slots 82–95 and the attestation key F9, under
//     the CKA_ID convention of OpenSC and ykcs11: 9A→01, 9C→02, 9D→03, 9E→04, 82…95→05…18,
//     F9→19. Each slot gives a certificate, a public key and a private key object sharing the
//     ID and the slot's label ("PIV Authentication", "Digital Signature", …). Handles are
//     "9a/cert", "9a/pub", "9a/priv". F9's private key signs attestations only (the card
//     refuses it anything else), so F9 shows its certificate and public key, no private key.
//   - Certificates from the slot's container (part 1 appendix A): 70 certificate, 71 CertInfo,
//     with CertInfo 01 meaning gzip (read and, for certificates too big for a YubiKey
//     object, written that way).
//   - Keys from Yubico's GET METADATA (firmware 5.3+: algorithm, PIN and touch policy,
//     origin, public key) or, elsewhere, from the slot's certificate.
//   - Attestation statements (Yubico ATTEST) for keys the card generated, as certificate
//     objects with their own IDs: the key's ID plus 0x80 (9A→81, 9C→82, 9D→83, 9E→84,
//     82…95→85…98), label "Attestation for …", handle "9a/attest". The attestation key's own
//     certificate (object 5FFF01) is slot F9's certificate, ID 19. On cards with metadata
//     each statement is kept for later processes (cards.Keep) and taken back only if it
//     names the public key the slot's metadata gives and F9's key signed it: an ATTEST is
//     a signature by the card, a listing then costs none.
//   - PIV containers as data objects: CCC, CHUID, security object, discovery, key history,
//     and, after a user login (they need the PIN), printed information, facial image,
//     fingerprints and iris images, flagged Private. ID = the container's tag bytes,
//     handle "data/5fc102", application "PIV", CKA_OBJECT_ID the container's OID from
//     part 1 table 3. A printed-information object holding a YubiKey's PIN-protected
//     management key is neither listed nor kept in memory.
//   - Algorithms: RSA 1024/2048 and ECC P-256/P-384 everywhere; RSA 3072/4096, Ed25519 and
//     X25519 on YubiKey 5.7. Sign: PKCS#1 v1.5 (padded by the driver), raw RSA, ECDSA (hash
//     truncated or left-padded to the curve size, DER answer turned into r‖s), Ed25519 (whole
//     message). Decrypt: raw RSA only (the caller removes the padding). Derive: ECDH and
//     X25519 (tag 85).
//   - Key generation (with PIN and touch policy), import (Yubico IMPORT KEY), certificate
//     write and delete, key deletion (Yubico 5.7 MOVE KEY to FF).
//   - Serial and identity: the YubiKey serial (GET SERIAL); other cards the CHUID's GUID
//     (16 hex digits), else the end of its FASC-N.
//   - The discovery object decides whether VERIFY uses the Global PIN (00) or the PIV PIN (80).
//   - Extended APDUs where the ATR's card capabilities offer them (and on every YubiKey 4 or
//     later); short APDUs with command chaining and GET RESPONSE otherwise.
//   - Random: ErrNotSupported (the YubiKey PIV application has no GET CHALLENGE).
//
// # Users and secrets
//
//	PKCS#11 user        PIV secret            Login / change / unblock
//	CKU_USER            PIN (80; 00 when the Global PIN is primary), 6–8 bytes, FF-padded
//	                    Login: VERIFY. ChangePIN(RoleUser): CHANGE REFERENCE DATA.
//	CKU_SO              management key (9B), given as hex: 48 digits (3DES or AES-192),
//	                    32 (AES-128) or 64 (AES-256), as ykcs11 takes it. Login: mutual
//	                    GENERAL AUTHENTICATE; the algorithm comes from GET METADATA of 9B
//	                    (5.3+), else from the key's length (24 bytes: 3DES, and AES-192
//	                    when the card refuses 3DES). ChangePIN(RoleSO): SET MANAGEMENT KEY.
//	RolePUK             PUK (81). No login: Unblock(RolePUK, puk, newPIN) is RESET RETRY
//	                    COUNTER; ChangePIN(RolePUK) changes the PUK.
//	CKU_CONTEXT_SPECIFIC  the PIN again, for keys with PIN policy "always" (9C by default):
//	                    cards.Auth on Sign/Decrypt/Derive, VERIFY and the operation in one
//	                    transaction.
//
// Which operation needs what: private key operations need the PIN unless the key's PIN
// policy is "never" (9E by default); reading objects needs nothing; GenerateKey, ImportKey,
// WriteCertificate and DeleteObject need the management key: after an SO login, or — on a
// YubiKey whose admin data (5FFF00) flags a PIN-protected management key — after a user
// login, the driver reads that key from the printed-information object (5FC109) and
// authenticates with it by itself; it keeps only the card's authenticated state, never the
// key. Without either, they give an error wrapping cards.ErrLoginRequired.
//
// # APDUs per operation (YubiKey 5.7, extended APDUs; pinned by TestAPDUCounts)
//
//	Open (cards.Bind)         4: SELECT, GET VERSION, GET SERIAL, GET METADATA 80 (other
//	                             PIV cards: SELECT, GET VERSION refused, CHUID,
//	                             discovery, empty VERIFY); the PIN's state answers the
//	                             first CK_TOKEN_INFO (cards.OpenedPINs)
//	Objects{ID 01, private}   1: GET METADATA 9A (no metadata: the 9A certificate)
//	Objects{ID 01}            2: + the 9A certificate
//	Objects{} (everything)    per slot GET METADATA + certificate (F9: its certificate
//	                             only, which holds the public key), ATTEST per generated
//	                             key not attested before (see above), 5 data containers;
//	                             0 the second time. Without metadata the key
//	                             history object limits the retired slots read to those
//	                             it says hold on-card certificates.
//	Login user                1: VERIFY
//	Login SO                  2: GENERAL AUTHENTICATE ×2 (+1 GET METADATA 9B once per insertion)
//	Sign/Decrypt/Derive       1: GENERAL AUTHENTICATE (+1 VERIFY with cards.Auth; +1
//	                             metadata or certificate if no search read the key before)
//	GenerateKey, ImportKey,
//	WriteCertificate, Delete  1 after SO login (first admin operation with a protected
//	                             management key: +5: admin data, printed info, GET
//	                             METADATA 9B, GENERAL AUTHENTICATE ×2)
//	PINStatus                 1: GET METADATA 80/81/9B (no metadata: empty VERIFY)
//	Logout                    1: VERIFY with P1 FF (0 when this token sent no PIN: an
//	                             SO login alone)
//	after a reset             +1: SELECT, logins forgotten
//
// A whole signing tool run (bind, find the key by ID, login, sign) is 7 APDUs; on the same
// virtual YubiKey through pcscd, pkcs11-tool costs 30 with OpenSC 0.23 and 94 with ykcs11
// 2.2 (hwtest TestPIVDriverAPDUsVersusOthers). Nothing is selected or read twice within
// an operation; objects are read once per insertion and kept until the token is dropped
// (slotmgr binds a new token on every insertion); nothing is read that the filter does not
// ask for.
//
// # Concurrency and state
//
// A Token is not safe for concurrent use; the engine serialises card I/O per slot. Every
// operation takes one cards.Conn Lock. When Lock reports a reset, or a transport error left
// the card in doubt, the next operation selects the application first and forgets every
// login (operations needing one fail with cards.ErrLoginRequired). Another process may
// select another application between our transactions without resetting the card, so the
// first command of a transaction is checked: answered 6D00/6E00 (or, for GET DATA and the
// PIN commands, 6A82/6A88/6A86/6B00), the driver selects PIV again, forgets the logins and
// repeats the command once. Later commands of a transaction are never retried. The price:
// a transaction whose first command reads an absent object costs two APDUs more.
//
// # Tracing
//
// P11CARD_DEBUG=piv traces binding, re-selection after a reset or another application,
// and management key use; never a PIN or key (APDUs are traced, redacted, by the
// transport).
//
// # Errors
//
// Wrong PIN or PUK: *apdu.VerifyError with the tries left (with none left it also wraps
// cards.ErrPINBlocked); blocked: cards.ErrPINBlocked; 6982: cards.ErrLoginRequired; a wrong
// management key: cards.ErrPINIncorrect and *apdu.VerifyError{Retries: -1} (no counter);
// algorithm or scheme the key or firmware lacks: cards.ErrMechanismUnsupported; empty slot:
// cards.ErrKeyNotFound; malformed card data: cards.ErrBadCard.
//
// # Limits
//
// No secure messaging or VCI (contactless PIV), no biometric (match-on-card) PIN policies, no
// PIN-derived management keys (the deprecated salt in admin data), no writing of data
// containers (only deleting), no brainpool curves, no card-side PKCS#1 unpadding. Objects
// are cached per insertion: what another process using these drivers writes shows at the
// next look (cards.Journal); what other programs write (yubico-piv-tool), after the card
// is bound again.
package piv

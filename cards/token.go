package cards

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"time"

	"github.com/p11-card/p11-card/apdu"
)

// Conn is a connection to one card as a driver sees it: raw APDUs plus transactions.
type Conn interface {
	apdu.Transmitter
	// Lock begins an exclusive transaction on the card; unlock ends it. reset is true when
	// the card was reset or re-powered since the previous Lock (by this process or another):
	// the driver must re-select its application and treat every login as gone.
	// One logical operation is one Lock; a driver never holds a lock across calls.
	Lock(ctx context.Context) (unlock func(), reset bool, err error)
}

// Driver binds cards of one family.
type Driver interface {
	// Name is the driver's short name: "piv", "openpgp".
	Name() string
	// MatchATR is a cheap look at the ATR, before any APDU.
	MatchATR(atr []byte) Match
	// Open selects the driver's application and reads what identifies the token (as few
	// APDUs as that takes). A card that is not the driver's gives an error wrapping
	// ErrNotRecognized. Open takes its own Lock (under Bind, the transaction Bind holds for
	// every driver it tries).
	Open(ctx context.Context, c Conn, atr []byte) (Token, error)
}

// Match is a driver's verdict on an ATR.
type Match int

const (
	MatchNo    Match = iota // certainly not this driver's card: do not probe
	MatchMaybe              // probe with Open
	MatchYes                // known ATR: try this driver first
)

// Role is who logs in.
type Role int

const (
	RoleUser Role = iota + 1 // PIV PIN, OpenPGP PW1
	RoleSO                   // the token's administrator: PIV management key, OpenPGP PW3
	RolePUK                  // the unblocking secret: PIV PUK, OpenPGP reset code
)

func (r Role) String() string {
	switch r {
	case RoleUser:
		return "user"
	case RoleSO:
		return "so"
	case RolePUK:
		return "puk"
	}
	return fmt.Sprintf("role(%d)", int(r))
}

// Version is a firmware or application version.
type Version struct{ Major, Minor, Patch int }

func (v Version) String() string { return fmt.Sprintf("%d.%d.%d", v.Major, v.Minor, v.Patch) }

// TokenInfo describes a token; known at Open, no I/O to read it.
type TokenInfo struct {
	Driver       string  // "piv", "openpgp"
	Label        string  // short, human: "YubiKey PIV #12345678"
	Manufacturer string  // "Yubico"
	Model        string  // "YubiKey 5 (PIV)"
	Serial       string  // stable per card: the card serial, else derived from CHUID/GUID or AID
	Firmware     Version // applet or firmware version; zero when the card does not tell
	HasRandom    bool    // Random works
	// SOSecret tells how RoleSO authenticates: "pin" (a PIN-like secret, OpenPGP PW3) or
	// "key-hex" (a key given as hex, the PIV management key).
	SOSecret string
	// PINMin and PINMax bound the user PIN's length in bytes.
	PINMin, PINMax int
}

// PINStatus is the state of one PIN (or key) of a token.
type PINStatus struct {
	Retries    int  // tries left; -1 when the card does not tell
	MaxRetries int  // 0 when unknown
	Blocked    bool // no tries left
	Default    bool // still the factory value (when the card tells)
	// Verified is true when the card reports the PIN as verified right now (where the
	// card can answer that without a try).
	Verified bool
}

// PINStatuses is implemented by tokens that read several secrets' states in one
// command (an OpenPGP card's PW status bytes hold every counter): the engine asks for the
// roles it needs together. The result is in the order of roles.
type PINStatuses interface {
	PINStatuses(ctx context.Context, roles ...Role) ([]PINStatus, error)
}

// OpenedPINs is implemented by tokens whose Open read the PIN states along with what it
// needed anyway (an OpenPGP card's application data carries the PW status bytes): the
// states of roles, in their order, as of at. They are handed out once; later calls, and a
// token whose Open read none, give ok false. The engine asks as it starts using the
// token, before any other call that talks to the card, and answers CK_TOKEN_INFO from
// them as from a reading of its own while they are as fresh as it wants one to be.
type OpenedPINs interface {
	OpenedPINs(roles ...Role) (st []PINStatus, at time.Time, ok bool)
}

// Kind is the class of a token object.
type Kind int

const (
	KindCertificate Kind = iota + 1
	KindPublicKey
	KindPrivateKey
	KindData
)

func (k Kind) String() string {
	switch k {
	case KindCertificate:
		return "certificate"
	case KindPublicKey:
		return "public-key"
	case KindPrivateKey:
		return "private-key"
	case KindData:
		return "data"
	}
	return fmt.Sprintf("kind(%d)", int(k))
}

// KeyAlg is a key type and size family.
type KeyAlg int

const (
	AlgRSA KeyAlg = iota + 1 // size in KeyInfo.Bits
	AlgECP256
	AlgECP384
	AlgECP521
	AlgBrainpoolP256
	AlgBrainpoolP384
	AlgBrainpoolP512
	AlgEd25519
	AlgX25519
)

func (a KeyAlg) String() string {
	switch a {
	case AlgRSA:
		return "rsa"
	case AlgECP256:
		return "p256"
	case AlgECP384:
		return "p384"
	case AlgECP521:
		return "p521"
	case AlgBrainpoolP256:
		return "brainpoolP256r1"
	case AlgBrainpoolP384:
		return "brainpoolP384r1"
	case AlgBrainpoolP512:
		return "brainpoolP512r1"
	case AlgEd25519:
		return "ed25519"
	case AlgX25519:
		return "x25519"
	}
	return fmt.Sprintf("alg(%d)", int(a))
}

// IsEC reports the Weierstrass curves (ECDSA, ECDH).
func (a KeyAlg) IsEC() bool { return a >= AlgECP256 && a <= AlgBrainpoolP512 }

// KeyInfo describes a key pair held by the card.
type KeyInfo struct {
	Alg  KeyAlg
	Bits int // RSA modulus bits; curve size for EC
	// Public is *rsa.PublicKey, *ecdsa.PublicKey (NIST curves), ed25519.PublicKey or
	// *ecdh.PublicKey (X25519); nil when the curve has no Go type (brainpool) or the
	// public key is unknown. ECPoint holds the encoded point for every EC and Edwards or
	// Montgomery key (uncompressed 04‖X‖Y; 32 raw bytes for Ed25519 and X25519).
	Public  crypto.PublicKey
	ECPoint []byte
	// Allowed uses.
	Sign, Decrypt, Derive bool
	// RawRSA is true when the card computes the bare RSA primitive (input a full
	// modulus-sized block): then raw, PSS and OAEP are possible on top of it.
	RawRSA bool
	// AlwaysAuth: the PIN must be given right before every use (PIV 9C, OpenPGP
	// signature key with "PIN for every signature").
	AlwaysAuth  bool
	PINPolicy   string // "never", "once", "always", "" when unknown
	TouchPolicy string // "never", "always", "cached", "" when unknown
	Local       bool   // generated on the card (CKA_LOCAL), when known
	Slot        string // driver's name for the key location: "9a", "sig"
}

// Object is a token object, under a stable ID.
type Object struct {
	// Handle names the object within its token and stays the same while the card is in
	// the reader: "9a/cert", "9a/priv", "sig/pub", "data/5fc102".
	Handle string
	Kind   Kind
	// ID is CKA_ID: one value shared by a key's certificate, public and private key.
	ID    []byte
	Label string
	// Private objects are shown only after user login.
	Private bool
	// Cert is the DER certificate (KindCertificate).
	Cert []byte
	// Value is a data object's content (KindData); App and OID its CKA_APPLICATION and
	// DER-encoded CKA_OBJECT_ID.
	Value []byte
	App   string
	OID   []byte
	// Key is set for KindPublicKey and KindPrivateKey.
	Key *KeyInfo
	// Modifiable and Destroyable tell what the card allows with admin rights.
	Modifiable, Destroyable bool
}

// Filter narrows Objects; zero fields match anything.
type Filter struct {
	ID   []byte // CKA_ID
	Kind Kind
}

// SignScheme says what Sign's input is and what the card does with it.
type SignScheme int

const (
	SignRSAPKCS1 SignScheme = iota + 1 // input: DigestInfo (or any data ≤ k-11 bytes); PKCS#1 v1.5 type 1 padding by driver or card
	SignRSARaw                         // input: a full modulus-sized block; bare RSA private operation
	SignECDSA                          // input: the hash (truncated or padded by the driver); output r‖s
	SignEdDSA                          // input: the whole message (pure Ed25519)
)

func (s SignScheme) String() string {
	switch s {
	case SignRSAPKCS1:
		return "rsa-pkcs1"
	case SignRSARaw:
		return "rsa-raw"
	case SignECDSA:
		return "ecdsa"
	case SignEdDSA:
		return "eddsa"
	}
	return fmt.Sprintf("scheme(%d)", int(s))
}

// DecryptScheme says what Decrypt returns.
type DecryptScheme int

const (
	DecryptRSARaw   DecryptScheme = iota + 1 // the whole modulus-sized block, unpadding is the caller's
	DecryptRSAPKCS1                          // the message, PKCS#1 v1.5 type 2 padding removed by the card
)

// Auth, given to a private-key operation, is verified on the card inside the same
// transaction as the operation, immediately before it (PIN-always keys).
type Auth struct {
	PIN []byte
}

// KeyGenSpec asks for a new key pair at a key location.
type KeyGenSpec struct {
	ID          []byte // the key location's CKA_ID (see Token.KeySlots)
	Alg         KeyAlg
	Bits        int    // RSA
	PINPolicy   string // "" for the card's default
	TouchPolicy string
}

// KeySlot is a location where a key pair can live.
type KeySlot struct {
	ID      []byte
	Name    string // "9a", "sig"
	Label   string // "PIV Authentication"
	Algs    []KeyAlg
	RSABits []int
}

// Token is a bound card. Methods are not safe for concurrent use: the engine serialises
// card I/O per slot. Every method that talks to the card takes one Lock for the whole
// operation. Objects are read once per insertion and cached.
type Token interface {
	Info() TokenInfo
	// Objects lists the objects matching f, private ones included (flagged Private). The
	// driver reads only what f needs (a key location, a kind) and keeps what it read in
	// memory until the card changes: the zero Filter reads everything once.
	Objects(ctx context.Context, f Filter) ([]Object, error)
	// KeySlots lists where keys can be generated or imported.
	KeySlots() []KeySlot

	PINStatus(ctx context.Context, role Role) (PINStatus, error)
	// Login verifies the secret of role. A wrong one gives *apdu.VerifyError (tries left)
	// or an error wrapping ErrPINBlocked.
	Login(ctx context.Context, role Role, secret []byte) error
	// Logout drops the security state this token's logins and operations set on the card,
	// for every role.
	Logout(ctx context.Context) error
	ChangePIN(ctx context.Context, role Role, old, new []byte) error
	// Unblock sets a new user PIN with the unblocking secret (PIV PUK, OpenPGP reset code
	// or, with role RoleSO, the administrator PIN).
	Unblock(ctx context.Context, role Role, secret, newPIN []byte) error

	Sign(ctx context.Context, key []byte, scheme SignScheme, in []byte, auth *Auth) ([]byte, error)
	Decrypt(ctx context.Context, key []byte, scheme DecryptScheme, in []byte, auth *Auth) ([]byte, error)
	// Derive computes an ECDH (X25519) shared secret with the peer's public point
	// (uncompressed EC point, or 32 bytes for X25519).
	Derive(ctx context.Context, key []byte, peer []byte, auth *Auth) ([]byte, error)

	// GenerateKey makes a key pair on the card (admin rights) and returns its public key
	// object; Objects reflects it afterwards.
	GenerateKey(ctx context.Context, spec KeyGenSpec) (Object, error)
	// ImportKey writes a private key (*rsa.PrivateKey, *ecdsa.PrivateKey,
	// ed25519.PrivateKey, *ecdh.PrivateKey) to a key location.
	ImportKey(ctx context.Context, spec KeyGenSpec, key crypto.PrivateKey) error
	// WriteCertificate stores a DER certificate for the key location id.
	WriteCertificate(ctx context.Context, id []byte, der []byte) error
	// DeleteObject removes a certificate or data object (by Handle).
	DeleteObject(ctx context.Context, handle string) error
	// Random reads n random bytes from the card.
	Random(ctx context.Context, n int) ([]byte, error)
}

// Errors drivers wrap; the engine maps them to CKR_* codes.
var (
	ErrNotRecognized        = errors.New("cards: card not recognized")
	ErrNotSupported         = errors.New("cards: not supported by this card")
	ErrMechanismUnsupported = errors.New("cards: mechanism not supported by this key")
	ErrKeyNotFound          = errors.New("cards: no such key")
	ErrObjectNotFound       = errors.New("cards: no such object")
	ErrLoginRequired        = errors.New("cards: login required")
	ErrPINBlocked           = errors.New("cards: PIN blocked")
	// ErrPINIncorrect is a rejected secret where the card keeps no retry counter (the PIV
	// management key); a PIN with a counter gives *apdu.VerifyError instead.
	ErrPINIncorrect = errors.New("cards: secret not accepted")
	ErrPINLength    = errors.New("cards: PIN length out of range")
	ErrBadInput     = errors.New("cards: input invalid for this key")
	ErrInputLength  = errors.New("cards: input length invalid for this key")
	ErrCardFull     = errors.New("cards: no room on the card")
	// ErrBadCard reports a card response that breaks its specification.
	ErrBadCard = errors.New("cards: malformed card response")
)

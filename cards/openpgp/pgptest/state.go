package pgptest

// State is the persistent part of the card (what survives removal), as stored in the state
// file. PINs are kept as the card receives them (hashed when a KDF is set).
type State struct {
	PW1, PW3, RC                []byte
	PW1Tries, RCTries, PW3Tries int
	// PWStatus1 is the first PW status byte: 00 PW1 valid for one signature, else several.
	PWStatus1 byte
	PWMax     byte

	// Algo holds the algorithm attributes of SIG, DEC, AUT (and ATT on a YubiKey).
	Algo [4][]byte
	// Keys are PKCS#8 private keys (nil: empty slot); X25519 keys too.
	Keys      [4][]byte
	KeyStatus [4]byte // 00 none, 01 generated, 02 imported
	Fpr       [4][]byte
	CAFpr     [3][]byte
	Dates     [4][]byte
	UIF       [4][]byte

	Name, Lang, Sex, URL, Login []byte
	Private                     [4][]byte
	// Certs by SELECT DATA occurrence: 0 AUT, 1 DEC, 2 SIG.
	Certs      [3][]byte
	SigCounter int
	KDF        []byte
	Terminated bool
}

type state struct {
	State
	dirty bool
}

var (
	defaultPW1 = []byte("123456")
	defaultPW3 = []byte("12345678")
)

func rsaAttr(bits int, ebits int) []byte {
	return []byte{0x01, byte(bits >> 8), byte(bits), byte(ebits >> 8), byte(ebits), 0x00}
}

func factoryState(m Mode) *state {
	s := &state{State: State{
		PW1: append([]byte(nil), defaultPW1...), PW3: append([]byte(nil), defaultPW3...),
		PW1Tries: 3, RCTries: 0, PW3Tries: 3,
		PWMax: 0x7F,
		KDF:   []byte{0x81, 0x01, 0x00},
	}}
	n := 3
	ebits := 32
	if m == ModeYubiKey {
		n = 4
		ebits = 17
		s.PWStatus1 = 0xFF // a YubiKey fresh from the factory reports FF here
		for i := range s.UIF {
			s.UIF[i] = []byte{0x00, 0x20}
		}
	}
	for i := 0; i < n; i++ {
		s.Algo[i] = rsaAttr(2048, ebits)
		s.Fpr[i] = make([]byte, 20)
		s.Dates[i] = make([]byte, 4)
	}
	for i := range s.CAFpr {
		s.CAFpr[i] = make([]byte, 20)
	}
	return s
}

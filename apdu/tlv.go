package apdu

import (
	"errors"
	"fmt"
)

// Tag is a BER-TLV tag as its bytes read big-endian (ISO/IEC 7816-4 §5.2, ISO/IEC 8825-1):
// 0x5FC105 for the PIV certificate tag, 0x7F49 for a public key template.
type Tag uint32

// Constructed reports bit 6 of the first tag byte.
func (t Tag) Constructed() bool { return t.firstByte()&0x20 != 0 }

func (t Tag) firstByte() byte {
	switch {
	case t > 0xFFFFFF:
		return byte(t >> 24)
	case t > 0xFFFF:
		return byte(t >> 16)
	case t > 0xFF:
		return byte(t >> 8)
	}
	return byte(t)
}

func (t Tag) String() string { return fmt.Sprintf("%X", uint32(t)) }

// TLV is one decoded data object. Value aliases the parsed input.
type TLV struct {
	Tag   Tag
	Value []byte
}

// maxTagBytes bounds multi-byte tags; four bytes is more than any card uses.
const maxTagBytes = 4

// ParseTLV decodes one BER-TLV data object at the start of b and returns the rest.
// Indefinite lengths (0x80) and lengths over four bytes are rejected; 00 and FF padding
// between objects is not skipped here (see ParseAll).
func ParseTLV(b []byte) (TLV, []byte, error) {
	if len(b) == 0 {
		return TLV{}, nil, fmt.Errorf("%w: empty TLV", ErrMalformed)
	}
	i := 0
	tag := Tag(b[0])
	i++
	if b[0]&0x1F == 0x1F {
		for {
			if i >= len(b) {
				return TLV{}, nil, fmt.Errorf("%w: truncated tag", ErrMalformed)
			}
			if i >= maxTagBytes {
				return TLV{}, nil, fmt.Errorf("%w: tag longer than %d bytes", ErrMalformed, maxTagBytes)
			}
			tag = tag<<8 | Tag(b[i])
			i++
			if b[i-1]&0x80 == 0 {
				break
			}
		}
	}
	if i >= len(b) {
		return TLV{}, nil, fmt.Errorf("%w: tag %s without length", ErrMalformed, tag)
	}
	l := int(b[i])
	i++
	if l&0x80 != 0 {
		n := l & 0x7F
		if n == 0 {
			return TLV{}, nil, fmt.Errorf("%w: tag %s has indefinite length", ErrMalformed, tag)
		}
		if n > 4 {
			return TLV{}, nil, fmt.Errorf("%w: tag %s has a %d-byte length", ErrMalformed, tag, n)
		}
		if i+n > len(b) {
			return TLV{}, nil, fmt.Errorf("%w: tag %s: truncated length", ErrMalformed, tag)
		}
		l = 0
		for _, c := range b[i : i+n] {
			l = l<<8 | int(c)
		}
		i += n
		if l < 0 {
			return TLV{}, nil, fmt.Errorf("%w: tag %s: length overflow", ErrMalformed, tag)
		}
	}
	if l > len(b)-i {
		return TLV{}, nil, fmt.Errorf("%w: tag %s declares %d bytes, %d present", ErrMalformed, tag, l, len(b)-i)
	}
	return TLV{Tag: tag, Value: b[i : i+l : i+l]}, b[i+l:], nil
}

// ParseAll decodes a sequence of data objects filling b completely. Bytes 00 and FF between
// objects are padding (ISO/IEC 7816-4 §5.2) and skipped.
func ParseAll(b []byte) ([]TLV, error) {
	var out []TLV
	for len(b) > 0 {
		if b[0] == 0x00 || b[0] == 0xFF {
			b = b[1:]
			continue
		}
		t, rest, err := ParseTLV(b)
		if err != nil {
			return nil, err
		}
		out = append(out, t)
		b = rest
	}
	return out, nil
}

// Find returns the value of the first object with tag among the objects in b (one level,
// no descent into constructed objects).
func Find(b []byte, tag Tag) ([]byte, bool, error) {
	all, err := ParseAll(b)
	if err != nil {
		return nil, false, err
	}
	for _, t := range all {
		if t.Tag == tag {
			return t.Value, true, nil
		}
	}
	return nil, false, nil
}

// FindPath descends through constructed objects: FindPath(b, 0x6E, 0x73, 0xC0).
func FindPath(b []byte, path ...Tag) ([]byte, bool, error) {
	for _, tag := range path {
		v, ok, err := Find(b, tag)
		if err != nil || !ok {
			return nil, ok, err
		}
		b = v
	}
	return b, true, nil
}

// AppendTag appends the tag bytes.
func AppendTag(dst []byte, t Tag) []byte {
	switch {
	case t > 0xFFFFFF:
		return append(dst, byte(t>>24), byte(t>>16), byte(t>>8), byte(t))
	case t > 0xFFFF:
		return append(dst, byte(t>>16), byte(t>>8), byte(t))
	case t > 0xFF:
		return append(dst, byte(t>>8), byte(t))
	}
	return append(dst, byte(t))
}

// AppendLength appends a definite BER length in its shortest form.
func AppendLength(dst []byte, n int) []byte {
	switch {
	case n < 0x80:
		return append(dst, byte(n))
	case n <= 0xFF:
		return append(dst, 0x81, byte(n))
	case n <= 0xFFFF:
		return append(dst, 0x82, byte(n>>8), byte(n))
	case n <= 0xFFFFFF:
		return append(dst, 0x83, byte(n>>16), byte(n>>8), byte(n))
	}
	return append(dst, 0x84, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
}

// AppendTLV appends tag, length and the concatenated values.
func AppendTLV(dst []byte, t Tag, value ...[]byte) []byte {
	n := 0
	for _, v := range value {
		n += len(v)
	}
	dst = AppendTag(dst, t)
	dst = AppendLength(dst, n)
	for _, v := range value {
		dst = append(dst, v...)
	}
	return dst
}

// TLVBytes is AppendTLV into a new slice.
func TLVBytes(t Tag, value ...[]byte) []byte { return AppendTLV(nil, t, value...) }

// Constructed reports whether the object's tag marks it constructed (its value is a
// sequence of data objects).
func (t TLV) Constructed() bool { return t.Tag.Constructed() }

// ErrPrimitive is returned by Children for a primitive data object.
var ErrPrimitive = errors.New("apdu: primitive data object has no children")

// Children decodes the value of a constructed object as a sequence of data objects.
func (t TLV) Children() ([]TLV, error) {
	if !t.Constructed() {
		return nil, fmt.Errorf("%w (tag %s)", ErrPrimitive, t.Tag)
	}
	return ParseAll(t.Value)
}

// Bytes encodes the object with its length in the shortest form.
func (t TLV) Bytes() []byte { return AppendTLV(nil, t.Tag, t.Value) }

// MaxDepth bounds Walk's descent into nested constructed objects.
const MaxDepth = 16

// Walk calls fn for every object in b, depth first, descending into constructed objects.
// depth is 0 for the objects of b itself. fn returning false skips the children of that
// object. Nesting deeper than MaxDepth is an error, so hostile input cannot exhaust the stack.
func Walk(b []byte, fn func(depth int, t TLV) bool) error { return walk(b, 0, fn) }

func walk(b []byte, depth int, fn func(int, TLV) bool) error {
	if depth > MaxDepth {
		return fmt.Errorf("%w: data objects nested deeper than %d", ErrMalformed, MaxDepth)
	}
	all, err := ParseAll(b)
	if err != nil {
		return err
	}
	for _, t := range all {
		if fn(depth, t) && t.Constructed() {
			if err := walk(t.Value, depth+1, fn); err != nil {
				return err
			}
		}
	}
	return nil
}

// ParseSimpleTLV decodes one SIMPLE-TLV data object (ISO/IEC 7816-4 §5.2: one tag byte 01–FE,
// a length of one byte 00–FE or FF followed by two bytes) and returns the rest.
func ParseSimpleTLV(b []byte) (tag byte, value, rest []byte, err error) {
	if len(b) < 2 {
		return 0, nil, nil, fmt.Errorf("%w: SIMPLE-TLV of %d bytes", ErrMalformed, len(b))
	}
	tag = b[0]
	if tag == 0x00 || tag == 0xFF {
		return 0, nil, nil, fmt.Errorf("%w: SIMPLE-TLV tag %02X", ErrMalformed, tag)
	}
	l, i := int(b[1]), 2
	if l == 0xFF {
		if len(b) < 4 {
			return 0, nil, nil, fmt.Errorf("%w: SIMPLE-TLV tag %02X: truncated length", ErrMalformed, tag)
		}
		l, i = int(b[2])<<8|int(b[3]), 4
	}
	if l > len(b)-i {
		return 0, nil, nil, fmt.Errorf("%w: SIMPLE-TLV tag %02X declares %d bytes, %d present", ErrMalformed, tag, l, len(b)-i)
	}
	return tag, b[i : i+l : i+l], b[i+l:], nil
}

// AppendSimpleTLV appends a SIMPLE-TLV data object. The tag must be 01–FE and the value at
// most 65535 bytes.
func AppendSimpleTLV(dst []byte, tag byte, value []byte) ([]byte, error) {
	if tag == 0x00 || tag == 0xFF || len(value) > 0xFFFF {
		return dst, fmt.Errorf("apdu: SIMPLE-TLV tag %02X with %d bytes cannot be encoded", tag, len(value))
	}
	if len(value) < 0xFF {
		dst = append(dst, tag, byte(len(value)))
	} else {
		dst = append(dst, tag, 0xFF, byte(len(value)>>8), byte(len(value)))
	}
	return append(dst, value...), nil
}

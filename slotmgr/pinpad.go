package slotmgr

import (
	"context"
	"encoding/binary"
)

// PC/SC part 10 v2.02.09, §2.2: SCardControl with CM_IOCTL_GET_FEATURE_REQUEST returns
// TLV triples: feature tag (1 byte), length (1 byte, 4), control code (4 bytes, big-endian).
const (
	// ctlGetFeatureRequest is CM_IOCTL_GET_FEATURE_REQUEST = SCARD_CTL_CODE(3400); pcsc-lite
	// defines SCARD_CTL_CODE(c) as 0x42000000 + c.
	ctlGetFeatureRequest = 0x42000000 + 3400

	featureVerifyPINStart  = 0x01 // part 10 §2.3, FEATURE_VERIFY_PIN_START
	featureModifyPINStart  = 0x03 // FEATURE_MODIFY_PIN_START
	featureVerifyPINDirect = 0x06 // FEATURE_VERIFY_PIN_DIRECT
	featureModifyPINDirect = 0x07 // FEATURE_MODIFY_PIN_DIRECT

	maxFeatureResponse = 1024 // a feature list is a few dozen bytes
)

// features is a reader's part 10 feature list: tag → control code.
type features struct {
	codes map[byte]uint32
}

func (f *features) code(tag byte) uint32 {
	if f == nil {
		return 0
	}
	return f.codes[tag]
}

func (f *features) pinPad() bool {
	return f.code(featureVerifyPINDirect) != 0 || f.code(featureVerifyPINStart) != 0
}

// readFeatures asks the reader behind card for its features: nil when the card cannot
// tell now (ask again at the next insertion), empty when the reader has none.
func readFeatures(ctx context.Context, card Card) *features {
	switch c := card.(type) {
	case FeatureReader:
		fs, err := c.Features(ctx)
		if err != nil {
			return nil
		}
		f := &features{codes: map[byte]uint32{}}
		for tag, code := range fs {
			if tag != 0 && code != 0 {
				f.codes[byte(tag)] = code
			}
		}
		return f
	case Controller:
		out, err := c.Control(ctx, ctlGetFeatureRequest, nil)
		if err != nil {
			return &features{} // readers without features refuse the request
		}
		return parseFeatures(out)
	}
	return &features{}
}

// parseFeatures decodes a feature list. Malformed input (a reader is not trusted more
// than a card) yields the well-formed prefix; a triple whose length is not 4 is skipped.
func parseFeatures(b []byte) *features {
	f := &features{codes: map[byte]uint32{}}
	if len(b) > maxFeatureResponse {
		b = b[:maxFeatureResponse]
	}
	for len(b) >= 2 {
		tag, n := b[0], int(b[1])
		b = b[2:]
		if n > len(b) {
			break
		}
		if n == 4 && tag != 0 {
			if code := binary.BigEndian.Uint32(b[:4]); code != 0 {
				f.codes[tag] = code
			}
		}
		b = b[n:]
	}
	return f
}

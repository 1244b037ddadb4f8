package pcsc

import (
	"context"
	"encoding/binary"
	"fmt"
)

// Feature is a PC/SC part 10 reader feature tag (PC/SC Workgroup specification part 10,
// §2.3: the answer to CM_IOCTL_GET_FEATURE_REQUEST).
type Feature byte

// Part 10 features a PKCS#11 module cares about.
const (
	FeatureVerifyPINStart    Feature = 0x01
	FeatureVerifyPINFinish   Feature = 0x02
	FeatureModifyPINStart    Feature = 0x03
	FeatureModifyPINFinish   Feature = 0x04
	FeatureVerifyPINDirect   Feature = 0x06
	FeatureModifyPINDirect   Feature = 0x07
	FeatureIFDPINProperties  Feature = 0x0A
	FeatureGetTLVProperties  Feature = 0x12
	FeatureCCIDEscapeCommand Feature = 0x13
)

// Features maps each feature a reader offers to the control code that invokes it.
type Features map[Feature]uint32

// PINPad reports whether the reader can verify a PIN entered on its own keypad.
func (f Features) PINPad() bool {
	_, direct := f[FeatureVerifyPINDirect]
	_, start := f[FeatureVerifyPINStart]
	return direct || start
}

// parseFeatures decodes the GET_FEATURE_REQUEST answer: tag, length 4, big-endian control
// code, repeated. A malformed tail is ignored (what parsed before it is kept).
func parseFeatures(b []byte) Features {
	f := Features{}
	for len(b) >= 2 {
		tag, l := Feature(b[0]), int(b[1])
		if l > len(b)-2 {
			break
		}
		if l == 4 {
			f[tag] = binary.BigEndian.Uint32(b[2:6])
		}
		b = b[2+l:]
	}
	return f
}

// Features asks the reader for its part 10 features. A reader without any (or one that
// does not support the request, as most virtual readers) gives an empty map and no error.
func (k *Card) Features(ctx context.Context) (Features, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	h, _, dead, ok := k.acquire()
	if !ok {
		return nil, ErrClosed
	}
	defer k.release()
	if dead {
		return nil, cardError("get features", codeInvalidHandle)
	}
	out, code := scControl(h, ioctlGetFeatureRequest, nil)
	switch code {
	case codeSuccess:
		return parseFeatures(out), nil
	case codeRemovedCard, codeNoSmartcard, codeResetCard:
		return nil, cardError("get features", code)
	}
	if serviceLost(code) {
		k.markDead(h)
		return nil, cardError("get features", code)
	}
	// Unsupported control codes come back as various errors depending on the driver.
	return Features{}, nil
}

// Control sends a reader control command (SCardControl) with code and input, and returns
// the reader's answer: the ioctls named by Features, or CM_IOCTL_GET_FEATURE_REQUEST
// (0x42000D48 with pcsc-lite). Only the code is traced, never the data.
func (k *Card) Control(ctx context.Context, code uint32, in []byte) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if len(in) > maxResponse {
		return nil, fmt.Errorf("pcsc: control 0x%08X: input of %d bytes", code, len(in))
	}
	h, _, dead, ok := k.acquire()
	if !ok {
		return nil, ErrClosed
	}
	defer k.release()
	if dead {
		return nil, cardError("control", codeInvalidHandle)
	}
	out, rc := scControl(h, code, in)
	if rc != codeSuccess {
		if serviceLost(rc) {
			k.markDead(h)
		}
		return nil, cardError(fmt.Sprintf("control 0x%08X", code), rc)
	}
	return out, nil
}

func (f Feature) String() string { return fmt.Sprintf("feature %02X", byte(f)) }

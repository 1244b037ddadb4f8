package slotmgr

import (
	"testing"
	"time"
)

func TestParseFeatures(t *testing.T) {
	for _, tc := range []struct {
		name           string
		in             []byte
		pad            bool
		verify, modify uint32
	}{
		{"empty", nil, false, 0, 0},
		{"verify direct", []byte{0x06, 0x04, 0x42, 0x33, 0x00, 0x06}, true, 0x42330006, 0},
		{"verify start only", []byte{0x01, 0x04, 0x42, 0x33, 0x00, 0x01}, true, 0, 0},
		{"modify only", []byte{0x07, 0x04, 0x42, 0x33, 0x00, 0x07}, false, 0, 0x42330007},
		{"other features", []byte{0x12, 0x04, 0x42, 0x33, 0x00, 0x12, 0x0A, 0x04, 0x42, 0x33, 0x00, 0x0A}, false, 0, 0},
		{"bad length skipped", []byte{0x06, 0x02, 0x00, 0x01, 0x07, 0x04, 0, 0, 0, 7}, false, 0, 7},
		{"truncated", []byte{0x06, 0x04, 0x42, 0x33}, false, 0, 0},
		{"zero code ignored", []byte{0x06, 0x04, 0, 0, 0, 0}, false, 0, 0},
		{"lone tag", []byte{0x06}, false, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := parseFeatures(tc.in)
			if f.pinPad() != tc.pad || f.code(featureVerifyPINDirect) != tc.verify || f.code(featureModifyPINDirect) != tc.modify {
				t.Errorf("pad %v verify %08X modify %08X; want %v %08X %08X", f.pinPad(),
					f.code(featureVerifyPINDirect), f.code(featureModifyPINDirect), tc.pad, tc.verify, tc.modify)
			}
		})
	}
	var nilF *features
	if nilF.pinPad() || nilF.code(6) != 0 {
		t.Error("nil features")
	}
}

func FuzzFeatures(f *testing.F) {
	f.Add([]byte{0x06, 0x04, 0x42, 0x33, 0x00, 0x06, 0x07, 0x04, 0x42, 0x33, 0x00, 0x07})
	f.Add([]byte{0xFF, 0xFF})
	f.Fuzz(func(t *testing.T, b []byte) {
		f := parseFeatures(b)
		if len(f.codes) > len(b)/6 {
			t.Fatalf("%d features from %d bytes", len(f.codes), len(b))
		}
		for tag, code := range f.codes {
			if tag == 0 || code == 0 {
				t.Fatalf("tag %02X code %08X", tag, code)
			}
		}
	})
}

func TestRetryDelay(t *testing.T) {
	for _, tc := range []struct {
		fails int
		max   time.Duration
		want  time.Duration
	}{
		{0, time.Second, 50 * time.Millisecond},
		{2, time.Second, 50 * time.Millisecond},
		{3, time.Second, 100 * time.Millisecond},
		{6, time.Second, 800 * time.Millisecond},
		{7, time.Second, time.Second},
		{1000, time.Second, time.Second},
		{2, time.Millisecond, time.Millisecond},
	} {
		if got := retryDelay(tc.fails, tc.max); got != tc.want {
			t.Errorf("retryDelay(%d, %v) = %v, want %v", tc.fails, tc.max, got, tc.want)
		}
	}
}

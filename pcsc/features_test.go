package pcsc

import (
	"reflect"
	"testing"
)

func TestParseFeatures(t *testing.T) {
	tests := []struct {
		name   string
		in     []byte
		want   Features
		pinpad bool
	}{
		{"none", nil, Features{}, false},
		{"pinpad", []byte{0x06, 4, 0x42, 0x33, 0x00, 0x06, 0x07, 4, 0x42, 0x33, 0x00, 0x07, 0x0A, 4, 0x42, 0x33, 0x00, 0x0A},
			Features{FeatureVerifyPINDirect: 0x42330006, FeatureModifyPINDirect: 0x42330007, FeatureIFDPINProperties: 0x4233000A}, true},
		{"start/finish", []byte{0x01, 4, 0, 0, 0, 1, 0x02, 4, 0, 0, 0, 2}, Features{FeatureVerifyPINStart: 1, FeatureVerifyPINFinish: 2}, true},
		{"properties only", []byte{0x12, 4, 0x42, 0x33, 0x00, 0x12}, Features{FeatureGetTLVProperties: 0x42330012}, false},
		{"truncated tail", []byte{0x06, 4, 0, 0, 0, 6, 0x07, 4, 0}, Features{FeatureVerifyPINDirect: 6}, true},
		{"odd length skipped", []byte{0x13, 2, 0, 0, 0x06, 4, 0, 0, 0, 6}, Features{FeatureVerifyPINDirect: 6}, true},
		{"one byte", []byte{0x06}, Features{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := parseFeatures(tt.in)
			if !reflect.DeepEqual(got, tt.want) || got.PINPad() != tt.pinpad {
				t.Fatalf("parseFeatures = %v (pinpad %v), want %v (%v)", got, got.PINPad(), tt.want, tt.pinpad)
			}
		})
	}
}

func FuzzFeatures(f *testing.F) {
	f.Add([]byte{0x06, 4, 0x42, 0x33, 0x00, 0x06})
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(parseFeatures(b)) > len(b)/6 {
			t.Fatal("more features than the input can hold")
		}
	})
}

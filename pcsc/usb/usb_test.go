package usb

import "testing"

// On machines without a USB bus (containers, CI) the list is empty and there is no error.
func TestReadersQuiet(t *testing.T) {
	devs, err := Readers()
	if err != nil {
		t.Fatalf("Readers: %v", err)
	}
	if devs == nil {
		t.Fatal("nil slice")
	}
	for _, d := range devs {
		if !d.CCID {
			t.Errorf("non-CCID device listed: %v", d)
		}
	}
	t.Logf("%d CCID devices", len(devs))
}

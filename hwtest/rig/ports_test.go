package rig

import (
	"net"
	"strconv"
	"testing"
)

func TestPickPortsAndListening(t *testing.T) {
	r := &Rig{pairNames: []string{"A", "B", "C"}}
	if err := r.pickPorts(); err != nil {
		t.Fatal(err)
	}
	if len(r.ports) != 3 {
		t.Fatalf("ports %v", r.ports)
	}
	seen := map[int]bool{}
	for _, p := range r.ports {
		if seen[p] || seen[p+1] || p < 20000 || p+1 >= 32768 {
			t.Errorf("port pair %d/%d overlaps or leaves the range: %v", p, p+1, r.ports)
		}
		seen[p], seen[p+1] = true, true
	}
	if r.portsListening() {
		t.Fatal("free ports reported as listening")
	}
	r.ports = r.ports[:1]
	for _, p := range []int{r.ports[0], r.ports[0] + 1} {
		l, err := net.Listen("tcp", ":"+strconv.Itoa(p))
		if err != nil {
			t.Skipf("port %d taken meanwhile: %v", p, err)
		}
		defer l.Close()
	}
	if !r.portsListening() {
		t.Error("listening ports not seen in /proc/net/tcp*")
	}
	if r.Port(0) != r.ports[0] || r.Port(1) != r.ports[0]+1 {
		t.Errorf("Port(0), Port(1) = %d, %d for base %d", r.Port(0), r.Port(1), r.ports[0])
	}
}

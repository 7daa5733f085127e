package testport

import (
	"net"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/pulsefaas/pulse/internal/portrange"
)

// Every port handed out lies below this host's ephemeral range, outside its
// reserved ports, and can be listened on at once.
func TestFreeIsOutsideTheClientPorts(t *testing.T) {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		t.Skipf("not Linux: %v", err)
	}
	eph, err := portrange.ParseRange(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	rb, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_reserved_ports")
	if err != nil {
		t.Fatal(err)
	}
	reserved, err := portrange.ParseList(strings.TrimSpace(string(rb)))
	if err != nil {
		t.Fatal(err)
	}
	seen := map[int]bool{}
	for range 50 {
		p := Port(t)
		if eph.Contains(p) || reserved.Contains(p) || p < lowest {
			t.Fatalf("port %d: ephemeral range %s, reserved %s, lowest %d", p, eph, reserved, lowest)
		}
		ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
		if err != nil {
			t.Fatalf("port %d was handed out but cannot be listened on: %v", p, err)
		}
		ln.Close()
		seen[p] = true
	}
	if len(seen) != 50 {
		t.Errorf("50 picks gave %d distinct ports: a port was handed out twice", len(seen))
	}
	if a := Addr(t); !strings.HasPrefix(a, "127.0.0.1:") {
		t.Errorf("Addr = %q", a)
	}
}

// pick hands out neither a port somebody listens on, nor a reserved one,
// nor one handed out before, and says so when none is left.
func TestPickSkipsTakenAndReserved(t *testing.T) {
	// Four ports in a row: one held, one reserved, one free, one held.
	var held []net.Listener
	defer func() {
		for _, ln := range held {
			ln.Close()
		}
	}()
	base := Port(t)
	r := portrange.Range{Lo: base, Hi: base + 3}
	for _, p := range []int{base, base + 3} {
		ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
		if err != nil {
			t.Skipf("port %d is taken already: %v", p, err)
		}
		held = append(held, ln)
	}
	reserved := portrange.List{{Lo: base + 1, Hi: base + 1}}
	for range 20 {
		p, err := (&ledger{}).pick(r, reserved, 200)
		if err != nil || p != base+2 {
			t.Fatalf("pick in %s (held %d and %d, reserved %d) = %d, %v; want %d", r, base, base+3, base+1, p, err, base+2)
		}
	}
	// Handed out once, the free port is not handed out again, though
	// nothing listens on it yet.
	l := &ledger{}
	if p, err := l.pick(r, reserved, 200); err != nil || p != base+2 {
		t.Fatalf("first pick = %d, %v; want %d", p, err, base+2)
	}
	if p, err := l.pick(r, reserved, 50); err == nil || !strings.Contains(err.Error(), "no free port") {
		t.Fatalf("second pick with the only free port handed out = %d, %v; want an error", p, err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(base+2))
	if err != nil {
		t.Skipf("port %d is taken already: %v", base+2, err)
	}
	held = append(held, ln)
	if p, err := (&ledger{}).pick(r, reserved, 50); err == nil || !strings.Contains(err.Error(), "no free port") {
		t.Fatalf("pick with every port taken = %d, %v; want an error", p, err)
	}
}

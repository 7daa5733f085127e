package provision

import "testing"

// TestCheckAdvertiseAddr: node add's --advertise-addr takes an IP address
// or an interface name, as docker swarm join does, and nothing a shell or
// the join request would misread.
func TestCheckAdvertiseAddr(t *testing.T) {
	for _, tc := range []struct {
		addr string
		ok   bool
	}{
		{"10.0.0.12", true},
		{"fd00::12", true},
		{"eth1", true},
		{"enp0s31f6", true},
		{"wlan0.100", true},
		{"", false},
		{"10.0.0.12:2377", false}, // the swarm port is not the node's to choose here
		{"eth1; reboot", false},
		{"averyveryverylongname0", false}, // longer than IFNAMSIZ-1
		{"node-2.example", true},          // reads as an interface name; docker refuses it if there is none
	} {
		err := CheckAdvertiseAddr(tc.addr)
		if (err == nil) != tc.ok {
			t.Errorf("CheckAdvertiseAddr(%q) = %v, want ok %v", tc.addr, err, tc.ok)
		}
	}
}

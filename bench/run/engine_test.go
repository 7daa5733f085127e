package main

import "testing"

func TestLoopbackAddr(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		rewrote  bool
	}{
		{"127.0.0.1:32768", "127.0.0.1:32768", false},
		{"[::1]:80", "[::1]:80", false},
		{"10.0.0.5:32768", "127.0.0.1:32768", true},
		{"node-a:8080", "127.0.0.1:8080", true},
		{"no port", "no port", false},
	} {
		if got, rewrote := loopbackAddr(tc.in); got != tc.want || rewrote != tc.rewrote {
			t.Errorf("loopbackAddr(%q) = %q, %v; want %q, %v", tc.in, got, rewrote, tc.want, tc.rewrote)
		}
	}
}

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

func TestRotate(t *testing.T) {
	vs := []variant{{Name: "a"}, {Name: "b"}, {Name: "c"}}
	tests := []struct {
		k    int
		want string
	}{{0, "a,b,c"}, {1, "b,c,a"}, {2, "c,a,b"}, {4, "b,c,a"}}
	for _, tt := range tests {
		if got := variantNames(rotate(vs, tt.k)); got != tt.want {
			t.Errorf("rotate(%d) = %s, want %s", tt.k, got, tt.want)
		}
	}
	if got := variantNames(vs); got != "a,b,c" {
		t.Errorf("rotate changed its input: %s", got)
	}
}

package contract

import (
	"strconv"
	"testing"
)

func TestParseSize(t *testing.T) {
	cases := map[string]int64{
		"0": 0, "512": 512, "512b": 512, "1k": 1024, "1KB": 1024, "1KiB": 1024, "10MiB": 10 << 20,
		"2m": 2 << 20, "1g": 1 << 30, " 3 GiB ": 3 << 30,
	}
	for in, want := range cases {
		if got, err := ParseSize(in); err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "k", "-1", "1.5MiB", "1TB", "99999999999999999999", "9223372036854775807G"} {
		if _, err := ParseSize(bad); err == nil {
			t.Errorf("ParseSize(%q) accepted", bad)
		}
	}
}

// FuzzParseSize: the parser never panics, never returns a negative size, and
// reads its own decimal output back.
func FuzzParseSize(f *testing.F) {
	for _, s := range []string{"10MiB", "1k", "", "-1", "99999999999G", " 3 GiB "} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := ParseSize(s)
		if err != nil {
			return
		}
		if n < 0 {
			t.Fatalf("%q → %d", s, n)
		}
		if m, err := ParseSize(strconv.FormatInt(n, 10)); err != nil || m != n {
			t.Fatalf("%q → %d, whose decimal form reads back as %d, %v", s, n, m, err)
		}
	})
}

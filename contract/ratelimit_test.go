package contract

import (
	"testing"
	"time"
)

func TestParseRateLimit(t *testing.T) {
	for _, tt := range []struct {
		label string
		want  RateLimit
		err   string
	}{
		{"100/1s/function", RateLimit{100, time.Second, RateByFunction}, ""},
		{"5/1m/client", RateLimit{5, time.Minute, RateByClient}, ""},
		{"7/90s/key", RateLimit{7, 90 * time.Second, RateByKey}, ""},
		{"1000000/1h/key", RateLimit{1_000_000, time.Hour, RateByKey}, ""},
		{"100/1s", RateLimit{}, `want REQUESTS/PER/BY, e.g. "100/1s/function"`},
		{"x/1s/function", RateLimit{}, `requests "x": want a whole number`},
		{"0/1s/function", RateLimit{}, "requests 0: want 1 to 1000000"},
		{"5/500ms/function", RateLimit{}, "per 500ms: want whole seconds from 1s to 1h0m0s"},
		{"5/2h/function", RateLimit{}, "per 2h0m0s: want whole seconds from 1s to 1h0m0s"},
		{"5/1s/ip", RateLimit{}, `by "ip": want function, client or key`},
		{"5/forever/key", RateLimit{}, `per "forever": want a duration such as 1s or 1m`},
	} {
		got, err := ParseRateLimit(tt.label)
		switch {
		case tt.err != "" && (err == nil || err.Error() != tt.err):
			t.Errorf("ParseRateLimit(%q) = %v, want error %q", tt.label, err, tt.err)
		case tt.err == "" && (err != nil || got != tt.want):
			t.Errorf("ParseRateLimit(%q) = %+v, %v; want %+v", tt.label, got, err, tt.want)
		case tt.err == "" && got.String() != tt.label:
			t.Errorf("%+v.String() = %q, want %q", got, got.String(), tt.label)
		}
	}
}

// FuzzParseRateLimit: a label (outside input: anyone who can update a
// service sets it) either fails or gives a limit that passes its checks and
// writes back to a label that reads as the same limit.
func FuzzParseRateLimit(f *testing.F) {
	for _, s := range []string{"100/1s/function", "5/1m/client", "7/90s/key", "1/1h/key", "", "//", "9/1.5s/key", "-1/1s/function"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseRateLimit(s)
		if err != nil {
			return
		}
		if p := r.Problem(); p != "" {
			t.Fatalf("ParseRateLimit(%q) = %+v with problem %s", s, r, p)
		}
		back, err := ParseRateLimit(r.String())
		if err != nil || back != r {
			t.Fatalf("ParseRateLimit(%q) = %+v, String %q, read back %+v, %v", s, r, r.String(), back, err)
		}
	})
}

package main

import (
	"bytes"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/pulsefaas/pulse/function"
)

func TestDescribeLines(t *testing.T) {
	for _, tc := range []struct {
		scale  function.ScalePolicy
		limits function.ResourceLimits
		want   string
	}{
		{function.ScalePolicy{Metric: "inflight", Target: 10, Min: 1, Max: 5}, function.ResourceLimits{},
			"on inflight, target 10 per replica; 1 to 5 replicas; never to zero when idle | none"},
		{function.ScalePolicy{Metric: "rps", Target: 2.5, Min: 0, Max: 20, Idle: "5m"}, function.ResourceLimits{MemoryBytes: 64 << 20, CPUs: 0.5, Pids: 128},
			"on rps, target 2.5 per replica; 0 to 20 replicas; to zero after 5m idle | memory 64MiB, 0.5 CPU, 128 processes"},
		{function.ScalePolicy{Min: 2, Max: 2}, function.ResourceLimits{MemoryBytes: 1 << 30},
			"no metric (not autoscaled); 2 to 2 replicas; never to zero when idle | memory 1GiB"},
		{function.ScalePolicy{}, function.ResourceLimits{MemoryBytes: 1500000},
			"no metric (not autoscaled); 0 to 0 replicas; never to zero when idle | memory 1.4MiB"},
		{function.ScalePolicy{}, function.ResourceLimits{MemoryBytes: 1000},
			"no metric (not autoscaled); 0 to 0 replicas; never to zero when idle | memory 1000 bytes"},
	} {
		got := describeScale(tc.scale) + " | " + describeLimits(tc.limits)
		if got != tc.want {
			t.Errorf("%+v %+v:\n got %s\nwant %s", tc.scale, tc.limits, got, tc.want)
		}
		if strings.ContainsAny(got, "{}") {
			t.Errorf("a Go struct in %q", got)
		}
	}
}

func TestTailWriter(t *testing.T) {
	line := func(sec int, text string) string {
		return "hello.1.abc@node | " + time.Date(2026, 12, 6, 8, 0, sec, 5, time.UTC).Format(time.RFC3339Nano) + " " + text + "\n"
	}
	for _, tc := range []struct {
		name   string
		n      int
		writes []string
		want   string
		newest int // second of the newest stamp; -1: none
	}{
		{"fewer than n", 5, []string{line(1, "a"), line(2, "b")}, line(1, "a") + line(2, "b"), 2},
		{"newest n, in time order", 2, []string{line(1, "a"), line(3, "c"), line(2, "b")}, line(2, "b") + line(3, "c"), 3},
		{"newest n of interleaved tasks", 3, []string{line(1, "a"), line(5, "e"), line(2, "b"), line(4, "d"), line(3, "c"), line(0, "z")}, line(3, "c") + line(4, "d") + line(5, "e"), 5},
		{"same time: arrival order", 2, []string{line(1, "a"), line(1, "b"), line(1, "c")}, line(1, "b") + line(1, "c"), 1},
		{"zero lines", 0, []string{line(1, "a")}, "", 1},
		{"split writes", 1, []string{line(1, "a")[:10], line(1, "a")[10:] + line(4, "d")[:5], line(4, "d")[5:]}, line(4, "d"), 4},
		{"unended last line", 3, []string{line(1, "a"), "no stamp"}, "no stamp\n" + line(1, "a"), 1},
		{"no stamps: arrival order", 1, []string{"x\n", "y | z\n"}, "y | z\n", -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tw := newTailWriter(tc.n)
			for _, w := range tc.writes {
				if n, err := tw.Write([]byte(w)); n != len(w) || err != nil {
					t.Fatalf("Write: %d, %v", n, err)
				}
			}
			var out bytes.Buffer
			if err := tw.flush(&out); err != nil {
				t.Fatal(err)
			}
			if out.String() != tc.want {
				t.Errorf("got\n%q\nwant\n%q", out.String(), tc.want)
			}
			want := time.Time{}
			if tc.newest >= 0 {
				want = time.Date(2026, 12, 6, 8, 0, tc.newest, 5, time.UTC)
			}
			if !tw.newest.Equal(want) {
				t.Errorf("newest %v, want %v", tw.newest, want)
			}
		})
	}
}

func FuzzTailWriter(f *testing.F) {
	f.Add(3, []byte("a@b | 2026-12-06T08:00:00.000000005Z hi\nx\n"), []byte("y | bad z\n"))
	f.Add(0, []byte("\n\n"), []byte(""))
	f.Fuzz(func(t *testing.T, n int, a, b []byte) {
		if n < 0 || n > 100 {
			return
		}
		tw := newTailWriter(n)
		tw.Write(a)
		tw.Write(b)
		var out bytes.Buffer
		if err := tw.flush(&out); err != nil {
			t.Fatal(err)
		}
		if got := strings.Count(out.String(), "\n"); got > n && !(n == 0 && got == 0) {
			t.Errorf("%d lines kept, want at most %d", got, n)
		}
		all := string(a) + string(b) + "\n"
		for _, l := range strings.SplitAfter(out.String(), "\n") {
			if l != "" && !strings.Contains(all, l) {
				t.Errorf("%q was not written", l)
			}
		}
	})
}

func TestParseKey(t *testing.T) {
	good := map[string]string{
		"0123456789abcdef":                      "0123456789abcdef",
		"  0123456789abcdef\n":                  "0123456789abcdef",
		"0123456789abcdef\r\n":                  "0123456789abcdef",
		"abc+/def.ghi~jkl_-==":                  "abc+/def.ghi~jkl_-==",
		strings.Repeat("A", 512):                strings.Repeat("A", 512),
		"3q2-7wAAAAA3q2-7wAAAAA3q2-7wAAAAA3q2A": "3q2-7wAAAAA3q2-7wAAAAA3q2-7wAAAAA3q2A",
	}
	for in, want := range good {
		got, err := parseKey([]byte(in))
		if err != nil || got != want {
			t.Errorf("%q: %q, %v; want %q", in, got, err, want)
		}
	}
	bad := map[string]string{
		"":                            "the key has 0 characters",
		"short":                       "the key has 5 characters: want 16 to 512",
		strings.Repeat("A", 513):      "513 characters",
		"0123456789 abcdef":           "white space at character 11",
		"0123456789abcdef\nsecond":    "white space at character 17",
		"0123456789abcdef=x":          `'x' after '=' at character 18`,
		"================":            "starts with '='",
		"0123456789abcdef\"":          `'"' at character 17`,
		"0123456789abcdef\x00":        `'\x00' at character 17`,
		"0123456789abcdéf0":           "a non-ASCII character at byte 15",
		"Bearer 0123456789abcdef0123": "white space at character 7",
	}
	for in, want := range bad {
		_, err := parseKey([]byte(in))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v; want %q", in, err, want)
		}
	}
	k, err := newKey()
	if err != nil || len(k) != 43 {
		t.Fatalf("newKey: %q, %v", k, err)
	}
	if got, err := parseKey([]byte(k + "\n")); err != nil || got != k {
		t.Errorf("a new key does not parse back: %q, %v", got, err)
	}
}

// FuzzParseKey: an accepted key is one header-safe word, and parsing it
// again gives it back.
func FuzzParseKey(f *testing.F) {
	for _, s := range []string{"0123456789abcdef\n", "abc+/def.ghi~jkl_-==", "a b", "", "==", "0123456789abcdef=x"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		k, err := parseKey(b)
		if err != nil {
			return
		}
		if len(k) < minKeyLen || len(k) > maxKeyLen || strings.ContainsAny(k, " \t\r\n\x00\"\\,;") || !utf8.ValidString(k) {
			t.Errorf("accepted %q", k)
		}
		if again, err := parseKey([]byte(k)); err != nil || again != k {
			t.Errorf("%q parses again as %q, %v", k, again, err)
		}
	})
}

// FuzzParseFingerprint: an accepted fingerprint round-trips through the
// form openssl prints.
func FuzzParseFingerprint(f *testing.F) {
	for _, s := range []string{strings.Repeat("ab", 32), strings.Repeat("AB:", 31) + "AB", "sha256:" + strings.Repeat("0", 64), "", "zz"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		fp, err := parseFingerprint(s)
		if err != nil {
			if !strings.Contains(err.Error(), "want") {
				t.Errorf("%q: the error does not say what to write: %v", s, err)
			}
			return
		}
		if again, err := parseFingerprint(formatFingerprint(fp)); err != nil || again != fp {
			t.Errorf("%q: %x does not round-trip: %x, %v", s, fp, again, err)
		}
	})
}

// FuzzExplainAnswer: whatever a gateway or function answers, the line is
// one printable line without the server's control characters.
func FuzzExplainAnswer(f *testing.F) {
	f.Add(404, "application/json", []byte(`{"error":"function not found","function":"hello"}`))
	f.Add(401, "application/json; charset=utf-8", []byte(`{"error":"x\u001b[2J\ny"}`))
	f.Add(500, "text/plain", []byte("boom"))
	f.Add(502, "application/json", []byte(`{"error":null}`))
	f.Fuzz(func(t *testing.T, status int, ct string, body []byte) {
		if status < 100 || status > 999 {
			return
		}
		for _, s := range []string{explainAnswer("hello", status, ct, body, false), parseErrorAnswer(body)} {
			if strings.ContainsAny(s, "\n\r\x1b\x00") {
				t.Errorf("%q", s)
			}
		}
	})
}

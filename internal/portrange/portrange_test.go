package portrange

import (
	"errors"
	"slices"
	"strconv"
	"strings"
	"testing"
)

func TestParseRange(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Range
		err  bool
	}{
		{"32768\t60999\n", Range{32768, 60999}, false}, // as the kernel prints it
		{"49152 60999\n", Range{49152, 60999}, false},  // /etc/pulse/docker-port-range
		{"  1024   1024 ", Range{1024, 1024}, false},
		{"0 65535", Range{0, MaxPort}, false},
		{"60999 32768", Range{}, true},
		{"32768", Range{}, true},
		{"32768 60999 1", Range{}, true},
		{"32768-60999", Range{}, true},
		{"-1 5", Range{}, true},
		{"+1 5", Range{}, true},
		{"1 65536", Range{}, true},
		{"1 0x10", Range{}, true},
		{"", Range{}, true},
	} {
		got, err := ParseRange(tc.in)
		if tc.err {
			if err == nil || !errors.Is(err, ErrSyntax) {
				t.Errorf("ParseRange(%q) = %v, %v; want an ErrSyntax", tc.in, got, err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ParseRange(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
}

func TestParseList(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want string // List.String; "error" for a syntax error
		len  int
	}{
		{"49152-60999,8080", "8080,49152-60999", 11849},
		{"8080,49152-60999\n", "8080,49152-60999", 11849}, // as the kernel prints it
		{"\n", "", 0}, // the kernel's empty list
		{"", "", 0},
		{"8081,49152-60999,8080,100-200,150-300", "100-300,8080-8081,49152-60999", 201 + 2 + 11848},
		{"5-5", "5", 1},
		{"1-2,3-4", "1-4", 4},    // adjacent ranges merge, as in the kernel
		{"1-10,2-3", "1-10", 10}, // contained
		{" 7 , 9 - 10 ", "7,9-10", 3},
		{"0,65535", "0,65535", 2},
		{"0-65535", "0-65535", 65536},
		{"65536", "error", 0},
		{"10-5", "error", 0},
		{"1,,2", "error", 0},
		{"1,", "error", 0},
		{"a", "error", 0},
		{"1-2-3", "error", 0},
		{"-5", "error", 0},
		{"1 2", "error", 0},
	} {
		got, err := ParseList(tc.in)
		if tc.want == "error" {
			if err == nil || !errors.Is(err, ErrSyntax) {
				t.Errorf("ParseList(%q) = %v, %v; want an ErrSyntax", tc.in, got, err)
			}
			continue
		}
		if err != nil || got.String() != tc.want || got.Len() != tc.len {
			t.Errorf("ParseList(%q) = %q (%d ports), %v; want %q (%d ports)", tc.in, got, got.Len(), err, tc.want, tc.len)
		}
	}
}

func TestOutside(t *testing.T) {
	list := func(s string) List {
		l, err := ParseList(s)
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	for _, tc := range []struct {
		list string
		r    Range
		want string
	}{
		{"49152-60999", Range{49152, 60999}, ""},            // dockerd's range, reserved
		{"49152-60999", Range{32768, 60999}, "32768-49151"}, // the clients' ports
		{"", Range{32768, 60999}, "32768-60999"},            // nothing reserved
		{"8080,49152-60999", Range{32768, 60999}, "32768-49151"},
		{"49152-55000,55002-60999", Range{49152, 60999}, "55001"},
		{"40000-50000", Range{32768, 60999}, "32768-39999,50001-60999"},
		{"1-100", Range{200, 300}, "200-300"},
		{"400-500", Range{200, 300}, "200-300"},
		{"0-65535", Range{0, 65535}, ""},
		{"300", Range{200, 300}, "200-299"},
		{"200", Range{200, 300}, "201-300"},
	} {
		l := list(tc.list)
		got := l.Outside(tc.r)
		if got.String() != tc.want {
			t.Errorf("%q.Outside(%v) = %q; want %q", tc.list, tc.r, got, tc.want)
		}
		if l.Covers(tc.r) != (tc.want == "") {
			t.Errorf("%q.Covers(%v) = %v", tc.list, tc.r, l.Covers(tc.r))
		}
	}
}

// naive is the oracle: the set of ports of a reserved-ports list, one entry
// at a time, or false where the list is not valid.
func naive(s string) (set map[int]bool, ok bool) {
	set = map[int]bool{}
	if strings.TrimSpace(s) == "" {
		return set, true
	}
	for e := range strings.SplitSeq(s, ",") {
		e = strings.TrimSpace(e)
		a, b, isRange := strings.Cut(e, "-")
		lo, ok := naivePort(strings.TrimSpace(a))
		if !ok {
			return nil, false
		}
		hi := lo
		if isRange {
			if hi, ok = naivePort(strings.TrimSpace(b)); !ok || hi < lo {
				return nil, false
			}
		}
		for p := lo; p <= hi; p++ {
			set[p] = true
		}
	}
	return set, true
}

func naivePort(s string) (int, bool) {
	for _, c := range s {
		if c < '0' || c > '9' {
			return 0, false
		}
	}
	n, err := strconv.Atoi(s)
	return n, err == nil && n <= MaxPort && len(s) <= 5
}

// FuzzParseList checks ParseList against the naive oracle, and that its
// result is in normal form and survives String and ParseList unchanged.
func FuzzParseList(f *testing.F) {
	for _, s := range []string{"49152-60999,8080", "8080,49152-60999\n", "", "\n", "1-2,3-4", "1-10,2-3",
		" 7 , 9 - 10 ", "0-65535", "65536", "10-5", "1,,2", "1-2-3", "-5", "00080", "999999"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		l, err := ParseList(s)
		want, ok := naive(s)
		if (err == nil) != ok {
			t.Fatalf("ParseList(%q) error %v; the oracle says valid=%v", s, err, ok)
		}
		if err != nil {
			if !errors.Is(err, ErrSyntax) {
				t.Fatalf("ParseList(%q): %v does not wrap ErrSyntax", s, err)
			}
			return
		}
		for i, r := range l {
			if r.Lo < 0 || r.Hi > MaxPort || r.Lo > r.Hi {
				t.Fatalf("ParseList(%q): bad range %v", s, r)
			}
			if i > 0 && r.Lo <= l[i-1].Hi+1 {
				t.Fatalf("ParseList(%q) = %v: not normalized at %d", s, l, i)
			}
		}
		if l.Len() != len(want) {
			t.Fatalf("ParseList(%q) has %d ports; the oracle %d", s, l.Len(), len(want))
		}
		for p := range want {
			if !l.Contains(p) {
				t.Fatalf("ParseList(%q) lacks port %d", s, p)
			}
		}
		again, err := ParseList(l.String())
		if err != nil || !slices.Equal(again, l) {
			t.Fatalf("ParseList(%q) = %v; its String %q parses to %v, %v", s, l, l.String(), again, err)
		}
		// Outside and Covers agree with Contains on a range around the list.
		if len(l) > 0 {
			r := Range{max(0, l[0].Lo-1), min(MaxPort, l[len(l)-1].Hi+1)}
			out := l.Outside(r)
			if out.Len()+l.Len() != r.Len() {
				t.Fatalf("%v.Outside(%v) = %v: %d + %d ports != %d", l, r, out, out.Len(), l.Len(), r.Len())
			}
			for _, x := range out {
				if l.Contains(x.Lo) || l.Contains(x.Hi) {
					t.Fatalf("%v.Outside(%v) = %v holds reserved ports", l, r, out)
				}
			}
			if !l.Covers(l[0]) {
				t.Fatalf("%v does not cover its own %v", l, l[0])
			}
		}
	})
}

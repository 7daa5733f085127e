// Package portrange reads Linux's TCP/UDP port ranges: the ephemeral range
// of net.ipv4.ip_local_port_range ("32768\t60999") and the list of
// net.ipv4.ip_local_reserved_ports ("8080,49152-60999"), and answers what
// Pulse asks of them: does the range dockerd assigns host ports from lie
// within the reserved ports, and which client ports remain.
//
// Why it matters (DESIGN.md §7): dockerd 20.10 assigns published host ports
// from the ip_local_port_range it reads at start. Pulse's playbook (role docker) makes
// that read return a range of its own, which the kernel reserves so client
// sockets never take one of its ports.
package portrange

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// MaxPort is the highest port number.
const MaxPort = 65535

// Range is the ports Lo..Hi, both included; 0 <= Lo <= Hi <= MaxPort.
type Range struct{ Lo, Hi int }

// Len is the number of ports in r.
func (r Range) Len() int { return r.Hi - r.Lo + 1 }

// Contains reports whether port is in r.
func (r Range) Contains(port int) bool { return r.Lo <= port && port <= r.Hi }

// String is "Lo-Hi", or "Lo" for a single port, as the kernel prints
// reserved ports.
func (r Range) String() string {
	if r.Lo == r.Hi {
		return strconv.Itoa(r.Lo)
	}
	return strconv.Itoa(r.Lo) + "-" + strconv.Itoa(r.Hi)
}

// ErrSyntax is wrapped by every parse error.
var ErrSyntax = errors.New("port range syntax")

// ParseRange parses the content of ip_local_port_range (or of
// /etc/pulse/docker-port-range): two port numbers separated by white space,
// the first not above the second.
func ParseRange(s string) (Range, error) {
	f := strings.Fields(s)
	if len(f) != 2 {
		return Range{}, fmt.Errorf("%w: %q: want two port numbers", ErrSyntax, s)
	}
	lo, err := parsePort(f[0])
	if err != nil {
		return Range{}, err
	}
	hi, err := parsePort(f[1])
	if err != nil {
		return Range{}, err
	}
	if lo > hi {
		return Range{}, fmt.Errorf("%w: %q: the first port is above the second", ErrSyntax, s)
	}
	return Range{lo, hi}, nil
}

func parsePort(s string) (int, error) {
	// Digits only: Atoi would take a sign.
	if s == "" || len(s) > 5 || strings.Trim(s, "0123456789") != "" {
		return 0, fmt.Errorf("%w: %q is not a port number", ErrSyntax, s)
	}
	n, _ := strconv.Atoi(s)
	if n > MaxPort {
		return 0, fmt.Errorf("%w: %d is above %d", ErrSyntax, n, MaxPort)
	}
	return n, nil
}

// List is a set of ports in the kernel's normal form: sorted ranges, none
// overlapping or adjacent to the next. The zero List is empty.
type List []Range

// ParseList parses the content of ip_local_reserved_ports, or the value of
// that sysctl: comma-separated ports and Lo-Hi ranges, in any order,
// overlapping or not, white space around entries allowed; empty (or only
// white space) is the empty list. The result is normalized.
func ParseList(s string) (List, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	var rs []Range
	for entry := range strings.SplitSeq(s, ",") {
		e := strings.TrimSpace(entry)
		loS, hiS, isRange := strings.Cut(e, "-")
		lo, err := parsePort(strings.TrimSpace(loS))
		if err != nil {
			return nil, fmt.Errorf("%w (in entry %q)", err, e)
		}
		hi := lo
		if isRange {
			if hi, err = parsePort(strings.TrimSpace(hiS)); err != nil {
				return nil, fmt.Errorf("%w (in entry %q)", err, e)
			}
			if lo > hi {
				return nil, fmt.Errorf("%w: entry %q: the first port is above the second", ErrSyntax, e)
			}
		}
		rs = append(rs, Range{lo, hi})
	}
	return Normalize(rs), nil
}

// Normalize returns the ports of rs as a List. rs's ranges must be valid.
func Normalize(rs []Range) List {
	if len(rs) == 0 {
		return nil
	}
	s := slices.Clone(rs)
	slices.SortFunc(s, func(a, b Range) int { return a.Lo - b.Lo })
	out := List{s[0]}
	for _, r := range s[1:] {
		last := &out[len(out)-1]
		if r.Lo <= last.Hi+1 {
			last.Hi = max(last.Hi, r.Hi)
			continue
		}
		out = append(out, r)
	}
	return out
}

// String is the list as the kernel prints it ("8080,49152-60999"); empty
// for the empty list.
func (l List) String() string {
	parts := make([]string, len(l))
	for i, r := range l {
		parts[i] = r.String()
	}
	return strings.Join(parts, ",")
}

// Len is the number of ports in l.
func (l List) Len() int {
	n := 0
	for _, r := range l {
		n += r.Len()
	}
	return n
}

// Contains reports whether port is in l.
func (l List) Contains(port int) bool {
	_, found := slices.BinarySearchFunc(l, port, func(r Range, p int) int {
		switch {
		case r.Hi < p:
			return -1
		case r.Lo > p:
			return 1
		}
		return 0
	})
	return found
}

// Covers reports whether every port of r is in l.
func (l List) Covers(r Range) bool { return len(l.Outside(r)) == 0 }

// Outside returns the ports of r that are not in l.
func (l List) Outside(r Range) List {
	var out List
	next := r.Lo // the first port of r not yet accounted for
	for _, x := range l {
		if x.Hi < next {
			continue
		}
		if x.Lo > r.Hi {
			break
		}
		if x.Lo > next {
			out = append(out, Range{next, x.Lo - 1})
		}
		next = x.Hi + 1
		if next > r.Hi {
			return out
		}
	}
	return append(out, Range{next, r.Hi})
}

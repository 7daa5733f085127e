// Package testport hands tests loopback ports to listen on that no client
// socket can take in the meantime.
//
// The usual "listen on :0, close, pass the port on" picks a port from the
// kernel's ephemeral range (net.ipv4.ip_local_port_range), the very range
// the kernel gives client sockets their source ports from. Between the
// close and the real listen (seconds, when the listener opens after a
// startup), any loopback connection of a parallel test may take the port as
// its source, and the listen fails with EADDRINUSE. Seen in CI: pulsed's
// API never listened while other packages' load tests ran. The ports here
// lie below the ephemeral range and outside net.ipv4.ip_local_reserved_ports
// (dockerd's host ports on a host Pulse's playbook set up), so only an
// explicit bind can take one; a random pick among thousands makes two
// parallel test processes meeting on one port unlikely. Within a process a
// port is handed out once only: a test that takes six ports for one pulsed
// must not get one twice, which a free check cannot see before anything
// listens (seen in CI: HAProxy's dispatch frontend could not bind the port
// pulsed had just taken for one of its own listeners).
package testport

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/pulsefaas/pulse/internal/portrange"
)

// band is how many ports below the ephemeral range are used.
const band = 12000

// lowest is the lowest port handed out (above the well-known and common
// registered service ports).
const lowest = 10000

// Free returns a port on 127.0.0.1 that was free a moment ago, chosen below
// the ephemeral range and outside the reserved ports.
func Free() (int, error) {
	eph, err := read("/proc/sys/net/ipv4/ip_local_port_range", portrange.ParseRange)
	if err != nil {
		return 0, err
	}
	reserved, err := read("/proc/sys/net/ipv4/ip_local_reserved_ports", portrange.ParseList)
	if err != nil {
		return 0, err
	}
	lo, hi := max(lowest, eph.Lo-band), eph.Lo-1
	if hi-lo < 1000 {
		return 0, fmt.Errorf("testport: the ephemeral range %s leaves fewer than 1000 ports above %d", eph, lowest)
	}
	return handed.pick(portrange.Range{Lo: lo, Hi: hi}, reserved, 200)
}

// handed is every port this process has handed out.
var handed = &ledger{}

// ledger remembers the ports handed out, so none is handed out twice.
type ledger struct {
	mu    sync.Mutex
	given map[int]bool
}

// pick tries up to tries random ports of r, skipping reserved ones and
// those handed out before, and returns the first that 127.0.0.1 can listen
// on, remembering it.
func (l *ledger) pick(r portrange.Range, reserved portrange.List, tries int) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.given == nil {
		l.given = map[int]bool{}
	}
	for range tries {
		p := r.Lo + rand.IntN(r.Len())
		if reserved.Contains(p) || l.given[p] {
			continue
		}
		ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
		if err != nil {
			continue
		}
		ln.Close()
		l.given[p] = true
		return p, nil
	}
	return 0, fmt.Errorf("testport: no free port in %s after %d tries (%d handed out by this process)", r, tries, len(l.given))
}

// Port is Free for a test: it fails t when there is none.
func Port(t testing.TB) int {
	t.Helper()
	p, err := Free()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// Addr is "127.0.0.1:<Port(t)>".
func Addr(t testing.TB) string {
	t.Helper()
	return "127.0.0.1:" + strconv.Itoa(Port(t))
}

func read[T any](path string, parse func(string) (T, error)) (T, error) {
	var zero T
	b, err := os.ReadFile(path)
	if err != nil {
		return zero, fmt.Errorf("testport: %w", err)
	}
	v, err := parse(strings.TrimSpace(string(b)))
	if err != nil {
		return zero, fmt.Errorf("testport: %s: %w", path, err)
	}
	return v, nil
}

package main

import (
	"bufio"
	"cmp"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/pulsefaas/pulse/gateway"
)

// --- pollers ---

// pollSamples reads pulsed's catalog and HAProxy's slots every
// soakSamplePoll.
func (b *soakBench) pollSamples(ctx context.Context) {
	backend := gateway.BackendName(b.name)
	every(ctx, soakSamplePoll, func() {
		smp := soakSample{At: time.Now()}
		f, ferr := b.catalogFunction(ctx, b.name)
		smp.Replicas, smp.Desired = f.Replicas, f.Desired
		var serr error
		smp.Slots, serr = readSlots(ctx, b.rt, backend)
		b.mu.Lock()
		defer b.mu.Unlock()
		b.samples = append(b.samples, smp)
		if err := cmp.Or(serr, ferr); err != nil {
			b.lastErr = err
		}
	})
}

// pollHost reads HAProxy's server counters, the TIME_WAIT sockets and the
// host's CPU every soakHostPoll.
func (b *soakBench) pollHost(ctx context.Context) {
	every(ctx, soakHostPoll, func() {
		b.pollStats(ctx)
		s := soakHostSample{At: time.Now()}
		s.TimeWait, _ = readTimeWait("/proc")
		s.CPU, _ = readHostCPU("/proc")
		b.mu.Lock()
		b.host = append(b.host, s)
		b.mu.Unlock()
	})
}

// pollStats adds one `show stat` of the function's servers to the counters.
func (b *soakBench) pollStats(ctx context.Context) {
	rows, err := serverStats(ctx, b.rt, gateway.BackendName(b.name))
	at := time.Now()
	b.mu.Lock()
	defer b.mu.Unlock()
	if err != nil {
		b.statErrs++
		b.lastErr = err
		return
	}
	b.stats.add(at, rows)
}

// readTimeWait counts the TCP sockets in TIME_WAIT (IPv4 and IPv6).
func readTimeWait(procDir string) (int, error) {
	n := 0
	for _, f := range []string{"net/tcp", "net/tcp6"} {
		fh, err := os.Open(filepath.Join(procDir, f))
		if errors.Is(err, os.ErrNotExist) {
			continue
		} else if err != nil {
			return 0, err
		}
		c, err := countTimeWait(fh)
		fh.Close()
		if err != nil {
			return 0, err
		}
		n += c
	}
	return n, nil
}

// countTimeWait counts the lines of a /proc/net/tcp table (after its
// header) whose state, the 4th column, is 06: TIME_WAIT.
func countTimeWait(r io.Reader) (int, error) {
	sc := bufio.NewScanner(r)
	n := 0
	for i := 0; sc.Scan(); i++ {
		if f := strings.Fields(sc.Text()); i > 0 && len(f) > 3 && f[3] == "06" {
			n++
		}
	}
	return n, sc.Err()
}

// parseShowInfo reads HAProxy's `show info` ("Name: value" lines).
func parseShowInfo(out string) map[string]string {
	m := map[string]string{}
	for _, l := range strings.Split(out, "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok {
			m[strings.TrimSpace(k)] = strings.TrimSpace(v)
		}
	}
	return m
}

// rss reads the resident memory of pulsed's HAProxy (master and workers)
// and of pulsed.
func (b *soakBench) rss() soakRSS {
	var r soakRSS
	var rss, hwm int64
	if ps, err := findHAProxies("/proc", b.stateDir); err == nil {
		for _, p := range ps {
			if m, err := readStatus("/proc", p.PID); err == nil {
				r.HAProxyProcs++
				rss, hwm = rss+m.RSSKB, hwm+m.HWMKB
			}
		}
	}
	r.HAProxyMB, r.HAProxyHWMMB = kbToMB(rss), kbToMB(hwm)
	if b.pulsed != nil {
		if m, err := readStatus("/proc", b.pulsed.pid()); err == nil {
			r.PulsedMB, r.PulsedHWMMB = kbToMB(m.RSSKB), kbToMB(m.HWMKB)
		}
	}
	return r
}

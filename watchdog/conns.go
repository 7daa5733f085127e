package watchdog

import (
	"context"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// connReaper enforces the connection timeouts: idle keep-alive connections
// past IdleTimeout, and requests still on the wire past their budget
// (max(ReadTimeout, WriteTimeout) from the first byte), are closed by one
// sweep a tick instead of by per-request deadlines.
//
// net/http's ReadTimeout, WriteTimeout and IdleTimeout re-arm the
// connection's runtime timers two or three times a request; measured here,
// that alone cost 8 % more CPU per request than a bare server, against a
// 5 % budget for the whole watchdog — the re-armed timers keep waking the
// network poller. The header timeout stays with net/http (a bare server pays
// for it too). The cost is resolution: a limit is enforced within one tick.
type connReaper struct {
	tick   time.Duration
	epoch  atomic.Int64 // ticks since start
	idle   int64        // ticks a connection may stay idle
	active int64        // ticks a request may stay on the wire
	mu     sync.Mutex
	conns  map[net.Conn]*connInfo
}

type connInfo struct {
	state atomic.Int32 // an http.ConnState
	since atomic.Int64 // epoch of the last transition
}

func newConnReaper(cfg Config) *connReaper {
	active := max(cfg.ReadTimeout, cfg.WriteTimeout)
	tick := min(time.Second, max(10*time.Millisecond, min(cfg.IdleTimeout, active)/4))
	ticks := func(d time.Duration) int64 { return int64((d + tick - 1) / tick) }
	return &connReaper{tick: tick, idle: ticks(cfg.IdleTimeout), active: ticks(active), conns: make(map[net.Conn]*connInfo)}
}

// track is the server's ConnState hook.
func (c *connReaper) track(conn net.Conn, s http.ConnState) {
	switch s {
	case http.StateNew:
		ci := &connInfo{}
		ci.state.Store(int32(s))
		ci.since.Store(c.epoch.Load())
		c.mu.Lock()
		c.conns[conn] = ci
		c.mu.Unlock()
	case http.StateActive, http.StateIdle:
		c.mu.Lock()
		ci := c.conns[conn]
		c.mu.Unlock()
		if ci != nil {
			ci.since.Store(c.epoch.Load())
			ci.state.Store(int32(s))
		}
	default: // hijacked, closed
		c.mu.Lock()
		delete(c.conns, conn)
		c.mu.Unlock()
	}
}

// run sweeps every tick until ctx ends.
func (c *connReaper) run(ctx context.Context) {
	t := time.NewTicker(c.tick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := c.epoch.Add(1)
		var expired []net.Conn
		c.mu.Lock()
		for conn, ci := range c.conns {
			age := now - ci.since.Load()
			switch http.ConnState(ci.state.Load()) {
			case http.StateIdle, http.StateNew:
				// A new connection that never sends a request is idle too
				// (its header timeout starts only with the first byte).
				if age > c.idle {
					expired = append(expired, conn)
				}
			case http.StateActive:
				if age > c.active {
					expired = append(expired, conn)
				}
			}
		}
		c.mu.Unlock()
		for _, conn := range expired {
			conn.Close()
		}
	}
}

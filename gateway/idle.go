package gateway

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/pulsefaas/pulse/contract"
	"github.com/pulsefaas/pulse/internal/catalog"
	"github.com/pulsefaas/pulse/internal/scalelabels"
)

// Sleeper scales an idle function to zero replicas (the scaler).
type Sleeper interface {
	ScaleToZero(ctx context.Context, function, reason string) error
}

// StatsSource reads HAProxy's per-backend counters (*Runtime).
type StatsSource interface {
	Stats(ctx context.Context) ([]BackendStat, error)
}

// CatalogReader is the part of the replica catalog (*catalog.Catalog) the
// cold-start path and the idle watcher read.
type CatalogReader interface {
	Current() (contract.Catalog, time.Time, error)
	Refresh()
}

var (
	_ CatalogReader = (*catalog.Catalog)(nil)
	_ StatsSource   = (*Runtime)(nil)
)

// IdleWatcher scales a function with a scale.idle label to zero once the
// gateway has seen no request for it for that long. It judges from
// HAProxy's backend counters, not from the replicas: a request held in
// HAProxy's queue, or served by the cold-start path, counts too. A counter
// that cannot be read counts as activity, so a broken stats socket never
// puts a function to sleep.
type IdleWatcher struct {
	cat      CatalogReader
	stats    StatsSource
	sleeper  Sleeper
	interval time.Duration
	log      *slog.Logger
	seen     map[string]idleSeen
	statsErr bool
	// Busy, if set, reports a function busy outside HAProxy's counters
	// (waking through the cold-start path): it is not idle.
	Busy func(function string) bool
}

type idleSeen struct {
	requests, sessions int64
	activeAt           time.Time
}

// NewIdleWatcher reads the counters every interval.
func NewIdleWatcher(cat CatalogReader, stats StatsSource, sleeper Sleeper, interval time.Duration, log *slog.Logger) *IdleWatcher {
	return &IdleWatcher{cat: cat, stats: stats, sleeper: sleeper, interval: interval,
		log: log.With("component", "idle"), seen: map[string]idleSeen{}}
}

// Run checks every interval until ctx ends.
func (w *IdleWatcher) Run(ctx context.Context) error {
	t := time.NewTicker(w.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			w.check(ctx, time.Now())
		}
	}
}

// check compares the counters with the last reading and puts to sleep every
// function idle for its scale.idle period.
func (w *IdleWatcher) check(ctx context.Context, now time.Time) {
	cat, _, err := w.cat.Current()
	if err != nil {
		return
	}
	sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	list, err := w.stats.Stats(sctx)
	cancel()
	if err != nil {
		if !w.statsErr {
			w.log.Warn("cannot read gateway counters; no function is put to sleep until they read again", "err", err)
		}
		w.statsErr = true
		list = nil
	} else if w.statsErr {
		w.log.Info("gateway counters read again")
		w.statsErr = false
	}
	byBackend := make(map[string]BackendStat, len(list))
	for _, s := range list {
		byBackend[s.Backend] = s
	}
	keep := map[string]idleSeen{}
	for _, fn := range cat.Functions {
		pol, _ := scalelabels.Parse(fn.Labels)
		if pol.Idle <= 0 {
			continue
		}
		st, ok := byBackend[BackendName(fn.Name)]
		prev, had := w.seen[fn.Name]
		cur := idleSeen{requests: st.Requests, sessions: st.Sessions + st.Queue, activeAt: prev.activeAt}
		switch {
		case !ok || !had, fn.Desired == 0, st.Requests != prev.requests, cur.sessions > 0,
			w.Busy != nil && w.Busy(fn.Name):
			// Unknown, asleep already, or busy: the idle period starts now.
			cur.activeAt = now
		}
		if now.Sub(cur.activeAt) >= pol.Idle {
			reason := fmt.Sprintf("no request through the gateway for %s (scale.idle)", pol.Idle)
			sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			if err := w.sleeper.ScaleToZero(sctx, fn.Name, reason); err != nil {
				w.log.Warn("scale to zero failed", "function", fn.Name, "err", err)
			} else {
				w.log.Info("scaled to zero", "function", fn.Name, "idle", pol.Idle.String())
				w.cat.Refresh()
			}
			cancel()
			cur.activeAt = now
		}
		keep[fn.Name] = cur
	}
	w.seen = keep
}

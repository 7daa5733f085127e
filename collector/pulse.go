// Package collector is Pulse's Netdata collector: a go.d.plugin (v0.58.1)
// module named "pulse" that every second reads pulsed's replica catalog and
// async queues, scrapes every replica's watchdog metrics and HAProxy's
// per-backend stats, and emits one set of charts per function (contexts,
// dimensions and variables from package contract). It presents the
// install's replica credential (replica_auth_file, re-read when it changes)
// on every scrape of a replica, reads pages uncompressed and capped, skips
// catalog entries it cannot chart instead of the whole catalog, and
// verifies an https:// catalog with ca_file (package tlsclient).
//
// This file is the only one that uses go.d's module API (agent/module),
// which later Netdata releases changed: reading the catalog and the queues,
// scraping and aggregating (catalog.go, queues.go, pages.go, aggregate.go,
// collect.go) do not depend on it. README.md lists the charts.
package collector

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"strings"

	"github.com/netdata/go.d.plugin/agent/module"
	"github.com/netdata/go.d.plugin/logger"
	"github.com/netdata/go.d.plugin/pkg/web"

	"github.com/pulsefaas/pulse/contract"
)

// Registry returns a go.d module registry holding only the pulse module,
// for the plugin's agent.
func Registry() module.Registry {
	r := module.Registry{}
	r.Register(contract.CollectorModule, module.Creator{
		Defaults: module.Defaults{UpdateEvery: 1},
		Create:   func() module.Module { return New() },
	})
	return r
}

// Config is one job's configuration (collector/config/pulse.d/pulse.conf).
type Config struct {
	UpdateEvery int          `yaml:"update_every"`
	CatalogURL  string       `yaml:"catalog_url"`
	HAProxyURL  string       `yaml:"haproxy_url"`
	Timeout     web.Duration `yaml:"timeout"`
	// ReplicaAuthFile holds the replica credential the collector presents
	// (contract.HeaderReplicaAuth) on every scrape of a replica.
	ReplicaAuthFile string `yaml:"replica_auth_file"`
	// CAFile is the PEM bundle of CAs that an https:// catalog_url (and
	// haproxy_url) must chain to; empty: the system's roots. Re-read when
	// it changes.
	CAFile string `yaml:"ca_file"`
}

// Pulse is the go.d module.
type Pulse struct {
	module.Base
	Config `yaml:",inline"`

	core    *Collector
	charts  *module.Charts
	charted map[string][]*module.Chart // by function
}

var _ module.Module = (*Pulse)(nil)

// New returns the module with the default configuration.
func New() *Pulse {
	return &Pulse{Config: defaultConfig(), charts: &module.Charts{}, charted: map[string][]*module.Chart{}}
}

// Init validates the configuration and sets the collector up.
func (p *Pulse) Init() bool {
	core, err := NewCollector(p.Config, slog.New(&goDHandler{l: p.Logger}))
	if err != nil {
		p.Errorf("config: %v", err)
		return false
	}
	p.core = core
	if err := p.charts.Add(newChart(collectorChart, collectorChartID, collectorFamily, collectorKey)); err != nil {
		p.Errorf("charts: %v", err)
		return false
	}
	return true
}

// Check succeeds: pulsed and HAProxy may start after Netdata, and the
// collector copes with either missing (go.d would not retry a failed check
// with the default autodetection_retry 0).
func (p *Pulse) Check() bool { return p.core != nil }

// Charts returns the charts; functions' charts are added and removed by
// Collect as they come and go.
func (p *Pulse) Charts() *module.Charts { return p.charts }

// Collect runs one cycle and brings the charts in line with the catalog.
func (p *Pulse) Collect() map[string]int64 {
	mx, fns := p.core.Collect(context.Background())
	p.syncCharts(fns)
	return mx
}

// Cleanup releases the collector's connections.
func (p *Pulse) Cleanup() {
	if p.core != nil {
		p.core.Close()
	}
}

// syncCharts adds the charts of functions that appeared and makes those of
// functions that went obsolete.
func (p *Pulse) syncCharts(fns []string) {
	now := make(map[string]bool, len(fns))
	for _, fn := range fns {
		now[fn] = true
		if _, ok := p.charted[fn]; ok {
			continue
		}
		var added []*module.Chart
		for _, t := range functionCharts {
			ch := newChart(t, contract.ChartID(fn, t.suffix), fn, func(dim string) string { return dimKey(fn, t.suffix, dim) })
			for _, v := range t.vars {
				ch.Vars = append(ch.Vars, &module.Var{ID: varKey(fn, t.suffix, v), Name: v})
			}
			if err := p.charts.Add(ch); err != nil {
				p.Warningf("function %s: %v", fn, err)
				continue
			}
			added = append(added, ch)
		}
		p.charted[fn] = added
	}
	for fn, charts := range p.charted {
		if now[fn] {
			continue
		}
		for _, ch := range charts {
			ch.MarkRemove()
			ch.MarkNotCreated()
		}
		delete(p.charted, fn)
	}
}

// newChart builds a go.d chart from a template; key maps a dimension name
// to its key in Collect's map. Netdata sees a dimension's Name.
func newChart(t chartTemplate, id, family string, key func(dim string) string) *module.Chart {
	ch := &module.Chart{
		ID: id, Title: t.title, Units: t.units, Fam: family, Ctx: t.ctx,
		Type: module.ChartType(t.kind), Priority: t.priority,
	}
	for _, d := range t.dims {
		algo := module.Absolute
		if d.incremental {
			algo = module.Incremental
		}
		ch.Dims = append(ch.Dims, &module.Dim{ID: key(d.name), Name: d.name, Algo: algo, Div: d.div})
	}
	return ch
}

// goDHandler is a slog.Handler writing through go.d's logger, so the
// collector's messages carry the job's attributes and follow the plugin's
// log level.
type goDHandler struct {
	l     *logger.Logger
	attrs []slog.Attr
	group string
}

func (h *goDHandler) Enabled(_ context.Context, l slog.Level) bool { return logger.Level.Enabled(l) }

func (h *goDHandler) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	b.WriteString(r.Message)
	write := func(a slog.Attr) {
		key := a.Key
		if h.group != "" {
			key = h.group + "." + key
		}
		v := a.Value.Resolve().String()
		if strings.ContainsAny(v, " \t\n\"=") || v == "" {
			v = strconv.Quote(v)
		}
		fmt.Fprintf(&b, " %s=%s", key, v)
	}
	for _, a := range h.attrs {
		write(a)
	}
	r.Attrs(func(a slog.Attr) bool { write(a); return true })
	switch {
	case r.Level >= slog.LevelError:
		h.l.Error(b.String())
	case r.Level >= slog.LevelWarn:
		h.l.Warning(b.String())
	case r.Level >= slog.LevelInfo:
		h.l.Info(b.String())
	default:
		h.l.Debug(b.String())
	}
	return nil
}

func (h *goDHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &goDHandler{l: h.l, attrs: append(append([]slog.Attr(nil), h.attrs...), as...), group: h.group}
}

func (h *goDHandler) WithGroup(name string) slog.Handler {
	g := name
	if h.group != "" {
		g = h.group + "." + name
	}
	return &goDHandler{l: h.l, attrs: h.attrs, group: g}
}

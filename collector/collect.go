package collector

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/netdata/go.d.plugin/pkg/prometheus"
	"github.com/netdata/go.d.plugin/pkg/web"

	"github.com/pulsefaas/pulse/collector/tlsclient"
	"github.com/pulsefaas/pulse/contract"
)

// Collector is the Pulse collector without go.d's module API: each Collect
// reads the catalog, scrapes the replicas and HAProxy, and returns the
// values of every function's charts. It is not safe for concurrent use.
type Collector struct {
	cfg        Config
	log        *slog.Logger
	transport  *http.Transport // every client's connections
	credential *credentialFile
	replicas   *http.Client        // presents the credential; pages capped, no gzip
	forbidden  bool                // a 403 was logged; cleared (and logged) once none answers 403
	badPage    map[replicaKey]bool // replicas whose oversized or encoded page was logged

	catalog         catalogReader
	catalogDown     bool   // logged as unreachable; the next success is logged too
	catalogDownKind string // the kind of failure logged (catalogFailureKind)

	queues         queueReader
	queuesDown     bool   // logged as unreadable; the next answer is logged too
	queuesDownKind string // the kind of failure logged
	queuesAbsent   bool   // pulsed answered 404: no async queues

	haproxy     prometheus.Prometheus
	haproxyDown bool

	scrapers map[replicaKey]*scraper
	agg      *aggregator
	now      func() time.Time
}

// scraper reads one replica's page; its parser's buffers are reused.
type scraper struct {
	addr string
	prom prometheus.Prometheus
}

// Collect runs one cycle. It returns the values keyed as the charts'
// dimensions and variables, and the functions of the catalog in use (the
// last one read), whose charts should exist.
func (c *Collector) Collect(ctx context.Context) (map[string]int64, []string) {
	// pulsed's async queues are read alongside the catalog, within the
	// same budget.
	var (
		qwg       sync.WaitGroup
		queues    map[string]contract.QueueStatus
		queuesErr error
	)
	qwg.Add(1)
	go func() {
		defer qwg.Done()
		queues, queuesErr = c.readQueues(ctx)
	}()
	catalogOK := c.readCatalog(ctx)
	qwg.Wait()
	queuesOK := c.noteQueues(queuesErr, catalogOK)
	c.credential.refresh()
	now := c.now() // rates are per time between scrapes
	cat := c.catalog.cur

	// HAProxy is read alongside the replicas.
	var (
		wg        sync.WaitGroup
		backends  map[string]backendStats
		haproxyOK bool
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		backends, haproxyOK = c.readHAProxy()
	}()
	scraped, forbidden := c.scrapeReplicas(cat)
	wg.Wait()

	mx := make(map[string]int64, 24*len(cat.Functions)+4)
	c.agg.cycle(cycleInput{now: now, catalog: cat, scraped: scraped, backends: backends, haproxyOK: haproxyOK,
		queues: queues, queuesOK: queuesOK}, mx)
	mx[collectorKey(dimForbidden)] = int64(forbidden)
	fns := make([]string, len(cat.Functions))
	for i, f := range cat.Functions {
		fns[i] = f.Name
	}
	return mx, fns
}

// catalogBudget is the part of the timeout a catalog request may take. A
// 304 from pulsed on the same host takes well under 1 ms, but on a host
// with a load average of 20 on 2 cores a fifth of the default timeout
// (160 ms) was seen to run out many times a minute, each time keeping a
// stale catalog for a cycle; half of it leaves the cycle a chance to end
// within the interval only when the host is that busy.
func (c *Collector) catalogBudget() time.Duration { return c.cfg.Timeout.Duration / 2 }

// readCatalog refreshes the catalog and says whether it could; on failure
// the last one stays in use. A failure is logged once, and so is the
// recovery.
func (c *Collector) readCatalog(ctx context.Context) bool {
	ctx, cancel := context.WithTimeout(ctx, c.catalogBudget())
	defer cancel()
	changed, err := c.catalog.read(ctx)
	if err != nil {
		// Logged once per failure and kind of failure: a pulsed that
		// comes back with a certificate the collector does not trust is
		// said, though it was down a moment before.
		if kind := catalogFailureKind(err); !c.catalogDown || kind != c.catalogDownKind {
			c.catalogDown, c.catalogDownKind = true, kind
			c.log.Warn("cannot read the replica catalog; keeping the last one until it answers",
				"err", err, "functions", len(c.catalog.cur.Functions), "have_catalog", c.catalog.have)
		}
		return false
	}
	if c.catalogDown {
		c.catalogDown, c.catalogDownKind = false, ""
		c.log.Info("replica catalog readable again", "version", c.catalog.cur.Version)
	}
	if changed {
		c.log.Debug("replica catalog changed", "version", c.catalog.cur.Version, "functions", len(c.catalog.cur.Functions))
	}
	return true
}

// readQueues reads pulsed's async queues within the catalog's budget.
func (c *Collector) readQueues(ctx context.Context) (map[string]contract.QueueStatus, error) {
	ctx, cancel := context.WithTimeout(ctx, c.catalogBudget())
	defer cancel()
	return c.queues.read(ctx)
}

// noteQueues logs what reading the queues gave, and says whether the cycle
// has queue data. A 404 (async off, or an older pulsed) is no failure:
// no data, logged at debug level only. Another failure is logged once
// per kind, like the catalog's, and so is the recovery; but not while the
// catalog failed in the same cycle (catalogOK false): pulsed is away, and
// the catalog's warning says so.
func (c *Collector) noteQueues(err error, catalogOK bool) bool {
	absent := errors.Is(err, errNoQueues)
	if err == nil || absent {
		if c.queuesDown {
			c.queuesDown, c.queuesDownKind = false, ""
			c.log.Info("pulsed's async queues readable again", "async", !absent)
		}
		if absent != c.queuesAbsent {
			c.queuesAbsent = absent
			c.log.Debug("pulsed's async queues", "served", !absent, "url", c.queues.url)
		}
		return err == nil
	}
	if !catalogOK {
		return false
	}
	if kind := catalogFailureKind(err); !c.queuesDown || kind != c.queuesDownKind {
		c.queuesDown, c.queuesDownKind = true, kind
		c.log.Warn("cannot read pulsed's async queues; the queue charts have no values (and functions scaled on queue no utilisation) until it answers", "err", err)
	}
	return false
}

// catalogFailureKind sorts catalog (and queue) failures for logging: each
// TLS check, an answer with an unexpected status, and the rest
// (unreachable, bad body).
func catalogFailureKind(err error) string {
	var te *tlsclient.Error
	switch {
	case errors.As(err, &te):
		return "tls: " + te.Check
	case errors.Is(err, errCatalogStatus):
		return "status"
	}
	return "other"
}

// readHAProxy reads HAProxy's backends. A failure is logged once (and the
// recovery); the collector carries on with the replicas' data.
func (c *Collector) readHAProxy() (map[string]backendStats, bool) {
	mfs, err := c.haproxy.Scrape()
	var backends map[string]backendStats
	if err == nil {
		backends, err = readBackends(mfs)
	}
	if err != nil {
		if !c.haproxyDown {
			c.haproxyDown = true
			c.log.Warn("cannot read HAProxy's backend stats; carrying on with the replicas' data", "err", err)
		}
		return nil, false
	}
	if c.haproxyDown {
		c.haproxyDown = false
		c.log.Info("HAProxy's backend stats readable again")
	}
	return backends, true
}

// scrapeReplicas scrapes every non-draining replica of cat concurrently and
// returns the answers and how many answered 403. A failure is logged at
// debug level only: replicas come and go, and the collector's chart counts
// the failures. A 403 is different (the credential is missing or wrong):
// the first is logged as a warning, and so is the end of them; so is a
// page refused for its size or encoding, once per replica.
func (c *Collector) scrapeReplicas(cat contract.Catalog) (map[replicaKey]replicaMetrics, int) {
	type job struct {
		key replicaKey
		s   *scraper
	}
	var jobs []job
	keep := make(map[replicaKey]bool)
	for _, f := range cat.Functions {
		for _, r := range f.Replicas {
			if r.Draining {
				continue
			}
			key := replicaKey{f.Name, r.TaskID}
			keep[key] = true
			s := c.scrapers[key]
			if s == nil || s.addr != r.Addr {
				s = &scraper{addr: r.Addr, prom: prometheus.New(c.replicas, web.Request{URL: "http://" + r.Addr + contract.MetricsPath})}
				c.scrapers[key] = s
			}
			jobs = append(jobs, job{key, s})
		}
	}
	for key := range c.scrapers {
		if !keep[key] {
			delete(c.scrapers, key)
		}
	}
	for key := range c.badPage {
		if !keep[key] {
			delete(c.badPage, key)
		}
	}

	results := make([]replicaMetrics, len(jobs))
	oks := make([]bool, len(jobs))
	errs := make([]error, len(jobs))
	sem := make(chan struct{}, maxScrapesInFlight)
	var wg sync.WaitGroup
	for i, j := range jobs {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			mfs, err := j.s.prom.Scrape()
			if err == nil {
				results[i], err = readReplica(mfs, j.key.function)
			}
			if err != nil {
				errs[i] = err
				c.log.Debug("replica not scraped", "function", j.key.function, "task", j.key.task, "addr", j.s.addr, "err", err)
				return
			}
			oks[i] = true
		}()
	}
	wg.Wait()
	out := make(map[replicaKey]replicaMetrics, len(jobs))
	forbidden, first := 0, -1
	for i, j := range jobs {
		if oks[i] {
			out[j.key] = results[i]
		}
		if errors.Is(errs[i], errReplicaForbidden) {
			forbidden++
			if first < 0 {
				first = i
			}
		}
		// A page over the cap or compressed is no passing failure: the
		// replica is not a watchdog of ours, or a broken one. Said once
		// per replica.
		bad := errors.Is(errs[i], errPageTooLarge) || errors.Is(errs[i], errPageEncoding)
		if bad && !c.badPage[j.key] {
			c.badPage[j.key] = true
			c.log.Warn("replica's metrics page refused; it is not collected", "function", j.key.function, "task", j.key.task, "addr", j.s.addr, "err", errs[i])
		} else if oks[i] {
			delete(c.badPage, j.key)
		}
	}
	switch {
	case forbidden > 0 && !c.forbidden:
		c.forbidden = true
		j := jobs[first]
		c.log.Warn("replicas answer 403 Forbidden to the collector: their credential is not the one in replica_auth_file (or the collector has none); they are not collected",
			"replicas", forbidden, "of", len(jobs), "replica_auth_file", c.cfg.ReplicaAuthFile,
			"function", j.key.function, "task", j.key.task, "addr", j.s.addr, "err", errs[first])
	case forbidden == 0 && c.forbidden && len(jobs) > 0:
		c.forbidden = false
		c.log.Info("no replica answers 403 any more")
	}
	return out, forbidden
}

// Close releases the idle connections.
func (c *Collector) Close() { c.transport.CloseIdleConnections() }

package collector

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"time"

	"github.com/netdata/go.d.plugin/pkg/prometheus"
	"github.com/netdata/go.d.plugin/pkg/web"
)

// Defaults of the job's configuration (collector/config/pulse.d/pulse.conf
// repeats them).
const (
	DefaultCatalogURL = "http://127.0.0.1:8090/v1/replicas"
	DefaultHAProxyURL = "http://127.0.0.1:8404/metrics"
	DefaultTimeout    = 800 * time.Millisecond
)

// defaultConfig is the job configuration before the file is applied.
func defaultConfig() Config {
	return Config{
		UpdateEvery: 1,
		CatalogURL:  DefaultCatalogURL,
		HAProxyURL:  DefaultHAProxyURL,
		Timeout:     web.Duration{Duration: DefaultTimeout},
	}
}

// Validate checks the configuration.
func (c Config) Validate() error {
	var errs []error
	for _, u := range []struct{ key, v string }{{"catalog_url", c.CatalogURL}, {"haproxy_url", c.HAProxyURL}} {
		p, err := url.Parse(u.v)
		if err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" {
			errs = append(errs, fmt.Errorf("%s %q: want an http:// or https:// URL", u.key, u.v))
		}
	}
	every := time.Duration(max(c.UpdateEvery, 1)) * time.Second
	if c.Timeout.Duration <= 0 || c.Timeout.Duration >= every {
		errs = append(errs, fmt.Errorf("timeout %s: want above 0 and below update_every (%s), so a cycle ends before the next", c.Timeout.Duration, every))
	}
	return errors.Join(errs...)
}

// haproxyPageURL is the exporter URL the collector reads: with
// scope=backend added unless the URL names a scope, so HAProxy leaves out
// its per-server and frontend series (about 60 lines per server, which
// the collector would parse every second for nothing).
func haproxyPageURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return raw
	}
	q := u.Query()
	if q.Has("scope") {
		return raw
	}
	q.Set("scope", "backend")
	u.RawQuery = q.Encode()
	return u.String()
}

// Connection pool sizes: one idle keep-alive connection per replica (each
// is its own host:port) and some to spare, for a few hundred replicas.
const (
	maxIdleConns        = 1024
	maxIdleConnsPerHost = 2
	idleConnTimeout     = 30 * time.Second // the collector comes back every second
	maxScrapesInFlight  = 256
)

// newHTTPClient is the one client the collector uses for the catalog,
// HAProxy and every replica: keep-alive, a pool sized for hundreds of
// replicas, no proxy (the addresses are the swarm's own; Netdata may run
// with HTTP_PROXY set), no redirects, and timeout on every request.
func newHTTPClient(timeout time.Duration) *http.Client {
	d := &net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second}
	tr := &http.Transport{
		Proxy:                 nil,
		DialContext:           d.DialContext,
		MaxIdleConns:          maxIdleConns,
		MaxIdleConnsPerHost:   maxIdleConnsPerHost,
		IdleConnTimeout:       idleConnTimeout,
		ResponseHeaderTimeout: timeout,
		TLSHandshakeTimeout:   timeout,
		ForceAttemptHTTP2:     false,
	}
	return &http.Client{
		Timeout:       timeout,
		Transport:     tr,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// New returns a collector for cfg, which must be valid, logging to log.
func NewCollector(cfg Config, log *slog.Logger) (*Collector, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	client := newHTTPClient(cfg.Timeout.Duration)
	return &Collector{
		cfg:      cfg,
		log:      log,
		client:   client,
		catalog:  catalogReader{client: client, url: cfg.CatalogURL},
		haproxy:  prometheus.New(client, web.Request{URL: haproxyPageURL(cfg.HAProxyURL)}),
		scrapers: map[replicaKey]*scraper{},
		agg:      newAggregator(log),
		now:      time.Now,
	}, nil
}

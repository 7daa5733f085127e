package collector

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"time"

	"github.com/netdata/go.d.plugin/pkg/prometheus"
	"github.com/netdata/go.d.plugin/pkg/web"

	"github.com/pulsefaas/pulse/collector/tlsclient"
	"github.com/pulsefaas/pulse/contract"
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
		// pulsed's default replica_auth_file, which it makes
		// root:netdata 0640 so that the collector can read it.
		ReplicaAuthFile: contract.DefaultReplicaAuthFile,
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
	if c.CAFile != "" {
		if !filepath.IsAbs(c.CAFile) {
			errs = append(errs, fmt.Errorf("ca_file %q: want an absolute path (make up writes %s when pulsed's tls_cert is set), or none for the system's CAs", c.CAFile, tlsclient.DefaultCAFile))
		}
		if !isHTTPS(c.CatalogURL) && !isHTTPS(c.HAProxyURL) {
			errs = append(errs, fmt.Errorf("ca_file %s is set but neither catalog_url (%s) nor haproxy_url (%s) is an https:// URL, so nothing would be verified with it: use https:// for pulsed's catalog when its tls_cert is set, or remove ca_file", c.CAFile, c.CatalogURL, c.HAProxyURL))
		}
	}
	if c.ReplicaAuthFile == "" || !filepath.IsAbs(c.ReplicaAuthFile) {
		errs = append(errs, fmt.Errorf("replica_auth_file %q: want the absolute path of pulsed's replica_auth_file (default %s)", c.ReplicaAuthFile, contract.DefaultReplicaAuthFile))
	}
	every := time.Duration(max(c.UpdateEvery, 1)) * time.Second
	if c.Timeout.Duration <= 0 || c.Timeout.Duration >= every {
		errs = append(errs, fmt.Errorf("timeout %s: want above 0 and below update_every (%s), so a cycle ends before the next", c.Timeout.Duration, every))
	}
	return errors.Join(errs...)
}

func isHTTPS(u string) bool { return strings.HasPrefix(strings.ToLower(u), "https://") }

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

// newTransport is the one connection pool the collector uses for the
// catalog, HAProxy and every replica: keep-alive, sized for hundreds of
// replicas, no proxy (the addresses are the swarm's own; Netdata may run
// with HTTP_PROXY set), https:// verified with ca (the chain and the URL's
// host name), and no transparent gzip: every body is read as sent, capped
// (the metrics pages' scrapeTransport also asks for identity and refuses
// any other encoding).
func newTransport(timeout time.Duration, ca *tlsclient.CAFile) *http.Transport {
	d := &net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second}
	return &http.Transport{
		Proxy:                 nil,
		DialContext:           d.DialContext,
		DialTLSContext:        ca.DialTLS(d, timeout),
		MaxIdleConns:          maxIdleConns,
		MaxIdleConnsPerHost:   maxIdleConnsPerHost,
		IdleConnTimeout:       idleConnTimeout,
		ResponseHeaderTimeout: timeout,
		TLSHandshakeTimeout:   timeout,
		ForceAttemptHTTP2:     false,
		DisableCompression:    true,
	}
}

// newHTTPClient is a client over rt: no redirects, and timeout on every
// request.
func newHTTPClient(rt http.RoundTripper, timeout time.Duration) *http.Client {
	return &http.Client{
		Timeout:       timeout,
		Transport:     rt,
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
	ca := tlsclient.NewCAFile(cfg.CAFile)
	tr := newTransport(cfg.Timeout.Duration, ca)
	cred := newCredentialFile(cfg.ReplicaAuthFile, log)
	return &Collector{
		cfg:        cfg,
		log:        log,
		transport:  tr,
		credential: cred,
		replicas:   newHTTPClient(&scrapeTransport{base: tr, max: maxReplicaPageBytes, credential: cred.get}, cfg.Timeout.Duration),
		catalog:    catalogReader{client: newHTTPClient(tr, cfg.Timeout.Duration), url: cfg.CatalogURL, ca: ca, log: log, skipped: map[string]string{}},
		queues:     queueReader{client: newHTTPClient(tr, cfg.Timeout.Duration), url: queuesURL(cfg.CatalogURL), ca: ca, log: log, skipped: map[string]string{}},
		haproxy: prometheus.New(newHTTPClient(&scrapeTransport{base: tr, max: maxHAProxyPageBytes}, cfg.Timeout.Duration),
			web.Request{URL: haproxyPageURL(cfg.HAProxyURL)}),
		scrapers: map[replicaKey]*scraper{},
		badPage:  map[replicaKey]bool{},
		agg:      newAggregator(log),
		now:      time.Now,
	}, nil
}

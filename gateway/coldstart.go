package gateway

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pulsefaas/pulse/contract"
	"github.com/pulsefaas/pulse/internal/catalog"
)

// HeaderFunction carries the function's name on requests HAProxy sends to
// the backup server (the cold-start path); HAProxy sets it, overwriting
// anything a client sent.
const HeaderFunction = contract.HeaderFunction

// Waker makes sure a function has at least n replicas (the scaler).
type Waker interface {
	EnsureReplicas(ctx context.Context, function string, n int, reason string) error
}

// ColdStartConfig tunes the cold-start path.
type ColdStartConfig struct {
	// Timeout is the longest a request is held waiting for a replica;
	// then it gets 503 with Retry-After.
	Timeout time.Duration
	// MaxHeld caps the requests held at once; above it, 503.
	MaxHeld int
	// Probe is how often a starting replica's health is tried.
	Probe time.Duration
	// ReplicaAuth is the replica credential (RenderConfig.ReplicaAuth):
	// a request without it in contract.HeaderReplicaAuth gets 403, so only
	// HAProxy can use the cold-start path; it is removed from the request
	// and set again on the one forwarded to a replica (and on health
	// probes), which checks it. Empty: nothing is checked or sent (a
	// gateway without replica credential).
	ReplicaAuth string
	// DefaultMaxBody is the body limit of a function without the
	// pulse.max-body label (RenderConfig.DefaultMaxBody); 0 means 10 MiB.
	DefaultMaxBody int64
}

// DefaultColdStartConfig holds requests up to 30 s, 1024 at a time, and
// probes every 25 ms.
func DefaultColdStartConfig() ColdStartConfig {
	return ColdStartConfig{Timeout: 30 * time.Second, MaxHeld: 1024, Probe: 25 * time.Millisecond}
}

// Validate reports a config that cannot work.
func (c ColdStartConfig) Validate() error {
	var errs []error
	if c.Timeout <= 0 {
		errs = append(errs, fmt.Errorf("cold-start timeout %s: want above 0", c.Timeout))
	}
	if c.MaxHeld < 1 {
		errs = append(errs, fmt.Errorf("cold-start max held %d: want at least 1", c.MaxHeld))
	}
	if c.Probe <= 0 {
		errs = append(errs, fmt.Errorf("cold-start probe %s: want above 0", c.Probe))
	}
	if c.ReplicaAuth != "" {
		if err := CheckReplicaAuth(c.ReplicaAuth); err != nil {
			errs = append(errs, fmt.Errorf("cold-start replica credential: %w", err))
		}
	}
	if c.DefaultMaxBody < 0 {
		errs = append(errs, fmt.Errorf("cold-start default max body %d: want 0 (10 MiB) or more", c.DefaultMaxBody))
	}
	return errors.Join(errs...)
}

// ColdStart is the HTTP handler behind every backend's backup server.
// HAProxy sends a request there only when the function has no usable
// replica: scaled to zero, or every replica down or draining. It asks the
// Waker for one replica, once however many requests arrive together, waits
// until a replica answers its health check, and forwards the held requests
// to it. The path is already rewritten by HAProxy and the invoke key, if
// any, already checked (and the Authorization header of a protected
// function removed). It applies the gateway's rules again, as nothing else
// must reach a function through it: the replica credential is required
// (403), the watchdog's reserved /_/ space is refused (404), and the
// function's body limit is enforced (413).
type ColdStart struct {
	cfg    ColdStartConfig
	cat    CatalogReader
	waker  Waker
	log    *slog.Logger
	health *http.Client
	proxy  *httputil.ReverseProxy
	held   atomic.Int64

	mu       sync.Mutex
	wakes    map[string]*wakeup
	heldByFn map[string]int
}

// wakeup is one function's scale-from-zero in progress; every request that
// arrives meanwhile waits on done.
type wakeup struct {
	done chan struct{}
	addr string
	err  error
}

// NewColdStart returns the handler.
func NewColdStart(cfg ColdStartConfig, cat CatalogReader, waker Waker, log *slog.Logger) (*ColdStart, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.DefaultMaxBody == 0 {
		cfg.DefaultMaxBody = DefaultRenderConfig().DefaultMaxBody
	}
	tr := &http.Transport{
		Proxy:                 nil, // replicas are reached directly, never through HTTP_PROXY
		DialContext:           (&net.Dialer{Timeout: 2 * time.Second}).DialContext,
		MaxIdleConnsPerHost:   64,
		IdleConnTimeout:       30 * time.Second,
		ResponseHeaderTimeout: 0, // the function's timeout, enforced by its watchdog and HAProxy
		// The function must see the request the client sent, as it does
		// through HAProxy: no Accept-Encoding of Go's own (and so no
		// transparent gunzip of the answer either).
		DisableCompression: true,
	}
	c := &ColdStart{cfg: cfg, cat: cat, waker: waker, log: log.With("component", "coldstart"),
		health: &http.Client{Timeout: 250 * time.Millisecond, Transport: tr},
		wakes:  map[string]*wakeup{}, heldByFn: map[string]int{}}
	c.proxy = &httputil.ReverseProxy{
		Transport: tr,
		Rewrite: func(pr *httputil.ProxyRequest) {
			addr := pr.In.Context().Value(replicaAddrKey{}).(heldRequest).addr
			pr.Out.URL.Scheme, pr.Out.URL.Host = "http", addr
			pr.Out.Header.Del(HeaderFunction)
			pr.Out.Header.Del(contract.HeaderReplicaAuth)
			if c.cfg.ReplicaAuth != "" {
				pr.Out.Header.Set(contract.HeaderReplicaAuth, c.cfg.ReplicaAuth)
			}
			// HAProxy's X-Forwarded-For is the client's; keep it, and the
			// X-Forwarded-Host/Proto a client sent (HAProxy passes them on;
			// Rewrite would drop them).
			for _, h := range []string{"X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto"} {
				if v := pr.In.Header.Values(h); len(v) > 0 {
					pr.Out.Header[h] = v
				}
			}
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			// r is the outgoing request, HeaderFunction already removed:
			// the name travels in the context.
			held, _ := r.Context().Value(replicaAddrKey{}).(heldRequest)
			if tooBig := (*http.MaxBytesError)(nil); errors.As(err, &tooBig) {
				writeTooLarge(w, held.function, tooBig.Limit)
				return
			}
			c.log.Warn("forwarding a held request failed", "function", held.function, "replica", held.addr, "err", err)
			writeColdError(w, http.StatusBadGateway, "replica failed", held.function, 0)
		},
	}
	return c, nil
}

type replicaAddrKey struct{}

// heldRequest is what the proxy needs of a held request: the replica
// chosen and the function's name.
type heldRequest struct{ function, addr string }

func (c *ColdStart) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if c.cfg.ReplicaAuth != "" {
		got := r.Header.Values(contract.HeaderReplicaAuth)
		if len(got) != 1 || subtle.ConstantTimeCompare([]byte(got[0]), []byte(c.cfg.ReplicaAuth)) != 1 {
			writeColdError(w, http.StatusForbidden, "forbidden: this endpoint serves the gateway only", "", 0)
			return
		}
	}
	r.Header.Del(contract.HeaderReplicaAuth)
	fn := r.Header.Get(HeaderFunction)
	if fn == "" {
		writeColdError(w, http.StatusBadRequest, "missing "+HeaderFunction+": this endpoint is the gateway's backup server", "", 0)
		return
	}
	if r.URL.Path == "/_" || strings.HasPrefix(r.URL.Path, "/_/") {
		writeColdError(w, http.StatusNotFound, "not found", "", 0)
		return
	}
	if n := c.held.Add(1); n > int64(c.cfg.MaxHeld) {
		c.held.Add(-1)
		writeColdError(w, http.StatusServiceUnavailable, "too many requests waiting for a replica", fn, 1)
		return
	}
	defer c.held.Add(-1)
	c.mu.Lock()
	c.heldByFn[fn]++
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		if c.heldByFn[fn]--; c.heldByFn[fn] <= 0 {
			delete(c.heldByFn, fn)
		}
		c.mu.Unlock()
	}()
	limit, known := c.lookup(fn)
	if !known {
		writeColdError(w, http.StatusNotFound, "function not found", fn, 0)
		return
	}
	if r.ContentLength > limit {
		writeTooLarge(w, fn, limit)
		return
	}
	if r.ContentLength < 0 { // chunked: counted as it is forwarded
		r.Body = http.MaxBytesReader(w, r.Body, limit)
	}
	ctx, cancel := context.WithTimeout(r.Context(), c.cfg.Timeout)
	defer cancel()
	addr, err := c.replica(ctx, fn)
	if err != nil {
		if r.Context().Err() != nil {
			return // the client went away
		}
		c.log.Warn("no replica for a held request", "function", fn, "err", err)
		writeColdError(w, http.StatusServiceUnavailable, "no replica available", fn, 1)
		return
	}
	c.proxy.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), replicaAddrKey{}, heldRequest{function: fn, addr: addr})))
}

// Busy reports whether fn is waking or has requests held or in flight
// through the cold-start path: the idle watcher must not put it back to
// sleep meanwhile (HAProxy's own counters may not show those requests yet).
func (c *ColdStart) Busy(fn string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, waking := c.wakes[fn]
	return waking || c.heldByFn[fn] > 0
}

// lookup returns fn's body limit and whether the catalog lists it.
func (c *ColdStart) lookup(fn string) (int64, bool) {
	cat, _, err := c.cat.Current()
	if err != nil {
		return c.cfg.DefaultMaxBody, true // cannot tell yet: let the waker decide
	}
	for _, f := range cat.Functions {
		if f.Name == fn {
			set, err := catalog.CheckFunction(f.Name, f.Labels)
			if err == nil && set.MaxBody > 0 {
				return set.MaxBody, true
			}
			return c.cfg.DefaultMaxBody, true
		}
	}
	return 0, false
}

// replica returns the address of a replica of fn that answers its health
// check, waking the function if none does.
func (c *ColdStart) replica(ctx context.Context, fn string) (string, error) {
	if addr := c.healthyReplica(ctx, fn); addr != "" {
		return addr, nil
	}
	c.mu.Lock()
	wk, ok := c.wakes[fn]
	if !ok {
		wk = &wakeup{done: make(chan struct{})}
		c.wakes[fn] = wk
		go c.wake(fn, wk)
	}
	c.mu.Unlock()
	select {
	case <-wk.done:
		return wk.addr, wk.err
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

// wake asks for one replica and waits for it to answer. It runs once per
// cold start, detached from the requests that wait for it.
func (c *ColdStart) wake(fn string, wk *wakeup) {
	defer func() {
		c.mu.Lock()
		delete(c.wakes, fn)
		c.mu.Unlock()
		close(wk.done)
	}()
	ctx, cancel := context.WithTimeout(context.Background(), c.cfg.Timeout)
	defer cancel()
	start := time.Now()
	if err := c.waker.EnsureReplicas(ctx, fn, 1, "request while no replica was ready"); err != nil {
		wk.err = fmt.Errorf("wake %s: %w", fn, err)
		return
	}
	c.cat.Refresh()
	t := time.NewTicker(c.cfg.Probe)
	defer t.Stop()
	asked := time.Now()
	for {
		// Put back to sleep meanwhile (by hand, or the idle watcher racing
		// this wake): ask again, at most once a second.
		if c.desired(fn) == 0 && time.Since(asked) >= time.Second {
			asked = time.Now()
			if err := c.waker.EnsureReplicas(ctx, fn, 1, "request while no replica was ready (asked again: back at zero)"); err != nil {
				c.log.Warn("asking again for a replica failed", "function", fn, "err", err)
			}
		}
		if addr := c.healthyReplica(ctx, fn); addr != "" {
			wk.addr = addr
			c.log.Info("function woken", "function", fn, "replica", addr, "seconds", time.Since(start).Seconds())
			return
		}
		select {
		case <-ctx.Done():
			wk.err = fmt.Errorf("wake %s: no replica answered within %s", fn, c.cfg.Timeout)
			return
		case <-t.C:
			c.cat.Refresh()
		}
	}
}

// desired is fn's desired replica count in the catalog, -1 if unknown.
func (c *ColdStart) desired(fn string) int {
	cat, _, err := c.cat.Current()
	if err != nil {
		return -1
	}
	for _, f := range cat.Functions {
		if f.Name == fn {
			return f.Desired
		}
	}
	return -1
}

// healthyReplica probes fn's running, non-draining replicas in the
// catalog and returns the first that answers its health check.
func (c *ColdStart) healthyReplica(ctx context.Context, fn string) string {
	cat, _, err := c.cat.Current()
	if err != nil {
		return ""
	}
	for _, f := range cat.Functions {
		if f.Name != fn {
			continue
		}
		for _, r := range f.Replicas {
			if r.Draining || r.State != "running" || r.Addr == "" {
				continue
			}
			if c.healthy(ctx, r.Addr) {
				return r.Addr
			}
		}
	}
	return ""
}

func (c *ColdStart) healthy(ctx context.Context, addr string) bool {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+contract.HealthPath, nil)
	if err != nil {
		return false
	}
	if c.cfg.ReplicaAuth != "" {
		req.Header.Set(contract.HeaderReplicaAuth, c.cfg.ReplicaAuth)
	}
	resp, err := c.health.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// writeTooLarge is HAProxy's 413 for a body over the function's limit.
func writeTooLarge(w http.ResponseWriter, fn string, limit int64) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Connection", "close")
	w.WriteHeader(http.StatusRequestEntityTooLarge)
	fmt.Fprintf(w, `{"error":"request body too large","function":%q,"limit":%d}`+"\n", fn, limit)
}

func writeColdError(w http.ResponseWriter, code int, msg, fn string, retryAfter int) {
	w.Header().Set("Content-Type", "application/json")
	if retryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(retryAfter))
	}
	w.WriteHeader(code)
	if fn == "" {
		fmt.Fprintf(w, "%s", renderJSONError(msg))
		return
	}
	fmt.Fprintf(w, "%s", renderJSONError(msg, "function", fn))
}

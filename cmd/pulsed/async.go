package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/pulsefaas/pulse/async"
	"github.com/pulsefaas/pulse/contract"
	"github.com/pulsefaas/pulse/gateway"
	"github.com/pulsefaas/pulse/internal/catalog"
	"github.com/pulsefaas/pulse/internal/credential"
	"github.com/pulsefaas/pulse/internal/rungroup"
)

// asyncFunctions is the async queue's view of the catalog: every function
// the gateway routes (not one the reconciler left out), with its async
// policy, body limit, timeout and routed replicas.
type asyncFunctions struct {
	mu      sync.Mutex
	src     catalog.Source
	leftOut func() map[string]string
	// The functions of the catalog version ver (every enqueue asks: the
	// labels are checked once per version, not per request).
	ver string
	fns map[string]async.Function
}

// route gives the view the gateway's routing: src with each replica's
// Routed set, and the functions the reconciler left out.
func (a *asyncFunctions) route(src catalog.Source, leftOut func() map[string]string) {
	a.mu.Lock()
	a.src, a.leftOut = src, leftOut
	a.mu.Unlock()
}

// AsyncFunctions answers the functions; the map is shared: read only.
func (a *asyncFunctions) AsyncFunctions() (map[string]async.Function, error) {
	a.mu.Lock()
	src, leftOut := a.src, a.leftOut
	a.mu.Unlock()
	c, _, err := src.Current()
	if err != nil {
		return nil, err
	}
	a.mu.Lock()
	if a.fns == nil || a.ver != c.Version {
		a.fns, a.ver = asyncFunctionsOf(c), c.Version
	}
	fns := a.fns
	a.mu.Unlock()
	var left map[string]string
	if leftOut != nil {
		left = leftOut()
	}
	if len(left) == 0 {
		return fns, nil
	}
	out := maps.Clone(fns)
	for name := range left {
		delete(out, name)
	}
	return out, nil
}

// asyncFunctionsOf is every function of the catalog the gateway can route
// (its labels pass the catalog's check), with its async policy, body limit,
// timeout and routed replicas.
func asyncFunctionsOf(c contract.Catalog) map[string]async.Function {
	out := make(map[string]async.Function, len(c.Functions))
	for _, f := range c.Functions {
		set, err := catalog.CheckFunction(f.Name, f.Labels)
		if err != nil {
			continue // skipped by the gateway too
		}
		fn := async.Function{Name: f.Name, Policy: contract.DefaultAsyncPolicy, MaxBody: set.MaxBody, Timeout: set.Timeout}
		for _, r := range f.Replicas {
			if r.Routed && !r.Draining {
				fn.Replicas++
			}
		}
		if set.Async != nil {
			fn.Policy = *set.Async
		}
		if fn.MaxBody == 0 {
			fn.MaxBody = contract.DefaultMaxBody
		}
		if fn.Timeout == 0 {
			fn.Timeout = contract.DefaultTimeout
		}
		out[f.Name] = fn
	}
	return out
}

// asyncConfig is the queue's configuration from pulsed's.
func asyncConfig(cfg Config, sec secrets, dispatchToken string) async.Config {
	a := async.DefaultConfig()
	a.StoreDir = filepath.Join(cfg.StateDir, "async")
	a.URL = cfg.AsyncNATSURL
	a.Replicas = cfg.AsyncStreamReplicas
	a.Retention = cfg.AsyncRetention
	a.MaxQueued = int64(cfg.AsyncMaxQueued)
	maxBody, _ := contract.ParseSize(cfg.AsyncMaxBody) // checked by Validate
	a.MaxBytes, _ = contract.ParseSize(cfg.AsyncMaxStore)
	a.MaxPayload = int32(maxBody + 64<<10)
	a.DispatchURL = "http://" + cfg.AsyncDispatchListen
	a.DispatchToken = dispatchToken
	a.ReplicaAuth = sec.replicaAuth
	a.DispatchSlack = cfg.ColdStartTimeout + 10*time.Second
	a.AckWait = cfg.AsyncAckWait
	a.Callback.Allow = cfg.AsyncCallbackAllow
	a.Callback.Timeout = cfg.AsyncCallbackTimeout
	a.Callback.Retries = cfg.AsyncCallbackRetries
	a.OrphanAfter = cfg.AsyncOrphanAfter
	return a
}

// readOrCreateToken returns the one-line secret in path, creating it (32
// random bytes, hex, 0600) when missing.
func readOrCreateToken(path string) (string, error) {
	v, err := credential.ReadFile(path, 0o077, "chmod 600")
	if err == nil || !errors.Is(err, os.ErrNotExist) {
		return v, err
	}
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return "", err
	}
	v = hex.EncodeToString(raw)
	if err := credential.WriteFileAtomic(path, []byte(v+"\n"), 0o600, -1); err != nil {
		return "", err
	}
	return v, nil
}

// asyncPart is async invoke inside pulsed: the queue, its listener for
// HAProxy and its API handlers.
type asyncPart struct {
	q   *async.Queue
	ln  net.Listener
	fns *asyncFunctions
}

// openAsync opens the queue and its listener and points the gateway's
// render at them. The caller closes what it returns once the run group has
// ended.
func openAsync(ctx context.Context, cfg Config, sec secrets, src catalog.Source, render *gateway.RenderConfig, log *slog.Logger) (*asyncPart, error) {
	token, err := readOrCreateToken(filepath.Join(cfg.StateDir, "dispatch.token"))
	if err != nil {
		return nil, fmt.Errorf("async dispatch token: %w", err)
	}
	fns := &asyncFunctions{src: src}
	q, err := async.Open(ctx, asyncConfig(cfg, sec, token), fns, log)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", cfg.AsyncListen)
	if err != nil {
		q.Close()
		return nil, fmt.Errorf("async_listen: %w", err)
	}
	render.AsyncAddr = ln.Addr().String()
	render.DispatchListen, render.DispatchToken = cfg.AsyncDispatchListen, token
	return &asyncPart{q: q, ln: ln, fns: fns}, nil
}

// start runs the dispatchers and the enqueue listener in g.
func (a *asyncPart) start(g *rungroup.Group, log *slog.Logger) {
	// The body arrives through HAProxy (up to 60 s), then the answer waits
	// for a synced write (up to 20 s): the write deadline, counted from the
	// request's head, covers both, so a stored request is answered 202.
	srv := serverTimeouts{ReadHeader: 10 * time.Second, Read: 60 * time.Second, Write: 90 * time.Second,
		Idle: 60 * time.Second, MaxHeaderBytes: 64 << 10}.server(a.q.Handler(), log, "async")
	g.Go("async dispatch", a.q.Run)
	g.Go("async listener", func(context.Context) error {
		if err := srv.Serve(a.ln); !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	})
	g.Go("async listener shutdown", func(ctx context.Context) error {
		<-ctx.Done()
		// Long enough for an enqueue under way to be stored and answered.
		shctx, cancel := context.WithTimeout(context.Background(), 25*time.Second)
		defer cancel()
		_ = srv.Shutdown(shctx)
		return nil
	})
}

// mount serves the queue depths (no token: numbers only) and the request
// states (management token).
func (a *asyncPart) mount(mux *http.ServeMux, tok bearer) {
	mux.Handle(contract.QueuesPath, a.q.QueuesHandler())
	states := a.q.RequestsHandler()
	mux.Handle(contract.AsyncRequestsPath, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !tok.set {
			writeJSONError(w, http.StatusServiceUnavailable, "management API disabled: pulsed has no api_token_file")
			return
		}
		if !tok.check(r.Header.Get("Authorization")) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="pulsed"`)
			writeJSONError(w, http.StatusUnauthorized, "management token required: Authorization: Bearer <token>")
			return
		}
		states.ServeHTTP(w, r)
	}))
}

func (a *asyncPart) close() {
	_ = a.ln.Close()
	a.q.Close()
}

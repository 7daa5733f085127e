package gateway

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pulsefaas/pulse/contract"
)

// startingWaker brings a replica into the catalog a little after it is
// asked to, as Swarm would.
type startingWaker struct {
	calls atomic.Int32
	cat   *staticCatalog
	addr  string
	delay time.Duration
	err   error
}

func (w *startingWaker) EnsureReplicas(_ context.Context, fn string, n int, _ string) error {
	w.calls.Add(1)
	if w.err != nil {
		return w.err
	}
	go func() {
		time.Sleep(w.delay)
		w.cat.set(contract.Catalog{Functions: []contract.CatalogFunction{{Name: fn, Desired: n,
			Replicas: []contract.Replica{{TaskID: "t1", Addr: w.addr, State: "running"}}}}})
	}()
	return nil
}

func TestColdStart(t *testing.T) {
	// The replica: a real HTTP server answering health and echoing what
	// reached it.
	replica := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == contract.HealthPath {
			return
		}
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("X-Seen-Function-Header", r.Header.Get(HeaderFunction))
		io.WriteString(w, r.Method+" "+r.URL.RequestURI()+" "+string(body)+" xff="+r.Header.Get("X-Forwarded-For"))
	}))
	defer replica.Close()
	addr := strings.TrimPrefix(replica.URL, "http://")

	cat := &staticCatalog{cat: contract.Catalog{Functions: []contract.CatalogFunction{{Name: "hello"}}}}
	waker := &startingWaker{cat: cat, addr: addr, delay: 300 * time.Millisecond}
	cs, err := NewColdStart(DefaultColdStartConfig(), cat, waker, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(cs)
	defer srv.Close()

	// Twenty requests arrive together while the function is at zero.
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequest(http.MethodPost, srv.URL+"/a/b?q=1", strings.NewReader("body"))
			req.Header.Set(HeaderFunction, "hello")
			req.Header.Set("X-Forwarded-For", "10.1.2.3")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				errs <- err
				return
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if want := "POST /a/b?q=1 body xff=10.1.2.3"; resp.StatusCode != 200 || string(b) != want || resp.Header.Get("X-Seen-Function-Header") != "" {
				errs <- errors.New(resp.Status + " " + string(b) + " (want " + want + ")")
			}
			_ = i
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := waker.calls.Load(); n != 1 {
		t.Errorf("waker called %d times for one cold start, want 1", n)
	}
	// Warm now: served without asking again.
	req, _ := http.NewRequest(http.MethodGet, srv.URL+"/", nil)
	req.Header.Set(HeaderFunction, "hello")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || waker.calls.Load() != 1 {
		t.Errorf("warm request: %s, waker calls %d", resp.Status, waker.calls.Load())
	}
}

func TestColdStartErrors(t *testing.T) {
	cat := &staticCatalog{cat: contract.Catalog{Functions: []contract.CatalogFunction{{Name: "hello"}}}}
	cfg := DefaultColdStartConfig()
	cfg.Timeout = 300 * time.Millisecond
	for _, tc := range []struct {
		name      string
		fn        string
		waker     *startingWaker
		code      int
		body      string
		retryHint bool
	}{
		{"missing header", "", &startingWaker{cat: cat}, 400, `{"error":"missing X-Pulse-Function: this endpoint is the gateway's backup server"}`, false},
		{"unknown function", "nope", &startingWaker{cat: cat}, 404, `{"error":"function not found","function":"nope"}`, false},
		{"waker fails", "hello", &startingWaker{cat: cat, err: errors.New("swarm says no")}, 503, `{"error":"no replica available","function":"hello"}`, true},
		// The replica never answers its health check: 503 after Timeout.
		{"never ready", "hello", &startingWaker{cat: cat, addr: "127.0.0.1:1", delay: 0}, 503, `{"error":"no replica available","function":"hello"}`, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cat.set(contract.Catalog{Functions: []contract.CatalogFunction{{Name: "hello"}}})
			cs, err := NewColdStart(cfg, cat, tc.waker, slog.New(slog.NewTextHandler(io.Discard, nil)))
			if err != nil {
				t.Fatal(err)
			}
			rec := httptest.NewRecorder()
			req := httptest.NewRequest(http.MethodGet, "/", nil)
			if tc.fn != "" {
				req.Header.Set(HeaderFunction, tc.fn)
			}
			cs.ServeHTTP(rec, req)
			if rec.Code != tc.code || strings.TrimSpace(rec.Body.String()) != tc.body || (rec.Header().Get("Retry-After") != "") != tc.retryHint {
				t.Errorf("got %d %q Retry-After=%q, want %d %q", rec.Code, rec.Body.String(), rec.Header().Get("Retry-After"), tc.code, tc.body)
			}
		})
	}
	if err := (ColdStartConfig{}).Validate(); err == nil || !strings.Contains(err.Error(), "timeout") {
		t.Errorf("Validate of zero config: %v", err)
	}
}

// sleepyWaker answers the first wake by leaving the function at zero (as
// if it were put back to sleep at once) and starts a replica only when asked
// again.
type sleepyWaker struct {
	startingWaker
}

func (w *sleepyWaker) EnsureReplicas(ctx context.Context, fn string, n int, reason string) error {
	if w.calls.Add(1) == 1 {
		w.cat.set(contract.Catalog{Functions: []contract.CatalogFunction{{Name: fn, Desired: 0}}})
		return nil
	}
	w.calls.Add(-1)
	return w.startingWaker.EnsureReplicas(ctx, fn, n, reason)
}

// TestColdStartAsksAgain: a wake whose function is back at zero (the idle
// watcher raced it, or someone scaled it by hand) asks again instead of
// holding requests until they time out.
func TestColdStartAsksAgain(t *testing.T) {
	replica := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	defer replica.Close()
	cat := &staticCatalog{cat: contract.Catalog{Functions: []contract.CatalogFunction{{Name: "hello"}}}}
	waker := &sleepyWaker{startingWaker{cat: cat, addr: strings.TrimPrefix(replica.URL, "http://")}}
	cs, err := NewColdStart(DefaultColdStartConfig(), cat, waker, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodGet, "/", nil)
	req.Header.Set(HeaderFunction, "hello")
	done := make(chan struct{})
	go func() { cs.ServeHTTP(rec, req); close(done) }()
	deadline := time.Now().Add(5 * time.Second)
	for !cs.Busy("hello") && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if !cs.Busy("hello") {
		t.Error("Busy is false while a request is held")
	}
	<-done
	if rec.Code != 200 || rec.Body.String() != "ok" || waker.calls.Load() != 2 {
		t.Errorf("got %d %q after %d wake calls, want 200 \"ok\" after 2", rec.Code, rec.Body.String(), waker.calls.Load())
	}
	if cs.Busy("hello") {
		t.Error("Busy after the request was answered")
	}
}

// TestColdStartForwardFails: a replica that answers its health but drops
// the held request gives 502 JSON naming the function, and the log line
// names it too (the name is read before the header is removed).
func TestColdStartForwardFails(t *testing.T) {
	replica := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == contract.HealthPath {
			return
		}
		if hj, ok := w.(http.Hijacker); ok {
			c, _, _ := hj.Hijack()
			c.Close() // reset: no answer
		}
	}))
	defer replica.Close()
	addr := strings.TrimPrefix(replica.URL, "http://")
	cat := &staticCatalog{cat: contract.Catalog{Functions: []contract.CatalogFunction{{Name: "hello", Desired: 1,
		Replicas: []contract.Replica{{TaskID: "t1", Addr: addr, State: "running"}}}}}}
	var logs strings.Builder
	var mu sync.Mutex
	cs, err := NewColdStart(DefaultColdStartConfig(), cat, &startingWaker{cat: cat, addr: addr},
		slog.New(slog.NewTextHandler(writerFunc(func(p []byte) (int, error) { mu.Lock(); defer mu.Unlock(); return logs.Write(p) }), nil)))
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodPost, "/", strings.NewReader("x"))
	req.Header.Set(HeaderFunction, "hello")
	cs.ServeHTTP(rec, req)
	if rec.Code != http.StatusBadGateway || rec.Body.String() != `{"error":"replica failed","function":"hello"}`+"\n" {
		t.Fatalf("%d %q, want 502 JSON naming hello", rec.Code, rec.Body.String())
	}
	mu.Lock()
	defer mu.Unlock()
	if !strings.Contains(logs.String(), "function=hello") || !strings.Contains(logs.String(), "replica="+addr) {
		t.Fatalf("log does not name the function and replica:\n%s", logs.String())
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

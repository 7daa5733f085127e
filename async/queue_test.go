package async

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pulsefaas/pulse/contract"
)

// These tests run the real JetStream server, embedded, on a temporary
// directory. The function behind the dispatch URL is a plain HTTP server
// here (the gateway's dispatch frontend and real replicas are in
// cmd/pulsed's TestAsyncSurvivesKill).

type staticFunctions map[string]Function

func (s staticFunctions) AsyncFunctions() (map[string]Function, error) { return s, nil }

const testCred = "replica-cred-0123456789"

func openTest(t *testing.T, dir string, fns Functions, dispatch string, edit ...func(*Config)) *Queue {
	t.Helper()
	cfg := DefaultConfig()
	cfg.StoreDir, cfg.DispatchURL, cfg.DispatchToken, cfg.ReplicaAuth = dir, dispatch, "dispatch-token-0123456789", testCred
	cfg.Backoff, cfg.AckWait = 50*time.Millisecond, 2*time.Second
	for _, f := range edit {
		f(&cfg)
	}
	q, err := Open(context.Background(), cfg, fns, testLog())
	if err != nil {
		t.Fatal(err)
	}
	return q
}

func testLog() *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func enqueue(t *testing.T, q *Queue, fn, body string, hdr map[string]string) *httptest.ResponseRecorder {
	t.Helper()
	r := httptest.NewRequest(http.MethodPost, "/sub/path?x=1", strings.NewReader(body))
	r.Header.Set(contract.HeaderReplicaAuth, testCred)
	r.Header.Set(contract.HeaderFunction, fn)
	r.Header.Set("Content-Type", "text/plain")
	for k, v := range hdr {
		r.Header.Set(k, v)
	}
	w := httptest.NewRecorder()
	q.Handler().ServeHTTP(w, r)
	return w
}

func runQueue(t *testing.T, q *Queue) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- q.Run(ctx) }()
	return func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}
}

func waitState(t *testing.T, q *Queue, id string, ok func(contract.AsyncRequest) bool) contract.AsyncRequest {
	t.Helper()
	return waitStateFor(t, q, id, 30*time.Second, ok)
}

func waitStateFor(t *testing.T, q *Queue, id string, d time.Duration, ok func(contract.AsyncRequest) bool) contract.AsyncRequest {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		st, err := q.Request(context.Background(), id)
		if err == nil && ok(st) {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("request %s: %+v, %v after %v", id, st, err, d)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestQueueDispatchRetriesAndCalls(t *testing.T) {
	var calls atomic.Int32
	var seen sync.Map
	fnSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := calls.Add(1)
		seen.Store(n, r.Header.Clone())
		if r.URL.RequestURI() != "/function/f/sub/path?x=1" {
			t.Errorf("dispatched to %s", r.URL.RequestURI())
		}
		if n == 1 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "text/x-answer")
		_, _ = w.Write(append([]byte("got "), b...))
	}))
	defer fnSrv.Close()
	type cb struct {
		h    http.Header
		body string
	}
	cbs := make(chan cb, 4)
	cbSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		cbs <- cb{r.Header.Clone(), string(b)}
	}))
	defer cbSrv.Close()

	fns := staticFunctions{"f": {Name: "f", Policy: contract.DefaultAsyncPolicy, MaxBody: 1 << 20, Timeout: 5 * time.Second}}
	q := openTest(t, t.TempDir(), fns, fnSrv.URL, func(c *Config) { c.Callback.Allow = []string{strings.TrimPrefix(cbSrv.URL, "http://")} })
	defer q.Close()
	w := enqueue(t, q, "f", "hello", map[string]string{contract.HeaderCallbackURL: cbSrv.URL + "/hook", "X-Custom": "kept"})
	if w.Code != http.StatusAccepted {
		t.Fatalf("enqueue: %d %s", w.Code, w.Body)
	}
	var acc contract.AsyncAccepted
	if err := json.Unmarshal(w.Body.Bytes(), &acc); err != nil || acc.RequestID != w.Header().Get(contract.HeaderAsyncRequestID) || !ValidID(acc.RequestID) {
		t.Fatalf("202 body %s, header %q", w.Body, w.Header().Get(contract.HeaderAsyncRequestID))
	}
	st, _ := q.Request(context.Background(), acc.RequestID)
	if st.State != contract.AsyncQueued || st.CallbackState != contract.CallbackPending {
		t.Errorf("state after enqueue: %+v", st)
	}
	stop := runQueue(t, q)
	defer stop()
	st = waitState(t, q, acc.RequestID, func(s contract.AsyncRequest) bool { return s.CallbackState == contract.CallbackDelivered })
	if st.State != contract.AsyncDone || st.Status != 200 || st.Attempts != 2 || st.FinishedAt.IsZero() {
		t.Errorf("final state %+v; want done 200 after 2 attempts", st)
	}
	got := <-cbs
	if got.body != "got hello" || got.h.Get(contract.HeaderAsyncState) != "done" || got.h.Get(contract.HeaderAsyncStatus) != "200" ||
		got.h.Get(contract.HeaderAsyncRequestID) != acc.RequestID || got.h.Get("Content-Type") != "text/x-answer" {
		t.Errorf("callback %q %v", got.body, got.h)
	}
	h2, _ := seen.Load(int32(2))
	hdr := h2.(http.Header)
	if hdr.Get(contract.HeaderAsyncRequestID) != acc.RequestID || hdr.Get(contract.HeaderAttempt) != "2" || hdr.Get("X-Custom") != "kept" ||
		hdr.Get(contract.HeaderDispatch) == "" || hdr.Get(contract.HeaderCallbackURL) != "" || hdr.Get(contract.HeaderReplicaAuth) != "" {
		t.Errorf("second dispatch's headers %v", hdr)
	}
	qs, err := q.Queues(context.Background())
	if err != nil || len(qs.Queues) != 1 {
		t.Fatalf("Queues: %+v %v", qs, err)
	}
	if g := qs.Queues[0]; g.Function != "f" || g.Depth != 0 || g.Enqueued != 1 || g.Done != 1 || g.Retried != 1 || g.Failed != 0 {
		t.Errorf("queue %+v", g)
	}
}

// A request stored before a stop is dispatched after the restart.
func TestQueueSurvivesReopen(t *testing.T) {
	var calls atomic.Int32
	fnSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { calls.Add(1) }))
	defer fnSrv.Close()
	fns := staticFunctions{"f": {Name: "f", Policy: contract.DefaultAsyncPolicy, MaxBody: 1 << 20, Timeout: 5 * time.Second}}
	dir := t.TempDir()
	q := openTest(t, dir, fns, fnSrv.URL)
	var ids []string
	for range 5 {
		w := enqueue(t, q, "f", "x", nil)
		if w.Code != http.StatusAccepted {
			t.Fatalf("enqueue: %d %s", w.Code, w.Body)
		}
		ids = append(ids, w.Header().Get(contract.HeaderAsyncRequestID))
	}
	qs, _ := q.Queues(context.Background())
	if len(qs.Queues) != 1 || qs.Queues[0].Depth != 5 || qs.Queues[0].OldestAge <= 0 {
		t.Errorf("queues before dispatch: %+v", qs)
	}
	q.Close()
	q = openTest(t, dir, fns, fnSrv.URL)
	defer q.Close()
	stop := runQueue(t, q)
	defer stop()
	for _, id := range ids {
		waitState(t, q, id, func(s contract.AsyncRequest) bool { return s.State == contract.AsyncDone })
	}
	if calls.Load() != 5 {
		t.Errorf("%d dispatches; want 5", calls.Load())
	}
}

func TestQueueGivesUpAndExpires(t *testing.T) {
	fnSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(500) }))
	defer fnSrv.Close()
	fns := staticFunctions{
		"retry":   {Name: "retry", Policy: contract.AsyncPolicy{Retries: 2, MaxAge: time.Hour, Concurrency: 1, Retry500: true}, MaxBody: 1 << 20, Timeout: time.Second},
		"noretry": {Name: "noretry", Policy: contract.AsyncPolicy{Retries: 5, MaxAge: time.Hour, Concurrency: 1}, MaxBody: 1 << 20, Timeout: time.Second},
	}
	q := openTest(t, t.TempDir(), fns, fnSrv.URL)
	defer q.Close()
	a := enqueue(t, q, "retry", "x", nil).Header().Get(contract.HeaderAsyncRequestID)
	b := enqueue(t, q, "noretry", "x", nil).Header().Get(contract.HeaderAsyncRequestID)
	stop := runQueue(t, q)
	defer stop()
	st := waitState(t, q, a, func(s contract.AsyncRequest) bool { return s.State == contract.AsyncFailed })
	if st.Attempts != 3 || !strings.Contains(st.Error, "gave up after 3 attempts: the function answered 500") {
		t.Errorf("retried 500s: %+v", st)
	}
	// Without retry_500, a 500 is the function's answer: done, status 500.
	st = waitState(t, q, b, func(s contract.AsyncRequest) bool { return s.State == contract.AsyncDone })
	if st.Attempts != 1 || st.Status != 500 {
		t.Errorf("500 without retry_500: %+v", st)
	}
}

func TestEnqueueErrors(t *testing.T) {
	fns := staticFunctions{"f": {Name: "f", Policy: contract.DefaultAsyncPolicy, MaxBody: 16, Timeout: time.Second}}
	q := openTest(t, t.TempDir(), fns, "http://127.0.0.1:1", func(c *Config) { c.MaxQueued = 2 })
	defer q.Close()
	noCred := httptest.NewRequest(http.MethodPost, "/", strings.NewReader("x"))
	noCred.Header.Set(contract.HeaderFunction, "f")
	w := httptest.NewRecorder()
	q.Handler().ServeHTTP(w, noCred)
	if w.Code != http.StatusForbidden {
		t.Errorf("without the replica credential: %d", w.Code)
	}
	for _, c := range []struct {
		name, fn, body string
		hdr            map[string]string
		code           int
		msg            string
	}{
		{"unknown function", "nosuch", "x", nil, 404, "function not found"},
		{"body over the function's limit", "f", strings.Repeat("x", 17), nil, 413, "request body too large"},
		{"callback to loopback", "f", "x", map[string]string{contract.HeaderCallbackURL: "http://127.0.0.1:8090/v1/keys/"}, 400, "loopback address"},
		{"callback not http", "f", "x", map[string]string{contract.HeaderCallbackURL: "file:///etc/passwd"}, 400, "want http or https"},
		{"first", "f", "x", nil, 202, ""},
		{"second", "f", "x", nil, 202, ""},
		{"queue full", "f", "x", nil, 429, "async queue full: 2 requests waiting"},
	} {
		w := enqueue(t, q, c.fn, c.body, c.hdr)
		if w.Code != c.code || !strings.Contains(w.Body.String(), c.msg) || w.Header().Get("Content-Type") != "application/json" {
			t.Errorf("%s: %d %s; want %d with %q", c.name, w.Code, w.Body, c.code, c.msg)
		}
	}
	if _, err := q.Request(context.Background(), strings.Repeat("0", 32)); err != ErrNotFound {
		t.Errorf("unknown id: %v", err)
	}
}

// mutableFunctions is a catalog a test changes.
type mutableFunctions struct {
	mu  sync.Mutex
	fns map[string]Function
}

func (m *mutableFunctions) AsyncFunctions() (map[string]Function, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return maps.Clone(m.fns), nil
}

func (m *mutableFunctions) set(fns map[string]Function) {
	m.mu.Lock()
	m.fns = fns
	m.mu.Unlock()
}

// The gateway's own "function not found" (not routed yet) is not an
// attempt: a function with no retries still runs.
func TestQueueUnroutedIsNotAnAttempt(t *testing.T) {
	var calls atomic.Int32
	fnSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) <= 2 {
			w.Header().Set(contract.HeaderUnrouted, "1")
			w.WriteHeader(http.StatusNotFound)
			return
		}
		_, _ = io.WriteString(w, "ran")
	}))
	defer fnSrv.Close()
	fns := staticFunctions{"f": {Name: "f", Policy: contract.AsyncPolicy{Retries: 0, MaxAge: time.Hour, Concurrency: 1}, MaxBody: 1 << 20, Timeout: time.Second}}
	q := openTest(t, t.TempDir(), fns, fnSrv.URL)
	defer q.Close()
	id := enqueue(t, q, "f", "x", nil).Header().Get(contract.HeaderAsyncRequestID)
	stop := runQueue(t, q)
	defer stop()
	st := waitState(t, q, id, func(s contract.AsyncRequest) bool { return s.State == contract.AsyncDone })
	if st.Status != 200 || st.Attempts != 1 || calls.Load() != 3 {
		t.Errorf("state %+v after %d calls; want done 200 on the first counted attempt, after 2 unrouted answers", st, calls.Load())
	}
}

// While the dispatch frontend does not answer (HAProxy down), requests wait
// uncounted, and run once it is back.
func TestQueueGatewayDownIsNotAnAttempt(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	fns := staticFunctions{"f": {Name: "f", Policy: contract.AsyncPolicy{Retries: 0, MaxAge: time.Hour, Concurrency: 1}, MaxBody: 1 << 20, Timeout: time.Second}}
	q := openTest(t, t.TempDir(), fns, "http://"+addr)
	defer q.Close()
	id := enqueue(t, q, "f", "x", nil).Header().Get(contract.HeaderAsyncRequestID)
	stop := runQueue(t, q)
	defer stop()
	st := waitState(t, q, id, func(s contract.AsyncRequest) bool { return strings.Contains(s.Error, "is not answering") })
	if st.State != contract.AsyncQueued || st.Attempts != 0 {
		t.Errorf("with the gateway down: %+v; want queued, no attempt counted", st)
	}
	ln, err = net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("port %s taken meanwhile: %v", addr, err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()
	st = waitState(t, q, id, func(s contract.AsyncRequest) bool { return s.State == contract.AsyncDone })
	if st.Attempts != 1 || st.Status != 200 {
		t.Errorf("once the gateway is back: %+v; want done 200 on attempt 1", st)
	}
}

// A failure while pulsed stops (HAProxy stopping with it) is not held
// against the request: it runs after the restart.
func TestQueueStopDoesNotFail(t *testing.T) {
	entered := make(chan struct{}, 1)
	var stopping atomic.Bool
	fnSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !stopping.Load() {
			entered <- struct{}{}
			for !stopping.Load() {
				time.Sleep(10 * time.Millisecond)
			}
			w.WriteHeader(http.StatusServiceUnavailable) // HAProxy going away
			return
		}
		_, _ = io.WriteString(w, "ran")
	}))
	defer fnSrv.Close()
	fns := staticFunctions{"f": {Name: "f", Policy: contract.AsyncPolicy{Retries: 0, MaxAge: time.Hour, Concurrency: 1}, MaxBody: 1 << 20, Timeout: 5 * time.Second}}
	dir := t.TempDir()
	q := openTest(t, dir, fns, fnSrv.URL)
	id := enqueue(t, q, "f", "x", nil).Header().Get(contract.HeaderAsyncRequestID)
	stop := runQueue(t, q)
	<-entered
	go func() { time.Sleep(200 * time.Millisecond); stopping.Store(true) }()
	stop()
	st, err := q.Request(context.Background(), id)
	if err != nil || st.State != contract.AsyncQueued || st.Attempts != 0 {
		t.Errorf("after the stop: %+v, %v; want queued with no attempt counted", st, err)
	}
	q.Close()
	q = openTest(t, dir, fns, fnSrv.URL)
	defer q.Close()
	stop = runQueue(t, q)
	defer stop()
	st = waitState(t, q, id, func(s contract.AsyncRequest) bool { return s.State == contract.AsyncDone })
	if st.Status != 200 || st.Attempts != 1 {
		t.Errorf("after the restart: %+v; want done 200 on attempt 1", st)
	}
}

// Requests queued for a function that was removed fail after OrphanAfter,
// with their callbacks; a function that comes back in time keeps its queue.
func TestQueueOrphansFail(t *testing.T) {
	old := orphanSweep
	orphanSweep = 100 * time.Millisecond
	defer func() { orphanSweep = old }()
	cbs := make(chan http.Header, 4)
	cbSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { cbs <- r.Header.Clone() }))
	defer cbSrv.Close()
	f := Function{Name: "f", Policy: contract.DefaultAsyncPolicy, MaxBody: 1 << 20, Timeout: time.Second}
	fns := &mutableFunctions{fns: map[string]Function{"f": f}}
	q := openTest(t, t.TempDir(), fns, "http://127.0.0.1:1", func(c *Config) {
		c.OrphanAfter = time.Second
		c.Callback.Allow = []string{strings.TrimPrefix(cbSrv.URL, "http://")}
	})
	defer q.Close()
	id := enqueue(t, q, "f", "x", map[string]string{contract.HeaderCallbackURL: cbSrv.URL}).Header().Get(contract.HeaderAsyncRequestID)
	fns.set(map[string]Function{})
	stop := runQueue(t, q)
	defer stop()
	st := waitState(t, q, id, func(s contract.AsyncRequest) bool { return s.State == contract.AsyncFailed })
	if !strings.Contains(st.Error, "function f was removed") || st.Attempts != 0 {
		t.Errorf("orphan: %+v", st)
	}
	select {
	case h := <-cbs:
		if h.Get(contract.HeaderAsyncState) != contract.AsyncFailed || !strings.Contains(h.Get(contract.HeaderAsyncError), "removed") {
			t.Errorf("callback headers %v", h)
		}
	case <-time.After(10 * time.Second):
		t.Error("no callback for the removed function's request")
	}
}

// What the waiting requests hold on disk is bounded: beyond MaxBytes the
// enqueue answers 507 with what to change.
func TestEnqueueStoreFull(t *testing.T) {
	fns := staticFunctions{"f": {Name: "f", Policy: contract.DefaultAsyncPolicy, MaxBody: 1 << 20, Timeout: time.Second}}
	q := openTest(t, t.TempDir(), fns, "http://127.0.0.1:1", func(c *Config) { c.MaxBytes, c.MaxPayload = 200<<10, 100<<10 })
	defer q.Close()
	body := strings.Repeat("x", 60<<10)
	for i := range 10 {
		w := enqueue(t, q, "f", body, nil)
		if w.Code == http.StatusAccepted {
			continue
		}
		if w.Code != http.StatusInsufficientStorage || !strings.Contains(w.Body.String(), "async_max_store") || i < 2 {
			t.Fatalf("enqueue %d: %d %s; want 507 naming async_max_store after a few", i, w.Code, w.Body)
		}
		return
	}
	t.Fatal("10 requests of 60 KiB stored within 200 KiB")
}

// Callbacks: a 4xx is final at once, a 5xx is tried 1 + Retries times, a
// receiver slower than Timeout fails the try; each ends "failed" with why.
func TestCallbackRetriesAndTimeout(t *testing.T) {
	var fiveHits, slowHits, fourHits atomic.Int32
	cbSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/4xx":
			fourHits.Add(1)
			w.WriteHeader(http.StatusGone)
		case "/5xx":
			fiveHits.Add(1)
			w.WriteHeader(http.StatusBadGateway)
		case "/slow":
			slowHits.Add(1)
			time.Sleep(700 * time.Millisecond)
		}
	}))
	defer cbSrv.Close()
	fnSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer fnSrv.Close()
	fns := staticFunctions{"f": {Name: "f", Policy: contract.DefaultAsyncPolicy, MaxBody: 1 << 20, Timeout: time.Second}}
	q := openTest(t, t.TempDir(), fns, fnSrv.URL, func(c *Config) {
		c.Callback.Allow = []string{strings.TrimPrefix(cbSrv.URL, "http://")}
		c.Callback.Retries, c.Callback.Timeout = 2, 300*time.Millisecond
	})
	defer q.Close()
	ids := map[string]string{}
	for _, path := range []string{"/4xx", "/5xx", "/slow"} {
		ids[path] = enqueue(t, q, "f", "x", map[string]string{contract.HeaderCallbackURL: cbSrv.URL + path}).Header().Get(contract.HeaderAsyncRequestID)
	}
	stop := runQueue(t, q)
	defer stop()
	for path, want := range map[string]string{"/4xx": "after 1 attempts: callback answered 410", "/5xx": "after 3 attempts: callback answered 502", "/slow": "after 3 attempts"} {
		st := waitState(t, q, ids[path], func(s contract.AsyncRequest) bool { return s.CallbackState == contract.CallbackFailed })
		if st.State != contract.AsyncDone || !strings.Contains(st.CallbackError, want) {
			t.Errorf("%s: %+v; want callback failed %q", path, st, want)
		}
	}
	if fourHits.Load() != 1 || fiveHits.Load() != 3 || slowHits.Load() != 3 {
		t.Errorf("tries: 4xx %d, 5xx %d, slow %d; want 1, 3, 3", fourHits.Load(), fiveHits.Load(), slowHits.Load())
	}
}

// A finished request's state is kept for Retention, then it is gone (404).
func TestStateRetention(t *testing.T) {
	fnSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer fnSrv.Close()
	fns := staticFunctions{"f": {Name: "f", Policy: contract.DefaultAsyncPolicy, MaxBody: 1 << 20, Timeout: time.Second}}
	q := openTest(t, t.TempDir(), fns, fnSrv.URL, func(c *Config) { c.Retention = 2 * time.Second })
	defer q.Close()
	id := enqueue(t, q, "f", "x", nil).Header().Get(contract.HeaderAsyncRequestID)
	stop := runQueue(t, q)
	defer stop()
	waitState(t, q, id, func(s contract.AsyncRequest) bool { return s.State == contract.AsyncDone })
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err := q.Request(context.Background(), id)
		if err == ErrNotFound {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("state still there 30 s after a retention of 2 s: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// async_max_body (MaxPayload) bounds a body below a function's own
// max_body.
func TestEnqueueAsyncMaxBody(t *testing.T) {
	fns := staticFunctions{"f": {Name: "f", Policy: contract.DefaultAsyncPolicy, MaxBody: 10 << 20, Timeout: time.Second}}
	q := openTest(t, t.TempDir(), fns, "http://127.0.0.1:1", func(c *Config) { c.MaxPayload = 100 << 10 })
	defer q.Close()
	limit := (100 << 10) - maxStoredHeaders
	if w := enqueue(t, q, "f", strings.Repeat("x", limit), nil); w.Code != http.StatusAccepted {
		t.Errorf("body at the limit: %d %s", w.Code, w.Body)
	}
	w := enqueue(t, q, "f", strings.Repeat("x", limit+1), nil)
	if w.Code != http.StatusRequestEntityTooLarge || !strings.Contains(w.Body.String(), fmt.Sprintf(`"limit":%d`, limit)) {
		t.Errorf("body over the limit: %d %s; want 413 naming %d", w.Code, w.Body, limit)
	}
}

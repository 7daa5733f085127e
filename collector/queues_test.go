package collector

import (
	"encoding/json"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/netdata/go.d.plugin/pkg/web"

	"github.com/pulsefaas/pulse/contract"
)

func TestQueuesURL(t *testing.T) {
	for _, tc := range []struct{ catalog, want string }{
		{DefaultCatalogURL, "http://127.0.0.1:8090" + contract.QueuesPath},
		{"https://pulsed.test:8090/v1/replicas", "https://pulsed.test:8090/v1/queues"},
		{"http://proxy.test/pulse/v1/replicas?x=1", "http://proxy.test/pulse/v1/queues"},
		{"http://pulsed.test/catalog", "http://pulsed.test/v1/queues"},
	} {
		if got := queuesURL(tc.catalog); got != tc.want {
			t.Errorf("queuesURL(%q) = %q, want %q", tc.catalog, got, tc.want)
		}
	}
}

func TestParseQueues(t *testing.T) {
	for _, tc := range []struct {
		name, body, wantErr string
		want                map[string]contract.QueueStatus
		wantSkipped         []string
	}{
		{name: "pulsed's", body: `{"queues":[{"function":"echo","depth":3,"pending":2,"in_flight":1,"oldest_age_seconds":1.5,"enqueued":9,"done":5,"failed":1,"retried":2},{"function":"hello","depth":0,"pending":0,"in_flight":0,"oldest_age_seconds":0,"enqueued":0,"done":0,"failed":0,"retried":0}]}`,
			want: map[string]contract.QueueStatus{
				"echo":  {Function: "echo", Depth: 3, Pending: 2, InFlight: 1, OldestAge: 1.5, Enqueued: 9, Done: 5, Failed: 1, Retried: 2},
				"hello": {Function: "hello"}}},
		{name: "none: null", body: `{"queues":null}`, want: map[string]contract.QueueStatus{}},
		{name: "none: empty", body: `{"queues":[]}`, want: map[string]contract.QueueStatus{}},
		{name: "unknown fields are a newer pulsed's", body: `{"queues":[{"function":"a","depth":1,"priority":"high"}],"since":"x"}`,
			want: map[string]contract.QueueStatus{"a": {Function: "a", Depth: 1}}},
		{name: "the catalog answering", body: string(golden(t, "catalog.json")), wantErr: `no "queues"`},
		{name: "not JSON", body: `<html>`, wantErr: "decode"},
		{name: "null", body: `null`, wantErr: `no "queues"`},
		{name: "two documents", body: `{"queues":[]} {}`, wantErr: "after the queues"},
		{name: "negative depth", body: `{"queues":[{"function":"a","depth":-1}]}`, wantErr: "decode queues"},
		{name: "fractional count", body: `{"queues":[{"function":"a","enqueued":1.5}]}`, wantErr: "decode queues"},
		{name: "queues not a list", body: `{"queues":{"a":1}}`, wantErr: "decode queues"},
		{name: "odd and duplicate names are skipped", body: `{"queues":[{"function":"Odd_Name","depth":1},{"function":"a","depth":1},{"function":"a","depth":2},{"function":"b","depth":3}]}`,
			want: map[string]contract.QueueStatus{"b": {Function: "b", Depth: 3}},
			wantSkipped: []string{
				`queue of function "Odd_Name": the name is not 1-63 lower-case letters, digits and '-', so it cannot name the function's charts`,
				`queue of function "a": listed more than once`, `queue of function "a": listed more than once`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, skipped, err := parseQueues([]byte(tc.body))
			if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("err = %v, want %q", err, tc.wantErr)
			}
			if !maps.Equal(got, tc.want) {
				t.Errorf("queues %+v, want %+v", got, tc.want)
			}
			var sk []string
			for _, s := range skipped {
				sk = append(sk, s.entry+": "+s.reason)
			}
			if !slices.Equal(sk, tc.wantSkipped) {
				t.Errorf("skipped\n%q\nwant\n%q", sk, tc.wantSkipped)
			}
		})
	}
}

// queuesPulsed serves a catalog (fakePulsed) and, on contract.QueuesPath,
// what the test sets: queues as JSON, a raw body, a status, or an answer
// that never comes (until the client gives up).
type queuesPulsed struct {
	catalog *fakePulsed
	mu      sync.Mutex
	queues  contract.Queues
	raw     string
	status  int
	hang    bool
}

func (p *queuesPulsed) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != contract.QueuesPath {
		p.catalog.ServeHTTP(w, r)
		return
	}
	p.mu.Lock()
	queues, raw, status, hang := p.queues, p.raw, p.status, p.hang
	p.mu.Unlock()
	switch {
	case hang:
		<-r.Context().Done()
	case status != 0:
		http.Error(w, `{"error":"no"}`, status)
	case raw != "":
		_, _ = w.Write([]byte(raw))
	default:
		_ = json.NewEncoder(w).Encode(queues)
	}
}

func (p *queuesPulsed) set(fn func(p *queuesPulsed)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fn(p)
}

// TestCollectQueues steps a collector through the answers pulsed may give
// on its queues: the charts' values, the demand of a function scaled on
// queue, and what is logged. A 404 (async off) and a failure leave the
// queue charts without values (a gap) and the demand unknown; a failure is
// said once, with its recovery; a 404 is not said; nor is a failure while
// the catalog fails too.
func TestCollectQueues(t *testing.T) {
	labels := map[string]string{contract.LabelScaleMetric: contract.ScaleMetricQueue, contract.LabelScaleTarget: "10"}
	pulsed := &queuesPulsed{catalog: &fakePulsed{cat: catalogOf("v1", fn("hello", 1, labels), fn("echo", 1, nil))}}
	srv := httptest.NewServer(pulsed)
	defer srv.Close()
	rec := &logRecorder{}
	cfg := defaultConfig()
	cfg.CatalogURL, cfg.HAProxyURL = srv.URL+contract.CatalogPath, "http://127.0.0.1:1/metrics"
	cfg.Timeout = web.Duration{Duration: 400 * time.Millisecond}
	cfg.ReplicaAuthFile = credentialFileOf(t, "s3cret")
	c, err := NewCollector(cfg, slog.New(rec))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	hello := contract.QueueStatus{Function: "hello", Depth: 30, Pending: 28, InFlight: 2, OldestAge: 4.25, Enqueued: 40, Done: 10}
	depth := dimKey("hello", contract.ChartQueue, contract.DimDepth)
	echoDepth := dimKey("echo", contract.ChartQueue, contract.DimDepth)
	oldest := dimKey("hello", contract.ChartQueueAge, contract.DimOldest)
	demand := dimKey("hello", contract.ChartDemand, contract.DimDemand)
	util := dimKey("hello", contract.ChartUtilization, contract.DimUtilization)
	for _, st := range []struct {
		name     string
		change   func(p *queuesPulsed)
		want     map[string]int64 // of the keys above; missing: no value
		warnings []string         // warnings so far that are not HAProxy's
		infos    int              // info messages so far
	}{
		{name: "queues", change: func(p *queuesPulsed) { p.queues = contract.Queues{Queues: []contract.QueueStatus{hello}} },
			// 100 × 30 / (max(0 ready, 1) × 10); demand 30 (×100).
			want: map[string]int64{depth: 30, echoDepth: 0, oldest: 4250, demand: 3000, util: 30000}},
		{name: "async off: 404, no values, not logged", change: func(p *queuesPulsed) { p.status = http.StatusNotFound },
			want: map[string]int64{}},
		{name: "bad JSON: no values, logged", change: func(p *queuesPulsed) { p.status, p.raw = 0, `{"queues":[{"function":"hello","depth":"many"}]}` },
			want: map[string]int64{}, warnings: []string{"cannot read pulsed's async queues"}},
		{name: "500: another kind, logged", change: func(p *queuesPulsed) { p.raw, p.status = "", http.StatusInternalServerError },
			want: map[string]int64{}, warnings: []string{"cannot read pulsed's async queues", "cannot read pulsed's async queues"}},
		{name: "still 500: not logged again", want: map[string]int64{},
			warnings: []string{"cannot read pulsed's async queues", "cannot read pulsed's async queues"}},
		{name: "recovered", change: func(p *queuesPulsed) { p.status = 0 },
			want:     map[string]int64{depth: 30, echoDepth: 0, oldest: 4250, demand: 3000, util: 30000},
			warnings: []string{"cannot read pulsed's async queues", "cannot read pulsed's async queues"}, infos: 1},
		{name: "timeout: no values, logged", change: func(p *queuesPulsed) { p.hang = true }, want: map[string]int64{},
			warnings: []string{"cannot read pulsed's async queues", "cannot read pulsed's async queues", "cannot read pulsed's async queues"}, infos: 1},
		{name: "the catalog fails too: only its warning", change: func(p *queuesPulsed) {
			p.hang = false
			p.status = http.StatusInternalServerError
			p.catalog.set(func(f *fakePulsed) { f.status = http.StatusServiceUnavailable })
		}, want: map[string]int64{},
			warnings: []string{"cannot read pulsed's async queues", "cannot read pulsed's async queues", "cannot read pulsed's async queues",
				"cannot read the replica catalog"}, infos: 1},
	} {
		t.Run(st.name, func(t *testing.T) {
			if st.change != nil {
				pulsed.set(st.change)
			}
			start := time.Now()
			mx, _ := c.Collect(t.Context())
			if d := time.Since(start); d > cfg.Timeout.Duration+200*time.Millisecond {
				t.Errorf("cycle took %s, over the %s timeout", d, cfg.Timeout.Duration)
			}
			got := map[string]int64{}
			for _, k := range []string{depth, echoDepth, oldest, demand, util} {
				if v, ok := mx[k]; ok {
					got[k] = v
				}
			}
			if !maps.Equal(got, st.want) {
				t.Errorf("values %v, want %v", got, st.want)
			}
			var counters []string
			for _, d := range []string{contract.DimEnqueued, contract.DimDone, contract.DimFailed, contract.DimRetried} {
				if _, ok := mx[dimKey("hello", contract.ChartAsyncRequests, d)]; ok {
					counters = append(counters, d)
				}
			}
			if len(st.want) > 0 && len(counters) != 4 || len(st.want) == 0 && len(counters) != 0 {
				t.Errorf("async counters charted: %v", counters)
			}
			var warns []string // up to the first ';'
			for _, w := range notHAProxy(rec.messages(slog.LevelWarn)) {
				w, _, _ = strings.Cut(w, ";")
				warns = append(warns, w)
			}
			if !slices.Equal(warns, st.warnings) {
				t.Errorf("warnings so far %q, want %q", warns, st.warnings)
			}
			if infos := len(rec.messages(slog.LevelInfo)) - len(rec.messages(slog.LevelWarn)); infos != st.infos {
				t.Errorf("%d info messages so far, want %d", infos, st.infos)
			}
		})
	}
}

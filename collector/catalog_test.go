package collector

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/netdata/go.d.plugin/pkg/web"

	"github.com/pulsefaas/pulse/contract"
)

// fakePulsed serves a catalog the way gateway's handler does: ETag =
// quoted version, 304 to a matching If-None-Match. Tests change what it
// answers.
type fakePulsed struct {
	mu       sync.Mutex
	cat      contract.Catalog
	raw      string // served as is instead of cat when set
	status   int    // served instead when set
	requests []string
}

func (f *fakePulsed) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != contract.CatalogPath {
		http.NotFound(w, r)
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.requests = append(f.requests, r.Header.Get("If-None-Match"))
	switch {
	case f.status != 0:
		http.Error(w, `{"error":"not ready"}`, f.status)
	case f.raw != "":
		_, _ = w.Write([]byte(f.raw))
	default:
		etag := `"` + f.cat.Version + `"`
		w.Header().Set("ETag", etag)
		if r.Header.Get("If-None-Match") == etag {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		_ = json.NewEncoder(w).Encode(f.cat)
	}
}

func (f *fakePulsed) set(fn func(f *fakePulsed)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f)
}

func (f *fakePulsed) lastIfNoneMatch() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.requests[len(f.requests)-1]
}

func catalogOf(version string, fns ...contract.CatalogFunction) contract.Catalog {
	return contract.Catalog{Version: version, Functions: fns}
}

// TestCollectorCatalog steps a collector through the catalog's states and
// checks which catalog it uses, what it asked with and what it logged.
func TestCollectorCatalog(t *testing.T) {
	pulsed := &fakePulsed{cat: catalogOf("v1", fn("hello", 1, nil))}
	srv := httptest.NewServer(pulsed)
	defer srv.Close()
	rec := &logRecorder{}
	cfg := defaultConfig()
	cfg.CatalogURL = srv.URL + contract.CatalogPath
	cfg.HAProxyURL = srv.URL + "/nothing" // 404: not HAProxy
	cfg.Timeout = web.Duration{Duration: 900 * time.Millisecond}
	c, err := NewCollector(cfg, slog.New(rec))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	for _, st := range []struct {
		name        string
		change      func(f *fakePulsed)
		stop        bool // close the server
		wantFns     []string
		wantIfNone  string // If-None-Match of the last request
		wantWarnTot int    // warnings logged so far
		wantInfoNew []string
	}{
		{name: "first read", wantFns: []string{"hello"}, wantIfNone: "",
			wantWarnTot: 1}, // HAProxy's page is not one: logged once
		{name: "unchanged: 304", wantFns: []string{"hello"}, wantIfNone: `"v1"`, wantWarnTot: 1},
		{name: "changed", change: func(f *fakePulsed) { f.cat = catalogOf("v2", fn("echo", 1, nil), fn("hello", 2, nil)) },
			wantFns: []string{"echo", "hello"}, wantIfNone: `"v1"`, wantWarnTot: 1},
		{name: "pulsed starting: 503 keeps the last", change: func(f *fakePulsed) { f.status = http.StatusServiceUnavailable },
			wantFns: []string{"echo", "hello"}, wantIfNone: `"v2"`, wantWarnTot: 2},
		{name: "still failing: no new message", wantFns: []string{"echo", "hello"}, wantIfNone: `"v2"`, wantWarnTot: 2},
		{name: "recovered", change: func(f *fakePulsed) { f.status = 0 }, wantFns: []string{"echo", "hello"}, wantIfNone: `"v2"`,
			wantWarnTot: 2, wantInfoNew: []string{"replica catalog readable again"}},
		{name: "malformed: garbage", change: func(f *fakePulsed) { f.raw = "<html>pulsed?</html>" },
			wantFns: []string{"echo", "hello"}, wantIfNone: `"v2"`, wantWarnTot: 3},
		{name: "malformed: bad function name", change: func(f *fakePulsed) {
			f.raw = `{"version":"v3","functions":[{"name":"Hello World","replicas":[]}]}`
		}, wantFns: []string{"echo", "hello"}, wantIfNone: `"v2"`, wantWarnTot: 3},
		{name: "good again", change: func(f *fakePulsed) { f.raw = ""; f.cat = catalogOf("v4") },
			wantFns: []string{}, wantIfNone: `"v2"`, wantWarnTot: 3, wantInfoNew: []string{"replica catalog readable again"}},
		{name: "unreachable", stop: true, wantFns: []string{}, wantWarnTot: 4},
	} {
		t.Run(st.name, func(t *testing.T) {
			if st.change != nil {
				pulsed.set(st.change)
			}
			if st.stop {
				srv.Close()
			}
			infoBefore := len(rec.messages(slog.LevelInfo)) - len(rec.messages(slog.LevelWarn))
			_, fns := c.Collect(context.Background())
			if strings.Join(fns, ",") != strings.Join(st.wantFns, ",") {
				t.Errorf("functions = %v, want %v", fns, st.wantFns)
			}
			if !st.stop {
				if got := pulsed.lastIfNoneMatch(); got != st.wantIfNone {
					t.Errorf("If-None-Match = %q, want %q", got, st.wantIfNone)
				}
			}
			warns := rec.messages(slog.LevelWarn)
			if len(warns) != st.wantWarnTot {
				t.Errorf("warnings so far: %q, want %d", warns, st.wantWarnTot)
			}
			infos := len(rec.messages(slog.LevelInfo)) - len(warns)
			if infos-infoBefore != len(st.wantInfoNew) {
				t.Errorf("%d new info messages, want %q", infos-infoBefore, st.wantInfoNew)
			}
		})
	}
}

func TestParseCatalog(t *testing.T) {
	for _, tc := range []struct {
		name, body, wantErr string
	}{
		{"pulsed's", string(golden(t, "catalog.json")), ""},
		{"empty", `{"version":"x","functions":[]}`, ""},
		{"no version", `{"functions":[]}`, "no version"},
		{"not JSON", `<html>`, "decode"},
		{"two documents", `{"version":"x"} {}`, "after the catalog"},
		{"duplicate function", `{"version":"x","functions":[{"name":"a"},{"name":"a"}]}`, "twice"},
		{"upper case", `{"version":"x","functions":[{"name":"Hello"}]}`, "function name"},
		{"replica without address", `{"version":"x","functions":[{"name":"a","replicas":[{"task_id":"t"}]}]}`, "host:port"},
		{"replica address with a path", `{"version":"x","functions":[{"name":"a","replicas":[{"task_id":"t","addr":"h:1/x"}]}]}`, "host:port"},
		{"duplicate task", `{"version":"x","functions":[{"name":"a","replicas":[{"task_id":"t","addr":"h:1"},{"task_id":"t","addr":"h:2"}]}]}`, "host:port"},
		{"negative desired", `{"version":"x","functions":[{"name":"a","desired":-1}]}`, "desired"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseCatalog([]byte(tc.body))
			if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Errorf("err = %v, want %q", err, tc.wantErr)
			}
		})
	}
}

package collector

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
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
	cfg.ReplicaAuthFile = credentialFileOf(t, "s3cret")
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
		{name: "one odd name is skipped, the rest kept", change: func(f *fakePulsed) {
			f.raw = `{"version":"v3","functions":[{"name":"Odd_Name","replicas":[]},{"name":"echo","replicas":[]}]}`
		}, wantFns: []string{"echo"}, wantIfNone: `"v2"`, wantWarnTot: 4, wantInfoNew: []string{"replica catalog readable again"}},
		{name: "the same odd name in the next version: not logged again", change: func(f *fakePulsed) {
			f.raw = `{"version":"v3b","functions":[{"name":"Odd_Name","replicas":[]},{"name":"echo","replicas":[]},{"name":"greet","replicas":[]}]}`
		}, wantFns: []string{"echo", "greet"}, wantIfNone: `"v3"`, wantWarnTot: 4},
		{name: "good again", change: func(f *fakePulsed) { f.raw = ""; f.cat = catalogOf("v4") },
			wantFns: []string{}, wantIfNone: `"v3b"`, wantWarnTot: 4},
		{name: "unreachable", stop: true, wantFns: []string{}, wantWarnTot: 5},
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
		wantFns             string // function:replicas,...
		wantSkipped         []string
	}{
		{name: "pulsed's", body: string(golden(t, "catalog.json")), wantFns: "echo:0,hello:2"},
		{name: "empty", body: `{"version":"x","functions":[]}`},
		{name: "no version", body: `{"functions":[]}`, wantErr: "no version"},
		{name: "not JSON", body: `<html>`, wantErr: "decode"},
		{name: "two documents", body: `{"version":"x"} {}`, wantErr: "after the catalog"},
		{name: "duplicate function: every copy skipped", body: `{"version":"x","functions":[{"name":"a"},{"name":"b"},{"name":"a"}]}`,
			wantFns: "b:0", wantSkipped: []string{`function "a": listed more than once`, `function "a": listed more than once`}},
		{name: "Swarm's Odd_Name", body: `{"version":"x","functions":[{"name":"Odd_Name","replicas":[{"task_id":"t","addr":"h:1"}]},{"name":"ok","replicas":[{"task_id":"t","addr":"h:2"}]}]}`,
			wantFns: "ok:1", wantSkipped: []string{`function "Odd_Name": the name is not 1-63 lower-case letters, digits and '-' (what pulse deploy makes), so it cannot name the function's charts`}},
		{name: "a very long name is logged cut", body: `{"version":"x","functions":[{"name":"` + strings.Repeat("a", 100) + `"}]}`,
			wantSkipped: []string{`function "` + strings.Repeat("a", maxLoggedName) + `...": the name is not 1-63 lower-case letters, digits and '-' (what pulse deploy makes), so it cannot name the function's charts`}},
		{name: "replica without address", body: `{"version":"x","functions":[{"name":"a","replicas":[{"task_id":"t"},{"task_id":"u","addr":"h:1"}]}]}`,
			wantFns: "a:1", wantSkipped: []string{`replica "t" of function a: address "" is not host:port`}},
		{name: "replica without task", body: `{"version":"x","functions":[{"name":"a","replicas":[{"addr":"h:1"}]}]}`,
			wantFns: "a:0", wantSkipped: []string{`replica "" of function a at "h:1": no task ID`}},
		{name: "replica address with a path", body: `{"version":"x","functions":[{"name":"a","replicas":[{"task_id":"t","addr":"h:1/x"}]}]}`,
			wantFns: "a:0", wantSkipped: []string{`replica "t" of function a: address "h:1/x" is not host:port`}},
		{name: "duplicate task", body: `{"version":"x","functions":[{"name":"a","replicas":[{"task_id":"t","addr":"h:1"},{"task_id":"t","addr":"h:2"}]}]}`,
			wantFns: "a:0", wantSkipped: []string{`replica "t" of function a: listed more than once`, `replica "t" of function a: listed more than once`}},
		{name: "negative desired", body: `{"version":"x","functions":[{"name":"a","desired":-1}]}`,
			wantSkipped: []string{`function "a": desired replicas -1`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cat, skipped, err := parseCatalog([]byte(tc.body))
			if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("err = %v, want %q", err, tc.wantErr)
			}
			if err != nil {
				return
			}
			var fns []string
			for _, f := range cat.Functions {
				fns = append(fns, f.Name+":"+strconv.Itoa(len(f.Replicas)))
			}
			if got := strings.Join(fns, ","); got != tc.wantFns {
				t.Errorf("functions %q, want %q", got, tc.wantFns)
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

package scaler

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/pulsefaas/pulse/contract"
)

const testToken = "s3cret-token"

// testEnv is a running Scaler over fakes, served by httptest.
type testEnv struct {
	s    *Scaler
	cat  *fakeCatalog
	svcs *fakeServices
	util *fakeUtilisation
	srv  *httptest.Server
}

func newTestEnv(t *testing.T, cfg Config, token string) *testEnv {
	t.Helper()
	e := &testEnv{cat: &fakeCatalog{}, svcs: newFakeServices(), util: &fakeUtilisation{}}
	s, err := New(cfg, e.svcs, e.util, e.cat, nil)
	if err != nil {
		t.Fatal(err)
	}
	e.s = s
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	e.srv = httptest.NewServer(NewHandler(s, token))
	t.Cleanup(func() {
		e.srv.Close()
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return e
}

// quietConfig evaluates only when an alarm asks.
func quietConfig() Config {
	cfg := DefaultConfig()
	cfg.Resync = time.Hour
	return cfg
}

// do sends a request and returns the status and the body.
func (e *testEnv) do(t *testing.T, method, path, auth string, body io.Reader, size int64) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, e.srv.URL+path, body)
	if err != nil {
		t.Fatal(err)
	}
	if size != 0 {
		req.ContentLength = size
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(b))
}

func (e *testEnv) alarm(t *testing.T, ev contract.AlarmEvent) (int, string) {
	t.Helper()
	b, _ := json.Marshal(ev)
	return e.do(t, http.MethodPost, contract.AlarmsPath, "Bearer "+testToken, strings.NewReader(string(b)), 0)
}

func TestWebhookErrors(t *testing.T) {
	e := newTestEnv(t, quietConfig(), testToken)
	e.cat.set("hello", nil, 1, 1)
	e.svcs.add("hello", 1, map[string]string{contract.LabelFunction: "hello"}, time.Now().Add(-time.Hour))
	good := `{"function":"hello","when":1767225600,"unique_id":1,"alarm":"pulse_scale_up","status":"WARNING","value":180}`
	bearer := "Bearer " + testToken
	for _, tc := range []struct {
		name, auth, body string
		chunked          bool
		wantCode         int
		wantBody         string
	}{
		{"no token", "", good, false, 401, `{"error":"missing or wrong bearer token"}`},
		{"forged token", "Bearer s3cret-tokeN", good, false, 401, `{"error":"missing or wrong bearer token"}`},
		{"token prefix", "Bearer s3cret", good, false, 401, `{"error":"missing or wrong bearer token"}`},
		{"basic auth", "Basic " + testToken, good, false, 401, `{"error":"missing or wrong bearer token"}`},
		{"malformed JSON", bearer, `{"function": "hello",`, false, 400, `{"error":"malformed JSON: unexpected EOF"}`},
		{"syntax error", bearer, `{"function" "hello"}`, false, 400, `{"error":"malformed JSON at byte 13: invalid character '\"' after object key"}`},
		{"wrong type", bearer, `{"function":"hello","when":"now"}`, false, 400, `{"error":"field when: want a number, got a JSON string"}`},
		{"not an object", bearer, `[1,2]`, false, 400, `{"error":"want a JSON object, got a JSON array"}`},
		{"two objects", bearer, good + good, false, 400, `{"error":"malformed JSON: data after the alarm event"}`},
		{"empty body", bearer, ``, false, 400, `{"error":"empty body: want a JSON alarm event"}`},
		{"no function", bearer, `{"when":1767225600}`, false, 400, `{"error":"field function: missing (the chart's family, the function name)"}`},
		{"no time", bearer, `{"function":"hello"}`, false, 400, `{"error":"field when: missing or not a positive unix time"}`},
		{"oversized", bearer, `{"function":"hello","info":"` + strings.Repeat("x", contract.MaxAlarmBody) + `"}`, false, 413, `{"error":"body over 16384 bytes"}`},
		{"oversized without a length", bearer, `{"function":"hello","info":"` + strings.Repeat("x", contract.MaxAlarmBody) + `"}`, true, 413, `{"error":"body over 16384 bytes"}`},
		{"unknown function", bearer, `{"function":"nope","when":1767225600}`, false, 404, `{"error":"no such function: \"nope\" is not in the replica catalog"}`},
		{"accepted", bearer, good, false, 202, `{"result":"accepted"}`},
		{"unknown fields are fine", bearer, `{"function":"hello","when":1767225601,"unique_id":2,"new_field":[1]}`, false, 202, `{"result":"accepted"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var body io.Reader = strings.NewReader(tc.body)
			size := int64(0)
			if tc.chunked {
				body, size = io.MultiReader(body), -1 // unknown length: chunked
			}
			code, got := e.do(t, http.MethodPost, contract.AlarmsPath, tc.auth, body, size)
			if code != tc.wantCode || got != tc.wantBody {
				t.Errorf("got %d %s\nwant %d %s", code, got, tc.wantCode, tc.wantBody)
			}
		})
	}

	t.Run("other endpoints", func(t *testing.T) {
		for _, tc := range []struct {
			method, path, auth string
			wantCode           int
			wantBody           string
		}{
			{"GET", contract.FunctionsPath, "", 401, `{"error":"missing or wrong bearer token"}`},
			{"GET", contract.EventsPath, "Bearer x", 401, `{"error":"missing or wrong bearer token"}`},
			{"GET", contract.AlarmsPath, bearer, 405, `{"error":"Method Not Allowed"}`},
			{"GET", "/v1/nothing", bearer, 404, `{"error":"Not Found"}`},
		} {
			if code, got := e.do(t, tc.method, tc.path, tc.auth, nil, 0); code != tc.wantCode || got != tc.wantBody {
				t.Errorf("%s %s: got %d %s, want %d %s", tc.method, tc.path, code, got, tc.wantCode, tc.wantBody)
			}
		}
	})

	t.Run("metrics", func(t *testing.T) {
		code, got := e.do(t, "GET", contract.PulsedMetricsPath, "", nil, 0)
		if code != 200 {
			t.Fatalf("GET /metrics: %d %s", code, got)
		}
		for _, line := range []string{
			`pulsed_scaler_alarms_total{result="unauthorized"} 4`, // the webhook's only
			`pulsed_scaler_alarms_total{result="bad_request"} 8`,
			`pulsed_scaler_alarms_total{result="too_large"} 2`,
			`pulsed_scaler_alarms_total{result="unknown_function"} 1`,
			`pulsed_scaler_alarms_total{result="accepted"} 2`,
			`pulsed_scaler_webhook_duration_seconds_count 13`,
			`# TYPE pulsed_scaler_decisions_total counter`,
			`pulsed_scaler_service_update_conflicts_total 0`,
		} {
			if !strings.Contains(got+"\n", line+"\n") {
				t.Errorf("metrics lack %q:\n%s", line, got)
			}
		}
	})
}

func TestWebhookWithoutToken(t *testing.T) {
	e := newTestEnv(t, quietConfig(), "")
	e.cat.set("hello", nil, 1, 1)
	want := `{"error":"no token configured (alarm_token_file missing or empty): pulsed refuses every request here"}`
	for _, auth := range []string{"", "Bearer ", "Bearer anything"} {
		code, got := e.do(t, http.MethodPost, contract.AlarmsPath, auth, strings.NewReader(`{"function":"hello","when":1}`), 0)
		if code != 503 || got != want {
			t.Errorf("auth %q: got %d %s, want 503 %s", auth, code, got, want)
		}
	}
}

func TestWebhookCatalogNotReady(t *testing.T) {
	e := newTestEnv(t, quietConfig(), testToken)
	code, got := e.alarm(t, contract.AlarmEvent{Function: "hello", When: 1})
	if want := `{"error":"the replica catalog is not ready"}`; code != 503 || got != want {
		t.Errorf("got %d %s, want 503 %s", code, got, want)
	}
}

// TestAlarmsRepeatedAndReordered: one scale-up for a burst of repeated,
// late and reordered alarms, and none for a new alarm that finds the
// service already sized.
func TestAlarmsRepeatedAndReordered(t *testing.T) {
	e := newTestEnv(t, quietConfig(), testToken)
	labels := map[string]string{contract.LabelFunction: "hello", contract.LabelScaleMax: "8"}
	e.cat.set("hello", labels, 1, 1)
	e.svcs.add("hello", 1, labels, time.Now().Add(-time.Hour))
	e.util.set("hello", 500, 500)
	evaluated := func(n uint64) func() bool {
		return func() bool { return e.s.m.reconciles.get(contract.TriggerAlarm) >= n }
	}

	when := time.Now().Unix() - 2
	first := contract.AlarmEvent{Function: "hello", Alarm: contract.AlarmScaleUp, UniqueID: 41, EventID: 3, When: when, Status: contract.AlarmWarning, Value: 500}
	if code, got := e.alarm(t, first); code != 202 || got != `{"result":"accepted"}` {
		t.Fatalf("first alarm: %d %s", code, got)
	}
	waitFor(t, "the first alarm's evaluation", evaluated(1))
	// The evaluation counter moves when it starts; wait for its update.
	waitFor(t, "the first alarm's decision", func() bool { return len(e.s.Events().Events) > 0 })
	if got, _ := e.svcs.snapshot(); !reflect.DeepEqual(got, []string{"hello:5"}) {
		t.Fatalf("updates after the first alarm: %v, want [hello:5]", got)
	}
	decided := e.s.Events().Events[0].Time.Unix()

	for _, tc := range []struct {
		name string
		ev   contract.AlarmEvent
		want string
	}{
		{"repeat", first, AlarmDuplicate},
		{"earlier", contract.AlarmEvent{Function: "hello", UniqueID: 50, When: when - 1}, AlarmReordered},
		{"same second, lower id (event id higher)", contract.AlarmEvent{Function: "hello", UniqueID: 40, EventID: 9, When: when}, AlarmReordered},
		{"newer than seen, older than the decision", contract.AlarmEvent{Function: "hello", UniqueID: 42, When: decided - 1}, AlarmStale},
	} {
		if code, got := e.alarm(t, tc.ev); code != 202 || got != `{"result":"`+tc.want+`"}` {
			t.Errorf("%s: got %d %s, want 202 %s", tc.name, code, got, tc.want)
		}
	}
	// A new alarm while the five replicas start (one ready, utilisation
	// still 500%): the truth says five are enough.
	if code, got := e.alarm(t, contract.AlarmEvent{Function: "hello", UniqueID: 43, When: decided}); code != 202 || got != `{"result":"accepted"}` {
		t.Fatalf("new alarm: %d %s", code, got)
	}
	waitFor(t, "the new alarm's evaluation", evaluated(2))
	if got, overlap := e.svcs.snapshot(); !reflect.DeepEqual(got, []string{"hello:5"}) || overlap != 0 {
		t.Errorf("updates %v (overlaps %d), want only [hello:5]", got, overlap)
	}

	evs := e.s.Events()
	if len(evs.Events) != 1 || evs.Events[0].LatencyMS == nil || *evs.Events[0].LatencyMS < 1000 {
		t.Fatalf("events %+v: want one with a latency of at least 1 s (the alarm is 2 s old)", evs)
	}
	ev0 := evs.Events[0]
	if ev0.ReceivedAt.IsZero() || ev0.StartedAt.Before(ev0.ReceivedAt) || ev0.DecidedAt.Before(ev0.StartedAt) || ev0.Time.Before(ev0.DecidedAt) {
		t.Errorf("stamps out of order: received %v, started %v, decided %v, updated %v", ev0.ReceivedAt, ev0.StartedAt, ev0.DecidedAt, ev0.Time)
	}
	evs.Events[0].Time, evs.Events[0].LatencyMS = time.Time{}, nil
	evs.Events[0].ReceivedAt, evs.Events[0].StartedAt, evs.Events[0].DecidedAt = time.Time{}, time.Time{}, time.Time{}
	want := contract.ScaleEvents{Total: 1, Events: []contract.ScaleEvent{{
		Function: "hello", From: 1, To: 5, Reason: "utilisation 500% over 1 ready replicas above 110%",
		Trigger: contract.TriggerAlarm,
		Alarm:   &contract.AlarmRef{UniqueID: 41, Alarm: contract.AlarmScaleUp, Status: contract.AlarmWarning, Value: 500, When: when},
	}}}
	if !reflect.DeepEqual(evs, want) {
		t.Errorf("events\n  %+v\nwant\n  %+v", evs, want)
	}

	// The API shows the same.
	code, body := e.do(t, "GET", contract.EventsPath, "Bearer "+testToken, nil, 0)
	var wire contract.ScaleEvents
	if err := json.Unmarshal([]byte(body), &wire); code != 200 || err != nil || len(wire.Events) != 1 || wire.Events[0].To != 5 {
		t.Errorf("GET events: %d %s (%v)", code, body, err)
	}
	e.cat.set("hello", labels, 5, 2)
	code, body = e.do(t, "GET", contract.FunctionsPath, "Bearer "+testToken, nil, 0)
	var fns contract.Functions
	if err := json.Unmarshal([]byte(body), &fns); code != 200 || err != nil || len(fns.Functions) != 1 {
		t.Fatalf("GET functions: %d %s (%v)", code, body, err)
	}
	fs := fns.Functions[0]
	if fs.Utilization == nil || *fs.Utilization != 500 || fs.LastDecision == nil || fs.CheckedAt.IsZero() || fs.NoScaleDownUntil.IsZero() {
		t.Fatalf("function status %s", body)
	}
	fs.Utilization, fs.UtilizationAt, fs.CheckedAt, fs.NoScaleDownUntil, fs.LastDecision = nil, time.Time{}, time.Time{}, time.Time{}, nil
	wantFS := contract.FunctionStatus{
		Name:     "hello",
		Replicas: contract.ReplicaCounts{Current: 5, Desired: 5, Ready: 2},
		Policy:   contract.ScalePolicy{Metric: "inflight", Target: 10, Min: 1, Max: 8},
		Reason:   "utilisation 500% over 1 ready replicas wants 5: has 5",
	}
	if !reflect.DeepEqual(fs, wantFS) {
		t.Errorf("function status\n  %+v\nwant\n  %+v", fs, wantFS)
	}
}

// TestResyncWithoutAlarms: a lost alarm does no harm, the periodic
// evaluation scales anyway.
func TestResyncWithoutAlarms(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Resync = 10 * time.Millisecond
	e := newTestEnv(t, cfg, testToken)
	labels := map[string]string{contract.LabelFunction: "quiet"}
	e.svcs.add("quiet", 2, labels, time.Now().Add(-time.Hour))
	e.util.set("quiet", 250, 250)
	e.cat.set("quiet", labels, 2, 2)
	waitFor(t, "the scale-up", func() bool { return e.svcs.replicas("quiet") == 5 })
	waitFor(t, "more evaluations", func() bool { return e.s.m.reconciles.get(contract.TriggerResync) >= 5 })
	if got, _ := e.svcs.snapshot(); !reflect.DeepEqual(got, []string{"quiet:5"}) {
		t.Errorf("updates %v, want [quiet:5]", got)
	}
	ev := e.s.Events().Events[0]
	if ev.Trigger != contract.TriggerResync || ev.Alarm != nil || ev.LatencyMS != nil {
		t.Errorf("event %+v", ev)
	}
}

// TestSerialised: alarms, resyncs and EnsureReplicas on one function never
// overlap, and a version conflict is read again and retried.
func TestSerialised(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Resync = 5 * time.Millisecond
	e := newTestEnv(t, cfg, testToken)
	labels := map[string]string{contract.LabelFunction: "busy", contract.LabelScaleMax: "20"}
	e.svcs.add("busy", 1, labels, time.Now().Add(-time.Hour))
	e.svcs.slow = 2 * time.Millisecond
	e.svcs.conflicts = 2
	e.util.set("busy", 100, 100)
	e.cat.set("busy", labels, 1, 1)
	ctx := t.Context()
	errc := make(chan error, 20)
	for i := range 20 {
		go func() {
			if i%2 == 0 {
				errc <- e.s.EnsureReplicas(ctx, "busy", 1+i/2, fmt.Sprintf("test %d", i))
				return
			}
			code, body := e.alarm(t, contract.AlarmEvent{Function: "busy", UniqueID: uint64(i), When: time.Now().Unix()})
			if code != http.StatusAccepted {
				errc <- fmt.Errorf("alarm: %d %s", code, body)
				return
			}
			errc <- nil
		}()
	}
	for range 20 {
		if err := <-errc; err != nil {
			t.Error(err)
		}
	}
	updates, overlap := e.svcs.snapshot()
	if overlap != 0 {
		t.Errorf("%d overlapping calls on one function; updates %v", overlap, updates)
	}
	if got := e.svcs.replicas("busy"); got != 10 {
		t.Errorf("replicas %d, want 10 (the largest EnsureReplicas)", got)
	}
	if got := e.s.m.conflicts.get(""); got != 2 {
		t.Errorf("conflicts %d, want 2", got)
	}
}

func TestConflictRetriesBounded(t *testing.T) {
	e := newTestEnv(t, quietConfig(), testToken)
	labels := map[string]string{contract.LabelFunction: "contended"}
	e.svcs.add("contended", 1, labels, time.Now())
	e.svcs.conflicts = 100
	err := e.s.EnsureReplicas(t.Context(), "contended", 3, "from zero")
	if err == nil || !strings.Contains(err.Error(), "scale contended from 1 to 3") || !strings.Contains(err.Error(), ErrConflict.Error()) {
		t.Errorf("err = %v", err)
	}
	if got, want := e.s.m.conflicts.get(""), uint64(DefaultUpdateRetries+1); got != want {
		t.Errorf("conflicts %d, want %d", got, want)
	}
}

func TestEnsureAndScaleToZero(t *testing.T) {
	e := newTestEnv(t, quietConfig(), testToken)
	labels := map[string]string{contract.LabelFunction: "lazy", contract.LabelScaleMin: "0", contract.LabelScaleMax: "3"}
	e.svcs.add("lazy", 2, labels, time.Now().Add(-time.Hour))
	ctx := t.Context()
	steps := []struct {
		name string
		do   func() error
		want int
	}{
		{"to zero", func() error { return e.s.ScaleToZero(ctx, "lazy", "idle for 5m") }, 0},
		{"to zero again: no change", func() error { return e.s.ScaleToZero(ctx, "lazy", "idle for 5m") }, 0},
		{"from zero", func() error { return e.s.EnsureReplicas(ctx, "lazy", 1, "request while at zero") }, 1},
		{"at least 1: no change", func() error { return e.s.EnsureReplicas(ctx, "lazy", 1, "request") }, 1},
		{"at most max", func() error { return e.s.EnsureReplicas(ctx, "lazy", 9, "burst") }, 3},
	}
	for _, st := range steps {
		if err := st.do(); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		if got := e.svcs.replicas("lazy"); got != st.want {
			t.Fatalf("%s: replicas %d, want %d", st.name, got, st.want)
		}
	}
	var got []string
	for _, ev := range e.s.Events().Events {
		got = append(got, fmt.Sprintf("%d→%d %s (%s)", ev.From, ev.To, ev.Trigger, ev.Reason))
	}
	want := []string{"2→0 idle (idle for 5m)", "0→1 ensure (request while at zero)", "1→3 ensure (burst)"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("events %q, want %q", got, want)
	}
	if err := e.s.EnsureReplicas(ctx, "absent", 1, "x"); err == nil || !strings.Contains(err.Error(), "no such function") {
		t.Errorf("absent function: %v", err)
	}
}

func TestEventRing(t *testing.T) {
	cfg := quietConfig()
	cfg.Events = 3
	e := newTestEnv(t, cfg, testToken)
	labels := map[string]string{contract.LabelFunction: "ring", contract.LabelScaleMin: "0"}
	e.svcs.add("ring", 0, labels, time.Now())
	for i := 1; i <= 5; i++ {
		if err := e.s.EnsureReplicas(t.Context(), "ring", i, fmt.Sprint(i)); err != nil {
			t.Fatal(err)
		}
	}
	evs := e.s.Events()
	var got []int
	for _, ev := range evs.Events {
		got = append(got, ev.To)
	}
	if evs.Total != 5 || !reflect.DeepEqual(got, []int{3, 4, 5}) {
		t.Errorf("total %d, events to %v; want 5, [3 4 5] (newest last)", evs.Total, got)
	}
}

func TestConfigValidate(t *testing.T) {
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatal(err)
	}
	bad := DefaultConfig()
	bad.Window, bad.DownThreshold, bad.Events = 0, 120, 0
	err := bad.Validate()
	for _, want := range []string{"window 0s: must be positive", "want 0 < down (120) < up (110)", "events 0"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate() = %v, want it to mention %q", err, want)
		}
	}
}

func TestReadToken(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := dir + "/" + name
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, tc := range []struct {
		name, path, want, wantErr string
	}{
		{"token with newline", write("ok", "abc123\n"), "abc123", ""},
		{"empty", write("empty", " \n"), "", "is empty"},
		{"missing", dir + "/absent", "", "no such file"},
	} {
		got, err := ReadToken(tc.path)
		if got != tc.want || (tc.wantErr == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.wantErr)) {
			t.Errorf("%s: ReadToken = %q, %v; want %q, error containing %q", tc.name, got, err, tc.want, tc.wantErr)
		}
	}
}

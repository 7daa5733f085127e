package collector

import (
	"errors"
	"testing"
)

func TestReadReplicaGolden(t *testing.T) {
	for _, tc := range []struct {
		name, file, function string
		want                 replicaMetrics
		wantErr              error
	}{
		{
			// 23 × 200, one 429 (in-flight limit 2), one 504 (1 s timeout).
			name: "first page", file: "watchdog_metrics.txt", function: "hello",
			want: replicaMetrics{
				classes: [6]float64{2: 23, 4: 1, 5: 1}, total: 25, throttled: 1, timedOut: 1,
				buckets: [bucketCount]float64{1, 1, 1, 1, 1, 3, 16, 20, 22, 23, 23, 24, 25, 25, 25, 25, 25, 25, 25, 25, 25},
				sum:     2.28176818, count: 25, inflight: 0, start: 1795648544.9472053,
			},
		},
		{
			// Ten more 200s, a 413, and one request in progress.
			name: "second page", file: "watchdog_metrics_2.txt", function: "hello",
			want: replicaMetrics{
				classes: [6]float64{2: 33, 4: 2, 5: 1}, total: 36, throttled: 1, timedOut: 1,
				buckets: [bucketCount]float64{2, 2, 2, 2, 2, 13, 27, 31, 33, 34, 34, 35, 36, 36, 36, 36, 36, 36, 36, 36, 36},
				sum:     2.365693479, count: 36, inflight: 1, start: 1795648544.9472053,
			},
		},
		{name: "another function's page", file: "watchdog_metrics.txt", function: "echo", wantErr: errNotWatchdog},
		{name: "HAProxy's page", file: "haproxy_metrics.txt", function: "hello", wantErr: errNotWatchdog},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := readReplica(parseGolden(t, tc.file), tc.function)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			if tc.wantErr == nil && got != tc.want {
				t.Errorf("got  %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func TestReadBackendsGolden(t *testing.T) {
	// fn_hello: 4 requests in progress behind a maxconn-1 server (3 of them
	// queued), 25 requests of which 4 timed out; fn_echo: 3 × 503 from a
	// dead server. "stats"-like proxies without the fn_ prefix are skipped.
	got, err := readBackends(parseGolden(t, "haproxy_metrics.txt"))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]backendStats{
		"hello": {sessions: 4, queue: 3, requests: 25, resp5xx: 4},
		"echo":  {sessions: 0, queue: 0, requests: 3, resp5xx: 3},
	}
	if len(got) != len(want) {
		t.Fatalf("got %+v, want %+v", got, want)
	}
	for k, w := range want {
		if got[k] != w {
			t.Errorf("%s: got %+v, want %+v", k, got[k], w)
		}
	}
	if _, err := readBackends(parseGolden(t, "watchdog_metrics.txt")); !errors.Is(err, errNotHAProxy) {
		t.Errorf("watchdog page: err = %v, want errNotHAProxy", err)
	}
}

func TestHAProxyPageURL(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"http://127.0.0.1:8404/metrics", "http://127.0.0.1:8404/metrics?scope=backend"},
		{"http://127.0.0.1:8404/metrics?scope=server", "http://127.0.0.1:8404/metrics?scope=server"},
		{"http://h/m?x=1", "http://h/m?scope=backend&x=1"},
	} {
		if got := haproxyPageURL(tc.in); got != tc.want {
			t.Errorf("haproxyPageURL(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

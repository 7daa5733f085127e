package scaler

import (
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pulsefaas/pulse/contract"
)

func TestParseNetdataData(t *testing.T) {
	for _, tc := range []struct {
		name    string
		file    string // under testdata/, or
		body    string
		want    float64
		wantErr string
	}{
		{"average, real netdata", "netdata_data_average.json", "", 0.885, ""},
		{"max, real netdata", "netdata_data_max.json", "", 0.89, ""},
		{"utilization column", "netdata_data_utilization.json", "", 187.5, ""},
		{"null value", "netdata_data_null.json", "", 0, ErrNoData.Error()},
		{"picks utilization among columns", "", `{"labels":["time","x","utilization"],"data":[[1,5,42]]}`, 42, ""},
		{"no rows", "", `{"labels":["time","utilization"],"data":[]}`, 0, ErrNoData.Error()},
		{"ambiguous columns", "", `{"labels":["time","a","b"],"data":[[1,2,3]]}`, 0, `no "utilization" column`},
		{"short row", "", `{"labels":["time","utilization"],"data":[[1]]}`, 0, "a row of 1 values for 2 labels"},
		{"negative", "", `{"labels":["time","utilization"],"data":[[1,-3]]}`, 0, "utilization -3"},
		{"not JSON", "", `No metrics where matched to query.`, 0, "parse data"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body := tc.body
			if tc.file != "" {
				b, err := os.ReadFile(filepath.Join("testdata", tc.file))
				if err != nil {
					t.Fatal(err)
				}
				body = string(b)
			}
			got, err := parseNetdataData(strings.NewReader(body), contract.DimUtilization)
			if got != tc.want {
				t.Errorf("value %v, want %v", got, tc.want)
			}
			if (tc.wantErr == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.wantErr)) {
				t.Errorf("err %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
}

func TestNetdataUtilisation(t *testing.T) {
	var (
		mu  sync.Mutex
		got []url.Values
	)
	block := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		mu.Lock()
		got = append(got, q)
		mu.Unlock()
		if r.URL.Path != "/api/v1/data" {
			http.NotFound(w, r)
			return
		}
		switch q.Get("chart") {
		case "pulse.fn_hello_utilization":
			b, _ := os.ReadFile("testdata/netdata_data_utilization.json")
			w.Write(b)
		case "pulse.fn_broken_utilization":
			http.Error(w, "internal trouble", http.StatusInternalServerError)
		case "pulse.fn_slow_utilization":
			<-block
		default:
			w.WriteHeader(http.StatusNotFound)
			w.Write([]byte("No metrics where matched to query."))
		}
	}))
	defer srv.Close()
	defer close(block)

	n, err := NewNetdata(srv.URL, 200*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	if v, err := n.Utilisation(ctx, "hello", Max, 1500*time.Millisecond); v != 187.5 || err != nil {
		t.Errorf("hello: %v, %v", v, err)
	}
	mu.Lock()
	want := url.Values{"chart": {"pulse.fn_hello_utilization"}, "after": {"-2"}, "points": {"1"},
		"group": {"max"}, "format": {"json"}, "options": {"unaligned"}}
	if len(got) != 1 || got[0].Encode() != want.Encode() {
		t.Errorf("query %v, want %v", got, want)
	}
	mu.Unlock()
	if _, err := n.Utilisation(ctx, "absent", Average, time.Second); !errors.Is(err, ErrNoData) {
		t.Errorf("absent chart: %v, want ErrNoData", err)
	}
	if _, err := n.Utilisation(ctx, "broken", Average, time.Second); err == nil || !strings.Contains(err.Error(), "500 Internal Server Error: internal trouble") {
		t.Errorf("broken: %v", err)
	}
	start := time.Now()
	if _, err := n.Utilisation(ctx, "slow", Average, time.Second); err == nil || time.Since(start) > 5*time.Second {
		t.Errorf("slow: %v after %v, want a timeout after 200ms", err, time.Since(start))
	}

	for _, bad := range []string{"127.0.0.1:19999", "ftp://x", "http://"} {
		if _, err := NewNetdata(bad, time.Second); err == nil {
			t.Errorf("NewNetdata(%q) accepted", bad)
		}
	}
}

// TestNetdataIgnoresProxy: HTTP_PROXY in pulsed's environment does not
// route Netdata's answers through another host (the Netdata here is reached
// on a non-loopback address, where Go's default transport would use the
// proxy), and a redirect is not followed.
func TestNetdataIgnoresProxy(t *testing.T) {
	var proxied atomic.Int64
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		proxied.Add(1)
		http.Error(w, "via the proxy", http.StatusBadGateway)
	}))
	defer proxy.Close()
	t.Setenv("HTTP_PROXY", proxy.URL)
	t.Setenv("http_proxy", proxy.URL)

	host := nonLoopbackAddr(t)
	ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		t.Skipf("no non-loopback address to listen on: %v", err)
	}
	nd := &httptest.Server{Listener: ln, Config: &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("chart") == "pulse.fn_moved_utilization" {
			http.Redirect(w, r, "http://198.51.100.1/elsewhere", http.StatusFound)
			return
		}
		b, _ := os.ReadFile("testdata/netdata_data_utilization.json")
		w.Write(b)
	})}}
	nd.Start()
	defer nd.Close()

	n, err := NewNetdata(nd.URL, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if tr, ok := n.client.Transport.(*http.Transport); !ok || tr.Proxy != nil {
		t.Errorf("the Netdata client's transport %T takes a proxy", n.client.Transport)
	}
	if v, err := n.Utilisation(t.Context(), "hello", Max, time.Second); v != 187.5 || err != nil {
		t.Errorf("through %s: %v, %v", nd.URL, v, err)
	}
	if _, err := n.Utilisation(t.Context(), "moved", Max, time.Second); err == nil || !strings.Contains(err.Error(), "302 Found") {
		t.Errorf("redirect: %v, want the 302 reported, not followed", err)
	}
	if p := proxied.Load(); p != 0 {
		t.Errorf("%d requests went through HTTP_PROXY", p)
	}
}

// nonLoopbackAddr is one of this host's IPv4 addresses other than loopback.
func nonLoopbackAddr(t *testing.T) string {
	t.Helper()
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Skip(err)
	}
	for _, a := range addrs {
		if ip, ok := a.(*net.IPNet); ok && ip.IP.To4() != nil && !ip.IP.IsLoopback() {
			return ip.IP.String()
		}
	}
	t.Skip("no non-loopback IPv4 address")
	return ""
}

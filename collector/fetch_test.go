package collector

import (
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/netdata/go.d.plugin/pkg/prometheus"
	"github.com/netdata/go.d.plugin/pkg/web"

	"github.com/pulsefaas/pulse/collector/tlsclient"
	"github.com/pulsefaas/pulse/contract"
)

// TestScrapeTransportLimits scrapes pages from a real HTTP server through
// the collector's transport and go.d's Prometheus client, as the collector
// does: pages over the cap fail whether their length is announced or not,
// a compressed page is refused even though the client asks for none.
func TestScrapeTransportLimits(t *testing.T) {
	page := golden(t, "watchdog_metrics.txt")
	max := int64(len(page))
	var gotEncoding string
	mux := http.NewServeMux()
	serve := func(path string, h http.HandlerFunc) {
		mux.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) {
			gotEncoding = r.Header.Get("Accept-Encoding")
			h(w, r)
		})
	}
	serve("/exact", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write(page) })
	serve("/long", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Length", strconv.Itoa(len(page)+1))
		_, _ = w.Write(append(page, '\n'))
	})
	serve("/chunked", func(w http.ResponseWriter, _ *http.Request) {
		for range 4 { // no Content-Length: the cap is found while reading
			_, _ = w.Write(page)
			w.(http.Flusher).Flush()
		}
	})
	serve("/gzip", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Encoding", "gzip")
		zw := gzip.NewWriter(w)
		_, _ = zw.Write(page)
		_ = zw.Close()
	})
	serve("/forbidden", func(w http.ResponseWriter, _ *http.Request) { http.Error(w, "no", http.StatusForbidden) })
	srv := httptest.NewServer(mux)
	defer srv.Close()

	tr := newTransport(DefaultTimeout, tlsclient.NewCAFile(""))
	defer tr.CloseIdleConnections()
	for _, tc := range []struct {
		path    string
		cred    bool
		wantErr error
	}{
		{path: "/exact"},
		{path: "/long", wantErr: errPageTooLarge},
		{path: "/chunked", wantErr: errPageTooLarge},
		{path: "/gzip", wantErr: errPageEncoding},
		{path: "/forbidden", cred: true, wantErr: errReplicaForbidden},
	} {
		t.Run(strings.TrimPrefix(tc.path, "/"), func(t *testing.T) {
			st := &scrapeTransport{base: tr, max: max}
			if tc.cred {
				st.credential = func() string { return "x" }
			}
			prom := prometheus.New(newHTTPClient(st, DefaultTimeout), web.Request{URL: srv.URL + tc.path})
			mfs, err := prom.Scrape()
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			if gotEncoding != "identity" {
				t.Errorf("Accept-Encoding %q, want identity", gotEncoding)
			}
			if err == nil {
				if _, err := readReplica(mfs, "hello"); err != nil {
					t.Errorf("page at the cap not read: %v", err)
				}
			}
		})
	}
	// Without a credential function a 403 is only a status.
	prom := prometheus.New(newHTTPClient(&scrapeTransport{base: tr, max: max}, DefaultTimeout), web.Request{URL: srv.URL + "/forbidden"})
	if _, err := prom.Scrape(); err == nil || errors.Is(err, errReplicaForbidden) {
		t.Errorf("HAProxy-like 403: err = %v, want a status error", err)
	}
}

// bodyTransport answers every request with a fixed body and headers.
type bodyTransport struct {
	body     []byte
	encoding string
	length   int64
}

func (b bodyTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	h := http.Header{"Content-Type": {"text/plain; version=0.0.4"}}
	if b.encoding != "" {
		h.Set("Content-Encoding", b.encoding)
	}
	return &http.Response{
		StatusCode: http.StatusOK, Status: "200 OK", Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: h, Body: io.NopCloser(bytes.NewReader(b.body)), ContentLength: b.length, Request: r,
	}, nil
}

// FuzzScrapePage: whatever a replica answers (any page, encoding and
// announced length), the collector's fetch fails on a page over the cap or
// encoded, and otherwise parses exactly the page, into valid counts or an
// error.
func FuzzScrapePage(f *testing.F) {
	f.Add(golden(f, "watchdog_metrics.txt"), "", int64(-1), uint16(8000))
	f.Add(golden(f, "watchdog_metrics_2.txt"), "identity", int64(10), uint16(100))
	f.Add([]byte("pulse_function_requests_total{function=\"hello\",code=\"200\"} 1\n"), "gzip", int64(0), uint16(10))
	f.Fuzz(func(t *testing.T, page []byte, encoding string, length int64, max uint16) {
		if length >= 0 && length != int64(len(page)) {
			length = -1 // a wrong announced length is the HTTP layer's to catch
		}
		st := &scrapeTransport{base: bodyTransport{page, encoding, length}, max: int64(max), credential: func() string { return "c" }}
		mfs, err := prometheus.New(newHTTPClient(st, DefaultTimeout), web.Request{URL: "http://replica.test" + contract.MetricsPath}).Scrape()
		encoded := encoding != "" && !strings.EqualFold(encoding, "identity")
		switch {
		case encoded:
			if !errors.Is(err, errPageEncoding) {
				t.Fatalf("encoding %q: err = %v", encoding, err)
			}
			return
		case len(page) > int(max):
			if !errors.Is(err, errPageTooLarge) {
				t.Fatalf("%d-byte page, cap %d: err = %v", len(page), max, err)
			}
			return
		}
		want, wantErr := parsePage(page)
		if (err != nil) != (wantErr != nil) {
			t.Fatalf("err = %v, parsing the page alone: %v", err, wantErr)
		}
		if err != nil {
			return
		}
		m, err := readReplica(mfs, "hello")
		w, werr := readReplica(want, "hello")
		if (err != nil) != (werr != nil) || m != w {
			t.Fatalf("fetched %+v, %v; parsed alone %+v, %v", m, err, w, werr)
		}
	})
}

// TestCollectRefusesBadPages: a replica whose page is over the cap, or
// gzip-compressed although not asked for, is not collected, and each is
// said once (at warning level, with the reason); the others are collected.
func TestCollectRefusesBadPages(t *testing.T) {
	page := golden(t, "watchdog_metrics.txt")
	big := bytes.Repeat([]byte("# padding, as a page that grew without bound would\n"), maxReplicaPageBytes/50+1)
	replica := func(h http.HandlerFunc) string {
		srv := httptest.NewServer(h)
		t.Cleanup(srv.Close)
		return strings.TrimPrefix(srv.URL, "http://")
	}
	good := replica(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write(page) })
	huge := replica(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write(append(big, page...)) })
	zipped := replica(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Encoding", "gzip")
		zw := gzip.NewWriter(w)
		_, _ = zw.Write(page)
		_ = zw.Close()
	})
	rep := func(task, addr string) contract.Replica {
		return contract.Replica{TaskID: task, Addr: addr, State: "running"}
	}
	pulsed := &fakePulsed{cat: catalogOf("v1", fn("hello", 3, nil, rep("good", good), rep("huge", huge), rep("zipped", zipped)))}
	srv := httptest.NewServer(pulsed)
	defer srv.Close()
	rec := &logRecorder{}
	cfg := defaultConfig()
	cfg.CatalogURL, cfg.HAProxyURL = srv.URL+contract.CatalogPath, srv.URL+"/none"
	cfg.ReplicaAuthFile = credentialFileOf(t, "x")
	c, err := NewCollector(cfg, slogOf(rec))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for range 3 {
		mx, _ := c.Collect(t.Context())
		if got := mx[dimKey("hello", contract.ChartReplicas, contract.DimScraped)]; got != 1 {
			t.Errorf("scraped %d replicas, want the good one", got)
		}
	}
	warns := notHAProxy(rec.messages(slog.LevelWarn))
	if len(warns) != 2 {
		t.Errorf("warnings %q, want one per bad replica", warns)
	}
	var reasons []string
	rec.mu.Lock()
	for _, r := range rec.recs {
		r.Attrs(func(a slog.Attr) bool {
			if a.Key == "err" {
				reasons = append(reasons, a.Value.String())
			}
			return true
		})
	}
	rec.mu.Unlock()
	joined := strings.Join(reasons, "|")
	for _, want := range []string{"metrics page too large", `metrics page encoded: Content-Encoding "gzip"`} {
		if !strings.Contains(joined, want) {
			t.Errorf("no warning says %q: %q", want, reasons)
		}
	}
}

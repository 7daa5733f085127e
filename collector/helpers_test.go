package collector

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/netdata/go.d.plugin/pkg/prometheus"
	"github.com/netdata/go.d.plugin/pkg/web"
)

// pageTransport answers every request with body: parsing through the
// framework's client without a network.
type pageTransport []byte

func (p pageTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	return &http.Response{
		StatusCode: http.StatusOK, Status: "200 OK", Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: http.Header{"Content-Type": {"text/plain; version=0.0.4"}},
		Body:   io.NopCloser(bytes.NewReader(p)), ContentLength: int64(len(p)), Request: r,
	}, nil
}

// parsePage parses a page with go.d's Prometheus parser.
func parsePage(page []byte) (prometheus.MetricFamilies, error) {
	return prometheus.New(&http.Client{Transport: pageTransport(page)}, web.Request{URL: "http://page.test/metrics"}).Scrape()
}

func golden(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func parseGolden(t testing.TB, name string) prometheus.MetricFamilies {
	t.Helper()
	mfs, err := parsePage(golden(t, name))
	if err != nil {
		t.Fatalf("parse %s: %v", name, err)
	}
	return mfs
}

// logRecorder is a slog.Handler that keeps the records.
type logRecorder struct {
	mu   sync.Mutex
	recs []slog.Record
}

func (l *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (l *logRecorder) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.recs = append(l.recs, r)
	return nil
}
func (l *logRecorder) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *logRecorder) WithGroup(string) slog.Handler      { return l }

// messages returns the messages logged at level or above.
func (l *logRecorder) messages(level slog.Level) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, r := range l.recs {
		if r.Level >= level {
			out = append(out, r.Message)
		}
	}
	return out
}

func slogOf(h slog.Handler) *slog.Logger { return slog.New(h) }

// credentialFileOf writes a replica credential file holding value and
// returns its path.
func credentialFileOf(t testing.TB, value string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "replica-auth")
	if err := os.WriteFile(p, []byte(value+"\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	return p
}

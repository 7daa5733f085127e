package watchdog

import (
	"io"
	"log/slog"
	"net/http"
	"testing"
)

type discardWriter struct{ h http.Header }

func (d *discardWriter) Header() http.Header         { return d.h }
func (d *discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (d *discardWriter) WriteHeader(int)             {}

// BenchmarkInProcessOverhead: what the watchdog (limits, metrics, the
// guarded writer and the list of deadlines) adds to an in-process request,
// beside the bare handler. (No server here: the CPU a design costs in the
// network poller shows only under wrk against a real process.)
func BenchmarkInProcessOverhead(b *testing.B) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		_, _ = w.Write([]byte("hello\n"))
	})
	cfg := testConfig()
	s, err := New(cfg, h, slog.New(NewJSONHandler(io.Discard, slog.LevelError)))
	if err != nil {
		b.Fatal(err)
	}
	r, _ := http.NewRequest("GET", "/x", nil)
	b.Run("bare", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			h.ServeHTTP(&discardWriter{h: http.Header{}}, r)
		}
	})
	b.Run("watchdog", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			s.ServeHTTP(&discardWriter{h: http.Header{}}, r)
		}
	})
}

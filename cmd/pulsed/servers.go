package main

import (
	"fmt"
	"log/slog"
	"net/http"
	"time"
)

// serverTimeouts are an HTTP server's limits: a connection that sends its
// headers too slowly, a request (headers and body) that takes too long, an
// answer that takes too long and a keep-alive connection left idle are all
// closed.
type serverTimeouts struct {
	ReadHeader, Read, Write, Idle time.Duration
	MaxHeaderBytes                int
	MaxBody                       int64 // 0: the handler limits bodies itself
}

// defaultAPITimeouts are pulsed's API's: every request is small and
// answered at once (nothing long-polls).
var defaultAPITimeouts = serverTimeouts{
	ReadHeader: 5 * time.Second, Read: 10 * time.Second, Write: 30 * time.Second, Idle: 60 * time.Second,
	MaxHeaderBytes: 64 << 10, MaxBody: maxAPIBody,
}

// maxAPIBody caps every request body on pulsed's API; the keys endpoints
// and the webhook cap theirs lower.
const maxAPIBody = 64 << 10

// coldStartTimeouts are the cold-start listener's: HAProxy sends the
// request (its body may arrive while it is held), the request waits up to
// coldstart_timeout for a replica, then the function may take its own
// timeout (at most coldstart_function_timeout) to answer.
func coldStartTimeouts(cfg Config) serverTimeouts {
	long := cfg.ColdStartTimeout + cfg.ColdStartFunctionTimeout + 5*time.Second
	return serverTimeouts{ReadHeader: 10 * time.Second, Read: long, Write: long, Idle: 60 * time.Second,
		MaxHeaderBytes: 64 << 10}
}

func (t serverTimeouts) server(h http.Handler, log *slog.Logger, name string) *http.Server {
	if t.MaxBody > 0 {
		h = limitBody(h, t.MaxBody)
	}
	return &http.Server{Handler: h, ReadHeaderTimeout: t.ReadHeader, ReadTimeout: t.Read, WriteTimeout: t.Write,
		IdleTimeout: t.Idle, MaxHeaderBytes: t.MaxHeaderBytes,
		ErrorLog: slog.NewLogLogger(log.With("component", name).Handler(), slog.LevelDebug)}
}

// newAPIServer is pulsed's API server.
func newAPIServer(h http.Handler, t serverTimeouts, log *slog.Logger) *http.Server {
	return t.server(h, log, "api")
}

// limitBody refuses a body over max: a declared length at once (413 JSON),
// a longer stream when read (the handler's read fails).
func limitBody(h http.Handler, max int64) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength > max {
			writeJSONError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("body over the API's limit of %d KiB", max>>10))
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, max)
		h.ServeHTTP(w, r)
	})
}

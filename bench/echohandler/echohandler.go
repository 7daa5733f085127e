// Package echohandler is the function every HTTP variant of the watchdog
// benchmark serves: it answers a request with the request's body. The bare
// net/http server (bench/echo) and the in-process watchdog (bench/inproc)
// serve this same handler, so the difference between them is the watchdog.
package echohandler

import (
	"io"
	"net/http"
)

// MaxBody caps the body the handler reads; a larger one gets 413.
const MaxBody = 1 << 20

// New returns the echo handler.
func New() http.Handler { return http.HandlerFunc(serve) }

func serve(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBody))
	if err != nil {
		http.Error(w, "echo: read body: "+err.Error(), http.StatusRequestEntityTooLarge)
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	_, _ = w.Write(body)
}

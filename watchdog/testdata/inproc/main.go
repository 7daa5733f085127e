// Command inproc is a test in-process function: a Go handler linked into
// the watchdog, for the watchdog's tests against a real process.
package main

import (
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/pulsefaas/pulse/watchdog"
)

func main() {
	mux := http.NewServeMux()
	mux.HandleFunc("/headers", func(w http.ResponseWriter, r *http.Request) {
		var keys []string
		for k := range r.Header {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			fmt.Fprintf(w, "%s: %s\n", k, strings.Join(r.Header[k], ", "))
		}
	})
	// quiet-stop stops at its deadline and writes nothing.
	mux.HandleFunc("/quiet-stop", func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done()
	})
	// late-stop notices its deadline, then takes 50 ms more.
	mux.HandleFunc("/late-stop", func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done()
		time.Sleep(50 * time.Millisecond)
	})
	// ignore ignores its deadline: it sleeps d, then answers.
	mux.HandleFunc("/ignore", func(w http.ResponseWriter, r *http.Request) {
		d, _ := time.ParseDuration(r.URL.Query().Get("d"))
		time.Sleep(d)
		_, _ = w.Write([]byte("late\n"))
	})
	// hang never returns.
	mux.HandleFunc("/hang", func(w http.ResponseWriter, r *http.Request) {
		select {}
	})
	// big writes n bytes in 32 KiB pieces, declaring its length if asked.
	mux.HandleFunc("/big", func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.Atoi(r.URL.Query().Get("n"))
		if r.URL.Query().Get("length") == "1" {
			w.Header().Set("Content-Length", strconv.Itoa(n))
		}
		chunk := []byte(strings.Repeat("x", 32<<10))
		for n > 0 {
			k, err := w.Write(chunk[:min(n, len(chunk))])
			if err != nil {
				return
			}
			n -= k
		}
	})
	watchdog.Main(mux)
}

package watchdog

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/pulsefaas/pulse/contract"
)

// Func adapts a function of bytes to an http.Handler: the request body in,
// the response body out (200, application/octet-stream unless the function
// sets nothing else). An error from the function becomes a 500 with a JSON
// body; a body over the limit, 413. A function that returns after its
// context's deadline writes nothing: the watchdog answers 504.
func Func(f func(ctx context.Context, body []byte) ([]byte, error)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			var tooBig *http.MaxBytesError
			if errors.As(err, &tooBig) {
				writeError(w, http.StatusRequestEntityTooLarge, "request body too large", "limit", tooBig.Limit)
				return
			}
			writeError(w, http.StatusBadRequest, "reading request body: "+err.Error())
			return
		}
		out, err := f(r.Context(), body)
		if ctxErr := r.Context().Err(); errors.Is(ctxErr, context.DeadlineExceeded) {
			return // nothing written: the watchdog answers 504 for every handler alike
		}
		if err != nil {
			writeError(w, http.StatusInternalServerError, err.Error())
			return
		}
		h := w.Header()
		if h.Get("Content-Type") == "" {
			h.Set("Content-Type", "application/octet-stream")
		}
		h.Set("Content-Length", strconv.Itoa(len(out)))
		_, _ = w.Write(out)
	})
}

// Main runs a watchdog process and exits: it is the whole main of an
// in-process Go function (pass its handler) and of cmd/pulse-watchdog (pass
// nil: fork or http mode from the environment). With -healthcheck it probes a
// running watchdog's health endpoint instead, for Docker's HEALTHCHECK in an
// image without a shell.
func Main(handler http.Handler) {
	os.Exit(run(handler, os.Args[1:], os.Environ(), os.Stderr))
}

func run(handler http.Handler, args, env []string, stderr io.Writer) int {
	// Two flags do not need the flag package (10 KB in every image).
	var health, version bool
	for _, a := range args {
		switch strings.TrimLeft(a, "-") {
		case "healthcheck":
			health = true
		case "version":
			version = true
		default:
			fmt.Fprintf(stderr, "pulse-watchdog: unknown argument %q\n"+
				"usage: pulse-watchdog [-healthcheck | -version]; configuration is the PULSE_* environment\n", a)
			return 2
		}
	}
	if version {
		fmt.Fprintln(stderr, Version)
		return 0
	}
	mode := ""
	if handler != nil {
		mode = contract.ModeInProcess
	}
	cfg, err := ConfigFromEnv(env, mode)
	if health {
		if err := Healthcheck(cfg.Listen, cfg.ReplicaAuth, 2*time.Second); err != nil {
			fmt.Fprintln(stderr, "unhealthy:", err)
			return 1
		}
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "pulse-watchdog: bad configuration:\n%v\n", err)
		return 2
	}
	log := slog.New(NewJSONHandler(stderr, cfg.LogLevel))
	s, err := New(cfg, handler, log)
	if err != nil {
		log.Error("start", "err", err)
		return 1
	}
	ctx, skip := signalContext()
	if err := s.Run(ctx, skip); err != nil {
		log.Error("watchdog stopped", "err", err)
		return 1
	}
	return 0
}

// signalContext is cancelled by the first SIGTERM or SIGINT; the returned
// channel closes on the second, to cut the drain grace short.
func signalContext() (context.Context, <-chan struct{}) {
	ctx, cancel := context.WithCancel(context.Background())
	skip := make(chan struct{})
	ch := make(chan os.Signal, 2)
	signal.Notify(ch, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		<-ch
		cancel()
		<-ch
		close(skip)
	}()
	return ctx, skip
}

// Healthcheck asks the watchdog listening on listen for its health,
// presenting credential (contract.HeaderReplicaAuth) unless it is empty. It
// speaks HTTP/1.0 on a raw connection: http.Client would add its whole
// transport to every function binary for one GET.
func Healthcheck(listen, credential string, timeout time.Duration) error {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return fmt.Errorf("listen address %q: %w", listen, err)
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	addr := net.JoinHostPort(host, port)
	c, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(timeout))
	req := "GET " + contract.HealthPath + " HTTP/1.0\r\nHost: " + addr + "\r\n"
	if credential != "" {
		req += contract.HeaderReplicaAuth + ": " + credential + "\r\n"
	}
	if _, err := io.WriteString(c, req+"\r\n"); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return fmt.Errorf("reading %s: %w", contract.HealthPath, err)
	}
	// "HTTP/1.0 200 OK"
	if f := strings.Fields(line); len(f) < 2 || f[1] != "200" {
		return fmt.Errorf("%s answered %q", contract.HealthPath, strings.TrimSpace(line))
	}
	return nil
}

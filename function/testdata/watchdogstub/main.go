// Command watchdogstub is a minimal stand-in for cmd/pulse-watchdog in fork
// mode, used by function's engine test to check image assembly on its own:
// POST / runs the PULSE_EXEC program with the body on stdin and answers its
// stdout; GET /_/health answers 200; -healthcheck probes that endpoint and
// exits 0 if it answers 200. Standard library and the contract only.
package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/pulsefaas/pulse/contract"
)

func main() {
	health := flag.Bool("healthcheck", false, "probe "+contract.HealthPath+" and exit 0 if healthy")
	flag.Parse()
	listen := os.Getenv(contract.EnvListen)
	if *health {
		if err := probe(listen); err != nil {
			fmt.Fprintln(os.Stderr, "unhealthy:", err)
			os.Exit(1)
		}
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := serve(ctx, listen, strings.Fields(os.Getenv(contract.EnvExec))); err != nil {
		fmt.Fprintln(os.Stderr, "watchdogstub:", err)
		os.Exit(1)
	}
}

func serve(ctx context.Context, listen string, argv []string) error {
	if len(argv) == 0 {
		return fmt.Errorf("%s is empty", contract.EnvExec)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+contract.HealthPath, func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("POST /", func(w http.ResponseWriter, r *http.Request) {
		var out bytes.Buffer
		cmd := exec.CommandContext(r.Context(), argv[0], argv[1:]...)
		cmd.Stdin, cmd.Stdout, cmd.Stderr = r.Body, &out, os.Stderr
		if err := cmd.Run(); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		_, _ = io.Copy(w, &out)
	})
	srv := &http.Server{Addr: listen, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
		shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return srv.Shutdown(shutdown)
	}
}

func probe(listen string) error {
	_, port, err := net.SplitHostPort(listen)
	if err != nil {
		return fmt.Errorf("%s %q: %w", contract.EnvListen, listen, err)
	}
	c := &http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get("http://" + net.JoinHostPort("127.0.0.1", port) + contract.HealthPath)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s answered %s", contract.HealthPath, resp.Status)
	}
	return nil
}

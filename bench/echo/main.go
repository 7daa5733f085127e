// Command echo is the bare Go net/http server of the watchdog benchmark: it
// serves bench/echohandler (request body → response body) on -listen and
// nothing else. It is the limit the watchdog variants are compared with, and
// the long-running upstream the watchdog starts in http mode.
//
//	echo -listen 127.0.0.1:PORT
//
// It stops on SIGTERM or SIGINT, closing idle connections and waiting up to
// five seconds for requests in flight.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/pulsefaas/pulse/bench/echohandler"
)

func main() {
	listen := flag.String("listen", "", "address to listen on, e.g. 127.0.0.1:8080 (required)")
	flag.Parse()
	if *listen == "" || flag.NArg() != 0 {
		fmt.Fprintln(os.Stderr, "usage: echo -listen HOST:PORT")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := run(ctx, *listen); err != nil {
		fmt.Fprintln(os.Stderr, "echo:", err)
		stop()
		os.Exit(1)
	}
}

// run serves the echo handler on addr until ctx is done.
func run(ctx context.Context, addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen %s: %w", addr, err)
	}
	srv := &http.Server{Handler: echohandler.New(), ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve %s: %w", addr, err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("shutdown: %w", err)
	}
	return nil
}

// Command pulsed is Pulse's control-plane daemon on the control node: it
// keeps the replica catalog (polling Swarm; served at /v1/replicas), runs and
// supervises HAProxy, the gateway, and keeps it in step with the catalog.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/docker/docker/client"

	"github.com/pulsefaas/pulse/contract"
	"github.com/pulsefaas/pulse/gateway"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Getenv, os.Stderr)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, env func(string) string, stderr io.Writer) int {
	fs := flag.NewFlagSet("pulsed", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", "", "configuration file (YAML); default /etc/pulse/pulsed.yaml if present")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	cfg, err := loadConfig(*cfgPath, env)
	if err != nil {
		fmt.Fprintf(stderr, "pulsed: bad configuration:\n%v\n", err)
		return 2
	}
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.LogLevel))
	log := slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: level}))
	if err := serve(ctx, cfg, log); err != nil {
		log.Error("pulsed stopped", "err", err)
		return 1
	}
	return 0
}

func serve(ctx context.Context, cfg Config, log *slog.Logger) error {
	if err := os.MkdirAll(cfg.StateDir, 0o750); err != nil {
		return fmt.Errorf("state dir: %w", err)
	}
	keys, err := loadKeys(cfg.KeysFile)
	if err != nil {
		return err
	}
	cli, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		return fmt.Errorf("docker client: %w", err)
	}
	defer cli.Close()
	nctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	cli.NegotiateAPIVersion(nctx)
	cancel()

	ccfg := gateway.DefaultCatalogConfig()
	ccfg.FastPoll, ccfg.SlowPoll, ccfg.Selector = cfg.FastPoll, cfg.SlowPoll, cfg.Selector
	ccfg.Instance = cfg.Instance
	cat, err := gateway.NewCatalog(cli, ccfg, log)
	if err != nil {
		return err
	}

	// Scaler (scaler.go): the alarm webhook, /v1/functions, /v1/events,
	// /metrics, scale to and from zero.
	var auto *autoscaler
	if cfg.Autoscale {
		if auto, err = newAutoscaler(cfg, cli, cat, log); err != nil {
			return err
		}
		if auto.coldLn != nil {
			defer auto.coldLn.Close() // closed by its server once started; this covers the early returns
		}
	}

	file := filepath.Join(cfg.StateDir, "haproxy.cfg")
	rcfg := gateway.DefaultReconcileConfig()
	rcfg.HAProxyBin, rcfg.ConfigFile, rcfg.Debounce = cfg.HAProxy, file, cfg.ReloadDebounce
	rcfg.Render.Listen, rcfg.Render.AdminListen = cfg.GatewayListen, cfg.AdminListen
	rcfg.Render.RuntimeSocket = filepath.Join(cfg.StateDir, "haproxy.sock")
	rcfg.Render.ServerStateFile = filepath.Join(cfg.StateDir, "server-state")
	rcfg.Render.Log = cfg.HAProxyLog
	rcfg.Render.Balance, rcfg.Render.CheckInterval, rcfg.Render.CheckTimeout, rcfg.Render.Keys = cfg.Balance, cfg.CheckInterval, cfg.CheckTimeout, keys
	if auto != nil && auto.coldLn != nil {
		rcfg.Render.BackupAddr = auto.coldLn.Addr().String()
	}

	// HAProxy needs a valid file before it starts: the empty catalog's.
	if _, err := os.Stat(file); errors.Is(err, os.ErrNotExist) {
		initial, err := gateway.Render(rcfg.Render, contract.Catalog{}, nil)
		if err != nil {
			return err
		}
		if err := os.WriteFile(file, initial, 0o640); err != nil {
			return fmt.Errorf("write %s: %w", file, err)
		}
	}
	hap, err := gateway.NewHAProxy(gateway.HAProxyConfig{
		Binary: cfg.HAProxy, ConfigFile: file,
		MasterSocket: filepath.Join(cfg.StateDir, "master.sock"),
		PIDFile:      filepath.Join(cfg.StateDir, "haproxy.pid"),
		LeaveRunning: cfg.LeaveRunning,
	}, log)
	if err != nil {
		return err
	}
	rt := gateway.NewRuntime(rcfg.Render.RuntimeSocket, 2*time.Second)
	rec := gateway.NewReconciler(rcfg, hap, rt, log)

	ctx, cancel = context.WithCancel(ctx)
	defer cancel()
	parts := 4 // haproxy, catalog, reconcile, api; and the autoscaler's
	errc := make(chan error, 8)
	go func() { errc <- wrap("haproxy", hap.Run(ctx)) }()
	go func() { errc <- wrap("catalog", cat.Run(ctx)) }()
	if auto != nil {
		parts += auto.start(ctx, rt, errc)
	}
	go func() {
		// Wait for HAProxy before reconciling.
		for ctx.Err() == nil {
			if _, err := hap.Procs(ctx); err == nil {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		errc <- wrap("reconcile", rec.Run(ctx, cat.Subscribe()))
	}()

	mux := http.NewServeMux()
	mux.Handle(contract.CatalogPath, gateway.NewCatalogHandler(gateway.WithRouting(cat, rec)))
	if auto != nil {
		mountScaler(mux, auto.api)
	}
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if err := rec.Err(); err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintf(w, "{\"status\":\"degraded\",\"error\":%q}\n", err.Error())
			return
		}
		fmt.Fprintf(w, "{\"status\":\"ok\",\"reloads\":%d}\n", rec.Reloads())
	})
	ln, err := net.Listen("tcp", cfg.APIListen)
	if err != nil {
		return fmt.Errorf("api listen: %w", err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { errc <- wrap("api", srv.Serve(ln)) }()
	log.Info("pulsed running", "api", ln.Addr().String(), "gateway", cfg.GatewayListen, "state_dir", cfg.StateDir)

	var first error
	done := 0
	select {
	case <-ctx.Done():
	case first = <-errc:
		done++
	}
	cancel()
	sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer scancel()
	_ = srv.Shutdown(sctx)
	// Wait for every part, HAProxy's supervisor above all: with
	// leave_running false it stops HAProxy, which must not outlive pulsed.
	for ; done < parts; done++ {
		if err := <-errc; first == nil {
			first = err
		}
	}
	if first != nil && !errors.Is(first, http.ErrServerClosed) {
		return first
	}
	return nil
}

func wrap(what string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%s: %w", what, err)
}

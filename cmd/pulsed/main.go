// Command pulsed is Pulse's control-plane daemon on the control node: it
// keeps the replica catalog (package internal/catalog: polling Swarm;
// served at /v1/replicas), runs and supervises HAProxy, the gateway, and
// keeps it in step with the catalog (package gateway); with autoscale on it
// runs the autoscaler, scale to zero and from zero (package scaler, wired in
// scaler.go); it keeps the invoke keys (digests, /v1/keys/, behind the
// management token) and the replica credential HAProxy presents to
// replicas. Its parts run in one internal/rungroup: the first to end stops
// the others. Configuration: config.go (`pulsed --print-config`).
package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/pulsefaas/pulse/contract"
	"github.com/pulsefaas/pulse/gateway"
	"github.com/pulsefaas/pulse/internal/catalog"
	"github.com/pulsefaas/pulse/internal/credential"
	"github.com/pulsefaas/pulse/internal/rungroup"
)

// version is set at link time (-X main.version=…, the Makefile's VERSION).
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Getenv, os.Stderr)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, env func(string) string, stderr io.Writer) int {
	fs := flag.NewFlagSet("pulsed", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", "", "configuration file (YAML); default "+DefaultConfigFile+" if present")
	printCfg := fs.Bool("print-config", false, "print the reference of every configuration key (Markdown) and exit")
	checkCfg := fs.Bool("check-config", false, "load the configuration (file and environment), report what is wrong and exit")
	migrate := fs.String("migrate-config", "", "rewrite the renamed keys of this configuration file in place and exit")
	showVersion := fs.Bool("version", false, "print pulsed's version and exit")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	switch {
	case *showVersion:
		fmt.Fprintln(os.Stdout, "pulsed", version)
		return 0
	case *printCfg:
		if err := printReference(os.Stdout); err != nil {
			fmt.Fprintf(stderr, "pulsed: %v\n", err)
			return 1
		}
		return 0
	case *migrate != "":
		if err := migrateConfigFile(*migrate, stderr); err != nil {
			fmt.Fprintf(stderr, "pulsed: migrate %s: %v\n", *migrate, err)
			return 1
		}
		return 0
	}
	cfg, err := loadConfig(*cfgPath, env)
	if err != nil {
		fmt.Fprintf(stderr, "pulsed: bad configuration:\n%v\n", err)
		return 2
	}
	if *checkCfg {
		return 0
	}
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.LogLevel))
	log := slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: level}))
	log.Info("pulsed starting", "version", version)
	if dropped := dropProxyEnv(os.Unsetenv, os.Environ()); len(dropped) > 0 {
		log.Info("proxy settings removed from the environment: pulsed's clients and HAProxy connect directly", "removed", dropped)
	}
	if err := serve(ctx, cfg, log); err != nil {
		log.Error("pulsed stopped", "err", err)
		return 1
	}
	return 0
}

// migrateConfigFile rewrites path's renamed keys (keeping its mode), saying
// what it changed.
func migrateConfigFile(path string, out io.Writer) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	st, err := os.Stat(path)
	if err != nil {
		return err
	}
	nb, changes, err := migrateConfig(b)
	if err != nil || len(changes) == 0 {
		return err
	}
	if err := os.WriteFile(path+".bak", b, st.Mode().Perm()); err != nil {
		return err
	}
	if err := credential.WriteFileAtomic(path, nb, st.Mode().Perm(), -1); err != nil {
		return err
	}
	for _, c := range changes {
		fmt.Fprintf(out, "pulsed: %s: renamed %s (the old file is %s.bak)\n", path, c, path)
	}
	return nil
}

// dropProxyEnv removes the proxy variables from the environment (before
// any HTTP client reads them: net/http reads them once): replica probes,
// the cold-start path and the Netdata client must reach their targets
// directly, never hand the replica credential to a proxy. It returns the
// names it removed.
func dropProxyEnv(unset func(string) error, environ []string) []string {
	var dropped []string
	for _, kv := range environ {
		k, _, _ := strings.Cut(kv, "=")
		switch strings.ToUpper(k) {
		case "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY":
			if err := unset(k); err == nil {
				dropped = append(dropped, k)
			}
		}
	}
	return dropped
}

// secrets is what pulsed reads at start besides its configuration.
type secrets struct {
	replicaAuth string
	apiToken    string
	tls         *tls.Config // nil: plain HTTP
	keys        *keyStore
}

// loadSecrets reads (or creates) the replica credential, the management
// token, the certificate and the key store, and imports a deprecated
// keys_file.
func loadSecrets(ctx context.Context, cfg Config, log *slog.Logger) (secrets, error) {
	var s secrets
	var err error
	if s.replicaAuth, err = credential.ReadOrCreateReplicaAuth(cfg.ReplicaAuthFile); err != nil {
		return s, fmt.Errorf("replica_auth_file: %w", err)
	}
	if s.apiToken, err = credential.ReadAPIToken(cfg.APITokenFile); err != nil {
		return s, fmt.Errorf("api_token_file: %w", err)
	}
	if s.apiToken == "" {
		log.Warn("management API disabled: "+contract.KeysPath+" answers 503 until pulsed restarts with a token",
			"api_token_file", cfg.APITokenFile)
	}
	if cfg.TLSCert != "" {
		cert, err := tls.LoadX509KeyPair(cfg.TLSCert, cfg.TLSCert)
		if err != nil {
			return s, fmt.Errorf("tls_cert %s: want one PEM file holding the certificate and its key: %w", cfg.TLSCert, err)
		}
		s.tls = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	if s.keys, err = openKeyStore(filepath.Join(cfg.StateDir, "keys.json")); err != nil {
		return s, err
	}
	legacy, err := loadLegacyKeys(cfg.KeysFile)
	if err != nil {
		return s, err
	}
	if len(legacy) > 0 {
		n, err := s.keys.importLegacy(ctx, legacy)
		if err != nil {
			return s, fmt.Errorf("keys_file: import: %w", err)
		}
		log.Warn("keys_file is deprecated: its keys are in the key store now (as digests); manage them with `pulse key ls|add|rm` and remove keys_file from the configuration",
			"keys_file", cfg.KeysFile, "imported", n)
	}
	return s, nil
}

func serve(ctx context.Context, cfg Config, log *slog.Logger) error {
	if err := os.MkdirAll(cfg.StateDir, 0o750); err != nil {
		return fmt.Errorf("state dir: %w", err)
	}
	sec, err := loadSecrets(ctx, cfg, log)
	if err != nil {
		return err
	}
	cli, closeEngine, err := engine(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer closeEngine()
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	secret, err := credential.EnsureReplicaAuthSecret(sctx, cli, cfg.Instance, sec.replicaAuth)
	var pruned []string
	if err == nil {
		pruned, err = credential.PruneReplicaAuthSecrets(sctx, cli, cfg.Instance, secret)
	}
	cancel()
	if err != nil {
		return err
	}
	log.Info("replica credential ready", "secret", secret, "removed_old_secrets", pruned)

	ccfg := catalog.DefaultConfig()
	ccfg.FastPoll, ccfg.SlowPoll, ccfg.Selector = cfg.FastPoll, cfg.SlowPoll, cfg.Selector
	ccfg.Instance = cfg.Instance
	cat, err := catalog.New(cli, ccfg, log)
	if err != nil {
		return err
	}

	// Scaler (scaler.go): the alarm webhook, /v1/functions, /v1/events,
	// /metrics, scale to and from zero.
	var auto *autoscaler
	if cfg.Autoscale {
		if auto, err = newAutoscaler(cfg, sec, cli, cat, log); err != nil {
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
	rcfg.Render.Balance, rcfg.Render.CheckInterval, rcfg.Render.CheckTimeout = cfg.Balance, cfg.CheckInterval, cfg.CheckTimeout
	rcfg.Render.CheckFall = cfg.CheckFall
	wireGatewayAuth(&rcfg.Render, cfg, sec)
	if auto != nil && auto.coldLn != nil {
		rcfg.Render.BackupAddr = auto.coldLn.Addr().String()
	}

	// Async invoke (async.go): the queue, and the gateway's routes to it.
	var asyncQ *asyncPart
	if cfg.Async {
		if asyncQ, err = openAsync(ctx, cfg, sec, cat, &rcfg.Render, log); err != nil {
			return err
		}
		defer asyncQ.close() // after the run group below has ended
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
	if asyncQ != nil {
		// Dispatch only what the gateway routes, as many at once as it
		// routes replicas.
		asyncQ.fns.route(gateway.WithRouting(cat, rec), rec.LeftOut)
	}
	if err := applyKeys(ctx, rec, sec.keys); err != nil {
		return err
	}

	ctx, cancel = context.WithCancel(ctx)
	defer cancel()
	g := rungroup.New(ctx)
	g.Go("haproxy", hap.Run)
	g.Go("catalog", cat.Run)
	if auto != nil {
		auto.start(g, rt)
	}
	if asyncQ != nil {
		asyncQ.start(g, log)
	}
	g.Go("reconcile", func(ctx context.Context) error {
		// Wait for HAProxy before reconciling.
		for ctx.Err() == nil {
			if _, err := hap.Procs(ctx); err == nil {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		return rec.Run(ctx, cat.Subscribe())
	})

	mux := http.NewServeMux()
	mux.Handle(contract.CatalogPath, catalog.NewHandler(pulseLabelsOnly{gateway.WithRouting(cat, rec)}))
	mux.Handle(contract.KeysPath, &keysHandler{store: sec.keys, tok: newBearer(sec.apiToken), log: log})
	if auto != nil {
		mountScaler(mux, auto.api)
	}
	if asyncQ != nil {
		asyncQ.mount(mux, newBearer(sec.apiToken))
	}
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		writeHealth(w, rec, cat)
	})
	ln, err := net.Listen("tcp", cfg.APIListen)
	if err != nil {
		// Stop and wait for what already runs: HAProxy above all.
		cancel()
		_ = g.Wait()
		return fmt.Errorf("api listen: %w", err)
	}
	srv := newAPIServer(mux, defaultAPITimeouts, log)
	srv.TLSConfig = sec.tls
	if sec.tls != nil {
		ln = tls.NewListener(ln, sec.tls)
	}
	g.Go("api", func(context.Context) error { return srv.Serve(ln) })
	g.Go("api shutdown", func(ctx context.Context) error {
		<-ctx.Done()
		shctx, shcancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer shcancel()
		_ = srv.Shutdown(shctx)
		return nil
	})
	log.Info("pulsed running", "api", ln.Addr().String(), "tls", sec.tls != nil, "gateway", cfg.GatewayListen, "state_dir", cfg.StateDir)

	// Wait for every part, HAProxy's supervisor above all: with
	// leave_running false it stops HAProxy, which must not outlive pulsed.
	// The first part to end stops the rest; the API server's Shutdown
	// drains it on that cancel.
	if err := g.Wait(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// pulseLabelsOnly serves the catalog with only the pulse.* service labels:
// the catalog needs no token (the collector and the CLI read it), so the
// labels a user put on a service for other tools stay in Swarm.
type pulseLabelsOnly struct{ src catalog.Source }

func (p pulseLabelsOnly) Current() (contract.Catalog, time.Time, error) {
	cat, at, err := p.src.Current()
	if err != nil {
		return cat, at, err
	}
	fns := make([]contract.CatalogFunction, len(cat.Functions))
	for i, f := range cat.Functions {
		labels := make(map[string]string, len(f.Labels))
		for k, v := range f.Labels {
			if strings.HasPrefix(k, "pulse.") {
				labels[k] = v
			}
		}
		f.Labels = labels
		fns[i] = f
	}
	cat.Functions = fns
	return cat, at, nil
}

// health is /healthz's answer: ok or degraded (the gateway cannot follow
// the swarm), and the functions left out of routing with their reasons (the
// rest are routed; the status stays ok).
type health struct {
	Status  string                     `json:"status"`
	Error   string                     `json:"error,omitempty"`
	Reloads int                        `json:"reloads"`
	Skipped []contract.SkippedFunction `json:"skipped,omitempty"`
}

func writeHealth(w http.ResponseWriter, rec *gateway.Reconciler, cat *catalog.Catalog) {
	h := health{Status: "ok", Reloads: rec.Reloads()}
	if c, _, err := cat.Current(); err == nil {
		h.Skipped = append(h.Skipped, c.Skipped...)
	}
	left := rec.LeftOut()
	for _, name := range slices.Sorted(maps.Keys(left)) {
		h.Skipped = append(h.Skipped, contract.SkippedFunction{Name: name, Reason: left[name]})
	}
	code := http.StatusOK
	if err := rec.Err(); err != nil {
		h.Status, h.Error, code = "degraded", err.Error(), http.StatusServiceUnavailable
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(h)
}

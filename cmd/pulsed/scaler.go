package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/pulsefaas/pulse/gateway"
	"github.com/pulsefaas/pulse/internal/catalog"
	"github.com/pulsefaas/pulse/internal/rungroup"
	"github.com/pulsefaas/pulse/scaler"
)

// scalerConfig is the scaler's part of pulsed's configuration.
func scalerConfig(cfg Config) scaler.Config {
	c := scaler.DefaultConfig()
	c.Window, c.UpThreshold, c.DownThreshold = cfg.ScaleWindow, cfg.ScaleUpThreshold, cfg.ScaleDownThreshold
	c.Lookback, c.Resync, c.CallTimeout = cfg.UtilisationLookback, cfg.ResyncInterval, cfg.ScalerCallTimeout
	c.Events = cfg.ScaleEvents
	return c
}

// autoscaler is everything pulsed runs when autoscale is on: the scaler
// (alarm webhook and periodic evaluation), its HTTP API, the cold-start
// path behind HAProxy's backup server, and the idle watcher.
type autoscaler struct {
	cfg    Config
	sc     *scaler.Scaler
	api    http.Handler
	cat    *catalog.Catalog
	log    *slog.Logger
	coldLn net.Listener // nil without cold start
	cold   *gateway.ColdStart
}

// newAutoscaler builds the scaler over the Docker API, Netdata and the
// replica catalog, and listens for cold starts. A missing or empty token
// file is not fatal: the webhook and the scaler's read endpoints then answer
// 503 (said once here), while the periodic evaluation still scales.
func newAutoscaler(cfg Config, sec secrets, api scaler.ServiceAPI, cat *catalog.Catalog, log *slog.Logger) (*autoscaler, error) {
	nd, err := scaler.NewNetdata(cfg.NetdataURL, cfg.NetdataTimeout)
	if err != nil {
		return nil, fmt.Errorf("scaler: %w", err)
	}
	sc, err := scaler.New(scalerConfig(cfg), scaler.NewSwarmServices(api, cfg.Instance), nd, cat, log)
	if err != nil {
		return nil, err
	}
	token, err := scaler.ReadToken(cfg.AlarmTokenFile)
	if err != nil {
		log.Warn("alarm webhook disabled: it answers 503 to every request until pulsed restarts with a token",
			"component", "scaler", "alarm_token_file", cfg.AlarmTokenFile, "err", err)
	}
	a := &autoscaler{cfg: cfg, sc: sc, api: scaler.NewHandler(sc, token), cat: cat, log: log}
	if cfg.ColdStartListen != "" {
		ccfg := gateway.DefaultColdStartConfig()
		ccfg.Timeout = cfg.ColdStartTimeout
		coldStartAuth(&ccfg, sec)
		if a.cold, err = gateway.NewColdStart(ccfg, cat, sc, log); err != nil {
			return nil, err
		}
		if a.coldLn, err = net.Listen("tcp", cfg.ColdStartListen); err != nil {
			return nil, fmt.Errorf("coldstart listen: %w", err)
		}
	}
	return a, nil
}

// start runs the scaler, the cold-start server and the idle watcher as
// parts of g.
func (a *autoscaler) start(g *rungroup.Group, stats gateway.StatsSource) {
	g.Go("scaler", a.sc.Run)
	idle := gateway.NewIdleWatcher(a.cat, stats, a.sc, a.cfg.IdleCheck, a.log)
	if a.cold != nil {
		idle.Busy = a.cold.Busy
	}
	g.Go("idle", idle.Run)
	if a.coldLn != nil {
		srv := coldStartTimeouts(a.cfg).server(a.cold, a.log, "coldstart")
		g.Go("coldstart", func(ctx context.Context) error {
			go func() {
				<-ctx.Done()
				sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				_ = srv.Shutdown(sctx)
			}()
			err := srv.Serve(a.coldLn)
			if errors.Is(err, http.ErrServerClosed) {
				err = nil
			}
			return err
		})
	}
}

// mountScaler serves the scaler's endpoints on pulsed's API.
func mountScaler(mux *http.ServeMux, h http.Handler) {
	for _, p := range scaler.Paths {
		mux.Handle(p, h)
	}
}

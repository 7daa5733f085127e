package main

import (
	"fmt"
	"log/slog"
	"net/http"

	"github.com/pulsefaas/pulse/gateway"
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

// newScaler builds the autoscaler over the Docker API, Netdata and the
// replica catalog, and its HTTP API. A missing or empty token file is not
// fatal: the webhook and the scaler's read endpoints then answer 503 (said
// once here), while the periodic evaluation still scales.
func newScaler(cfg Config, api scaler.ServiceAPI, cat *gateway.Catalog, log *slog.Logger) (*scaler.Scaler, http.Handler, error) {
	nd, err := scaler.NewNetdata(cfg.NetdataURL, cfg.NetdataTimeout)
	if err != nil {
		return nil, nil, fmt.Errorf("scaler: %w", err)
	}
	sc, err := scaler.New(scalerConfig(cfg), scaler.NewSwarmServices(api), nd, cat, log)
	if err != nil {
		return nil, nil, err
	}
	token, err := scaler.ReadToken(cfg.AlarmTokenFile)
	if err != nil {
		log.Warn("alarm webhook disabled: it answers 503 to every request until pulsed restarts with a token",
			"component", "scaler", "alarm_token_file", cfg.AlarmTokenFile, "err", err)
	}
	return sc, scaler.NewHandler(sc, token), nil
}

// mountScaler serves the scaler's endpoints on pulsed's API.
func mountScaler(mux *http.ServeMux, h http.Handler) {
	for _, p := range scaler.Paths {
		mux.Handle(p, h)
	}
}

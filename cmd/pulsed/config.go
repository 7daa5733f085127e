package main

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/viper"
	"go.yaml.in/yaml/v3"

	"github.com/pulsefaas/pulse/contract"
	"github.com/pulsefaas/pulse/scaler"
)

// Config is pulsed's configuration: a YAML file (--config; default
// /etc/pulse/pulsed.yaml when it exists) overridden by PULSE_* environment
// variables (PULSE_API_LISTEN, PULSE_GATEWAY_LISTEN, ...: the key in upper
// case). Unknown keys are errors.
type Config struct {
	APIListen      string        `mapstructure:"api_listen"`      // pulsed's API: /v1/replicas, /healthz
	GatewayListen  string        `mapstructure:"gateway_listen"`  // HAProxy's public port
	AdminListen    string        `mapstructure:"admin_listen"`    // HAProxy stats + Prometheus exporter
	StateDir       string        `mapstructure:"state_dir"`       // haproxy.cfg, sockets, pid file
	HAProxy        string        `mapstructure:"haproxy"`         // the haproxy binary
	Balance        string        `mapstructure:"balance"`         // leastconn or roundrobin
	CheckInterval  time.Duration `mapstructure:"check_interval"`  // HAProxy's health checks
	CheckTimeout   time.Duration `mapstructure:"check_timeout"`   // how long one check may take (a saturated replica answers late)
	FastPoll       time.Duration `mapstructure:"fast_poll"`       // Swarm polling while converging
	SlowPoll       time.Duration `mapstructure:"slow_poll"`       // and when steady
	KeysFile       string        `mapstructure:"keys_file"`       // YAML map function → invoke key
	LeaveRunning   bool          `mapstructure:"leave_running"`   // keep HAProxy serving when pulsed stops
	LogLevel       string        `mapstructure:"log_level"`       // debug, info, warn, error
	ReloadDebounce time.Duration `mapstructure:"reload_debounce"` // coalesce reloads
	HAProxyLog     string        `mapstructure:"haproxy_log"`     // HAProxy log target, e.g. "stdout format raw local0"; empty: none
	// Instance is this install's name: pulsed routes, watches and scales
	// only the functions whose pulse.instance label equals it (`pulse
	// deploy` sets the label from the CLI's instance key), so two installs,
	// or a test, share a swarm without touching each other's functions.
	Instance string `mapstructure:"instance"`
	// Selector narrows pulsed to the functions whose services also carry
	// these labels ("key" or "key=value"; in the environment,
	// comma-separated): two Pulse installs, or a test, on one swarm each
	// route, watch and scale only their own. Empty: every function.
	Selector []string `mapstructure:"selector"`

	// Autoscale runs the scaler: the alarm webhook, the periodic
	// evaluation, scale to zero (idle) and from zero (the backup server).
	// Off, pulsed only routes: the gateway of a swarm scaled by hand.
	Autoscale bool `mapstructure:"autoscale"`
	// ColdStartListen is where HAProxy's backup server, the cold-start path,
	// reaches pulsed (loopback: HAProxy runs beside it); empty for none.
	ColdStartListen  string        `mapstructure:"coldstart_listen"`
	ColdStartTimeout time.Duration `mapstructure:"coldstart_timeout"` // longest a request waits for a replica
	IdleCheck        time.Duration `mapstructure:"idle_check"`        // how often idle functions are looked for

	// The scaler's keys (scaler/README.md).
	AlarmTokenFile      string        `mapstructure:"alarm_token_file"`     // the webhook's bearer token; missing or empty: 503
	NetdataURL          string        `mapstructure:"netdata_url"`          // where utilisation is read
	NetdataTimeout      time.Duration `mapstructure:"netdata_timeout"`      // per Netdata request
	ScaleWindow         time.Duration `mapstructure:"scale_window"`         // stabilisation window
	ScaleUpThreshold    float64       `mapstructure:"scale_up_threshold"`   // percent utilisation
	ScaleDownThreshold  float64       `mapstructure:"scale_down_threshold"` // percent utilisation
	UtilisationLookback time.Duration `mapstructure:"utilisation_lookback"` // the current utilisation's average
	ResyncInterval      time.Duration `mapstructure:"resync_interval"`      // every function evaluated this often
	ScalerCallTimeout   time.Duration `mapstructure:"scaler_call_timeout"`  // per Swarm call of the scaler
	ScaleEvents         int           `mapstructure:"scale_events"`         // decisions kept for /v1/events
}

func defaults() Config {
	return Config{
		APIListen: "127.0.0.1:8090", GatewayListen: "0.0.0.0:8080", AdminListen: "127.0.0.1:8404",
		StateDir: "/var/lib/pulse", HAProxy: "haproxy", Balance: "roundrobin", CheckInterval: time.Second, CheckTimeout: 3 * time.Second,
		FastPoll: 100 * time.Millisecond, SlowPoll: time.Second, LeaveRunning: true, LogLevel: "info",
		ReloadDebounce: 200 * time.Millisecond, Instance: contract.DefaultInstance,

		Autoscale: true, ColdStartListen: "127.0.0.1:8091", ColdStartTimeout: 30 * time.Second, IdleCheck: time.Second,
		AlarmTokenFile: contract.DefaultAlarmTokenFile, NetdataURL: scaler.DefaultNetdataURL,
		NetdataTimeout: 2 * time.Second, ScaleWindow: scaler.DefaultWindow,
		ScaleUpThreshold: scaler.DefaultUpThreshold, ScaleDownThreshold: scaler.DefaultDownThreshold,
		UtilisationLookback: scaler.DefaultLookback, ResyncInterval: scaler.DefaultResync,
		ScalerCallTimeout: scaler.DefaultCallTimeout, ScaleEvents: scaler.DefaultEvents,
	}
}

var keys = []string{"api_listen", "gateway_listen", "admin_listen", "state_dir", "haproxy", "balance",
	"check_interval", "check_timeout", "fast_poll", "slow_poll", "keys_file", "leave_running", "log_level", "reload_debounce", "haproxy_log", "instance", "selector",
	"autoscale", "coldstart_listen", "coldstart_timeout", "idle_check",
	"alarm_token_file", "netdata_url", "netdata_timeout", "scale_window", "scale_up_threshold", "scale_down_threshold",
	"utilisation_lookback", "resync_interval", "scaler_call_timeout", "scale_events"}

// loadConfig reads the file (explicit: must exist) and the environment.
func loadConfig(path string, env func(string) string) (Config, error) {
	v := viper.New()
	v.SetConfigType("yaml")
	d := defaults()
	def := map[string]any{
		"api_listen": d.APIListen, "gateway_listen": d.GatewayListen, "admin_listen": d.AdminListen,
		"state_dir": d.StateDir, "haproxy": d.HAProxy, "balance": d.Balance, "check_interval": d.CheckInterval, "check_timeout": d.CheckTimeout,
		"fast_poll": d.FastPoll, "slow_poll": d.SlowPoll, "keys_file": "", "leave_running": d.LeaveRunning,
		"log_level": d.LogLevel, "reload_debounce": d.ReloadDebounce, "haproxy_log": "", "instance": d.Instance, "selector": []string{},
		"autoscale": d.Autoscale, "coldstart_listen": d.ColdStartListen, "coldstart_timeout": d.ColdStartTimeout, "idle_check": d.IdleCheck,
		"alarm_token_file": d.AlarmTokenFile, "netdata_url": d.NetdataURL, "netdata_timeout": d.NetdataTimeout,
		"scale_window": d.ScaleWindow, "scale_up_threshold": d.ScaleUpThreshold, "scale_down_threshold": d.ScaleDownThreshold,
		"utilisation_lookback": d.UtilisationLookback, "resync_interval": d.ResyncInterval,
		"scaler_call_timeout": d.ScalerCallTimeout, "scale_events": d.ScaleEvents,
	}
	for k, val := range def {
		v.SetDefault(k, val)
	}
	explicit := path != ""
	if !explicit {
		path = "/etc/pulse/pulsed.yaml"
	}
	if f, err := os.Open(path); err == nil {
		defer f.Close()
		if err := v.ReadConfig(f); err != nil {
			return Config{}, fmt.Errorf("config %s: %w", path, err)
		}
	} else if explicit || !errors.Is(err, os.ErrNotExist) {
		return Config{}, fmt.Errorf("config: %w", err)
	}
	for _, k := range keys {
		if val := env("PULSE_" + strings.ToUpper(k)); val != "" {
			if k == "selector" {
				v.Set(k, strings.Split(val, ","))
				continue
			}
			v.Set(k, val)
		}
	}
	var c Config
	if err := v.UnmarshalExact(&c); err != nil {
		return Config{}, fmt.Errorf("config %s: %w (known keys: %s)", path, err, strings.Join(keys, ", "))
	}
	if len(c.Selector) == 0 {
		c.Selector = nil
	}
	return c, c.Validate()
}

// Validate checks every value and says what is accepted.
func (c Config) Validate() error {
	var errs []error
	for _, a := range []struct{ key, val string }{{"api_listen", c.APIListen}, {"gateway_listen", c.GatewayListen}, {"admin_listen", c.AdminListen}} {
		if _, _, err := net.SplitHostPort(a.val); err != nil {
			errs = append(errs, fmt.Errorf("%s %q: want HOST:PORT, e.g. 127.0.0.1:8090", a.key, a.val))
		}
	}
	if c.ColdStartListen != "" {
		if _, _, err := net.SplitHostPort(c.ColdStartListen); err != nil {
			errs = append(errs, fmt.Errorf("coldstart_listen %q: want HOST:PORT, e.g. 127.0.0.1:8091, or empty for no cold start", c.ColdStartListen))
		}
	}
	if !contract.ValidInstance(c.Instance) {
		errs = append(errs, fmt.Errorf("instance %q: want %s, e.g. %s",
			c.Instance, contract.InstanceSyntax, contract.DefaultInstance))
	}
	for _, sel := range c.Selector {
		if k, _, _ := strings.Cut(sel, "="); strings.TrimSpace(k) == "" || k != strings.TrimSpace(k) {
			errs = append(errs, fmt.Errorf("selector %q: want a label key or key=value, e.g. pulse.install=lab", sel))
		}
	}
	if c.Balance != "leastconn" && c.Balance != "roundrobin" {
		errs = append(errs, fmt.Errorf("balance %q: want leastconn or roundrobin", c.Balance))
	}
	for _, d := range []struct {
		key string
		val time.Duration
	}{{"check_interval", c.CheckInterval}, {"check_timeout", c.CheckTimeout}, {"fast_poll", c.FastPoll}, {"slow_poll", c.SlowPoll}, {"reload_debounce", c.ReloadDebounce},
		{"netdata_timeout", c.NetdataTimeout}, {"scale_window", c.ScaleWindow}, {"utilisation_lookback", c.UtilisationLookback},
		{"resync_interval", c.ResyncInterval}, {"scaler_call_timeout", c.ScalerCallTimeout},
		{"coldstart_timeout", c.ColdStartTimeout}, {"idle_check", c.IdleCheck}} {
		if d.val <= 0 {
			errs = append(errs, fmt.Errorf("%s must be a positive duration such as 1s", d.key))
		}
	}
	if !filepath.IsAbs(c.StateDir) {
		errs = append(errs, fmt.Errorf("state_dir %q: want an absolute path", c.StateDir))
	}
	if !filepath.IsAbs(c.AlarmTokenFile) {
		errs = append(errs, fmt.Errorf("alarm_token_file %q: want an absolute path", c.AlarmTokenFile))
	}
	if u, err := url.Parse(c.NetdataURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		errs = append(errs, fmt.Errorf("netdata_url %q: want http://HOST:PORT, e.g. %s", c.NetdataURL, scaler.DefaultNetdataURL))
	}
	if !(c.ScaleDownThreshold > 0 && c.ScaleDownThreshold < c.ScaleUpThreshold) {
		errs = append(errs, fmt.Errorf("scale_down_threshold %v and scale_up_threshold %v: want 0 < down < up (percent utilisation)", c.ScaleDownThreshold, c.ScaleUpThreshold))
	}
	if c.ScaleEvents < 1 || c.ScaleEvents > 100000 {
		errs = append(errs, fmt.Errorf("scale_events %d: want 1 to 100000", c.ScaleEvents))
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		errs = append(errs, fmt.Errorf("log_level %q: want debug, info, warn or error", c.LogLevel))
	}
	return errors.Join(errs...)
}

// loadKeys reads the invoke keys file: a YAML map of function name to key.
func loadKeys(path string) (map[string]string, error) {
	if path == "" {
		return nil, nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("keys file: %w", err)
	}
	var m map[string]string
	if err := yaml.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("keys file %s: want a YAML map of function name to key: %w", path, err)
	}
	return m, nil
}

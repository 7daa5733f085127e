package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/pulsefaas/pulse/async"
	"github.com/pulsefaas/pulse/contract"
	"github.com/pulsefaas/pulse/provision"
	"github.com/pulsefaas/pulse/scaler"
)

// DefaultConfigFile is read when --config is not given and it exists.
const DefaultConfigFile = "/etc/pulse/pulsed.yaml"

// Config is pulsed's configuration: a YAML file (--config; default
// DefaultConfigFile when it exists) overridden by PULSE_* environment
// variables (PULSE_API_LISTEN, PULSE_GATEWAY_LISTEN, ...: the key in upper
// case). Unknown keys are errors.
//
// Every key is described once, in options below: its name, its field, its
// default, its check and its documentation. defaults(), loading, the
// environment, unknown-key errors, Validate and `pulsed --print-config` (the
// README's table) all derive from that list.
type Config struct {
	APIListen     string
	GatewayListen string
	AdminListen   string
	StateDir      string
	DockerHost    string

	SSHKnownHosts    string
	SSHIdentityFiles []string
	HAProxy          string
	Balance          string
	CheckInterval    time.Duration
	CheckTimeout     time.Duration
	CheckFall        int
	FastPoll         time.Duration
	SlowPoll         time.Duration
	KeysFile         string
	LeaveRunning     bool
	LogLevel         string
	ReloadDebounce   time.Duration
	HAProxyLog       string
	Instance         string
	Selector         []string

	ReplicaAuthFile string
	APITokenFile    string
	TLSCert         string

	Autoscale                bool
	ColdStartListen          string
	ColdStartTimeout         time.Duration
	ColdStartFunctionTimeout time.Duration
	IdleCheck                time.Duration

	AlarmTokenFile      string
	NetdataURL          string
	NetdataTimeout      time.Duration
	ScaleWindow         time.Duration
	ScaleUpThreshold    float64
	ScaleDownThreshold  float64
	UtilisationLookback time.Duration
	ResyncInterval      time.Duration
	ScalerCallTimeout   time.Duration
	ScaleEvents         int

	Async                bool
	AsyncListen          string
	AsyncDispatchListen  string
	AsyncNATSURL         string
	AsyncStreamReplicas  int
	AsyncRetention       time.Duration
	AsyncMaxQueued       int
	AsyncMaxBody         string
	AsyncMaxStore        string
	AsyncAckWait         time.Duration
	AsyncCallbackAllow   []string
	AsyncCallbackTimeout time.Duration
	AsyncCallbackRetries int
	AsyncOrphanAfter     time.Duration
}

// options is the one description of pulsed's configuration keys, in the
// order of the reference.
var options = []option{
	opt("api_listen", func(c *Config) *string { return &c.APIListen }, "127.0.0.1:8090",
		"pulsed's API (catalog, keys, scaler, /healthz): HOST:PORT; keep it on loopback", hostPort("127.0.0.1:8090")),
	opt("gateway_listen", func(c *Config) *string { return &c.GatewayListen }, "0.0.0.0:8080",
		"HAProxy's public port, the gateway: HOST:PORT", hostPort("0.0.0.0:8080")),
	opt("admin_listen", func(c *Config) *string { return &c.AdminListen }, "127.0.0.1:8404",
		"HAProxy's stats page and Prometheus exporter: HOST:PORT", hostPort("127.0.0.1:8404")),
	opt("state_dir", func(c *Config) *string { return &c.StateDir }, "/var/lib/pulse",
		"haproxy.cfg, sockets, pid file, keys.json (absolute path)", absPath),
	opt("docker_host", func(c *Config) *string { return &c.DockerHost }, "",
		"the swarm manager's Docker Engine: unix:///var/run/docker.sock, tcp://HOST:2376, or ssh://[user@]host[:port] "+
			"(its engine over SSH through `docker system dial-stdio`, kept alive and dialled again when it breaks; host key "+
			"checked against ssh_known_hosts, never accepted blindly); empty: DOCKER_HOST, else the local socket", dockerHost),
	opt("ssh_known_hosts", func(c *Config) *string { return &c.SSHKnownHosts }, "",
		"known_hosts for docker_host ssh:// (absolute path); empty: ~/.ssh/known_hosts of the user pulsed runs as. "+
			"An unknown or changed host key is refused: record it first (`pulse node add HOST --accept-new-host-key` on this machine)", emptyOrAbs),
	opt("ssh_identity_files", func(c *Config) *[]string { return &c.SSHIdentityFiles }, nil,
		"private key files for docker_host ssh:// (absolute paths; in the environment, comma-separated), after the agent's "+
			"keys (SSH_AUTH_SOCK); empty: ~/.ssh/id_ed25519, id_ecdsa, id_rsa that exist", func(v []string) error {
			var errs []error
			for _, f := range v {
				if err := absPath(f); err != nil {
					errs = append(errs, err)
				}
			}
			return errors.Join(errs...)
		}),
	opt("haproxy", func(c *Config) *string { return &c.HAProxy }, "haproxy", "the haproxy binary", nonEmpty),
	opt("balance", func(c *Config) *string { return &c.Balance }, "roundrobin",
		"each backend's algorithm: leastconn or roundrobin", oneOf("leastconn", "roundrobin")),
	opt("check_interval", func(c *Config) *time.Duration { return &c.CheckInterval }, 500*time.Millisecond,
		"HAProxy's health-check period (after a failed check the next comes 100 ms later)", positive),
	opt("check_timeout", func(c *Config) *time.Duration { return &c.CheckTimeout }, time.Second,
		"how long a health check may wait for the answer once connected (HAProxy bounds the connect itself by "+
			"check_interval): the watchdog answers at once even when saturated, so a timeout is a replica that answers nothing "+
			"(a frozen node); its replicas leave in about check_interval/2 + check_fall × check_timeout", positive),
	opt("check_fall", func(c *Config) *int { return &c.CheckFall }, 2,
		"failed health checks in a row that take a replica out of rotation (one good check brings it back)", func(v int) error {
			if v < 1 || v > 10 {
				return fmt.Errorf("%d: want 1 to 10", v)
			}
			return nil
		}),
	opt("fast_poll", func(c *Config) *time.Duration { return &c.FastPoll }, 100*time.Millisecond,
		"Swarm polling while converging", positive),
	opt("slow_poll", func(c *Config) *time.Duration { return &c.SlowPoll }, time.Second,
		"Swarm polling when steady", positive),
	opt("keys_file", func(c *Config) *string { return &c.KeysFile }, "",
		"deprecated: a YAML map function → plaintext invoke key; at each start the keys the store lacks are imported into it "+
			"(as digests), with a warning; must not be readable by group or others. Use `pulse key add` instead", emptyOrAbs),
	opt("leave_running", func(c *Config) *bool { return &c.LeaveRunning }, true,
		"keep HAProxy serving when pulsed stops", nil),
	opt("log_level", func(c *Config) *string { return &c.LogLevel }, "info",
		"debug, info, warn or error", oneOf("debug", "info", "warn", "error")),
	opt("reload_debounce", func(c *Config) *time.Duration { return &c.ReloadDebounce }, 200*time.Millisecond,
		"coalesce HAProxy reloads", positive),
	opt("haproxy_log", func(c *Config) *string { return &c.HAProxyLog }, "",
		`HAProxy's log target, e.g. "stdout format raw local0"; empty: none`, nil),
	opt("instance", func(c *Config) *string { return &c.Instance }, contract.DefaultInstance,
		"this install's name: pulsed routes, watches and scales only the functions whose pulse.instance label equals it",
		func(v string) error {
			if !contract.ValidInstance(v) {
				return fmt.Errorf("%q: want %s, e.g. %s", v, contract.InstanceSyntax, contract.DefaultInstance)
			}
			return nil
		}),
	opt("selector", func(c *Config) *[]string { return &c.Selector }, nil,
		"only the functions whose services also carry these labels (key or key=value; in the environment, comma-separated); empty: every function",
		func(v []string) error {
			var errs []error
			for _, sel := range v {
				if k, _, _ := strings.Cut(sel, "="); strings.TrimSpace(k) == "" || k != strings.TrimSpace(k) {
					errs = append(errs, fmt.Errorf("%q: want a label key or key=value, e.g. pulse.install=lab", sel))
				}
			}
			return errors.Join(errs...)
		}),
	opt("replica_auth_file", func(c *Config) *string { return &c.ReplicaAuthFile }, contract.DefaultReplicaAuthFile,
		"the replica credential HAProxy adds and replicas check (generated when missing: 32 random bytes hex, 0640 root:netdata; "+
			"pulsed refuses a file readable by others)", absPath),
	opt("api_token_file", func(c *Config) *string { return &c.APITokenFile }, contract.DefaultAPITokenFile,
		"the management API's bearer token (/v1/keys/); missing or empty: those endpoints answer 503; "+
			"pulsed refuses a file readable by group or others", absPath),
	opt("tls_cert", func(c *Config) *string { return &c.TLSCert }, "",
		"PEM certificate and key in one file: the gateway and pulsed's API serve TLS with it; empty: plain HTTP", emptyOrAbs),
	opt("autoscale", func(c *Config) *bool { return &c.Autoscale }, true,
		"run the scaler (alarm webhook, periodic evaluation, scale to and from zero); off: route only", nil),
	opt("coldstart_listen", func(c *Config) *string { return &c.ColdStartListen }, "127.0.0.1:8091",
		"where HAProxy's backup server reaches pulsed's cold-start path (loopback); empty for none",
		func(v string) error {
			if v == "" {
				return nil
			}
			if _, _, err := net.SplitHostPort(v); err != nil {
				return fmt.Errorf("%q: want HOST:PORT, e.g. 127.0.0.1:8091, or empty for no cold start", v)
			}
			return nil
		}),
	opt("coldstart_timeout", func(c *Config) *time.Duration { return &c.ColdStartTimeout }, 30*time.Second,
		"longest a request waits for a replica", positive),
	opt("coldstart_function_timeout", func(c *Config) *time.Duration { return &c.ColdStartFunctionTimeout }, 5*time.Minute,
		"longest function timeout the cold-start path serves: its server's read and write timeouts are coldstart_timeout plus this", positive),
	opt("idle_check", func(c *Config) *time.Duration { return &c.IdleCheck }, time.Second,
		"how often idle functions are looked for", positive),
	opt("alarm_token_file", func(c *Config) *string { return &c.AlarmTokenFile }, contract.DefaultAlarmTokenFile,
		"the alarm webhook's bearer token; missing or empty: 503", absPath),
	opt("netdata_url", func(c *Config) *string { return &c.NetdataURL }, scaler.DefaultNetdataURL,
		"where utilisation is read", func(v string) error {
			if u, err := url.Parse(v); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				return fmt.Errorf("%q: want http://HOST:PORT, e.g. %s", v, scaler.DefaultNetdataURL)
			}
			return nil
		}),
	opt("netdata_timeout", func(c *Config) *time.Duration { return &c.NetdataTimeout }, 2*time.Second,
		"per Netdata request", positive),
	opt("scale_window", func(c *Config) *time.Duration { return &c.ScaleWindow }, scaler.DefaultWindow,
		"stabilisation window", positive),
	opt("scale_up_threshold", func(c *Config) *float64 { return &c.ScaleUpThreshold }, scaler.DefaultUpThreshold,
		"percent utilisation above which a function scales up", nil),
	opt("scale_down_threshold", func(c *Config) *float64 { return &c.ScaleDownThreshold }, scaler.DefaultDownThreshold,
		"percent utilisation below which a function scales down; 0 < down < up", nil).
		with(func(c Config) error {
			if !(c.ScaleDownThreshold > 0 && c.ScaleDownThreshold < c.ScaleUpThreshold) {
				return fmt.Errorf("scale_down_threshold %v and scale_up_threshold %v: want 0 < down < up (percent utilisation)", c.ScaleDownThreshold, c.ScaleUpThreshold)
			}
			return nil
		}),
	opt("utilisation_lookback", func(c *Config) *time.Duration { return &c.UtilisationLookback }, scaler.DefaultLookback,
		"the current utilisation's average", positive),
	opt("resync_interval", func(c *Config) *time.Duration { return &c.ResyncInterval }, scaler.DefaultResync,
		"every function evaluated this often", positive),
	opt("scaler_call_timeout", func(c *Config) *time.Duration { return &c.ScalerCallTimeout }, scaler.DefaultCallTimeout,
		"per Swarm call of the scaler", positive),
	opt("scale_events", func(c *Config) *int { return &c.ScaleEvents }, scaler.DefaultEvents,
		"decisions kept for /v1/events", func(v int) error {
			if v < 1 || v > 100000 {
				return fmt.Errorf("%d: want 1 to 100000", v)
			}
			return nil
		}),
	opt("async", func(c *Config) *bool { return &c.Async }, true,
		"async invoke: POST /async-function/NAME through the gateway stores the request (NATS JetStream) and answers 202; "+
			"pulsed dispatches it, retries it and posts the result to X-Callback-Url; off: /async-function/ is 404", nil),
	opt("async_listen", func(c *Config) *string { return &c.AsyncListen }, contract.DefaultAsyncListen,
		"where HAProxy hands async requests to pulsed: a loopback HOST:PORT (what arrives there is trusted to have passed the "+
			"gateway's key check)", loopbackHostPort(contract.DefaultAsyncListen)),
	opt("async_dispatch_listen", func(c *Config) *string { return &c.AsyncDispatchListen }, contract.DefaultDispatchListen,
		"HAProxy's dispatch frontend, through which pulsed invokes functions for async requests: a loopback HOST:PORT (it skips the "+
			"invoke-key check, done at enqueue, and the rate limit, and takes pulsed's dispatch token only)", loopbackHostPort(contract.DefaultDispatchListen)),
	opt("async_nats_url", func(c *Config) *string { return &c.AsyncNATSURL }, "",
		"an external NATS cluster with JetStream (nats://HOST:4222, comma-separated for several); empty: JetStream embedded in pulsed, "+
			"file storage under state_dir/async, every write synced", func(v string) error {
			for _, u := range strings.Split(v, ",") {
				if v == "" {
					break
				}
				if pu, err := url.Parse(strings.TrimSpace(u)); err != nil || (pu.Scheme != "nats" && pu.Scheme != "tls") || pu.Host == "" {
					return fmt.Errorf("%q: want nats://HOST:PORT (or tls://), comma-separated for several", u)
				}
			}
			return nil
		}),
	opt("async_stream_replicas", func(c *Config) *int { return &c.AsyncStreamReplicas }, 1,
		"copies of the async streams: 1 for the embedded server (it syncs every write to disk); 3 or 5 in an external NATS "+
			"cluster, which acknowledges a write once a majority holds it (a NATS server syncs to disk only every 2 minutes "+
			"by default, so one copy there could lose accepted requests)", func(v int) error {
			if v != 1 && v != 3 && v != 5 {
				return fmt.Errorf("%d: want 1, 3 or 5", v)
			}
			return nil
		}).with(func(c Config) error {
		switch {
		case c.AsyncStreamReplicas > 1 && c.AsyncNATSURL == "":
			return fmt.Errorf("async_stream_replicas %d: needs async_nats_url (the embedded server is one node)", c.AsyncStreamReplicas)
		case c.AsyncStreamReplicas == 1 && c.AsyncNATSURL != "":
			return errors.New("async_nats_url with async_stream_replicas 1: an external NATS server acknowledges writes before they are on disk; " +
				"set async_stream_replicas 3 (a cluster of at least 3 servers), or leave async_nats_url empty for the embedded, synced server")
		}
		return nil
	}),
	opt("async_retention", func(c *Config) *time.Duration { return &c.AsyncRetention }, 24*time.Hour,
		"how long an async request's state stays readable after its last change (GET /v1/async/ID, `pulse queue inspect`)", positive),
	opt("async_max_queued", func(c *Config) *int { return &c.AsyncMaxQueued }, 100000,
		"async requests waiting per function; beyond it the gateway answers 429", func(v int) error {
			if v < 1 || v > 100_000_000 {
				return fmt.Errorf("%d: want 1 to 100000000", v)
			}
			return nil
		}),
	opt("async_max_body", func(c *Config) *string { return &c.AsyncMaxBody }, "10MiB",
		"the largest async request body (a function's own max_body applies below it): 512KiB, 10MiB, up to 64MiB", func(v string) error {
			n, err := contract.ParseSize(v)
			if err != nil {
				return fmt.Errorf("%q: %v", v, err)
			}
			if n < 1 || n > 64<<20 {
				return fmt.Errorf("%q: want 1 byte to 64MiB", v)
			}
			return nil
		}),
	opt("async_max_store", func(c *Config) *string { return &c.AsyncMaxStore }, "10GiB",
		"the most disk the waiting async requests may hold, over every function (64MiB to 1024GiB); beyond it the gateway answers 507",
		func(v string) error {
			n, err := contract.ParseSize(v)
			if err != nil {
				return fmt.Errorf("%q: %v", v, err)
			}
			if n < 64<<20 || n > 1024<<30 {
				return fmt.Errorf("%q: want 64MiB to 1024GiB", v)
			}
			return nil
		}),
	opt("async_ack_wait", func(c *Config) *time.Duration { return &c.AsyncAckWait }, 30*time.Second,
		"a dispatch under way when pulsed stopped is dispatched again this long after it began (pulsed renews it while it runs); 5s to 10m",
		func(v time.Duration) error {
			if v < 5*time.Second || v > 10*time.Minute {
				return fmt.Errorf("%s: want 5s to 10m", v)
			}
			return nil
		}),
	opt("async_callback_allow", func(c *Config) *[]string { return &c.AsyncCallbackAllow }, nil,
		"where callbacks may go: CIDR prefixes and ADDRESS:PORT (in the environment, comma-separated); empty: any address but "+
			"loopback, link-local, multicast and this host's own, which only an entry naming them allows (e.g. 127.0.0.1:9000)",
		func(v []string) error {
			_, err := async.NewCallbackPolicy(async.CallbackConfig{Allow: v})
			return err
		}),
	opt("async_callback_timeout", func(c *Config) *time.Duration { return &c.AsyncCallbackTimeout }, 10*time.Second,
		"one callback delivery", positive),
	opt("async_orphan_after", func(c *Config) *time.Duration { return &c.AsyncOrphanAfter }, 10*time.Minute,
		"requests queued for a function that has been removed this long (and not deployed again) fail, with their callbacks", positive),
	opt("async_callback_retries", func(c *Config) *int { return &c.AsyncCallbackRetries }, 5,
		"further tries of a failed callback (no answer, 408, 429, 5xx), with backoff", func(v int) error {
			if v < 0 || v > 100 {
				return fmt.Errorf("%d: want 0 to 100", v)
			}
			return nil
		}),
}

// renamed maps a key pulsed once had to the key that replaced it: pulsed
// refuses the old one naming the new, and `pulsed --migrate-config FILE`
// rewrites it in an existing file.
// None has been renamed yet; the tests exercise the mechanism with their own
// entries.
var renamed = map[string]string{}

// option is one configuration key.
type option struct {
	key, doc, kind, def string
	setDefault          func(*Config)
	decode              func(*Config, *yaml.Node) error
	parseEnv            func(*Config, string) error
	check               func(Config) error
}

// opt describes the key name, held in the field field returns, its default
// def and its check (nil: every value of the type).
func opt[T any](key string, field func(*Config) *T, def T, doc string, check func(T) error) option {
	o := option{key: key, doc: doc, kind: kindOf(def), def: formatValue(def)}
	o.setDefault = func(c *Config) { *field(c) = def }
	o.decode = func(c *Config, n *yaml.Node) error {
		var v T
		if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
			*field(c) = v
			return nil
		}
		if err := n.Decode(&v); err != nil {
			return fmt.Errorf("%s: want %s: %v", key, o.kind, yamlMessage(err))
		}
		*field(c) = v
		return nil
	}
	o.parseEnv = func(c *Config, s string) error {
		if err := parseInto(field(c), s); err != nil {
			return fmt.Errorf("%s (PULSE_%s) %q: want %s", key, strings.ToUpper(key), s, o.kind)
		}
		return nil
	}
	if check != nil {
		o.check = func(c Config) error {
			if err := check(*field(&c)); err != nil {
				return fmt.Errorf("%s %w", key, err)
			}
			return nil
		}
	}
	return o
}

// with adds a check over the whole configuration (keys that depend on each
// other).
func (o option) with(check func(Config) error) option {
	prev := o.check
	o.check = func(c Config) error {
		if prev != nil {
			if err := prev(c); err != nil {
				return err
			}
		}
		return check(c)
	}
	return o
}

func parseInto(p any, s string) error {
	var err error
	switch p := p.(type) {
	case *string:
		*p = s
	case *bool:
		*p, err = strconv.ParseBool(s)
	case *int:
		*p, err = strconv.Atoi(s)
	case *float64:
		*p, err = strconv.ParseFloat(s, 64)
	case *time.Duration:
		*p, err = time.ParseDuration(s)
	case *[]string:
		*p = strings.Split(s, ",")
	default:
		err = fmt.Errorf("no parser for %T", p)
	}
	return err
}

func kindOf(v any) string {
	switch v.(type) {
	case string:
		return "a string"
	case bool:
		return "true or false"
	case int:
		return "an integer"
	case float64:
		return "a number"
	case time.Duration:
		return "a duration such as 1s or 250ms"
	case []string:
		return "a list of strings"
	}
	return fmt.Sprintf("%T", v)
}

func formatValue(v any) string {
	switch v := v.(type) {
	case string:
		if v == "" {
			return `""`
		}
		return v
	case []string:
		if len(v) == 0 {
			return "[]"
		}
		return "[" + strings.Join(v, ", ") + "]"
	}
	return fmt.Sprint(v)
}

// yamlMessage drops yaml's "yaml: unmarshal errors:\n  line N:" framing.
func yamlMessage(err error) string {
	msg := err.Error()
	if i := strings.LastIndex(msg, ": cannot unmarshal"); i >= 0 {
		msg = "cannot unmarshal" + msg[i+len(": cannot unmarshal"):]
	}
	return strings.TrimSpace(msg)
}

// Checks shared by several keys; each returns the text after the key.
func positive(d time.Duration) error {
	if d <= 0 {
		return errors.New("must be a positive duration such as 1s")
	}
	return nil
}

// loopbackHostPort accepts HOST:PORT on a loopback address.
func loopbackHostPort(example string) func(string) error {
	return func(v string) error {
		host, _, err := net.SplitHostPort(v)
		ip := net.ParseIP(host)
		if err != nil || (host != "localhost" && (ip == nil || !ip.IsLoopback())) {
			return fmt.Errorf("%q: want a loopback HOST:PORT, e.g. %s", v, example)
		}
		return nil
	}
}

func hostPort(example string) func(string) error {
	return func(v string) error {
		if _, _, err := net.SplitHostPort(v); err != nil {
			return fmt.Errorf("%q: want HOST:PORT, e.g. %s", v, example)
		}
		return nil
	}
}

func absPath(v string) error {
	if !filepath.IsAbs(v) {
		return fmt.Errorf("%q: want an absolute path", v)
	}
	return nil
}

// dockerHost checks docker_host: empty, an engine URL, or
// ssh://[user@]host[:port] (nothing else after the host).
func dockerHost(v string) error {
	if v == "" {
		return nil
	}
	if !strings.Contains(v, "://") {
		return fmt.Errorf("%q: want unix:///var/run/docker.sock, tcp://HOST:2376 or ssh://[user@]host[:port]", v)
	}
	if strings.HasPrefix(v, "ssh://") {
		if _, err := provision.ParseSSHURL(v); err != nil {
			return err
		}
	}
	return nil
}

func emptyOrAbs(v string) error {
	if v != "" && !filepath.IsAbs(v) {
		return fmt.Errorf("%q: want an absolute path, or empty for none", v)
	}
	return nil
}

func nonEmpty(v string) error {
	if v == "" {
		return errors.New(`"": want a value`)
	}
	return nil
}

func oneOf(vals ...string) func(string) error {
	return func(v string) error {
		for _, ok := range vals {
			if v == ok {
				return nil
			}
		}
		last := len(vals) - 1
		return fmt.Errorf("%q: want %s or %s", v, strings.Join(vals[:last], ", "), vals[last])
	}
}

func optionByKey(key string) (option, bool) {
	for _, o := range options {
		if o.key == key {
			return o, true
		}
	}
	return option{}, false
}

func keyNames() []string {
	names := make([]string, len(options))
	for i, o := range options {
		names[i] = o.key
	}
	return names
}

func defaults() Config {
	var c Config
	for _, o := range options {
		o.setDefault(&c)
	}
	return c
}

// loadConfig reads the file (explicit: must exist) and the environment.
func loadConfig(path string, env func(string) string) (Config, error) {
	c := defaults()
	explicit := path != ""
	if !explicit {
		path = DefaultConfigFile
	}
	b, err := os.ReadFile(path)
	switch {
	case err == nil:
		if err := decodeConfig(&c, b); err != nil {
			return Config{}, fmt.Errorf("config %s: %w", path, err)
		}
	case explicit || !errors.Is(err, os.ErrNotExist):
		return Config{}, fmt.Errorf("config: %w", err)
	}
	var errs []error
	for _, o := range options {
		if v := env("PULSE_" + strings.ToUpper(o.key)); v != "" {
			if err := o.parseEnv(&c, v); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return Config{}, fmt.Errorf("environment: %w", err)
	}
	if len(c.Selector) == 0 {
		c.Selector = nil
	}
	return c, c.Validate()
}

// decodeConfig applies a YAML document's keys to c: unknown and renamed
// keys are errors that say what to write instead.
func decodeConfig(c *Config, b []byte) error {
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return fmt.Errorf("not YAML: %w", err)
	}
	if doc.Kind == 0 || len(doc.Content) == 0 {
		return nil // an empty file: every default
	}
	root := doc.Content[0]
	if root.Kind == yaml.ScalarNode && root.Tag == "!!null" {
		return nil
	}
	if root.Kind != yaml.MappingNode {
		return fmt.Errorf("want a YAML map of key: value (known keys: %s)", strings.Join(keyNames(), ", "))
	}
	var errs []error
	seen := map[string]bool{}
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		key := k.Value
		if seen[key] {
			errs = append(errs, fmt.Errorf("line %d: %s is set twice", k.Line, key))
			continue
		}
		seen[key] = true
		if to, ok := renamed[key]; ok {
			errs = append(errs, fmt.Errorf("line %d: %s was renamed %s: write %s (pulsed --migrate-config FILE rewrites it)", k.Line, key, to, to))
			continue
		}
		o, ok := optionByKey(key)
		if !ok {
			errs = append(errs, fmt.Errorf("line %d: unknown key %q (known keys: %s)", k.Line, key, strings.Join(keyNames(), ", ")))
			continue
		}
		if err := o.decode(c, v); err != nil {
			errs = append(errs, fmt.Errorf("line %d: %w", v.Line, err))
		}
	}
	return errors.Join(errs...)
}

// migrateConfig rewrites the renamed keys of a YAML document, keeping its
// comments and order, and reports whether anything changed. A file that
// has both the old and the new key is an error: the user must choose.
func migrateConfig(b []byte) ([]byte, []string, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return nil, nil, fmt.Errorf("not YAML: %w", err)
	}
	if len(doc.Content) == 0 || doc.Content[0].Kind != yaml.MappingNode {
		return b, nil, nil
	}
	root := doc.Content[0]
	present := map[string]bool{}
	for i := 0; i+1 < len(root.Content); i += 2 {
		present[root.Content[i].Value] = true
	}
	var changes []string
	for i := 0; i+1 < len(root.Content); i += 2 {
		k := root.Content[i]
		to, ok := renamed[k.Value]
		if !ok {
			continue
		}
		if present[to] {
			return nil, nil, fmt.Errorf("line %d: both %s and its new name %s are set: keep %s only", k.Line, k.Value, to, to)
		}
		changes = append(changes, k.Value+" → "+to)
		k.Value = to
	}
	if len(changes) == 0 {
		return b, nil, nil
	}
	var out bytes.Buffer
	enc := yaml.NewEncoder(&out)
	enc.SetIndent(2)
	if err := enc.Encode(&doc); err != nil {
		return nil, nil, fmt.Errorf("encode: %w", err)
	}
	return out.Bytes(), changes, nil
}

// Validate checks every value and says what is accepted.
func (c Config) Validate() error {
	var errs []error
	for _, o := range options {
		if o.check != nil {
			if err := o.check(c); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// printReference writes the reference of every key as a Markdown table:
// `pulsed --print-config`, and the README's "pulsed configuration" table
// (TestConfigReferenceInREADME keeps them equal).
func printReference(w io.Writer) error {
	var b strings.Builder
	b.WriteString("| Key | Default | Environment | Meaning |\n|---|---|---|---|\n")
	for _, o := range options {
		fmt.Fprintf(&b, "| `%s` | `%s` | `PULSE_%s` | %s (%s) |\n", o.key, o.def, strings.ToUpper(o.key),
			strings.ReplaceAll(o.doc, "|", `\|`), o.kind)
	}
	if len(renamed) > 0 {
		old := make([]string, 0, len(renamed))
		for k := range renamed {
			old = append(old, k)
		}
		sort.Strings(old)
		b.WriteString("\nRenamed keys (pulsed refuses the old name; `make up` rewrites it):")
		for _, k := range old {
			fmt.Fprintf(&b, " `%s` → `%s`;", k, renamed[k])
		}
		b.WriteString("\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

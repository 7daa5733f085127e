package gateway

import (
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/pulsefaas/pulse/contract"
	"github.com/pulsefaas/pulse/internal/catalog"
)

// RenderConfig is everything of HAProxy's configuration that does not come
// from the catalog. DefaultRenderConfig holds the defaults; Render fills a
// zero field with its default, then checks the result with Validate.
type RenderConfig struct {
	// Listen is the gateway's address (host:port): every function is
	// served under /function/<name> there.
	Listen string
	// AdminListen serves HAProxy's stats page at /stats and its Prometheus
	// exporter at /metrics. Keep it on loopback.
	AdminListen string
	// RuntimeSocket is the path of the stats socket that pulsed drives the
	// runtime API through: admin level, mode 600, and expose-fd listeners
	// so a reload hands the listening sockets over. Required. (The master
	// socket is not part of the file: HAProxy 2.6 takes it only as the -S
	// command-line flag.)
	RuntimeSocket string
	// ServerStateFile, when set, is loaded at start-up (server-state-file
	// + load-server-state-from-file global): if pulsed writes `show
	// servers state` there before a reload, the new worker starts with the
	// old one's health, drain and maint states instead of assuming every
	// server up. Optional.
	ServerStateFile string
	// Log is the target of HAProxy's logs, the arguments of a global log
	// line (e.g. "stdout format raw local0 info"); empty logs nothing.
	// Request logs never include the Authorization header.
	Log string

	// Balance is each backend's algorithm: BalanceLeastConn or
	// BalanceRoundRobin.
	Balance string
	// CheckInterval is the health-check period (inter); a server goes down
	// after CheckFall failed checks and up after CheckRise good ones. The
	// check is GET contract.HealthPath, expecting 200, answered within
	// CheckTimeout: a replica saturated by requests answers its health
	// late, not never, and must stay in rotation (measured: a 1 s limit
	// flapped a busy C++ replica 22 times in 6 minutes). A dead replica
	// leaves faster than the checks could tell: live traffic is observed
	// too, and the first failed connection marks the server down.
	CheckInterval time.Duration
	CheckTimeout  time.Duration
	CheckFall     int
	CheckRise     int
	// MaxConn caps the gateway frontend's concurrent connections (HAProxy
	// needs about two descriptors per connection: keep it below half the
	// open-files limit or it refuses to start).
	MaxConn int
	// ServerMaxConn caps concurrent requests per replica; the rest wait in
	// the backend's queue for up to QueueTimeout. 0 means no cap.
	ServerMaxConn int

	// Connection timeouts. ClientTimeout is the client's inactivity while
	// HAProxy waits for it; it does not cut a request that waits on a slow
	// function (verified on 2.6). KeepAliveTimeout is how long an idle
	// client connection stays open, kept well below the watchdog's idle
	// timeout.
	ConnectTimeout   time.Duration
	ClientTimeout    time.Duration
	RequestTimeout   time.Duration // timeout http-request: the whole request head
	KeepAliveTimeout time.Duration
	QueueTimeout     time.Duration
	// TimeoutMargin is added to a function's timeout (contract.LabelTimeout)
	// to make its backend's server timeout, so the watchdog's own 504 JSON,
	// sent at exactly the timeout, reaches the client before HAProxy gives
	// up on the server.
	TimeoutMargin time.Duration
	// HardStopAfter bounds how long an old worker may keep serving after a
	// reload. 0 derives it: the longest of the client, keep-alive and
	// server timeouts, plus 30s, so no request in flight is cut.
	HardStopAfter time.Duration
	// DefaultTimeout and DefaultMaxBody apply to a function without the
	// contract.LabelTimeout or contract.LabelMaxBody label; they equal the
	// watchdog's own defaults.
	DefaultTimeout time.Duration
	DefaultMaxBody int64

	// BackupAddr (host:port, optional) is added to every backend as a
	// backup server: it takes requests only when no replica is usable
	// (pulsed, for scale from zero). Requests to it carry the function's
	// name in X-Pulse-Function.
	BackupAddr string
	// ProbeNew writes a replica that is not Routed (pulsed has not probed
	// it yet) as a disabled server: after a reload HAProxy sends it nothing
	// until pulsed's probe sets it ready, instead of assuming it up while
	// its watchdog may not listen yet (a refused connection would mark it
	// down). The reconciler sets it; a render without it trusts every
	// replica, as a fresh HAProxy must.
	ProbeNew bool
	// KeysMap (an absolute path, optional) is the invoke-key map file:
	// every backend looks its function up there at request time, so keys
	// change through the runtime API (Reconciler.SetKeys) without a
	// reload. A function with at least one key in it answers 401 JSON to a
	// request without "Authorization: Bearer <key>" of one of its keys, and
	// removes the Authorization header before the function; a function
	// with none is open. The file holds SHA-256 digests only (RenderKeysMap
	// writes it) and must exist before HAProxy or `haproxy -c` reads the
	// configuration. Empty: no function is protected.
	KeysMap string
	// ReplicaAuth (optional) is the replica credential
	// (contract.HeaderReplicaAuth): every backend sets that header to it on
	// every request it sends, to a replica or to the backup server,
	// replacing any value the client sent, and on every health check.
	// 16–256 visible ASCII characters, none of "'\$%# and no spaces.
	ReplicaAuth string
	// TLSCert (an absolute path, optional) is a PEM file holding the
	// gateway's certificate chain and private key: the gateway then serves
	// HTTPS only on Listen. Empty: plain HTTP.
	TLSCert string
}

// Balancing algorithms.
const (
	BalanceLeastConn  = "leastconn"
	BalanceRoundRobin = "roundrobin"
)

// BackupServerName is the name of the backup server in every backend. It
// cannot collide with a replica's server: task IDs have no '-'.
const BackupServerName = "pulsed-backup"

// DefaultRenderConfig returns the defaults of DESIGN.md §2: the gateway on
// 0.0.0.0:8080, the admin port on 127.0.0.1:8404. RuntimeSocket has no
// default.
func DefaultRenderConfig() RenderConfig {
	return RenderConfig{
		Listen:           "0.0.0.0:8080",
		AdminListen:      "127.0.0.1:8404",
		Balance:          BalanceLeastConn,
		CheckInterval:    time.Second,
		CheckTimeout:     3 * time.Second,
		CheckFall:        3,
		CheckRise:        1,
		MaxConn:          4096,
		ConnectTimeout:   2 * time.Second,
		ClientTimeout:    60 * time.Second,
		RequestTimeout:   10 * time.Second,
		KeepAliveTimeout: 30 * time.Second,
		QueueTimeout:     5 * time.Second,
		TimeoutMargin:    time.Second,
		DefaultTimeout:   30 * time.Second,
		DefaultMaxBody:   10 << 20,
	}
}

// withDefaults fills every zero field that has a default.
func (c RenderConfig) withDefaults() RenderConfig {
	d := DefaultRenderConfig()
	str := func(v *string, def string) {
		if *v == "" {
			*v = def
		}
	}
	dur := func(v *time.Duration, def time.Duration) {
		if *v == 0 {
			*v = def
		}
	}
	num := func(v *int, def int) {
		if *v == 0 {
			*v = def
		}
	}
	str(&c.Listen, d.Listen)
	str(&c.AdminListen, d.AdminListen)
	str(&c.Balance, d.Balance)
	dur(&c.CheckInterval, d.CheckInterval)
	dur(&c.CheckTimeout, d.CheckTimeout)
	num(&c.CheckFall, d.CheckFall)
	num(&c.CheckRise, d.CheckRise)
	num(&c.MaxConn, d.MaxConn)
	dur(&c.ConnectTimeout, d.ConnectTimeout)
	dur(&c.ClientTimeout, d.ClientTimeout)
	dur(&c.RequestTimeout, d.RequestTimeout)
	dur(&c.KeepAliveTimeout, d.KeepAliveTimeout)
	dur(&c.QueueTimeout, d.QueueTimeout)
	dur(&c.TimeoutMargin, d.TimeoutMargin)
	dur(&c.DefaultTimeout, d.DefaultTimeout)
	if c.DefaultMaxBody == 0 {
		c.DefaultMaxBody = d.DefaultMaxBody
	}
	return c
}

// Validate reports every bad field at once. Everything that Render writes
// into the file is checked here or in Render, so no value can break out of
// its line or quotes.
func (c RenderConfig) Validate() error {
	var errs []error
	bad := func(field, format string, a ...any) {
		errs = append(errs, fmt.Errorf("%s: "+format, append([]any{field}, a...)...))
	}
	if err := renderCheckAddr(c.Listen); err != nil {
		bad("Listen", "%v", err)
	}
	if err := renderCheckAddr(c.AdminListen); err != nil {
		bad("AdminListen", "%v", err)
	}
	if c.RuntimeSocket == "" {
		bad("RuntimeSocket", "required")
	} else if err := renderCheckPath(c.RuntimeSocket, 107); err != nil {
		bad("RuntimeSocket", "%v", err)
	}
	if c.ServerStateFile != "" {
		if err := renderCheckPath(c.ServerStateFile, 4096); err != nil {
			bad("ServerStateFile", "%v", err)
		}
	}
	if c.Log != "" && !renderPlainWords(c.Log) {
		bad("Log", "%q: want HAProxy log arguments of letters, digits and ./:@_- separated by single spaces", c.Log)
	}
	if c.Balance != BalanceLeastConn && c.Balance != BalanceRoundRobin {
		bad("Balance", "%q: want %s or %s", c.Balance, BalanceLeastConn, BalanceRoundRobin)
	}
	if c.CheckFall < 1 || c.CheckRise < 1 {
		bad("CheckFall/CheckRise", "%d/%d: want at least 1", c.CheckFall, c.CheckRise)
	}
	if c.MaxConn < 1 || c.MaxConn > 1<<20 {
		bad("MaxConn", "%d: want 1 to %d", c.MaxConn, 1<<20)
	}
	if c.ServerMaxConn < 0 {
		bad("ServerMaxConn", "%d: want 0 (no cap) or more", c.ServerMaxConn)
	}
	for _, d := range []struct {
		field string
		v     time.Duration
		zero  bool
	}{
		{"CheckInterval", c.CheckInterval, false},
		{"CheckTimeout", c.CheckTimeout, false},
		{"ConnectTimeout", c.ConnectTimeout, false},
		{"ClientTimeout", c.ClientTimeout, false},
		{"RequestTimeout", c.RequestTimeout, false},
		{"KeepAliveTimeout", c.KeepAliveTimeout, false},
		{"QueueTimeout", c.QueueTimeout, false},
		{"TimeoutMargin", c.TimeoutMargin, true},
		{"HardStopAfter", c.HardStopAfter, true},
		{"DefaultTimeout", c.DefaultTimeout, false},
	} {
		if err := renderCheckDuration(d.v, d.zero); err != nil {
			bad(d.field, "%v", err)
		}
	}
	if c.DefaultMaxBody < 1 {
		bad("DefaultMaxBody", "%d: want at least 1 byte", c.DefaultMaxBody)
	}
	if c.BackupAddr != "" {
		if err := renderCheckServerAddr(c.BackupAddr); err != nil {
			bad("BackupAddr", "%v", err)
		}
	}
	if c.KeysMap != "" {
		if err := renderCheckPath(c.KeysMap, 4096); err != nil {
			bad("KeysMap", "%v", err)
		}
	}
	if c.TLSCert != "" {
		if err := renderCheckPath(c.TLSCert, 4096); err != nil {
			bad("TLSCert", "%v", err)
		}
	}
	if c.ReplicaAuth != "" {
		if err := CheckReplicaAuth(c.ReplicaAuth); err != nil {
			bad("ReplicaAuth", "%v", err) // never the credential itself
		}
	}
	return errors.Join(errs...)
}

// FunctionError is Render's error for one function whose catalog entry it
// cannot render (a bad name, label, task ID or address). The caller may
// leave that function out and render the rest.
type FunctionError struct {
	Function string
	Err      error
}

func (e *FunctionError) Error() string { return fmt.Sprintf("function %q: %v", e.Function, e.Err) }
func (e *FunctionError) Unwrap() error { return e.Err }

// BackendName is the HAProxy backend of a function.
func BackendName(function string) string { return "fn_" + function }

// ServerName is the HAProxy server of a replica: its task ID, which must be
// 1–64 ASCII letters and digits (Swarm's IDs are 25 of them).
func ServerName(taskID string) (string, error) {
	if len(taskID) == 0 || len(taskID) > 64 {
		return "", fmt.Errorf("task ID %q: want 1 to 64 letters and digits", taskID)
	}
	for i := 0; i < len(taskID); i++ {
		if c := taskID[i]; !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return "", fmt.Errorf("task ID %q: want 1 to 64 letters and digits", taskID)
		}
	}
	return taskID, nil
}

// Render returns the complete haproxy.cfg for the catalog. It is pure and
// deterministic: the functions are sorted by name and their replicas by
// task ID whatever the input order, and the catalog's Version is not
// written, so the same functions and replicas give the same bytes and a
// caller can skip a reload when nothing changed.
//
// Routing, in the gateway frontend, in this order:
//
//   - anything not under /function/ → 404 {"error":"not found"};
//   - /function/<name>/_/… (after percent-decoding, as the watchdog's Go
//     server sees it) → 404 {"error":"not found"}: the watchdog's reserved
//     space is never public;
//   - the path becomes what follows /function/<name> ("" → "/"), the query
//     is kept, and the request goes to backend fn_<name>, or → 404
//     {"error":"function not found","function":"<name>"} when there is none;
//   - a request head over maxHeaderBytes → 431;
//   - in the backend: for a function with keys in the keys map, a missing
//     or wrong invoke key → 401 (then the Authorization header is removed:
//     the function never sees the key); a Content-Length over the
//     function's pulse.max-body → 413; the replica credential set on the
//     request (and on health checks); no usable server (none, all draining
//     or down, no backup) → 503 with Retry-After: 1.
//
// Every such answer, and every error HAProxy makes itself at the HTTP level
// (401, 403, 404, 408, 413, 429, 502, 503, 504, ...), is JSON with a
// trailing newline, as the watchdog writes its own. The exception is HAProxy
// 2.6's HTTP/1 parser, whose 400 and 408 (malformed request, head over its
// buffer, head not complete in time) are a built-in HTML page that no
// configuration replaces. Every request gets an X-Request-ID, and so does its response:
// the client's own when it sends exactly one of 1–128 characters from
// [A-Za-z0-9._:+=/-] (so a chain of functions keeps one ID), otherwise a
// new UUID. X-Forwarded-For is set to the client's address alone: HAProxy
// is the edge, and a value from the client would be believed by a function
// that reads the first one.
func Render(cfg RenderConfig, cat contract.Catalog, slots Slots) ([]byte, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("render haproxy.cfg: %w", err)
	}
	fns, err := renderBackends(cfg, cat, slots)
	if err != nil {
		return nil, fmt.Errorf("render haproxy.cfg: %w", err)
	}

	longest := cfg.DefaultTimeout + cfg.TimeoutMargin
	for _, f := range fns {
		longest = max(longest, f.serverTimeout)
	}
	hardStop := cfg.HardStopAfter
	if hardStop == 0 {
		hardStop = max(cfg.ClientTimeout, cfg.KeepAliveTimeout, longest) + 30*time.Second
	}

	var w renderWriter
	w.line("# haproxy.cfg for Pulse's gateway, written by pulsed (gateway.Render).")
	w.line("# Do not edit: the next render replaces it.")
	w.blank()

	w.line("global")
	w.in("master-worker")
	w.in("maxconn %d", cfg.MaxConn+adminMaxConn)
	w.in("hard-stop-after %s", renderDuration(hardStop))
	w.in("stats socket %s mode 600 level admin expose-fd listeners", cfg.RuntimeSocket)
	if cfg.ServerStateFile != "" {
		w.in("server-state-file %s", cfg.ServerStateFile)
	}
	if cfg.Log != "" {
		w.in("log %s", cfg.Log)
	}
	w.blank()

	w.line("defaults")
	w.in("mode http")
	if cfg.Log != "" {
		w.in("log global")
		w.in("option httplog")
		w.in("option dontlognull")
	}
	w.comment("On a reload, an idle client connection is closed after its next response, not reset (DESIGN.md §7).")
	w.in("option idle-close-on-response")
	w.in("option http-keep-alive")
	w.in("option forwardfor")
	w.comment("A failed connection is retried at once on another server; see disable-l7-retry below.")
	w.in("option redispatch 1")
	w.in("retries 2")
	w.in("retry-on conn-failure empty-response")
	w.in("timeout connect %s", renderDuration(cfg.ConnectTimeout))
	w.in("timeout client %s", renderDuration(cfg.ClientTimeout))
	w.in("timeout http-request %s", renderDuration(cfg.RequestTimeout))
	w.in("timeout http-keep-alive %s", renderDuration(cfg.KeepAliveTimeout))
	w.in("timeout queue %s", renderDuration(cfg.QueueTimeout))
	w.in("timeout server %s", renderDuration(cfg.DefaultTimeout+cfg.TimeoutMargin))
	if cfg.ServerStateFile != "" {
		w.in("load-server-state-from-file global")
	}
	for _, e := range renderHTTPErrors {
		line := fmt.Sprintf("http-error status %d content-type application/json string %s", e.status, renderQuote(renderJSONError(e.msg)))
		if e.status == 503 {
			line += " hdr Retry-After 1"
		}
		w.in("%s", line)
	}
	w.blank()

	w.line("frontend gateway")
	if cfg.TLSCert != "" {
		w.in("bind %s ssl crt %s alpn http/1.1", cfg.Listen, cfg.TLSCert)
	} else {
		w.in("bind %s", cfg.Listen)
	}
	w.in("maxconn %d", cfg.MaxConn)
	w.comment("X-Request-ID: the client's own if it sends one plausible ID, else a new UUID; echoed in the response.")
	w.in("unique-id-format %%[var(txn.request_id)]")
	w.in("http-request set-var(txn.request_id) req.fhdr(x-request-id) if { req.fhdr_cnt(x-request-id) eq 1 } { req.fhdr(x-request-id) -m reg %s }", requestIDPattern)
	w.in("http-request set-var(txn.request_id) uuid unless { var(txn.request_id) -m found }")
	w.in("http-request set-header X-Request-ID %%[var(txn.request_id)]")
	w.in("http-after-response set-header X-Request-ID %%[var(txn.request_id)] if { var(txn.request_id) -m found }")
	w.comment(fmt.Sprintf("A request head over %d bytes: 431 JSON. (Over HAProxy's buffer, ~15 KiB, HAProxy 2.6 answers", maxHeaderBytes))
	w.comment("its built-in HTML 400 itself before any rule runs: that page cannot be configured.)")
	w.in("http-request return status 431 content-type application/json string %s if { req.hdrs,length gt %d }",
		renderQuote(renderJSONError("request header fields too large")), maxHeaderBytes)
	w.comment("X-Forwarded-For: the client's address only (option forwardfor); HAProxy is the edge.")
	w.in("http-request del-header X-Forwarded-For")
	w.comment("A request that may have reached the function is retried only if its method is safe.")
	w.in("http-request disable-l7-retry unless { method GET HEAD OPTIONS }")
	w.in("http-request return status 404 content-type application/json string %s unless { path_beg /function/ }", renderQuote(renderJSONError("not found")))
	w.comment("The watchdog's reserved space, as its Go server decodes the path.")
	w.in("http-request return status 404 content-type application/json string %s if { path,url_dec -m reg ^/function/[^/]*/_/ }", renderQuote(renderJSONError("not found")))
	w.in("http-request set-var(txn.function) path,field(3,/)")
	w.comment("/function/<name>[/rest][?query] → /[rest][?query]")
	w.in("http-request set-path /%%[path,field(4,/,0)]")
	w.comment("A name without a backend falls through to " + unknownBackend + ".")
	w.in("use_backend %s%%[var(txn.function)]", BackendName(""))
	w.in("default_backend %s", unknownBackend)
	w.blank()

	w.line("backend %s", unknownBackend)
	w.comment("A retired worker (after a reload) serves the idle keep-alive connections it still has with the old")
	w.comment("configuration: a function added since is unknown to it. Say so with a 503 to retry on a new connection.")
	w.in("http-request return status 503 content-type application/json lf-string %s hdr Retry-After 0 hdr Connection close if { stopping }",
		renderQuote(`{"error":"gateway reloading: retry","function":"%[var(txn.function),json(utf8s)]"}`+"\n"))
	w.in("http-request return status 404 content-type application/json lf-string %s",
		renderQuote(`{"error":"function not found","function":"%[var(txn.function),json(utf8s)]"}`+"\n"))
	w.blank()

	for _, f := range fns {
		f.write(&w, cfg)
		w.blank()
	}

	w.line("frontend admin")
	w.in("bind %s", cfg.AdminListen)
	w.in("maxconn %d", adminMaxConn)
	if cfg.Log != "" {
		w.in("http-request set-log-level silent") // Netdata scrapes every second
	}
	w.in("http-request use-service prometheus-exporter if { path /metrics }")
	w.in("http-request return status 404 content-type application/json string %s unless { path_beg /stats }", renderQuote(renderJSONError("not found")))
	w.in("stats enable")
	w.in("stats uri /stats")
	w.in("stats refresh 5s")
	return w.Bytes(), nil
}

const (
	// adminMaxConn is the admin frontend's share of the global maxconn.
	adminMaxConn = 64
	// unknownBackend answers 404 for a name that has no backend.
	unknownBackend = "pulse_unknown_function"
	// requestIDPattern is what a client's X-Request-ID must match to be
	// kept: short, and safe in logs and JSON.
	requestIDPattern = `^[A-Za-z0-9._:+=/-]{1,128}$`
	// maxRenderDuration bounds every timeout (HAProxy's limit is 2^31 ms).
	maxRenderDuration = 24 * time.Hour
	// maxHeaderBytes is the largest request head answered normally; above
	// it, 431. Below HAProxy's default buffer (16 KiB less its 1 KiB
	// rewrite reserve), so the JSON 431 can be sent at all.
	maxHeaderBytes = 12 << 10
	// maxRenderBody bounds pulse.max-body (1 PiB): HAProxy's "gt N" needs
	// N+1 in a signed 64-bit integer.
	maxRenderBody = 1 << 50
)

// renderHTTPErrors are the errors HAProxy makes itself, in JSON.
var renderHTTPErrors = []struct {
	status int
	msg    string
}{
	{400, "bad request"},
	{401, "unauthorized"},
	{403, "forbidden"},
	{404, "not found"},
	{405, "method not allowed"},
	{408, "request timeout"},
	{410, "gone"},
	{413, "request body too large"},
	{425, "too early"},
	{429, "too many requests"},
	{500, "internal error"},
	{501, "not implemented"},
	{502, "bad gateway"},
	{503, "service unavailable"},
	{504, "gateway timeout"},
}

// renderBackend is one function, checked and ready to write.
type renderBackend struct {
	name          string
	serverTimeout time.Duration
	maxBody       int64
	servers       []renderServer
}

type renderServer struct {
	name, addr string
	draining   bool
	free       bool
}

// renderBackends checks every function of the catalog and sorts them.
// Replicas go into the slots given; a function without slots there (or
// every function, with nil slots) gets the slots a fresh Place would give.
func renderBackends(cfg RenderConfig, cat contract.Catalog, slots Slots) ([]renderBackend, error) {
	out := make([]renderBackend, 0, len(cat.Functions))
	seen := map[string]bool{}
	var errs []error
	for _, fn := range cat.Functions {
		bs := slots.Of(fn.Name)
		if bs == nil {
			fresh := Slots{}
			fresh.Place(contract.Catalog{Functions: []contract.CatalogFunction{fn}})
			bs = fresh.Of(fn.Name)
		}
		b, err := renderFunction(cfg, fn, bs)
		if err == nil && seen[fn.Name] {
			err = errors.New("listed twice in the catalog")
		}
		if err != nil {
			errs = append(errs, &FunctionError{Function: fn.Name, Err: err})
			continue
		}
		seen[fn.Name] = true
		out = append(out, b)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	slices.SortFunc(out, func(a, b renderBackend) int { return strings.Compare(a.name, b.name) })
	return out, nil
}

func renderFunction(cfg RenderConfig, fn contract.CatalogFunction, slots *BackendSlots) (renderBackend, error) {
	set, err := catalog.CheckFunction(fn.Name, fn.Labels)
	if err != nil {
		return renderBackend{}, err
	}
	b := renderBackend{name: fn.Name, serverTimeout: cfg.DefaultTimeout, maxBody: cfg.DefaultMaxBody}
	if set.Timeout > 0 {
		b.serverTimeout = set.Timeout
	}
	b.serverTimeout += cfg.TimeoutMargin
	if set.MaxBody > 0 {
		b.maxBody = set.MaxBody
	}
	byTask := map[string]contract.Replica{}
	for _, r := range fn.Replicas {
		if _, err := ServerName(r.TaskID); err != nil {
			return renderBackend{}, err
		}
		if _, dup := byTask[r.TaskID]; dup {
			return renderBackend{}, fmt.Errorf("task %s listed twice", r.TaskID)
		}
		if err := renderCheckServerAddr(r.Addr); err != nil {
			return renderBackend{}, fmt.Errorf("task %s: address: %v", r.TaskID, err)
		}
		byTask[r.TaskID] = r
	}
	for i, t := range slots.Tasks {
		r, ok := byTask[t]
		if t == "" || !ok {
			b.servers = append(b.servers, renderServer{name: SlotServer(i), addr: freeSlotAddr, free: true})
			continue
		}
		b.servers = append(b.servers, renderServer{name: SlotServer(i), addr: r.Addr, draining: r.Draining,
			free: !r.Draining && cfg.ProbeNew && !r.Routed})
	}
	return b, nil
}

// freeSlotAddr is the address a free slot is declared with: it is disabled
// (in maintenance, no checks) until pulsed points it at a replica.
const freeSlotAddr = "127.0.0.1:1"

func (b renderBackend) write(w *renderWriter, cfg RenderConfig) {
	w.line("backend %s", BackendName(b.name))
	w.in("balance %s", cfg.Balance)
	w.in("timeout server %s", renderDuration(b.serverTimeout))
	w.in("option httpchk")
	if cfg.ReplicaAuth != "" {
		w.in("http-check send meth GET uri %s hdr %s %s", contract.HealthPath, contract.HeaderReplicaAuth, renderQuote(cfg.ReplicaAuth))
	} else {
		w.in("http-check send meth GET uri %s", contract.HealthPath)
	}
	w.in("http-check expect status 200")
	w.in("timeout check %s", renderDuration(cfg.CheckTimeout))
	w.comment("Every server is a slot: the settings of every replica are on this line, whichever way it came.")
	w.in("%s", serverDefaults(cfg))
	if cfg.KeysMap != "" {
		w.comment("Invoke keys, looked up at request time in the keys map (changed through the runtime API, no reload):")
		w.comment("\"<name> required\" protects the function, \"<name>/<sha256 of a key> ok\" is one of its keys.")
		w.in("http-request set-var(txn.pulse_digest) req.fhdr(authorization),bytes(7),sha2(256),hex,lower if { req.fhdr_cnt(authorization) eq 1 } { req.fhdr(authorization) -i -m beg %s }",
			renderQuote("bearer "))
		w.in("http-request set-var(txn.pulse_key) str(%s/),concat(,txn.pulse_digest,)", b.name)
		w.in("http-request return status 401 content-type application/json string %s hdr WWW-Authenticate %s if { str(%s),map(%s) -m str %s } !{ var(txn.pulse_key),map(%s) -m str %s }",
			renderQuote(renderJSONError("invoke key required", "function", b.name)), renderQuote(`Bearer realm="pulse"`),
			b.name, cfg.KeysMap, keysMapRequired, cfg.KeysMap, keysMapOK)
		w.in("http-request del-header Authorization if { str(%s),map(%s) -m str %s }", b.name, cfg.KeysMap, keysMapRequired)
	}
	if cfg.ReplicaAuth != "" {
		w.comment("The replica credential: replicas serve nobody else. Replaces any value a client sent.")
		w.in("http-request set-header %s %s", contract.HeaderReplicaAuth, renderQuote(cfg.ReplicaAuth))
	}
	w.in("http-request return status 413 content-type application/json string %s if { req.hdr_val(content-length) gt %d }",
		renderQuote(fmt.Sprintf(`{"error":"request body too large","function":%q,"limit":%d}`+"\n", b.name, b.maxBody)), b.maxBody)
	// No usable replica: HAProxy's own 503, in JSON with Retry-After. Not an
	// `http-request return ... if { nbsrv eq 0 }`: measured, nbsrv reads 0
	// for a moment in a freshly reloaded worker, which turned ~2 requests per
	// reload into 503s; the error page applies only when no server can
	// really take the request.
	w.in("http-error status 503 content-type application/json string %s hdr Retry-After 1",
		renderQuote(renderJSONError("no replica available", "function", b.name)))
	if cfg.BackupAddr != "" {
		w.in("http-request set-header %s %s", HeaderFunction, b.name)
	}
	for _, s := range b.servers {
		switch {
		case s.free && s.addr != freeSlotAddr:
			w.in("server %s %s check disabled # not probed yet", s.name, s.addr)
		case s.free:
			w.in("server %s %s check disabled", s.name, s.addr)
		case s.draining:
			w.in("server %s %s check weight 0 # draining", s.name, s.addr)
		default:
			w.in("server %s %s check", s.name, s.addr)
		}
	}
	if cfg.BackupAddr != "" {
		w.in("server %s %s backup", BackupServerName, cfg.BackupAddr)
	}
}

// serverDefaults is the default-server line of every backend: the one
// place a replica's server settings are built. Health checks every
// CheckInterval (down after CheckFall failures, up after CheckRise
// successes); live traffic observed at layer 4, so the first connection a
// replica refuses or lets time out marks it down at once (a dead replica
// leaves before its checks notice); init-addr so an unresolvable name never
// stops HAProxy from starting.
func serverDefaults(cfg RenderConfig) string {
	ds := fmt.Sprintf("default-server inter %s fall %d rise %d observe layer4 error-limit 1 on-error mark-down init-addr libc,none",
		renderDuration(cfg.CheckInterval), cfg.CheckFall, cfg.CheckRise)
	if cfg.ServerMaxConn > 0 {
		ds += fmt.Sprintf(" maxconn %d", cfg.ServerMaxConn)
	}
	return ds
}

// renderWriter writes the file: sections at the margin, their lines
// indented by four spaces.
type renderWriter struct{ b strings.Builder }

func (w *renderWriter) line(format string, a ...any) { fmt.Fprintf(&w.b, format+"\n", a...) }
func (w *renderWriter) in(format string, a ...any)   { fmt.Fprintf(&w.b, "    "+format+"\n", a...) }
func (w *renderWriter) comment(text string)          { w.b.WriteString("    # " + text + "\n") }
func (w *renderWriter) blank()                       { w.b.WriteString("\n") }

// Bytes returns the file.
func (w *renderWriter) Bytes() []byte { return []byte(w.b.String()) }

// renderJSONError is a JSON object {"error":msg, k1:v1, ...} of strings
// plus a newline, as the watchdog writes errors.
func renderJSONError(msg string, kv ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, `{"error":%q`, msg)
	for i := 0; i+1 < len(kv); i += 2 {
		fmt.Fprintf(&b, `,%q:%q`, kv[i], kv[i+1])
	}
	b.WriteString("}\n")
	return b.String()
}

// renderQuote writes s as one double-quoted HAProxy word: backslash, double
// quote and dollar (environment expansion) are escaped, a newline becomes
// \n. Callers pass only printable ASCII and newlines.
func renderQuote(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '\\', '"', '$':
			b.WriteByte('\\')
			b.WriteByte(c)
		case '\n':
			b.WriteString(`\n`)
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// renderDuration writes d in HAProxy's units: whole seconds as "Ns",
// anything else in milliseconds, rounded up.
func renderDuration(d time.Duration) string {
	if d%time.Second == 0 {
		return strconv.FormatInt(int64(d/time.Second), 10) + "s"
	}
	ms := (d + time.Millisecond - 1) / time.Millisecond
	return strconv.FormatInt(int64(ms), 10) + "ms"
}

func renderCheckDuration(d time.Duration, zeroOK bool) error {
	switch {
	case d == 0 && zeroOK:
		return nil
	case d <= 0:
		return fmt.Errorf("%s: want a positive duration", d)
	case d > maxRenderDuration:
		return fmt.Errorf("%s: want at most %s", d, maxRenderDuration)
	}
	return nil
}

// renderCheckAddr accepts host:port with a port from 1 to 65535 and a host
// that is empty, an IP address or a DNS name. IPv6 hosts are bracketed,
// which HAProxy reads too.
func renderCheckAddr(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%q: want host:port", addr)
	}
	if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 || port != strconv.Itoa(p) {
		return fmt.Errorf("%q: want a port from 1 to 65535", addr)
	}
	if ip := net.ParseIP(host); ip != nil {
		if strings.Contains(host, ":") && !strings.HasPrefix(addr, "[") {
			return fmt.Errorf("%q: bracket an IPv6 address", addr)
		}
		return nil
	}
	if host != "" && !renderDNSName(host) {
		return fmt.Errorf("%q: want an IP address or a DNS name", addr)
	}
	return nil
}

// renderCheckServerAddr is renderCheckAddr with a host required.
func renderCheckServerAddr(addr string) error {
	if err := renderCheckAddr(addr); err != nil {
		return err
	}
	if strings.HasPrefix(addr, ":") {
		return fmt.Errorf("%q: want a host before the port", addr)
	}
	return nil
}

// renderDNSName reports whether s is a DNS name: dot-separated labels of
// letters, digits and '-', none starting or ending with '-'.
func renderDNSName(s string) bool {
	if len(s) > 253 {
		return false
	}
	for _, l := range strings.Split(s, ".") {
		if len(l) == 0 || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return false
		}
		for i := 0; i < len(l); i++ {
			if c := l[i]; !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}

// renderCheckPath accepts an absolute path of letters, digits and ./_-.
func renderCheckPath(p string, maxLen int) error {
	if !strings.HasPrefix(p, "/") || len(p) > maxLen {
		return fmt.Errorf("%q: want an absolute path of at most %d bytes", p, maxLen)
	}
	for i := 0; i < len(p); i++ {
		if c := p[i]; !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("./_-", c) >= 0) {
			return fmt.Errorf("%q: want only letters, digits and ./_- in the path", p)
		}
	}
	return nil
}

// renderPlainWords reports whether s is words of letters, digits and
// ./:@_- separated by single spaces.
func renderPlainWords(s string) bool {
	for _, word := range strings.Split(s, " ") {
		if word == "" {
			return false
		}
		for i := 0; i < len(word); i++ {
			if c := word[i]; !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("./:@_-", c) >= 0) {
				return false
			}
		}
	}
	return true
}

// CheckReplicaAuth accepts a replica credential: 16–256 visible ASCII
// characters, none of "'\$%# (HAProxy would read them as quoting, a
// variable, a log-format tag or a comment). Its error never contains the
// credential.
func CheckReplicaAuth(c string) error {
	const want = "want 16 to 256 visible ASCII characters, none of \"'\\$%# and no spaces"
	if len(c) < 16 || len(c) > 256 {
		return errors.New(want)
	}
	for i := 0; i < len(c); i++ {
		if ch := c[i]; ch < 0x21 || ch > 0x7e || strings.IndexByte("\"'\\$%#", ch) >= 0 {
			return errors.New(want)
		}
	}
	return nil
}

// renderFunctionName reports whether s is a function name: a DNS label of
// a-z, 0-9 and '-' that starts with a letter (as `pulse new` requires).
func renderFunctionName(s string) bool {
	if len(s) == 0 || len(s) > 63 || s[0] < 'a' || s[0] > 'z' || s[len(s)-1] == '-' {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

package gateway

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/pulsefaas/pulse/contract"
	"github.com/pulsefaas/pulse/internal/catalog"
)

// BackupServerName is the name of the backup server in every backend. It
// cannot collide with a replica's server: task IDs have no '-'.
const BackupServerName = "pulsed-backup"

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

// renderBackend is one function, checked and ready to write.
type renderBackend struct {
	name          string
	serverTimeout time.Duration
	maxBody       int64
	rateLimit     *contract.RateLimit
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
	b.rateLimit = set.RateLimit
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
		w.in("http-request return status 401 content-type application/json string %s hdr WWW-Authenticate %s if { str(%s),map(%s) -m str %s } !{ var(txn.pulse_key),map(%s) -m str %s }%s",
			renderQuote(renderJSONError("invoke key required", "function", b.name)), renderQuote(`Bearer realm="pulse"`),
			b.name, cfg.KeysMap, keysMapRequired, cfg.KeysMap, keysMapOK, dispatchSkip(cfg))
		w.in("http-request del-header Authorization if { str(%s),map(%s) -m str %s }", b.name, cfg.KeysMap, keysMapRequired)
	}
	if r := b.rateLimit; r != nil {
		writeRateLimit(w, cfg, b.name, *r)
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
	ds := fmt.Sprintf("default-server inter %s fastinter %s fall %d rise %d observe layer4 error-limit 1 on-error mark-down init-addr libc,none",
		renderDuration(cfg.CheckInterval), renderDuration(cfg.CheckFastInterval), cfg.CheckFall, cfg.CheckRise)
	if cfg.ServerMaxConn > 0 {
		ds += fmt.Sprintf(" maxconn %d", cfg.ServerMaxConn)
	}
	return ds
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

// writeRateLimit writes a function's rate limit (functions.yml rate_limit):
// a stick table counts the requests it let through (gpc0, whose rate is
// taken over the limit's period) per key, and a request over the limit is
// denied with 429, JSON and Retry-After. Counting only what went through
// makes the answered rate the limit, however hard a client pushes; a denial
// is counted by HAProxy as a denied request of the backend (dreq), never as
// a request to a replica, so it is not demand the scaler sees. The key:
// the function (one budget), the client's address, or the invoke key
// (a valid key of this function; requests without one share a budget, so
// sending made-up keys gains nothing). Tables start empty when HAProxy
// reloads.
func writeRateLimit(w *renderWriter, cfg RenderConfig, name string, r contract.RateLimit) {
	w.comment(fmt.Sprintf("Rate limit: %d requests per %s, by %s; the excess gets 429.", r.Requests, renderDuration(r.Per), r.By))
	expire := renderDuration(2 * r.Per)
	store := fmt.Sprintf("store gpc0,gpc0_rate(%s)", renderDuration(r.Per))
	switch r.By {
	case contract.RateByClient:
		w.in("stick-table type ipv6 size 100k expire %s %s", expire, store)
		w.in("http-request track-sc0 src")
	case contract.RateByKey:
		w.in("stick-table type string len 64 size 100k expire %s %s", expire, store)
		w.in("http-request set-var(txn.pulse_rate_key) str(none)")
		if cfg.KeysMap != "" {
			w.in("http-request set-var(txn.pulse_rate_key) var(txn.pulse_digest) if { var(txn.pulse_key),map(%s) -m str %s }", cfg.KeysMap, keysMapOK)
		}
		w.in("http-request track-sc0 var(txn.pulse_rate_key)")
	default:
		w.in("stick-table type string len 64 size 1 expire %s %s", expire, store)
		w.in("http-request track-sc0 str(%s)", name)
	}
	retry := max(1, int((r.Per/time.Duration(r.Requests)+time.Second-1)/time.Second))
	body := fmt.Sprintf(`{"error":"rate limit exceeded","function":%q,"limit":%d,"per":%q,"by":%q}`+"\n", name, r.Requests, renderDuration(r.Per), r.By)
	w.in("http-request deny deny_status 429 content-type application/json string %s hdr Retry-After %d if { sc_gpc0_rate(0) ge %d }%s",
		renderQuote(body), retry, r.Requests, dispatchSkip(cfg))
	if skip := dispatchSkip(cfg); skip != "" {
		w.in("http-request sc-inc-gpc0(0) if%s", skip)
	} else {
		w.in("http-request sc-inc-gpc0(0)")
	}
}

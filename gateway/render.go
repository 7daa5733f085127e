package gateway

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/pulsefaas/pulse/contract"
)

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
	if cfg.DispatchListen != "" {
		w.in("maxconn %d", cfg.MaxConn+adminMaxConn+dispatchMaxConn)
	} else {
		w.in("maxconn %d", cfg.MaxConn+adminMaxConn)
	}
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
	w.comment("The async request id and attempt are pulsed's to set (a function may rely on them to be idempotent).")
	w.in("http-request del-header %s", contract.HeaderAsyncRequestID)
	w.in("http-request del-header %s", contract.HeaderAttempt)
	w.comment("A request that may have reached the function is retried only if its method is safe.")
	w.in("http-request disable-l7-retry unless { method GET HEAD OPTIONS }")
	writeFunctionRouting(&w, cfg.AsyncAddr != "")
	w.blank()

	w.line("backend %s", unknownBackend)
	w.comment("A retired worker (after a reload) serves the idle keep-alive connections it still has with the old")
	w.comment("configuration: a function added since is unknown to it. Say so with a 503 to retry on a new connection.")
	w.comment(contract.HeaderUnrouted + ": the gateway's own answer, not a function's (pulsed's dispatcher does not count it as an attempt).")
	w.in("http-request return status 503 content-type application/json lf-string %s hdr Retry-After 0 hdr Connection close hdr %s 1 if { stopping }",
		renderQuote(`{"error":"gateway reloading: retry","function":"%[var(txn.function),json(utf8s)]"}`+"\n"), contract.HeaderUnrouted)
	w.in("http-request return status 404 content-type application/json lf-string %s hdr %s 1",
		renderQuote(`{"error":"function not found","function":"%[var(txn.function),json(utf8s)]"}`+"\n"), contract.HeaderUnrouted)
	w.blank()

	if cfg.AsyncAddr != "" {
		writeAsyncBackend(&w, cfg)
		w.blank()
	}
	for _, f := range fns {
		f.write(&w, cfg)
		w.blank()
	}
	if cfg.DispatchListen != "" {
		writeDispatchFrontend(&w, cfg)
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

// writeFunctionRouting writes the rules that send /function/<name>[/rest]
// (and, with async, /async-function/<name>[/rest] to asyncBackend) to the
// function's backend, with the path rewritten to /[rest][?query].
func writeFunctionRouting(w *renderWriter, async bool) {
	notFound := renderQuote(renderJSONError("not found"))
	w.comment("A path with an invalid percent-escape: JSON 400 here (Go's servers, the watchdog's and pulsed's, answer plain text).")
	w.in("http-request return status 400 content-type application/json string %s unless { path,url_dec -m found }",
		renderQuote(renderJSONError("bad request: the path has an invalid percent-escape (write % as %25)")))
	if async {
		w.in("http-request return status 404 content-type application/json string %s unless { path_beg /function/ %s }", notFound, contract.AsyncFunctionPrefix)
		w.comment("The watchdog's reserved space, as its Go server decodes the path.")
		w.in("http-request return status 404 content-type application/json string %s if { path,url_dec -m reg ^/(async-)?function/[^/]*/_/ }", notFound)
		w.in("http-request set-var(txn.pulse_async) bool(true) if { path_beg %s }", contract.AsyncFunctionPrefix)
	} else {
		w.in("http-request return status 404 content-type application/json string %s unless { path_beg /function/ }", notFound)
		w.comment("The watchdog's reserved space, as its Go server decodes the path.")
		w.in("http-request return status 404 content-type application/json string %s if { path,url_dec -m reg ^/function/[^/]*/_/ }", notFound)
	}
	w.in("http-request set-var(txn.function) path,field(3,/)")
	w.comment("/function/<name>[/rest][?query] → /[rest][?query]")
	w.in("http-request set-path /%%[path,field(4,/,0)]")
	if async {
		w.comment("Async invoke: pulsed stores the request and answers 202 (after the function's key check there).")
		w.in("use_backend %s if { var(txn.pulse_async) -m bool }", asyncBackend)
	}
	w.comment("A name without a backend falls through to " + unknownBackend + ".")
	w.in("use_backend %s%%[var(txn.function)]", BackendName(""))
	w.in("default_backend %s", unknownBackend)
}

// writeAsyncBackend writes the backend that hands async requests to
// pulsed: the invoke-key check of the function named in the path (the keys
// map is keyed by name, so one backend serves every function), then pulsed.
// pulsed answers 404 for a function it does not know and 413 over the
// function's body limit, as the function's own backend would.
func writeAsyncBackend(w *renderWriter, cfg RenderConfig) {
	w.line("backend %s", asyncBackend)
	w.in("timeout server %s", renderDuration(asyncEnqueueTimeout))
	if cfg.KeysMap != "" {
		w.comment("The function's invoke keys, as in its own backend.")
		w.in("http-request set-var(txn.pulse_digest) req.fhdr(authorization),bytes(7),sha2(256),hex,lower if { req.fhdr_cnt(authorization) eq 1 } { req.fhdr(authorization) -i -m beg %s }",
			renderQuote("bearer "))
		w.in("http-request set-var(txn.pulse_key) var(txn.function),concat(/,txn.pulse_digest,)")
		w.in("http-request return status 401 content-type application/json lf-string %s hdr WWW-Authenticate %s if { var(txn.function),map(%s) -m str %s } !{ var(txn.pulse_key),map(%s) -m str %s }",
			renderQuote(`{"error":"invoke key required","function":"%[var(txn.function),json(utf8s)]"}`+"\n"), renderQuote(`Bearer realm="pulse"`),
			cfg.KeysMap, keysMapRequired, cfg.KeysMap, keysMapOK)
		w.in("http-request del-header Authorization if { var(txn.function),map(%s) -m str %s }", cfg.KeysMap, keysMapRequired)
	}
	w.in("http-request set-header %s %%[var(txn.function)]", HeaderFunction)
	if cfg.ReplicaAuth != "" {
		w.comment("pulsed takes async requests from HAProxy only: the replica credential says so.")
		w.in("http-request set-header %s %s", contract.HeaderReplicaAuth, renderQuote(cfg.ReplicaAuth))
	}
	w.in("http-error status 503 content-type application/json string %s hdr Retry-After 1",
		renderQuote(renderJSONError("async queue unavailable")))
	w.in("server pulsed %s", cfg.AsyncAddr)
}

// writeDispatchFrontend writes the frontend pulsed's dispatcher invokes
// functions through: loopback, its token required, then the gateway's own
// routing into the functions' backends, which skip the key check and the
// rate limit for it (var txn.pulse_dispatch).
func writeDispatchFrontend(w *renderWriter, cfg RenderConfig) {
	w.line("frontend dispatch")
	w.in("bind %s", cfg.DispatchListen)
	w.in("maxconn %d", dispatchMaxConn)
	w.in("http-request deny deny_status 403 content-type application/json string %s unless { req.hdr(%s) -m str %s }",
		renderQuote(renderJSONError("forbidden")), contract.HeaderDispatch, renderQuote(cfg.DispatchToken))
	w.in("http-request del-header %s", contract.HeaderDispatch)
	w.in("http-request set-var(txn.pulse_dispatch) bool(true)")
	w.comment("X-Forwarded-For: the client's, as stored with the request; added only if it had none.")
	w.in("option forwardfor if-none")
	w.in("unique-id-format %%[var(txn.request_id)]")
	w.in("http-request set-var(txn.request_id) req.fhdr(x-request-id) if { req.fhdr_cnt(x-request-id) eq 1 } { req.fhdr(x-request-id) -m reg %s }", requestIDPattern)
	w.in("http-request set-var(txn.request_id) uuid unless { var(txn.request_id) -m found }")
	w.in("http-request set-header X-Request-ID %%[var(txn.request_id)]")
	w.in("http-request disable-l7-retry unless { method GET HEAD OPTIONS }")
	writeFunctionRouting(w, false)
}

// dispatchSkip is the condition a function backend adds to its key check
// and rate limit when the dispatch frontend exists.
func dispatchSkip(cfg RenderConfig) string {
	if cfg.DispatchListen == "" {
		return ""
	}
	return " !{ var(txn.pulse_dispatch) -m bool }"
}

const (
	// asyncBackend hands async requests to pulsed.
	asyncBackend = "pulse_async"
	// asyncEnqueueTimeout bounds pulsed's 202: a synced write.
	asyncEnqueueTimeout = 30 * time.Second
	// dispatchMaxConn caps the dispatch frontend's connections: the
	// dispatcher's own cap (async.MaxDispatches) over every function.
	dispatchMaxConn = 1024
)

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

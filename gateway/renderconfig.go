package gateway

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"
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
	// after CheckFall failed checks and up after CheckRise good ones; after
	// a first failure (or success while down) the next check comes after
	// CheckFastInterval (fastinter), so a verdict takes about
	// CheckInterval/2 + CheckFall × CheckTimeout. The check is GET
	// contract.HealthPath, expecting 200, answered within CheckTimeout. The
	// watchdog answers it at once, saturated or not (measured on the lab at
	// 100 % CPU: p99 31 ms, max 103 ms), so a timeout is a replica that
	// answers nothing: a frozen node, whose kernel still accepts the
	// connection. A dead replica leaves faster than the checks could tell:
	// live traffic is observed too, and the first failed connection marks
	// the server down. Defaults (500 ms, 1 s, 2, 100 ms): a frozen node's
	// replicas leave within about 2.5 s (bench suite cluster).
	CheckInterval     time.Duration
	CheckTimeout      time.Duration
	CheckFastInterval time.Duration
	CheckFall         int
	CheckRise         int
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

	// AsyncAddr (host:port, optional) is pulsed's async listener: the
	// gateway routes contract.AsyncFunctionPrefix + <name>[/rest] there
	// (backend pulse_async) after the function's invoke-key check, with the
	// name in X-Pulse-Function, the path rewritten as for /function/ and
	// the replica credential set (pulsed takes requests from HAProxy only).
	// Empty: /async-function/ is 404 like any other path.
	AsyncAddr string
	// DispatchListen (host:port, optional; loopback) is the dispatch
	// frontend: pulsed's async dispatcher invokes functions there, with
	// DispatchToken in contract.HeaderDispatch (anything else gets 403). It
	// routes /function/<name> to the same backends as the gateway, skipping
	// the invoke-key check (done at enqueue) and the rate limit (dispatch
	// has its own concurrency). Both or neither.
	DispatchListen string
	DispatchToken  string
}

// Balancing algorithms.
const (
	BalanceLeastConn  = "leastconn"
	BalanceRoundRobin = "roundrobin"
)

// DefaultRenderConfig returns the defaults of DESIGN.md §2: the gateway on
// 0.0.0.0:8080, the admin port on 127.0.0.1:8404. RuntimeSocket has no
// default.
func DefaultRenderConfig() RenderConfig {
	return RenderConfig{
		Listen:            "0.0.0.0:8080",
		AdminListen:       "127.0.0.1:8404",
		Balance:           BalanceLeastConn,
		CheckInterval:     500 * time.Millisecond,
		CheckTimeout:      time.Second,
		CheckFastInterval: 100 * time.Millisecond,
		CheckFall:         2,
		CheckRise:         1,
		MaxConn:           4096,
		ConnectTimeout:    2 * time.Second,
		ClientTimeout:     60 * time.Second,
		RequestTimeout:    10 * time.Second,
		KeepAliveTimeout:  30 * time.Second,
		QueueTimeout:      5 * time.Second,
		TimeoutMargin:     time.Second,
		DefaultTimeout:    30 * time.Second,
		DefaultMaxBody:    10 << 20,
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
	dur(&c.CheckFastInterval, d.CheckFastInterval)
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
	if c.AsyncAddr != "" {
		if err := renderCheckServerAddr(c.AsyncAddr); err != nil {
			bad("AsyncAddr", "%v", err)
		}
	}
	switch {
	case (c.DispatchListen == "") != (c.DispatchToken == ""):
		bad("DispatchListen", "want both DispatchListen and DispatchToken, or neither")
	case c.DispatchListen != "":
		if err := renderCheckAddr(c.DispatchListen); err != nil {
			bad("DispatchListen", "%v", err)
		}
		if err := CheckReplicaAuth(c.DispatchToken); err != nil {
			bad("DispatchToken", "%v", err) // never the token itself
		}
	}
	return errors.Join(errs...)
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

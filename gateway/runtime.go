package gateway

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"
)

// Runtime is a client for HAProxy's runtime API on the stats socket (a unix
// socket declared with `stats socket <path> level admin`). It changes the
// servers of a backend without a reload: pulsed uses it for every replica
// that comes or goes.
//
// Every command opens its own connection, sends one line and reads the
// answer until HAProxy closes the connection (the non-interactive mode), all
// within the client's per-command timeout or the context's deadline,
// whichever is sooner. Commands are prefixed with `set severity-output
// number` so HAProxy marks its messages with a syslog severity ("[3]: No
// such server."); an error severity (0–3) becomes a *RuntimeError, which
// matches the sentinels below with errors.Is.
//
// It never creates servers (`add server`): a server created that way
// reused no idle connection in HAProxy 2.6. Every server is a slot declared
// in the rendered file (see Slots) and only re-pointed and switched here.
type Runtime struct {
	socket  string
	timeout time.Duration
}

// DefaultRuntimeTimeout bounds one runtime API command when NewRuntime gets
// no timeout.
const DefaultRuntimeTimeout = 2 * time.Second

// NewRuntime returns a client for the stats socket at socket; timeout bounds
// each command (DefaultRuntimeTimeout if zero or negative).
func NewRuntime(socket string, timeout time.Duration) *Runtime {
	if timeout <= 0 {
		timeout = DefaultRuntimeTimeout
	}
	return &Runtime{socket: socket, timeout: timeout}
}

// Sentinels for HAProxy's expected refusals; a *RuntimeError wraps them.
var (
	ErrNoBackend        = errors.New("no such backend")
	ErrNoServer         = errors.New("no such server")
	ErrServerExists     = errors.New("server already exists")
	ErrServerNotInMaint = errors.New("server is not in maintenance")
	ErrServerHasConns   = errors.New("server still has connections")
	ErrUnknownCommand   = errors.New("unknown command")
	ErrPermissionDenied = errors.New("permission denied")
)

// RuntimeError is HAProxy refusing a runtime API command.
type RuntimeError struct {
	Command  string // the command as sent, without the severity prefix
	Severity int    // syslog severity HAProxy gave the message (0–7)
	Message  string // HAProxy's message, e.g. "No such server."
	kind     error  // one of the sentinels, or nil
}

func (e *RuntimeError) Error() string { return "haproxy: " + e.Message }

// Unwrap returns the sentinel the message matches, if any.
func (e *RuntimeError) Unwrap() error { return e.kind }

// runtimeRefusals maps HAProxy 2.6's messages to sentinels (prefix match).
var runtimeRefusals = []struct {
	prefix string
	err    error
}{
	{"No such backend.", ErrNoBackend},
	{"Can't find backend.", ErrNoBackend}, // show servers state <unknown>
	{"No such server.", ErrNoServer},
	{"Already exists a server with the same name in backend.", ErrServerExists},
	{"Only servers in maintenance mode can be deleted.", ErrServerNotInMaint},
	{"Server still has connections attached to it", ErrServerHasConns},
	{"Unknown command", ErrUnknownCommand},
	{"Permission denied", ErrPermissionDenied},
}

// parseRuntimeAnswer reads what HAProxy wrote for `set severity-output
// number; <command>`: an empty line for the first command, then either plain
// output (show commands) or messages prefixed "[<severity>]: ". It returns
// the output with the prefix and the leading empty line removed, or a
// *RuntimeError for an error severity (or an "Unknown command" help text,
// which HAProxy prints at severity 6).
func parseRuntimeAnswer(command, answer string) (string, error) {
	body := strings.TrimLeft(answer, "\n")
	if !strings.HasPrefix(body, "[") {
		return body, nil
	}
	end := strings.Index(body, "]: ")
	if end < 2 {
		return body, nil
	}
	sev, err := strconv.Atoi(body[1:end])
	if err != nil || sev < 0 || sev > 7 {
		return body, nil
	}
	msg := strings.TrimRight(body[end+3:], "\n")
	var kind error
	for _, r := range runtimeRefusals {
		if strings.HasPrefix(msg, r.prefix) {
			kind = r.err
			break
		}
	}
	if sev <= 3 || kind == ErrUnknownCommand || kind == ErrPermissionDenied {
		first, _, _ := strings.Cut(msg, "\n")
		if kind == ErrUnknownCommand {
			msg = first // drop the list of commands HAProxy suggests
		}
		return "", &RuntimeError{Command: command, Severity: sev, Message: msg, kind: kind}
	}
	return msg, nil
}

// Exec sends one runtime API command and returns HAProxy's answer, or a
// *RuntimeError if HAProxy refused it. The command must be a single line
// without ';' (HAProxy's command separator): Exec sends exactly one command.
func (r *Runtime) Exec(ctx context.Context, command string) (string, error) {
	if strings.ContainsAny(command, ";\n\r\\") || strings.TrimSpace(command) == "" {
		return "", fmt.Errorf("runtime api: refusing command %q: empty or has ';', '\\' or a line break", command)
	}
	answer, err := cliExec(ctx, r.socket, "set severity-output number; "+command, r.timeout)
	if err != nil {
		return "", fmt.Errorf("runtime api %s: %w", r.socket, err)
	}
	return parseRuntimeAnswer(command, answer)
}

// Servers lists the servers of backend as `show servers state <backend>`
// reports them, in HAProxy's order; backend "" lists every backend's servers.
func (r *Runtime) Servers(ctx context.Context, backend string) ([]ServerState, error) {
	cmd := "show servers state"
	if backend != "" {
		if err := checkRuntimeName("backend", backend); err != nil {
			return nil, fmt.Errorf("show servers state: %w", err)
		}
		cmd += " " + backend
	}
	out, err := r.Exec(ctx, cmd)
	if err != nil {
		return nil, fmt.Errorf("show servers state %s: %w", backend, err)
	}
	servers, err := ParseServersState(strings.NewReader(out))
	if err != nil {
		return nil, fmt.Errorf("show servers state %s: %w", backend, err)
	}
	return servers, nil
}

// AdminState is a server's administrative state as `set server ... state`
// takes it.
type AdminState string

// Administrative states.
const (
	StateReady AdminState = "ready" // takes traffic (if health allows)
	StateDrain AdminState = "drain" // keeps its connections, gets no new ones (except persistence)
	StateMaint AdminState = "maint" // no traffic; the only state a server can be deleted in
)

// SetState sets a server's administrative state (`set server <b>/<s> state
// ready|drain|maint`). Ready takes effect at once, without the rise count;
// drain stops new connections but keeps existing ones; maint stops all new
// traffic (established connections finish).
func (r *Runtime) SetState(ctx context.Context, backend, name string, state AdminState) error {
	op := "set server " + backend + "/" + name + " state " + string(state)
	if err := checkServerRef(backend, name); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	if err := checkAdminState(state); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	if _, err := r.Exec(ctx, op); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	return nil
}

// SetAddr points a server at addr (host:port with an IP address): `set
// server <b>/<s> addr <ip> port <port>`. The server's health checks follow
// it. Set the server to maint first: a server in rotation would send the
// next request to an unprobed replica.
func (r *Runtime) SetAddr(ctx context.Context, backend, name, addr string) error {
	op := "set server " + backend + "/" + name + " addr " + addr
	if err := checkServerRef(backend, name); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil || net.ParseIP(host) == nil {
		return fmt.Errorf("%s: want IP:port", op)
	}
	if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
		return fmt.Errorf("%s: bad port", op)
	}
	if _, err := r.Exec(ctx, "set server "+backend+"/"+name+" addr "+host+" port "+port); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	return nil
}

func checkAdminState(s AdminState) error {
	switch s {
	case StateReady, StateDrain, StateMaint:
		return nil
	}
	return fmt.Errorf("state %q: want ready, drain or maint", s)
}

func checkServerRef(backend, name string) error {
	if err := checkRuntimeName("backend", backend); err != nil {
		return err
	}
	return checkRuntimeName("server", name)
}

// checkRuntimeName accepts the characters HAProxy allows in proxy and server
// names (letters, digits, '-', '_', '.', ':'); anything else could change the
// meaning of a CLI line.
func checkRuntimeName(what, s string) error {
	if s == "" {
		return fmt.Errorf("empty %s name", what)
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.' || c == ':') {
			return fmt.Errorf("%s name %q: only letters, digits, '-', '_', '.' and ':' are allowed", what, s)
		}
	}
	return nil
}

// OpState is a server's operational state (srv_op_state).
type OpState int

// Operational states, as HAProxy numbers them.
const (
	OpStopped  OpState = 0 // down: failed checks, or in maintenance
	OpStarting OpState = 1 // up, in slowstart
	OpRunning  OpState = 2 // up
	OpStopping OpState = 3 // up, but soft-stopping (e.g. disable-on-404)
)

func (s OpState) String() string {
	switch s {
	case OpStopped:
		return "stopped"
	case OpStarting:
		return "starting"
	case OpRunning:
		return "running"
	case OpStopping:
		return "stopping"
	}
	return "OpState(" + strconv.Itoa(int(s)) + ")"
}

// AdminFlags is a server's administrative state bit field (srv_admin_state).
type AdminFlags uint

// Administrative flags, as HAProxy 2.6 defines them (enum srv_admin).
const (
	AdminForcedMaint     AdminFlags = 0x01 // set server state maint, or a new runtime server
	AdminInheritedMaint  AdminFlags = 0x02 // from a tracked server
	AdminConfigMaint     AdminFlags = 0x04 // `disabled` in the configuration
	AdminForcedDrain     AdminFlags = 0x08 // set server state drain
	AdminInheritedDrain  AdminFlags = 0x10 // from a tracked server
	AdminResolutionMaint AdminFlags = 0x20 // the address does not resolve

	// adminMaintMask is HAProxy's SRV_ADMF_MAINT: AdminConfigMaint stays
	// set on a server declared `disabled` after it was set ready, so it
	// alone does not mean maintenance (a `disabled` server starts with
	// AdminForcedMaint too).
	adminMaintMask = AdminForcedMaint | AdminInheritedMaint | AdminResolutionMaint
	adminDrainMask = AdminForcedDrain | AdminInheritedDrain
)

// State reduces the flags to the state `set server ... state` speaks of:
// maint wins over drain, as in HAProxy.
func (f AdminFlags) State() AdminState {
	switch {
	case f&adminMaintMask != 0:
		return StateMaint
	case f&adminDrainMask != 0:
		return StateDrain
	}
	return StateReady
}

// Health-check state flags (srv_check_state), as HAProxy 2.6 defines them.
const (
	CheckInProgress = 0x01
	CheckConfigured = 0x02
	CheckEnabled    = 0x04
	CheckPaused     = 0x08
)

// ServerState is one line of `show servers state` (format version 1).
type ServerState struct {
	BackendID       int
	Backend         string
	ID              int
	Name            string
	Addr            string // IP address, as HAProxy resolved it
	Port            int
	OpState         OpState
	Admin           AdminFlags
	UserWeight      int           // current weight
	InitWeight      int           // configured weight
	SinceLastChange time.Duration // since the last operational or admin change
	CheckStatus     int           // HCHK_STATUS_* of the last check (e.g. 15 = L7OK)
	CheckResult     int           // CHK_RES_*: 0 unknown, 1 neutral, 2 failed, 3 passed, 4 conditional pass
	CheckHealth     int           // check counter, 0 … rise+fall-1
	CheckState      int           // CHK_ST_* flags
	AgentState      int
	FQDN            string // "" when HAProxy prints "-"
	SRVRecord       string // "" when "-"
	UseSSL          bool
	CheckPort       int
	CheckAddr       string // "" when "-"
	AgentAddr       string // "" when "-"
	AgentPort       int
}

// State is the server's administrative state: ready, drain or maint.
func (s ServerState) State() AdminState { return s.Admin.State() }

// Serving reports whether the server gets new requests: administratively
// ready and operationally up.
func (s ServerState) Serving() bool {
	return s.Admin.State() == StateReady && (s.OpState == OpRunning || s.OpState == OpStarting)
}

// HealthEnabled reports whether active health checks run on the server.
func (s ServerState) HealthEnabled() bool {
	return s.CheckState&(CheckConfigured|CheckEnabled) == CheckConfigured|CheckEnabled && s.CheckState&CheckPaused == 0
}

// Address is the server's host:port.
func (s ServerState) Address() string {
	return net.JoinHostPort(s.Addr, strconv.Itoa(s.Port))
}

// serversStateColumns are the columns ParseServersState needs; later HAProxy
// versions append columns, which it ignores.
var serversStateColumns = []string{
	"be_id", "be_name", "srv_id", "srv_name", "srv_addr", "srv_op_state",
	"srv_admin_state", "srv_uweight", "srv_iweight", "srv_time_since_last_change",
	"srv_check_status", "srv_check_result", "srv_check_health", "srv_check_state",
	"srv_agent_state", "srv_fqdn", "srv_port", "srvrecord", "srv_use_ssl",
	"srv_check_port", "srv_check_addr", "srv_agent_addr", "srv_agent_port",
}

// ParseServersState parses the output of `show servers state [<backend>]`:
// a format version line ("1"), a "# " header naming the columns, then one
// line of space-separated fields per server. Columns are found by name, so
// appended columns do no harm; a missing column, a short line or a field
// that is not a number where one is due is an error naming the line.
func ParseServersState(r io.Reader) ([]ServerState, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	var (
		lineNo  int
		version bool
		cols    map[string]int
		ncols   int
		out     []ServerState
	)
	for sc.Scan() {
		lineNo++
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "":
			continue
		case !version:
			if line != "1" {
				return nil, fmt.Errorf("servers state line %d: format version %q, want 1", lineNo, line)
			}
			version = true
			continue
		case strings.HasPrefix(line, "#"):
			if cols != nil {
				continue // a repeated header
			}
			names := strings.Fields(strings.TrimPrefix(line, "#"))
			cols = make(map[string]int, len(names))
			for i, n := range names {
				if _, dup := cols[n]; !dup {
					cols[n] = i
				}
			}
			for _, c := range serversStateColumns {
				if _, ok := cols[c]; !ok {
					return nil, fmt.Errorf("servers state line %d: no column %s", lineNo, c)
				}
			}
			ncols = len(names)
			continue
		case cols == nil:
			return nil, fmt.Errorf("servers state line %d: server line before the header", lineNo)
		}
		f := strings.Fields(line)
		if len(f) != ncols {
			return nil, fmt.Errorf("servers state line %d: %d fields, want %d", lineNo, len(f), ncols)
		}
		s, err := serverStateFromFields(f, cols)
		if err != nil {
			return nil, fmt.Errorf("servers state line %d: %w", lineNo, err)
		}
		out = append(out, s)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("servers state line %d: %w", lineNo+1, err)
	}
	if !version {
		return nil, errors.New("servers state: empty answer")
	}
	if cols == nil {
		return nil, errors.New("servers state: no header")
	}
	return out, nil
}

func serverStateFromFields(f []string, cols map[string]int) (ServerState, error) {
	var firstErr error
	num := func(col string) int {
		v, err := strconv.Atoi(f[cols[col]])
		if err != nil && firstErr == nil {
			firstErr = fmt.Errorf("column %s: %q is not a number", col, f[cols[col]])
		}
		return v
	}
	str := func(col string) string {
		if v := f[cols[col]]; v != "-" {
			return v
		}
		return ""
	}
	s := ServerState{
		BackendID:   num("be_id"),
		Backend:     f[cols["be_name"]],
		ID:          num("srv_id"),
		Name:        f[cols["srv_name"]],
		Addr:        str("srv_addr"),
		Port:        num("srv_port"),
		OpState:     OpState(num("srv_op_state")),
		UserWeight:  num("srv_uweight"),
		InitWeight:  num("srv_iweight"),
		CheckStatus: num("srv_check_status"),
		CheckResult: num("srv_check_result"),
		CheckHealth: num("srv_check_health"),
		CheckState:  num("srv_check_state"),
		AgentState:  num("srv_agent_state"),
		FQDN:        str("srv_fqdn"),
		SRVRecord:   str("srvrecord"),
		UseSSL:      num("srv_use_ssl") != 0,
		CheckPort:   num("srv_check_port"),
		CheckAddr:   str("srv_check_addr"),
		AgentAddr:   str("srv_agent_addr"),
		AgentPort:   num("srv_agent_port"),
	}
	admin := num("srv_admin_state")
	since := num("srv_time_since_last_change")
	if firstErr != nil {
		return ServerState{}, firstErr
	}
	if admin < 0 {
		return ServerState{}, fmt.Errorf("column srv_admin_state: negative %d", admin)
	}
	if since < 0 || since > 1<<32 {
		return ServerState{}, fmt.Errorf("column srv_time_since_last_change: %d out of range", since)
	}
	s.Admin = AdminFlags(admin)
	s.SinceLastChange = time.Duration(since) * time.Second
	return s, nil
}

// maxCLIAnswer caps what one CLI command may return (show servers state for
// thousands of servers is well below it).
const maxCLIAnswer = 16 << 20

// cliExec sends one command line to a HAProxy CLI socket (the stats socket
// or the master socket) and returns everything HAProxy writes until it
// closes the connection, within timeout (and ctx).
func cliExec(ctx context.Context, socket, command string, timeout time.Duration) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", socket)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if _, err := io.WriteString(conn, command+"\n"); err != nil {
		return "", ctxOr(ctx, fmt.Errorf("send %q: %w", command, err))
	}
	// HAProxy answers at once but closes the connection only once our side
	// is closed: shut down writing so it does.
	if uc, ok := conn.(*net.UnixConn); ok {
		if err := uc.CloseWrite(); err != nil {
			return "", ctxOr(ctx, fmt.Errorf("send %q: %w", command, err))
		}
	}
	b, err := io.ReadAll(io.LimitReader(conn, maxCLIAnswer+1))
	if err != nil {
		return string(b), ctxOr(ctx, fmt.Errorf("read answer to %q: %w", command, err))
	}
	if len(b) > maxCLIAnswer {
		return "", fmt.Errorf("answer to %q: longer than %d bytes", command, maxCLIAnswer)
	}
	return string(b), nil
}

// ctxOr prefers the context's error (deadline, cancel) to the I/O error it
// caused.
func ctxOr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("%w (%w)", err, ctx.Err())
	}
	return err
}

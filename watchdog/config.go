package watchdog

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/pulsefaas/pulse/contract"
)

// Config is the watchdog's configuration, read from the environment by
// ConfigFromEnv. Zero values are replaced by defaults in ConfigFromEnv, not
// by Validate, so a Config built in code states every value it uses.
type Config struct {
	Function       string        // function name, labels every metric
	Mode           string        // contract.ModeInProcess, ModeFork or ModeHTTP
	Exec           []string      // argv of the function process (fork, http)
	Upstream       string        // host:port on 127.0.0.1 of the http-mode process
	Listen         string        // listen address
	Timeout        time.Duration // exec timeout per request
	MaxBody        int64         // request body cap, bytes
	MaxResponse    int64         // response body cap, bytes
	MaxInflight    int64         // concurrent requests cap; 0 = unlimited
	ReadTimeout    time.Duration // whole request read, headers and body
	WriteTimeout   time.Duration // from end of request headers to end of response
	IdleTimeout    time.Duration // keep-alive idle
	MaxHeaderBytes int           // request header cap, bytes
	DrainGrace     time.Duration // serve-while-failing-health period after SIGTERM
	MaxOverdue     int64         // in-process handlers past their deadline before health fails; 0 = no limit
	MaxProcesses   int64         // fork: function processes at once, each with an OS thread reserved at start; 0 = fit the pids limit, at most contract.DefaultMaxProcesses
	LogLevel       slog.Level
	// ReplicaAuth is the replica credential every request must carry in
	// contract.HeaderReplicaAuth; "" checks nothing. Read from the file
	// named by contract.EnvReplicaAuthFile; never logged.
	ReplicaAuth string
}

// Defaults, documented in the watchdog README. Those the CLI also writes
// into a function's spec and service live in contract (defaults.go); the
// names here are aliases of them.
const (
	DefaultTimeout        = contract.DefaultTimeout
	DefaultMaxBody        = contract.DefaultMaxBody
	DefaultMaxResponse    = 10 << 20
	DefaultMaxInflight    = contract.DefaultMaxInflight
	DefaultReadTimeout    = 30 * time.Second
	DefaultIdleTimeout    = 120 * time.Second
	DefaultMaxHeaderBytes = 64 << 10
	DefaultDrainGrace     = contract.DefaultDrainGrace
	DefaultUpstream       = "127.0.0.1:3000"
	// writeSlack is added to the exec timeout for the default write timeout,
	// so a function that uses its whole timeout can still send its answer.
	writeSlack = 5 * time.Second
)

// ConfigFromEnv reads the configuration from an environment list in
// os.Environ form. mode is the mode the binary was built for: the in-process
// mode when a handler is linked in, otherwise "" to take PULSE_MODE. Every
// malformed value is reported, each naming its variable and the accepted form.
func ConfigFromEnv(env []string, mode string) (Config, error) {
	get := lookup(env)
	c := Config{
		Function:       get(contract.EnvFunction),
		Mode:           mode,
		Upstream:       DefaultUpstream,
		Listen:         ":" + strconv.Itoa(contract.WatchdogPort),
		Timeout:        DefaultTimeout,
		MaxBody:        DefaultMaxBody,
		MaxResponse:    DefaultMaxResponse,
		MaxInflight:    DefaultMaxInflight,
		ReadTimeout:    DefaultReadTimeout,
		IdleTimeout:    DefaultIdleTimeout,
		MaxHeaderBytes: DefaultMaxHeaderBytes,
		DrainGrace:     DefaultDrainGrace,
		MaxOverdue:     contract.DefaultMaxOverdue,
		LogLevel:       slog.LevelInfo,
	}
	var errs []error
	if v := get(contract.EnvMode); v != "" {
		if mode == contract.ModeInProcess && v != contract.ModeInProcess {
			errs = append(errs, fmt.Errorf("%s=%q: this binary has its function linked in; unset it or use %q", contract.EnvMode, v, contract.ModeInProcess))
		}
		if mode == "" {
			c.Mode = v
		}
	}
	if v := get(contract.EnvExec); v != "" {
		argv, err := parseExec(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", contract.EnvExec, err))
		}
		c.Exec = argv
	}
	if v := get(contract.EnvUpstream); v != "" {
		c.Upstream = v
	}
	if v := get(contract.EnvListen); v != "" {
		c.Listen = v
	}
	dur := func(name string, dst *time.Duration) {
		if v := get(name); v != "" {
			d, err := time.ParseDuration(v)
			if err != nil || d < 0 {
				errs = append(errs, fmt.Errorf("%s=%q: want a non-negative Go duration such as 500ms, 30s or 2m", name, v))
				return
			}
			*dst = d
		}
	}
	size := func(name string, dst *int64) {
		if v := get(name); v != "" {
			n, err := ParseSize(v)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s=%q: %w", name, v, err))
				return
			}
			*dst = n
		}
	}
	dur(contract.EnvTimeout, &c.Timeout)
	dur(contract.EnvReadTimeout, &c.ReadTimeout)
	dur(contract.EnvIdleTimeout, &c.IdleTimeout)
	dur(contract.EnvDrainGrace, &c.DrainGrace)
	c.WriteTimeout = c.Timeout + writeSlack
	dur(contract.EnvWriteTimeout, &c.WriteTimeout)
	size(contract.EnvMaxBody, &c.MaxBody)
	size(contract.EnvMaxResponse, &c.MaxResponse)
	hb := int64(c.MaxHeaderBytes)
	size(contract.EnvMaxHeaderBytes, &hb)
	if hb > math.MaxInt32 {
		errs = append(errs, fmt.Errorf("%s: at most 2GiB", contract.EnvMaxHeaderBytes))
	} else {
		c.MaxHeaderBytes = int(hb)
	}
	if v := get(contract.EnvMaxInflight); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			errs = append(errs, fmt.Errorf("%s=%q: want a whole number ≥ 0 (0 = unlimited)", contract.EnvMaxInflight, v))
		} else {
			c.MaxInflight = n
		}
	}
	if v := get(contract.EnvMaxOverdue); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			errs = append(errs, fmt.Errorf("%s=%q: want a whole number ≥ 0 (0 = never fail health for handlers past their deadline)", contract.EnvMaxOverdue, v))
		} else {
			c.MaxOverdue = n
		}
	}
	if v := get(contract.EnvMaxProcesses); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		switch {
		case c.Mode != contract.ModeFork:
			errs = append(errs, fmt.Errorf("%s=%q: only fork mode starts a process per request; unset it", contract.EnvMaxProcesses, v))
		case err != nil || n < 1 || n > contract.MaxMaxProcesses:
			errs = append(errs, fmt.Errorf("%s=%q: want a whole number from 1 to %d", contract.EnvMaxProcesses, v, contract.MaxMaxProcesses))
		default:
			c.MaxProcesses = n
		}
	}
	if v := get(contract.EnvReplicaAuthFile); v != "" {
		cred, err := readReplicaAuth(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s=%q: %w", contract.EnvReplicaAuthFile, v, err))
		}
		c.ReplicaAuth = cred
	}
	if v := get(contract.EnvLogLevel); v != "" {
		if err := c.LogLevel.UnmarshalText([]byte(v)); err != nil {
			errs = append(errs, fmt.Errorf("%s=%q: want debug, info, warn or error", contract.EnvLogLevel, v))
		}
	}
	if len(errs) > 0 {
		return c, errors.Join(errs...)
	}
	return c, c.Validate()
}

// readReplicaAuth reads the replica credential from path: the file's
// content less one trailing newline, 1 to contract.MaxReplicaAuthBytes
// bytes, none of them a control character (HAProxy sends it as a header
// value).
func readReplicaAuth(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("cannot read the replica credential: %w (pulse deploy attaches it as the Docker secret %s)", err, contract.ReplicaAuthSecretTarget)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, contract.MaxReplicaAuthBytes+2))
	if err != nil {
		return "", fmt.Errorf("cannot read the replica credential: %w", err)
	}
	return parseReplicaAuth(b)
}

// parseReplicaAuth checks a credential file's content and returns the
// credential.
func parseReplicaAuth(b []byte) (string, error) {
	b = trimNewline(b)
	switch {
	case len(b) == 0:
		return "", errors.New("the replica credential file is empty")
	case len(b) > contract.MaxReplicaAuthBytes:
		return "", fmt.Errorf("the replica credential file is over %d bytes", contract.MaxReplicaAuthBytes)
	}
	for _, c := range b {
		if c < 0x20 || c == 0x7f {
			return "", errors.New("the replica credential holds a control character or a line break; want one line of printable characters")
		}
	}
	return string(b), nil
}

// trimNewline removes one trailing line break, "\n" or "\r\n".
func trimNewline(b []byte) []byte {
	switch {
	case bytes.HasSuffix(b, []byte("\r\n")):
		return b[:len(b)-2]
	case bytes.HasSuffix(b, []byte("\n")):
		return b[:len(b)-1]
	}
	return b
}

// Validate checks that the configuration is complete and consistent.
func (c Config) Validate() error {
	var errs []error
	if c.Function == "" {
		errs = append(errs, fmt.Errorf("%s is empty: set it to the function's name", contract.EnvFunction))
	} else if !validName(c.Function) {
		errs = append(errs, fmt.Errorf("%s=%q: a function name is a DNS label: 1-63 of a-z, 0-9 and '-', starting with a letter, not ending with '-'", contract.EnvFunction, c.Function))
	}
	switch c.Mode {
	case contract.ModeInProcess:
	case contract.ModeFork, contract.ModeHTTP:
		if len(c.Exec) == 0 {
			errs = append(errs, fmt.Errorf("%s is empty: mode %s needs the function's command, e.g. %s=/function", contract.EnvExec, c.Mode, contract.EnvExec))
		} else if err := checkExecutable(c.Exec[0]); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", contract.EnvExec, err))
		}
	case "":
		errs = append(errs, fmt.Errorf("%s is empty: want %s or %s (in-process functions link the watchdog library)", contract.EnvMode, contract.ModeFork, contract.ModeHTTP))
	default:
		errs = append(errs, fmt.Errorf("%s=%q: want %s or %s", contract.EnvMode, c.Mode, contract.ModeFork, contract.ModeHTTP))
	}
	if c.Mode == contract.ModeHTTP {
		host, port, err := net.SplitHostPort(c.Upstream)
		if err != nil || port == "" || (host != "127.0.0.1" && host != "localhost" && host != "::1") {
			errs = append(errs, fmt.Errorf("%s=%q: want 127.0.0.1:PORT, the loopback address the function process listens on", contract.EnvUpstream, c.Upstream))
		}
	}
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		errs = append(errs, fmt.Errorf("%s=%q: want HOST:PORT or :PORT", contract.EnvListen, c.Listen))
	}
	positive := func(name string, d time.Duration) {
		if d <= 0 {
			errs = append(errs, fmt.Errorf("%s must be above 0", name))
		}
	}
	positive(contract.EnvTimeout, c.Timeout)
	positive(contract.EnvReadTimeout, c.ReadTimeout)
	positive(contract.EnvWriteTimeout, c.WriteTimeout)
	positive(contract.EnvIdleTimeout, c.IdleTimeout)
	if c.MaxBody <= 0 {
		errs = append(errs, fmt.Errorf("%s must be above 0", contract.EnvMaxBody))
	}
	if c.MaxResponse <= 0 {
		errs = append(errs, fmt.Errorf("%s must be above 0", contract.EnvMaxResponse))
	}
	if c.MaxHeaderBytes < 1024 {
		errs = append(errs, fmt.Errorf("%s must be at least 1KiB", contract.EnvMaxHeaderBytes))
	}
	if c.MaxInflight < 0 {
		errs = append(errs, fmt.Errorf("%s must be ≥ 0", contract.EnvMaxInflight))
	}
	if c.MaxOverdue < 0 {
		errs = append(errs, fmt.Errorf("%s must be ≥ 0", contract.EnvMaxOverdue))
	}
	if c.MaxProcesses < 0 || c.MaxProcesses > contract.MaxMaxProcesses {
		errs = append(errs, fmt.Errorf("%s must be from 1 to %d (0: fit the pids limit)", contract.EnvMaxProcesses, contract.MaxMaxProcesses))
	}
	if c.DrainGrace < 0 {
		errs = append(errs, fmt.Errorf("%s must be ≥ 0", contract.EnvDrainGrace))
	}
	return errors.Join(errs...)
}

func lookup(env []string) func(string) string {
	m := make(map[string]string, len(env))
	for _, kv := range env {
		if k, v, ok := strings.Cut(kv, "="); ok {
			m[k] = v
		}
	}
	return func(k string) string { return strings.TrimSpace(m[k]) }
}

// parseExec splits a command: a JSON array of strings, or words separated by
// white space.
func parseExec(v string) ([]string, error) {
	if !strings.HasPrefix(v, "[") {
		return strings.Fields(v), nil
	}
	argv, err := parseStringArray(v)
	if err != nil {
		return nil, fmt.Errorf("%q: want a JSON array of strings or words separated by spaces: %w", v, err)
	}
	if len(argv) == 0 || argv[0] == "" {
		return nil, fmt.Errorf("%q: the command is empty", v)
	}
	return argv, nil
}

// parseStringArray reads a JSON array of strings. (encoding/json would add
// 90 KB to every function image for this one value.)
func parseStringArray(s string) ([]string, error) {
	s = strings.TrimSpace(s)
	if len(s) < 2 || s[0] != '[' || s[len(s)-1] != ']' {
		return nil, errors.New("not an array")
	}
	rest := strings.TrimSpace(s[1 : len(s)-1])
	var out []string
	for rest != "" {
		if rest[0] != '"' {
			return nil, errors.New("elements must be strings")
		}
		end := 1
		for ; end < len(rest) && rest[end] != '"'; end++ {
			if rest[end] == '\\' {
				end++
			}
		}
		if end >= len(rest) {
			return nil, errors.New("unterminated string")
		}
		str, err := unquoteJSON(rest[:end+1])
		if err != nil {
			return nil, err
		}
		out = append(out, str)
		rest = strings.TrimSpace(rest[end+1:])
		if rest == "" {
			break
		}
		if rest[0] != ',' {
			return nil, errors.New("missing ',' between elements")
		}
		rest = strings.TrimSpace(rest[1:])
		if rest == "" {
			return nil, errors.New("trailing ','")
		}
	}
	return out, nil
}

// unquoteJSON decodes a JSON string literal. Go's escapes are a superset of
// JSON's except for \/, which is rewritten first; control characters, which
// JSON forbids raw, are refused.
func unquoteJSON(q string) (string, error) {
	for i := 0; i < len(q); i++ {
		if q[i] < 0x20 {
			return "", errors.New("control character in string")
		}
		if q[i] == '\\' && i+1 < len(q) {
			switch q[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't', 'u':
			default:
				return "", fmt.Errorf("bad escape \\%c", q[i+1])
			}
			i++
		}
	}
	s, err := strconv.Unquote(strings.ReplaceAll(q, `\/`, "/"))
	if err != nil {
		return "", fmt.Errorf("bad string %s", q)
	}
	return s, nil
}

func checkExecutable(path string) error {
	if !filepath.IsAbs(path) {
		return fmt.Errorf("%q: want an absolute path (there is no PATH lookup in a Pulse image)", path)
	}
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("%q: %w", path, err)
	}
	if fi.IsDir() || fi.Mode().Perm()&0o111 == 0 {
		return fmt.Errorf("%q is not an executable file", path)
	}
	return nil
}

// ParseSize reads a byte count; it is contract.ParseSize, which the CLI
// also uses for a spec's max_body.
func ParseSize(v string) (int64, error) { return contract.ParseSize(v) }

// validName reports whether s is a DNS label that starts with a letter.
func validName(s string) bool {
	if len(s) == 0 || len(s) > 63 || s[0] < 'a' || s[0] > 'z' || s[len(s)-1] == '-' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

package watchdog

import (
	"net"
	"net/http"
	"strconv"
	"strings"

	"github.com/pulsefaas/pulse/contract"
)

// cgiVars are the request variables a fork-mode function receives, after the
// CGI/1.1 convention (RFC 3875). Each header becomes HTTP_<NAME>: upper case,
// '-' as '_'.
var cgiVars = []string{
	"GATEWAY_INTERFACE", "SERVER_PROTOCOL", "SERVER_SOFTWARE", "REQUEST_METHOD", "REQUEST_URI",
	"PATH_INFO", "QUERY_STRING", "CONTENT_TYPE", "CONTENT_LENGTH", "REMOTE_ADDR", "REMOTE_PORT",
}

// baseEnv is the watchdog's own environment minus every name a request could
// set, so a request variable can never be shadowed by (or shadow) an
// inherited one: execve keeps duplicates and getenv returns the first.
func baseEnv(env []string) []string {
	out := make([]string, 0, len(env))
	for _, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		// The credential file's name is the watchdog's business (a
		// function process in the same container could still read the
		// file: see the README).
		if strings.HasPrefix(k, "HTTP_") || isCGIVar(k) || k == contract.EnvReplicaAuthFile {
			continue
		}
		out = append(out, kv)
	}
	return out
}

func isCGIVar(k string) bool {
	for _, v := range cgiVars {
		if k == v {
			return true
		}
	}
	return false
}

// cgiEnv appends the request's CGI variables to base. Headers whose names
// are not plain tokens of letters, digits and '-' are left out (an '_' would
// make "X-A" and "X_A" collide), as are Proxy (httpoxy) and values holding a
// NUL, which no environment can carry. bodyLen is the body's real length.
func cgiEnv(base []string, r *http.Request, bodyLen int) []string {
	env := make([]string, 0, len(base)+12+len(r.Header))
	env = append(env, base...)
	env = append(env,
		"GATEWAY_INTERFACE=CGI/1.1",
		"SERVER_PROTOCOL="+r.Proto,
		"SERVER_SOFTWARE=pulse-watchdog/"+Version,
		"REQUEST_METHOD="+r.Method,
		"CONTENT_LENGTH="+strconv.Itoa(bodyLen),
	)
	if p := r.URL.Path; strings.IndexByte(p, 0) < 0 { // the fork runner refuses such a path with 400
		env = append(env, "PATH_INFO="+p)
	}
	if v := r.RequestURI; v != "" && !strings.ContainsRune(v, 0) {
		env = append(env, "REQUEST_URI="+v)
	}
	if q := r.URL.RawQuery; !strings.ContainsRune(q, 0) {
		env = append(env, "QUERY_STRING="+q)
	}
	if host, port, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		env = append(env, "REMOTE_ADDR="+host, "REMOTE_PORT="+port)
	}
	var buf []byte
	seen := make(map[string]bool, len(r.Header))
	for name, vals := range r.Header {
		if len(vals) == 0 {
			continue
		}
		buf = appendHeaderVar(buf[:0], name, vals)
		if buf == nil {
			continue
		}
		kv := string(buf)
		k, v, _ := strings.Cut(kv, "=")
		switch k {
		case "HTTP_PROXY", "HTTP_CONTENT_LENGTH":
			continue
		case "HTTP_CONTENT_TYPE":
			k, kv = "CONTENT_TYPE", "CONTENT_TYPE="+v
		}
		if seen[k] { // only headers set in code can differ in case alone
			continue
		}
		seen[k] = true
		env = append(env, kv)
	}
	return env
}

// appendHeaderVar appends HTTP_<NAME>=<values joined by ", "> to dst, or
// returns nil if the name or a value cannot be carried.
func appendHeaderVar(dst []byte, name string, vals []string) []byte {
	if name == "" {
		return nil
	}
	dst = append(dst, "HTTP_"...)
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c >= 'a' && c <= 'z':
			dst = append(dst, c-'a'+'A')
		case c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
			dst = append(dst, c)
		case c == '-':
			dst = append(dst, '_')
		default:
			return nil
		}
	}
	dst = append(dst, '=')
	for i, v := range vals {
		if strings.IndexByte(v, 0) >= 0 {
			return nil
		}
		if i > 0 {
			dst = append(dst, ", "...)
		}
		dst = append(dst, v...)
	}
	return dst
}

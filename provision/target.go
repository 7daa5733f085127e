package provision

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/user"
	"strconv"
	"strings"
)

// Target is a node to reach over SSH.
type Target struct {
	User string
	Host string // a host name or an IP address, without brackets
	Port int
}

// DefaultPort is SSH's port.
const DefaultPort = 22

// ErrBadTarget is wrapped by every error of ParseTarget.
var ErrBadTarget = errors.New("bad SSH target")

// ParseTarget parses "[user@]host[:port]" as ssh does: the user defaults to
// the current user's name and the port to 22. An IPv6 address with a port is
// written in brackets ("[fd00::1]:2222"); a bare IPv6 address has no port.
func ParseTarget(s string) (Target, error) {
	return parseTarget(s, currentUser)
}

// ParseSSHURL parses a Docker host URL ssh://[user@]host[:port], as
// DOCKER_HOST writes one (the CLI's and pulsed's docker_host): nothing after
// the host, no password (SSH uses keys).
func ParseSSHURL(s string) (Target, error) {
	bad := func(why string) (Target, error) {
		return Target{}, fmt.Errorf("%w %q: %s; want ssh://[user@]host[:port]", ErrBadTarget, s, why)
	}
	if !strings.HasPrefix(s, "ssh://") {
		return bad("not an ssh:// URL")
	}
	u, err := url.Parse(s)
	if err != nil {
		return bad(err.Error())
	}
	if (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		return bad("no path, query or fragment allowed")
	}
	if _, hasPass := u.User.Password(); hasPass {
		return bad("no password: SSH uses keys (the agent or identity files)")
	}
	hp := u.Host
	if name := u.User.Username(); name != "" {
		hp = name + "@" + hp
	}
	return ParseTarget(hp)
}

// currentUser is the name ssh would use when the target names none.
func currentUser() (string, error) {
	if u, err := user.Current(); err == nil && u.Username != "" {
		return u.Username, nil
	}
	if name := os.Getenv("USER"); name != "" {
		return name, nil
	}
	return "", errors.New("cannot tell the current user's name: write user@host")
}

func parseTarget(s string, defaultUser func() (string, error)) (Target, error) {
	bad := func(format string, a ...any) (Target, error) {
		return Target{}, fmt.Errorf("%w %q: %s", ErrBadTarget, s, fmt.Sprintf(format, a...))
	}
	if s == "" {
		return bad("empty; want [user@]host[:port]")
	}
	for _, r := range s {
		if r <= ' ' || r == 0x7f {
			return bad("contains a space or control character")
		}
	}
	t := Target{Port: DefaultPort}
	hostPort := s
	// The last '@' separates the user, as in ssh: a user name may hold one.
	if i := strings.LastIndexByte(s, '@'); i >= 0 {
		t.User, hostPort = s[:i], s[i+1:]
		if t.User == "" {
			return bad("empty user before '@'")
		}
		if strings.HasPrefix(t.User, "-") {
			return bad("user may not start with '-'")
		}
	}
	switch {
	case strings.HasPrefix(hostPort, "["):
		end := strings.IndexByte(hostPort, ']')
		if end < 0 {
			return bad("'[' without ']'")
		}
		t.Host = hostPort[1:end]
		if net.ParseIP(t.Host) == nil || !strings.Contains(t.Host, ":") {
			return bad("%q in brackets is not an IPv6 address", t.Host)
		}
		rest := hostPort[end+1:]
		if rest != "" {
			p, ok := strings.CutPrefix(rest, ":")
			if !ok {
				return bad("unexpected %q after ']'", rest)
			}
			port, err := parsePort(p)
			if err != nil {
				return bad("%v", err)
			}
			t.Port = port
		}
	case strings.Count(hostPort, ":") > 1:
		if net.ParseIP(hostPort) == nil {
			return bad("%q is not an IPv6 address; write [address]:port for a port", hostPort)
		}
		t.Host = hostPort
	default:
		host, p, hasPort := strings.Cut(hostPort, ":")
		t.Host = host
		if hasPort {
			port, err := parsePort(p)
			if err != nil {
				return bad("%v", err)
			}
			t.Port = port
		}
		if err := checkHostName(t.Host); err != nil {
			return bad("%v", err)
		}
	}
	if t.User == "" {
		name, err := defaultUser()
		if err != nil {
			return bad("%v", err)
		}
		t.User = name
	}
	return t, nil
}

func parsePort(p string) (int, error) {
	if p == "" {
		return 0, errors.New("empty port after ':'")
	}
	for _, r := range p {
		if r < '0' || r > '9' {
			return 0, fmt.Errorf("port %q is not a number", p)
		}
	}
	n, err := strconv.Atoi(p)
	if err != nil || n < 1 || n > 65535 {
		return 0, fmt.Errorf("port %q is not in 1-65535", p)
	}
	return n, nil
}

// checkHostName accepts a DNS name or an IPv4 address: letters, digits, '-',
// '_' and '.', not starting with '-' (it could pass for an option).
func checkHostName(h string) error {
	if h == "" {
		return errors.New("empty host")
	}
	if len(h) > 253 {
		return errors.New("host name longer than 253 characters")
	}
	if h[0] == '-' || h[0] == '.' {
		return fmt.Errorf("host %q may not start with %q", h, h[0])
	}
	for _, r := range h {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_', r == '.':
		default:
			return fmt.Errorf("host %q: %q is not allowed in a host name", h, r)
		}
	}
	return nil
}

// Addr is host:port for net.Dial.
func (t Target) Addr() string {
	return net.JoinHostPort(t.Host, strconv.Itoa(t.Port))
}

// String is user@host:port, which ParseTarget reads back.
func (t Target) String() string {
	return t.User + "@" + t.Addr()
}

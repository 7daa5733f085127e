package async

import (
	"context"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// policyWithOwn is a policy whose host has the given addresses.
func policyWithOwn(t *testing.T, allow []string, own ...string) *CallbackPolicy {
	t.Helper()
	p, err := NewCallbackPolicy(CallbackConfig{Allow: allow})
	if err != nil {
		t.Fatal(err)
	}
	p.ownAddrs = func() ([]net.Addr, error) {
		var out []net.Addr
		for _, o := range own {
			out = append(out, &net.IPNet{IP: net.ParseIP(o), Mask: net.CIDRMask(24, 32)})
		}
		return out, nil
	}
	return p
}

func TestCallbackPolicyCheckAddr(t *testing.T) {
	for _, c := range []struct {
		name  string
		allow []string
		addr  string
		want  string // "" allowed, else part of the error
	}{
		{"public address, no list", nil, "203.0.113.7:443", ""},
		{"private address, no list", nil, "10.1.2.3:8080", ""},
		{"loopback refused", nil, "127.0.0.1:8090", "loopback address"},
		{"other loopback refused", nil, "127.0.0.2:80", "loopback address"},
		{"IPv6 loopback refused", nil, "[::1]:80", "loopback address"},
		{"unspecified refused", nil, "0.0.0.0:80", "unspecified address"},
		{"link-local refused (cloud metadata)", nil, "169.254.169.254:80", "link-local address"},
		{"multicast refused", nil, "224.0.0.1:80", "multicast address"},
		{"this host's own address refused", nil, "192.168.5.10:19999", "this host's own address"},
		{"IPv4-mapped loopback refused", nil, "[::ffff:127.0.0.1]:80", "loopback address"},
		{"loopback allowed by its exact address and port", []string{"127.0.0.1:9000"}, "127.0.0.1:9000", ""},
		{"loopback, other port of the allowed one", []string{"127.0.0.1:9000"}, "127.0.0.1:8090", "loopback address"},
		{"loopback allowed by 127.0.0.0/8", []string{"127.0.0.0/8"}, "127.0.0.1:8090", ""},
		{"catch-all does not allow loopback", []string{"0.0.0.0/0"}, "127.0.0.1:8090", "loopback address"},
		{"catch-all does not allow own address", []string{"192.168.5.0/24"}, "192.168.5.10:80", "this host's own address"},
		{"own address allowed by itself", []string{"192.168.5.10/32"}, "192.168.5.10:80", ""},
		{"list given: outside it refused", []string{"10.0.0.0/8"}, "203.0.113.7:443", "not in async_callback_allow"},
		{"list given: inside it allowed", []string{"10.0.0.0/8"}, "10.9.9.9:443", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := policyWithOwn(t, c.allow, "192.168.5.10")
			err := p.CheckAddr(netip.MustParseAddrPort(c.addr))
			switch {
			case c.want == "" && err != nil:
				t.Errorf("%s: %v; want allowed", c.addr, err)
			case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
				t.Errorf("%s: %v; want an error with %q", c.addr, err, c.want)
			}
		})
	}
}

func TestCallbackPolicyCheckURL(t *testing.T) {
	p := policyWithOwn(t, nil)
	for raw, want := range map[string]string{
		"http://203.0.113.7/hook":             "",
		"https://[2001:db8::1]:8443/x":        "",
		"ftp://203.0.113.7/":                  `scheme "ftp"`,
		"http://user:pw@203.0.113.7/":         "credentials in the URL",
		"http:///nohost":                      "no host",
		"http://203.0.113.7:0/":               `port "0"`,
		"http://127.0.0.1:8090/v1/keys/":      "loopback",
		"http://localhost:8404/stats":         "loopback",
		"http://[::1]/":                       "loopback",
		"%zz":                                 "not a URL",
		"http://" + strings.Repeat("a", 2100): "longer than 2048",
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		err := p.CheckURL(ctx, raw)
		cancel()
		switch {
		case want == "" && err != nil:
			t.Errorf("%q: %v; want allowed", raw, err)
		case want != "" && (err == nil || !strings.Contains(err.Error(), want)):
			t.Errorf("%q: %v; want an error with %q", raw, err, want)
		}
	}
}

func TestNewCallbackPolicyRefusesBadEntries(t *testing.T) {
	_, err := NewCallbackPolicy(CallbackConfig{Allow: []string{"10.0.0.0/8", "example.com", "127.0.0.1", "1.2.3.4:0"}})
	if err == nil {
		t.Fatal("accepted a host name, an address without a port and port 0")
	}
	for _, bad := range []string{`"example.com"`, `"127.0.0.1"`, `"1.2.3.4:0"`} {
		if !strings.Contains(err.Error(), bad) {
			t.Errorf("error %q does not name %s", err, bad)
		}
	}
}

// The dialer checks the address it connects to, whatever the URL said.
func TestCallbackClientRefusesAtDial(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	p := policyWithOwn(t, nil)
	_, err = p.Client().Post("http://"+ln.Addr().String()+"/", "text/plain", strings.NewReader("x"))
	if err == nil || !strings.Contains(err.Error(), "loopback address: refused") {
		t.Fatalf("post to loopback: %v; want refused at dial", err)
	}
}

func FuzzCheckURL(f *testing.F) {
	f.Add("http://203.0.113.7/hook")
	f.Add("http://127.0.0.1:8090/")
	f.Add("https://[::ffff:127.0.0.1]:1/")
	p, _ := NewCallbackPolicy(CallbackConfig{Allow: []string{"10.0.0.0/8"}})
	p.ownAddrs = func() ([]net.Addr, error) { return nil, nil }
	f.Fuzz(func(t *testing.T, raw string) {
		// Only literal addresses: the fuzzer must not send DNS queries.
		if strings.ContainsAny(raw, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ") &&
			!strings.HasPrefix(raw, "http://") && !strings.HasPrefix(raw, "https://") {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		if p.CheckURL(ctx, raw) == nil && !strings.Contains(raw, "10.") {
			t.Fatalf("%q allowed outside the list", raw)
		}
	})
}

func TestBackoff(t *testing.T) {
	for n, want := range map[int]time.Duration{1: 500 * time.Millisecond, 2: time.Second, 3: 2 * time.Second, 8: time.Minute, 100: time.Minute} {
		if got := backoff(500*time.Millisecond, time.Minute, n); got != want {
			t.Errorf("backoff(%d) = %v; want %v", n, got, want)
		}
	}
}

func TestStoredHeader(t *testing.T) {
	for k, want := range map[string]bool{
		"Content-Type": true, "X-Custom": true, "Authorization": true,
		"Connection": false, "Transfer-Encoding": false, "X-Callback-Url": false, "X-Pulse-Replica-Auth": false,
		"X-Pulse-Function": false, "X-Pulse-Dispatch": false, "Nats-Msg-Id": false, "Pulse-Uri": false, "pulse-method": false,
	} {
		if got := storedHeader(k); got != want {
			t.Errorf("storedHeader(%q) = %v; want %v", k, got, want)
		}
	}
}

func TestValidID(t *testing.T) {
	if id := newID(); !ValidID(id) {
		t.Errorf("newID() = %q: not valid", id)
	}
	for _, bad := range []string{"", "abc", strings.Repeat("g", 32), strings.Repeat("A", 32), "../" + strings.Repeat("a", 29)} {
		if ValidID(bad) {
			t.Errorf("ValidID(%q) = true", bad)
		}
	}
}

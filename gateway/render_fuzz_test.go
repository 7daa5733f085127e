package gateway

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/pulsefaas/pulse/contract"
)

// renderFuzzInput renders one function named name with the given labels
// ("" = label absent) under a config with the credential cred ("" = none),
// a keys map and a TLS certificate.
func renderFuzzInput(name, timeout, maxBody, cred string) ([]byte, error) {
	labels := map[string]string{contract.LabelFunction: name}
	if timeout != "" {
		labels[contract.LabelTimeout] = timeout
	}
	if maxBody != "" {
		labels[contract.LabelMaxBody] = maxBody
	}
	return Render(RenderConfig{
		RuntimeSocket: "/run/pulse/haproxy.sock", KeysMap: "/var/lib/pulse/keys.map", TLSCert: "/etc/pulse/gateway.pem",
		ReplicaAuth: cred, BackupAddr: "127.0.0.1:8091",
	}, contract.Catalog{Functions: []contract.CatalogFunction{{
		Name: name, Labels: labels,
		Replicas: []contract.Replica{{TaskID: "t1", Addr: "10.0.0.1:30001", State: "running"}},
	}}}, nil)
}

// renderSkeleton is a file's structure: each line's first word, or "#"
// and "" for comments and blank lines. Two files of the same skeleton
// have the same directives in the same places: no value added a line or
// turned into another directive.
func renderSkeleton(cfg []byte) []string {
	var out []string
	for _, l := range strings.Split(string(cfg), "\n") {
		f := strings.Fields(l)
		switch {
		case len(f) == 0:
			out = append(out, "")
		case strings.HasPrefix(f[0], "#"):
			out = append(out, "#")
		default:
			out = append(out, f[0])
		}
	}
	return out
}

// FuzzRender feeds names, label values and credentials to Render: every
// accepted input gives a file of exactly the reference structure, each
// value within its own line, and a refused one an error that never shows
// the credential.
func FuzzRender(f *testing.F) {
	f.Add("hello", "30s", "1048576", "0123456789abcdef")
	f.Add("a", "", "", "")
	f.Add("x-1", "1ms", "1", "A!&()*+,-./:;<=>?@[]^_`{|}~z0123")
	f.Add("bad\nname", "1s\n    bind :1", "10\n", "cred\" \n stats socket /tmp/x")
	f.Add("a", "24h", "9223372036854775807", "%[src]0123456789abcdef")
	f.Add("hello", "-1s", "-1", "$HOME0123456789abcdef")
	f.Add("hello", "abc", "1e3", "0123456789abcdef#comment")
	ref := func(cred string) []string {
		c := ""
		if cred != "" {
			c = strings.Repeat("c", 16)
		}
		cfg, err := renderFuzzInput("fn", "1s", "1", c)
		if err != nil {
			panic(err)
		}
		return renderSkeleton(cfg)
	}
	refs := map[bool][]string{false: ref(""), true: ref("x")}
	f.Fuzz(func(t *testing.T, name, timeout, maxBody, cred string) {
		cfg, err := renderFuzzInput(name, timeout, maxBody, cred)
		if err != nil {
			if cred != "" && len(cred) >= 8 && strings.Contains(err.Error(), cred) {
				t.Fatalf("error shows the credential: %v", err)
			}
			return
		}
		got, want := renderSkeleton(cfg), refs[cred != ""]
		if strings.Join(got, "|") != strings.Join(want, "|") {
			t.Fatalf("accepted input changed the file's structure:\n%s", cfg)
		}
		for _, l := range strings.Split(string(cfg), "\n") {
			if strings.ContainsAny(l, "\r\x00") {
				t.Fatalf("control character in line %q", l)
			}
		}
		if cred != "" && strings.Count(string(cfg), renderQuote(cred)) != 2 {
			t.Fatalf("the credential is not exactly in its two places (request, check):\n%s", cfg)
		}
	})
}

// FuzzRenderKeysMap: every accepted key set gives a map of "<key> <value>"
// lines only.
func FuzzRenderKeysMap(f *testing.F) {
	f.Add("hello", contract.KeyDigest("k"), contract.KeyDigest("l"))
	f.Add("a b", "x", "y\nz")
	f.Add("hello/x", contract.KeyDigest("k"), "")
	f.Fuzz(func(t *testing.T, fn, d1, d2 string) {
		got, err := RenderKeysMap(map[string][]string{fn: {d1, d2}})
		if err != nil {
			return
		}
		for _, l := range strings.Split(strings.TrimSuffix(string(got), "\n"), "\n") {
			if strings.HasPrefix(l, "#") {
				continue
			}
			f := strings.Fields(l)
			if len(f) != 2 || strings.Join(f, " ") != l || (f[1] != keysMapOK && f[1] != keysMapRequired) {
				t.Fatalf("map line %q", l)
			}
		}
	})
}

// TestRenderHostile runs hostile names, labels and credentials through
// Render and `haproxy -c`: each is refused by Render, or accepted and then
// valid for HAProxy. An accepted credential made of every allowed
// punctuation mark reaches a replica byte for byte on a real HAProxy, on
// requests and health checks.
func TestRenderHostile(t *testing.T) {
	bin := renderHAProxyBin(t)
	renderGoldenFiles(t) // the keys map and certificate renderFuzzInput names
	cases := []struct {
		name, timeout, maxBody, cred string
		ok                           bool
	}{
		{"hello", "30s", "1048576", "0123456789abcdef", true},
		{"a", "24h", "1125899906842624", "A!&()*+,-./:;<=>?@[]^_`{|}~z0123", true},
		{"x", "1ms", "1", "", true},
		{"bad\nname", "", "", "", false},
		{"hello", "1s\n    bind :1", "", "", false},
		{"hello", "", "10\n", "", false},
		{"hello", "", "", "cred\"\n    stats socket /tmp/x level admin", false},
		{"hello", "", "", "%[src]0123456789abcdef", false},
		{"hello", "", "", "$HOME0123456789abcdef", false},
		{"hello", "", "", "0123456789abcdef#comment", false},
		{"hello", "", "", "0123456789abcdef'x", false},
		{"hello", "", "", "0123456789abcdef\\x", false},
		{"hello", "", "", "0123456789abcdef\x7f", false},
		{"Odd_Name", "", "", "", false},
		{"hello", "25h", "", "", false},
		{"hello", "", "1e3", "", false},
		{"hello", "", "1125899906842625", "", false},
		{"hello", "", "9223372036854775807", "", false},
		{"-x", "", "", "", false},
		{strings.Repeat("a", 64), "", "", "", false},
	}
	for _, c := range cases {
		cfg, err := renderFuzzInput(c.name, c.timeout, c.maxBody, c.cred)
		if (err == nil) != c.ok {
			t.Errorf("%q %q %q %q: Render error %v, want accepted=%t", c.name, c.timeout, c.maxBody, c.cred, err, c.ok)
			continue
		}
		if err != nil {
			continue
		}
		cfg = []byte(strings.ReplaceAll(string(cfg), "/var/lib/pulse/keys.map", renderGoldenDir+"/keys.map"))
		cfg = []byte(strings.ReplaceAll(string(cfg), "/etc/pulse/gateway.pem", renderGoldenDir+"/gateway.pem"))
		if err := Validate(t.Context(), bin, cfg); err != nil {
			t.Errorf("%q %q %q: haproxy -c: %v", c.name, c.timeout, c.maxBody, err)
		}
	}

	// The punctuation credential on the wire.
	const cred = "A!&()*+,-./:;<=>?@[]^_`{|}~z0123"
	var mu sync.Mutex
	var seen []string
	replica := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.URL.Path+" "+strings.Join(r.Header.Values(contract.HeaderReplicaAuth), ","))
		mu.Unlock()
		io.WriteString(w, "ok")
	}))
	defer replica.Close()
	dir := t.TempDir()
	gw := routesFreeAddr(t)
	cfg, err := Render(RenderConfig{Listen: gw, AdminListen: routesFreeAddr(t), RuntimeSocket: filepath.Join(dir, "rt.sock"), ReplicaAuth: cred,
		CheckInterval: 50 * 1e6},
		contract.Catalog{Functions: []contract.CatalogFunction{{Name: "p", Replicas: []contract.Replica{{TaskID: "t1", Addr: replica.Listener.Addr().String(), State: "running"}}}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, exited := routesStartHAProxy(t, bin, cfg)
	routesPoll(t, "request and check seen", exited, func() error {
		if r, err := routesDo(gw, "GET", "/function/p/x", nil, ""); err != nil || r.status != 200 {
			return fmt.Errorf("request: %v %v", r.status, err)
		}
		mu.Lock()
		defer mu.Unlock()
		var req, check bool
		for _, s := range seen {
			req = req || s == "/x "+cred
			check = check || s == contract.HealthPath+" "+cred
		}
		if !req || !check {
			return fmt.Errorf("seen %q", seen)
		}
		return nil
	})
}

package gateway

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pulsefaas/pulse/contract"
)

var updateRenderGolden = flag.Bool("update-render-golden", false, "rewrite testdata/render/*.cfg from Render's output")

// renderCase is one golden file: testdata/render/<name>.cfg.
type renderCase struct {
	name string
	cfg  RenderConfig
	cat  contract.Catalog
}

// renderCases are the catalogs of the golden files; Validate and the
// determinism test use them too.
func renderCases() []renderCase {
	return []renderCase{
		{
			name: "empty",
			cfg:  RenderConfig{RuntimeSocket: "/run/pulse/haproxy.sock"},
			cat:  contract.Catalog{Version: "e3b0c44298fc1c14", Functions: []contract.CatalogFunction{}},
		},
		{
			// Three replicas, one of them leaving.
			name: "one-function",
			cfg:  RenderConfig{RuntimeSocket: "/run/pulse/haproxy.sock"},
			cat: contract.Catalog{Version: "1", Functions: []contract.CatalogFunction{{
				Name:      "hello",
				ServiceID: "svc1",
				Labels: map[string]string{
					contract.LabelFunction: "hello",
					contract.LabelTimeout:  "10s",
					contract.LabelMaxBody:  "1048576",
				},
				Desired: 2,
				Replicas: []contract.Replica{
					{TaskID: "x7pd5pn1q2w0o8s4vj8h3k2la", Slot: 3, Node: "n1", Addr: "10.0.0.3:30003", State: "running", Draining: true},
					{TaskID: "a1b2c3d4e5f6g7h8i9j0k1l2m", Slot: 1, Node: "n1", Addr: "10.0.0.1:30001", State: "running"},
					{TaskID: "k9v8q7w6e5r4t3y2u1i0o9p8z", Slot: 2, Node: "n2", Addr: "10.0.0.2:30002", State: "running"},
				},
			}}},
		},
		{
			// Timeouts,
			// body limits, a function with no replica, an IPv6 replica,
			// the unsorted input order, and every optional setting.
			name: "several-functions",
			cfg: RenderConfig{
				Listen:          "0.0.0.0:9080",
				AdminListen:     "127.0.0.1:9404",
				RuntimeSocket:   "/var/lib/pulse/haproxy/runtime.sock",
				ServerStateFile: "/var/lib/pulse/haproxy/servers.state",
				Log:             "stdout format raw local0 info",
				Balance:         BalanceRoundRobin,
				CheckInterval:   500 * time.Millisecond,
				CheckFall:       3,
				CheckRise:       2,
				MaxConn:         2000,
				ServerMaxConn:   16,
				TimeoutMargin:   1500 * time.Millisecond,
				BackupAddr:      "127.0.0.1:8090",
			},
			cat: contract.Catalog{Version: "2", Functions: []contract.CatalogFunction{
				{
					Name:   "resize",
					Labels: map[string]string{contract.LabelTimeout: "2m0s", contract.LabelMaxBody: "52428800", contract.LabelRateLimit: "10/1m/function"},
					Replicas: []contract.Replica{
						{TaskID: "rz2", Addr: "[fd00::2]:30102", State: "running"},
						{TaskID: "rz1", Addr: "192.168.1.10:30101", State: "running"},
					},
				},
				{
					Name:     "billing",
					Labels:   map[string]string{contract.LabelTimeout: "250ms", contract.LabelMaxBody: "512", contract.LabelRateLimit: "100/1s/client"},
					Replicas: []contract.Replica{{TaskID: "bl1", Addr: "192.168.1.11:30201", State: "running"}},
				},
				{Name: "idle", Labels: map[string]string{contract.LabelScaleIdle: "5m0s"}, Replicas: []contract.Replica{}},
				{
					Name: "echo",
					Replicas: []contract.Replica{
						{TaskID: "ec2", Addr: "192.168.1.12:30302", State: "running", Draining: true},
						{TaskID: "ec1", Addr: "node-2.lan:30301", State: "running"},
					},
				},
			}},
		},
		{
			// Invoke keys through the keys map, the replica credential on
			// requests and health checks, TLS on the gateway's bind, and a
			// backup server (which gets the credential too).
			name: "secured",
			cfg: RenderConfig{
				RuntimeSocket: "/run/pulse/haproxy.sock",
				KeysMap:       renderGoldenDir + "/keys.map",
				ReplicaAuth:   renderGoldenCred,
				TLSCert:       renderGoldenDir + "/gateway.pem",
				BackupAddr:    "127.0.0.1:8091",
				// Async invoke: the async backend and the dispatch frontend.
				AsyncAddr:      "127.0.0.1:8092",
				DispatchListen: "127.0.0.1:8093",
				DispatchToken:  "dispatch-token_0123456789abcdef",
			},
			cat: contract.Catalog{Version: "3", Functions: []contract.CatalogFunction{
				{Name: "hello", Labels: map[string]string{contract.LabelRateLimit: "50/1s/key"}, Replicas: []contract.Replica{{TaskID: "h1", Addr: "10.0.0.1:30001", State: "running"}}},
				{Name: "asleep", Replicas: []contract.Replica{}},
			}},
		},
	}
}

// The "secured" golden's files: TestValidateGolden creates them.
const (
	renderGoldenDir  = "/tmp/pulse-gateway-golden"
	renderGoldenCred = "replica-cred_0123456789abcdef"
)

func TestRenderGolden(t *testing.T) {
	for _, tc := range renderCases() {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Render(tc.cfg, tc.cat, nil)
			if err != nil {
				t.Fatalf("Render: %v", err)
			}
			path := filepath.Join("testdata", "render", tc.name+".cfg")
			if *updateRenderGolden {
				if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test ./gateway -run TestRenderGolden -update-render-golden)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("Render differs from %s (rerun with -update-render-golden and review the diff):\n%s", path, renderDiff(string(want), string(got)))
			}
		})
	}
}

// TestRenderDeterministic renders every case again from a reordered copy
// of its catalog (and another catalog version): the bytes must not change.
func TestRenderDeterministic(t *testing.T) {
	for _, tc := range renderCases() {
		t.Run(tc.name, func(t *testing.T) {
			first, err := Render(tc.cfg, tc.cat, nil)
			if err != nil {
				t.Fatal(err)
			}
			again, err := Render(tc.cfg, tc.cat, nil)
			if err != nil {
				t.Fatal(err)
			}
			shuffled := contract.Catalog{Version: tc.cat.Version + "-other"}
			for _, fn := range slices.Backward(tc.cat.Functions) {
				fn.Replicas = slices.Clone(fn.Replicas)
				slices.Reverse(fn.Replicas)
				shuffled.Functions = append(shuffled.Functions, fn)
			}
			reordered, err := Render(tc.cfg, shuffled, nil)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(first, again) || !bytes.Equal(first, reordered) {
				t.Errorf("renders differ:\n%s", renderDiff(string(first), string(reordered)))
			}
		})
	}
}

// TestRenderDoesNotModifyInput: Render sorts copies, never the caller's
// catalog.
func TestRenderDoesNotModifyInput(t *testing.T) {
	tc := renderCases()[1]
	before := slices.Clone(tc.cat.Functions[0].Replicas)
	if _, err := Render(tc.cfg, tc.cat, nil); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(before, tc.cat.Functions[0].Replicas) {
		t.Errorf("Render reordered the catalog's replicas")
	}
}

func TestRenderRefuses(t *testing.T) {
	ok := RenderConfig{RuntimeSocket: "/run/pulse/haproxy.sock"}
	fn := func(name string, labels map[string]string, reps ...contract.Replica) contract.Catalog {
		return contract.Catalog{Functions: []contract.CatalogFunction{{Name: name, Labels: labels, Replicas: reps}}}
	}
	rep := func(id, addr string) contract.Replica {
		return contract.Replica{TaskID: id, Addr: addr, State: "running"}
	}
	with := func(change func(*RenderConfig)) RenderConfig {
		c := ok
		change(&c)
		return c
	}
	tests := []struct {
		name     string
		cfg      RenderConfig
		cat      contract.Catalog
		want     string // in the error
		function string // a *FunctionError for this function, if set
	}{
		{"no runtime socket", RenderConfig{}, contract.Catalog{}, "RuntimeSocket: required", ""},
		{"socket path with a space", with(func(c *RenderConfig) { c.RuntimeSocket = "/run/a b.sock" }), contract.Catalog{}, "RuntimeSocket", ""},
		{"relative socket path", with(func(c *RenderConfig) { c.RuntimeSocket = "run/x.sock" }), contract.Catalog{}, "absolute path", ""},
		{"socket path too long for a unix socket", with(func(c *RenderConfig) { c.RuntimeSocket = "/" + strings.Repeat("a", 107) }), contract.Catalog{}, "at most 107 bytes", ""},
		{"listen without port", with(func(c *RenderConfig) { c.Listen = "0.0.0.0" }), contract.Catalog{}, "Listen", ""},
		{"listen port 0", with(func(c *RenderConfig) { c.Listen = "0.0.0.0:0" }), contract.Catalog{}, "port from 1 to 65535", ""},
		{"admin listen with newline", with(func(c *RenderConfig) { c.AdminListen = "127.0.0.1:8404\nbind :1" }), contract.Catalog{}, "AdminListen", ""},
		{"balance", with(func(c *RenderConfig) { c.Balance = "random" }), contract.Catalog{}, `Balance: "random"`, ""},
		{"negative interval", with(func(c *RenderConfig) { c.CheckInterval = -time.Second }), contract.Catalog{}, "CheckInterval", ""},
		{"log injection", with(func(c *RenderConfig) { c.Log = "stdout\n    stats socket /tmp/x" }), contract.Catalog{}, "Log", ""},
		{"backup address", with(func(c *RenderConfig) { c.BackupAddr = "pulsed" }), contract.Catalog{}, "BackupAddr", ""},
		{"async address", with(func(c *RenderConfig) { c.AsyncAddr = "pulsed:x" }), contract.Catalog{}, "AsyncAddr", ""},
		{"dispatch listen without token", with(func(c *RenderConfig) { c.DispatchListen = "127.0.0.1:8093" }), contract.Catalog{}, "want both DispatchListen and DispatchToken", ""},
		{"dispatch token with a space", with(func(c *RenderConfig) { c.DispatchListen, c.DispatchToken = "127.0.0.1:8093", "0123456789abcdef x" }), contract.Catalog{}, "DispatchToken: want 16 to 256", ""},
		{"dispatch listen without port", with(func(c *RenderConfig) { c.DispatchListen, c.DispatchToken = "127.0.0.1", "0123456789abcdef" }), contract.Catalog{}, "DispatchListen", ""},
		{"relative keys map", with(func(c *RenderConfig) { c.KeysMap = "keys.map" }), contract.Catalog{}, "KeysMap", ""},
		{"keys map with a comma", with(func(c *RenderConfig) { c.KeysMap = "/run/a,b.map" }), contract.Catalog{}, "KeysMap", ""},
		{"tls cert with a space", with(func(c *RenderConfig) { c.TLSCert = "/etc/a b.pem" }), contract.Catalog{}, "TLSCert", ""},
		{"short credential", with(func(c *RenderConfig) { c.ReplicaAuth = "short" }), contract.Catalog{}, "ReplicaAuth: want 16 to 256", ""},
		{"credential with a quote", with(func(c *RenderConfig) { c.ReplicaAuth = `0123456789abcdef"x` }), contract.Catalog{}, "ReplicaAuth: want 16 to 256", ""},
		{"credential with a space", with(func(c *RenderConfig) { c.ReplicaAuth = "0123456789abcdef x" }), contract.Catalog{}, "ReplicaAuth: want 16 to 256", ""},
		{"credential with a newline", with(func(c *RenderConfig) { c.ReplicaAuth = "0123456789abcdef\nbind :1" }), contract.Catalog{}, "ReplicaAuth", ""},
		{"credential with a log-format tag", with(func(c *RenderConfig) { c.ReplicaAuth = "0123456789abcdef%[src]" }), contract.Catalog{}, "ReplicaAuth", ""},
		{"credential too long", with(func(c *RenderConfig) { c.ReplicaAuth = strings.Repeat("c", 257) }), contract.Catalog{}, "ReplicaAuth", ""},
		{"upper-case name", ok, fn("Hello", nil), "not a function name", "Hello"},
		{"name with a quote", ok, fn(`a"b`, nil), "not a function name", `a"b`},
		{"name with a slash", ok, fn("a/b", nil), "not a function name", "a/b"},
		{"empty name", ok, fn("", nil), "not a function name", ""},
		{"duplicate function", ok, contract.Catalog{Functions: []contract.CatalogFunction{{Name: "a"}, {Name: "a"}}}, "listed twice in the catalog", "a"},
		{"bad timeout label", ok, fn("a", map[string]string{contract.LabelTimeout: "30"}), "label pulse.timeout=\"30\"", "a"},
		{"zero timeout label", ok, fn("a", map[string]string{contract.LabelTimeout: "0s"}), "want a positive duration", "a"},
		{"bad max-body label", ok, fn("a", map[string]string{contract.LabelMaxBody: "10MiB"}), "label pulse.max-body=\"10MiB\"", "a"},
		{"zero max-body label", ok, fn("a", map[string]string{contract.LabelMaxBody: "0"}), "from 1 to", "a"},
		{"task ID with a space", ok, fn("a", nil, rep("t 1", "10.0.0.1:1")), "task ID", "a"},
		{"task ID with a dash", ok, fn("a", nil, rep("pulsed-backup", "10.0.0.1:1")), "task ID", "a"},
		{"duplicate task", ok, fn("a", nil, rep("t1", "10.0.0.1:1"), rep("t1", "10.0.0.1:2")), "task t1 listed twice", "a"},
		{"address without host", ok, fn("a", nil, rep("t1", ":8080")), "want a host", "a"},
		{"address without port", ok, fn("a", nil, rep("t1", "10.0.0.1")), "want host:port", "a"},
		{"address with a space", ok, fn("a", nil, rep("t1", "10.0.0.1:1 backup")), "task t1: address", "a"},
		{"unbracketed IPv6", ok, fn("a", nil, rep("t1", "fd00::1:80")), "task t1: address", "a"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Render(tt.cfg, tt.cat, nil)
			if err == nil {
				t.Fatalf("Render succeeded:\n%s", got)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not contain %q", err, tt.want)
			}
			var fe *FunctionError
			if tt.function != "" || len(tt.cat.Functions) > 0 {
				if !errors.As(err, &fe) || fe.Function != tt.function {
					t.Errorf("error %v: want a *FunctionError for %q", err, tt.function)
				}
			}
			if c := tt.cfg.ReplicaAuth; c != "" && strings.Contains(err.Error(), c) {
				t.Errorf("error %q shows the credential", err)
			}
		})
	}
}

func TestRenderDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		time.Second:                        "1s",
		30 * time.Second:                   "30s",
		2 * time.Minute:                    "120s",
		1500 * time.Millisecond:            "1500ms",
		250 * time.Millisecond:             "250ms",
		time.Millisecond + time.Nanosecond: "2ms",
		time.Nanosecond:                    "1ms",
	} {
		if got := renderDuration(d); got != want {
			t.Errorf("renderDuration(%s) = %s, want %s", d, got, want)
		}
	}
}

// renderDiff shows the first differing line of two files, with context.
func renderDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	for i := 0; i < max(len(w), len(g)); i++ {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl != gl {
			return fmt.Sprintf("line %d:\n  want: %s\n  got:  %s", i+1, wl, gl)
		}
	}
	return "(no line differs)"
}

package main

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/client"

	"github.com/pulsefaas/pulse/contract"
	"github.com/pulsefaas/pulse/gateway"
)

// livePulsed runs the real pulsed (serve: HAProxy, the engine, the API and
// the cold-start listener) for an instance of its own with no functions.
type livePulsed struct {
	http   *http.Client
	scheme string
	cfg    Config
	token  string
	rt     *gateway.Runtime
	stop   func()
}

func startLivePulsed(t *testing.T, instance string, edit ...func(*Config)) *livePulsed {
	t.Helper()
	cli, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		info, ierr := cli.Info(ctx)
		cancel()
		if ierr != nil {
			err = ierr
		} else if info.Swarm.LocalNodeState != swarm.LocalNodeStateActive {
			err = fmt.Errorf("swarm is %q", info.Swarm.LocalNodeState)
		}
	}
	if err == nil {
		_, err = exec.LookPath("haproxy")
	}
	if err != nil {
		if os.Getenv("PULSE_TEST_REQUIRE_ENGINE") != "" {
			t.Fatalf("needs Docker in swarm mode and haproxy: %v", err)
		}
		t.Skipf("needs Docker in swarm mode and haproxy: %v", err)
	}
	t.Cleanup(func() { cli.Close() })
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	dir := t.TempDir()
	cfg := defaults()
	cfg.Instance = "t" + hex.EncodeToString(b)
	if instance != "" {
		cfg.Instance = instance
	}
	cfg.StateDir = filepath.Join(dir, "state")
	cfg.APIListen, cfg.GatewayListen, cfg.AdminListen, cfg.ColdStartListen = freePort(t), freePort(t), freePort(t), freePort(t)
	cfg.LeaveRunning = false
	cfg.ReplicaAuthFile = filepath.Join(dir, "replica-auth")
	cfg.APITokenFile = filepath.Join(dir, "api-token")
	cfg.AlarmTokenFile = filepath.Join(dir, "alarm-token")
	t.Cleanup(func() {
		list, _ := cli.SecretList(context.Background(), swarm.SecretListOptions{Filters: filters.NewArgs(filters.Arg("label", contract.LabelInstance+"="+cfg.Instance))})
		for _, s := range list {
			_ = cli.SecretRemove(context.Background(), s.ID)
		}
	})
	for _, f := range edit {
		f(&cfg)
	}
	l := &livePulsed{cfg: cfg, token: hex.EncodeToString(b) + "-api-token", http: http.DefaultClient, scheme: "http"}
	if cfg.TLSCert != "" {
		pool := x509.NewCertPool()
		pem, err := os.ReadFile(cfg.TLSCert)
		if err != nil || !pool.AppendCertsFromPEM(pem) {
			t.Fatalf("tls_cert %s: %v", cfg.TLSCert, err)
		}
		l.http = &http.Client{Transport: &http.Transport{Proxy: nil, TLSClientConfig: &tls.Config{RootCAs: pool}}}
		l.scheme = "https"
	}
	if err := os.WriteFile(cfg.APITokenFile, []byte(l.token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	l.stop = pulsedUnder(t, cfg)
	t.Cleanup(func() { killHAProxy(cfg.StateDir) })
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := l.http.Get(l.scheme + "://" + cfg.APIListen + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("pulsed never answered /healthz: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	l.rt = gateway.NewRuntime(filepath.Join(cfg.StateDir, "haproxy.sock"), 2*time.Second)
	return l
}

func (l *livePulsed) api(t *testing.T, method, path, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, l.scheme+"://"+l.cfg.APIListen+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+l.token)
	resp, err := l.http.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(b))
}

// showMap is HAProxy's in-memory keys map: its keys (digests and marks).
func (l *livePulsed) showMap(t *testing.T) string {
	t.Helper()
	out, err := l.rt.Exec(context.Background(), "show map "+filepath.Join(l.cfg.StateDir, "keys.map"))
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func haproxyMaster(t *testing.T, state string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(state, "haproxy.pid"))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// gatewayPost sends body to fn through the gateway with auth (none if
// empty) and returns the status and the answer (0 and the error when it
// got none).
func gatewayPost(t *testing.T, gw, fn, auth, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("POST", "http://"+gw+"/function/"+fn, strings.NewReader(body))
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestKeysLive (real pulsed, HAProxy, engine and replica): pulsed creates
// the replica credential and its secret; a key added through the API
// protects the function at once (401 without it, the function never sees
// it), rotation needs no HAProxy reload and no replica restart, and the
// keys survive a pulsed restart.
func TestKeysLive(t *testing.T) {
	e := newEnv(t)
	l := startLivePulsed(t, e.tag)
	ctx := context.Background()

	st, err := os.Stat(l.cfg.ReplicaAuthFile)
	if err != nil || st.Mode().Perm() != 0o640 {
		t.Fatalf("replica credential: %v, mode %v", err, st.Mode().Perm())
	}
	cred, _ := os.ReadFile(l.cfg.ReplicaAuthFile)
	list, err := e.cli.SecretList(ctx, swarm.SecretListOptions{Filters: filters.NewArgs(filters.Arg("label", contract.LabelInstance+"="+l.cfg.Instance))})
	if err != nil || len(list) != 1 || list[0].Spec.Name != contract.ReplicaAuthSecretName(l.cfg.Instance, strings.TrimSpace(string(cred))) ||
		list[0].Spec.Labels[contract.LabelRole] != contract.RoleReplicaAuth {
		t.Fatalf("secrets of the instance: %+v, %v", list, err)
	}

	fn := "keys-" + e.tag
	e.deployFunc(fn, "v1", deployment{fn: buildC(t, echoEnvC)})
	waitRoute(t, l.cfg.GatewayListen, "/function/"+fn)
	cfgText, _ := os.ReadFile(filepath.Join(l.cfg.StateDir, "haproxy.cfg"))
	if !strings.Contains(string(cfgText), contract.HeaderReplicaAuth) {
		t.Errorf("haproxy.cfg does not add %s", contract.HeaderReplicaAuth)
	}
	master := haproxyMaster(t, l.cfg.StateDir)
	_, health := l.api(t, "GET", "/healthz", "")
	replicas := e.containers(ctx, fn)

	key1, key2 := "first-"+e.tag, "second-"+e.tag
	if code, got := l.api(t, "POST", contract.KeysPath+fn, `{"id":"one","sha256":"`+contract.KeyDigest(key1)+`"}`); code != 201 {
		t.Fatalf("add: %d %s", code, got)
	}
	if m := l.showMap(t); !strings.Contains(m, contract.KeyDigest(key1)) {
		t.Errorf("HAProxy's map lacks the added key:\n%s", m)
	}
	if code, got := gatewayPost(t, l.cfg.GatewayListen, fn, "", "x"); code != 401 {
		t.Errorf("without the key: %d %s, want 401", code, got)
	}
	if code, got := gatewayPost(t, l.cfg.GatewayListen, fn, "Bearer "+key2, "x"); code != 401 {
		t.Errorf("with another key: %d %s, want 401", code, got)
	}
	code, got := gatewayPost(t, l.cfg.GatewayListen, fn, "Bearer "+key1, "x")
	if code != 200 {
		t.Errorf("with the key: %d %s, want 200", code, got)
	}
	if strings.Contains(got, "HTTP_AUTHORIZATION") || strings.Contains(got, key1) || strings.Contains(strings.ToUpper(got), "REPLICA_AUTH") {
		t.Errorf("the function saw the key or the replica credential:\n%s", got)
	}

	// Rotation: add the second, remove the first.
	if code, got := l.api(t, "POST", contract.KeysPath+fn, `{"id":"two","sha256":"`+contract.KeyDigest(key2)+`"}`); code != 201 {
		t.Fatalf("add: %d %s", code, got)
	}
	if code, got := gatewayPost(t, l.cfg.GatewayListen, fn, "Bearer "+key2, "x"); code != 200 {
		t.Errorf("second key during the rotation: %d %s", code, got)
	}
	if code, got := l.api(t, "DELETE", contract.KeysPath+fn+"/one", ""); code != 204 {
		t.Fatalf("remove: %d %s", code, got)
	}
	if code, _ := gatewayPost(t, l.cfg.GatewayListen, fn, "Bearer "+key1, "x"); code != 401 {
		t.Errorf("removed key: %d, want 401", code)
	}
	if code, got := gatewayPost(t, l.cfg.GatewayListen, fn, "Bearer "+key2, "x"); code != 200 {
		t.Errorf("second key: %d %s", code, got)
	}
	if _, h2 := l.api(t, "GET", "/healthz", ""); h2 != health {
		t.Errorf("/healthz went from %s to %s: HAProxy reloaded for a key change", health, h2)
	}
	if m2 := haproxyMaster(t, l.cfg.StateDir); m2 != master {
		t.Errorf("HAProxy's master changed: %s → %s", master, m2)
	}
	if now := e.containers(ctx, fn); !reflect.DeepEqual(now, replicas) {
		t.Errorf("replicas changed with the keys: %v → %v", replicas, now)
	}

	// Kept across a restart of pulsed and HAProxy.
	l.stop()
	killHAProxy(l.cfg.StateDir)
	l.stop = pulsedUnder(t, l.cfg)
	defer l.stop()
	deadline := time.Now().Add(30 * time.Second)
	for {
		c1, _ := gatewayPost(t, l.cfg.GatewayListen, fn, "", "x")
		c2, _ := gatewayPost(t, l.cfg.GatewayListen, fn, "Bearer "+key2, "x")
		if c1 == 401 && c2 == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after a restart: %d without the key, %d with it; want 401, 200", c1, c2)
		}
		time.Sleep(100 * time.Millisecond)
	}
	code, got = l.api(t, "GET", contract.KeysPath, "")
	var infos []contract.KeyInfo
	if err := json.Unmarshal([]byte(got), &infos); code != 200 || err != nil || len(infos) != 1 || infos[0].ID != "two" {
		t.Errorf("after a restart: %d %s", code, got)
	}
}

// TestTimeoutLive (real pulsed): the API and the cold-start listener each
// close a connection that trickles its headers, at their header timeouts.
func TestTimeoutLive(t *testing.T) {
	l := startLivePulsed(t, "")
	defer l.stop()
	var wg sync.WaitGroup
	for name, c := range map[string]struct {
		addr  string
		limit time.Duration
	}{"api": {l.cfg.APIListen, defaultAPITimeouts.ReadHeader}, "coldstart": {l.cfg.ColdStartListen, coldStartTimeouts(l.cfg).ReadHeader}} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conn, err := net.Dial("tcp", c.addr)
			if err != nil {
				t.Error(err)
				return
			}
			defer conn.Close()
			stop := make(chan struct{})
			defer close(stop)
			go func() {
				_, _ = io.WriteString(conn, "GET / HTTP/1.1\r\n")
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					case <-time.After(time.Second):
					}
					if _, err := fmt.Fprintf(conn, "X-%d: y\r\n", i); err != nil {
						return
					}
				}
			}()
			start := time.Now()
			_ = conn.SetReadDeadline(start.Add(c.limit + 5*time.Second))
			_, err = io.ReadAll(conn)
			took := time.Since(start)
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				t.Errorf("%s kept a trickling connection open for %v", name, took)
			} else if took < c.limit-time.Second {
				t.Errorf("%s closed it after %v, before its header timeout %v", name, took, c.limit)
			}
		}()
	}
	wg.Wait()
}

// TestCatalogLabels: the catalog serves only pulse.* labels.
func TestCatalogLabels(t *testing.T) {
	src := fixedCatalog{cat: contract.Catalog{Version: "v1", Functions: []contract.CatalogFunction{{
		Name: "hello", Labels: map[string]string{contract.LabelFunction: "hello", contract.LabelTimeout: "3s",
			"com.example.db-password": "hunter2", "team": "a", "pulsex": "no"}}}}}
	got, _, err := pulseLabelsOnly{src}.Current()
	want := map[string]string{contract.LabelFunction: "hello", contract.LabelTimeout: "3s"}
	if err != nil || !reflect.DeepEqual(got.Functions[0].Labels, want) || got.Version != "v1" {
		t.Errorf("got %+v, %v; want labels %v", got, err, want)
	}
	if src.cat.Functions[0].Labels["team"] != "a" {
		t.Error("the filter changed the catalog it read")
	}
}

type fixedCatalog struct{ cat contract.Catalog }

func (f fixedCatalog) Current() (contract.Catalog, time.Time, error) { return f.cat, time.Time{}, nil }

// TestDropProxyEnv: every spelling of the proxy variables goes, nothing else.
func TestDropProxyEnv(t *testing.T) {
	var unset []string
	got := dropProxyEnv(func(k string) error { unset = append(unset, k); return nil },
		[]string{"HTTP_PROXY=http://p:3128", "https_proxy=x", "All_Proxy=y", "NO_PROXY=z", "PATH=/bin", "MY_HTTP_PROXY_X=1"})
	want := []string{"HTTP_PROXY", "https_proxy", "All_Proxy", "NO_PROXY"}
	if !reflect.DeepEqual(got, want) || !reflect.DeepEqual(unset, want) {
		t.Errorf("dropped %v (unset %v), want %v", got, unset, want)
	}
}

// TestTLSLive (real pulsed and HAProxy): with tls_cert, a certificate made
// as `PULSE_TLS=self-signed make up` makes it, pulsed's API and the gateway
// serve HTTPS that verifies against it, and refuse plain HTTP.
func TestTLSLive(t *testing.T) {
	if _, err := exec.LookPath("openssl"); err != nil {
		if os.Getenv("PULSE_TEST_REQUIRE_ENGINE") != "" { // CI: .ci/run installs it
			t.Fatalf("needs openssl: %v", err)
		}
		t.Skip("needs openssl")
	}
	dir := t.TempDir()
	cert := filepath.Join(dir, "tls.pem")
	out, err := exec.Command("sh", "-c", `openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 730 \
		-subj "/CN=pulse test" -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" -keyout "$1/key.pem" -out "$1/cert.pem" &&
		cat "$1/cert.pem" "$1/key.pem" > "$1/tls.pem" && chmod 600 "$1/tls.pem"`, "sh", dir).CombinedOutput()
	if err != nil {
		t.Fatalf("openssl: %v\n%s", err, out)
	}
	l := startLivePulsed(t, "", func(c *Config) { c.TLSCert = cert })
	defer l.stop()
	if code, got := l.api(t, "GET", contract.KeysPath, ""); code != 200 || got != "[]" {
		t.Errorf("keys over TLS: %d %s", code, got)
	}
	resp, err := http.Get("http://" + l.cfg.APIListen + "/healthz")
	if err == nil {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 400 {
			t.Errorf("plain HTTP to the API: %d %s, want 400 (an HTTP request to an HTTPS server)", resp.StatusCode, b)
		}
	}
	// The gateway: an unknown function's 404, over TLS.
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := l.http.Post("https://"+l.cfg.GatewayListen+"/function/nothing-here", "text/plain", strings.NewReader("x"))
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 404 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the gateway never answered over TLS: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if resp, err := http.Post("http://"+l.cfg.GatewayListen+"/function/nothing-here", "text/plain", strings.NewReader("x")); err == nil {
		resp.Body.Close()
		if resp.StatusCode/100 == 2 || resp.StatusCode == 404 {
			t.Errorf("plain HTTP to the TLS gateway answered %d", resp.StatusCode)
		}
	}
	// A certificate without its key stops pulsed with a reason.
	bad := filepath.Join(dir, "cert-only.pem")
	certOnly, _ := os.ReadFile(filepath.Join(dir, "cert.pem"))
	if err := os.WriteFile(bad, certOnly, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := l.cfg
	cfg.TLSCert = bad
	if _, err := loadSecrets(context.Background(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil))); err == nil ||
		!strings.Contains(err.Error(), "tls_cert "+bad+": want one PEM file holding the certificate and its key") {
		t.Errorf("certificate without a key: %v", err)
	}
}

// TestColdStartLiveDirect (real pulsed): the cold-start listener, reached
// without HAProxy (no replica credential), serves nothing.
func TestColdStartLiveDirect(t *testing.T) {
	l := startLivePulsed(t, "")
	defer l.stop()
	for _, path := range []string{"/", contract.MetricsPath} {
		req, _ := http.NewRequest("POST", "http://"+l.cfg.ColdStartListen+path, strings.NewReader("x"))
		req.Header.Set(contract.HeaderFunction, "hello")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
			t.Errorf("%s without the credential: %d %s %s, want 403 JSON", path, resp.StatusCode, resp.Header.Get("Content-Type"), b)
		}
	}
}

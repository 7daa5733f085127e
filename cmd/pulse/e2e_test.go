package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/client"

	"github.com/pulsefaas/pulse/contract"
	"github.com/pulsefaas/pulse/internal/testcert"
	"github.com/pulsefaas/pulse/internal/testport"
)

// engineOrSkip returns a client of the local engine in swarm mode. Without
// one the end-to-end tests skip — unless PULSE_TEST_REQUIRE_ENGINE is set
// (CI), where they fail.
func engineOrSkip(t *testing.T) *client.Client {
	t.Helper()
	cli, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		var info swarm.Info
		if i, ierr := cli.Info(ctx); ierr == nil {
			info = i.Swarm
		} else {
			err = ierr
		}
		if err == nil && info.LocalNodeState != swarm.LocalNodeStateActive {
			err = errSwarmInactive
		}
	}
	if err != nil {
		if os.Getenv("PULSE_TEST_REQUIRE_ENGINE") != "" {
			t.Fatalf("Docker Engine in swarm mode needed: %v", err)
		}
		t.Skipf("no Docker Engine in swarm mode: %v", err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

type constErr string

func (e constErr) Error() string { return string(e) }

const errSwarmInactive = constErr("swarm inactive (docker swarm init --advertise-addr 127.0.0.1)")

// freeAddr returns a loopback address nobody listens on now.
func freeAddr(t *testing.T) string {
	t.Helper()
	return testport.Addr(t)
}

// startPulsed builds and runs a pulsed of its own instance, on its own
// ports, state directory, replica credential and management token (a `make
// up` pulsed is neither used nor disturbed), until the test ends; it
// returns its API's and its gateway's URLs and its token file.
func startPulsed(t *testing.T, instance string) (api, gateway, tokenFile string) {
	t.Helper()
	return startPulsedTLS(t, instance, "")
}

// startPulsedTLS is startPulsed with tls_cert set to certFile (a PEM file
// of a certificate and its key) unless it is "": the gateway and the API
// then serve https.
func startPulsedTLS(t *testing.T, instance, certFile string) (api, gateway, tokenFile string) {
	t.Helper()
	if _, err := exec.LookPath("haproxy"); err != nil {
		if os.Getenv("PULSE_TEST_REQUIRE_ENGINE") != "" {
			t.Fatalf("pulsed needs haproxy: %v", err)
		}
		t.Skipf("pulsed needs haproxy: %v", err)
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "pulsed")
	if out, err := exec.Command("go", "build", "-o", bin, "../pulsed").CombinedOutput(); err != nil {
		t.Fatalf("build pulsed: %v\n%s", err, out)
	}
	apiAddr, gwAddr := freeAddr(t), freeAddr(t)
	tokenFile = filepath.Join(dir, "api-token")
	if err := os.WriteFile(tokenFile, []byte(hex.EncodeToString([]byte(instance+"-token-0123456789"))+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "pulsed.yaml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf("instance: %s\nstate_dir: %s\napi_listen: %s\ngateway_listen: %s\nadmin_listen: %s\n"+
		"autoscale: false\nleave_running: false\nreplica_auth_file: %s\napi_token_file: %s\ncoldstart_listen: %s\n"+
		"async_listen: %s\nasync_dispatch_listen: %s\n",
		instance, filepath.Join(dir, "state"), apiAddr, gwAddr, freeAddr(t), filepath.Join(dir, "replica-auth"), tokenFile, freeAddr(t),
		freeAddr(t), freeAddr(t))), 0o644); err != nil {
		t.Fatal(err)
	}
	scheme, hc := "http", http.DefaultClient
	if certFile != "" {
		f, err := os.OpenFile(cfg, os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(f, "tls_cert: %s\n", certFile)
		f.Close()
		pool := x509.NewCertPool()
		b, err := os.ReadFile(certFile)
		if err != nil || !pool.AppendCertsFromPEM(b) {
			t.Fatalf("tls_cert %s: %v", certFile, err)
		}
		scheme, hc = "https", &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	}
	logFile, err := os.Create(filepath.Join(dir, "pulsed.log"))
	if err != nil {
		t.Fatal(err)
	}
	// pulsed leaves its instance's replica credential secret in place (a
	// real install keeps it); the test's goes after its functions (this
	// cleanup is registered before theirs, so it runs after them).
	t.Cleanup(func() {
		out, _ := exec.Command("docker", "secret", "ls", "-q", "--filter", "label="+contract.LabelInstance+"="+instance).Output()
		if ids := strings.Fields(string(out)); len(ids) > 0 {
			_ = exec.Command("docker", append([]string{"secret", "rm"}, ids...)...).Run()
		}
	})
	cmd := exec.Command(bin, "-config", cfg)
	for _, kv := range os.Environ() { // only the file configures it
		if !strings.HasPrefix(kv, "PULSE_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		stopped := true
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			stopped = false
			_ = cmd.Process.Kill()
			<-done
		}
		// With leave_running false pulsed stops its HAProxy when it
		// stops; a pulsed killed here cannot, and its HAProxy (detached,
		// to outlive a pulsed restart) must not outlive the test.
		if left := killProcessesNaming(dir); len(left) > 0 {
			if stopped {
				t.Errorf("pulsed stopped on SIGTERM but left %v running", left)
			} else {
				t.Logf("pulsed did not stop within 20 s of SIGTERM; killed it and %v", left)
			}
		}
		logFile.Close()
		if t.Failed() {
			if b, err := os.ReadFile(logFile.Name()); err == nil {
				t.Logf("pulsed's log:\n%s", b)
			}
		}
	})
	url := scheme + "://" + apiAddr
	for deadline := time.Now().Add(30 * time.Second); ; {
		resp, err := hc.Get(url + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				waitListening(t, gwAddr, done)
				return url, scheme + "://" + gwAddr, tokenFile
			}
		}
		select {
		case err := <-done:
			t.Fatalf("pulsed exited: %v", err)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("pulsed not healthy at %s: %v", url, err)
		}
	}
}

// waitListening waits until something accepts connections at addr: pulsed
// is healthy once its API serves, which can be before HAProxy binds the
// gateway's port.
func waitListening(t *testing.T, addr string, exited <-chan error) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); ; {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return
		}
		select {
		case err := <-exited:
			t.Fatalf("pulsed exited: %v", err)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("the gateway does not listen at %s: %v", addr, err)
		}
	}
}

// TestEndToEnd: for every template, new → build → deploy → invoke through
// the CLI against the real swarm, then rm leaves no service, container or
// image behind. A pulsed of the test's own instance routes the functions:
// deploy waits until its gateway routes them; the go function is also
// scaled with --wait.
func TestEndToEnd(t *testing.T) {
	cli := engineOrSkip(t)
	if testing.Short() {
		t.Skip("end-to-end: skipped in -short mode")
	}
	suffix := make([]byte, 3)
	_, _ = rand.Read(suffix)
	tag := hex.EncodeToString(suffix)
	dir := t.TempDir()
	cache := t.TempDir()
	instance := "e2e-" + tag
	api, gw, tokenFile := startPulsed(t, instance)
	// invoke goes through the pulsed's gateway: ready must mean routed.
	env := map[string]string{"PULSE_CACHE_DIR": cache, "PULSE_API": api, "PULSE_INSTANCE": instance, "PULSE_GATEWAY": gw, "PULSE_TOKEN_FILE": tokenFile}

	// A static executable for the bin template: the C echo.
	echo := filepath.Join(dir, "echo")
	src := filepath.Join(dir, "echo.c")
	if err := os.WriteFile(src, []byte(`#include <unistd.h>
int main(void){char b[4096];ssize_t n;while((n=read(0,b,sizeof b))>0)if(write(1,b,n)!=n)return 1;return 0;}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("gcc", "-static", "-O2", "-s", "-o", echo, src).CombinedOutput(); err != nil {
		t.Fatalf("gcc: %v\n%s", err, out)
	}

	cases := []struct {
		lang   string
		invoke []string
		check  func(t *testing.T, out string)
	}{
		{"go", []string{"-d", "pulse"}, func(t *testing.T, out string) {
			if out != "Hello, pulse" {
				t.Errorf("got %q", out)
			}
		}},
		{"c", []string{"-d", "pulse"}, func(t *testing.T, out string) {
			if out != "Hello, pulse\n" {
				t.Errorf("got %q", out)
			}
		}},
		{"cpp", []string{"-d", "body text", "-H", "X-Test=v1", "--query", "a=1", "--query", "b=x y", "--path", "/p"}, func(t *testing.T, out string) {
			var got struct {
				Method  string            `json:"method"`
				Path    string            `json:"path"`
				Query   map[string]string `json:"query"`
				Headers map[string]string `json:"headers"`
				Body    string            `json:"body"`
			}
			if err := json.Unmarshal([]byte(out), &got); err != nil {
				t.Fatalf("%q: %v", out, err)
			}
			if got.Method != "POST" || got.Path != "/p" || got.Body != "body text" ||
				got.Query["a"] != "1" || got.Query["b"] != "x y" || got.Headers["X-Test"] != "v1" {
				t.Errorf("echo %+v", got)
			}
		}},
		{"bin", []string{"-d", "raw bytes"}, func(t *testing.T, out string) {
			if out != "raw bytes" {
				t.Errorf("got %q", out)
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.lang, func(t *testing.T) {
			name := "e2e-" + tc.lang + "-" + tag
			t.Cleanup(func() { pulse(t, dir, env, "rm", name) })
			if code, _, errs := pulse(t, dir, env, "new", name, "--lang", tc.lang); code != 0 {
				t.Fatalf("new: %d %s", code, errs)
			}
			fdir := filepath.Join(dir, name)
			if tc.lang == "bin" {
				b, _ := os.ReadFile(echo)
				if err := os.WriteFile(filepath.Join(fdir, "fn"), b, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			code, out, errs := pulse(t, fdir, env, "deploy", "--health-interval", "250ms")
			if code != 0 {
				t.Fatalf("deploy: exit %d\n%s\n%s", code, out, errs)
			}
			if !strings.Contains(out, name+": ready at 127.0.0.1:") || !strings.Contains(out, "(routed by the gateway)") {
				t.Errorf("deploy output:\n%s", out)
			}
			if tc.lang == "go" {
				code, out, errs = pulse(t, fdir, env, "scale", name, "2", "--wait")
				if code != 0 || strings.Count(out, "127.0.0.1:") != 2 {
					t.Errorf("scale --wait: exit %d\n%s\n%s", code, out, errs)
				}
				noPulsed := map[string]string{"PULSE_CACHE_DIR": cache, "PULSE_API": "http://" + freeAddr(t), "PULSE_INSTANCE": instance}
				code, _, errs = pulse(t, fdir, noPulsed, "scale", name, "1", "--wait")
				if want := "cannot read pulsed's replica catalog at " + noPulsed["PULSE_API"] + "/v1/replicas"; code != exitFailure ||
					!strings.Contains(errs, want) || !strings.Contains(errs, "config key api (PULSE_API)") {
					t.Errorf("scale --wait without pulsed: exit %d, stderr %s; want %q and the config key", code, errs, want)
				}
			}
			code, out, errs = pulse(t, fdir, env, append([]string{"invoke", "-v", name}, tc.invoke...)...)
			if code != 0 {
				t.Fatalf("invoke: exit %d %s", code, errs)
			}
			tc.check(t, out)
			if tc.lang == "go" {
				code, out, errs = pulse(t, fdir, env, "describe", name)
				if code != 0 || !strings.Contains(out, "\nScale:     ") || !strings.Contains(out, "\nLimits:    ") || strings.Contains(out, "{") {
					t.Errorf("describe: exit %d\n%s\n%s", code, out, errs)
				}
				code, out, errs = pulse(t, fdir, env, "logs", name, "--tail", "2")
				if code != 0 || strings.Count(out, "\n") != 2 || !strings.Contains(out, name+".") {
					t.Errorf("logs --tail 2: exit %d, want 2 lines:\n%s\n%s", code, out, errs)
				}
				// -f after --tail: the last line read, then only lines
				// newer than every line read (no line twice).
				code, out, errs = pulseFor(t, 3*time.Second, fdir, env, "logs", name, "--tail", "1", "-f")
				lines := strings.SplitAfter(out, "\n")
				lines = lines[:len(lines)-1]
				if code != 0 || len(lines) == 0 {
					t.Errorf("logs --tail 1 -f: exit %d, want a line:\n%s\n%s", code, out, errs)
				} else {
					first, _ := logTime(lines[0])
					seen := map[string]bool{}
					for _, l := range lines {
						ts, ok := logTime(l)
						if seen[l] || !ok || (l != lines[0] && !ts.After(first)) {
							t.Errorf("logs --tail 1 -f: line %q repeated, unstamped or older than the first:\n%s", l, out)
						}
						seen[l] = true
					}
				}
				keyRoundTrip(t, fdir, env, name, tc.invoke)
				asyncRoundTrip(t, fdir, env, name)
			}

			code, out, _ = pulse(t, fdir, env, "ls", "--json")
			if code != 0 || !strings.Contains(out, `"name": "`+name+`"`) {
				t.Errorf("ls: %d %s", code, out)
			}
			if code, out, errs := pulse(t, fdir, env, "rm", name); code != 0 {
				t.Fatalf("rm: %d %s %s", code, out, errs)
			}
			assertGone(t, cli, name)
			// The gateway's JSON 404, said as such, once pulsed has seen
			// the service go (until then: 503, no replica).
			want := name + " is not deployed, or the gateway does not route it (yet): the gateway answered 404 Not Found: function not found; `pulse ls`"
			for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
				code, _, errs := pulse(t, fdir, env, "invoke", name)
				if code == exitFailure && strings.Contains(errs, want) {
					break
				}
				if time.Now().After(deadline) || !strings.Contains(errs, "503 Service Unavailable: no replica available: no replica of "+name+" is ready") {
					t.Errorf("invoke after rm: exit %d, %s; want %q", code, errs, want)
					break
				}
			}
		})
	}
}

// assertGone checks that nothing of function name is left on the engine.
func assertGone(t *testing.T, cli *client.Client, name string) {
	t.Helper()
	ctx := context.Background()
	svcs, err := cli.ServiceList(ctx, swarm.ServiceListOptions{Filters: filters.NewArgs(filters.Arg("name", name))})
	if err != nil || len(svcs) != 0 {
		t.Errorf("services left: %v %v", svcs, err)
	}
	ctrs, err := cli.ContainerList(ctx, containerListAll(name))
	if err != nil || len(ctrs) != 0 {
		t.Errorf("containers left: %d %v", len(ctrs), err)
	}
	imgs, err := cli.ImageList(ctx, image.ListOptions{All: true, Filters: filters.NewArgs(filters.Arg("label", contract.LabelFunction+"="+name))})
	if err != nil || len(imgs) != 0 {
		t.Errorf("images left: %d %v", len(imgs), err)
	}
}

func containerListAll(service string) container.ListOptions {
	return container.ListOptions{All: true, Filters: filters.NewArgs(filters.Arg("label", "com.docker.swarm.service.name="+service))}
}

// keyRoundTrip: a key added with pulse key add is asked for by the gateway
// at once, works from PULSE_KEY, and once removed is asked for no more;
// pulsed's key store lists it meanwhile.
func keyRoundTrip(t *testing.T, dir string, env map[string]string, name string, invokeArgs []string) {
	t.Helper()
	code, key, errs := pulse(t, dir, env, "key", "add", name, "--id", "e2e")
	key = strings.TrimSuffix(key, "\n")
	if code != 0 || len(key) != 43 {
		t.Fatalf("key add: exit %d, stdout %q, stderr %s", code, key, errs)
	}
	code, out, errs := pulse(t, dir, env, "key", "ls", name)
	if code != 0 || !strings.Contains(out, name+"  e2e") {
		t.Errorf("key ls: exit %d\n%s\n%s", code, out, errs)
	}
	invoke := append([]string{"invoke", name}, invokeArgs...)
	code, _, errs = pulse(t, dir, env, invoke...)
	if code != exitFailure || !strings.Contains(errs, "401 Unauthorized") || !strings.Contains(errs, "needs an invoke key") {
		t.Errorf("invoke without the key: exit %d, %s; want the gateway's 401", code, errs)
	}
	withKey := maps.Clone(env)
	withKey["PULSE_KEY"] = key
	if code, _, errs = pulse(t, dir, withKey, invoke...); code != 0 {
		t.Errorf("invoke with PULSE_KEY: exit %d, %s", code, errs)
	}
	if code, out, errs = pulse(t, dir, env, "key", "rm", name, "e2e"); code != 0 {
		t.Errorf("key rm: exit %d\n%s\n%s", code, out, errs)
	}
	if code, _, errs = pulse(t, dir, env, invoke...); code != 0 {
		t.Errorf("invoke after key rm: exit %d, %s", code, errs)
	}
}

// asyncRoundTrip: pulse invoke --async prints the request id alone; pulse
// queue inspect --wait follows it to done (exit 0) and shows what the
// function answered; pulse queue ls counts it; a callback to the control
// node's loopback is refused at once with the gateway's reason; an invoke key
// added to the function is asked for by the async route too.
func asyncRoundTrip(t *testing.T, dir string, env map[string]string, name string) {
	t.Helper()
	code, id, errs := pulse(t, dir, env, "invoke", "--async", name, "-d", "later")
	id = strings.TrimSuffix(id, "\n")
	if code != 0 || len(id) != 32 {
		t.Fatalf("invoke --async: exit %d, stdout %q, stderr %s", code, id, errs)
	}
	code, out, errs := pulseFor(t, 90*time.Second, dir, env, "queue", "inspect", id, "--wait", "--timeout", "60s")
	if code != 0 || !strings.Contains(out, "State:     done") || !strings.Contains(out, "200") {
		t.Errorf("queue inspect --wait: exit %d\n%s\n%s", code, out, errs)
	}
	code, out, errs = pulse(t, dir, env, "queue", "ls")
	if code != 0 || !strings.Contains(out, name) {
		t.Errorf("queue ls: exit %d\n%s\n%s", code, out, errs)
	}
	code, out, errs = pulse(t, dir, env, "invoke", "--async", "--callback", "http://127.0.0.1:19999/api/v1/info", name, "-d", "x")
	if code != exitFailure || out != "" || !strings.Contains(errs, "400") || !strings.Contains(errs, "loopback address") {
		t.Errorf("invoke --async with a loopback callback: exit %d, stdout %q, stderr %s; want the gateway's 400 naming loopback", code, out, errs)
	}
	code, key, errs := pulse(t, dir, env, "key", "add", name, "--id", "async")
	key = strings.TrimSuffix(key, "\n")
	if code != 0 {
		t.Fatalf("key add: exit %d %s", code, errs)
	}
	defer pulse(t, dir, env, "key", "rm", name, "async")
	if code, _, errs = pulse(t, dir, env, "invoke", "--async", name, "-d", "x"); code != exitFailure || !strings.Contains(errs, "401") {
		t.Errorf("invoke --async without the key: exit %d, %s; want the gateway's 401", code, errs)
	}
	withKey := maps.Clone(env)
	withKey["PULSE_KEY"] = key
	if code, id, errs = pulse(t, dir, withKey, "invoke", "--async", name, "-d", "x"); code != 0 || len(strings.TrimSpace(id)) != 32 {
		t.Errorf("invoke --async with the key: exit %d, %q, %s", code, id, errs)
	}
}

// TestTLSEndToEnd: against a real pulsed serving TLS on its gateway
// (HAProxy) and its API with a self-signed certificate, the CLI verifies
// it by a pinned fingerprint or by ca_file, sends the management token and
// invoke keys only then, and says clearly when the pin is wrong.
func TestTLSEndToEnd(t *testing.T) {
	engineOrSkip(t)
	if testing.Short() {
		t.Skip("end-to-end: skipped in -short mode")
	}
	dir := t.TempDir()
	certPEM, keyPEM := selfSigned(t)
	certFile := filepath.Join(dir, "pulse.pem")
	if err := os.WriteFile(certFile, append(certPEM, keyPEM...), 0o600); err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(caFile, certPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(certPEM)
	fp := formatFingerprint(sha256.Sum256(block.Bytes))

	suffix := make([]byte, 3)
	_, _ = rand.Read(suffix)
	instance := "tls-" + hex.EncodeToString(suffix)
	api, gw, tokenFile := startPulsedTLS(t, instance, certFile)
	if !strings.HasPrefix(api, "https://") || !strings.HasPrefix(gw, "https://") {
		t.Fatalf("api %s, gateway %s: want https", api, gw)
	}
	base := map[string]string{"PULSE_API": api, "PULSE_GATEWAY": gw, "PULSE_INSTANCE": instance, "PULSE_TOKEN_FILE": tokenFile}
	with := func(k, v string) map[string]string {
		m := maps.Clone(base)
		m[k] = v
		return m
	}
	fn := "tls-" + hex.EncodeToString(suffix)
	for _, env := range []map[string]string{with("PULSE_FINGERPRINT", fp), with("PULSE_CA_FILE", caFile)} {
		code, key, errs := pulse(t, dir, env, "key", "add", fn, "--id", "t1")
		if code != 0 || len(strings.TrimSpace(key)) != 43 {
			t.Fatalf("key add over https: exit %d, %q, %s", code, key, errs)
		}
		if code, out, errs := pulse(t, dir, env, "key", "ls", fn); code != 0 || !strings.Contains(out, fn+"  t1") {
			t.Errorf("key ls over https: exit %d\n%s\n%s", code, out, errs)
		}
		if code, out, errs := pulse(t, dir, env, "key", "rm", fn, "t1"); code != 0 {
			t.Errorf("key rm over https: exit %d\n%s\n%s", code, out, errs)
		}
		// HAProxy's own TLS: the function is not deployed, said from the
		// gateway's JSON.
		env["PULSE_KEY"] = strings.TrimSpace(key)
		if code, _, errs := pulse(t, dir, env, "invoke", fn); code != exitFailure || !strings.Contains(errs, fn+" is not deployed") {
			t.Errorf("invoke over https: exit %d, %s", code, errs)
		}
	}
	wrong := with("PULSE_FINGERPRINT", strings.Repeat("AB:", 31)+"AB")
	for _, args := range [][]string{{"key", "ls"}, {"invoke", fn}} {
		code, _, errs := pulse(t, dir, wrong, args...)
		if code != exitFailure || !strings.Contains(errs, "presented a certificate (SHA-256 "+fp+"), not the pinned one") {
			t.Errorf("%v with a wrong pin: exit %d, %s", args, code, errs)
		}
	}
	if code, _, errs := pulse(t, dir, base, "key", "ls"); code != exitFailure || !strings.Contains(errs, "this system's CAs do not verify") {
		t.Errorf("key ls with the system's CAs: exit %d, %s", code, errs)
	}
	plain := with("PULSE_GATEWAY", strings.Replace(gw, "https://", "http://", 1))
	if code, _, errs := pulse(t, dir, plain, "invoke", fn); code != exitFailure || !strings.Contains(errs, "if it serves https, use an https:// URL") {
		t.Errorf("invoke with http:// to the TLS gateway: exit %d, %s", code, errs)
	}
	plain = with("PULSE_API", strings.Replace(api, "https://", "http://", 1))
	if code, _, errs := pulse(t, dir, plain, "key", "ls"); code != exitFailure || !strings.Contains(errs, "Client sent an HTTP request to an HTTPS server") {
		t.Errorf("key ls with http:// to the TLS API: exit %d, %s", code, errs)
	}
}

// selfSigned returns a self-signed certificate for 127.0.0.1 and
// localhost and its key, PEM-encoded, as the installer makes one.
func selfSigned(t *testing.T) (certPEM, keyPEM []byte) {
	t.Helper()
	c, err := testcert.SelfSigned(time.Time{}, time.Time{}, "127.0.0.1", "localhost")
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, err = c.KeyPEM()
	if err != nil {
		t.Fatal(err)
	}
	return c.PEM, keyPEM
}

// pulseFor runs the CLI as pulse does, cancelling it (as Ctrl-C would)
// after d.
func pulseFor(t *testing.T, d time.Duration, dir string, env map[string]string, args ...string) (int, string, string) {
	t.Helper()
	var out, errb strings.Builder
	getenv := func(k string) string {
		if v, ok := env[k]; ok {
			return v
		}
		if k == "HOME" || k == "XDG_CONFIG_HOME" {
			return dir
		}
		return os.Getenv(k)
	}
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	code := run(ctx, args, streams{in: strings.NewReader(""), out: &out, err: &errb}, getenv)
	return code, out.String(), errb.String()
}

// killProcessesNaming kills every process whose command line names a path
// under dir (a test's HAProxy: its -f and -S are in the state directory)
// and returns their command lines.
func killProcessesNaming(dir string) []string {
	entries, _ := os.ReadDir("/proc")
	var killed []string
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || !bytes.Contains(b, []byte(dir+"/")) {
			continue
		}
		if syscall.Kill(pid, syscall.SIGKILL) == nil {
			killed = append(killed, strings.TrimSpace(strings.ReplaceAll(string(b), "\x00", " ")))
		}
	}
	return killed
}

package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/pulsefaas/pulse/contract"
)

// rawAnswer is one response read off a raw connection.
type rawAnswer struct {
	status int
	header http.Header
	body   string
}

// rawDo writes req (a whole HTTP/1.1 request, CRLF line ends) on a new
// connection to addr and reads one response: no client logic, no retry.
// A connection closed without an answer is status 0.
func rawDo(t *testing.T, addr, req string) rawAnswer {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(15 * time.Second))
	if _, err := io.WriteString(conn, req); err != nil {
		return rawAnswer{}
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return rawAnswer{}
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return rawAnswer{status: resp.StatusCode, header: resp.Header, body: string(b)}
}

// jsonError checks a is status with a JSON body holding an "error" string.
func (a rawAnswer) jsonError(t *testing.T, what string, status int) {
	t.Helper()
	var m map[string]any
	if a.status != status {
		t.Errorf("%s: status %d %q, want %d", what, a.status, a.body, status)
		return
	}
	if err := json.Unmarshal([]byte(a.body), &m); err != nil || m["error"] == nil {
		t.Errorf("%s: %d with body %q, want a JSON error", what, a.status, a.body)
	}
	if ct := a.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("%s: Content-Type %q, want application/json", what, ct)
	}
}

// TestHostileInput attacks a real stack (pulsed, HAProxy, one replica on
// the engine) where it is exposed: the replica's published port, the
// cold-start listener, the gateway (paths, names, sizes, headers, bodies),
// the alarm webhook and the management API. Each answer is a clear error
// (a JSON body where HTTP allows it) and nothing reaches the function that
// should not. TLS is TestTLSLive's.
func TestHostileInput(t *testing.T) {
	e := newEnv(t)
	alarmToken := "alarm-" + e.tag + "-0123456789"
	l := startLivePulsed(t, e.tag, func(c *Config) {
		if err := os.WriteFile(c.AlarmTokenFile, []byte(alarmToken+"\n"), 0o640); err != nil {
			t.Fatal(err)
		}
	})
	defer l.stop()
	fn := "hostile-" + e.tag
	e.deployFunc(fn, "v1", deployment{fn: buildC(t, echoEnvC)})
	waitRoute(t, l.cfg.GatewayListen, "/function/"+fn)
	gw := l.cfg.GatewayListen
	cred, err := os.ReadFile(l.cfg.ReplicaAuthFile)
	if err != nil {
		t.Fatal(err)
	}
	credential := strings.TrimSpace(string(cred))

	// The replica's published port, as pulsed's catalog lists it.
	var replica string
	code, body := l.api(t, "GET", contract.CatalogPath, "")
	var cat contract.Catalog
	if err := json.Unmarshal([]byte(body), &cat); code != 200 || err != nil {
		t.Fatalf("catalog: %d %s", code, body)
	}
	for _, f := range cat.Functions {
		if f.Name == fn && len(f.Replicas) > 0 {
			replica = f.Replicas[0].Addr
		}
	}
	if replica == "" {
		t.Fatalf("no replica of %s in the catalog: %s", fn, body)
	}

	t.Run("replica port", func(t *testing.T) {
		for _, c := range []struct{ what, req string }{
			{"POST without the credential", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi"},
			{"metrics without the credential", "GET " + contract.MetricsPath + " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"},
			{"health without the credential", "GET " + contract.HealthPath + " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"},
			{"a wrong credential", "GET / HTTP/1.1\r\nHost: x\r\n" + contract.HeaderReplicaAuth + ": " + strings.Repeat("0", len(credential)) + "\r\nConnection: close\r\n\r\n"},
			{"a prefix of the credential", "GET / HTTP/1.1\r\nHost: x\r\n" + contract.HeaderReplicaAuth + ": " + credential[:len(credential)-1] + "\r\nConnection: close\r\n\r\n"},
		} {
			rawDo(t, replica, c.req).jsonError(t, c.what, 403)
		}
		// With it (the gateway's and the collector's way), served: the
		// refusals above are the credential's doing.
		a := rawDo(t, replica, "GET "+contract.MetricsPath+" HTTP/1.1\r\nHost: x\r\n"+contract.HeaderReplicaAuth+": "+credential+"\r\nConnection: close\r\n\r\n")
		if a.status != 200 || !strings.Contains(a.body, contract.MetricRequests) {
			t.Errorf("metrics with the credential: %d %.200q", a.status, a.body)
		}
	})

	t.Run("cold-start listener", func(t *testing.T) {
		for _, c := range []struct{ what, req string }{
			{"a function by name", "POST / HTTP/1.1\r\nHost: x\r\n" + contract.HeaderFunction + ": " + fn + "\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi"},
			{"metrics", "GET " + contract.MetricsPath + " HTTP/1.1\r\nHost: x\r\n" + contract.HeaderFunction + ": " + fn + "\r\nConnection: close\r\n\r\n"},
			{"a wrong credential", "POST / HTTP/1.1\r\nHost: x\r\n" + contract.HeaderFunction + ": " + fn + "\r\n" + contract.HeaderReplicaAuth + ": nope-nope-nope-nope\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"},
		} {
			rawDo(t, l.cfg.ColdStartListen, c.req).jsonError(t, c.what, 403)
		}
	})

	t.Run("gateway", func(t *testing.T) {
		get := func(path string) string {
			return "GET " + path + " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
		}
		for _, c := range []struct {
			what, req string
			status    int
		}{
			{"the watchdog's metrics through the function", get("/function/" + fn + contract.MetricsPath), 404},
			{"the reserved prefix, percent-encoded", get("/function/" + fn + "/%5F/metrics"), 404},
			{"the reserved prefix at the root", get(contract.MetricsPath), 404},
			{"an unknown function", get("/function/nope-" + e.tag), 404},
			{"a name Swarm would take but Pulse not", get("/function/Odd_Name"), 404},
			{"a name of 300 characters", get("/function/" + strings.Repeat("a", 300)), 404},
			{"no function", get("/"), 404},
			{"a body over max_body", "POST /function/" + fn + " HTTP/1.1\r\nHost: x\r\nContent-Length: 2000000\r\nConnection: close\r\n\r\n", 413},
			{"a chunked body over max_body", "POST /function/" + fn + " HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n" +
				strings.Repeat(fmt.Sprintf("%x\r\n%s\r\n", 64<<10, strings.Repeat("z", 64<<10)), 20) + "0\r\n\r\n", 413},
			{"a header of 13 KiB", "GET /function/" + fn + " HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("b", 13<<10) + "\r\nConnection: close\r\n\r\n", 431},
		} {
			rawDo(t, gw, c.req).jsonError(t, c.what, c.status)
		}
		// A dot-dot path is the function's path, not a way out of it: the
		// function answers it, never the watchdog's health endpoint.
		if a := rawDo(t, gw, get("/function/"+fn+"/../../_/health")); a.status != 200 || !strings.Contains(a.body, "REQUEST_METHOD=GET") {
			t.Errorf("a dot-dot path: %d %q, want the function's answer", a.status, a.body)
		}
		// Headers a client must not pass to the function: the replica
		// credential (replaced by the gateway's), the function header,
		// a forged X-Forwarded-For.
		a := rawDo(t, gw, "POST /function/"+fn+" HTTP/1.1\r\nHost: x\r\n"+contract.HeaderReplicaAuth+": forged-forged-forged\r\n"+
			contract.HeaderFunction+": other\r\nX-Forwarded-For: 6.6.6.6\r\nContent-Length: 4\r\nConnection: close\r\n\r\nbody")
		if a.status != 200 {
			t.Fatalf("a request with forged headers: %d %q", a.status, a.body)
		}
		for _, bad := range []string{"REPLICA_AUTH", "forged", "HTTP_X_PULSE_FUNCTION", "6.6.6.6"} {
			if strings.Contains(a.body, bad) {
				t.Errorf("the function saw %q:\n%s", bad, a.body)
			}
		}
		if !strings.HasSuffix(a.body, "body:body") {
			t.Errorf("the function's answer %q does not end with its body", a.body)
		}
	})

	t.Run("bad services", func(t *testing.T) {
		// Services of this instance that Swarm accepts and Pulse cannot
		// route: each is skipped with its reason (in /healthz, the
		// catalog), the rest keep working.
		img, err := exec.Command("docker", "service", "inspect", fn, "--format", "{{.Spec.TaskTemplate.ContainerSpec.Image}}").Output()
		if err != nil {
			t.Fatal(err)
		}
		bad := map[string][]string{
			"badtimeout-" + e.tag: {"--label", contract.LabelTimeout + "=abc"},
			"badbody-" + e.tag:    {"--label", contract.LabelMaxBody + "=-1"},
			"Odd_Name_" + e.tag:   nil,
		}
		for name, labels := range bad {
			args := append([]string{"service", "create", "-d", "--name", name, "--replicas", "0",
				"--label", contract.LabelFunction + "=" + name, "--label", contract.LabelInstance + "=" + e.tag}, labels...)
			if out, err := exec.Command("docker", append(args, strings.TrimSpace(string(img)))...).CombinedOutput(); err != nil {
				t.Fatalf("docker service create %s: %v\n%s", name, err, out)
			}
			t.Cleanup(func() { _ = exec.Command("docker", "service", "rm", name).Run() })
		}
		deadline := time.Now().Add(20 * time.Second)
		for {
			code, body := l.api(t, "GET", "/healthz", "")
			var h health
			_ = json.Unmarshal([]byte(body), &h)
			seen := 0
			for _, sk := range h.Skipped {
				if _, ok := bad[sk.Name]; ok && sk.Reason != "" {
					seen++
				}
			}
			if code == 200 && h.Status == "ok" && seen == len(bad) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("/healthz: %d %s; want ok listing the %d bad services", code, body, len(bad))
			}
			time.Sleep(200 * time.Millisecond)
		}
		// The gateway still follows the swarm for the good function.
		e.scale(fn, 2)
		waitRoute(t, gw, "/function/"+fn)
		deadline = time.Now().Add(20 * time.Second)
		for {
			_, body := l.api(t, "GET", contract.CatalogPath, "")
			var c contract.Catalog
			_ = json.Unmarshal([]byte(body), &c)
			routed := 0
			for _, f := range c.Functions {
				for _, r := range f.Replicas {
					if f.Name == fn && r.Routed {
						routed++
					}
				}
			}
			if routed == 2 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("with bad services beside it, %s has %d routed replicas, want 2: %s", fn, routed, body)
			}
			time.Sleep(200 * time.Millisecond)
		}
	})

	t.Run("webhook", func(t *testing.T) {
		post := func(auth, body string) string {
			h := "POST " + contract.AlarmsPath + " HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nConnection: close\r\n"
			if auth != "" {
				h += "Authorization: Bearer " + auth + "\r\n"
			}
			return h + fmt.Sprintf("Content-Length: %d\r\n\r\n%s", len(body), body)
		}
		rawDo(t, l.cfg.APIListen, post("", `{}`)).jsonError(t, "no token", 401)
		rawDo(t, l.cfg.APIListen, post("wrong", `{}`)).jsonError(t, "a wrong token", 401)
		rawDo(t, l.cfg.APIListen, post(alarmToken, `{"function":`)).jsonError(t, "truncated JSON", 400)
		rawDo(t, l.cfg.APIListen, post(alarmToken, `[1,2,3]`)).jsonError(t, "not an object", 400)
		rawDo(t, l.cfg.APIListen, post(alarmToken, `{"function":"`+strings.Repeat("x", 200<<10)+`"}`)).jsonError(t, "a body of 200 KiB", 413)
	})

	t.Run("management API", func(t *testing.T) {
		req := func(method, path, auth, body string) string {
			h := method + " " + path + " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
			if auth != "" {
				h += "Authorization: Bearer " + auth + "\r\n"
			}
			return h + fmt.Sprintf("Content-Length: %d\r\n\r\n%s", len(body), body)
		}
		api := l.cfg.APIListen
		rawDo(t, api, req("GET", contract.KeysPath, "", "")).jsonError(t, "list without the token", 401)
		rawDo(t, api, req("POST", contract.KeysPath+fn, alarmToken, `{"sha256":"`+contract.KeyDigest("k")+`"}`)).jsonError(t, "the alarm token", 401)
		rawDo(t, api, req("POST", contract.KeysPath+fn, l.token, `{"sha256":"KEY"}`)).jsonError(t, "a key instead of its digest", 400)
		rawDo(t, api, req("POST", contract.KeysPath+fn, l.token, `{"sha256":"`+contract.KeyDigest("k")+`","id":"../x"}`)).jsonError(t, "a bad id", 400)
		rawDo(t, api, req("POST", contract.KeysPath+"Odd_Name", l.token, `{"sha256":"`+contract.KeyDigest("k")+`"}`)).jsonError(t, "a bad function name", 400)
		rawDo(t, api, req("POST", contract.KeysPath+fn, l.token, `{"sha256":"`+strings.Repeat("a", 8<<10)+`"}`)).jsonError(t, "a body of 8 KiB", 413)
		rawDo(t, api, req("DELETE", contract.KeysPath+fn+"/none", l.token, "")).jsonError(t, "removing no key", 404)
		// Nothing above added a key: the function is still open.
		if code, got := gatewayPost(t, gw, fn, "", "x"); code != 200 {
			t.Errorf("after the refused key requests: %d %s, want the function still open", code, got)
		}
	})
}

package main

import (
	"crypto/tls"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pulsefaas/pulse/contract"
	"github.com/pulsefaas/pulse/internal/testcert"
)

// tlsWebhook is a recorder behind HTTPS with cert.
func tlsWebhook(t *testing.T, cert *testcert.TLSCert, rc *recorder) *httptest.Server {
	t.Helper()
	srv := httptest.NewUnstartedServer(rc)
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert.Cert}}
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the handshakes the tests fail
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv
}

func writeTemp(t *testing.T, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestHookTLS posts to an HTTPS webhook: with its CA (from the environment
// or the config file) the event arrives; without it, through a certificate
// for another host, or over plain HTTP, one line says which check failed
// and what to set, and nothing is sent.
func TestHookTLS(t *testing.T) {
	good, err := testcert.SelfSigned(time.Time{}, time.Time{}, "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	otherHost, err := testcert.SelfSigned(time.Time{}, time.Time{}, "pulse.test")
	if err != nil {
		t.Fatal(err)
	}
	goodCA := writeTemp(t, "good-ca.pem", good.PEM)
	otherCA := writeTemp(t, "other-ca.pem", otherHost.PEM)
	tf := tokenFile(t, "s3cret")
	want := []recorded{{http.MethodPost, contract.AlarmsPath, "Bearer s3cret", "application/json", wantEvent}}
	noConfig := contract.EnvAlarmHookConfig + "=" + filepath.Join(t.TempDir(), "none.conf")

	tests := []struct {
		name    string
		cert    *testcert.TLSCert
		env     func(url string) []string
		wantLog []string // substrings of the one line; nil: posted
	}{
		{name: "CA from the environment", cert: good, env: func(url string) []string {
			return []string{"PULSE_ALARM_URL=" + url, "PULSE_ALARM_TOKEN_FILE=" + tf, "PULSE_ALARM_CA_FILE=" + goodCA}
		}},
		{name: "CA and URL from the config file", cert: good, env: func(url string) []string {
			conf := writeTemp(t, "alarm-hook.conf", []byte("# written by the installer\nPULSE_ALARM_URL="+url+"\nPULSE_ALARM_CA_FILE = "+goodCA+"\nPULSE_ALARM_TOKEN_FILE="+tf+"\n"))
			return []string{contract.EnvAlarmHookConfig + "=" + conf}
		}},
		{name: "no CA: system roots", cert: good, env: func(url string) []string {
			return []string{noConfig, "PULSE_ALARM_URL=" + url, "PULSE_ALARM_TOKEN_FILE=" + tf}
		}, wantLog: []string{"failed the certificate authority check", "not signed by the system's CAs (PULSE_ALARM_CA_FILE is empty)", "fix: set PULSE_ALARM_CA_FILE to"}},
		{name: "another CA", cert: good, env: func(url string) []string {
			return []string{"PULSE_ALARM_URL=" + url, "PULSE_ALARM_TOKEN_FILE=" + tf, "PULSE_ALARM_CA_FILE=" + otherCA}
		}, wantLog: []string{"failed the certificate authority check", "not signed by the CAs in PULSE_ALARM_CA_FILE " + otherCA}},
		{name: "wrong host name", cert: otherHost, env: func(url string) []string {
			return []string{"PULSE_ALARM_URL=" + url, "PULSE_ALARM_TOKEN_FILE=" + tf, "PULSE_ALARM_CA_FILE=" + otherCA}
		}, wantLog: []string{"failed the host name check", `not valid for "127.0.0.1"; it names pulse.test`}},
		{name: "missing CA file", cert: good, env: func(url string) []string {
			return []string{"PULSE_ALARM_URL=" + url, "PULSE_ALARM_TOKEN_FILE=" + tf, "PULSE_ALARM_CA_FILE=/nonexistent/ca.pem"}
		}, wantLog: []string{"failed the CA file check", "/nonexistent/ca.pem: stat", "no such file or directory"}},
		{name: "plain http to the HTTPS pulsed", cert: good, env: func(url string) []string {
			return []string{"PULSE_ALARM_URL=" + strings.Replace(url, "https://", "http://", 1), "PULSE_ALARM_TOKEN_FILE=" + tf}
		}, wantLog: []string{"pulsed answered 400 Bad Request to http://: it serves HTTPS", "fix: set PULSE_ALARM_URL to https://"}},
		{name: "CA file with an http URL", cert: good, env: func(url string) []string {
			return []string{"PULSE_ALARM_URL=" + strings.Replace(url, "https://", "http://", 1), "PULSE_ALARM_TOKEN_FILE=" + tf, "PULSE_ALARM_CA_FILE=" + goodCA}
		}, wantLog: []string{"PULSE_ALARM_CA_FILE " + goodCA + " is set but PULSE_ALARM_URL http://", "is not https://"}},
		{name: "config file with an unknown key", cert: good, env: func(url string) []string {
			conf := writeTemp(t, "alarm-hook.conf", []byte("PULSE_ALARM_URL="+url+"\nPULSE_ALARM_CA="+goodCA+"\n"))
			return []string{contract.EnvAlarmHookConfig + "=" + conf}
		}, wantLog: []string{"alarm-hook.conf: line 2: unknown key \"PULSE_ALARM_CA\" (known: PULSE_ALARM_URL, PULSE_ALARM_TOKEN_FILE, PULSE_ALARM_CA_FILE)"}},
		{name: "named config file missing", cert: good, env: func(url string) []string {
			return []string{contract.EnvAlarmHookConfig + "=/nonexistent/alarm-hook.conf"}
		}, wantLog: []string{"config file: open /nonexistent/alarm-hook.conf: no such file or directory"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rc := &recorder{status: http.StatusAccepted}
			srv := tlsWebhook(t, tc.cert, rc)
			// The post's budget is Timeout (100 ms): on a host busy enough
			// (seen at a load average of 19 on 2 cores) the handshake alone
			// takes longer. No case here expects a timeout, so one is run
			// again, a few times at most.
			var res result
			for attempt := 0; attempt < 5; attempt++ {
				rc.reset()
				res = runHook(t, tc.env(srv.URL+contract.AlarmsPath), netdataArgs(contract.AlarmScaleUp)...)
				if !strings.Contains(res.stderr, "context deadline exceeded") {
					break
				}
				t.Logf("attempt %d timed out (busy host): %s", attempt+1, strings.TrimSpace(res.stderr))
			}
			if res.code != 0 {
				t.Errorf("exit %d, want 0", res.code)
			}
			got := rc.requests()
			if tc.wantLog == nil {
				if res.stderr != "" || !slices.Equal(got, want) {
					t.Fatalf("stderr %q, requests %+v; want none and %+v", res.stderr, got, want)
				}
				t.Logf("posted over TLS in %v", res.elapsed)
				return
			}
			lines := strings.Split(strings.TrimSuffix(res.stderr, "\n"), "\n")
			if len(lines) != 1 || !logLine.MatchString(lines[0]) || !strings.Contains(lines[0], "pulse_scale_up hello CRITICAL not sent: ") {
				t.Fatalf("stderr %q, want one line saying the alarm was not sent", res.stderr)
			}
			for _, w := range tc.wantLog {
				if !strings.Contains(lines[0], w) {
					t.Errorf("line %q does not contain %q", lines[0], w)
				}
			}
			if len(got) != 0 && !strings.Contains(tc.name, "plain http") {
				t.Errorf("%d requests reached the webhook, want none", len(got))
			}
			t.Logf("%s", lines[0])
		})
	}
}

func TestParseConfig(t *testing.T) {
	tests := []struct {
		name, data string
		want       map[string]string
		wantErr    string
	}{
		{name: "installer's file", data: "# comment\n\nPULSE_ALARM_URL=https://127.0.0.1:8090/v1/alarms\nPULSE_ALARM_CA_FILE=/etc/pulse/tls-ca.pem\n",
			want: map[string]string{"PULSE_ALARM_URL": "https://127.0.0.1:8090/v1/alarms", "PULSE_ALARM_CA_FILE": "/etc/pulse/tls-ca.pem"}},
		{name: "spaces and an empty value", data: "  PULSE_ALARM_TOKEN_FILE =  /t \r\nPULSE_ALARM_CA_FILE=\n",
			want: map[string]string{"PULSE_ALARM_TOKEN_FILE": "/t", "PULSE_ALARM_CA_FILE": ""}},
		{name: "empty", data: "", want: map[string]string{}},
		{name: "not KEY=value", data: "PULSE_ALARM_URL\n", wantErr: `line 1: "PULSE_ALARM_URL" is not KEY=value`},
		{name: "unknown key", data: "\nHTTP_PROXY=http://x\n", wantErr: `line 2: unknown key "HTTP_PROXY"`},
		{name: "twice", data: "PULSE_ALARM_URL=a\nPULSE_ALARM_URL=b\n", wantErr: "line 2: PULSE_ALARM_URL set twice"},
		{name: "control character", data: "PULSE_ALARM_URL=a\x00b\n", wantErr: "line 1: PULSE_ALARM_URL holds a control character"},
		{name: "too large", data: strings.Repeat("#", maxConfigBytes+1), wantErr: "larger than"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseConfig([]byte(tc.data))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || len(got) != len(tc.want) {
				t.Fatalf("parseConfig = %v, %v; want %v", got, err, tc.want)
			}
			for k, v := range tc.want {
				if got[k] != v {
					t.Errorf("%s = %q, want %q", k, got[k], v)
				}
			}
		})
	}
}

// FuzzParseConfig: a config file yields an error or known keys with values
// free of control characters and surrounding white space.
func FuzzParseConfig(f *testing.F) {
	f.Add([]byte("# c\nPULSE_ALARM_URL=https://127.0.0.1:8090/v1/alarms\nPULSE_ALARM_CA_FILE=/etc/pulse/tls-ca.pem\n"))
	f.Add([]byte("PULSE_ALARM_URL==\n=\n"))
	f.Add([]byte("PULSE_ALARM_TOKEN_FILE=\x7f"))
	f.Fuzz(func(t *testing.T, data []byte) {
		kv, err := parseConfig(data)
		if err != nil {
			if len(err.Error()) > 500 { // clipped input in it
				t.Fatalf("error of %d bytes", len(err.Error()))
			}
			return
		}
		for k, v := range kv {
			if !known(k) || strings.TrimSpace(v) != v || strings.ContainsFunc(v, func(r rune) bool { return r < ' ' || r == 0x7f }) {
				t.Fatalf("accepted %q=%q", k, v)
			}
		}
	})
}

// Go's environment proxy skips loopback addresses, so a test through one
// could not fail: the client's settings are checked instead.
func TestClientIgnoresProxyEnv(t *testing.T) {
	tr, ok := newClient(nil).Transport.(*http.Transport)
	if !ok || tr.Proxy != nil || tr.DialTLSContext == nil || !tr.DisableKeepAlives {
		t.Fatalf("hook transport %+v: want no proxy, TLS dialed with the CA file, no keep-alive", tr)
	}
}

package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pulsefaas/pulse/contract"
	"github.com/pulsefaas/pulse/function"
	"github.com/pulsefaas/pulse/internal/testcert"
)

// recorded is one request a test server received.
type recorded struct {
	method, path, auth, body string
}

// recorder serves answer and keeps every request.
type recorder struct {
	mu     sync.Mutex
	reqs   []recorded
	answer func(w http.ResponseWriter, r *http.Request)
}

func (rec *recorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	rec.mu.Lock()
	rec.reqs = append(rec.reqs, recorded{r.Method, r.URL.EscapedPath(), r.Header.Get("Authorization"), string(b)})
	rec.mu.Unlock()
	rec.answer(w, r)
}

func (rec *recorder) requests() []recorded {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return append([]recorded(nil), rec.reqs...)
}

func jsonAnswer(status int, v any) func(http.ResponseWriter, *http.Request) {
	return func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(v)
	}
}

func writeFile(t *testing.T, dir, name, text string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestInvokeAnswers: a non-2xx answer exits 1 with a line that says what it
// means: the gateway's JSON errors by their message, a function's own by
// its status; the body still goes to stdout. The key goes in the
// Authorization header.
func TestInvokeAnswers(t *testing.T) {
	gwAnswer := func(status int, body string) func(http.ResponseWriter, *http.Request) {
		return func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(status)
			io.WriteString(w, body)
		}
	}
	key := "0123456789abcdefABCDEF-_"
	cases := []struct {
		name   string
		answer func(http.ResponseWriter, *http.Request)
		env    map[string]string
		code   int
		want   string
	}{
		{"unknown function", gwAnswer(404, `{"error":"function not found","function":"hello"}`+"\n"), nil, exitFailure,
			"pulse: invoke hello: hello is not deployed, or the gateway does not route it (yet): the gateway answered 404 Not Found: function not found; `pulse ls` lists"},
		{"reserved path", gwAnswer(404, `{"error":"not found"}`+"\n"), nil, exitFailure,
			"the gateway answered 404 Not Found: not found: the path is not a function's"},
		{"no key", gwAnswer(401, `{"error":"invoke key required"}`), nil, exitFailure,
			"the gateway answered 401 Unauthorized: invoke key required: hello needs an invoke key: set PULSE_KEY or --key-file (`pulse key add hello` makes one)"},
		{"wrong key", gwAnswer(401, `{"error":"invoke key required"}`), map[string]string{"PULSE_KEY": key}, exitFailure,
			"the key sent is not one of hello's (`pulse key ls hello` lists their ids)"},
		{"too large", gwAnswer(413, `{"error":"payload too large"}`), nil, exitFailure, "the body is over hello's max_body"},
		{"no replica", gwAnswer(503, `{"error":"no replica available","function":"hello"}`), nil, exitFailure,
			"503 Service Unavailable: no replica available: no replica of hello is ready"},
		{"function's own error", func(w http.ResponseWriter, _ *http.Request) {
			w.WriteHeader(500)
			io.WriteString(w, "boom\x1b[31m")
		}, nil, exitFailure, "pulse: invoke hello: the function answered 500 Internal Server Error\n"},
		{"ok with a key", func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, "hi "+r.Header.Get("Authorization"))
		}, map[string]string{"PULSE_KEY": key + "\n"}, exitOK, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rec := &recorder{answer: tc.answer}
			srv := httptest.NewServer(rec)
			defer srv.Close()
			env := map[string]string{"PULSE_GATEWAY": srv.URL}
			for k, v := range tc.env {
				env[k] = v
			}
			code, stdout, stderr := pulse(t, t.TempDir(), env, "invoke", "hello", "-d", "x")
			if code != tc.code || !strings.Contains(stderr, tc.want) {
				t.Errorf("exit %d, stderr %q; want %d and %q", code, stderr, tc.code, tc.want)
			}
			reqs := rec.requests()
			if len(reqs) != 1 || reqs[0].path != "/function/hello/" || reqs[0].body != "x" {
				t.Fatalf("requests %+v", reqs)
			}
			wantAuth := ""
			if tc.env["PULSE_KEY"] != "" {
				wantAuth = "Bearer " + key
			}
			if reqs[0].auth != wantAuth {
				t.Errorf("Authorization %q, want %q", reqs[0].auth, wantAuth)
			}
			if tc.code == exitOK && stdout != "hi Bearer "+key {
				t.Errorf("stdout %q", stdout)
			}
			if tc.code != exitOK && stdout == "" {
				t.Errorf("the error answer's body is not on stdout")
			}
		})
	}
}

// TestInvokeKeyInClear: a key is not sent over plain http to another host.
func TestInvokeKeyInClear(t *testing.T) {
	env := map[string]string{"PULSE_GATEWAY": "http://192.0.2.1:8080", "PULSE_KEY": "0123456789abcdefXYZ"}
	code, _, stderr := pulse(t, t.TempDir(), env, "invoke", "hello")
	if code != exitFailure || !strings.Contains(stderr, "gateway http://192.0.2.1:8080 is plain http:// to another host: the invoke key would cross the network in clear text; use an https:// URL") {
		t.Errorf("exit %d, %s", code, stderr)
	}
	env = map[string]string{"PULSE_API": "http://192.0.2.1:8090", "PULSE_TOKEN_FILE": writeFile(t, t.TempDir(), "tok", "secret\n")}
	code, _, stderr = pulse(t, t.TempDir(), env, "key", "ls")
	if code != exitFailure || !strings.Contains(stderr, "api http://192.0.2.1:8090 is plain http:// to another host: the management token would cross") {
		t.Errorf("exit %d, %s", code, stderr)
	}
}

// TestKeyCommands: what `pulse key` sends pulsed's API (only the key's
// digest, with the management token), what it prints (the new key alone
// on stdout), and how it says the API's errors.
func TestKeyCommands(t *testing.T) {
	dir := t.TempDir()
	tokFile := writeFile(t, dir, "api-token", "s3cret-token\n")
	var mu sync.Mutex
	status, answer := http.StatusCreated, any(contract.KeyInfo{Function: "hello", ID: "ci", Created: "2026-12-06T08:00:00Z"})
	rec := &recorder{answer: func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if raw, ok := answer.([]byte); ok {
			w.WriteHeader(status)
			w.Write(raw)
			return
		}
		jsonAnswer(status, answer)(w, r)
	}}
	srv := httptest.NewServer(rec)
	defer srv.Close()
	env := map[string]string{"PULSE_API": srv.URL, "PULSE_TOKEN_FILE": tokFile}
	set := func(s int, a any) { mu.Lock(); status, answer = s, a; mu.Unlock() }
	last := func() recorded {
		r := rec.requests()
		return r[len(r)-1]
	}

	// A new key: printed once on stdout, only its digest sent.
	code, stdout, stderr := pulse(t, dir, env, "key", "add", "hello", "--id", "ci")
	key := strings.TrimSuffix(stdout, "\n")
	if code != exitOK || len(key) != 43 || strings.Count(stdout, "\n") != 1 || !strings.Contains(stderr, "hello: key ci added") {
		t.Fatalf("key add: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	if _, err := parseKey([]byte(key)); err != nil {
		t.Errorf("the new key %q does not parse: %v", key, err)
	}
	r := last()
	var add contract.KeyAdd
	if err := json.Unmarshal([]byte(r.body), &add); err != nil || add != (contract.KeyAdd{ID: "ci", SHA256: contract.KeyDigest(key)}) {
		t.Errorf("body %q (%v), want the id and the key's digest", r.body, err)
	}
	if r.method != "POST" || r.path != contract.KeysPath+"hello" || r.auth != "Bearer s3cret-token" || strings.Contains(r.body, key) {
		t.Errorf("request %+v", r)
	}

	// A key of one's own: sent as its digest, not printed.
	keyFile := writeFile(t, dir, "my.key", "my-own-key-0123456789\n")
	code, stdout, _ = pulse(t, dir, env, "key", "add", "hello", "--from-file", keyFile)
	if code != exitOK || stdout != "" || !strings.Contains(last().body, contract.KeyDigest("my-own-key-0123456789")) {
		t.Errorf("key add --from-file: exit %d, stdout %q, body %q", code, stdout, last().body)
	}

	// ls: a table.
	set(200, []contract.KeyInfo{{Function: "hello", ID: "ci", Created: "2026-12-06T08:00:00Z"}, {Function: "zz", ID: "k1", Created: "2026-12-06T08:01:00Z"}})
	code, stdout, _ = pulse(t, dir, env, "key", "ls")
	want := "FUNCTION  ID  CREATED\nhello     ci  2026-12-06T08:00:00Z\nzz        k1  2026-12-06T08:01:00Z\n"
	if code != exitOK || stdout != want || last().path != contract.KeysPath || last().method != "GET" {
		t.Errorf("key ls: exit %d\n%s\nwant\n%s", code, stdout, want)
	}
	code, _, _ = pulse(t, dir, env, "key", "ls", "hello")
	if code != exitOK || last().path != contract.KeysPath+"hello" {
		t.Errorf("key ls hello: exit %d, %+v", code, last())
	}

	// rm.
	set(http.StatusNoContent, nil)
	code, stdout, _ = pulse(t, dir, env, "key", "rm", "hello", "ci")
	if code != exitOK || stdout != "hello: key ci removed\n" || last().method != "DELETE" || last().path != contract.KeysPath+"hello/ci" {
		t.Errorf("key rm: exit %d, %q, %+v", code, stdout, last())
	}

	// The API's errors, said with its message; a failed add prints no key.
	for _, tc := range []struct {
		name   string
		status int
		answer any
		args   []string
		want   string
	}{
		{"wrong token", 401, map[string]string{"error": "missing or wrong bearer token (the api_token_file's)"}, []string{"key", "ls"},
			"pulse: key ls: pulsed answered 401 Unauthorized: missing or wrong bearer token (the api_token_file's); token_file " + tokFile + " does not hold the token"},
		{"duplicate", 409, map[string]string{"error": "hello already has a key ci; remove it first or choose another id"}, []string{"key", "add", "hello", "--id", "ci"},
			"pulse: key add hello: pulsed answered 409 Conflict: hello already has a key ci; remove it first"},
		{"no such key", 404, map[string]string{"error": "no such key: hello has no key zz"}, []string{"key", "rm", "hello", "zz"},
			"pulse: key rm hello zz: pulsed answered 404 Not Found: no such key: hello has no key zz"},
		{"not JSON", 502, []byte("<html>bad gateway</html>\n"), []string{"key", "ls"}, "pulsed answered 502 Bad Gateway: <html>bad gateway</html>\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			set(tc.status, tc.answer)
			code, stdout, stderr := pulse(t, dir, env, tc.args...)
			if code != exitFailure || stdout != "" || !strings.Contains(stderr, tc.want) {
				t.Errorf("exit %d, stdout %q, stderr %q; want 1, nothing, %q", code, stdout, stderr, tc.want)
			}
		})
	}

	// The token file: missing, a directory, empty.
	n := len(rec.requests())
	for _, tc := range []struct{ file, want string }{
		{filepath.Join(dir, "absent"), "management token: cannot read " + filepath.Join(dir, "absent") + " (token_file): open"},
		{dir, "(token_file): read " + dir + ": is a directory; set token_file in the config (or PULSE_TOKEN_FILE)"},
		{writeFile(t, dir, "empty", "\n"), "(token_file) is empty"},
		{writeFile(t, dir, "two", "a b\n"), "holds more than one line or word"},
	} {
		env := map[string]string{"PULSE_API": srv.URL, "PULSE_TOKEN_FILE": tc.file}
		code, stdout, stderr := pulse(t, dir, env, "key", "add", "hello")
		if code != exitFailure || stdout != "" || !strings.Contains(stderr, tc.want) {
			t.Errorf("token file %s: exit %d, stdout %q, stderr %q; want %q", tc.file, code, stdout, stderr, tc.want)
		}
	}
	if got := len(rec.requests()); got != n {
		t.Errorf("%d requests without a token", got-n)
	}
}

// tlsServer starts an https server (httptest's self-signed certificate for
// 127.0.0.1) and returns it, a PEM file of its certificate and the
// certificate's SHA-256 as openssl prints it.
func tlsServer(t *testing.T, h http.Handler) (*httptest.Server, string, string) {
	t.Helper()
	srv := httptest.NewTLSServer(h)
	t.Cleanup(srv.Close)
	pemFile := writeFile(t, t.TempDir(), "ca.pem", string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})))
	sum := sha256.Sum256(srv.Certificate().Raw)
	return srv, pemFile, formatFingerprint(sum)
}

// TestTLS: an https gateway or API is verified by ca_file, by a pinned
// fingerprint, or by the system's CAs; each failure says which and what
// the server presented.
func TestTLS(t *testing.T) {
	rec := &recorder{answer: func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, contract.KeysPath) {
			jsonAnswer(200, []contract.KeyInfo{{Function: "hello", ID: "ci", Created: "2026-12-06T08:00:00Z"}})(w, r)
			return
		}
		io.WriteString(w, "hello over TLS")
	}}
	srv, caFile, fp := tlsServer(t, rec)
	wrongFP := strings.Repeat("00:", 31) + "00"
	raw := strings.ToLower(strings.ReplaceAll(fp, ":", ""))
	tok := writeFile(t, t.TempDir(), "tok", "t0ken\n")

	for _, tc := range []struct {
		name string
		env  map[string]string
		code int
		want string
	}{
		{"ca_file", map[string]string{"PULSE_CA_FILE": caFile}, exitOK, ""},
		{"fingerprint with colons", map[string]string{"PULSE_FINGERPRINT": fp}, exitOK, ""},
		{"fingerprint without colons", map[string]string{"PULSE_FINGERPRINT": raw}, exitOK, ""},
		{"wrong fingerprint", map[string]string{"PULSE_FINGERPRINT": wrongFP}, exitFailure,
			"TLS: " + strings.TrimPrefix(srv.URL, "https://") + " presented a certificate (SHA-256 " + fp + "), not the pinned one (config key fingerprint, PULSE_FINGERPRINT): the pin is " + wrongFP + "; if the server's certificate was replaced, check it on the server: openssl x509 -in CERT -noout -fingerprint -sha256, and pin the new one\n"},
		{"system CAs", nil, exitFailure, "presented a certificate (SHA-256 " + fp + ") that this system's CAs do not verify: x509: certificate signed by unknown authority; set ca_file (PULSE_CA_FILE)"},
		{"ca_file of another CA", map[string]string{"PULSE_CA_FILE": "OTHER"}, exitFailure, "that ca_file OTHER does not verify: x509: certificate signed by unknown authority"},
		{"ca_file without certificates", map[string]string{"PULSE_CA_FILE": "EMPTY"}, exitFailure, "no PEM certificate in it"},
		{"ca_file missing", map[string]string{"PULSE_CA_FILE": "/nonexistent/ca.pem"}, exitFailure, "ca_file: open /nonexistent/ca.pem: no such file or directory (set ca_file or PULSE_CA_FILE to a readable PEM file)"},
		// The CA's certificate names 127.0.0.1 and example.com, not localhost.
		{"ca_file, another name", map[string]string{"PULSE_CA_FILE": caFile, "HOST": "localhost"}, exitFailure, "does not verify: x509: certificate is valid for example.com, *.example.com, not localhost"},
		// A pin holds whatever the name.
		{"fingerprint, another name", map[string]string{"PULSE_FINGERPRINT": fp, "HOST": "localhost"}, exitOK, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := map[string]string{"PULSE_GATEWAY": srv.URL, "PULSE_API": srv.URL, "PULSE_TOKEN_FILE": tok, "PULSE_KEY": "a-key-of-sixteen-chars"}
			for k, v := range tc.env {
				if k == "HOST" {
					u := strings.Replace(srv.URL, "127.0.0.1", v, 1)
					env["PULSE_GATEWAY"], env["PULSE_API"] = u, u
					continue
				}
				switch v {
				case "OTHER":
					v = writeFile(t, t.TempDir(), "other.pem", otherCertPEM(t))
					tc.want = strings.Replace(tc.want, "OTHER", v, 1)
				case "EMPTY":
					v = writeFile(t, t.TempDir(), "empty.pem", "not a certificate\n")
				}
				env[k] = v
			}
			n := len(rec.requests())
			code, stdout, stderr := pulse(t, t.TempDir(), env, "invoke", "hello")
			if code != tc.code || !strings.Contains(stderr, tc.want) {
				t.Errorf("invoke: exit %d, stderr %q; want %d and %q", code, stderr, tc.code, tc.want)
			}
			t.Logf("invoke: stderr %s", stderr)
			if tc.code == exitOK && stdout != "hello over TLS" {
				t.Errorf("invoke: stdout %q", stdout)
			}
			code, stdout, stderr = pulse(t, t.TempDir(), env, "key", "ls")
			if code != tc.code || !strings.Contains(stderr, tc.want) {
				t.Errorf("key ls: exit %d, stderr %q; want %d and %q", code, stderr, tc.code, tc.want)
			}
			if tc.code == exitOK && !strings.Contains(stdout, "hello     ci") {
				t.Errorf("key ls: stdout %q", stdout)
			}
			got := rec.requests()[n:]
			if tc.code != exitOK && len(got) != 0 {
				t.Errorf("the server got %d requests (with the key and token) over an unverified connection", len(got))
			}
			if tc.code == exitOK && (len(got) != 2 || got[0].auth != "Bearer a-key-of-sixteen-chars" || got[1].auth != "Bearer t0ken") {
				t.Errorf("requests %+v", got)
			}
		})
	}
}

// otherCertPEM is a fresh self-signed CA certificate for 127.0.0.1, which
// signed nothing the test servers present (httptest's servers all share
// one certificate).
func otherCertPEM(t *testing.T) string {
	t.Helper()
	c, err := testcert.SelfSigned(time.Time{}, time.Time{}, "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	return string(c.PEM)
}

// TestCatalogClient: pulsed's catalog over the CLI's client: a 503 is
// waited out, an error wraps function.ErrCatalog with the URL, and an
// unchanged catalog is asked with its ETag.
func TestCatalogClient(t *testing.T) {
	var mu sync.Mutex
	calls := 0
	var inm []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		calls++
		inm = append(inm, r.Header.Get("If-None-Match"))
		switch {
		case calls <= 2:
			jsonAnswer(503, map[string]string{"error": "catalog not ready"})(w, r)
		case r.Header.Get("If-None-Match") == `"v1"`:
			w.WriteHeader(304)
		default:
			w.Header().Set("ETag", `"v1"`)
			jsonAnswer(200, contract.Catalog{Version: "v1", Skipped: []contract.SkippedFunction{{Name: "odd", ServiceID: "abcdef0123456789", Reason: "pulse.timeout \"abc\""}}})(w, r)
		}
	}))
	defer srv.Close()
	a := &app{cfg: Config{API: srv.URL, TokenFile: "unused"}}
	api, err := a.api()
	if err != nil {
		t.Fatal(err)
	}
	cc := &catalogClient{api: api}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i := 0; i < 2; i++ {
		cat, err := cc.Catalog(ctx)
		if err != nil || cat.Version != "v1" || len(cat.Skipped) != 1 {
			t.Fatalf("catalog %d: %+v, %v", i, cat, err)
		}
	}
	mu.Lock()
	if calls != 4 || inm[3] != `"v1"` {
		t.Errorf("%d calls, If-None-Match %q", calls, inm)
	}
	mu.Unlock()

	srv.Close()
	_, err = cc.Catalog(ctx)
	if !errors.Is(err, function.ErrCatalog) || !strings.Contains(err.Error(), "cannot read pulsed's replica catalog at "+srv.URL+"/v1/replicas") {
		t.Errorf("closed server: %v", err)
	}

	// A pulsed that never gets ready: the wait ends with ctx, saying so.
	never := httptest.NewServer(jsonAnswerFunc(503, `{"error":"catalog not ready"}`))
	defer never.Close()
	a.cfg.API = never.URL
	api, _ = a.api()
	sctx, scancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer scancel()
	_, err = (&catalogClient{api: api}).Catalog(sctx)
	if !errors.Is(err, function.ErrCatalog) || !strings.Contains(err.Error(), "not ready yet: catalog not ready") {
		t.Errorf("never ready: %v", err)
	}
}

func jsonAnswerFunc(status int, body string) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		io.WriteString(w, body)
	}
}

func TestSkippedLines(t *testing.T) {
	got := skippedLines(contract.Catalog{Skipped: []contract.SkippedFunction{
		{Name: "a", ServiceID: "0123456789abcdef", Reason: "pulse.timeout \"abc\": want a duration"},
		{Name: "b\x1b[2J", ServiceID: "x", Reason: "two\nlines"},
	}})
	want := []string{
		`skipped by the gateway: a (service 0123456789ab): pulse.timeout "abc": want a duration; fix it and run pulse deploy again, or pulse rm a`,
		`skipped by the gateway: b?[2J (service x): two lines; fix it and run pulse deploy again, or pulse rm b?[2J`,
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("got\n%q\nwant\n%q", got, want)
	}
}

func TestParseFingerprint(t *testing.T) {
	sum := sha256.Sum256([]byte("x"))
	hexSum := hex.EncodeToString(sum[:])
	for _, in := range []string{hexSum, strings.ToUpper(hexSum), formatFingerprint(sum), "sha256:" + hexSum, "SHA256 Fingerprint=" + formatFingerprint(sum), " " + hexSum + "\n"} {
		got, err := parseFingerprint(in)
		if err != nil || got != sum {
			t.Errorf("%q: %x, %v", in, got, err)
		}
	}
	for _, in := range []string{"", hexSum[:62], hexSum + "00", strings.Replace(hexSum, hexSum[:1], "g", 1)} {
		if _, err := parseFingerprint(in); err == nil {
			t.Errorf("%q accepted", in)
		}
	}
}

// TestLsSkipped: pulse ls (the engine's list) also says which services
// pulsed's catalog skips and why, on stderr so --json stays JSON; a pulsed
// that cannot be read is one note.
func TestLsSkipped(t *testing.T) {
	engineOrSkip(t)
	srv := httptest.NewServer(jsonAnswerFunc(200, `{"version":"v1","functions":[],"skipped":[{"name":"odd","service_id":"0123456789abcdef","reason":"label pulse.timeout \"abc\": not a duration"}]}`))
	defer srv.Close()
	for _, args := range [][]string{{"ls"}, {"ls", "--json"}} {
		code, stdout, stderr := pulse(t, t.TempDir(), map[string]string{"PULSE_API": srv.URL}, args...)
		want := `skipped by the gateway: odd (service 0123456789ab): label pulse.timeout "abc": not a duration; fix it and run pulse deploy again, or pulse rm odd` + "\n"
		if code != exitOK || stderr != want {
			t.Errorf("%v: exit %d, stderr %q; want %q", args, code, stderr, want)
		}
		if args[len(args)-1] == "--json" {
			var v []any
			if err := json.Unmarshal([]byte(stdout), &v); err != nil {
				t.Errorf("--json: %v: %s", err, stdout)
			}
		}
	}
	code, _, stderr := pulse(t, t.TempDir(), map[string]string{"PULSE_API": "http://" + freeAddr(t)}, "ls")
	if code != exitOK || !strings.HasPrefix(stderr, "note: cannot read pulsed's replica catalog at http://") || strings.Count(stderr, "\n") != 1 {
		t.Errorf("without pulsed: exit %d, stderr %q", code, stderr)
	}
}

// TestSchemeMismatch: an https URL to a plain server, or an http URL to a
// TLS server, says which to use.
func TestSchemeMismatch(t *testing.T) {
	plain := httptest.NewServer(http.NotFoundHandler())
	defer plain.Close()
	tlsSrv, _, _ := tlsServer(t, http.NotFoundHandler())
	for _, tc := range []struct{ gateway, want string }{
		{strings.Replace(plain.URL, "http://", "https://", 1), "the server speaks plain HTTP: use an http:// URL"},
		{strings.Replace(tlsSrv.URL, "https://", "http://", 1), "the server answered 400 Bad Request: it speaks TLS: use an https:// URL"},
	} {
		code, _, stderr := pulse(t, t.TempDir(), map[string]string{"PULSE_GATEWAY": tc.gateway}, "invoke", "hello")
		if code != exitFailure || !strings.Contains(stderr, tc.want) {
			t.Errorf("%s: exit %d, %s; want %q", tc.gateway, code, stderr, tc.want)
		}
	}
}

package main

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/pulsefaas/pulse/contract"
)

// The async commands' success paths need the real stack (pulsed's async
// listener and dispatcher behind HAProxy); these tests cover what the CLI
// decides alone — argument checks, formatting — and how it says the
// servers' errors.

func TestRequestIDProblem(t *testing.T) {
	for _, tc := range []struct{ id, want string }{
		{"a", ""},
		{"7f3a9c2e-41d0-4c6e-9b8a-2f5d1e0c6a11", ""},
		{"01HV_x-Y", ""},
		{strings.Repeat("z", 64), ""},
		{"", "empty: want the id `pulse invoke --async` printed"},
		{strings.Repeat("z", 65), "65 characters: want 1 to 64 letters, digits, '-' and '_'"},
		{"abc/def", `'/' at character 4: want letters, digits, '-' and '_' only`},
		{"abc def", `' ' at character 4`},
		{"..", `'.' at character 1`},
		{"é", "a non-ASCII character at byte 1"},
		{"a\x1b[2J", `'\x1b' at character 2`},
		{"a%2F", `'%' at character 2`},
	} {
		if got := requestIDProblem(tc.id); got != tc.want && !(tc.want != "" && strings.HasPrefix(got, tc.want)) {
			t.Errorf("requestIDProblem(%q) = %q, want %q", tc.id, got, tc.want)
		}
	}
}

func TestFormatAge(t *testing.T) {
	for _, tc := range []struct {
		sec  float64
		want string
	}{
		{0, "-"},
		{-3, "-"},
		{0.2, "<1s"},
		{1, "1s"},
		{59.9, "59s"},
		{60, "1m00s"},
		{245, "4m05s"},
		{3599, "59m59s"},
		{3600, "1h00m"},
		{2*3600 + 3*60 + 59, "2h03m"},
		{86399, "23h59m"},
		{86400, "1d00h"},
		{3*86400 + 4*3600 + 5, "3d04h"},
		{2e9, ">31y"},
	} {
		if got := formatAge(tc.sec); got != tc.want {
			t.Errorf("formatAge(%v) = %q, want %q", tc.sec, got, tc.want)
		}
	}
}

func TestRenderQueues(t *testing.T) {
	var out bytes.Buffer
	err := renderQueues(&out, contract.Queues{Queues: []contract.QueueStatus{
		{Function: "hello", Depth: 12, Pending: 9, InFlight: 3, OldestAge: 245.7, Enqueued: 1040, Done: 1020, Failed: 8, Retried: 31},
		{Function: "idle", Enqueued: 3, Done: 3},
		{Function: "odd\x1b[2J", Depth: 1, Pending: 1, OldestAge: 0.3, Enqueued: 1},
	}})
	want := "" +
		"FUNCTION  DEPTH  PENDING  IN-FLIGHT  OLDEST  ENQUEUED  DONE  FAILED  RETRIED\n" +
		"hello     12     9        3          4m05s   1040      1020  8       31\n" +
		"idle      0      0        0          -       3         3     0       0\n" +
		"odd?[2J   1      1        0          <1s     1         0     0       0\n"
	if err != nil || out.String() != want {
		t.Errorf("got (%v)\n%s\nwant\n%s", err, out.String(), want)
	}
}

func TestRenderAsyncRequest(t *testing.T) {
	at := time.Date(2026, 12, 6, 8, 0, 0, 0, time.UTC)
	now := at.Add(90 * time.Second)
	for _, tc := range []struct {
		name string
		r    contract.AsyncRequest
		want string
	}{
		{"queued, no callback", contract.AsyncRequest{ID: "r1", Function: "hello", State: contract.AsyncQueued, EnqueuedAt: at, UpdatedAt: at},
			"Request:   r1\nFunction:  hello\nState:     queued\nStatus:    none yet\nAttempts:  0\nCallback:  none\n" +
				"Enqueued:  2026-12-06T08:00:00Z (1m30s ago)\nUpdated:   2026-12-06T08:00:00Z (1m30s ago)\n"},
		{"done, callback delivered", contract.AsyncRequest{ID: "r2", Function: "hello", State: contract.AsyncDone, Status: 200, Attempts: 2,
			Error: "attempt 1: 503 Service Unavailable", Callback: "https://app.example/done", CallbackState: contract.CallbackDelivered,
			EnqueuedAt: at, UpdatedAt: at.Add(5 * time.Second), FinishedAt: at.Add(4 * time.Second)},
			"Request:   r2\nFunction:  hello\nState:     done\nStatus:    200 OK\nAttempts:  2\nError:     attempt 1: 503 Service Unavailable\n" +
				"Callback:  https://app.example/done (delivered)\n" +
				"Enqueued:  2026-12-06T08:00:00Z (1m30s ago)\nUpdated:   2026-12-06T08:00:05Z (1m25s ago)\n" +
				"Finished:  2026-12-06T08:00:04Z (1m26s ago), 4s after it was enqueued\n"},
		{"failed, callback failed, server's words sanitized", contract.AsyncRequest{ID: "r3", Function: "hello", State: contract.AsyncFailed, Attempts: 4,
			Error: "max_age 1h passed\n\x1b[31m", Callback: "http://10.0.0.9/cb", CallbackState: contract.CallbackFailed, CallbackError: "connection refused",
			EnqueuedAt: at, UpdatedAt: at, FinishedAt: at},
			"Request:   r3\nFunction:  hello\nState:     failed\nStatus:    none yet\nAttempts:  4\nError:     max_age 1h passed ?[31m\n" +
				"Callback:  http://10.0.0.9/cb (failed)\n           connection refused\n" +
				"Enqueued:  2026-12-06T08:00:00Z (1m30s ago)\nUpdated:   2026-12-06T08:00:00Z (1m30s ago)\n" +
				"Finished:  2026-12-06T08:00:00Z (1m30s ago), - after it was enqueued\n"},
		{"a time ahead of this clock, unknown status", contract.AsyncRequest{ID: "r4", Function: "f", State: contract.AsyncRunning, Status: 599, Attempts: 1,
			Callback: "https://x.example/", EnqueuedAt: now.Add(time.Second)},
			"Request:   r4\nFunction:  f\nState:     running\nStatus:    599\nAttempts:  1\nCallback:  https://x.example/ (state unknown)\n" +
				"Enqueued:  2026-12-06T08:01:31Z\nUpdated:   -\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			renderAsyncRequest(&out, tc.r, now)
			if out.String() != tc.want {
				t.Errorf("got\n%s\nwant\n%s", out.String(), tc.want)
			}
		})
	}
}

func TestAsyncOutcome(t *testing.T) {
	for _, tc := range []struct {
		r    contract.AsyncRequest
		want string
	}{
		{contract.AsyncRequest{Function: "f", State: contract.AsyncDone, Status: 200}, ""},
		{contract.AsyncRequest{Function: "f", State: contract.AsyncDone, Status: 204}, ""},
		{contract.AsyncRequest{Function: "f", State: contract.AsyncDone, Status: 500}, "done, but f answered 500 Internal Server Error"},
		{contract.AsyncRequest{Function: "f", State: contract.AsyncDone, Status: 302}, "done, but f answered 302 Found"},
		{contract.AsyncRequest{Function: "f", State: contract.AsyncDone}, "done, but f answered nothing (no answer)"},
		{contract.AsyncRequest{Function: "f", State: contract.AsyncFailed, Attempts: 4, Error: "503 after 3 retries"}, "failed after 4 attempt(s): 503 after 3 retries"},
		{contract.AsyncRequest{Function: "f", State: contract.AsyncFailed}, "failed after 0 attempt(s)"},
		{contract.AsyncRequest{Function: "f", State: contract.AsyncQueued}, "not ended: queued"},
	} {
		if got := asyncOutcome(tc.r); got != tc.want {
			t.Errorf("%+v: %q, want %q", tc.r, got, tc.want)
		}
	}
}

func TestParseAsyncAccepted(t *testing.T) {
	for _, tc := range []struct {
		name, body, header string
		want               contract.AsyncAccepted
		err                string
	}{
		{"body", `{"request_id":"r1","function":"f","state":"queued"}`, "", contract.AsyncAccepted{RequestID: "r1", Function: "f", State: "queued"}, ""},
		{"body and header agree", `{"request_id":"r1","function":"f","state":"queued"}`, "r1", contract.AsyncAccepted{RequestID: "r1", Function: "f", State: "queued"}, ""},
		{"header only, no state", `{"function":"f"}`, "r2", contract.AsyncAccepted{RequestID: "r2", Function: "f", State: "queued"}, ""},
		{"not JSON", `<html>`, "r1", contract.AsyncAccepted{}, "its body is not the JSON expected ({request_id, function, state})"},
		{"no id", `{}`, "", contract.AsyncAccepted{}, "its request id is unusable: empty"},
		{"unsafe id", `{"request_id":"a\u001b[2J"}`, "", contract.AsyncAccepted{}, `its request id is unusable: '\x1b' at character 2`},
		{"disagree", `{"request_id":"r1"}`, "r9", contract.AsyncAccepted{}, `its X-Pulse-Request-Id header ("r9") and body ("r1") name different requests`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseAsyncAccepted([]byte(tc.body), tc.header)
			switch {
			case tc.err == "" && (err != nil || got != tc.want):
				t.Errorf("got %+v, %v; want %+v", got, err, tc.want)
			case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
				t.Errorf("error %v, want %q", err, tc.err)
			}
		})
	}
}

// TestAsyncUsageErrors: mistakes in the async command lines exit 2 with
// what to fix, before any request.
func TestAsyncUsageErrors(t *testing.T) {
	rec := &recorder{answer: jsonAnswer(500, map[string]string{"error": "no request expected"})}
	srv := httptest.NewServer(rec)
	defer srv.Close()
	dir := t.TempDir()
	env := map[string]string{"PULSE_GATEWAY": srv.URL, "PULSE_API": srv.URL, "PULSE_TOKEN_FILE": writeFile(t, dir, "tok", "s3cret\n")}
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"callback without async", []string{"invoke", "hello", "--callback", "https://a.example/"}, "--callback needs --async"},
		{"json without async", []string{"invoke", "hello", "--json"}, "--json needs --async: a synchronous invoke prints the function's answer as it is"},
		{"callback not http", []string{"invoke", "--async", "hello", "--callback", "ftp://a.example/x"}, `--callback "ftp://a.example/x": want an absolute http:// or https:// URL`},
		{"callback relative", []string{"invoke", "--async", "hello", "--callback", "/done"}, `--callback "/done": want an absolute http:// or https:// URL`},
		{"callback without host", []string{"invoke", "--async", "hello", "--callback", "http:///x"}, `--callback "http:///x": no host`},
		{"callback with a fragment", []string{"invoke", "--async", "hello", "--callback", "https://a.example/#x"}, "has a #fragment"},
		{"callback not a URL", []string{"invoke", "--async", "hello", "--callback", "http://a b/"}, `--callback "http://a b/": not a URL`},
		{"callback twice", []string{"invoke", "--async", "hello", "--callback", "https://a.example/", "-H", "X-Callback-Url=https://b.example/"}, "a X-Callback-Url header (-H) and --callback both given"},
		{"async bad name", []string{"invoke", "--async", "Hello"}, `NAME "Hello"`},
		{"queue alone", []string{"queue"}, "pulse queue needs a command: ls or inspect; e.g. pulse queue ls"},
		{"queue unknown", []string{"queue", "show"}, `unknown command "show" for "pulse queue": want ls or inspect`},
		{"queue ls with an argument", []string{"queue", "ls", "hello"}, `unknown command "hello" for "pulse queue ls"`},
		{"inspect without an id", []string{"queue", "inspect"}, "inspect takes REQUEST-ID (got 0 argument(s)); usage: pulse queue inspect REQUEST-ID [flags]; e.g. pulse queue inspect 7f3a9c2e"},
		{"inspect two ids", []string{"queue", "inspect", "a", "b"}, "inspect takes REQUEST-ID (got 2 argument(s))"},
		{"inspect a path", []string{"queue", "inspect", "../keys"}, `REQUEST-ID "../keys": '.' at character 1: want letters, digits, '-' and '_' only`},
		{"inspect an empty id", []string{"queue", "inspect", ""}, `REQUEST-ID "": empty`},
		{"inspect a long id", []string{"queue", "inspect", strings.Repeat("a", 65)}, "65 characters: want 1 to 64"},
		{"inspect an escape", []string{"queue", "inspect", "a\x1b[2J"}, `REQUEST-ID "a?[2J": '\x1b' at character 2`},
		{"wait without time", []string{"queue", "inspect", "r1", "--wait", "--timeout", "0s"}, "--timeout 0s: want a duration > 0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, stdout, stderr := pulse(t, dir, env, tc.args...)
			if code != exitUsage || stdout != "" || !strings.Contains(stderr, tc.want) {
				t.Errorf("exit %d, stdout %q, stderr %q; want 2, nothing, %q", code, stdout, stderr, tc.want)
			}
			if !strings.Contains(stderr, "--help' for usage") {
				t.Errorf("no usage hint: %q", stderr)
			}
		})
	}
	if n := len(rec.requests()); n != 0 {
		t.Errorf("%d requests sent: %+v", n, rec.requests())
	}
}

// TestInvokeAsyncErrors: what `pulse invoke --async` sends, and how it says
// the gateway's refusals: one line with the server's message and what to
// fix, exit 1, nothing on stdout (which holds only an id).
func TestInvokeAsyncErrors(t *testing.T) {
	answer := func(status int, contentType, body string, header ...string) func(http.ResponseWriter, *http.Request) {
		return func(w http.ResponseWriter, _ *http.Request) {
			for i := 0; i+1 < len(header); i += 2 {
				w.Header().Set(header[i], header[i+1])
			}
			if contentType != "" {
				w.Header().Set("Content-Type", contentType)
			}
			w.WriteHeader(status)
			io.WriteString(w, body)
		}
	}
	const js = "application/json"
	key := "0123456789abcdefABCDEF-_"
	noKey := map[string]string{}
	withKey := map[string]string{"PULSE_KEY": key}
	for _, tc := range []struct {
		name     string
		answer   func(http.ResponseWriter, *http.Request)
		env      map[string]string
		callback string
		want     string
	}{
		{"no key", answer(401, js, `{"error":"invoke key required"}`), noKey, "",
			"pulse: invoke --async hello: the gateway answered 401 Unauthorized: invoke key required: hello needs an invoke key: set PULSE_KEY or --key-file (`pulse key add hello` makes one)\n"},
		{"wrong key", answer(401, js, `{"error":"invoke key required"}`), withKey, "",
			"the key sent is not one of hello's (`pulse key ls hello` lists their ids)\n"},
		{"unknown function", answer(404, js, `{"error":"function not found","function":"hello"}`), noKey, "",
			"hello is not deployed, or the gateway does not route it (yet): the gateway answered 404 Not Found: function not found; `pulse ls` lists"},
		{"no async path", answer(404, js, `{"error":"not found"}`), noKey, "",
			"pulse: invoke --async hello: the gateway answered 404 Not Found: not found: it has no /async-function/ path: its pulsed predates async invoke, or --path is wrong\n"},
		{"too large", answer(413, js, `{"error":"request body too large","function":"hello","limit":1048576}`), noKey, "",
			"the gateway answered 413 Request Entity Too Large: request body too large: the body is over hello's max_body\n"},
		{"rate limited", answer(429, js, `{"error":"rate limit exceeded"}`), noKey, "",
			"the gateway answered 429 Too Many Requests: rate limit exceeded: over hello's rate limit (`pulse describe hello` shows it) or its async queue is full (`pulse queue ls`); try again later\n"},
		{"queue unavailable", answer(503, js, `{"error":"async store unavailable"}`), noKey, "",
			"the gateway answered 503 Service Unavailable: async store unavailable: pulsed cannot queue the request now; `pulse queue ls` shows the queues, `pulse doctor` checks pulsed; try again later\n"},
		{"callback refused", answer(400, js, `{"error":"X-Callback-Url refused: host 169.254.169.254 is not allowed","function":"hello"}`), noKey, "https://169.254.169.254/x",
			"pulse: invoke --async hello: the gateway answered 400 Bad Request: X-Callback-Url refused: host 169.254.169.254 is not allowed: fix --callback (an http:// or https:// URL that pulsed may post to)\n"},
		{"bad request with a callback", answer(400, js, `{"error":"reading the body: unexpected EOF","function":"hello"}`), noKey, "https://app.example/done",
			"the gateway answered 400 Bad Request: reading the body: unexpected EOF: fix the request (-H, --path, --query)\n"},
		{"bad request", answer(400, js, `{"error":"bad header"}`), noKey, "",
			"the gateway answered 400 Bad Request: bad header: fix the request (-H, --path, --query)\n"},
		{"headers too large", answer(431, js, `{"error":"request headers of 40000 bytes: at most 32768","function":"hello"}`), noKey, "",
			"pulse: invoke --async hello: the gateway answered 431 Request Header Fields Too Large: request headers of 40000 bytes: at most 32768\n"},
		{"not through the gateway", answer(403, js, `{"error":"forbidden: async requests come through the gateway"}`), noKey, "",
			"pulse: invoke --async hello: the gateway answered 403 Forbidden: forbidden: async requests come through the gateway\n"},
		{"not JSON", answer(502, "text/html", "<html>\x1b[2Jbad gateway</html>"), noKey, "",
			"the gateway answered 502 Bad Gateway: <html>?[2Jbad gateway</html> (not the gateway's JSON error: is PULSE_GATEWAY Pulse's gateway?)\n"},
		{"200, not 202", answer(200, "text/plain", "hello, world"), noKey, "",
			"the gateway answered 200 OK, not 202 Accepted: nothing was queued; is /async-function/ Pulse's gateway, with async invoke?\n"},
		{"202 without JSON", answer(202, "text/plain", "accepted"), noKey, "",
			"the gateway answered 202 Accepted, but its body is not the JSON expected ({request_id, function, state})"},
		{"202 with a bad id", answer(202, js, `{"request_id":"../x","function":"hello","state":"queued"}`), noKey, "",
			`the gateway answered 202 Accepted, but its request id is unusable: '.' at character 1`},
		{"202 with two ids", answer(202, js, `{"request_id":"r1","function":"hello","state":"queued"}`, contract.HeaderAsyncRequestID, "r2"), noKey, "",
			`its X-Pulse-Request-Id header ("r2") and body ("r1") name different requests`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got *http.Request
			var gotBody string
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				b, _ := io.ReadAll(r.Body)
				got, gotBody = r.Clone(r.Context()), string(b)
				tc.answer(w, r)
			}))
			defer srv.Close()
			env := map[string]string{"PULSE_GATEWAY": srv.URL}
			for k, v := range tc.env {
				env[k] = v
			}
			args := []string{"invoke", "--async", "hello", "-d", "x", "--path", "/sub", "--query", "a=1"}
			if tc.callback != "" {
				args = append(args, "--callback", tc.callback)
			}
			code, stdout, stderr := pulse(t, t.TempDir(), env, args...)
			if code != exitFailure || stdout != "" || !strings.Contains(stderr, tc.want) || strings.Count(stderr, "\n") != 1 {
				t.Errorf("exit %d, stdout %q, stderr %q; want 1, nothing, one line with %q", code, stdout, stderr, tc.want)
			}
			if got == nil {
				t.Fatal("no request")
			}
			wantAuth := ""
			if tc.env["PULSE_KEY"] != "" {
				wantAuth = "Bearer " + key
			}
			if got.Method != "POST" || got.URL.Path != "/async-function/hello/sub" || got.URL.RawQuery != "a=1" || gotBody != "x" ||
				got.Header.Get("Authorization") != wantAuth || got.Header.Get(contract.HeaderCallbackURL) != tc.callback {
				t.Errorf("request %s %s, body %q, Authorization %q, %s %q", got.Method, got.URL, gotBody, got.Header.Get("Authorization"),
					contract.HeaderCallbackURL, got.Header.Get(contract.HeaderCallbackURL))
			}
		})
	}

	// No gateway there.
	code, stdout, stderr := pulse(t, t.TempDir(), map[string]string{"PULSE_GATEWAY": "http://" + freeAddr(t)}, "invoke", "--async", "hello")
	if code != exitFailure || stdout != "" || !strings.Contains(stderr, "pulse: invoke hello: Post ") || !strings.Contains(stderr, "connection refused; is the gateway running there?") {
		t.Errorf("unreachable: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
}

// TestQueueErrors: how `pulse queue ls` and `pulse queue inspect` say
// pulsed's errors; what they send (the token to inspect only).
func TestQueueErrors(t *testing.T) {
	dir := t.TempDir()
	tokFile := writeFile(t, dir, "api-token", "s3cret-token\n")
	for _, tc := range []struct {
		name     string
		answer   func(http.ResponseWriter, *http.Request)
		args     []string
		wantPath string
		wantAuth string
		want     string
	}{
		{"ls: old pulsed", jsonAnswer(404, map[string]string{"error": "not found"}), []string{"queue", "ls"}, "/v1/queues", "",
			"pulse: queue ls: pulsed answered 404 Not Found: not found: this pulsed has no /v1/queues: it predates async invoke\n"},
		{"ls: not ready", jsonAnswer(503, map[string]string{"error": "async store not open"}), []string{"queue", "ls"}, "/v1/queues", "",
			"pulse: queue ls: pulsed answered 503 Service Unavailable: async store not open\n"},
		{"ls: bad JSON", jsonAnswerFunc(200, `{"queues":{}}`), []string{"queue", "ls"}, "/v1/queues", "",
			"pulse: queue ls: pulsed's API at "},
		{"ls --json: bad JSON", jsonAnswerFunc(200, `not json`), []string{"queue", "ls", "--json"}, "/v1/queues", "",
			"not the answer expected of GET /v1/queues: invalid character"},
		{"inspect: wrong token", jsonAnswer(401, map[string]string{"error": "missing or wrong bearer token"}), []string{"queue", "inspect", "r1"}, "/v1/async/r1", "Bearer s3cret-token",
			"pulse: queue inspect r1: pulsed answered 401 Unauthorized: missing or wrong bearer token; token_file " + tokFile + " does not hold the token of this pulsed's api_token_file\n"},
		{"inspect: unknown", jsonAnswer(404, map[string]string{"error": "no such request"}), []string{"queue", "inspect", "r1"}, "/v1/async/r1", "Bearer s3cret-token",
			"pulse: queue inspect r1: unknown request: pulsed does not know it (pulsed answered 404 Not Found: no such request): a mistyped id, or it ended longer ago than pulsed keeps requests\n"},
		{"inspect --wait: unknown, at once", jsonAnswer(404, map[string]string{"error": "no such request"}), []string{"queue", "inspect", "r1", "--wait"}, "/v1/async/r1", "Bearer s3cret-token",
			"pulse: queue inspect r1: unknown request: pulsed does not know it"},
		{"inspect --wait: wrong token, at once", jsonAnswer(401, map[string]string{"error": "missing or wrong bearer token"}), []string{"queue", "inspect", "r1", "--wait"}, "/v1/async/r1", "Bearer s3cret-token",
			"pulse: queue inspect r1: pulsed answered 401 Unauthorized"},
		{"inspect: not ready", jsonAnswer(503, map[string]string{"error": "async store not open"}), []string{"queue", "inspect", "r1"}, "/v1/async/r1", "Bearer s3cret-token",
			"pulse: queue inspect r1: pulsed answered 503 Service Unavailable: async store not open\n"},
		{"inspect --wait: not ready until the timeout", jsonAnswer(503, map[string]string{"error": "async store not open"}), []string{"queue", "inspect", "r1", "--wait", "--timeout", "700ms"}, "/v1/async/r1", "Bearer s3cret-token",
			"pulse: queue inspect r1: timed out after waiting 700ms: pulsed answered 503 Service Unavailable: async store not open; ask again with pulse queue inspect r1\n"},
		{"inspect: bad JSON", jsonAnswerFunc(200, `{"id":`), []string{"queue", "inspect", "r1"}, "/v1/async/r1", "Bearer s3cret-token",
			"not the answer expected of GET /v1/async/r1: unexpected end of JSON input\n"},
		{"inspect: another request", jsonAnswerFunc(200, `{"id":"r2","function":"f","state":"done"}`), []string{"queue", "inspect", "r1", "--json"}, "/v1/async/r1", "Bearer s3cret-token",
			`GET /v1/async/r1 answered request "r2", not r1` + "\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := &recorder{answer: tc.answer}
			srv := httptest.NewServer(rec)
			defer srv.Close()
			env := map[string]string{"PULSE_API": srv.URL, "PULSE_TOKEN_FILE": tokFile}
			start := time.Now()
			code, stdout, stderr := pulse(t, dir, env, tc.args...)
			if code != exitFailure || stdout != "" || !strings.Contains(stderr, tc.want) || strings.Count(stderr, "\n") != 1 {
				t.Errorf("exit %d, stdout %q, stderr %q; want 1, nothing, one line with %q", code, stdout, stderr, tc.want)
			}
			reqs := rec.requests()
			if len(reqs) == 0 {
				t.Fatal("no request")
			}
			for _, r := range reqs {
				if r.method != "GET" || r.path != tc.wantPath || r.auth != tc.wantAuth {
					t.Errorf("request %+v, want GET %s with Authorization %q", r, tc.wantPath, tc.wantAuth)
				}
			}
			waited := strings.Contains(tc.name, "until the timeout")
			if waited && (len(reqs) < 3 || time.Since(start) < 700*time.Millisecond) {
				t.Errorf("%d requests in %s: want one every 200ms for 700ms", len(reqs), time.Since(start))
			}
			if !waited && len(reqs) != 1 {
				t.Errorf("%d requests, want 1", len(reqs))
			}
		})
	}

	// pulsed not there: said at once without --wait, at the timeout with it.
	api := "http://" + freeAddr(t)
	env := map[string]string{"PULSE_API": api, "PULSE_TOKEN_FILE": tokFile}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"queue", "ls"}, "pulse: queue ls: pulsed's API at " + api + ": Get "},
		{[]string{"queue", "inspect", "r1"}, "pulse: queue inspect r1: pulsed's API at " + api + ": Get "},
		{[]string{"queue", "inspect", "r1", "--wait", "--timeout", "500ms"}, "pulse: queue inspect r1: timed out after waiting 500ms: pulsed's API at " + api + ": Get "},
	} {
		code, stdout, stderr := pulse(t, dir, env, tc.args...)
		if code != exitFailure || stdout != "" || !strings.HasPrefix(stderr, tc.want) || !strings.Contains(stderr, "connection refused; is pulsed running there?") {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want 1 and %q", tc.args, code, stdout, stderr, tc.want)
		}
	}

	// The token: not read for ls; needed for inspect, and never sent in
	// clear to another host.
	code, _, stderr := pulse(t, dir, map[string]string{"PULSE_API": api, "PULSE_TOKEN_FILE": dir + "/absent"}, "queue", "ls")
	if code != exitFailure || strings.Contains(stderr, "token") {
		t.Errorf("queue ls read the token: exit %d, %q", code, stderr)
	}
	code, _, stderr = pulse(t, dir, map[string]string{"PULSE_API": api, "PULSE_TOKEN_FILE": dir + "/absent"}, "queue", "inspect", "r1")
	if code != exitFailure || !strings.Contains(stderr, "pulse: queue inspect r1: management token: cannot read "+dir+"/absent (token_file)") {
		t.Errorf("inspect without a token: exit %d, %q", code, stderr)
	}
	code, _, stderr = pulse(t, dir, map[string]string{"PULSE_API": "http://192.0.2.1:8090", "PULSE_TOKEN_FILE": tokFile}, "queue", "inspect", "r1")
	if code != exitFailure || !strings.Contains(stderr, "api http://192.0.2.1:8090 is plain http:// to another host: the management token would cross") {
		t.Errorf("inspect in clear: exit %d, %q", code, stderr)
	}
}

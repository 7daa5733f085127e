package watchdog

import (
	"bufio"
	"bytes"
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/pulsefaas/pulse/contract"
)

// FuzzCGIEnv: whatever the request's headers, every variable handed to a
// function is NAME=value with a clean name, no NUL, no HTTP_PROXY, and no
// name twice.
func FuzzCGIEnv(f *testing.F) {
	f.Add("X-Test", "v", "/a?b=c")
	f.Add("Proxy", "http://evil", "/")
	f.Add("X_Under", "x", "/%00")
	f.Add("Bad Name", "v\x00w", "/?\x00")
	f.Add("Content-Type", "text/plain", "")
	f.Fuzz(func(t *testing.T, name, value, target string) {
		u, err := url.ParseRequestURI(target)
		if err != nil {
			u = &url.URL{Path: "/"}
		}
		r := &http.Request{Method: "POST", Proto: "HTTP/1.1", URL: u, RequestURI: target,
			RemoteAddr: "127.0.0.1:1234", Header: http.Header{name: {value}, "X-Other": {"ok"}}}
		base := baseEnv([]string{"PATH=/bin", "HTTP_PROXY=inherited", "REQUEST_METHOD=inherited"})
		seen := map[string]bool{}
		for _, kv := range cgiEnv(base, r, 3) {
			k, _, ok := strings.Cut(kv, "=")
			if !ok || k == "" {
				t.Fatalf("malformed %q", kv)
			}
			if strings.IndexByte(kv, 0) >= 0 {
				t.Fatalf("NUL in %q", kv)
			}
			for i := 0; i < len(k); i++ {
				c := k[i]
				if !(c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_') {
					t.Fatalf("bad name %q", k)
				}
			}
			if k == "HTTP_PROXY" {
				t.Fatalf("HTTP_PROXY set: %q", kv)
			}
			if seen[k] {
				t.Fatalf("%s twice", k)
			}
			seen[k] = true
		}
		if !seen["HTTP_X_OTHER"] || !seen["REQUEST_METHOD"] {
			t.Fatalf("lost variables: %v", seen)
		}
	})
}

// FuzzWriteRequest: what the proxy writes upstream is a request net/http
// parses back, with the same method, target, headers (minus hop-by-hop)
// and body, and exactly one framing: one Content-Length equal to the body
// (none for a GET or HEAD without a body), never a second one.
func FuzzWriteRequest(f *testing.F) {
	f.Add("GET", "/a?b=c", "X-Test", "v", "body")
	f.Add("POST", "/", "Connection", "X-Test", "")
	f.Add("PUT", "/x", "Keep-Alive", "timeout=5", "data")
	f.Add("POST", "/", "Content-Length", "4", "data")
	f.Add("POST", "/", "content-length", "4", "data")
	f.Add("GET", "/", "Content-Length", "0", "")
	f.Add("POST", "/", "Host", "other", "x")
	f.Fuzz(func(t *testing.T, method, target, name, value, body string) {
		raw := []byte(method + " " + target + " HTTP/1.1\r\nHost: h\r\n" + name + ": " + value +
			"\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body)
		r, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(raw)))
		if err != nil {
			return // net/http's server would have refused it before us
		}
		r.RemoteAddr = "10.1.2.3:4"
		b := []byte(body)
		if r.ContentLength != int64(len(body)) {
			return
		}
		if _, ok := upstreamTarget(r); !ok {
			return // the proxy answers 400 itself
		}
		var out bytes.Buffer
		p := &proxy{}
		if err := p.writeRequest(bufio.NewWriter(&out), r, b); err != nil {
			t.Fatal(err)
		}
		written := out.String()
		var lengths, hosts int
		for _, line := range strings.Split(written, "\r\n") {
			if line == "" {
				break // end of the header
			}
			k, _, _ := strings.Cut(line, ":")
			switch strings.ToLower(strings.TrimSpace(k)) {
			case "content-length":
				lengths++
			case "host":
				hosts++
			}
		}
		if lengths > 1 || hosts != 1 {
			t.Fatalf("%d Content-Length and %d Host headers in %q", lengths, hosts, written)
		}
		back, err := http.ReadRequest(bufio.NewReader(&out))
		if err != nil {
			t.Fatalf("upstream cannot parse %q: %v", written, err)
		}
		if back.Method != r.Method || back.RequestURI != r.URL.RequestURI() {
			t.Fatalf("%s %s became %s %s", r.Method, r.URL.RequestURI(), back.Method, back.RequestURI)
		}
		wantLength := len(body) > 0 || (r.Method != http.MethodGet && r.Method != http.MethodHead)
		if got := back.Header["Content-Length"]; wantLength && (len(got) != 1 || got[0] != strconv.Itoa(len(body))) {
			t.Fatalf("Content-Length %q for a body of %d", got, len(body))
		} else if !wantLength && len(got) != 0 {
			t.Fatalf("Content-Length %q on a %s without a body", got, r.Method)
		}
		for k, vv := range r.Header {
			if hopByHop(k) || k == "X-Forwarded-For" || k == "Expect" || listed(r.Header["Connection"], k) {
				if k != "X-Forwarded-For" && back.Header.Get(k) != "" && k != "Connection" && k != "Content-Length" {
					t.Fatalf("hop-by-hop %s forwarded", k)
				}
				continue
			}
			if k == "Host" || k == "Content-Length" {
				continue
			}
			if strings.Join(back.Header[k], ",") != strings.Join(vv, ",") {
				t.Fatalf("header %s: %q became %q", k, vv, back.Header[k])
			}
		}
		if !strings.HasSuffix(back.Header.Get("X-Forwarded-For"), "10.1.2.3") {
			t.Fatalf("X-Forwarded-For %q", back.Header.Get("X-Forwarded-For"))
		}
		var got bytes.Buffer
		_, _ = got.ReadFrom(back.Body)
		if got.String() != body {
			t.Fatalf("body %q became %q", body, got.String())
		}
	})
}

// FuzzAppendJSONString: error bodies are valid JSON and say what they were
// given (invalid UTF-8 aside).
func FuzzAppendJSONString(f *testing.F) {
	f.Add("plain")
	f.Add("quote \" backslash \\ newline \n tab \t nul \x00 ls \u2028")
	f.Add("\xff\xfe")
	f.Fuzz(func(t *testing.T, s string) {
		b := appendJSONString(nil, s)
		var back string
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatalf("%q → %s: %v", s, b, err)
		}
		if utf8.ValidString(s) && back != s {
			t.Fatalf("%q came back as %q", s, back)
		}
	})
}

// FuzzParseExec: the exec parser never panics and agrees with JSON.
func FuzzParseExec(f *testing.F) {
	for _, s := range []string{`["/a","b"]`, "/a b", `["\u0041"]`, `[`, `["a\"b"]`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		argv, err := parseExec(s)
		if err == nil && strings.HasPrefix(s, "[") && len(argv) == 0 {
			t.Fatalf("%q parsed to nothing without error", s)
		}
		if err == nil && strings.HasPrefix(s, "[") {
			var want []string
			if json.Unmarshal([]byte(s), &want) != nil {
				t.Fatalf("%q accepted but is not JSON", s)
			}
			if len(want) != len(argv) {
				t.Fatalf("%q: %q, JSON says %q", s, argv, want)
			}
			for i := range want {
				if want[i] != argv[i] {
					t.Fatalf("%q: %q, JSON says %q", s, argv, want)
				}
			}
		}
	})
}

// FuzzParseReplicaAuth: an accepted credential is the file less one line
// break, 1 to 4096 bytes, with nothing a header value cannot carry.
func FuzzParseReplicaAuth(f *testing.F) {
	for _, s := range []string{"secret\n", "secret\r\n", "", "\n", "a\nb", "x\x00", strings.Repeat("a", 4096) + "\n", strings.Repeat("a", 4097)} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		cred, err := parseReplicaAuth(b)
		if err != nil {
			return
		}
		if len(cred) == 0 || len(cred) > contract.MaxReplicaAuthBytes {
			t.Fatalf("%q accepted as %q", b, cred)
		}
		if cred != string(b) && cred+"\n" != string(b) && cred+"\r\n" != string(b) {
			t.Fatalf("%q became %q", b, cred)
		}
		h := http.Header{}
		h.Set(contract.HeaderReplicaAuth, cred)
		var out bytes.Buffer
		if err := h.Write(&out); err != nil {
			t.Fatal(err)
		}
		back, err := http.ReadRequest(bufio.NewReader(strings.NewReader("GET / HTTP/1.1\r\nHost: h\r\n" + out.String() + "\r\n")))
		if err != nil || back.Header.Get(contract.HeaderReplicaAuth) != strings.TrimSpace(cred) {
			t.Fatalf("%q does not survive as a header value: %v", cred, err)
		}
	})
}

// FuzzParseOOMKill: a cgroup memory file never panics the parser, and a
// count it finds is on an "oom_kill" line.
func FuzzParseOOMKill(f *testing.F) {
	for _, s := range []string{"oom_kill_disable 0\nunder_oom 0\noom_kill 3\n", "low 0\nhigh 0\nmax 0\noom 1\noom_kill 1\n", "", "oom_kill x", "oom_kill 18446744073709551616"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		n, ok := parseOOMKill(b)
		if !ok {
			return
		}
		for _, line := range strings.Split(string(b), "\n") {
			if v, found := strings.CutPrefix(line, "oom_kill "); found {
				if m, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64); err != nil || m != n {
					t.Fatalf("%q: %d from the first oom_kill line %q", b, n, line)
				}
				return
			}
		}
		t.Fatalf("%q: %d without an oom_kill line", b, n)
	})
}

// FuzzRequestID: the request id the watchdog repeats in its answers and
// logs is empty or a plain token.
func FuzzRequestID(f *testing.F) {
	for _, s := range []string{"req-42", "a b", "\"x\"", strings.Repeat("a", 129), "ü"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		r := &http.Request{Header: http.Header{contract.HeaderRequestID: {v}}}
		id := requestID(r)
		if id != "" && id != v {
			t.Fatalf("%q became %q", v, id)
		}
		for i := 0; i < len(id); i++ {
			if id[i] <= ' ' || id[i] >= 0x7f || id[i] == '"' || id[i] == '\\' {
				t.Fatalf("%q kept", v)
			}
		}
	})
}

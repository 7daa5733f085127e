package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pulsefaas/pulse/contract"
)

const testAPIToken = "t0ken-for-the-keys-api"

// applied records what the store handed the gateway; fail makes the next
// apply fail (the error path a real HAProxy rarely shows).
type applied struct {
	mu   sync.Mutex
	last map[string][]string
	n    int
	fail error
}

func (a *applied) apply(_ context.Context, keys map[string][]string) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.fail != nil {
		err := a.fail
		a.fail = nil
		return err
	}
	a.last, a.n = keys, a.n+1
	return nil
}

func newKeysServer(t *testing.T, token string) (*httptest.Server, *keyStore, *applied, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "keys.json")
	store, err := openKeyStore(path)
	if err != nil {
		t.Fatal(err)
	}
	store.now = func() time.Time { return time.Date(2026, 12, 6, 8, 0, 0, 0, time.UTC) }
	a := &applied{}
	store.setApplier(a.apply)
	mux := http.NewServeMux()
	mux.Handle(contract.KeysPath, &keysHandler{store: store, tok: newBearer(token), log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	srv := httptest.NewServer(limitBody(mux, maxAPIBody))
	t.Cleanup(srv.Close)
	return srv, store, a, path
}

func call(t *testing.T, srv *httptest.Server, method, path, auth, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusNoContent && resp.Header.Get("Content-Type") != "application/json" {
		t.Errorf("%s %s: Content-Type %q, want application/json", method, path, resp.Header.Get("Content-Type"))
	}
	return resp.StatusCode, strings.TrimSpace(string(b))
}

// TestKeysAPI walks the key store's API through every answer it gives.
func TestKeysAPI(t *testing.T) {
	srv, store, a, path := newKeysServer(t, testAPIToken)
	auth := "Bearer " + testAPIToken
	d1, d2 := contract.KeyDigest("first-key"), contract.KeyDigest("second-key")
	steps := []struct {
		name, method, path, auth, body string
		code                           int
		want                           string
	}{
		{"no token", "GET", "/v1/keys/", "", "", 401, `{"error":"missing or wrong bearer token (the api_token_file's)"}`},
		{"wrong token", "GET", "/v1/keys/", "Bearer " + testAPIToken + "x", "", 401, `{"error":"missing or wrong bearer token (the api_token_file's)"}`},
		{"basic", "GET", "/v1/keys/", "Basic " + testAPIToken, "", 401, `{"error":"missing or wrong bearer token (the api_token_file's)"}`},
		{"empty list", "GET", "/v1/keys/", auth, "", 200, `[]`},
		{"empty function", "GET", "/v1/keys/hello", auth, "", 200, `[]`},
		{"add", "POST", "/v1/keys/hello", auth, `{"id":"ci","sha256":"` + d1 + `"}`, 201,
			`{"function":"hello","id":"ci","created":"2026-12-06T08:00:00Z"}`},
		{"same id", "POST", "/v1/keys/hello", auth, `{"id":"ci","sha256":"` + d2 + `"}`, 409,
			`{"error":"duplicate key: hello already has a key ci; remove it first or choose another id"}`},
		{"same key", "POST", "/v1/keys/hello", auth, `{"id":"other","sha256":"` + d1 + `"}`, 409,
			`{"error":"duplicate key: hello already has this key (id ci)"}`},
		{"uppercase digest", "POST", "/v1/keys/hello", auth, `{"sha256":"` + strings.ToUpper(d2) + `"}`, 400,
			`{"error":"sha256: want 64 lowercase hex digits (0-9, a-f)"}`},
		{"short digest", "POST", "/v1/keys/hello", auth, `{"sha256":"abc"}`, 400,
			`{"error":"sha256 has 3 characters: want the 64 lowercase hex digits of the key's SHA-256"}`},
		{"plaintext key instead of a digest", "POST", "/v1/keys/hello", auth, `{"key":"s3cret"}`, 400,
			`{"error":"malformed JSON: json: unknown field \"key\""}`},
		{"bad id", "POST", "/v1/keys/hello", auth, `{"id":"a b","sha256":"` + d2 + `"}`, 400,
			`{"error":"id \"a b\": want 1 to 32 letters, digits, '-' or '_'"}`},
		{"empty body", "POST", "/v1/keys/hello", auth, ``, 400,
			`{"error":"empty body: want {\"sha256\": \"\u003c64 hex digits\u003e\", \"id\": \"\u003coptional\u003e\"}"}`},
		{"two objects", "POST", "/v1/keys/hello", auth, `{"sha256":"` + d2 + `"}{}`, 400, `{"error":"malformed JSON: data after the object"}`},
		{"not JSON", "POST", "/v1/keys/hello", auth, `sha256=` + d2, 400, `{"error":"malformed JSON: invalid character 's' looking for beginning of value"}`},
		{"oversized", "POST", "/v1/keys/hello", auth, `{"sha256":"` + strings.Repeat("a", maxKeysBody) + `"}`, 413,
			`{"error":"body over 4096 bytes"}`},
		{"over the API's limit", "POST", "/v1/keys/hello", auth, strings.Repeat(" ", maxAPIBody+1), 413,
			`{"error":"body over the API's limit of 64 KiB"}`},
		{"bad function", "POST", "/v1/keys/Hello_World", auth, `{"sha256":"` + d2 + `"}`, 400,
			`{"error":"function \"Hello_World\": want lowercase letters, digits and '-' (a function name)"}`},
		{"dot-dot", "GET", "/v1/keys/..%2F..%2Fetc", auth, "", 400,
			`{"error":"function \"../../etc\": want lowercase letters, digits and '-' (a function name)"}`},
		{"too deep", "GET", "/v1/keys/hello/ci/x", auth, "", 404, `{"error":"want /v1/keys/FUNCTION or /v1/keys/FUNCTION/ID"}`},
		{"put", "PUT", "/v1/keys/hello", auth, "", 405, `{"error":"method PUT: want GET, POST"}`},
		{"delete a function", "DELETE", "/v1/keys/hello", auth, "", 405, `{"error":"method DELETE: want GET, POST"}`},
		{"get a key", "GET", "/v1/keys/hello/ci", auth, "", 405, `{"error":"method GET: want DELETE"}`},
		{"post all", "POST", "/v1/keys/", auth, "", 405, `{"error":"method POST: want GET"}`},
		{"second key, no id", "POST", "/v1/keys/hello", auth, `{"sha256":"` + d2 + `"}`, 201, ""},
		{"another function", "POST", "/v1/keys/echo", auth, `{"id":"prod","sha256":"` + d2 + `"}`, 201,
			`{"function":"echo","id":"prod","created":"2026-12-06T08:00:00Z"}`},
		{"delete none", "DELETE", "/v1/keys/hello/nope", auth, "", 404, `{"error":"no such key: hello has no key nope"}`},
		{"delete bad id", "DELETE", "/v1/keys/hello/a.b", auth, "", 400, `{"error":"key id \"a.b\": want 1 to 32 letters, digits, '-' or '_'"}`},
		{"delete", "DELETE", "/v1/keys/hello/ci", auth, "", 204, ""},
		{"delete again", "DELETE", "/v1/keys/hello/ci", auth, "", 404, `{"error":"no such key: hello has no key ci"}`},
	}
	for _, s := range steps {
		code, got := call(t, srv, s.method, s.path, s.auth, s.body)
		if code != s.code || (s.want != "" && got != s.want) {
			t.Errorf("%s: %s %s: got %d %s\nwant %d %s", s.name, s.method, s.path, code, got, s.code, s.want)
		}
	}

	// What is left: echo/prod and hello's generated key, listed without
	// digests, and handed to the gateway as digests.
	code, got := call(t, srv, "GET", "/v1/keys/", auth, "")
	var infos []contract.KeyInfo
	if err := json.Unmarshal([]byte(got), &infos); code != 200 || err != nil || len(infos) != 2 ||
		infos[0] != (contract.KeyInfo{Function: "echo", ID: "prod", Created: "2026-12-06T08:00:00Z"}) ||
		infos[1].Function != "hello" || contract.KeyIDProblem(infos[1].ID) != "" || infos[1].ID == "ci" {
		t.Errorf("list: %d %s (%v)", code, got, err)
	}
	if strings.Contains(got, d1) || strings.Contains(got, d2) {
		t.Errorf("the list shows digests: %s", got)
	}
	want := map[string][]string{"echo": {d2}, "hello": {d2}}
	if !reflect.DeepEqual(a.last, want) || a.n != 4 { // 3 adds, 1 delete
		t.Errorf("applied %d times, last %v; want 4, %v", a.n, a.last, want)
	}

	// keys.json: 0600, digests only, read back the same.
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("keys.json: %v, mode %v; want 0600", err, st.Mode().Perm())
	}
	raw, _ := os.ReadFile(path)
	if strings.Contains(string(raw), "first-key") || strings.Contains(string(raw), "second-key") {
		t.Errorf("keys.json holds a plaintext key:\n%s", raw)
	}
	again, err := openKeyStore(path)
	if err != nil || !reflect.DeepEqual(again.keys, store.keys) {
		t.Errorf("reopened: %v, %v; want %v", again.keys, err, store.keys)
	}

	// The gateway refuses: nothing changes, not even the file.
	a.fail = errors.New("runtime API: no such map")
	code, got = call(t, srv, "POST", "/v1/keys/hello", auth, `{"id":"new","sha256":"`+d1+`"}`)
	if code != 500 || !strings.Contains(got, "apply to the gateway: runtime API: no such map") {
		t.Errorf("apply failure: %d %s", code, got)
	}
	if raw2, _ := os.ReadFile(path); string(raw2) != string(raw) {
		t.Errorf("keys.json changed although the gateway refused:\n%s", raw2)
	}
	if len(store.List("hello")) != 1 {
		t.Errorf("the store kept a key the gateway refused: %v", store.List("hello"))
	}
}

// TestKeysWithoutToken: no management token, every request 503.
func TestKeysWithoutToken(t *testing.T) {
	srv, _, _, _ := newKeysServer(t, "")
	for _, m := range []string{"GET", "POST", "DELETE"} {
		code, got := call(t, srv, m, "/v1/keys/hello", "Bearer ", "")
		if code != 503 || !strings.Contains(got, "no management token configured (api_token_file missing or empty)") {
			t.Errorf("%s: %d %s", m, code, got)
		}
	}
}

// TestKeysLimit: a function holds at most maxKeysPerFunction keys.
func TestKeysLimit(t *testing.T) {
	srv, _, _, _ := newKeysServer(t, testAPIToken)
	for i := 0; i <= maxKeysPerFunction; i++ {
		code, got := call(t, srv, "POST", "/v1/keys/hello", "Bearer "+testAPIToken,
			`{"sha256":"`+contract.KeyDigest(strings.Repeat("k", i+1))+`"}`)
		if i < maxKeysPerFunction && code != 201 || i == maxKeysPerFunction && (code != 409 || !strings.Contains(got, "too many keys")) {
			t.Fatalf("key %d: %d %s", i, code, got)
		}
	}
}

// TestKeysFileRefused: a damaged or loosened keys.json stops pulsed with a
// reason.
func TestKeysFileRefused(t *testing.T) {
	dir := t.TempDir()
	d := contract.KeyDigest("x")
	for _, tc := range []struct {
		name, body string
		mode       os.FileMode
		want       string
	}{
		{"readable by others", `{"version":1,"functions":{}}`, 0o644, "has mode 0644: run `chmod 600"},
		{"not JSON", `{`, 0o600, "malformed"},
		{"future version", `{"version":2,"functions":{}}`, 0o600, "version 2: want 1"},
		{"bad digest", `{"version":1,"functions":{"hello":[{"id":"a","sha256":"XYZ"}]}}`, 0o600, "function hello: key a: sha256 has 3 characters"},
		{"bad function", `{"version":1,"functions":{"../x":[]}}`, 0o600, `function "../x"`},
		{"duplicate id", `{"version":1,"functions":{"hello":[{"id":"a","sha256":"` + d + `"},{"id":"a","sha256":"` + d + `"}]}}`, 0o600, "key id a twice"},
		{"plaintext field", `{"version":1,"functions":{"hello":[{"id":"a","key":"s3cret"}]}}`, 0o600, `unknown field "key"`},
	} {
		p := filepath.Join(dir, tc.name+".json")
		if err := os.WriteFile(p, []byte(tc.body), tc.mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, tc.mode); err != nil {
			t.Fatal(err)
		}
		if _, err := openKeyStore(p); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want it to contain %q", tc.name, err, tc.want)
		}
	}
}

// TestKeysLegacyFile: keys_file is imported as digests, once, and refused
// when group or others can read it.
func TestKeysLegacyFile(t *testing.T) {
	dir := t.TempDir()
	legacy := filepath.Join(dir, "keys.yaml")
	if err := os.WriteFile(legacy, []byte("hello: s3cret-hello\necho: s3cret-echo\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	if _, err := loadLegacyKeys(legacy); err == nil || !strings.Contains(err.Error(), "has mode 0640") || !strings.Contains(err.Error(), "chmod 600 "+legacy) {
		t.Errorf("group-readable keys_file: %v", err)
	}
	if err := os.Chmod(legacy, 0o600); err != nil {
		t.Fatal(err)
	}
	m, err := loadLegacyKeys(legacy)
	if err != nil {
		t.Fatal(err)
	}
	store, err := openKeyStore(filepath.Join(dir, "keys.json"))
	if err != nil {
		t.Fatal(err)
	}
	a := &applied{}
	store.setApplier(a.apply)
	for i, want := range []int{2, 0} { // the second start imports nothing new
		n, err := store.importLegacy(context.Background(), m)
		if err != nil || n != want {
			t.Errorf("import %d: %d, %v; want %d", i, n, err, want)
		}
	}
	if w := map[string][]string{"echo": {contract.KeyDigest("s3cret-echo")}, "hello": {contract.KeyDigest("s3cret-hello")}}; !reflect.DeepEqual(a.last, w) {
		t.Errorf("applied %v, want %v", a.last, w)
	}
	raw, _ := os.ReadFile(filepath.Join(dir, "keys.json"))
	if strings.Contains(string(raw), "s3cret") {
		t.Errorf("keys.json holds plaintext:\n%s", raw)
	}
	for _, bad := range []struct{ body, want string }{
		{"Hello: x\n", `function "Hello"`},
		{"hello: \"\"\n", "empty key"},
		{"- a\n", "want a YAML map of function name to key"},
	} {
		if err := os.WriteFile(legacy, []byte(bad.body), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := loadLegacyKeys(legacy); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("%q: %v, want %q", bad.body, err, bad.want)
		}
	}
}

// FuzzParseKeyAdd: the POST body is outside input; what is accepted is a
// well-formed digest and id.
func FuzzParseKeyAdd(f *testing.F) {
	f.Add([]byte(`{"id":"ci","sha256":"` + contract.KeyDigest("k") + `"}`))
	f.Add([]byte(`{"sha256":1}`))
	f.Add([]byte(`{"id":"\u0000"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		add, err := parseKeyAdd(b)
		if err != nil {
			return
		}
		if digestProblem(add.SHA256) != "" || (add.ID != "" && contract.KeyIDProblem(add.ID) != "") {
			t.Fatalf("accepted %+v from %q", add, b)
		}
	})
}

// FuzzParseKeysFile: keys.json is read at every start; a damaged one is an
// error, never a panic or a bad digest handed to HAProxy.
func FuzzParseKeysFile(f *testing.F) {
	f.Add([]byte(`{"version":1,"functions":{"hello":[{"id":"a","sha256":"` + contract.KeyDigest("k") + `","created":"x"}]}}`))
	f.Add([]byte(`{"version":1,"functions":{"":[]}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		keys, err := parseKeysFile(b)
		if err != nil {
			return
		}
		for fn, ks := range keys {
			if contract.FunctionNameProblem(fn) != "" {
				t.Fatalf("accepted function %q", fn)
			}
			for _, k := range ks {
				if digestProblem(k.SHA256) != "" || contract.KeyIDProblem(k.ID) != "" {
					t.Fatalf("accepted key %+v", k)
				}
			}
		}
	})
}

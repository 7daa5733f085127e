package scaler

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/pulsefaas/pulse/contract"
)

// TestWebhookHostileInput: bodies an attacker who holds the token (or a
// broken hook) may send: every one gets a JSON error with its status, none
// scales anything, and the server keeps answering.
func TestWebhookHostileInput(t *testing.T) {
	e := newTestEnv(t, quietConfig(), testToken)
	e.cat.set("hello", nil, 1, 1)
	e.svcs.add("hello", 1, map[string]string{contract.LabelFunction: "hello"}, time.Now().Add(-time.Hour))
	bearer := "Bearer " + testToken
	for _, tc := range []struct {
		name, body string
		code       int
		want       string // in the error
	}{
		{"deep nesting", `{"function":"hello","when":-1,"x":` + strings.Repeat("[", 8000) + strings.Repeat("]", 8000) + `}`, 400, "field when"},
		{"huge number", `{"function":"hello","when":1e400}`, 400, "field when: want a number"},
		{"negative time", `{"function":"hello","when":-5}`, 400, "field when: missing or not a positive unix time"},
		{"function as an object", `{"function":{"a":1},"when":1}`, 400, "field function: want a string, got a JSON object"},
		{"control characters in the name", `{"function":"hel\u0000lo\n","when":1767225600}`, 404, `no such function: "hel\x00lo\n"`},
		{"path in the name", `{"function":"../../etc/passwd","when":1767225600}`, 404, `no such function: "../../etc/passwd"`},
		{"long name", `{"function":"` + strings.Repeat("a", 8000) + `","when":1767225600}`, 404, "no such function"},
		{"invalid UTF-8", "{\"function\":\"\xff\xfe\",\"when\":1767225600}", 404, "no such function"},
		{"null", `null`, 400, "field function: missing"},
		{"a string", `"hello"`, 400, "want a JSON object, got a JSON string"},
		{"BOM", "\xef\xbb\xbf{\"function\":\"hello\",\"when\":1}", 400, "malformed JSON"},
		{"just over the limit", `{"function":"hello","when":1,"p":"` + strings.Repeat("x", contract.MaxAlarmBody-34) + `"}`, 413, "body over 16384 bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, got := e.do(t, http.MethodPost, contract.AlarmsPath, bearer, strings.NewReader(tc.body), 0)
			var body struct {
				Error string `json:"error"`
			}
			if err := json.Unmarshal([]byte(got), &body); err != nil || code != tc.code || !strings.Contains(body.Error, tc.want) {
				t.Errorf("got %d %.300s (%v)\nwant %d, an error containing %q", code, got, err, tc.code, tc.want)
			}
		})
	}
	if evs := e.s.Events(); len(evs.Events) != 0 {
		t.Errorf("hostile input scaled: %+v", evs)
	}
	if code, _ := e.do(t, http.MethodGet, contract.PulsedMetricsPath, "", nil, 0); code != 200 {
		t.Errorf("after the hostile input, /metrics answers %d", code)
	}
}

package catalog

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/pulsefaas/pulse/contract"
)

// TestCheckFunction: the settings of a usable service, and the reason a
// service is skipped, for each rule and its limits.
func TestCheckFunction(t *testing.T) {
	for _, tc := range []struct {
		name   string
		fn     string
		labels map[string]string
		want   FunctionSettings
		err    string
	}{
		{name: "no labels", fn: "hello"},
		{name: "both labels", fn: "a-1", labels: map[string]string{contract.LabelTimeout: "500ms", contract.LabelMaxBody: "1048576"},
			want: FunctionSettings{Timeout: 500 * time.Millisecond, MaxBody: 1 << 20}},
		{name: "longest timeout", fn: "hello", labels: map[string]string{contract.LabelTimeout: "24h"}, want: FunctionSettings{Timeout: MaxTimeout}},
		{name: "largest body", fn: "hello", labels: map[string]string{contract.LabelMaxBody: "1125899906842624"}, want: FunctionSettings{MaxBody: MaxBody}},
		{name: "63 characters", fn: "a" + strings.Repeat("b", 62)},
		{name: "64 characters", fn: "a" + strings.Repeat("b", 63),
			err: "not a function name: want 1-63 of a-z, 0-9 and '-', starting with a letter and not ending with '-'"},
		{name: "upper case", fn: "Hello", err: "not a function name: want 1-63 of a-z, 0-9 and '-', starting with a letter and not ending with '-'"},
		{name: "digit first", fn: "1a", err: "not a function name: want 1-63 of a-z, 0-9 and '-', starting with a letter and not ending with '-'"},
		{name: "dash last", fn: "a-", err: "not a function name: want 1-63 of a-z, 0-9 and '-', starting with a letter and not ending with '-'"},
		{name: "empty", fn: "", err: "not a function name: want 1-63 of a-z, 0-9 and '-', starting with a letter and not ending with '-'"},
		{name: "timeout not a duration", fn: "hello", labels: map[string]string{contract.LabelTimeout: "30"},
			err: `label pulse.timeout="30": want a duration such as 30s or 500ms`},
		{name: "timeout zero", fn: "hello", labels: map[string]string{contract.LabelTimeout: "0s"},
			err: `label pulse.timeout="0s": 0s: want a positive duration`},
		{name: "timeout too long", fn: "hello", labels: map[string]string{contract.LabelTimeout: "25h"},
			err: `label pulse.timeout="25h": 25h0m0s: want at most 24h0m0s`},
		{name: "body zero", fn: "hello", labels: map[string]string{contract.LabelMaxBody: "0"},
			err: `label pulse.max-body="0": want a whole number of bytes from 1 to 1125899906842624`},
		{name: "body too large", fn: "hello", labels: map[string]string{contract.LabelMaxBody: "1125899906842625"},
			err: `label pulse.max-body="1125899906842625": want a whole number of bytes from 1 to 1125899906842624`},
		{name: "rate limit", fn: "hello", labels: map[string]string{contract.LabelRateLimit: "40/1m/client"},
			want: FunctionSettings{RateLimit: &contract.RateLimit{Requests: 40, Per: time.Minute, By: contract.RateByClient}}},
		{name: "rate limit malformed", fn: "hello", labels: map[string]string{contract.LabelRateLimit: "40 per minute"},
			err: `label pulse.rate-limit="40 per minute": want REQUESTS/PER/BY, e.g. "100/1s/function"`},
		{name: "async in full", fn: "hello", labels: map[string]string{contract.LabelAsync: "retries=5,max_age=30m,concurrency=2,retry_500=true"},
			want: FunctionSettings{Async: &contract.AsyncPolicy{Retries: 5, MaxAge: 30 * time.Minute, Concurrency: 2, Retry500: true}}},
		{name: "async default", fn: "hello", labels: map[string]string{contract.LabelAsync: "retries=3,max_age=1h,concurrency=4,retry_500=false"},
			want: FunctionSettings{Async: &contract.DefaultAsyncPolicy}},
		{name: "async partial keeps the defaults", fn: "hello", labels: map[string]string{contract.LabelAsync: "retries=0"},
			want: FunctionSettings{Async: &contract.AsyncPolicy{Retries: 0, MaxAge: time.Hour, Concurrency: 4}}},
		{name: "async bounds", fn: "hello", labels: map[string]string{contract.LabelAsync: "retries=100,max_age=168h,concurrency=1000"},
			want: FunctionSettings{Async: &contract.AsyncPolicy{Retries: 100, MaxAge: 7 * 24 * time.Hour, Concurrency: 1000}}},
		{name: "async empty", fn: "hello", labels: map[string]string{contract.LabelAsync: ""},
			err: `label pulse.async="": "": want key=value, e.g. "retries=3,max_age=1h,concurrency=4,retry_500=false"`},
		{name: "async not a number", fn: "hello", labels: map[string]string{contract.LabelAsync: "retries=three"},
			err: `label pulse.async="retries=three": retries "three": want a whole number`},
		{name: "async unknown key", fn: "hello", labels: map[string]string{contract.LabelAsync: "retries=3,burst=9"},
			err: `label pulse.async="retries=3,burst=9": unknown key "burst": want retries, max_age, concurrency or retry_500`},
		{name: "async out of bounds", fn: "hello", labels: map[string]string{contract.LabelAsync: "retries=101,max_age=500ms,concurrency=0"},
			err: `label pulse.async="retries=101,max_age=500ms,concurrency=0": retries 101: want 0 to 100; ` +
				`max_age 500ms: want whole seconds from 1s to 168h0m0s; concurrency 0: want 1 to 1000`},
		{name: "async and timeout bad", fn: "hello", labels: map[string]string{contract.LabelTimeout: "x", contract.LabelAsync: "retry_500=maybe"},
			err: "label pulse.timeout=\"x\": want a duration such as 30s or 500ms\nlabel pulse.async=\"retry_500=maybe\": retry_500 \"maybe\": want true or false"},
		{name: "both bad", fn: "hello", labels: map[string]string{contract.LabelTimeout: "x", contract.LabelMaxBody: "1k"},
			err: "label pulse.timeout=\"x\": want a duration such as 30s or 500ms\nlabel pulse.max-body=\"1k\": want a whole number of bytes from 1 to 1125899906842624"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := CheckFunction(tc.fn, tc.labels)
			if tc.err != "" {
				if err == nil || err.Error() != tc.err {
					t.Fatalf("error %v, want %q", err, tc.err)
				}
				if got != (FunctionSettings{}) {
					t.Fatalf("settings %+v with an error, want none", got)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %s, %v; want %s", settingsString(got), err, settingsString(tc.want))
			}
		})
	}
}

// settingsString shows the settings with what the pointers point at.
func settingsString(s FunctionSettings) string {
	out := fmt.Sprintf("{Timeout:%v MaxBody:%d", s.Timeout, s.MaxBody)
	if s.RateLimit != nil {
		out += fmt.Sprintf(" RateLimit:%+v", *s.RateLimit)
	}
	if s.Async != nil {
		out += fmt.Sprintf(" Async:%+v", *s.Async)
	}
	return out + "}"
}

// FuzzCheckFunction: any name and label values give either settings within
// the limits or an error naming what is wrong; never a panic.
func FuzzCheckFunction(f *testing.F) {
	f.Add("hello", "30s", "1048576")
	f.Add("Odd_Name", "", "")
	f.Add("hello", "-1s", "-1")
	f.Add("hello", "9223372036854775807ns", "9223372036854775807")
	f.Fuzz(func(t *testing.T, name, timeout, maxBody string) {
		labels := map[string]string{}
		if timeout != "" {
			labels[contract.LabelTimeout] = timeout
		}
		if maxBody != "" {
			labels[contract.LabelMaxBody] = maxBody
		}
		s, err := CheckFunction(name, labels)
		if err != nil {
			msg := err.Error()
			if !strings.HasPrefix(msg, "not a function name") && !strings.HasPrefix(msg, "label pulse.") {
				t.Fatalf("error %q names neither the name nor a label", msg)
			}
			return
		}
		if contract.FunctionNameProblem(name) != "" {
			t.Fatalf("%q accepted as a function name", name)
		}
		if s.Timeout < 0 || s.Timeout > MaxTimeout || (timeout != "" && s.Timeout == 0) {
			t.Fatalf("timeout %q accepted as %v", timeout, s.Timeout)
		}
		if s.MaxBody < 0 || s.MaxBody > MaxBody || (maxBody != "" && s.MaxBody == 0) {
			t.Fatalf("max-body %q accepted as %d", maxBody, s.MaxBody)
		}
	})
}

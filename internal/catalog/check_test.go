package catalog

import (
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
			if err != nil || got != tc.want {
				t.Fatalf("got %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
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

package function

import (
	"encoding/json"
	"testing"

	"github.com/pulsefaas/pulse/contract"
)

// TestDescribeAsync: the async policy pulse describe shows, read from the
// label as pulsed reads it: the default (marked so) without one, the
// label's policy with one, none when it is malformed; and its words.
func TestDescribeAsync(t *testing.T) {
	for _, tc := range []struct {
		name   string
		labels map[string]string
		want   *AsyncPolicy
		words  string
		json   string
	}{
		{"no label", nil,
			&AsyncPolicy{Retries: 3, MaxAge: "1h", Concurrency: 4, Default: true},
			"3 retries within 1h, 4 dispatches per replica at once, 500 not retried (default)",
			`{"retries":3,"max_age":"1h","concurrency":4,"retry_500":false,"default":true}`},
		{"the default, written", map[string]string{contract.LabelAsync: "retries=3,max_age=1h,concurrency=4,retry_500=false"},
			&AsyncPolicy{Retries: 3, MaxAge: "1h", Concurrency: 4},
			"3 retries within 1h, 4 dispatches per replica at once, 500 not retried",
			`{"retries":3,"max_age":"1h","concurrency":4,"retry_500":false}`},
		{"set", map[string]string{contract.LabelAsync: "retries=1,max_age=90m,concurrency=16,retry_500=true"},
			&AsyncPolicy{Retries: 1, MaxAge: "90m", Concurrency: 16, Retry500: true},
			"1 retry within 90m, 16 dispatches per replica at once, 500 retried",
			`{"retries":1,"max_age":"90m","concurrency":16,"retry_500":true}`},
		{"seconds", map[string]string{contract.LabelAsync: "retries=0,max_age=90s"},
			&AsyncPolicy{Retries: 0, MaxAge: "90s", Concurrency: 4},
			"0 retries within 90s, 4 dispatches per replica at once, 500 not retried",
			`{"retries":0,"max_age":"90s","concurrency":4,"retry_500":false}`},
		{"malformed", map[string]string{contract.LabelAsync: "retries=lots"}, nil, "", "null"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := asyncPolicy(tc.labels)
			switch {
			case (got == nil) != (tc.want == nil):
				t.Fatalf("asyncPolicy() = %+v, want %+v", got, tc.want)
			case got != nil && *got != *tc.want:
				t.Errorf("asyncPolicy() = %+v, want %+v", *got, *tc.want)
			case got != nil && got.String() != tc.words:
				t.Errorf("String() = %q, want %q", got.String(), tc.words)
			}
			if b, err := json.Marshal(got); err != nil || string(b) != tc.json {
				t.Errorf("JSON %s, %v; want %s", b, err, tc.json)
			}
		})
	}
}

package scaler

import (
	"bytes"
	"math"
	"testing"

	"github.com/pulsefaas/pulse/contract"
)

// FuzzParseAlarm: the webhook body comes from outside (anyone who can reach
// pulsed's API); parseAlarm must never panic and must only accept events
// that name a function.
func FuzzParseAlarm(f *testing.F) {
	f.Add([]byte(`{"unique_id":7,"alarm":"pulse_scale_up","function":"hello","status":"CRITICAL","when":1700000000,"value":250}`))
	f.Add([]byte(`{"function":`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, body []byte) {
		ev, err := parseAlarm(body)
		if err == nil && ev.Function == "" {
			t.Fatalf("accepted an event without a function: %q", body)
		}
	})
}

// FuzzParseNetdataData: Netdata's answer is read back; a malformed one is
// an error, never a panic or a negative or non-finite value.
func FuzzParseNetdataData(f *testing.F) {
	f.Add([]byte(`{"labels":["time","utilization"],"data":[[1795650000,123.4]]}`))
	f.Add([]byte(`{"labels":["time","demand"],"data":[[1,null]]}`))
	f.Add([]byte(`{"labels":["time"],"data":[[1]]}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		v, err := parseNetdataData(bytes.NewReader(body), contract.DimUtilization)
		if err == nil && (v < 0 || math.IsNaN(v) || math.IsInf(v, 0)) {
			t.Fatalf("value %v from %q", v, body)
		}
	})
}

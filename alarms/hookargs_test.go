package alarms

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/pulsefaas/pulse/contract"
)

// netdataArgs returns the 29 arguments Netdata 1.37 passes for a scale-up
// alarm on function hello, with the given (1-based) arguments replaced.
func netdataArgs(set map[int]string) []string {
	args := []string{
		"silent",                              // 1 recipient
		"node1",                               // 2 host
		"1700000123",                          // 3 unique id
		"1700000001",                          // 4 alarm id
		"7",                                   // 5 event id
		"1732575600",                          // 6 when
		contract.AlarmScaleUp,                 // 7 alarm name
		"pulse.fn_hello_utilization",          // 8 chart
		"hello",                               // 9 family
		"CRITICAL",                            // 10 status
		"CLEAR",                               // 11 old status
		"250",                                 // 12 value
		"40",                                  // 13 old value
		"36@/etc/netdata/health.d/pulse.conf", // 14 source
		"12",                                  // 15 duration
		"3",                                   // 16 non-clear duration
		"%",                                   // 17 units
		"function demand above its replicas' target", // 18 info
		"250%", // 19 value string
		"40%",  // 20 old value string
		"($replicas > 0) && ($target > 0) && ($this > 100)", // 21 calc expression
		"$replicas = 2, $target = 10, $this = 250",          // 22 calc parameters
		"0", "1", "", "pulse_scale_up", // 23-26 totals
		"Utilization", // 27 classification
		"",            // 28 edit command
		"",            // 29 child guid
	}
	for n, v := range set {
		args[n-1] = v
	}
	return args
}

func TestParseHookArgs(t *testing.T) {
	scaleUp := contract.AlarmEvent{
		Host: "node1", UniqueID: 1700000123, AlarmID: 1700000001, EventID: 7, When: 1732575600,
		Alarm: contract.AlarmScaleUp, Chart: "pulse.fn_hello_utilization", Function: "hello",
		Status: "CRITICAL", OldStatus: "CLEAR", Value: 250, OldValue: 40, Duration: 12, NonClearDuration: 3,
	}
	with := func(f func(*contract.AlarmEvent)) contract.AlarmEvent { ev := scaleUp; f(&ev); return ev }
	tests := []struct {
		name    string
		args    []string
		want    contract.AlarmEvent
		wantErr string // substring; "" for success
		skip    bool   // the error wraps ErrSkip
	}{
		{name: "scale up critical", args: netdataArgs(nil), want: scaleUp},
		{name: "scale down warning, fractional values",
			args: netdataArgs(map[int]string{7: contract.AlarmScaleDown, 10: "WARNING", 11: "WARNING", 12: "12.5", 13: "-0"}),
			want: with(func(e *contract.AlarmEvent) {
				e.Alarm, e.Status, e.OldStatus, e.Value, e.OldValue = contract.AlarmScaleDown, "WARNING", "WARNING", 12.5, 0
			})},
		{name: "clear with nan values",
			args: netdataArgs(map[int]string{10: "CLEAR", 11: "CRITICAL", 12: "nan", 13: "-nan"}),
			want: with(func(e *contract.AlarmEvent) { e.Status, e.OldStatus, e.Value, e.OldValue = "CLEAR", "CRITICAL", 0, 0 })},
		{name: "infinite value", args: netdataArgs(map[int]string{12: "inf", 13: "-"}),
			want: with(func(e *contract.AlarmEvent) { e.Value, e.OldValue = 0, 0 })},
		{name: "function name with dashes and digits", args: netdataArgs(map[int]string{9: "img-resize-2"}),
			want: with(func(e *contract.AlarmEvent) { e.Function = "img-resize-2" })},
		{name: "only the first 16 arguments", args: netdataArgs(nil)[:MinHookArgs], want: scaleUp},
		{name: "more arguments than 29", args: append(netdataArgs(nil), "extra", "more"), want: scaleUp},
		{name: "foreign alarm", args: netdataArgs(map[int]string{7: "ram_in_use"}), wantErr: `alarm "ram_in_use" is not pulse's`, skip: true},
		{name: "foreign alarm with few arguments", args: []string{"sysadmin", "h", "1", "2", "3", "4", "disk_space"}, wantErr: "not pulse's", skip: true},
		{name: "removed", args: netdataArgs(map[int]string{10: "REMOVED"}), wantErr: "is REMOVED", skip: true},
		{name: "uninitialized", args: netdataArgs(map[int]string{10: "UNINITIALIZED"}), wantErr: "is UNINITIALIZED", skip: true},
		{name: "undefined", args: netdataArgs(map[int]string{10: "UNDEFINED"}), wantErr: "is UNDEFINED", skip: true},
		{name: "too few arguments", args: netdataArgs(nil)[:15], wantErr: "want at least 16 arguments, got 15"},
		{name: "no arguments", args: nil, wantErr: "want at least 16 arguments, got 0"},
		{name: "empty family", args: netdataArgs(map[int]string{9: ""}), wantErr: "argument 9"},
		{name: "bad unique id", args: netdataArgs(map[int]string{3: "x"}), wantErr: `argument 3 (unique id) "x"`},
		{name: "negative event id", args: netdataArgs(map[int]string{5: "-1"}), wantErr: "argument 5 (event id)"},
		{name: "bad when", args: netdataArgs(map[int]string{6: "soon"}), wantErr: "argument 6 (when)"},
		{name: "bad value", args: netdataArgs(map[int]string{12: "lots"}), wantErr: "argument 12 (value)"},
		{name: "first error wins", args: netdataArgs(map[int]string{4: "a", 16: "b"}), wantErr: "argument 4 (alarm id)"},
		{name: "bad non-clear duration", args: netdataArgs(map[int]string{16: "1.5"}), wantErr: "argument 16 (non-clear duration)"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseHookArgs(tc.args)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("ParseHookArgs: %v", err)
				}
				if got != tc.want {
					t.Fatalf("ParseHookArgs =\n%+v\nwant\n%+v", got, tc.want)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("ParseHookArgs error = %v, want one containing %q", err, tc.wantErr)
			}
			if errors.Is(err, ErrSkip) != tc.skip {
				t.Fatalf("errors.Is(%v, ErrSkip) = %v, want %v", err, !tc.skip, tc.skip)
			}
		})
	}
}

// The event's JSON is what the scaler decodes: whole body, field names from
// the contract.
func TestParseHookArgsJSON(t *testing.T) {
	ev, err := ParseHookArgs(netdataArgs(nil))
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"host":"node1","unique_id":1700000123,"alarm_id":1700000001,"event_id":7,"when":1732575600,` +
		`"alarm":"pulse_scale_up","chart":"pulse.fn_hello_utilization","function":"hello","status":"CRITICAL",` +
		`"old_status":"CLEAR","value":250,"old_value":40,"duration":12,"non_clear_duration":3}`
	if string(b) != want {
		t.Fatalf("JSON =\n%s\nwant\n%s", b, want)
	}
}

func FuzzParseHookArgs(f *testing.F) {
	f.Add(strings.Join(netdataArgs(nil), "\x00"))
	f.Add(strings.Join(netdataArgs(map[int]string{7: contract.AlarmScaleDown, 10: "WARNING", 12: "-nan"}), "\x00"))
	f.Add(strings.Join(netdataArgs(map[int]string{12: "1e400", 13: "0x1p-2"}), "\x00"))
	f.Add("silent\x00h")
	f.Fuzz(func(t *testing.T, joined string) {
		args := strings.Split(joined, "\x00")
		ev, err := ParseHookArgs(args)
		if err != nil {
			return
		}
		// Whatever parses is one of ours, names the function Netdata gave,
		// and can be posted.
		if ev.Alarm != contract.AlarmScaleUp && ev.Alarm != contract.AlarmScaleDown {
			t.Fatalf("accepted alarm %q", ev.Alarm)
		}
		if ev.Function == "" || ev.Function != args[8] || ev.Chart != args[7] || ev.Host != args[1] {
			t.Fatalf("fields do not match the arguments: %+v", ev)
		}
		if ev.Status != contract.AlarmClear && ev.Status != contract.AlarmWarning && ev.Status != contract.AlarmCritical {
			t.Fatalf("accepted status %q", ev.Status)
		}
		if _, err := json.Marshal(ev); err != nil {
			t.Fatalf("event does not marshal: %v", err)
		}
	})
}

package function

import (
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pulsefaas/pulse/contract"
	"github.com/pulsefaas/pulse/watchdog"
)

// labelTestSpecs are specs in each mode, as the loader returns them.
func labelTestSpecs() map[string]Spec {
	return map[string]Spec{
		"inproc": {
			Name: "hello", Lang: LangGo, Handler: ".", Mode: contract.ModeInProcess,
			Timeout: 30 * time.Second, MaxBody: 10 << 20,
			Scale:  Scale{Metric: ScaleInflight, Target: 10, Min: 1, Max: 10},
			Labels: map[string]string{"team": "web"},
		},
		"fork": {
			Name: "echo", Lang: LangCPP, Handler: ".", Mode: contract.ModeFork, Args: []string{"--json", "<&>"},
			Timeout: 1500 * time.Millisecond, MaxBody: 512 << 10,
			Scale:     Scale{Metric: ScaleRPS, Target: 2.5, Min: 0, Max: 50, Idle: 5 * time.Minute},
			RateLimit: &contract.RateLimit{Requests: 100, Per: time.Second, By: contract.RateByKey},
			Async:     &contract.AsyncPolicy{Retries: 0, MaxAge: 90 * time.Second, Concurrency: 8, Retry500: true},
		},
		"http": {
			Name: "proxy", Lang: LangBin, Handler: "./fn", Mode: contract.ModeHTTP, Port: 4000,
			Timeout: 2 * time.Minute, MaxBody: 1 << 30,
			Scale: Scale{Metric: ScaleInflight, Target: 100, Min: 2, Max: 3},
		},
	}
}

func TestServiceLabels(t *testing.T) {
	want := map[string]map[string]string{
		"inproc": {
			"pulse.function":     "hello",
			"pulse.timeout":      "30s",
			"pulse.max-body":     "10485760",
			"pulse.scale.metric": "inflight",
			"pulse.scale.target": "10",
			"pulse.scale.min":    "1",
			"pulse.scale.max":    "10",
			"pulse.scale.idle":   "",
			"team":               "web",
		},
		"fork": {
			"pulse.function":     "echo",
			"pulse.timeout":      "1.5s",
			"pulse.max-body":     "524288",
			"pulse.scale.metric": "rps",
			"pulse.scale.target": "2.5",
			"pulse.scale.min":    "0",
			"pulse.scale.max":    "50",
			"pulse.scale.idle":   "5m0s",
			"pulse.rate-limit":   "100/1s/key",
			"pulse.async":        "retries=0,max_age=90s,concurrency=8,retry_500=true",
		},
		"http": {
			"pulse.function":     "proxy",
			"pulse.timeout":      "2m0s",
			"pulse.max-body":     "1073741824",
			"pulse.scale.metric": "inflight",
			"pulse.scale.target": "100",
			"pulse.scale.min":    "2",
			"pulse.scale.max":    "3",
			"pulse.scale.idle":   "",
		},
	}
	for name, s := range labelTestSpecs() {
		t.Run(name, func(t *testing.T) {
			got := s.ServiceLabels()
			if !reflect.DeepEqual(got, want[name]) {
				t.Errorf("ServiceLabels:\n got %v\nwant %v", got, want[name])
			}
			// The labels' values read back as the spec's values.
			if d, err := time.ParseDuration(got[contract.LabelTimeout]); err != nil || d != s.Timeout {
				t.Errorf("timeout label %q reads as %v, %v", got[contract.LabelTimeout], d, err)
			}
			if n, err := watchdog.ParseSize(got[contract.LabelMaxBody]); err != nil || n != s.MaxBody {
				t.Errorf("max-body label %q reads as %v, %v", got[contract.LabelMaxBody], n, err)
			}
		})
	}
}

func TestServiceLabelsPulseWins(t *testing.T) {
	s := labelTestSpecs()["inproc"]
	s.Labels = map[string]string{contract.LabelFunction: "other"} // Validate refuses this; code might not
	if got := s.ServiceLabels()[contract.LabelFunction]; got != "hello" {
		t.Errorf("%s = %q, want hello", contract.LabelFunction, got)
	}
}

func TestWatchdogEnv(t *testing.T) {
	want := map[string][]string{
		"inproc": {
			"PULSE_FUNCTION=hello",
			"PULSE_MAX_BODY=10485760",
			"PULSE_MODE=inproc",
			"PULSE_TIMEOUT=30s",
		},
		"fork": {
			`PULSE_EXEC=["/function","--json","<&>"]`,
			"PULSE_FUNCTION=echo",
			"PULSE_MAX_BODY=524288",
			"PULSE_MODE=fork",
			"PULSE_TIMEOUT=1.5s",
		},
		"http": {
			`PULSE_EXEC=["/function"]`,
			"PULSE_FUNCTION=proxy",
			"PULSE_MAX_BODY=1073741824",
			"PULSE_MODE=http",
			"PULSE_TIMEOUT=2m0s",
			"PULSE_UPSTREAM=127.0.0.1:4000",
		},
	}
	for name, s := range labelTestSpecs() {
		t.Run(name, func(t *testing.T) {
			got := s.WatchdogEnv()
			if !reflect.DeepEqual(got, want[name]) {
				t.Errorf("WatchdogEnv:\n got %q\nwant %q", got, want[name])
			}
		})
	}
}

// TestWatchdogEnvMaxOverdue: functions.yml's max_overdue reaches the
// in-process watchdog, which reads it back (0 included: never fail health).
func TestWatchdogEnvMaxOverdue(t *testing.T) {
	for _, n := range []int{0, 3} {
		s := labelTestSpecs()["inproc"]
		s.MaxOverdue = &n
		env := s.WatchdogEnv()
		if !slices.Contains(env, contract.EnvMaxOverdue+"="+strconv.Itoa(n)) {
			t.Errorf("max_overdue %d: env %q", n, env)
		}
		c, err := watchdog.ConfigFromEnv(env, contract.ModeInProcess)
		if err != nil || c.MaxOverdue != int64(n) {
			t.Errorf("max_overdue %d: the watchdog read %d, %v", n, c.MaxOverdue, err)
		}
	}
}

// TestWatchdogEnvReadByWatchdog checks the contract from the other side:
// the watchdog's own config reader gets the spec's values back.
func TestWatchdogEnvReadByWatchdog(t *testing.T) {
	for name, s := range labelTestSpecs() {
		t.Run(name, func(t *testing.T) {
			linked := ""
			if s.Mode == contract.ModeInProcess {
				linked = contract.ModeInProcess
			}
			c, err := watchdog.ConfigFromEnv(s.WatchdogEnv(), linked)
			// /function does not exist on the test machine: the only error
			// allowed is the watchdog's check that the executable exists.
			if err != nil && !(s.Mode != contract.ModeInProcess && strings.HasPrefix(err.Error(), contract.EnvExec+`: "/function": `) && !strings.Contains(err.Error(), "\n")) {
				t.Fatalf("ConfigFromEnv: %v", err)
			}
			got := [...]any{c.Function, c.Mode, c.Timeout, c.MaxBody, c.Exec}
			wantExec := []string(nil)
			if s.Mode != contract.ModeInProcess {
				wantExec = append([]string{"/function"}, s.Args...)
			}
			want := [...]any{s.Name, s.Mode, s.Timeout, s.MaxBody, wantExec}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("watchdog read %v, want %v", got, want)
			}
			if s.Mode == contract.ModeHTTP && c.Upstream != "127.0.0.1:4000" {
				t.Errorf("upstream %q", c.Upstream)
			}
		})
	}
}

func TestSpecDefaultsMatchWatchdog(t *testing.T) {
	if got := "127.0.0.1:" + strconv.Itoa(DefaultPort); got != watchdog.DefaultUpstream {
		t.Errorf("default port gives %s, the watchdog defaults to %s", got, watchdog.DefaultUpstream)
	}
}

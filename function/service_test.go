package function

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/swarm"

	"github.com/pulsefaas/pulse/contract"
	"github.com/pulsefaas/pulse/watchdog"
)

var updateServiceGolden = flag.Bool("update-service-golden", false, "rewrite testdata/service-*.json from ServiceSpec's output")

const testImageID = "sha256:ebaed2a53f5fc790017114dd7fb55aa03f320ac249e38e439be7c5b30393dfaf"

// TestServiceSpec compares the whole service spec, as the engine receives it
// (JSON), with a golden file per case.
func TestServiceSpec(t *testing.T) {
	img := Image{ID: testImageID, Tag: "pulse/hello:latest"}
	tests := []struct {
		name string
		spec Spec
		opts DeployOptions
	}{
		{
			name: "go-minimal",
			spec: Spec{
				Name: "hello", Lang: LangGo, Mode: contract.ModeInProcess,
				Timeout: 30 * time.Second, MaxBody: 10 << 20,
				Scale: Scale{Metric: "inflight", Target: 10, Min: 1, Max: 5},
			},
		},
		{
			name: "c-full",
			spec: Spec{
				Name: "resize", Lang: LangC, Mode: contract.ModeFork,
				Env:         map[string]string{"QUALITY": "90", "A_FIRST": "yes"},
				Secrets:     []string{"s3-key", "db-password"},
				Limits:      Limits{Memory: 128 << 20, CPUs: 0.5, Pids: 64},
				Timeout:     10 * time.Second,
				MaxBody:     1 << 20,
				Scale:       Scale{Metric: "rps", Target: 50, Min: 2, Max: 10, Idle: 5 * time.Minute},
				Labels:      map[string]string{"team": "media"},
				Constraints: []string{"node.role==worker", "node.labels.gpu!=true"},
			},
			opts: DeployOptions{
				GatewayURL:     "http://172.17.0.1:8080",
				SecretIDs:      map[string]string{"s3-key": "k1d2", "db-password": "p4s5"},
				HealthInterval: 250 * time.Millisecond,
				DrainGrace:     2 * time.Second,
				Instance:       "lab",
				ReplicaAuth:    SecretRef{ID: "ra1d", Name: contract.ReplicaAuthSecretName("lab", "c")},
			},
		},
		{
			// Too long for {{.Task.Name}} as a hostname; scale from zero.
			name: "long-name",
			spec: Spec{
				Name: "a-function-name-that-is-long-enough-to-need-the-task-id", Lang: LangBin, Mode: contract.ModeHTTP,
				Timeout: time.Minute,
				Scale:   Scale{Metric: "inflight", Target: 1, Min: 0, Max: 3},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := json.MarshalIndent(ServiceSpec(tt.spec, img, tt.opts), "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, '\n')
			golden := filepath.Join("testdata", "service-"+tt.name+".json")
			if *updateServiceGolden {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -run TestServiceSpec -update-service-golden to write it)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("ServiceSpec() differs from %s:\n got %s\nwant %s", golden, got, want)
			}
		})
	}
}

// TestServiceSpecInvariants checks what must hold whatever the spec: what
// the golden files show but a regenerated golden file could lose.
func TestServiceSpecInvariants(t *testing.T) {
	spec := Spec{
		Name: "inv", Lang: LangC, Mode: contract.ModeFork, Timeout: 7 * time.Second,
		Env:   map[string]string{contract.EnvDrainGrace: "3s", "X": "1"},
		Scale: Scale{Min: 3, Max: 4},
	}
	s := ServiceSpec(spec, Image{ID: testImageID, Tag: "pulse/inv:latest"}, DeployOptions{GatewayURL: "http://gw:8080"})
	cs := s.TaskTemplate.ContainerSpec

	type view struct {
		Image, User, Hostname string
		ReadOnly              bool
		Grace                 time.Duration
		Replicas              uint64
		ImageLabel            string
		Probe                 []string
		DrainEntries          []string
		Gateway               []string
		Port                  string
		Limits                swarm.Limit
		MaxInflight           []string
	}
	got := view{
		Image: cs.Image, User: cs.User, Hostname: cs.Hostname, ReadOnly: cs.ReadOnly,
		Grace: *cs.StopGracePeriod, Replicas: *s.Mode.Replicated.Replicas,
		ImageLabel: s.Labels[LabelImage], Probe: cs.Healthcheck.Test,
		DrainEntries: envEntries(cs.Env, contract.EnvDrainGrace),
		Gateway:      envEntries(cs.Env, contract.EnvGatewayURL),
	}
	p := s.EndpointSpec.Ports[0]
	got.Port = fmt.Sprintf("%s %s %s %d→%d", s.EndpointSpec.Mode, p.PublishMode, p.Protocol, p.TargetPort, p.PublishedPort)
	if r := s.TaskTemplate.Resources; r != nil && r.Limits != nil {
		got.Limits = *r.Limits
	}
	got.MaxInflight = envEntries(cs.Env, contract.EnvMaxInflight)
	want := view{
		Image: testImageID, User: "65534:65534", Hostname: "{{.Task.Name}}", ReadOnly: true,
		// the user's drain grace 3s + timeout 7s + 5s
		Grace: 15 * time.Second, Replicas: 3,
		ImageLabel:   testImageID,
		Probe:        []string{"CMD", "/pulse-watchdog", "-healthcheck"},
		DrainEntries: []string{contract.EnvDrainGrace + "=3s"},
		Gateway:      []string{contract.EnvGatewayURL + "=http://gw:8080"},
		Port:         "dnsrr host tcp 8080→0",
		// No limits in the spec: the default memory and pids limits.
		Limits: swarm.Limit{MemoryBytes: DefaultMemory, Pids: DefaultPids},
		// Fork mode: requests in flight bounded below the pids limit.
		MaxInflight: []string{contract.EnvMaxInflight + "=480"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("ServiceSpec():\n got %+v\nwant %+v", got, want)
	}
}

func envEntries(env []string, key string) []string {
	var out []string
	for _, e := range env {
		if strings.HasPrefix(e, key+"=") {
			out = append(out, e)
		}
	}
	return out
}

func TestStopGracePeriod(t *testing.T) {
	tests := []struct {
		name    string
		timeout time.Duration
		env     []string
		want    time.Duration
	}{
		{name: "defaults", want: defaultDrainGrace + defaultTimeout + writeSlack},
		{name: "spec timeout", timeout: 10 * time.Second, want: defaultDrainGrace + 15*time.Second},
		{name: "env drain grace", timeout: 10 * time.Second, env: []string{contract.EnvDrainGrace + "=1s"}, want: 16 * time.Second},
		{name: "env timeout wins", timeout: 10 * time.Second, env: []string{contract.EnvTimeout + "=2s"}, want: defaultDrainGrace + 7*time.Second},
		{name: "write timeout", env: []string{contract.EnvWriteTimeout + "=1m", contract.EnvDrainGrace + "=0s"}, want: time.Minute},
		{name: "malformed is the default", env: []string{contract.EnvDrainGrace + "=soon"}, want: defaultDrainGrace + defaultTimeout + writeSlack},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := stopGracePeriod(Spec{Timeout: tt.timeout}, tt.env); got != tt.want {
				t.Errorf("stopGracePeriod() = %v, want %v", got, tt.want)
			}
		})
	}
}

// TestServiceDefaultsMatchWatchdog checks the watchdog defaults the stop
// grace period is computed from.
func TestServiceDefaultsMatchWatchdog(t *testing.T) {
	cfg, err := watchdog.ConfigFromEnv([]string{contract.EnvFunction + "=f"}, contract.ModeInProcess)
	if err != nil {
		t.Fatal(err)
	}
	got := []time.Duration{defaultDrainGrace, defaultTimeout, defaultTimeout + writeSlack}
	want := []time.Duration{cfg.DrainGrace, cfg.Timeout, cfg.WriteTimeout}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("drain grace, timeout, write timeout = %v, the watchdog's are %v", got, want)
	}
}

func TestServiceSetEnv(t *testing.T) {
	tests := []struct {
		name       string
		env        []string
		key, value string
		want       []string
	}{
		{name: "append", env: []string{"A=1"}, key: "B", value: "2", want: []string{"A=1", "B=2"}},
		{name: "replace in place", env: []string{"A=1", "B=2", "C=3"}, key: "B", value: "x", want: []string{"A=1", "B=x", "C=3"}},
		{name: "drop duplicates", env: []string{"B=1", "A=1", "B=2"}, key: "B", value: "x", want: []string{"B=x", "A=1"}},
		{name: "value with =", env: nil, key: "Q", value: "a=b", want: []string{"Q=a=b"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := append([]string(nil), tt.env...)
			got := setEnv(in, tt.key, tt.value)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("setEnv() = %q, want %q", got, tt.want)
			}
			if !reflect.DeepEqual(in, tt.env) {
				t.Errorf("setEnv changed its input to %q", in)
			}
		})
	}
}

func TestServiceHostnameTemplate(t *testing.T) {
	tests := []struct {
		name string
		want string
	}{
		{name: "hello", want: "{{.Task.Name}}"},
		{name: strings.Repeat("a", 33), want: "{{.Task.Name}}"}, // 33+1+4+1+25 = 64
		{name: strings.Repeat("a", 34), want: "{{.Task.ID}}"},
		{name: strings.Repeat("a", 63), want: "{{.Task.ID}}"},
	}
	for _, tt := range tests {
		if got := hostnameTemplate(tt.name); got != tt.want {
			t.Errorf("hostnameTemplate(%d chars) = %q, want %q", len(tt.name), got, tt.want)
		}
	}
}

func TestStartIntervalFor(t *testing.T) {
	for v, want := range map[string]time.Duration{"1.41": 0, "1.43": 0, "1.44": DefaultStartInterval, "1.51": DefaultStartInterval, "": 0} {
		if got := StartIntervalFor(v); got != want {
			t.Errorf("StartIntervalFor(%q) = %v, want %v", v, got, want)
		}
	}
	spec := ServiceSpec(Spec{Name: "x", Lang: LangC, Mode: "fork", Scale: DefaultScale()}, Image{ID: "sha256:1"},
		DeployOptions{HealthStartInterval: DefaultStartInterval})
	if hc := spec.TaskTemplate.ContainerSpec.Healthcheck; hc.StartInterval != DefaultStartInterval {
		t.Errorf("start interval %v", hc.StartInterval)
	}
}

// TestServiceSpecNoHealthcheck: NoHealthcheck turns Docker's check off
// (Test NONE) and changes nothing else.
func TestServiceSpecNoHealthcheck(t *testing.T) {
	spec := Spec{Name: "nohc", Lang: LangBin, Mode: contract.ModeFork, Handler: "fn", Timeout: 10 * time.Second,
		MaxBody: 1 << 20, Scale: DefaultScale()}
	img := Image{ID: "sha256:" + strings.Repeat("a", 64)}
	with := ServiceSpec(spec, img, DeployOptions{})
	without := ServiceSpec(spec, img, DeployOptions{NoHealthcheck: true})
	if hc := without.TaskTemplate.ContainerSpec.Healthcheck; hc == nil || !reflect.DeepEqual(hc.Test, []string{"NONE"}) || hc.Interval != 0 {
		t.Errorf("healthcheck %+v, want Test [NONE] only", hc)
	}
	with.TaskTemplate.ContainerSpec.Healthcheck, without.TaskTemplate.ContainerSpec.Healthcheck = nil, nil
	if !reflect.DeepEqual(with, without) {
		t.Error("NoHealthcheck changed more than the health check")
	}
}

// TestForkMaxInflight: a fork-mode replica takes no more requests than its
// pids limit leaves processes for, keeping some for the watchdog.
func TestForkMaxInflight(t *testing.T) {
	for _, tt := range []struct{ pids, want int64 }{
		{MinPids, 16}, {64, 32}, {DefaultPids, 480}, {1000, 968}, {MaxPids, 1000},
	} {
		if got := forkMaxInflight(tt.pids); got != tt.want {
			t.Errorf("forkMaxInflight(%d) = %d, want %d", tt.pids, got, tt.want)
		}
	}
	for _, mode := range []string{contract.ModeInProcess, contract.ModeHTTP} {
		s := ServiceSpec(Spec{Name: "m", Mode: mode, Timeout: time.Second}, Image{ID: testImageID}, DeployOptions{})
		if e := envEntries(s.TaskTemplate.ContainerSpec.Env, contract.EnvMaxInflight); e != nil {
			t.Errorf("mode %s: %q, want the watchdog's default", mode, e)
		}
	}
}

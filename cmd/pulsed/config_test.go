package main

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/pulsefaas/pulse/scaler"
)

func TestConfig(t *testing.T) {
	dir := t.TempDir()
	n := 0
	file := func(text string) string {
		n++
		p := filepath.Join(dir, fmt.Sprintf("%d.yaml", n))
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	noEnv := func(string) string { return "" }

	got, err := loadConfig(file("state_dir: /srv/pulse\nbalance: roundrobin\n"), func(k string) string {
		return map[string]string{"PULSE_CHECK_INTERVAL": "500ms", "PULSE_GATEWAY_LISTEN": "127.0.0.1:9000"}[k]
	})
	if err != nil {
		t.Fatal(err)
	}
	want := defaults()
	want.StateDir, want.Balance, want.CheckInterval, want.GatewayListen = "/srv/pulse", "roundrobin", 500*time.Millisecond, "127.0.0.1:9000"
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}

	bad := []struct {
		name, yaml string
		env        map[string]string
		want       string
	}{
		{"unknown key", "balanse: leastconn\n", nil, "balanse"},
		{"bad balance", "balance: random\n", nil, `balance "random": want leastconn or roundrobin`},
		{"bad listen", "api_listen: 8090\n", nil, `api_listen "8090": want HOST:PORT`},
		{"relative state dir", "state_dir: run\n", nil, `state_dir "run": want an absolute path`},
		{"bad duration from the environment", "", map[string]string{"PULSE_FAST_POLL": "fast"}, "fast_poll"},
		{"zero interval", "check_interval: 0s\n", nil, "check_interval must be a positive duration"},
		{"check_fall 0", "check_fall: 0\n", nil, "check_fall 0: want 1 to 10"},
		{"check_fall from the environment", "", map[string]string{"PULSE_CHECK_FALL": "11"}, "check_fall 11: want 1 to 10"},
		{"bad log level", "log_level: chatty\n", nil, "log_level"},
		{"docker_host without a scheme", "docker_host: node1\n", nil, `docker_host "node1": want unix:///var/run/docker.sock, tcp://HOST:2376 or ssh://[user@]host[:port]`},
		{"docker_host ssh with a path", "docker_host: ssh://root@node1/x\n", nil, "docker_host bad SSH target \"ssh://root@node1/x\": no path, query or fragment allowed"},
		{"docker_host ssh with a password", "docker_host: ssh://root:pw@node1\n", nil, "no password: SSH uses keys"},
		{"docker_host ssh with a bad port", "", map[string]string{"PULSE_DOCKER_HOST": "ssh://root@node1:99999"}, "docker_host bad SSH target"},
		{"relative known_hosts", "ssh_known_hosts: known_hosts\n", nil, `ssh_known_hosts "known_hosts": want an absolute path`},
		{"relative identity file", "ssh_identity_files: [/root/.ssh/id_ed25519, id_rsa]\n", nil, `ssh_identity_files "id_rsa": want an absolute path`},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			env := noEnv
			if tc.env != nil {
				env = func(k string) string { return tc.env[k] }
			}
			_, err := loadConfig(file("# "+tc.name+"\n"+tc.yaml), env)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want it to contain %q", err, tc.want)
			}
		})
	}
	if _, err := loadConfig(filepath.Join(dir, "absent.yaml"), noEnv); err == nil {
		t.Error("an explicit config file that does not exist was accepted")
	}
}

func TestConfigScaler(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "pulsed.yaml")
	write := func(text string) {
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	noEnv := func(string) string { return "" }

	d := defaults()
	if d.AlarmTokenFile != "/etc/pulse/alarm-token" || d.NetdataURL != "http://127.0.0.1:19999" || d.NetdataTimeout != 2*time.Second ||
		d.ScaleWindow != time.Minute || d.ScaleUpThreshold != scaler.DefaultUpThreshold || d.ScaleDownThreshold != 50 ||
		d.UtilisationLookback != 3*time.Second || d.ResyncInterval != 5*time.Second || d.ScalerCallTimeout != 10*time.Second || d.ScaleEvents != 256 {
		t.Errorf("scaler defaults %+v", d)
	}

	write("alarm_token_file: /run/pulse/token\nnetdata_url: http://10.0.0.5:19999\nnetdata_timeout: 500ms\n" +
		"scale_window: 10s\nscale_up_threshold: 90\nscale_down_threshold: 40.5\nutilisation_lookback: 2s\n" +
		"resync_interval: 1s\nscaler_call_timeout: 3s\nscale_events: 16\n")
	got, err := loadConfig(path, func(k string) string {
		return map[string]string{"PULSE_SCALE_WINDOW": "250ms", "PULSE_SCALE_UP_THRESHOLD": "120"}[k]
	})
	if err != nil {
		t.Fatal(err)
	}
	want := defaults()
	want.AlarmTokenFile, want.NetdataURL, want.NetdataTimeout = "/run/pulse/token", "http://10.0.0.5:19999", 500*time.Millisecond
	want.ScaleWindow, want.ScaleUpThreshold, want.ScaleDownThreshold = 250*time.Millisecond, 120, 40.5
	want.UtilisationLookback, want.ResyncInterval, want.ScalerCallTimeout, want.ScaleEvents = 2*time.Second, time.Second, 3*time.Second, 16
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}
	sc := scalerConfig(got)
	if sc.Window != 250*time.Millisecond || sc.UpThreshold != 120 || sc.DownThreshold != 40.5 || sc.Lookback != 2*time.Second ||
		sc.Resync != time.Second || sc.CallTimeout != 3*time.Second || sc.Events != 16 || sc.Validate() != nil {
		t.Errorf("scaler config %+v (%v)", sc, sc.Validate())
	}

	for _, tc := range []struct {
		name, yaml string
		env        map[string]string
		want       string
	}{
		{"unknown scaler key", "scale_windw: 1s\n", nil, "scale_windw"},
		{"zero window", "scale_window: 0s\n", nil, "scale_window must be a positive duration"},
		{"negative resync", "resync_interval: -1s\n", nil, "resync_interval must be a positive duration"},
		{"bad duration from the environment", "", map[string]string{"PULSE_NETDATA_TIMEOUT": "soon"}, "netdata_timeout"},
		{"thresholds inverted", "scale_down_threshold: 110\n", nil, "scale_down_threshold 110 and scale_up_threshold 110: want 0 < down < up"},
		{"zero down threshold", "scale_down_threshold: 0\n", nil, "want 0 < down < up"},
		{"threshold not a number", "scale_up_threshold: lots\n", nil, "scale_up_threshold"},
		{"netdata url without scheme", "netdata_url: 127.0.0.1:19999\n", nil, `netdata_url "127.0.0.1:19999": want http://HOST:PORT`},
		{"relative token file", "alarm_token_file: token\n", nil, `alarm_token_file "token": want an absolute path`},
		{"no events", "scale_events: 0\n", nil, "scale_events 0: want 1 to 100000"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := noEnv
			if tc.env != nil {
				env = func(k string) string { return tc.env[k] }
			}
			write("# " + tc.name + "\n" + tc.yaml)
			_, err := loadConfig(path, env)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

func TestConfigAutoscaleKeys(t *testing.T) {
	path := filepath.Join(t.TempDir(), "pulsed.yaml")
	if err := os.WriteFile(path, []byte("autoscale: false\ncoldstart_listen: \"\"\nidle_check: 2s\nselector: [pulse.install=lab, team]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := loadConfig(path, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	want := defaults()
	want.Autoscale, want.ColdStartListen, want.IdleCheck, want.Selector = false, "", 2*time.Second, []string{"pulse.install=lab", "team"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}
	got, err = loadConfig(path, func(k string) string {
		return map[string]string{"PULSE_SELECTOR": "pulse.test=abc", "PULSE_COLDSTART_LISTEN": "127.0.0.1:9091"}[k]
	})
	if err != nil || !reflect.DeepEqual(got.Selector, []string{"pulse.test=abc"}) || got.ColdStartListen != "127.0.0.1:9091" {
		t.Errorf("from the environment: %+v, %v", got, err)
	}
	for _, tc := range []struct{ yaml, want string }{
		{"selector: [\"=x\"]\n", `selector "=x"`},
		{"coldstart_listen: 8091\n", `coldstart_listen "8091"`},
		{"coldstart_timeout: 0s\n", "coldstart_timeout must be a positive duration"},
		{"autoscale: maybe\n", "autoscale"},
	} {
		if err := os.WriteFile(path, []byte(tc.yaml), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := loadConfig(path, func(string) string { return "" }); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want it to contain %q", tc.yaml, err, tc.want)
		}
	}
}

// TestConfigInstance: the instance defaults to contract.DefaultInstance,
// comes from the file or PULSE_INSTANCE, and must be safe as a label value.
func TestConfigInstance(t *testing.T) {
	path := filepath.Join(t.TempDir(), "pulsed.yaml")
	write := func(text string) {
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	noEnv := func(string) string { return "" }
	write("log_level: info\n")
	if got, err := loadConfig(path, noEnv); err != nil || got.Instance != "default" {
		t.Errorf("default instance %q, %v; want default", got.Instance, err)
	}
	write("instance: lab-1\n")
	if got, err := loadConfig(path, noEnv); err != nil || got.Instance != "lab-1" {
		t.Errorf("instance from the file %q, %v; want lab-1", got.Instance, err)
	}
	got, err := loadConfig(path, func(k string) string { return map[string]string{"PULSE_INSTANCE": "ci_42"}[k] })
	if err != nil || got.Instance != "ci_42" {
		t.Errorf("instance from the environment %q, %v; want ci_42", got.Instance, err)
	}
	for _, bad := range []string{`""`, "a=b", "-x", "two words"} {
		write("instance: " + bad + "\n")
		_, err := loadConfig(path, noEnv)
		if err == nil || !strings.Contains(err.Error(), "instance ") || !strings.Contains(err.Error(), "want 1 to 63 letters") {
			t.Errorf("instance %s: error %v, want it refused", bad, err)
		}
	}
}

package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
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
	if got != want {
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
		{"bad log level", "log_level: chatty\n", nil, "log_level"},
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

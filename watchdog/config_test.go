package watchdog

import (
	"log/slog"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/pulsefaas/pulse/contract"
)

func TestConfigDefaults(t *testing.T) {
	got, err := ConfigFromEnv([]string{"PULSE_FUNCTION=hello", "PULSE_MODE=fork", "PULSE_EXEC=/bin/cat -u"}, "")
	if err != nil {
		t.Fatal(err)
	}
	want := Config{
		Function: "hello", Mode: contract.ModeFork, Exec: []string{"/bin/cat", "-u"},
		Upstream: "127.0.0.1:3000", Listen: ":8080", Timeout: 30 * time.Second,
		MaxBody: 10 << 20, MaxResponse: 10 << 20, MaxInflight: 1000,
		ReadTimeout: 30 * time.Second, WriteTimeout: 35 * time.Second, IdleTimeout: 120 * time.Second,
		MaxHeaderBytes: 64 << 10, DrainGrace: 5 * time.Second, MaxOverdue: 8, LogLevel: slog.LevelInfo,
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}
	got, err = ConfigFromEnv([]string{"PULSE_FUNCTION=hello", "PULSE_MODE=fork", "PULSE_EXEC=/bin/cat -u", "PULSE_MAX_PROCESSES=8"}, "")
	if err != nil || got.MaxProcesses != 8 {
		t.Errorf("PULSE_MAX_PROCESSES=8: %d, %v", got.MaxProcesses, err)
	}
}

func TestConfigFromEnvValues(t *testing.T) {
	authFile := t.TempDir() + "/auth"
	if err := os.WriteFile(authFile, []byte("s3cret-value\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := ConfigFromEnv([]string{
		"PULSE_FUNCTION=echo-2", "PULSE_MODE=http", `PULSE_EXEC=["/bin/cat", "a b", "c\/d"]`,
		"PULSE_UPSTREAM=127.0.0.1:9000", "PULSE_LISTEN=127.0.0.1:0", "PULSE_TIMEOUT=2s",
		"PULSE_MAX_BODY=1KiB", "PULSE_MAX_RESPONSE=2m", "PULSE_MAX_INFLIGHT=0",
		"PULSE_READ_TIMEOUT=1s", "PULSE_WRITE_TIMEOUT=3s", "PULSE_IDLE_TIMEOUT=4s",
		"PULSE_MAX_HEADER_BYTES=8k", "PULSE_DRAIN_GRACE=0s", "PULSE_LOG_LEVEL=debug",
		"PULSE_MAX_OVERDUE=3", "PULSE_REPLICA_AUTH_FILE=" + authFile,
	}, "")
	if err != nil {
		t.Fatal(err)
	}
	want := Config{
		Function: "echo-2", Mode: contract.ModeHTTP, Exec: []string{"/bin/cat", "a b", "c/d"},
		Upstream: "127.0.0.1:9000", Listen: "127.0.0.1:0", Timeout: 2 * time.Second,
		MaxBody: 1024, MaxResponse: 2 << 20, MaxInflight: 0,
		ReadTimeout: time.Second, WriteTimeout: 3 * time.Second, IdleTimeout: 4 * time.Second,
		MaxHeaderBytes: 8192, DrainGrace: 0, MaxOverdue: 3, LogLevel: slog.LevelDebug,
		ReplicaAuth: "s3cret-value",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}
}

// TestConfigErrors: every bad value is refused with a message that names
// the variable and says what is accepted.
func TestConfigErrors(t *testing.T) {
	notExecutable := t.TempDir() + "/data.txt"
	if err := os.WriteFile(notExecutable, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	base := []string{"PULSE_FUNCTION=hello", "PULSE_MODE=fork", "PULSE_EXEC=/bin/cat"}
	cases := []struct {
		name string
		env  []string
		mode string
		want []string // substrings of the error
	}{
		{"no function", []string{"PULSE_MODE=fork", "PULSE_EXEC=/bin/cat"}, "", []string{"PULSE_FUNCTION is empty"}},
		{"bad function name", []string{"PULSE_FUNCTION=Hello.World"}, "", []string{`PULSE_FUNCTION="Hello.World"`, "DNS label"}},
		{"no mode", []string{"PULSE_FUNCTION=hello"}, "", []string{"PULSE_MODE is empty", "fork or http"}},
		{"unknown mode", []string{"PULSE_MODE=cgi"}, "", []string{`PULSE_MODE="cgi"`, "want fork or http"}},
		{"mode against a linked function", []string{"PULSE_MODE=fork"}, contract.ModeInProcess, []string{"function linked in"}},
		{"no exec", []string{"PULSE_EXEC="}, "", []string{"PULSE_EXEC is empty", "PULSE_EXEC=/function"}},
		{"relative exec", []string{"PULSE_EXEC=cat"}, "", []string{`PULSE_EXEC: "cat": want an absolute path`}},
		{"missing exec", []string{"PULSE_EXEC=/nonexistent/fn"}, "", []string{"PULSE_EXEC", "no such file"}},
		{"exec not executable", []string{"PULSE_EXEC=" + notExecutable}, "", []string{"is not an executable file"}},
		{"bad exec JSON", []string{`PULSE_EXEC=["/bin/cat",]`}, "", []string{"PULSE_EXEC", "JSON array of strings"}},
		{"bad timeout", []string{"PULSE_TIMEOUT=30"}, "", []string{`PULSE_TIMEOUT="30"`, "Go duration such as 500ms"}},
		{"negative grace", []string{"PULSE_DRAIN_GRACE=-1s"}, "", []string{"PULSE_DRAIN_GRACE", "non-negative"}},
		{"zero timeout", []string{"PULSE_TIMEOUT=0s"}, "", []string{"PULSE_TIMEOUT must be above 0"}},
		{"bad size", []string{"PULSE_MAX_BODY=10 megs"}, "", []string{`PULSE_MAX_BODY="10 megs"`, "10MiB"}},
		{"zero size", []string{"PULSE_MAX_RESPONSE=0"}, "", []string{"PULSE_MAX_RESPONSE must be above 0"}},
		{"bad inflight", []string{"PULSE_MAX_INFLIGHT=-3"}, "", []string{"PULSE_MAX_INFLIGHT", "whole number"}},
		{"tiny headers", []string{"PULSE_MAX_HEADER_BYTES=10"}, "", []string{"PULSE_MAX_HEADER_BYTES must be at least 1KiB"}},
		{"processes outside fork mode", []string{"PULSE_MODE=http", "PULSE_MAX_PROCESSES=8"}, "", []string{`PULSE_MAX_PROCESSES="8"`, "only fork mode"}},
		{"zero processes", []string{"PULSE_MAX_PROCESSES=0"}, "", []string{`PULSE_MAX_PROCESSES="0"`, "from 1 to 1024"}},
		{"too many processes", []string{"PULSE_MAX_PROCESSES=5000"}, "", []string{"PULSE_MAX_PROCESSES", "from 1 to 1024"}},
		{"bad log level", []string{"PULSE_LOG_LEVEL=loud"}, "", []string{"PULSE_LOG_LEVEL", "debug, info, warn or error"}},
		{"upstream not loopback", []string{"PULSE_MODE=http", "PULSE_UPSTREAM=10.0.0.1:80"}, "", []string{"PULSE_UPSTREAM", "127.0.0.1:PORT"}},
		{"bad listen", []string{"PULSE_LISTEN=8080"}, "", []string{`PULSE_LISTEN="8080"`, "HOST:PORT"}},
		{"several at once", []string{"PULSE_TIMEOUT=x", "PULSE_MAX_BODY=y"}, "", []string{"PULSE_TIMEOUT", "PULSE_MAX_BODY"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			env := tc.env
			if tc.name != "no function" && tc.name != "no mode" {
				env = append(append([]string{}, base...), tc.env...)
			}
			_, err := ConfigFromEnv(env, tc.mode)
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

func TestParseExec(t *testing.T) {
	cases := []struct {
		in   string
		want []string
		ok   bool
	}{
		{"/fn a  b", []string{"/fn", "a", "b"}, true},
		{`["/fn", "a b", "\u00e9\n"]`, []string{"/fn", "a b", "é\n"}, true},
		{`[ "/fn" ]`, []string{"/fn"}, true},
		{`[]`, nil, false},
		{`["/fn", 1]`, nil, false},
		{`["/fn" "x"]`, nil, false},
		{`["/fn\q"]`, nil, false},
		{`["/fn`, nil, false},
	}
	for _, tc := range cases {
		got, err := parseExec(tc.in)
		if (err == nil) != tc.ok || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("parseExec(%q) = %q, %v; want %q ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

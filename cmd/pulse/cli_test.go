package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// pulse runs the CLI in process and returns its exit code, stdout and stderr.
func pulse(t *testing.T, dir string, env map[string]string, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	getenv := func(k string) string {
		if v, ok := env[k]; ok {
			return v
		}
		if k == "HOME" || k == "XDG_CONFIG_HOME" {
			return dir // never the developer's own config
		}
		return os.Getenv(k)
	}
	if dir != "" {
		wd, _ := os.Getwd()
		if err := os.Chdir(dir); err != nil {
			t.Fatal(err)
		}
		defer os.Chdir(wd)
	}
	code := run(context.Background(), args, streams{in: strings.NewReader("from stdin"), out: &out, err: &errb}, getenv)
	return code, out.String(), errb.String()
}

// TestUsageErrors: bad flags, arguments, specs and configuration give exit
// code 2 and a message that says what to fix — before anything touches the
// engine.
func TestUsageErrors(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	badConfig := write("config.yaml", "gateway: http://127.0.0.1:8080\ngatway: x\n")
	badURL := write("url.yaml", "gateway: 127.0.0.1:8080\n")
	badAPI := write("api.yaml", "api: 127.0.0.1:8090\n")
	noAPI := write("noapi.yaml", "api: \"\"\n")
	badInstance := write("instance.yaml", "instance: my install\n")
	cases := []struct {
		name string
		args []string
		want []string
	}{
		{"unknown command", []string{"frobnicate"}, []string{`unknown command "frobnicate"`, "pulse --help"}},
		{"unknown flag", []string{"ls", "--colour"}, []string{"unknown flag: --colour"}},
		{"new without a name", []string{"new", "--lang", "go"}, []string{"new takes NAME", "pulse new hello --lang go"}},
		{"new without a language", []string{"new", "hello"}, []string{"--lang is required: go, c, cpp or bin"}},
		{"new with an unknown language", []string{"new", "hello", "--lang", "rust"}, []string{"lang", "rust"}},
		{"new with an upper-case name", []string{"new", "Hello", "--lang", "go"}, []string{"name", "upper case"}},
		{"new with a dotted name", []string{"new", "a.b", "--lang", "c"}, []string{"name", `"a.b"`}},
		{"new with a path", []string{"new", "../x", "--lang", "c"}, []string{"name", `"../x"`}},
		{"bin with a bad mode", []string{"new", "x", "--lang", "bin", "--mode", "cgi"}, []string{"mode", "cgi"}},
		{"scale with a bad count", []string{"scale", "hello", "many"}, []string{`REPLICAS "many": want a whole number`}},
		{"scale without a count", []string{"scale", "hello"}, []string{"scale takes NAME and REPLICAS"}},
		{"invoke with a bad query", []string{"invoke", "hello", "--query", "novalue"}, []string{`--query "novalue": want key=value`}},
		{"invoke with a missing file", []string{"invoke", "hello", "-d", "@/nonexistent/body"}, []string{"-d @/nonexistent/body"}},
		{"build of an unknown function", []string{"build", "-f", write("ok.yml", "version: 1\nfunctions:\n  hi:\n    lang: c\n"), "nope"}, []string{`has no function "nope" (it has: hi)`}},
		{"unknown config key", []string{"--config", badConfig, "ls"}, []string{"gatway", "known keys"}},
		{"bad gateway URL", []string{"--config", badURL, "ls"}, []string{`gateway "127.0.0.1:8080": want an http:// or https:// URL`}},
		{"bad api URL", []string{"--config", badAPI, "ls"}, []string{`api "127.0.0.1:8090": want an http:// or https:// URL such as http://127.0.0.1:8090`, "PULSE_API"}},
		{"empty api URL", []string{"--config", noAPI, "ls"}, []string{"api is empty: want pulsed's API URL"}},
		{"bad instance", []string{"--config", badInstance, "ls"}, []string{`instance "my install": want 1 to 63 letters`, "PULSE_INSTANCE"}},
		{"scale with a bad timeout", []string{"scale", "hello", "2", "--wait", "--timeout", "soon"}, []string{`invalid argument "soon" for "--timeout"`}},
		{"missing config file", []string{"--config", filepath.Join(dir, "none.yaml"), "ls"}, []string{"none.yaml"}},
		{"rm without a name", []string{"rm"}, []string{"rm takes NAME... (got 0 argument(s)); usage: pulse rm NAME... [flags]; e.g. pulse rm hello", "Run 'pulse rm --help' for usage."}},
		{"logs with extra arguments", []string{"logs", "a", "b"}, []string{"logs takes NAME (got 2 argument(s)); usage: pulse logs NAME [flags]"}},
		{"scale to a negative count", []string{"scale", "hello", "-1"}, []string{"REPLICAS -1: replicas must be ≥ 0"}},
		{"scale to a negative count after a flag", []string{"scale", "--wait", "hello", "-3", "--timeout", "5s"}, []string{"REPLICAS -3: replicas must be ≥ 0"}},
		{"logs with a negative tail", []string{"logs", "hello", "--tail", "-1"}, []string{"--tail -1: want a number of lines ≥ 0"}},
		{"key without a command", []string{"key"}, []string{"pulse key needs a command: add, ls or rm"}},
		{"key with an unknown command", []string{"key", "frob"}, []string{`unknown command "frob" for "pulse key": want add, ls or rm`}},
		{"key add without a function", []string{"key", "add"}, []string{"add takes FUNCTION (got 0 argument(s)); usage: pulse key add FUNCTION [flags]"}},
		{"key add with a bad id", []string{"key", "add", "hello", "--id", "a b"}, []string{`--id "a b": want 1 to 32 letters`}},
		{"key add with a bad function", []string{"key", "add", "Hello"}, []string{`FUNCTION "Hello": want lowercase letters`}},
		{"key add from two places", []string{"key", "add", "hello", "--stdin", "--from-file", "k"}, []string{"--from-file and --stdin both give the key: use one"}},
		{"key add from a missing file", []string{"key", "add", "hello", "--from-file", filepath.Join(dir, "none.key")}, []string{"--from-file: open", "none.key"}},
		{"key add with a short key", []string{"key", "add", "hello", "--stdin"}, []string{"--stdin: the key has 10 characters: want 16 to 512"}},
		{"key add with a bad key", []string{"key", "add", "hello", "--from-file", write("bad.key", "0123456789abcdef ghij\n")}, []string{"the key has white space at character 17"}},
		{"key rm without an id", []string{"key", "rm", "hello"}, []string{"rm takes FUNCTION and ID (got 1 argument(s)); usage: pulse key rm FUNCTION ID"}},
		{"key rm with a bad id", []string{"key", "rm", "hello", "x/y"}, []string{`ID "x/y": want 1 to 32 letters`}},
		{"key ls with two functions", []string{"key", "ls", "a", "b"}, []string{"ls takes at most FUNCTION (got 2 argument(s))"}},
		{"invoke with a bad key file", []string{"invoke", "hello", "--key-file", write("short.key", "abc\n")}, []string{"--key-file", "short.key: the key has 3 characters"}},
		{"invoke with a bad name", []string{"invoke", "a/b"}, []string{`NAME "a/b": want lowercase letters`}},
		{"invoke with a key and an Authorization header", []string{"invoke", "hello", "--key-file", write("ok.key", "0123456789abcdefXYZ\n"), "-H", "Authorization=Bearer x"},
			[]string{"an Authorization header (-H) and a key (PULSE_KEY or --key-file) both given"}},
		{"bad fingerprint", []string{"--config", write("fp.yaml", "gateway: https://127.0.0.1:8443\nfingerprint: ab:cd\n"), "ls"}, []string{`fingerprint: "ab:cd" has 4 hex digits: want the 64`, "PULSE_FINGERPRINT"}},
		{"fingerprint and ca_file", []string{"--config", write("both.yaml", "gateway: https://127.0.0.1:8443\nca_file: /x.pem\nfingerprint: "+strings.Repeat("ab", 32)+"\n"), "ls"}, []string{"ca_file and fingerprint are both set: set one"}},
		{"fingerprint without https", []string{"--config", write("nohttps.yaml", "fingerprint: "+strings.Repeat("AB:", 31)+"AB\n"), "ls"}, []string{"fingerprint is set but neither gateway (http://127.0.0.1:8080) nor api (http://127.0.0.1:8090) is an https:// URL"}},
		{"empty token_file", []string{"--config", write("tok.yaml", "token_file: \"\"\n"), "ls"}, []string{"token_file is empty", "PULSE_TOKEN_FILE"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, stdout, stderr := pulse(t, dir, nil, tc.args...)
			if stdout != "" {
				t.Errorf("stdout %q, want nothing", stdout)
			}
			if code != exitUsage {
				t.Errorf("exit code %d, want %d; stderr:\n%s", code, exitUsage, stderr)
			}
			for _, w := range tc.want {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr lacks %q:\n%s", w, stderr)
				}
			}
		})
	}
}

func TestEnvironmentConfig(t *testing.T) {
	code, _, stderr := pulse(t, t.TempDir(), map[string]string{"PULSE_GATEWAY": "ftp://x"}, "ls")
	if code != exitUsage || !strings.Contains(stderr, "PULSE_GATEWAY") {
		t.Fatalf("exit %d: %s", code, stderr)
	}
}

func TestHelpHasExamples(t *testing.T) {
	a := &app{env: os.Getenv}
	for _, c := range a.rootCmd().Commands() {
		if c.Name() == "help" || c.Name() == "completion" {
			continue
		}
		if c.Example == "" {
			t.Errorf("%s has no example", c.Name())
		}
	}
	code, out, _ := pulse(t, t.TempDir(), nil, "completion", "bash")
	if code != 0 || !strings.Contains(out, "__start_pulse") {
		t.Errorf("bash completion: exit %d", code)
	}
}

// TestConfigDefaults: api and instance have defaults; the environment wins
// over the file.
func TestConfigDefaults(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(path, []byte("instance: lab\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
	got, err := loadConfig(filepath.Join(dir, "absent"), env(nil))
	if err == nil {
		t.Errorf("an explicit config file that does not exist was accepted: %+v", got)
	}
	got, err = loadConfig("", env(map[string]string{"HOME": dir}))
	if err != nil || got.API != "http://127.0.0.1:8090" || got.Instance != "default" || got.Gateway != "http://127.0.0.1:8080" ||
		got.TokenFile != "/etc/pulse/api-token" || got.CAFile != "" || got.Fingerprint != "" {
		t.Errorf("defaults: %+v, %v; want api http://127.0.0.1:8090, gateway http://127.0.0.1:8080, instance default, token_file /etc/pulse/api-token", got, err)
	}
	got, err = loadConfig(path, env(map[string]string{"PULSE_TOKEN_FILE": "/tmp/tok", "PULSE_GATEWAY": "https://gw:8443", "PULSE_FINGERPRINT": strings.Repeat("0a", 32)}))
	if err != nil || got.TokenFile != "/tmp/tok" || got.Gateway != "https://gw:8443" || got.Fingerprint != strings.Repeat("0a", 32) {
		t.Errorf("PULSE_TOKEN_FILE, PULSE_GATEWAY, PULSE_FINGERPRINT: %+v, %v", got, err)
	}
	got, err = loadConfig(path, env(map[string]string{"PULSE_API": "http://10.0.0.5:8090/"}))
	if err != nil || got.API != "http://10.0.0.5:8090/" || got.Instance != "lab" {
		t.Errorf("file and environment: %+v, %v", got, err)
	}
	got, err = loadConfig(path, env(map[string]string{"PULSE_INSTANCE": "ci-7"}))
	if err != nil || got.Instance != "ci-7" {
		t.Errorf("PULSE_INSTANCE: %+v, %v", got, err)
	}
}

// TestSpecErrors: a spec's problems are not command-line mistakes: exit 1,
// every problem with its file, line and field, and no usage hint.
func TestSpecErrors(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yml")
	if err := os.WriteFile(bad, []byte("version: 1\nfunctions:\n  Hello:\n    lang: go\n    tmeout: 3s\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		args []string
		want []string
	}{
		{"bad spec", []string{"build", "-f", bad}, []string{"pulse: the function spec has problems:\n  " + bad + ":3:3: functions.Hello", "\n  " + bad + ":5:5: functions.Hello.tmeout", "did you mean"}},
		{"bad spec on deploy", []string{"deploy", "-f", bad}, []string{bad + ":5:5"}},
		{"no spec", []string{"build", "-f", filepath.Join(dir, "none.yml")}, []string{"none.yml", "pulse new"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, stdout, stderr := pulse(t, dir, nil, tc.args...)
			if code != exitFailure || stdout != "" {
				t.Errorf("exit %d, stdout %q; want 1 and nothing", code, stdout)
			}
			for _, w := range tc.want {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr lacks %q:\n%s", w, stderr)
				}
			}
			if strings.Contains(stderr, "--help") {
				t.Errorf("stderr sends to --help:\n%s", stderr)
			}
		})
	}
}

// TestNegativeArgs: a negative whole number is an argument, not a flag,
// unless it is a flag's value; the arguments keep their order.
func TestNegativeArgs(t *testing.T) {
	root := (&app{env: os.Getenv}).rootCmd()
	for _, tc := range []struct{ in, want string }{
		{"scale x -1", "scale x -- -1"},
		{"scale x 2", "scale x 2"},
		{"scale -1 x", "scale -- -1 x"},
		{"scale --wait x -1 --timeout 3s", "scale --wait x --timeout 3s -- -1"},
		{"scale x --timeout -1 -2", "scale x --timeout -1 -- -2"},
		{"scale x -- -1", "scale x -- -1"},
		{"scale x -7 -- y", "scale x -- -7 y"},
		{"invoke x -d -5", "invoke x -d -5"},
		{"logs x --tail -1", "logs x --tail -1"},
		{"logs x -n -1", "logs x -n -1"},
		{"--config f scale x -1", "--config f scale x -- -1"},
		{"-1", "-1"},
		{"scale x -1x", "scale x -1x"},
	} {
		got := strings.Join(negativeArgs(root, strings.Fields(tc.in)), " ")
		if got != tc.want {
			t.Errorf("%q: got %q, want %q", tc.in, got, tc.want)
		}
	}
}

// TestDoctorDockerHost: pulse doctor checks the engine every other command
// uses — PULSE_DOCKER_HOST, or docker_host in the config — not only
// DOCKER_HOST: an address where no engine listens fails the docker check,
// even while the local engine answers.
func TestDoctorDockerHost(t *testing.T) {
	dir := t.TempDir()
	host := "tcp://" + freeAddr(t)
	cfg := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(cfg, []byte("docker_host: "+host+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		env  map[string]string
		args []string
	}{
		{"environment", map[string]string{"PULSE_DOCKER_HOST": host}, []string{"doctor", "--json"}},
		{"config file", nil, []string{"--config", cfg, "doctor", "--json"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out, stderr := pulse(t, dir, tc.env, tc.args...)
			var res []struct{ Check, Status, Detail string }
			if err := json.Unmarshal([]byte(out), &res); err != nil {
				t.Fatalf("%v: %s", err, out)
			}
			if code != exitFailure || !strings.Contains(stderr, "some checks failed") {
				t.Errorf("exit %d, stderr %q; want 1", code, stderr)
			}
			if len(res) == 0 || res[0].Check != "docker" || res[0].Status != "FAIL" || !strings.HasPrefix(res[0].Detail, "unreachable at "+host+": ") {
				t.Errorf("docker check: %+v; want FAIL unreachable at %s", res[0], host)
			}
		})
	}
}

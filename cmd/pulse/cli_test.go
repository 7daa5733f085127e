package main

import (
	"bytes"
	"context"
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
	badSpec := write("bad.yml", "version: 1\nfunctions:\n  Hello:\n    lang: go\n    tmeout: 3s\n")
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
		{"build without a spec", []string{"build", "-f", filepath.Join(dir, "none.yml")}, []string{"none.yml", "pulse new"}},
		{"build with a bad spec", []string{"build", "-f", badSpec}, []string{"bad.yml:3:3: functions.Hello", "bad.yml:5:5", "tmeout", "did you mean"}},
		{"build of an unknown function", []string{"build", "-f", write("ok.yml", "version: 1\nfunctions:\n  hi:\n    lang: c\n"), "nope"}, []string{`has no function "nope" (it has: hi)`}},
		{"unknown config key", []string{"--config", badConfig, "ls"}, []string{"gatway", "known keys"}},
		{"bad gateway URL", []string{"--config", badURL, "ls"}, []string{`gateway "127.0.0.1:8080": want an http:// or https:// URL`}},
		{"bad api URL", []string{"--config", badAPI, "ls"}, []string{`api "127.0.0.1:8090": want an http:// or https:// URL such as http://127.0.0.1:8090`, "PULSE_API"}},
		{"empty api URL", []string{"--config", noAPI, "ls"}, []string{"api is empty: want pulsed's API URL"}},
		{"bad instance", []string{"--config", badInstance, "ls"}, []string{`instance "my install": want 1 to 63 letters`, "PULSE_INSTANCE"}},
		{"scale with a bad timeout", []string{"scale", "hello", "2", "--wait", "--timeout", "soon"}, []string{`invalid argument "soon" for "--timeout"`}},
		{"missing config file", []string{"--config", filepath.Join(dir, "none.yaml"), "ls"}, []string{"none.yaml"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, _, stderr := pulse(t, dir, nil, tc.args...)
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
	if err != nil || got.API != "http://127.0.0.1:8090" || got.Instance != "default" {
		t.Errorf("defaults: %+v, %v; want api http://127.0.0.1:8090 and instance default", got, err)
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

package main

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/pulsefaas/pulse/contract"
)

// TestConfigOptionsCoverStruct: every field of Config is set by exactly one
// option, and every option sets exactly one field: the struct and the
// description cannot drift apart.
func TestConfigOptionsCoverStruct(t *testing.T) {
	sample := map[reflect.Kind]string{reflect.String: "x-sample", reflect.Bool: "true", reflect.Int: "7",
		reflect.Float64: "7.5", reflect.Int64: "7s", reflect.Slice: "a,b"}
	typ := reflect.TypeOf(Config{})
	setBy := map[string]string{}
	seenKey := map[string]bool{}
	for _, o := range options {
		if seenKey[o.key] {
			t.Errorf("key %s is described twice", o.key)
		}
		seenKey[o.key] = true
		if o.doc == "" {
			t.Errorf("key %s has no documentation", o.key)
		}
		var changed []string
		for _, flip := range []bool{false, true} {
			var c Config
			if flip { // a bool's default may be true: try from both sides
				c = defaults()
				for i := 0; i < typ.NumField(); i++ {
					if f := reflect.ValueOf(&c).Elem().Field(i); f.Kind() == reflect.Bool {
						f.SetBool(false)
					}
				}
			}
			before := c
			val := ""
			// The sample for the option's own type: try each until one parses.
			for _, s := range sample {
				cc := before
				if o.parseEnv(&cc, s) == nil && !reflect.DeepEqual(cc, before) {
					val = s
					c = cc
					break
				}
			}
			if val == "" {
				continue
			}
			for i := 0; i < typ.NumField(); i++ {
				if !reflect.DeepEqual(reflect.ValueOf(c).Field(i).Interface(), reflect.ValueOf(before).Field(i).Interface()) {
					changed = append(changed, typ.Field(i).Name)
				}
			}
			break
		}
		if len(changed) != 1 {
			t.Errorf("key %s sets fields %v, want exactly one", o.key, changed)
			continue
		}
		if prev, ok := setBy[changed[0]]; ok {
			t.Errorf("field %s is set by both %s and %s", changed[0], prev, o.key)
		}
		setBy[changed[0]] = o.key
	}
	for i := 0; i < typ.NumField(); i++ {
		if _, ok := setBy[typ.Field(i).Name]; !ok {
			t.Errorf("field %s has no key in options", typ.Field(i).Name)
		}
	}
}

// TestConfigReferenceInREADME: the README's table of pulsed's keys is
// `pulsed --print-config`'s output.
func TestConfigReferenceInREADME(t *testing.T) {
	var want bytes.Buffer
	if err := printReference(&want); err != nil {
		t.Fatal(err)
	}
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	const begin, end = "<!-- pulsed --print-config: begin -->\n", "<!-- pulsed --print-config: end -->"
	_, rest, ok := strings.Cut(string(readme), begin)
	got, _, ok2 := strings.Cut(rest, end)
	if !ok || !ok2 {
		t.Fatalf("README.md lacks the markers %q and %q around pulsed's configuration table", begin, end)
	}
	if got != want.String() {
		t.Errorf("README.md's pulsed configuration table is stale: replace it with `go run ./cmd/pulsed --print-config`:\n%s", want.String())
	}
	// And the flag prints the same.
	var out, errb bytes.Buffer
	stdout := os.Stdout
	r, w, _ := os.Pipe()
	os.Stdout = w
	code := run(t.Context(), []string{"--print-config"}, func(string) string { return "" }, &errb)
	w.Close()
	os.Stdout = stdout
	_, _ = out.ReadFrom(r)
	if code != 0 || out.String() != want.String() {
		t.Errorf("--print-config: exit %d, stderr %q, output differs from printReference:\n%s", code, errb.String(), out.String())
	}
}

// TestConfigSecurityKeys: the credential, token and certificate keys.
func TestConfigSecurityKeys(t *testing.T) {
	d := defaults()
	if d.ReplicaAuthFile != contract.DefaultReplicaAuthFile || d.APITokenFile != contract.DefaultAPITokenFile || d.TLSCert != "" ||
		d.ColdStartFunctionTimeout != 5*time.Minute || d.KeysFile != "" {
		t.Errorf("defaults %+v", d)
	}
	path := filepath.Join(t.TempDir(), "pulsed.yaml")
	write := func(s string) {
		if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("replica_auth_file: /srv/auth\napi_token_file: /srv/token\ntls_cert: /srv/cert.pem\ncoldstart_function_timeout: 1m\n")
	got, err := loadConfig(path, func(k string) string { return map[string]string{"PULSE_TLS_CERT": "/etc/pulse/tls.pem"}[k] })
	if err != nil {
		t.Fatal(err)
	}
	if got.ReplicaAuthFile != "/srv/auth" || got.APITokenFile != "/srv/token" || got.TLSCert != "/etc/pulse/tls.pem" || got.ColdStartFunctionTimeout != time.Minute {
		t.Errorf("got %+v", got)
	}
	for _, tc := range []struct{ yaml, want string }{
		{"replica_auth_file: auth\n", `replica_auth_file "auth": want an absolute path`},
		{"api_token_file: \"\"\n", `api_token_file "": want an absolute path`},
		{"tls_cert: cert.pem\n", `tls_cert "cert.pem": want an absolute path, or empty for none`},
		{"keys_file: keys.yaml\n", `keys_file "keys.yaml": want an absolute path`},
		{"coldstart_function_timeout: 0s\n", "coldstart_function_timeout must be a positive duration"},
	} {
		write(tc.yaml)
		if _, err := loadConfig(path, func(string) string { return "" }); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want it to contain %q", tc.yaml, err, tc.want)
		}
	}
}

// TestConfigFileShapes: what a file can be besides a good map.
func TestConfigFileShapes(t *testing.T) {
	path := filepath.Join(t.TempDir(), "pulsed.yaml")
	noEnv := func(string) string { return "" }
	for _, tc := range []struct{ name, yaml, want string }{
		{"empty file", "", ""},
		{"only a comment", "# nothing\n", ""},
		{"null document", "~\n", ""},
		{"a list", "- a\n- b\n", "want a YAML map of key: value"},
		{"not YAML", "a: [\n", "not YAML"},
		{"a key twice", "balance: leastconn\nbalance: roundrobin\n", "balance is set twice"},
		{"nested where a string is", "api_listen: {host: x}\n", "api_listen: want a string"},
		{"several errors at once", "balanse: x\nlog_level: chatty\n", `unknown key "balanse"`},
		{"line numbers", "log_level: info\nbogus: 1\n", "line 2: unknown key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := os.WriteFile(path, []byte(tc.yaml), 0o644); err != nil {
				t.Fatal(err)
			}
			got, err := loadConfig(path, noEnv)
			if tc.want == "" {
				if err != nil || !reflect.DeepEqual(got, defaults()) {
					t.Errorf("got %+v, %v; want the defaults", got, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want it to contain %q", err, tc.want)
			}
		})
	}
	// Every problem at once, not one per run.
	if err := os.WriteFile(path, []byte("balanse: x\nlog_level: chatty\ncheck_interval: 0s\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := loadConfig(path, noEnv)
	if err == nil || !strings.Contains(err.Error(), "balanse") {
		t.Errorf("error %v", err)
	}
	_, err = loadConfig(path, func(k string) string { return map[string]string{"PULSE_LEAVE_RUNNING": "perhaps"}[k] })
	if err == nil || !strings.Contains(err.Error(), "balanse") {
		t.Errorf("error %v", err)
	}
	if err := os.WriteFile(path, []byte("log_level: debug\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = loadConfig(path, func(k string) string {
		return map[string]string{"PULSE_LEAVE_RUNNING": "perhaps", "PULSE_SCALE_EVENTS": "many"}[k]
	})
	if err == nil || !strings.Contains(err.Error(), `leave_running (PULSE_LEAVE_RUNNING) "perhaps": want true or false`) ||
		!strings.Contains(err.Error(), `scale_events (PULSE_SCALE_EVENTS) "many": want an integer`) {
		t.Errorf("error %v", err)
	}
}

// TestConfigRenamedKey: pulsed refuses a renamed key naming the new one,
// and --migrate-config rewrites it in place,
// keeping the comments and the other keys.
func TestConfigRenamedKey(t *testing.T) {
	renamed["gateway_port"] = "gateway_listen"
	t.Cleanup(func() { delete(renamed, "gateway_port") })
	path := filepath.Join(t.TempDir(), "pulsed.yaml")
	orig := "# my settings\nstate_dir: /srv/pulse\ngateway_port: 0.0.0.0:9090 # public\n"
	if err := os.WriteFile(path, []byte(orig), 0o640); err != nil {
		t.Fatal(err)
	}
	noEnv := func(string) string { return "" }
	_, err := loadConfig(path, noEnv)
	if err == nil || !strings.Contains(err.Error(), "line 3: gateway_port was renamed gateway_listen: write gateway_listen") {
		t.Fatalf("error %v, want it to name the new key", err)
	}
	var stderr bytes.Buffer
	if code := run(t.Context(), []string{"--migrate-config", path}, noEnv, &stderr); code != 0 {
		t.Fatalf("--migrate-config: exit %d: %s", code, stderr.String())
	}
	if !strings.Contains(stderr.String(), "renamed gateway_port → gateway_listen") {
		t.Errorf("--migrate-config said %q", stderr.String())
	}
	b, _ := os.ReadFile(path)
	if want := "# my settings\nstate_dir: /srv/pulse\ngateway_listen: 0.0.0.0:9090 # public\n"; string(b) != want {
		t.Errorf("migrated file:\n%s\nwant:\n%s", b, want)
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o640 {
		t.Errorf("migrated file mode %v, want the original 0640", st.Mode().Perm())
	}
	if bak, _ := os.ReadFile(path + ".bak"); string(bak) != orig {
		t.Errorf("backup %q, want the original", bak)
	}
	got, err := loadConfig(path, noEnv)
	if err != nil || got.GatewayListen != "0.0.0.0:9090" || got.StateDir != "/srv/pulse" {
		t.Errorf("after migration: %+v, %v", got, err)
	}
	// Nothing to do: the file is left alone.
	stderr.Reset()
	if code := run(t.Context(), []string{"--migrate-config", path}, noEnv, &stderr); code != 0 || stderr.Len() != 0 {
		t.Errorf("second --migrate-config: exit %d, %q", code, stderr.String())
	}
	// Both names: the user chooses.
	if err := os.WriteFile(path, []byte("gateway_port: a:1\ngateway_listen: b:2\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	if code := run(t.Context(), []string{"--migrate-config", path}, noEnv, &stderr); code == 0 || !strings.Contains(stderr.String(), "both gateway_port and its new name gateway_listen") {
		t.Errorf("both keys: exit %d, %q", code, stderr.String())
	}
}

// TestConfigCheckFlag: --check-config reports and exits.
func TestConfigCheckFlag(t *testing.T) {
	path := filepath.Join(t.TempDir(), "pulsed.yaml")
	if err := os.WriteFile(path, []byte("balance: random\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	if code := run(t.Context(), []string{"--config", path, "--check-config"}, func(string) string { return "" }, &stderr); code != 2 ||
		!strings.Contains(stderr.String(), `balance "random": want leastconn or roundrobin`) {
		t.Errorf("exit %d, %q", code, stderr.String())
	}
	if err := os.WriteFile(path, []byte("balance: leastconn\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	stderr.Reset()
	if code := run(t.Context(), []string{"--config", path, "--check-config"}, func(string) string { return "" }, &stderr); code != 0 {
		t.Errorf("exit %d, %q", code, stderr.String())
	}
}

// FuzzDecodeConfig: the file is outside input; decoding never panics and
// what it accepts validates without panicking.
func FuzzDecodeConfig(f *testing.F) {
	f.Add([]byte("state_dir: /srv\nselector: [a, b=c]\nscale_events: 3\n"))
	f.Add([]byte("api_listen: {a: b}\n"))
	f.Add([]byte("- x\n"))
	f.Add([]byte("check_interval: 1e99h\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		c := defaults()
		if err := decodeConfig(&c, b); err == nil {
			_ = c.Validate()
		}
		_, _, _ = migrateConfig(b)
	})
}

package main

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gopkg.in/yaml.v2"

	"github.com/pulsefaas/pulse/alarms"
	"github.com/pulsefaas/pulse/collector"
	"github.com/pulsefaas/pulse/contract"
)

func TestAPIValidate(t *testing.T) {
	tests := []struct {
		name    string
		api     API
		wantErr string
	}{
		{name: "default", api: API{URL: DefaultAPI}},
		{name: "https with CA", api: API{URL: "https://127.0.0.1:8090", CAFile: "/etc/pulse/tls-ca.pem"}},
		{name: "https, system CAs", api: API{URL: "https://pulse.example:8090/"}},
		{name: "CA with http", api: API{URL: DefaultAPI, CAFile: "/etc/pulse/tls-ca.pem"}, wantErr: "a CA file verifies an https:// API only"},
		{name: "relative CA", api: API{URL: "https://127.0.0.1:8090", CAFile: "tls-ca.pem"}, wantErr: `-ca-file "tls-ca.pem": want an absolute path`},
		{name: "CA path with a space", api: API{URL: "https://127.0.0.1:8090", CAFile: "/etc/my ca.pem"}, wantErr: "want an absolute path of letters"},
		{name: "URL with a comment", api: API{URL: "https://127.0.0.1:8090#x"}, wantErr: "want pulsed's API"},
		{name: "a path", api: API{URL: "http://127.0.0.1:8090/v1/replicas"}, wantErr: "want pulsed's API as http://HOST:PORT"},
		{name: "no scheme", api: API{URL: "127.0.0.1:8090"}, wantErr: "want pulsed's API"},
		{name: "other scheme", api: API{URL: "ftp://127.0.0.1:8090"}, wantErr: "want pulsed's API"},
		{name: "user", api: API{URL: "http://u:p@127.0.0.1:8090"}, wantErr: "want pulsed's API"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.api.Validate()
			switch {
			case tc.wantErr == "" && err != nil:
				t.Errorf("Validate: %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Errorf("Validate: %v, want %q", err, tc.wantErr)
			}
		})
	}
}

// jobOf reads the job of a pulse.d/pulse.conf the way the plugin does
// (unknown keys refused) and validates it.
func jobOf(t *testing.T, conf []byte) collector.Config {
	t.Helper()
	var mod struct {
		UpdateEvery        int              `yaml:"update_every"`
		AutodetectionRetry int              `yaml:"autodetection_retry"`
		Jobs               []map[string]any `yaml:"jobs"`
	}
	if err := yaml.UnmarshalStrict(conf, &mod); err != nil || len(mod.Jobs) != 1 {
		t.Fatalf("job file: %v (%d jobs)\n%s", err, len(mod.Jobs), conf)
	}
	b, _ := yaml.Marshal(mod.Jobs[0])
	var job struct {
		Name             string `yaml:"name"`
		collector.Config `yaml:",inline"`
	}
	if err := yaml.UnmarshalStrict(b, &job); err != nil {
		t.Fatalf("job keys: %v", err)
	}
	job.UpdateEvery = mod.UpdateEvery
	if err := job.Config.Validate(); err != nil {
		t.Fatalf("job does not validate: %v", err)
	}
	return job.Config
}

func shippedJob(t *testing.T) []byte {
	t.Helper()
	b, err := fs.ReadFile(collector.ConfigFiles, JobConfigPath)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestPointJob(t *testing.T) {
	shipped := shippedJob(t)
	tests := []struct {
		name        string
		api         API
		wantCatalog string
		wantCA      string
	}{
		{name: "default: as shipped", api: API{URL: DefaultAPI}, wantCatalog: collector.DefaultCatalogURL},
		{name: "https with the install's CA", api: API{URL: "https://127.0.0.1:8090", CAFile: "/etc/pulse/tls-ca.pem"},
			wantCatalog: "https://127.0.0.1:8090" + contract.CatalogPath, wantCA: "/etc/pulse/tls-ca.pem"},
		{name: "another address", api: API{URL: "http://10.0.0.5:9000/"}, wantCatalog: "http://10.0.0.5:9000" + contract.CatalogPath},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := pointJob(shipped, tc.api)
			if err != nil {
				t.Fatal(err)
			}
			job := jobOf(t, got)
			if job.CatalogURL != tc.wantCatalog || job.CAFile != tc.wantCA {
				t.Errorf("catalog_url %q, ca_file %q; want %q, %q", job.CatalogURL, job.CAFile, tc.wantCatalog, tc.wantCA)
			}
			if tc.api.URL == DefaultAPI && string(got) != string(shipped) {
				t.Errorf("the default API changed the shipped file:\n%s", got)
			}
		})
	}
	for _, bad := range [][]byte{[]byte("jobs:\n  - name: pulse\n"), append(append([]byte{}, shipped...), "    ca_file: /x\n"...)} {
		if _, err := pointJob(bad, API{URL: DefaultAPI}); !errors.Is(err, errJobConfig) {
			t.Errorf("pointJob(%q): %v, want errJobConfig", bad, err)
		}
	}
}

// settingsOf is a hook config file's setting lines, without comments.
func settingsOf(conf []byte) string {
	var lines []string
	for _, l := range strings.Split(string(conf), "\n") {
		if l != "" && !strings.HasPrefix(l, "#") {
			lines = append(lines, l)
		}
	}
	return strings.Join(lines, "\n")
}

func TestHookConfig(t *testing.T) {
	for _, tc := range []struct {
		api  API
		want string
	}{
		{API{URL: "https://127.0.0.1:8090", CAFile: "/etc/pulse/tls-ca.pem"}, "PULSE_ALARM_URL=https://127.0.0.1:8090/v1/alarms\nPULSE_ALARM_CA_FILE=/etc/pulse/tls-ca.pem"},
		{API{URL: DefaultAPI}, "PULSE_ALARM_URL=http://127.0.0.1:8090/v1/alarms"},
	} {
		if got := settingsOf(hookConfig(tc.api)); got != tc.want {
			t.Errorf("hook config for %+v: %q, want %q", tc.api, got, tc.want)
		}
	}
}

// An install with https and the CA, then one without: the job and the hook
// file follow, each run leaving the same files whatever ran before.
func TestInstallSwitchesScheme(t *testing.T) {
	etc, web := t.TempDir(), t.TempDir()
	hookConf := filepath.Join(t.TempDir(), "alarm-hook.conf")
	run := func(api API) {
		t.Helper()
		files, err := netdataFiles(collector.ConfigFiles, alarms.Templates())
		if err == nil {
			err = pointFiles(files, api)
		}
		if err == nil {
			err = install(etc, web, files, &writer{log: io.Discard})
		}
		if err == nil {
			err = installHookConfig(hookConf, api, &writer{log: io.Discard})
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	read := func(p string) []byte {
		t.Helper()
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	tlsAPI := API{URL: "https://127.0.0.1:8090", CAFile: "/etc/pulse/tls-ca.pem"}
	run(tlsAPI)
	run(tlsAPI)
	job := jobOf(t, read(filepath.Join(etc, JobConfigPath)))
	if !strings.HasPrefix(job.CatalogURL, "https://") || job.CAFile != tlsAPI.CAFile {
		t.Errorf("after an https install: %+v", job)
	}
	if h := string(read(hookConf)); !strings.Contains(h, "PULSE_ALARM_URL=https://") || !strings.Contains(h, "PULSE_ALARM_CA_FILE=/etc/pulse/tls-ca.pem") {
		t.Errorf("hook config after an https install:\n%s", h)
	}
	if st, err := os.Stat(hookConf); err != nil || st.Mode().Perm() != 0o644 {
		t.Errorf("hook config mode %v, %v; want 0644", st.Mode(), err)
	}
	run(API{URL: DefaultAPI})
	if got := read(filepath.Join(etc, JobConfigPath)); string(got) != string(shippedJob(t)) {
		t.Errorf("after going back to http the job file is not the shipped one:\n%s", got)
	}
	if h := settingsOf(read(hookConf)); strings.Contains(h, "https://") || strings.Contains(h, "PULSE_ALARM_CA_FILE") {
		t.Errorf("hook config after going back to http:\n%s", h)
	}
}

// FuzzAPI: any -api and -ca-file that Validate accepts give a job file the
// collector accepts with that catalog and CA file, and a hook file whose
// URL is the API's webhook.
func FuzzAPI(f *testing.F) {
	f.Add(DefaultAPI, "")
	f.Add("https://127.0.0.1:8090", "/etc/pulse/tls-ca.pem")
	f.Add("https://[::1]:8090/", "/x")
	f.Add("http://h:1\n    ca_file: /x", "")
	f.Add("https://h:1", "/a\nb")
	shipped, err := fs.ReadFile(collector.ConfigFiles, JobConfigPath)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, apiURL, caFile string) {
		api := API{URL: apiURL, CAFile: caFile}
		if api.Validate() != nil {
			return
		}
		conf, err := pointJob(shipped, api)
		if err != nil {
			t.Fatalf("pointJob(%+v): %v", api, err)
		}
		var mod struct {
			Jobs []map[string]any `yaml:"jobs"`
		}
		if err := yaml.Unmarshal(conf, &mod); err != nil || len(mod.Jobs) != 1 {
			t.Fatalf("job file for %+v does not parse: %v\n%s", api, err, conf)
		}
		if got := mod.Jobs[0]["catalog_url"]; got != api.base()+contract.CatalogPath {
			t.Fatalf("catalog_url %q for %+v", got, api)
		}
		if got, _ := mod.Jobs[0]["ca_file"].(string); got != api.CAFile {
			t.Fatalf("ca_file %q for %+v", got, api)
		}
		lines := strings.Split(settingsOf(hookConfig(api)), "\n")
		if lines[0] != contract.EnvAlarmURL+"="+api.base()+contract.AlarmsPath {
			t.Fatalf("hook config %q for %+v", lines, api)
		}
	})
}

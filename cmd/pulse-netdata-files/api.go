package main

import (
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"strings"

	"github.com/pulsefaas/pulse/collector"
	"github.com/pulsefaas/pulse/contract"
)

// DefaultAPI is pulsed's API on its default address, plain HTTP.
const DefaultAPI = "http://127.0.0.1:8090"

// API is where the collector and the alarm hook find pulsed's API, and the
// CA file they verify it with when it serves HTTPS (pulsed's tls_cert).
type API struct {
	URL    string // scheme://host:port, no path
	CAFile string // absolute; only with https
}

// Validate checks the API: an http:// or https:// URL without path, query
// or user; a CA file only with https, as an absolute path.
func (a API) Validate() error {
	u, err := url.Parse(a.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || strings.Trim(u.Path, "/") != "" ||
		u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return fmt.Errorf("-api %q: want pulsed's API as http://HOST:PORT or https://HOST:PORT (default %s)", a.URL, DefaultAPI)
	}
	if a.CAFile != "" && u.Scheme != "https" {
		return fmt.Errorf("-ca-file %s with -api %s: a CA file verifies an https:// API only; use -api https://… (pulsed's tls_cert is set) or leave -ca-file out", a.CAFile, a.URL)
	}
	if a.CAFile != "" && (!filepath.IsAbs(a.CAFile) || !plainPath(a.CAFile)) {
		return fmt.Errorf("-ca-file %q: want an absolute path of letters, digits and / . _ - + @ , = only", a.CAFile)
	}
	for _, c := range a.URL {
		if c <= ' ' || c > '~' || c == '#' || c == '"' || c == '\'' || c == '\\' {
			return fmt.Errorf("-api %q: %q is not allowed in the URL", a.URL, c)
		}
	}
	return nil
}

// plainPath reports whether a path needs no quoting in YAML or in the
// hook's KEY=value file.
func plainPath(p string) bool {
	for _, c := range p {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune("/._-+@,=", c)) {
			return false
		}
	}
	return true
}

func (a API) base() string { return strings.TrimRight(a.URL, "/") }

// JobConfigPath is the collector's job file among the files to install.
const JobConfigPath = contract.PluginName + "/" + contract.CollectorModule + ".conf"

// errJobConfig: the shipped job file is not as pointJob expects.
var errJobConfig = errors.New("collector job file")

// pointJob points the shipped job file at api: its catalog_url line (the
// default, collector.DefaultCatalogURL) becomes api's catalog, followed by
// a ca_file line when api has one. The rest of the file stays as shipped.
func pointJob(conf []byte, api API) ([]byte, error) {
	const indent = "    "
	old := indent + "catalog_url: " + collector.DefaultCatalogURL + "\n"
	if n := strings.Count(string(conf), old); n != 1 {
		return nil, fmt.Errorf("%w: %d lines %q, want 1", errJobConfig, n, strings.TrimSpace(old))
	}
	if strings.Contains(string(conf), indent+"ca_file:") {
		return nil, fmt.Errorf("%w: already has a ca_file line", errJobConfig)
	}
	line := indent + "catalog_url: " + api.base() + contract.CatalogPath + "\n"
	if api.CAFile != "" {
		line += indent + "ca_file: " + api.CAFile + "\n"
	}
	return []byte(strings.Replace(string(conf), old, line, 1)), nil
}

// hookConfig is the alarm hook's config file for api
// (contract.DefaultAlarmHookConfig): its webhook URL and CA file.
func hookConfig(api API) []byte {
	var b strings.Builder
	b.WriteString("# pulse-alarm-hook's settings: written by pulse-netdata-files (make install-netdata) on\n" +
		"# every install, from /etc/pulse/pulsed.yaml (https:// and the CA file when tls_cert is set).\n" +
		"# KEY=value lines. The hook does not read this file when " + contract.EnvAlarmURL + " is in its environment.\n")
	fmt.Fprintf(&b, "%s=%s%s\n", contract.EnvAlarmURL, api.base(), contract.AlarmsPath)
	if api.CAFile != "" {
		fmt.Fprintf(&b, "%s=%s\n", contract.EnvAlarmCAFile, api.CAFile)
	}
	return []byte(b.String())
}

// pointFiles applies api to the files: the job file is rewritten by
// pointJob.
func pointFiles(files []File, api API) error {
	for i, f := range files {
		if f.Root != Etc || f.Path != JobConfigPath {
			continue
		}
		data, err := pointJob(f.Data, api)
		if err != nil {
			return err
		}
		files[i].Data = data
		return nil
	}
	return fmt.Errorf("%w: %s not among the files", errJobConfig, JobConfigPath)
}

// installHookConfig writes the hook's config file (0644: it holds no
// secret) and names it on log.
func installHookConfig(path string, api API, w *writer) error {
	if err := w.put(path, hookConfig(api), 0o644); err != nil {
		return fmt.Errorf("hook config: %w", err)
	}
	return nil
}

// Command pulse-alarm-hook is the program Pulse's Netdata health templates
// exec (alarms/health/pulse.conf). Netdata runs it as user netdata with the 29
// arguments of a notification and waits for it, health loop stopped, so it
// does one thing quickly: it turns the arguments into a contract.AlarmEvent,
// posts it as JSON to pulsed's scaler webhook with the bearer token, and
// exits, all within Timeout. Alarms that are not Pulse's are ignored at once.
//
// It exits 0 whether or not pulsed took the event (one line on stderr, which
// Netdata writes to its error.log, says why not): the scaler is
// level-triggered and Netdata re-sends a standing alarm, so nothing is lost by
// not retrying here. Only a bad command line (a broken exec: line) exits 2.
//
// Configuration: flags (when run by hand, before Netdata's arguments), then
// the environment, then the config file, then the defaults:
//
//	PULSE_ALARM_URL         -url URL          default http://127.0.0.1:8090/v1/alarms
//	PULSE_ALARM_TOKEN_FILE  -token-file PATH  default /etc/pulse/alarm-token
//	PULSE_ALARM_CA_FILE     -ca-file PATH     default none: the system's CAs
//
// PULSE_ALARM_CA_FILE is the PEM bundle an https:// URL is verified with
// (chain and host name; make up's self-signed certificate is
// /etc/pulse/tls-ca.pem); it is refused with an http:// URL, where it would
// check nothing. No proxy from the environment is used.
//
// Netdata 1.37 runs an exec: value as one quoted word, so an exec: line
// cannot carry flags ("exec: hook -url ..." fails with "not found"), and it
// passes its own environment: the install's settings are in the config
// file /etc/pulse/alarm-hook.conf (PULSE_ALARM_CONFIG names another), which
// make install-netdata writes: KEY=value lines with the variables' names,
// '#' comments. The file is not read when the URL is set by -url or
// PULSE_ALARM_URL: then every setting comes from the flags and the
// environment (tests, a pulsed of one's own). A missing default file means
// the defaults; a file that does not parse is reported and nothing is sent.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/pulsefaas/pulse/alarms"
	"github.com/pulsefaas/pulse/collector/tlsclient"
	"github.com/pulsefaas/pulse/contract"
)

const (
	// DefaultURL is pulsed's webhook on its default API address.
	DefaultURL = "http://127.0.0.1:8090" + contract.AlarmsPath
	// Timeout bounds the whole post: connect, TLS handshake, send, answer.
	Timeout = 100 * time.Millisecond
	// maxConfigBytes caps the config file: a few lines.
	maxConfigBytes = 64 << 10
)

// tlsKeys name the settings a TLS failure's fix refers to.
var tlsKeys = tlsclient.Keys{URL: contract.EnvAlarmURL, CAFile: contract.EnvAlarmCAFile}

func main() { os.Exit(run(os.Args[1:], os.Getenv, os.Stderr)) }

// run is the whole program; it returns the exit code.
func run(args []string, getenv func(string) string, stderr io.Writer) int {
	fs := flag.NewFlagSet("pulse-alarm-hook", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var flags settings
	fs.StringVar(&flags.url, "url", "", "pulsed's alarm webhook (default: "+contract.EnvAlarmURL+", the config file, "+DefaultURL+")")
	fs.StringVar(&flags.tokenFile, "token-file", "", "file holding the webhook's bearer token (default: "+contract.EnvAlarmTokenFile+", the config file, "+contract.DefaultAlarmTokenFile+")")
	fs.StringVar(&flags.caFile, "ca-file", "", "PEM bundle of CAs for an https:// URL (default: "+contract.EnvAlarmCAFile+", the config file, the system's CAs)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	logf := func(format string, a ...any) { // one line, stamped like Netdata's error.log
		fmt.Fprintf(stderr, "%s: pulse-alarm-hook: "+format+"\n", append([]any{time.Now().Format(time.DateTime)}, a...)...)
	}

	ev, err := alarms.ParseHookArgs(fs.Args())
	if errors.Is(err, alarms.ErrSkip) {
		return 0
	}
	if err != nil {
		logf("ignored: %v", err)
		return 0
	}
	set, err := resolve(flags, getenv)
	if err != nil {
		logf("%s %s %s not sent: %v", ev.Alarm, ev.Function, ev.Status, err)
		return 0
	}
	token, err := os.ReadFile(set.tokenFile)
	if err != nil {
		logf("%s %s %s not sent: token: %v", ev.Alarm, ev.Function, ev.Status, err)
		return 0
	}
	ctx, cancel := context.WithTimeout(context.Background(), Timeout)
	defer cancel()
	if err := post(ctx, set, strings.TrimSpace(string(token)), ev); err != nil {
		logf("%s %s %s not sent: %v", ev.Alarm, ev.Function, ev.Status, err)
	}
	return 0
}

// settings is where and how the hook posts.
type settings struct {
	url, tokenFile, caFile string
}

// resolve applies, over the defaults, the config file (unless the URL is
// given by flag or environment), the environment and the flags, and checks
// the result.
func resolve(flags settings, getenv func(string) string) (settings, error) {
	set := settings{url: DefaultURL, tokenFile: contract.DefaultAlarmTokenFile}
	if flags.url == "" && getenv(contract.EnvAlarmURL) == "" {
		path := getenv(contract.EnvAlarmHookConfig)
		explicit := path != ""
		if !explicit {
			path = contract.DefaultAlarmHookConfig
		}
		data, err := readConfigFile(path)
		switch {
		case err == nil:
			kv, err := parseConfig(data)
			if err != nil {
				return set, fmt.Errorf("config file %s: %w", path, err)
			}
			set.apply(kv)
		case errors.Is(err, os.ErrNotExist) && !explicit: // no file: the defaults
		default:
			return set, fmt.Errorf("config file: %w", err)
		}
	}
	set.apply(map[string]string{
		contract.EnvAlarmURL:       getenv(contract.EnvAlarmURL),
		contract.EnvAlarmTokenFile: getenv(contract.EnvAlarmTokenFile),
		contract.EnvAlarmCAFile:    getenv(contract.EnvAlarmCAFile),
	})
	set.apply(map[string]string{
		contract.EnvAlarmURL:       flags.url,
		contract.EnvAlarmTokenFile: flags.tokenFile,
		contract.EnvAlarmCAFile:    flags.caFile,
	})
	return set, set.validate()
}

// apply sets the settings that kv gives a non-empty value.
func (s *settings) apply(kv map[string]string) {
	for k, dst := range map[string]*string{contract.EnvAlarmURL: &s.url, contract.EnvAlarmTokenFile: &s.tokenFile, contract.EnvAlarmCAFile: &s.caFile} {
		if v := kv[k]; v != "" {
			*dst = v
		}
	}
}

func (s settings) validate() error {
	u, err := url.Parse(s.url)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%s %q: want an http:// or https:// URL of pulsed's %s", contract.EnvAlarmURL, s.url, contract.AlarmsPath)
	}
	if s.caFile != "" && u.Scheme != "https" {
		return fmt.Errorf("%s %s is set but %s %s is not https://, so nothing would be verified with it: use https:// when pulsed's tls_cert is set, or remove %s",
			contract.EnvAlarmCAFile, s.caFile, contract.EnvAlarmURL, s.url, contract.EnvAlarmCAFile)
	}
	if s.caFile != "" && !filepath.IsAbs(s.caFile) {
		return fmt.Errorf("%s %q: want an absolute path (make up writes %s)", contract.EnvAlarmCAFile, s.caFile, tlsclient.DefaultCAFile)
	}
	return nil
}

func readConfigFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxConfigBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	return data, nil
}

// configKeys are the keys a config file may set.
var configKeys = []string{contract.EnvAlarmURL, contract.EnvAlarmTokenFile, contract.EnvAlarmCAFile}

// parseConfig reads a config file: KEY=value lines (white space around
// either ignored, the value taken as is: no quotes, no expansion), blank
// lines and '#' comments; only configKeys, each at most once. An empty
// value means the default.
func parseConfig(data []byte) (map[string]string, error) {
	if len(data) > maxConfigBytes {
		return nil, fmt.Errorf("larger than %d bytes", maxConfigBytes)
	}
	kv := map[string]string{}
	for n, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		switch {
		case !ok:
			return nil, fmt.Errorf("line %d: %q is not KEY=value", n+1, clip(line))
		case !known(k):
			return nil, fmt.Errorf("line %d: unknown key %q (known: %s)", n+1, clip(k), strings.Join(configKeys, ", "))
		}
		if _, dup := kv[k]; dup {
			return nil, fmt.Errorf("line %d: %s set twice", n+1, k)
		}
		for _, c := range v {
			if c < ' ' || c == 0x7f {
				return nil, fmt.Errorf("line %d: %s holds a control character", n+1, k)
			}
		}
		kv[k] = v
	}
	return kv, nil
}

func known(k string) bool {
	for _, c := range configKeys {
		if k == c {
			return true
		}
	}
	return false
}

func clip(s string) string {
	if len(s) > 60 {
		return s[:60] + "..."
	}
	return s
}

// post sends the event and fails unless pulsed answers 2xx.
func post(ctx context.Context, set settings, token string, ev contract.AlarmEvent) error {
	if token == "" {
		return fmt.Errorf("token: %s is empty", set.tokenFile)
	}
	body, err := json.Marshal(ev)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, set.url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	ca := tlsclient.NewCAFile(set.caFile)
	resp, err := newClient(ca).Do(req)
	if err != nil {
		return tlsclient.Explain(err, set.url, ca, tlsKeys)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 200))
		if tlsclient.PlainToTLS(resp.StatusCode, msg) {
			return fmt.Errorf("pulsed answered %s to http://: it serves HTTPS (its tls_cert is set); fix: set %s to https://… and %s to its CA (make up writes %s)",
				resp.Status, contract.EnvAlarmURL, contract.EnvAlarmCAFile, tlsclient.DefaultCAFile)
		}
		return fmt.Errorf("pulsed answered %s: %s", resp.Status, bytes.TrimSpace(msg))
	}
	return nil
}

// newClient is the hook's client for one request to pulsed: no proxy from
// the environment (the token goes to pulsed only), no idle connection left
// behind, no redirect followed, https:// verified with ca.
func newClient(ca *tlsclient.CAFile) *http.Client {
	d := &net.Dialer{}
	return &http.Client{
		Transport:     &http.Transport{Proxy: nil, DialContext: d.DialContext, DialTLSContext: ca.DialTLS(d, Timeout), DisableKeepAlives: true},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

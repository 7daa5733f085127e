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
// Configuration, from the environment (or flags before Netdata's arguments
// when run by hand):
//
//	PULSE_ALARM_URL         -url URL          default http://127.0.0.1:8090/v1/alarms
//	PULSE_ALARM_TOKEN_FILE  -token-file PATH  default /etc/pulse/alarm-token
//
// Netdata 1.37 runs an exec: value as one quoted word, so an exec: line
// cannot carry flags ("exec: hook -url ..." fails with "not found"): a
// non-default pulsed is set through Netdata's environment.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/pulsefaas/pulse/alarms"
	"github.com/pulsefaas/pulse/contract"
)

const (
	// DefaultURL is pulsed's webhook on its default API address.
	DefaultURL = "http://127.0.0.1:8090" + contract.AlarmsPath
	// Timeout bounds the whole post: connect, send, answer.
	Timeout = 100 * time.Millisecond
)

func main() { os.Exit(run(os.Args[1:], os.Getenv, os.Stderr)) }

// run is the whole program; it returns the exit code.
func run(args []string, getenv func(string) string, stderr io.Writer) int {
	fs := flag.NewFlagSet("pulse-alarm-hook", flag.ContinueOnError)
	fs.SetOutput(stderr)
	url := fs.String("url", envOr(getenv, "PULSE_ALARM_URL", DefaultURL), "pulsed's alarm webhook")
	tokenFile := fs.String("token-file", envOr(getenv, "PULSE_ALARM_TOKEN_FILE", contract.DefaultAlarmTokenFile), "file holding the webhook's bearer token")
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
	token, err := os.ReadFile(*tokenFile)
	if err != nil {
		logf("%s %s %s not sent: %v", ev.Alarm, ev.Function, ev.Status, err)
		return 0
	}
	ctx, cancel := context.WithTimeout(context.Background(), Timeout)
	defer cancel()
	if err := post(ctx, *url, strings.TrimSpace(string(token)), ev); err != nil {
		logf("%s %s %s not sent: %v", ev.Alarm, ev.Function, ev.Status, err)
	}
	return 0
}

// post sends the event and fails unless pulsed answers 2xx.
func post(ctx context.Context, url, token string, ev contract.AlarmEvent) error {
	if token == "" {
		return errors.New("empty token")
	}
	body, err := json.Marshal(ev)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	// One request to localhost: no proxy from the environment, no idle
	// connection left behind.
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 200))
		return fmt.Errorf("pulsed answered %s: %s", resp.Status, bytes.TrimSpace(msg))
	}
	return nil
}

func envOr(getenv func(string) string, key, def string) string {
	if v := getenv(key); v != "" {
		return v
	}
	return def
}

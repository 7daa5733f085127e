package function

import (
	"bytes"
	"encoding/json"
	"maps"
	"net"
	"slices"
	"strconv"

	"github.com/pulsefaas/pulse/contract"
	"github.com/pulsefaas/pulse/internal/scalelabels"
)

// ServiceLabels returns the Swarm service labels of the function (DESIGN.md
// §5): the user's labels plus the pulse.* ones, which pulsed, the gateway
// and the scaler read. The timeout is a Go duration, the body limit a number
// of bytes, and pulse.scale.idle is empty when the function never scales to
// zero. pulse.rate-limit and pulse.async are there only when the spec has
// rate_limit and async: a deploy replaces all of a service's labels, so
// removing the section removes the label.
func (s Spec) ServiceLabels() map[string]string {
	l := make(map[string]string, len(s.Labels)+10)
	maps.Copy(l, s.Labels)
	maps.Copy(l, map[string]string{
		contract.LabelFunction: s.Name,
		contract.LabelTimeout:  s.Timeout.String(),
		contract.LabelMaxBody:  strconv.FormatInt(s.MaxBody, 10),
	})
	maps.Copy(l, scalelabels.Format(s.Scale))
	if s.RateLimit != nil {
		l[contract.LabelRateLimit] = s.RateLimit.String()
	}
	if s.Async != nil {
		l[contract.LabelAsync] = s.Async.String()
	}
	return l
}

// WatchdogEnv returns the watchdog's settings for the function as sorted
// NAME=value entries: its name, mode, timeout and body limit; in fork and
// http mode the command (a JSON array: FunctionPath, then Args);
// in http mode the upstream address on 127.0.0.1. The user's Env is not
// included; the deploy adds it, and the watchdog's other settings, next to
// these.
func (s Spec) WatchdogEnv() []string {
	env := []string{
		contract.EnvFunction + "=" + s.Name,
		contract.EnvMode + "=" + s.Mode,
		contract.EnvTimeout + "=" + s.Timeout.String(),
		contract.EnvMaxBody + "=" + strconv.FormatInt(s.MaxBody, 10),
	}
	if s.Mode == contract.ModeFork || s.Mode == contract.ModeHTTP {
		env = append(env, contract.EnvExec+"="+execJSON(append([]string{FunctionPath}, s.Args...)))
	}
	if s.Mode == contract.ModeInProcess && s.MaxOverdue != nil {
		env = append(env, contract.EnvMaxOverdue+"="+strconv.Itoa(*s.MaxOverdue))
	}
	if s.Mode == contract.ModeHTTP {
		env = append(env, contract.EnvUpstream+"="+net.JoinHostPort("127.0.0.1", strconv.Itoa(s.Port)))
	}
	slices.Sort(env)
	return env
}

// execJSON encodes argv as the JSON array the watchdog reads from PULSE_EXEC
// (no HTML escaping, no trailing newline).
func execJSON(argv []string) string {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(argv) // a []string always encodes
	return string(bytes.TrimSuffix(b.Bytes(), []byte("\n")))
}

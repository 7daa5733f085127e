package function

import (
	"errors"
	"fmt"
	"maps"
	"math"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/pulsefaas/pulse/contract"
	"github.com/pulsefaas/pulse/internal/scalelabels"
)

// Defaults and bounds of a function spec.
const (
	// DefaultTimeout and DefaultMaxBody are the watchdog's own defaults
	// (contract/defaults.go).
	DefaultTimeout = contract.DefaultTimeout
	DefaultMaxBody = contract.DefaultMaxBody
	// DefaultPort is where an http-mode function listens on 127.0.0.1.
	DefaultPort = 3000
	// MinMemory is the smallest memory limit Docker accepts.
	MinMemory = 4 << 20
	// DefaultMemory is each replica's memory limit when the spec sets
	// none: the watchdog idles at ~6 MiB and a small Go or C function at a
	// few more, so 256 MiB leaves room for real work (and the 64 MiB /tmp,
	// which counts against it) while ten replicas of a runaway function
	// cannot take more than 2.5 GiB of a node. Over it, the kernel kills a
	// process of that replica only.
	DefaultMemory = 256 << 20
	// DefaultPids caps the processes and threads of one replica when the
	// spec sets none, so a fork bomb stays in its replica. The watchdog's
	// Go runtime takes ~10 threads; in fork mode each request in flight is
	// one more process (plus any it starts), and the scaler aims at 10 in
	// flight per replica by default, so 512 leaves a wide margin over
	// normal use. A fork beyond it fails (EAGAIN) inside the replica; a
	// fork-mode replica takes at most 480 requests at once (the rest get
	// 429, see forkMaxInflight), so requests never fail for want of one.
	DefaultPids = 512
	// MinPids is the smallest pids limit a spec may set: the watchdog
	// alone needs ~10 threads and a request in fork mode one process.
	MinPids = 32
	// MaxPids is the largest: Linux's PID_MAX_LIMIT.
	MaxPids = 1 << 22
	// MinCPUs is the smallest CPU limit Docker accepts.
	MinCPUs = 0.01
	// MinTimeout is the smallest timeout: HAProxy counts in milliseconds.
	MinTimeout = time.Millisecond
)

// Scaling metrics (Scale.Metric).
const (
	ScaleInflight = scalelabels.MetricInflight // requests in progress per replica
	ScaleRPS      = scalelabels.MetricRPS      // requests per second per replica
	ScaleQueue    = scalelabels.MetricQueue    // async requests queued per replica
)

// DefaultScale is the scaling policy of a function whose spec sets none
// (scalelabels.Default): 1 to 10 replicas, 10 requests in flight per
// replica, never to zero.
func DefaultScale() Scale { return scalelabels.Default() }

// langDefaultMode is the mode of a function whose spec sets none.
func langDefaultMode(lang string) string {
	switch lang {
	case LangGo:
		return contract.ModeInProcess
	case LangC, LangCPP, LangBin:
		return contract.ModeFork
	}
	return ""
}

// Validate checks a complete spec (defaults applied, as ParseSpecs returns
// it, or built in code) against the rules of functions.yml. Its errors name
// the field as the spec file would.
func (s Spec) Validate() error {
	var errs []error
	base := fieldKey("functions", s.Name)
	checkSpec(&s, func(field, msg string) {
		path := base
		if field != "" {
			path += "." + field
		}
		errs = append(errs, &SpecError{File: s.File, Line: s.Line, Field: path, Msg: msg})
	})
	return errors.Join(errs...)
}

// checkSpec applies every rule that concerns values (the parser checks types
// and keys) and reports each problem with its field path relative to the
// function: "", "lang", "scale.min", "env.KEY", "secrets[1]", ….
func checkSpec(s *Spec, report func(field, msg string)) {
	if msg := nameProblem(s.Name); msg != "" {
		report("", msg)
	}
	if msg := langProblem(s.Lang); msg != "" {
		report("lang", msg)
	} else if msg := modeProblem(s.Lang, s.Mode); msg != "" {
		report("mode", msg)
	}
	switch {
	case s.Handler == "":
		report("handler", "is empty; write the path of the function's source (the executable for bin) relative to the spec file, e.g. ./"+s.Name)
	case filepath.IsAbs(s.Handler) || strings.HasPrefix(s.Handler, "/"):
		report("handler", fmt.Sprintf("%q is absolute; write it relative to the spec file's directory, so the project builds wherever it is checked out", s.Handler))
	case strings.IndexByte(s.Handler, 0) >= 0:
		report("handler", "holds a NUL character; write a plain path")
	}

	if len(s.Args) > 0 && s.Mode == contract.ModeInProcess {
		report("args", "a function in mode inproc is not a separate process and takes no arguments; remove args (use env for settings)")
	}
	for i, a := range s.Args {
		if strings.IndexByte(a, 0) >= 0 || !utf8.ValidString(a) {
			report(fieldIndex("args", i), "holds a NUL character or invalid UTF-8, which a command line cannot carry")
		}
	}

	if s.Mode == contract.ModeHTTP {
		switch {
		case s.Port < 1 || s.Port > 65535:
			report("port", fmt.Sprintf("%d is not a TCP port; use 1-65535 (the default is %d)", s.Port, DefaultPort))
		case s.Port == contract.WatchdogPort:
			report("port", fmt.Sprintf("%d is the watchdog's own port in the replica; pick another, e.g. %d", s.Port, DefaultPort))
		}
	} else if s.Port != 0 {
		report("port", portOutsideHTTP(s.Mode))
	}

	for _, k := range slices.Sorted(maps.Keys(s.Env)) {
		field := fieldKey("env", k)
		if msg := envKeyProblem(k, s.Mode); msg != "" {
			report(field, msg)
		} else if strings.IndexByte(s.Env[k], 0) >= 0 {
			report(field, "the value holds a NUL character, which an environment cannot carry")
		}
	}

	seen := map[string]bool{}
	for i, name := range s.Secrets {
		field := fieldIndex("secrets", i)
		if msg := secretNameProblem(name); msg != "" {
			report(field, msg)
		} else if name == contract.ReplicaAuthSecretTarget {
			report(field, fmt.Sprintf("%q is reserved: pulse deploy mounts the install's replica credential at %s; rename the secret", name, contract.ReplicaAuthPath))
		} else if seen[name] {
			report(field, fmt.Sprintf("%q is listed twice; keep one", name))
		}
		seen[name] = true
	}

	switch m := s.Limits.Memory; {
	case m == 0:
	case m < MinMemory:
		report("limits.memory", fmt.Sprintf("%d bytes is below %s, the smallest memory limit Docker accepts; raise it, or remove it for the default (%s)", m, "4MiB", "256MiB"))
	}
	switch p := s.Limits.Pids; {
	case p == 0:
	case p < MinPids || p > MaxPids:
		report("limits.pids", fmt.Sprintf("%d is outside %d-%d: the processes and threads one replica may run, the watchdog's included (the default is %d)", p, MinPids, MaxPids, DefaultPids))
	}
	switch c := s.Limits.CPUs; {
	case c == 0:
	case math.IsNaN(c) || math.IsInf(c, 0) || c > math.MaxInt64/1e9:
		report("limits.cpus", "is not a number of cores; write it like 0.5 or 2")
	case c < MinCPUs:
		report("limits.cpus", fmt.Sprintf("%s is below %s, the smallest CPU limit Docker accepts; raise it, or remove it for no limit", strconv.FormatFloat(c, 'g', -1, 64), strconv.FormatFloat(MinCPUs, 'g', -1, 64)))
	}

	if s.Timeout < MinTimeout {
		report("timeout", fmt.Sprintf("%s is too short; write at least 1ms (the default is %s)", s.Timeout, DefaultTimeout))
	}
	if s.MaxOverdue != nil && (*s.MaxOverdue < 0 || *s.MaxOverdue > 1<<20) {
		report("max_overdue", "want a whole number from 0 (never fail health) to 1048576; the default is "+strconv.Itoa(contract.DefaultMaxOverdue))
	}
	if s.MaxBody <= 0 {
		report("max_body", "must be above 0, e.g. 10MiB (the default)")
	}

	for _, pr := range s.Scale.Validate() {
		report("scale."+pr.Field, pr.Msg)
	}
	if r := s.RateLimit; r != nil {
		switch {
		case r.Requests < 1 || r.Requests > contract.MaxRateRequests:
			report("rate_limit.requests", fmt.Sprintf("%d: want 1 to %d requests per period", r.Requests, contract.MaxRateRequests))
		case r.Per < contract.MinRatePer || r.Per > contract.MaxRatePer || r.Per%time.Second != 0:
			report("rate_limit.per", fmt.Sprintf("%s: want whole seconds from %s to %s, e.g. 1s or 1m", r.Per, contract.MinRatePer, contract.MaxRatePer))
		case r.Problem() != "":
			report("rate_limit.by", fmt.Sprintf("%q: want function (one budget for the function), client (one per client address) or key (one per invoke key)", r.By))
		}
	}
	if a := s.Async; a != nil {
		def := contract.DefaultAsyncPolicy
		if a.Retries < 0 || a.Retries > contract.MaxAsyncRetries {
			report("async.retries", fmt.Sprintf("%d: want 0 (no retry) to %d dispatches after the first; the default is %d", a.Retries, contract.MaxAsyncRetries, def.Retries))
		}
		if a.MaxAge < contract.MinAsyncMaxAge || a.MaxAge > contract.MaxAsyncMaxAge || a.MaxAge%time.Second != 0 {
			report("async.max_age", fmt.Sprintf("%s: want whole seconds from %s to %s (a week), e.g. 30m or 24h; the default is %s",
				a.MaxAge, shortDuration(contract.MinAsyncMaxAge), shortDuration(contract.MaxAsyncMaxAge), shortDuration(def.MaxAge)))
		}
		if a.Concurrency < 1 || a.Concurrency > contract.MaxAsyncConcurrency {
			report("async.concurrency", fmt.Sprintf("%d: want 1 to %d dispatches in flight per replica; the default is %d", a.Concurrency, contract.MaxAsyncConcurrency, def.Concurrency))
		}
	}

	for _, k := range slices.Sorted(maps.Keys(s.Labels)) {
		field := fieldKey("labels", k)
		if msg := labelKeyProblem(k); msg != "" {
			report(field, msg)
		} else if strings.IndexByte(s.Labels[k], 0) >= 0 {
			report(field, "the value holds a NUL character")
		}
	}

	for i, c := range s.Constraints {
		if msg := constraintProblem(c); msg != "" {
			report(fieldIndex("constraints", i), msg)
		}
	}
}

// shortDuration writes a whole number of hours, minutes or seconds in one
// unit, as functions.yml and the pulse.async label would: 168h, 90m, 90s
// (time.Duration.String gives 168h0m0s, 1h30m0s, 1m30s); anything else as
// String does.
func shortDuration(d time.Duration) string {
	switch {
	case d >= time.Hour && d%time.Hour == 0:
		return strconv.FormatInt(int64(d/time.Hour), 10) + "h"
	case d >= time.Minute && d%time.Minute == 0:
		return strconv.FormatInt(int64(d/time.Minute), 10) + "m"
	case d >= time.Second && d%time.Second == 0:
		return strconv.FormatInt(int64(d/time.Second), 10) + "s"
	}
	return d.String()
}

func portOutsideHTTP(mode string) string {
	return fmt.Sprintf("applies only to mode http (where the function is a server on 127.0.0.1); this function's mode is %s, so remove it", mode)
}

// nameWhy says why a function name is a DNS label.
const nameWhy = "a function name becomes a DNS name, a URL path segment (/function/<name>) and a Swarm service name, " +
	"so write it as a DNS label: 1-63 of a-z, 0-9 and '-', starting with a letter and not ending with '-'"

// nameProblem says what is wrong with a function name, or "" if nothing is.
func nameProblem(name string) string {
	if name == "" {
		return "the name is empty; " + nameWhy
	}
	var what string
	bad, hasUpper := rune(-1), false
	for _, r := range name {
		if r >= 'A' && r <= 'Z' {
			hasUpper = true
		} else if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-') && bad < 0 {
			bad = r
		}
	}
	switch {
	case hasUpper:
		what = "has upper case letters"
	case strings.Contains(name, "."):
		what = "has a '.', which would split it into several DNS labels"
	case strings.ContainsAny(name, `/\`):
		what = "has a path separator, which would split the URL path"
	case strings.Contains(name, "_"):
		what = "has a '_', which DNS names do not allow"
	case bad >= 0:
		what = fmt.Sprintf("has %q, which is not allowed", bad)
	case name[0] < 'a' || name[0] > 'z':
		what = fmt.Sprintf("starts with %q, not a letter", name[0])
	case strings.HasSuffix(name, "-"):
		what = "ends with '-'"
	case len(name) > 63:
		what = fmt.Sprintf("is %d characters long, over the 63 of a DNS label", len(name))
	default:
		return ""
	}
	msg := fmt.Sprintf("%q %s; %s", name, what, nameWhy)
	if s := suggestName(name); s != "" {
		msg += fmt.Sprintf(", e.g. %q", s)
	}
	return msg
}

// suggestName turns name into a valid one, or returns "".
func suggestName(name string) string {
	var b strings.Builder
	dash := false
	for _, r := range strings.ToLower(name) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			if dash && b.Len() > 0 {
				b.WriteByte('-')
			}
			dash = false
			b.WriteRune(r)
		} else {
			dash = true
		}
	}
	s := strings.TrimLeft(b.String(), "0123456789-")
	if len(s) > 63 {
		s = strings.TrimRight(s[:63], "-")
	}
	if s == "" || s == name || nameProblem(s) != "" {
		return ""
	}
	return s
}

// langProblem says what is wrong with a language, or "" if nothing is.
func langProblem(lang string) string {
	switch lang {
	case LangGo, LangC, LangCPP, LangBin:
		return ""
	case "":
		return "missing; set it to go, c, cpp or bin"
	}
	want := map[string]string{
		"golang": LangGo, "c++": LangCPP, "cxx": LangCPP, "cc": LangCPP,
		"binary": LangBin, "exe": LangBin, "static": LangBin,
	}
	l := strings.ToLower(lang)
	if l == LangGo || l == LangC || l == LangCPP || l == LangBin {
		return fmt.Sprintf("%q is not a language; write %q (lower case)", lang, l)
	}
	if w, ok := want[l]; ok {
		return fmt.Sprintf("%q is not a language Pulse knows; write %q", lang, w)
	}
	return fmt.Sprintf("%q is not a language Pulse builds; use go, c, cpp or bin (bin runs any static executable)", lang)
}

// modeProblem says what is wrong with the mode of a function in lang (a
// valid language), or "" if nothing is.
func modeProblem(lang, mode string) string {
	switch mode {
	case contract.ModeInProcess, contract.ModeFork, contract.ModeHTTP:
	default:
		return fmt.Sprintf("%q is not a mode; a %s function runs in mode %s", mode, lang, allowedModes(lang))
	}
	switch lang {
	case LangGo:
		if mode != contract.ModeInProcess {
			return fmt.Sprintf("a go function runs in-process (the watchdog links its handler), not in mode %s; remove mode or write inproc", mode)
		}
	case LangC, LangCPP:
		if mode != contract.ModeFork {
			return fmt.Sprintf("a %s function runs in fork mode (one process per request, stdin to stdout), not in mode %s; remove mode or write fork", lang, mode)
		}
	case LangBin:
		if mode == contract.ModeInProcess {
			return "only a go function runs in-process; a bin function runs in mode fork (one process per request, stdin to stdout) or http (a server on 127.0.0.1:port)"
		}
	}
	return ""
}

func allowedModes(lang string) string {
	switch lang {
	case LangGo:
		return contract.ModeInProcess
	case LangBin:
		return contract.ModeFork + " or " + contract.ModeHTTP
	}
	return contract.ModeFork
}

// secretNameProblem checks a Docker secret name by swarmkit's rule: 1-64 of
// letters, digits, '-', '_' and '.', starting and ending with a letter or a
// digit.
func secretNameProblem(name string) string {
	const rule = "a Docker secret name is 1-64 of letters, digits, '-', '_' and '.', starting and ending with a letter or digit"
	if name == "" {
		return "is empty; " + rule
	}
	alnum := func(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' }
	ok := len(name) <= 64 && alnum(name[0]) && alnum(name[len(name)-1])
	for i := 0; ok && i < len(name); i++ {
		ok = alnum(name[i]) || name[i] == '-' || name[i] == '_' || name[i] == '.'
	}
	if !ok {
		return fmt.Sprintf("%q is not a Docker secret name; %s", name, rule)
	}
	return ""
}

// cgiNames are the variables the watchdog sets per request in fork mode
// (watchdog/README.md); it drops any of the same name from its own
// environment, so a function would never see them.
var cgiNames = []string{
	"GATEWAY_INTERFACE", "SERVER_PROTOCOL", "SERVER_SOFTWARE", "REQUEST_METHOD", "REQUEST_URI",
	"PATH_INFO", "QUERY_STRING", "CONTENT_TYPE", "CONTENT_LENGTH", "REMOTE_ADDR", "REMOTE_PORT",
}

// envKeyProblem says what is wrong with an environment variable's name in a
// function of the given mode, or "" if nothing is.
func envKeyProblem(k, mode string) string {
	if k == "" {
		return "an environment variable needs a name"
	}
	ok := !(k[0] >= '0' && k[0] <= '9')
	for i := 0; ok && i < len(k); i++ {
		c := k[i]
		ok = c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_'
	}
	switch {
	case !ok:
		return fmt.Sprintf("%q is not an environment variable name; use letters, digits and '_', not starting with a digit", k)
	case strings.HasPrefix(k, "PULSE_"):
		return "names starting with PULSE_ are reserved for the watchdog's settings, which pulse deploy sets from this file; rename it"
	case mode == contract.ModeFork && (strings.HasPrefix(k, "HTTP_") || slices.Contains(cgiNames, k)):
		return "in fork mode the watchdog sets HTTP_* and the CGI variables for each request and drops its own; rename it"
	}
	return ""
}

// labelKeyProblem says what is wrong with a service label's key, or "".
func labelKeyProblem(k string) string {
	switch {
	case k == "":
		return "a label needs a key"
	case strings.HasPrefix(strings.ToLower(k), "pulse."):
		return "labels under pulse. are reserved: pulse deploy sets them from this file (timeout, max_body, scale); rename it, e.g. " + strconv.Quote(strings.TrimLeft(k[len("pulse."):], ".")) + " or com.example.team"
	case strings.IndexFunc(k, func(r rune) bool { return r <= ' ' || r == 0x7f }) >= 0:
		return fmt.Sprintf("%q holds white space or a control character; use a key like team or com.example.team", k)
	}
	return ""
}

// constraintProblem checks the form of a Swarm placement constraint: KEY==VALUE
// or KEY!=VALUE.
func constraintProblem(c string) string {
	bad := fmt.Sprintf("%q is not a placement constraint; write KEY==VALUE or KEY!=VALUE, e.g. node.role==worker or node.labels.zone!=edge", c)
	i := strings.Index(c, "==")
	if j := strings.Index(c, "!="); j >= 0 && (i < 0 || j < i) {
		i = j
	}
	if i < 0 {
		return bad
	}
	key, val := strings.TrimSpace(c[:i]), strings.TrimSpace(c[i+2:])
	if key == "" || val == "" || strings.ContainsAny(val, "=\x00") {
		return bad
	}
	for j := 0; j < len(key); j++ {
		ch := key[j]
		if !(ch >= 'a' && ch <= 'z' || ch >= 'A' && ch <= 'Z' || ch >= '0' && ch <= '9' || ch == '_' || ch == '.' || ch == '-') {
			return bad
		}
	}
	return ""
}

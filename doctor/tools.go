package doctor

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
)

// Oldest versions Pulse works with.
const (
	// minHAProxy has the runtime API's `add server` and
	// `option idle-close-on-response`, both of which the gateway relies on.
	minHAProxy = "2.6"
	// minGo is the first Go that fetches the toolchain a go.mod asks for
	// from the module proxy (GOTOOLCHAIN=auto), so it can build a function
	// against Pulse's watchdog library, which needs a newer Go.
	minGo = "1.21"
)

var errNotInstalled = errors.New("not installed")

// runFirst runs the first of candidates that is installed (a name on PATH,
// then fallbacks by absolute path, for tools that live in /usr/sbin or
// /usr/local/go/bin) and returns its output and which one answered.
func runFirst(ctx context.Context, p Probes, candidates ...[]string) (out, used string, err error) {
	if p.Exec == nil {
		return "", "", errors.New("no command runner configured")
	}
	for _, argv := range candidates {
		b, err := call(ctx, p, func(ctx context.Context) ([]byte, error) {
			return p.Exec(ctx, argv[0], argv[1:]...)
		})
		if err != nil && (errors.Is(err, exec.ErrNotFound) || errors.Is(err, fs.ErrNotExist)) {
			continue
		}
		if err != nil {
			err = fmt.Errorf("%s: %w", strings.Join(argv, " "), err)
		}
		return string(b), argv[0], err
	}
	return "", "", errNotInstalled
}

// tool describes how to find one tool's version and what its absence means.
type tool struct {
	candidates [][]string
	version    *regexp.Regexp // first submatch is the version
	min        string         // oldest version that works; "" for any
	missing    string         // what the user loses without it
	install    string         // how to install it
}

var (
	haproxyTool = tool{
		candidates: [][]string{{"haproxy", "-v"}, {"/usr/sbin/haproxy", "-v"}},
		version:    regexp.MustCompile(`(?i)HA-?Proxy version (\d+\.\d+[^\s]*)`),
		min:        minHAProxy,
		missing:    "the gateway needs it",
		install:    "apt-get install haproxy (" + minHAProxy + " or later; Debian 12 has 2.6)",
	}
	netdataTool = tool{
		candidates: [][]string{{"netdata", "-v"}, {"/usr/sbin/netdata", "-v"}},
		version:    regexp.MustCompile(`(?i)netdata\s+v?(\d+\.\d+[^\s]*)`),
		missing:    "no per-function dashboard, no alarms, so no autoscaling",
		install:    "apt-get install netdata",
	}
	goTool = tool{
		candidates: [][]string{{"go", "version"}, {"/usr/local/go/bin/go", "version"}},
		version:    regexp.MustCompile(`\bgo(\d+\.\d+[^\s]*)`),
		min:        minGo,
		missing:    "pulse build cannot compile Go functions",
		install:    "install Go " + minGo + " or later from https://go.dev/dl/ into /usr/local/go (Debian 12's golang-go 1.19 is too old)",
	}
	gccTool = tool{
		candidates: [][]string{{"gcc", "--version"}},
		version:    regexp.MustCompile(`(?m)\A[^\n]*?(\d+\.\d+\.\d+)[^\n]*$`),
		missing:    "pulse build cannot compile C functions",
		install:    "apt-get install gcc libc6-dev",
	}
	gxxTool = tool{
		candidates: [][]string{{"g++", "--version"}},
		version:    regexp.MustCompile(`(?m)\A[^\n]*?(\d+\.\d+\.\d+)[^\n]*$`),
		missing:    "pulse build cannot compile C++ functions",
		install:    "apt-get install g++",
	}
)

// probe runs t and returns its version and the command that answered, or a
// result to report instead.
func (t tool) probe(ctx context.Context, p Probes) (version, used string, bad *Result) {
	out, used, err := runFirst(ctx, p, t.candidates...)
	if errors.Is(err, errNotInstalled) {
		return "", "", &Result{Status: WARN, Detail: "not installed: " + t.missing, Hint: t.install}
	}
	m := t.version.FindStringSubmatch(out)
	if m == nil {
		// A command that failed but printed its version still counts.
		detail := fmt.Sprintf("no version in %q", firstLine(out))
		if err != nil {
			detail = err.Error()
			if l := firstLine(out); l != "" {
				detail += ": " + l
			}
		}
		return "", used, &Result{Status: WARN, Detail: detail, Hint: t.install}
	}
	version = m[1]
	if t.min != "" && versionLess(version, t.min) {
		return version, used, &Result{Status: WARN,
			Detail: fmt.Sprintf("%s, older than %s: %s", version, t.min, t.missing), Hint: t.install}
	}
	return version, used, nil
}

// check reports t's version, and where it is when not on PATH.
func (t tool) check(ctx context.Context, p Probes) Result {
	version, used, bad := t.probe(ctx, p)
	if bad != nil {
		return *bad
	}
	if used != t.candidates[0][0] {
		return Result{Status: WARN, Detail: fmt.Sprintf("%s at %s, not on PATH", version, used),
			Hint: fmt.Sprintf("export PATH=$PATH:%s", used[:strings.LastIndex(used, "/")])}
	}
	return Result{Status: OK, Detail: version}
}

func checkHAProxy(ctx context.Context, p Probes) Result { return haproxyTool.check(ctx, p) }

// checkNetdata accepts /usr/sbin/netdata off PATH: it is Debian's place for
// it and nothing in Pulse runs it by name.
func checkNetdata(ctx context.Context, p Probes) Result {
	version, used, bad := netdataTool.probe(ctx, p)
	if bad != nil {
		return *bad
	}
	if used != netdataTool.candidates[0][0] {
		return Result{Status: OK, Detail: fmt.Sprintf("%s (%s)", version, used)}
	}
	return Result{Status: OK, Detail: version}
}

func checkGo(ctx context.Context, p Probes) Result { return goTool.check(ctx, p) }

func checkGCC(ctx context.Context, p Probes) Result {
	return checkCompiler(ctx, p, gccTool, "libc.a", "apt-get install libc6-dev")
}

func checkGXX(ctx context.Context, p Probes) Result {
	return checkCompiler(ctx, p, gxxTool, "libstdc++.a", "apt-get install libstdc++-12-dev (or the one matching g++ --version)")
}

// checkCompiler reports a compiler's version and whether it can link
// statically, which every Pulse C/C++ function needs (the image is FROM
// scratch): the compiler prints the static library's full path when it has
// one, and just its name when it does not.
func checkCompiler(ctx context.Context, p Probes, t tool, lib, install string) Result {
	r := t.check(ctx, p)
	if r.Status != OK {
		return r
	}
	name := t.candidates[0][0]
	out, _, err := runFirst(ctx, p, []string{name, "-print-file-name=" + lib})
	path := strings.TrimSpace(out)
	switch {
	case err != nil:
		return Result{Status: WARN, Detail: fmt.Sprintf("%s; static %s unknown: %v", r.Detail, lib, err), Hint: install}
	case !strings.HasPrefix(path, "/"):
		return Result{Status: WARN, Detail: fmt.Sprintf("%s, no static %s: -static builds fail", r.Detail, lib), Hint: install}
	}
	return Result{Status: OK, Detail: fmt.Sprintf("%s, static %s", r.Detail, lib)}
}

// versionLess compares the leading dotted numbers of two versions
// ("2.6.12-1+deb12u4" is 2.6.12); missing parts count as 0.
func versionLess(a, b string) bool {
	va, vb := versionParts(a), versionParts(b)
	for i := range max(len(va), len(vb)) {
		x, y := 0, 0
		if i < len(va) {
			x = va[i]
		}
		if i < len(vb) {
			y = vb[i]
		}
		if x != y {
			return x < y
		}
	}
	return false
}

func versionParts(v string) []int {
	var parts []int
	for _, s := range strings.Split(v, ".") {
		end := 0
		for end < len(s) && s[end] >= '0' && s[end] <= '9' {
			end++
		}
		if end == 0 {
			break
		}
		n, err := strconv.Atoi(s[:end])
		if err != nil {
			break
		}
		parts = append(parts, n)
		if end < len(s) {
			break
		}
	}
	return parts
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(strings.TrimSpace(s), "\n")
	return line
}

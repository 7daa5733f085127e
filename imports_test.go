package pulse

import (
	"bufio"
	"bytes"
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// The import rules of this module, enforced by TestImportRules:
//
//   - contract/ is the leaf every part shares: it imports nothing of ours.
//   - The components (componentDirs) are peers: none imports another, so each
//     can be read and changed alone; what two of them share lives in
//     contract/ (names, defaults) or internal/ (code). A component may import
//     its own subpackages (collector/tlsclient), contract/, internal/ and the
//     root package (the embedded SDK).
//   - internal/ sits below the components: it imports contract/, internal/
//     and the root package, never a component, cmd/ or bench/.
//   - cmd/ holds the binaries; nothing imports it.
//   - bench/ may import anything but cmd/; nothing but bench/ imports it.
//   - The root package (the SDK, embedded) imports nothing of ours.
//   - ansible/ is the playbook; its Go tests (test files only) run it on the
//     lab and may import anything but cmd/ and bench/; nothing imports it.
//
// Tests may also import a peer component, but only along the edges listed in
// testOnlyEdges, each with its reason.

// componentDirs are the top-level directories that are components.
var componentDirs = []string{"watchdog", "function", "gateway", "collector", "scaler", "alarms", "doctor", "provision", "async"}

// testOnlyEdges are the component → component (or internal → component)
// imports allowed in _test.go files only, with why.
var testOnlyEdges = map[[2]string]string{
	{"alarms", "collector"}:            "alarms/collector_test.go checks the alarm templates against the collector's charts",
	{"function", "watchdog"}:           "labels_test.go and service_test.go check that the environment WatchdogEnv writes is what watchdog.ConfigFromEnv reads",
	{"internal/catalog", "function"}:   "swarm_test.go builds and deploys real functions with the CLI's package",
	{"scaler", "function"}:             "swarm_docker_test.go builds and deploys real functions with the CLI's package",
	{"internal/portrange", "function"}: "engine_test.go deploys a real function to check published port ranges",
	{"provision", "function"}:          "load_error_test.go runs function.ClusterDistributor over this package's SSH engines against in-process nodes that fail mid-load",
	{"internal/labtest", "provision"}:  "bare_lab_test.go checks the bare lab nodes over SSH with the same client the CLI uses",
	{"provision", "doctor"}:            "snapshot_doctor_test.go checks that a node snapshot holds every file doctor's node checks read, and that they judge it as they judge the host",
}

// pkgImports is one package of `go list` and its imports of this module,
// each path relative to the module ("" is the root package).
type pkgImports struct {
	Path        string
	Imports     []string // non-test
	TestImports []string // _test.go files, both test packages
}

// layer names the part of the module rel belongs to: "root", "contract",
// "internal", "cmd", "bench", a component's directory, or "" when it is none
// of them (a new top-level directory needs a rule).
func layer(rel string) string {
	top, _, _ := strings.Cut(rel, "/")
	switch {
	case rel == "":
		return "root"
	case top == "contract", top == "internal", top == "cmd", top == "bench", top == "ansible":
		return top
	case slices.Contains(componentDirs, top):
		return top
	}
	return ""
}

// importViolation returns why from may not import to (both relative to the
// module), or "" when it may. test says the import is in a _test.go file.
func importViolation(from, to string, test bool) string {
	lf, lt := layer(from), layer(to)
	switch {
	case lf == "":
		return fmt.Sprintf("%q is in no layer: add its top-level directory to the rules in imports_test.go", from)
	case lt == "cmd":
		return "nothing imports cmd/: move what is shared into a component, internal/ or contract/"
	case lt == "bench" && lf != "bench":
		return "only bench/ imports bench/"
	case lt == "ansible":
		return "nothing imports ansible/ (the playbook's tests)"
	case lf == "contract" && lt != "contract":
		return "contract/ imports nothing of ours: it is the leaf every part (and the SDK) shares"
	case lf == "root":
		return "the root package (the embedded SDK) imports nothing of ours"
	case lf == "cmd" || lf == "bench" || lf == "ansible" || lt == "contract" || lt == "root" || lt == "internal" || lf == lt:
		return ""
	}
	// lf is a component or internal; lt a component other than lf.
	if test {
		if _, ok := testOnlyEdges[[2]string{testEdgeKey(from), lt}]; ok {
			return ""
		}
	}
	if lf == "internal" {
		return "internal/ sits below the components: it may not import one"
	}
	return "components are peers: put what both need in contract/ (names, defaults) or internal/ (code)"
}

// testEdgeKey is the from side of a testOnlyEdges key: the component, or the
// internal package's path.
func testEdgeKey(from string) string {
	if layer(from) == "internal" {
		return from
	}
	return layer(from)
}

// listImports runs `go list` over the module and returns every package with
// its imports of this module.
func listImports(t *testing.T) []pkgImports {
	t.Helper()
	const sep = "|"
	cmd := exec.Command("go", "list", "-e", "-f",
		`{{.ImportPath}}`+sep+`{{join .Imports " "}}`+sep+`{{join .TestImports " "}} {{join .XTestImports " "}}`+sep+`{{if .Error}}{{.Error}}{{end}}`,
		"./...")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, stderr.Bytes())
	}
	ours := func(paths string) []string {
		var rel []string
		for _, p := range strings.Fields(paths) {
			if p == SDKModule {
				rel = append(rel, "")
			} else if r, ok := strings.CutPrefix(p, SDKModule+"/"); ok {
				rel = append(rel, r)
			}
		}
		return rel
	}
	var pkgs []pkgImports
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.SplitN(sc.Text(), sep, 4)
		if len(f) != 4 {
			t.Fatalf("go list line %q: want 4 fields", sc.Text())
		}
		if f[3] != "" {
			t.Fatalf("go list %s: %s", f[0], f[3])
		}
		rel := strings.TrimPrefix(strings.TrimPrefix(f[0], SDKModule), "/")
		pkgs = append(pkgs, pkgImports{Path: rel, Imports: ours(f[1]), TestImports: ours(f[2])})
	}
	if len(pkgs) < 10 {
		t.Fatalf("go list found %d packages; the module has more", len(pkgs))
	}
	return pkgs
}

// violations checks every import of pkgs against the rules.
func violations(pkgs []pkgImports) []string {
	var bad []string
	for _, p := range pkgs {
		for _, imp := range p.Imports {
			if why := importViolation(p.Path, imp, false); why != "" {
				bad = append(bad, fmt.Sprintf("%s imports %s: %s", displayPath(p.Path), displayPath(imp), why))
			}
		}
		for _, imp := range p.TestImports {
			if slices.Contains(p.Imports, imp) {
				continue
			}
			if why := importViolation(p.Path, imp, true); why != "" {
				bad = append(bad, fmt.Sprintf("%s (tests) imports %s: %s; if a test truly needs it, list the edge with its reason in testOnlyEdges", displayPath(p.Path), displayPath(imp), why))
			}
		}
	}
	return bad
}

func displayPath(rel string) string {
	if rel == "" {
		return SDKModule
	}
	return rel
}

// TestImportRules fails when any package of the module breaks the import
// rules above.
func TestImportRules(t *testing.T) {
	pkgs := listImports(t)
	for _, v := range violations(pkgs) {
		t.Error(v)
	}
	// Every listed test-only edge still exists; a stale one would let the
	// edge come back unnoticed.
	used := map[[2]string]bool{}
	for _, p := range pkgs {
		for _, imp := range p.TestImports {
			used[[2]string{testEdgeKey(p.Path), layer(imp)}] = true
		}
	}
	for e := range testOnlyEdges {
		if !used[e] {
			t.Errorf("testOnlyEdges lists %s → %s, which no test imports any more: remove it", e[0], e[1])
		}
	}
}

// TestImportRulesCatch checks that the rules refuse what they must, so that
// TestImportRules cannot pass by checking nothing.
func TestImportRulesCatch(t *testing.T) {
	for _, tc := range []struct {
		from, to string
		test     bool
		bad      bool
	}{
		{"function", "watchdog", false, true},
		{"function", "watchdog", true, false}, // listed test-only edge
		{"function", "gateway", true, true},   // not listed
		{"gateway", "scaler", false, true},
		{"collector/tlsclient", "alarms", false, true},
		{"collector", "collector/tlsclient", false, false},
		{"contract", "internal/scalelabels", false, true},
		{"contract", "", false, true},
		{"internal/scalelabels", "scaler", false, true},
		{"internal/scalelabels", "contract", false, false},
		{"internal/portrange", "function", true, false},
		{"internal/swarmaddr", "function", true, true},
		{"scaler", "cmd/pulsed", false, true},
		{"cmd/pulse", "cmd/pulsed", false, true},
		{"cmd/pulsed", "gateway", false, false},
		{"function", "", false, false},
		{"", "contract", false, true},
		{"gateway", "bench/run", true, true},
		{"bench/run", "gateway", false, false},
		{"newdir", "contract", false, true},
	} {
		why := importViolation(tc.from, tc.to, tc.test)
		if (why != "") != tc.bad {
			t.Errorf("%q → %q (test %v): violation %q, want bad=%v", tc.from, tc.to, tc.test, why, tc.bad)
		}
	}
}

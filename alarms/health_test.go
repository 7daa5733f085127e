package alarms

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/pulsefaas/pulse/contract"
)

// healthEntity is one alarm: or template: block of a Netdata health file.
type healthEntity struct {
	kind string // "alarm" or "template"
	name string
	line int
	keys map[string]string
}

// healthKeys are the keys Netdata 1.37 accepts in a health entity; it only
// logs unknown ones, so a typo would silently drop a setting.
var healthKeys = map[string]bool{
	"alarm": true, "template": true, "on": true, "class": true, "type": true, "component": true,
	"os": true, "hosts": true, "lookup": true, "every": true, "units": true, "calc": true,
	"families": true, "plugin": true, "module": true, "charts": true, "green": true, "red": true,
	"warn": true, "crit": true, "exec": true, "to": true, "info": true, "delay": true,
	"options": true, "repeat": true, "host labels": true,
}

// parseHealth reads a health file the way Netdata does: '#' comments,
// "key: value" lines, a trailing '\' joining the next line, and an entity
// starting at each alarm: or template: key.
func parseHealth(r io.Reader) ([]healthEntity, error) {
	var (
		out  []healthEntity
		cur  *healthEntity
		n    int
		sc   = bufio.NewScanner(r)
		prev string
	)
	for sc.Scan() {
		n++
		line := strings.TrimSpace(prev + sc.Text())
		prev = ""
		if strings.HasSuffix(line, `\`) {
			prev = strings.TrimSuffix(line, `\`) + " "
			continue
		}
		if line == "" || line[0] == '#' {
			continue
		}
		key, value, ok := strings.Cut(line, ":")
		key, value = strings.TrimSpace(key), strings.TrimSpace(value)
		switch {
		case !ok:
			return nil, fmt.Errorf("line %d: no ':' in %q", n, line)
		case !healthKeys[key]:
			return nil, fmt.Errorf("line %d: unknown key %q", n, key)
		case value == "":
			return nil, fmt.Errorf("line %d: empty value for %q", n, key)
		}
		if key == "alarm" || key == "template" {
			out = append(out, healthEntity{kind: key, name: value, line: n, keys: map[string]string{}})
			cur = &out[len(out)-1]
			continue
		}
		if cur == nil {
			return nil, fmt.Errorf("line %d: %q before any alarm or template", n, key)
		}
		if _, dup := cur.keys[key]; dup {
			return nil, fmt.Errorf("line %d: %s %s has %q twice", n, cur.kind, cur.name, key)
		}
		cur.keys[key] = value
	}
	return out, sc.Err()
}

// chartSpec is what the health file may refer to on one chart context.
type chartSpec struct {
	context    string
	dims, vars []string
}

// builtinVars are the variables Netdata defines for every alarm.
var builtinVars = []string{
	"this", "status", "now", "after", "before", "update_every", "last_collected_t",
	"green", "red", "REMOVED", "UNINITIALIZED", "UNDEFINED", "CLEAR", "WARNING", "CRITICAL",
}

var (
	varRef    = regexp.MustCompile(`\$\{([^}]+)\}|\$([A-Za-z0-9_.]+)`)
	lookupDim = regexp.MustCompile(`\bof\s+(.+?)(?:\s+foreach\s+.*)?$`)
)

// checkHealth reports every context, dimension and variable the entities use
// that specs do not define. Variables may also name the dimensions of the
// chart and the other alarms on the same context.
func checkHealth(entities []healthEntity, specs []chartSpec) []string {
	var problems []string
	byCtx := map[string]chartSpec{}
	for _, s := range specs {
		byCtx[s.context] = s
	}
	for _, e := range entities {
		where := fmt.Sprintf("%s %s (line %d)", e.kind, e.name, e.line)
		if e.kind != "template" {
			problems = append(problems, where+": use template:, one per context, so every function's chart gets it")
			continue
		}
		spec, ok := byCtx[e.keys["on"]]
		if !ok {
			problems = append(problems, fmt.Sprintf("%s: context %q is not a collector chart", where, e.keys["on"]))
			continue
		}
		if m := lookupDim.FindStringSubmatch(e.keys["lookup"]); m != nil {
			for _, d := range strings.Split(m[1], ",") {
				if d = strings.TrimSpace(d); !slices.Contains(spec.dims, d) {
					problems = append(problems, fmt.Sprintf("%s: lookup dimension %q is not on %s (has %v)", where, d, spec.context, spec.dims))
				}
			}
		}
		known := slices.Concat(builtinVars, spec.dims, spec.vars)
		for _, other := range entities {
			if other.keys["on"] == spec.context {
				known = append(known, other.name)
			}
		}
		for _, key := range []string{"calc", "warn", "crit"} {
			for _, m := range varRef.FindAllStringSubmatch(e.keys[key], -1) {
				if v := m[1] + m[2]; !slices.Contains(known, v) {
					problems = append(problems, fmt.Sprintf("%s: %s uses $%s, not a variable of %s (vars %v)", where, key, v, spec.context, spec.vars))
				}
			}
		}
	}
	return problems
}

func parseTemplates(t *testing.T) []healthEntity {
	t.Helper()
	entities, err := parseHealth(strings.NewReader(Templates()))
	if err != nil {
		t.Fatalf("parse %s: %v", HealthFile, err)
	}
	return entities
}

// The templates: the two scaling alarms, each on the utilisation context,
// evaluated often, repeated while they stand, and handed to the hook.
func TestTemplates(t *testing.T) {
	entities := parseTemplates(t)
	var names []string
	for _, e := range entities {
		names = append(names, e.name)
		for _, key := range []string{"on", "lookup", "every", "units", "repeat", "info", "exec", "to"} {
			if e.keys[key] == "" {
				t.Errorf("%s: no %s:", e.name, key)
			}
		}
		if e.keys["warn"] == "" && e.keys["crit"] == "" {
			t.Errorf("%s: neither warn: nor crit:", e.name)
		}
		if e.keys["on"] != contract.CtxUtilization {
			t.Errorf("%s: on %q, want %q", e.name, e.keys["on"], contract.CtxUtilization)
		}
		if e.keys["exec"] != HookPath {
			t.Errorf("%s: exec %q, want %q", e.name, e.keys["exec"], HookPath)
		}
		if !strings.Contains(e.keys["warn"]+e.keys["crit"], "$status") {
			t.Errorf("%s: no hysteresis through $status", e.name)
		}
		if strings.ContainsAny(e.keys["info"], `'"`) {
			t.Errorf("%s: info has quotes; Netdata passes it to the hook inside single quotes", e.name)
		}
	}
	if want := []string{contract.AlarmScaleUp, contract.AlarmScaleDown}; !slices.Equal(names, want) {
		t.Fatalf("templates %v, want %v", names, want)
	}
}

// Until the collector's chart list is reachable from here, the contract's
// names for the utilisation chart are the reference; collector_test.go
// checks against the collector itself.
func TestTemplatesUseContractNames(t *testing.T) {
	specs := []chartSpec{{
		context: contract.CtxUtilization,
		dims:    []string{contract.DimUtilization},
		vars:    []string{contract.VarReplicas, contract.VarTarget, contract.VarFloor},
	}}
	for _, p := range checkHealth(parseTemplates(t), specs) {
		t.Error(p)
	}
}

func TestCheckHealthFindsMistakes(t *testing.T) {
	specs := []chartSpec{{context: "pulse.utilization", dims: []string{"utilization"}, vars: []string{"replicas"}}}
	src := `
 template: a
       on: pulse.utilisation
   lookup: average -3s of utilization
 template: b
       on: pulse.utilization
   lookup: average -3s unaligned of utilization,util
     calc: $this + $a
     crit: $this > $targett && ${replicas} > 0 && $utilization > 0
    alarm: c
       on: pulse.fn_x_utilization
`
	entities, err := parseHealth(strings.NewReader(src))
	if err != nil {
		t.Fatal(err)
	}
	got := checkHealth(entities, specs)
	want := []string{
		`template a (line 2): context "pulse.utilisation" is not a collector chart`,
		`template b (line 5): lookup dimension "util" is not on pulse.utilization (has [utilization])`,
		`template b (line 5): calc uses $a, not a variable of pulse.utilization (vars [replicas])`,
		`template b (line 5): crit uses $targett, not a variable of pulse.utilization (vars [replicas])`,
		`alarm c (line 10): use template:, one per context, so every function's chart gets it`,
	}
	if !slices.Equal(got, want) {
		t.Fatalf("checkHealth =\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestParseHealthErrors(t *testing.T) {
	tests := []struct{ name, src, want string }{
		{"no colon", " template: a\n on pulse.x\n", `line 2: no ':' in "on pulse.x"`},
		{"unknown key", " template: a\n lokup: average -1s\n", `line 2: unknown key "lokup"`},
		{"empty value", " template: a\n every:\n", `line 2: empty value for "every"`},
		{"key outside entity", "# c\n every: 1s\n", `line 2: "every" before any alarm or template`},
		{"duplicate", " template: a\n every: 1s\n every: 2s\n", `line 3: template a has "every" twice`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseHealth(strings.NewReader(tc.src))
			if err == nil || err.Error() != tc.want {
				t.Fatalf("parseHealth error = %v, want %q", err, tc.want)
			}
		})
	}
}

// The parser reads Netdata's own health files (where installed) without
// complaint: it knows the syntax Netdata knows.
func TestParseHealthStockFiles(t *testing.T) {
	files, _ := filepath.Glob("/usr/lib/netdata/conf.d/health.d/*.conf")
	if len(files) == 0 {
		t.Skip("no Netdata health files here")
	}
	total := 0
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		entities, err := parseHealth(strings.NewReader(string(b)))
		if err != nil {
			t.Errorf("%s: %v", f, err)
		}
		total += len(entities)
	}
	if total < 100 {
		t.Fatalf("only %d entities in %d stock files", total, len(files))
	}
}

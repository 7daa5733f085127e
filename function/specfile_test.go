package function

import (
	"errors"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/pulsefaas/pulse/contract"
	"github.com/pulsefaas/pulse/internal/catalog"
)

// specTestDir is the directory the spec tests pretend their file is in.
const specTestDir = "/srv/fns"

func TestParseSpecsFull(t *testing.T) {
	data, err := os.ReadFile("testdata/specs/full.yml")
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParseSpecs("full.yml", data, specTestDir)
	if err != nil {
		t.Fatal(err)
	}
	want := []Spec{
		{
			Name:        "hello",
			Lang:        LangGo,
			Handler:     "./hello",
			Mode:        "inproc",
			Env:         map[string]string{"GREETING": "hi"},
			Secrets:     []string{"db-password"},
			Limits:      Limits{Memory: 64 << 20, CPUs: 0.5, Pids: 128},
			Timeout:     30 * time.Second,
			MaxBody:     10 << 20,
			Scale:       Scale{Metric: "inflight", Target: 10, Min: 1, Max: 10, Idle: 5 * time.Minute},
			RateLimit:   &contract.RateLimit{Requests: 100, Per: time.Second, By: contract.RateByClient},
			Labels:      map[string]string{"team": "web"},
			Constraints: []string{"node.role==worker"},
			Dir:         specTestDir,
			File:        "full.yml",
			Line:        4,
		},
		{
			Name:        "proxy",
			Lang:        LangBin,
			Handler:     "bin/proxy",
			Mode:        "http",
			Args:        []string{"--listen", "127.0.0.1:4000"},
			Port:        4000,
			Env:         map[string]string{"LOG_LEVEL": "debug", "RETRIES": "3", "EMPTY": ""},
			Secrets:     []string{"api-token", "tls.key"},
			Limits:      Limits{Memory: 1 << 30, CPUs: 2},
			Timeout:     2 * time.Minute,
			MaxBody:     512 << 10,
			Scale:       Scale{Metric: "rps", Target: 2.5, Min: 0, Max: 50},
			Async:       &contract.AsyncPolicy{Retries: 10, MaxAge: 24 * time.Hour, Concurrency: 16, Retry500: true},
			Labels:      map[string]string{"com.example.team": "infra"},
			Constraints: []string{"node.labels.zone!=edge", "node.role == worker"},
			Dir:         specTestDir,
			File:        "full.yml",
			Line:        17,
		},
		{
			Name:    "echo",
			Lang:    LangCPP,
			Handler: "./echo",
			Mode:    "fork",
			Timeout: 30 * time.Second,
			MaxBody: 10 << 20,
			Scale:   Scale{Metric: "inflight", Target: 10, Min: 1, Max: 10},
			Dir:     specTestDir,
			File:    "full.yml",
			Line:    50,
		},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("ParseSpecs:\n got %+v\nwant %+v", got, want)
	}
	for _, s := range got {
		if err := s.Validate(); err != nil {
			t.Errorf("Validate(%s): %v", s.Name, err)
		}
	}
}

// specDoc is a spec file with the given functions: section, which starts
// on line 3.
func specDoc(functions string) string {
	return "version: 1\nfunctions:\n" + functions
}

func TestParseSpecsDefaults(t *testing.T) {
	def := func(name, lang, mode string, port int) Spec {
		return Spec{
			Name: name, Lang: lang, Handler: "./" + name, Mode: mode, Port: port,
			Timeout: 30 * time.Second, MaxBody: 10 << 20,
			Scale: Scale{Metric: "inflight", Target: 10, Min: 1, Max: 10},
			Dir:   specTestDir, File: "functions.yml", Line: 3,
		}
	}
	tests := []struct {
		name string
		yaml string
		want Spec
	}{
		{"go", specDoc("  a:\n    lang: go\n"), def("a", LangGo, "inproc", 0)},
		{"c", specDoc("  a:\n    lang: c\n"), def("a", LangC, "fork", 0)},
		{"cpp", specDoc("  a:\n    lang: cpp\n"), def("a", LangCPP, "fork", 0)},
		{"bin", specDoc("  a:\n    lang: bin\n"), def("a", LangBin, "fork", 0)},
		{"bin http gets port 3000", specDoc("  a:\n    lang: bin\n    mode: http\n"), def("a", LangBin, "http", 3000)},
		{"partial scale keeps the other defaults", specDoc("  a: {lang: go, scale: {max: 3}}\n"), func() Spec {
			s := def("a", LangGo, "inproc", 0)
			s.Scale.Max = 3
			return s
		}()},
		{"empty sections are no settings", specDoc("  a:\n    lang: go\n    env:\n    labels: {}\n    secrets: []\n    args:\n"), func() Spec {
			s := def("a", LangGo, "inproc", 0)
			s.Labels = map[string]string{}
			s.Secrets = []string{}
			return s
		}()},
		{"quoted version", `version: "1"` + "\nfunctions:\n  a: {lang: go}\n", def("a", LangGo, "inproc", 0)},
		{"rate limit: per 1s and by function unless said", specDoc("  a: {lang: go, rate_limit: {requests: 5}}\n"), func() Spec {
			s := def("a", LangGo, "inproc", 0)
			s.RateLimit = &contract.RateLimit{Requests: 5, Per: time.Second, By: contract.RateByFunction}
			return s
		}()},
		{"rate limit in full", specDoc("  a: {lang: go, rate_limit: {requests: 50, per: 1m, by: client}}\n"), func() Spec {
			s := def("a", LangGo, "inproc", 0)
			s.RateLimit = &contract.RateLimit{Requests: 50, Per: time.Minute, By: contract.RateByClient}
			return s
		}()},
		{"async: every key left out takes the default", specDoc("  a: {lang: go, async: {}}\n"), func() Spec {
			s := def("a", LangGo, "inproc", 0)
			s.Async = &contract.AsyncPolicy{Retries: 3, MaxAge: time.Hour, Concurrency: 4}
			return s
		}()},
		{"async: one key, the others default", specDoc("  a: {lang: go, async: {retries: 0}}\n"), func() Spec {
			s := def("a", LangGo, "inproc", 0)
			s.Async = &contract.AsyncPolicy{Retries: 0, MaxAge: time.Hour, Concurrency: 4}
			return s
		}()},
		{"async in full", specDoc("  a: {lang: c, async: {retries: 100, max_age: 168h, concurrency: 1000, retry_500: true}}\n"), func() Spec {
			s := def("a", LangC, "fork", 0)
			s.Async = &contract.AsyncPolicy{Retries: 100, MaxAge: 7 * 24 * time.Hour, Concurrency: 1000, Retry500: true}
			return s
		}()},
		{"async smallest", specDoc("  a: {lang: go, async: {max_age: 1s, concurrency: 1, retry_500: false}}\n"), func() Spec {
			s := def("a", LangGo, "inproc", 0)
			s.Async = &contract.AsyncPolicy{Retries: 3, MaxAge: time.Second, Concurrency: 1}
			return s
		}()},
		{"async without a value is no section", specDoc("  a:\n    lang: go\n    async:\n"), def("a", LangGo, "inproc", 0)},
		{"scale on the async queue", specDoc("  a: {lang: go, scale: {metric: queue, target: 5}}\n"), func() Spec {
			s := def("a", LangGo, "inproc", 0)
			s.Scale.Metric, s.Scale.Target = ScaleQueue, 5
			return s
		}()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseSpecs("functions.yml", []byte(tt.yaml), specTestDir)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, []Spec{tt.want}) {
				t.Errorf("\n got %+v\nwant %+v", got, []Spec{tt.want})
			}
		})
	}
}

func TestParseSpecsAliasReused(t *testing.T) {
	doc := "version: 1\nfunctions:\n  a: &s {lang: c, timeout: 5s}\n  b: *s\n"
	got, err := ParseSpecs("functions.yml", []byte(doc), specTestDir)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[1].Name != "b" || got[1].Handler != "./b" || got[1].Timeout != 5*time.Second || got[1].Line != 4 {
		t.Errorf("got %+v", got)
	}
}

func TestParseSpecsErrors(t *testing.T) {
	const known = "(known here: lang, handler, mode, args, port, env, secrets, limits, timeout, max_body, max_overdue, scale, rate_limit, async, labels, constraints)"
	const nameRule = "a function name becomes a DNS name, a URL path segment (/function/<name>) and a Swarm service name, " +
		"so write it as a DNS label: 1-63 of a-z, 0-9 and '-', starting with a letter and not ending with '-'"
	tests := []struct {
		name string
		yaml string
		want string
	}{
		// The file as a whole.
		{"empty file", "", `functions.yml: the file is empty; start it with "version: 1" and a functions: map (pulse new writes one)`},
		{"only comments", "# nothing\n", `functions.yml: the file is empty; start it with "version: 1" and a functions: map (pulse new writes one)`},
		{"syntax", "version: 1\nfunctions: [\n", `functions.yml:2: not valid YAML: did not find expected node content`},
		{"tab indent", "version: 1\nfunctions:\n\ta: {lang: go}\n", `functions.yml:3: not valid YAML: found character that cannot start any token; indent with spaces: YAML does not allow tabs there`},
		{"root is a list", "- a\n", `functions.yml:1:1: the file must be a mapping with version: and functions:, e.g. "version: 1" then "functions: {hello: {lang: go}}"`},
		{"second document", specDoc("  a: {lang: go}\n---\nversion: 1\n"), `functions.yml:4:1: a second YAML document; put every function under the one functions: map`},
		{"no version", "functions:\n  a: {lang: go}\n", `functions.yml:1:1: version: missing; start the file with "version: 1"`},
		{"version 2", "version: 2\nfunctions:\n  a: {lang: go}\n", `functions.yml:1:10: version: "2" is not a version this Pulse reads; write "version: 1"`},
		{"unknown root key", "version: 1\nfunction:\n  a: {lang: go}\n", "functions.yml:1:1: functions: missing; add the functions: map, e.g. \"functions: {hello: {lang: go}}\", or run pulse new\n" +
			"functions.yml:2:1: function: unknown key; did you mean functions? (known here: version, functions)"},
		{"no functions", "version: 1\nfunctions:\n", `functions.yml:2:11: functions: no functions; add one, e.g. "functions: {hello: {lang: go}}", or run pulse new`},
		{"functions empty", "version: 1\nfunctions: {}\n", `functions.yml:2:12: functions: no functions; add one, e.g. "functions: {hello: {lang: go}}", or run pulse new`},
		{"functions list", "version: 1\nfunctions: [a]\n", `functions.yml:2:12: functions: must be a mapping of function names to their settings, e.g. "functions: {hello: {lang: go}}"`},
		{"function not a mapping", specDoc("  a: go\n"), `functions.yml:3:6: functions.a: must be a mapping of settings, e.g. "a: {lang: go}"`},
		{"duplicate function", specDoc("  a: {lang: go}\n  a: {lang: c}\n"), `functions.yml:4:3: functions.a: set twice (first on line 3); keep one`},
		{"duplicate key", specDoc("  a:\n    lang: go\n    lang: c\n"), `functions.yml:5:5: functions.a.lang: set twice (first on line 4); keep one`},
		{"merge key", specDoc("  a:\n    <<: {lang: go}\n"), "functions.yml:3:3: functions.a.lang: missing; set it to go, c, cpp or bin\n" +
			"functions.yml:4:5: functions.a: merge keys (<<) are not supported; write the settings out"},

		// max_overdue: in-process only, a whole number in range.
		{"max_overdue on a fork function", specDoc("  a: {lang: c, max_overdue: 3}\n"), `functions.yml:3:29: functions.a.max_overdue: only for in-process (go) functions: a fork-mode request past its timeout has its process killed; remove it`},
		{"max_overdue negative", specDoc("  a: {lang: go, max_overdue: -1}\n"), `functions.yml:3:30: functions.a.max_overdue: want a whole number from 0 (never fail health) to 1048576; the default is 8`},

		// Names.
		{"upper case", specDoc("  Hello: {lang: go}\n"), `functions.yml:3:3: functions.Hello: "Hello" has upper case letters; ` + nameRule + `, e.g. "hello"`},
		{"dot", specDoc("  a.b: {lang: go}\n"), `functions.yml:3:3: functions."a.b": "a.b" has a '.', which would split it into several DNS labels; ` + nameRule + `, e.g. "a-b"`},
		{"slash", specDoc("  a/b: {lang: go}\n"), `functions.yml:3:3: functions."a/b": "a/b" has a path separator, which would split the URL path; ` + nameRule + `, e.g. "a-b"`},
		{"underscore", specDoc("  a_b: {lang: go}\n"), `functions.yml:3:3: functions.a_b: "a_b" has a '_', which DNS names do not allow; ` + nameRule + `, e.g. "a-b"`},
		{"space", specDoc("  \"a b\": {lang: go}\n"), `functions.yml:3:3: functions."a b": "a b" has ' ', which is not allowed; ` + nameRule + `, e.g. "a-b"`},
		{"digit first", specDoc("  1a: {lang: go}\n"), `functions.yml:3:3: functions.1a: "1a" starts with '1', not a letter; ` + nameRule + `, e.g. "a"`},
		{"dash last", specDoc("  a-: {lang: go}\n"), `functions.yml:3:3: functions.a-: "a-" ends with '-'; ` + nameRule + `, e.g. "a"`},
		{"too long", specDoc("  " + strings.Repeat("a", 64) + ": {lang: go}\n"), `functions.yml:3:3: functions.` + strings.Repeat("a", 64) + `: "` + strings.Repeat("a", 64) + `" is 64 characters long, over the 63 of a DNS label; ` + nameRule + `, e.g. "` + strings.Repeat("a", 63) + `"`},
		{"empty name", specDoc("  \"\": {lang: go}\n"), `functions.yml:3:3: functions."": the name is empty; ` + nameRule},

		// Fields.
		{"unknown key", specDoc("  a:\n    lang: go\n    tmeout: 30s\n"), `functions.yml:5:5: functions.a.tmeout: unknown key; did you mean timeout? ` + known},
		{"unknown key, other spelling", specDoc("  a:\n    lang: go\n    maxBody: 1MiB\n"), `functions.yml:5:5: functions.a.maxBody: unknown key; did you mean max_body? ` + known},
		{"unknown key, far", specDoc("  a:\n    lang: go\n    image: x\n"), `functions.yml:5:5: functions.a.image: unknown key; known here: lang, handler, mode, args, port, env, secrets, limits, timeout, max_body, max_overdue, scale, rate_limit, async, labels, constraints`},
		{"no lang", specDoc("  a:\n    handler: .\n"), `functions.yml:3:3: functions.a.lang: missing; set it to go, c, cpp or bin`},
		{"no settings", specDoc("  a:\n"), `functions.yml:3:3: functions.a.lang: missing; set it to go, c, cpp or bin`},
		{"bad lang", specDoc("  a: {lang: rust}\n"), `functions.yml:3:13: functions.a.lang: "rust" is not a language Pulse builds; use go, c, cpp or bin (bin runs any static executable)`},
		{"lang case", specDoc("  a: {lang: Go}\n"), `functions.yml:3:13: functions.a.lang: "Go" is not a language; write "go" (lower case)`},
		{"lang alias", specDoc("  a: {lang: c++}\n"), `functions.yml:3:13: functions.a.lang: "c++" is not a language Pulse knows; write "cpp"`},
		{"lang not a string", specDoc("  a: {lang: [go]}\n"), `functions.yml:3:13: functions.a.lang: must be a single value (go, c, cpp or bin), not a list`},
		{"go fork", specDoc("  a: {lang: go, mode: fork}\n"), `functions.yml:3:23: functions.a.mode: a go function runs in-process (the watchdog links its handler), not in mode fork; remove mode or write inproc`},
		{"c http", specDoc("  a: {lang: c, mode: http}\n"), `functions.yml:3:22: functions.a.mode: a c function runs in fork mode (one process per request, stdin to stdout), not in mode http; remove mode or write fork`},
		{"bin inproc", specDoc("  a: {lang: bin, mode: inproc}\n"), `functions.yml:3:24: functions.a.mode: only a go function runs in-process; a bin function runs in mode fork (one process per request, stdin to stdout) or http (a server on 127.0.0.1:port)`},
		{"unknown mode", specDoc("  a: {lang: bin, mode: grpc}\n"), `functions.yml:3:24: functions.a.mode: "grpc" is not a mode; a bin function runs in mode fork or http`},
		{"handler absolute", specDoc("  a: {lang: c, handler: /src/a}\n"), `functions.yml:3:25: functions.a.handler: "/src/a" is absolute; write it relative to the spec file's directory, so the project builds wherever it is checked out`},
		{"handler empty", specDoc("  a: {lang: c, handler: \"\"}\n"), `functions.yml:3:25: functions.a.handler: is empty; write the path of the function's source (the executable for bin) relative to the spec file, e.g. ./a`},
		{"handler null", specDoc("  a: {lang: c, handler: ~}\n"), `functions.yml:3:25: functions.a.handler: has no value; write a path relative to this file, e.g. ./a, or remove the key`},
		{"args in go", specDoc("  a: {lang: go, args: [-v]}\n"), `functions.yml:3:23: functions.a.args: a function in mode inproc is not a separate process and takes no arguments; remove args (use env for settings)`},
		{"args not a list", specDoc("  a: {lang: c, args: -v}\n"), `functions.yml:3:22: functions.a.args: must be a list, e.g. ["--flag", "value"]`},
		{"args item not a string", specDoc("  a: {lang: c, args: [{x: 1}]}\n"), `functions.yml:3:23: functions.a.args[0]: must be a single value (a string), not a mapping`},
		{"args NUL", specDoc("  a: {lang: c, args: [\"a\\0b\"]}\n"), `functions.yml:3:23: functions.a.args[0]: holds a NUL character or invalid UTF-8, which a command line cannot carry`},
		{"port in fork", specDoc("  a: {lang: c, port: 3000}\n"), `functions.yml:3:22: functions.a.port: applies only to mode http (where the function is a server on 127.0.0.1); this function's mode is fork, so remove it`},
		{"port 0 in fork", specDoc("  a: {lang: bin, port: 0}\n"), `functions.yml:3:24: functions.a.port: applies only to mode http (where the function is a server on 127.0.0.1); this function's mode is fork, so remove it`},
		{"port 0", specDoc("  a: {lang: bin, mode: http, port: 0}\n"), `functions.yml:3:36: functions.a.port: 0 is not a TCP port; use 1-65535 (the default is 3000)`},
		{"port too big", specDoc("  a: {lang: bin, mode: http, port: 70000}\n"), `functions.yml:3:36: functions.a.port: 70000 is not a TCP port; use 1-65535 (the default is 3000)`},
		{"port 8080", specDoc("  a: {lang: bin, mode: http, port: 8080}\n"), `functions.yml:3:36: functions.a.port: 8080 is the watchdog's own port in the replica; pick another, e.g. 3000`},
		{"port text", specDoc("  a: {lang: bin, mode: http, port: \"3000\"}\n"), `functions.yml:3:36: functions.a.port: "3000" is not a whole number; write it like 3000`},
		{"timeout", specDoc("  a:\n    lang: go\n    timeout: 30\n"), `functions.yml:5:14: functions.a.timeout: "30" is not a duration; write it like 30s or 2m`},
		{"timeout 0", specDoc("  a: {lang: go, timeout: 0s}\n"), `functions.yml:3:26: functions.a.timeout: 0s is too short; write at least 1ms (the default is 30s)`},
		{"timeout negative", specDoc("  a: {lang: go, timeout: -1s}\n"), `functions.yml:3:26: functions.a.timeout: -1s is too short; write at least 1ms (the default is 30s)`},
		{"max_body", specDoc("  a: {lang: go, max_body: 10 megs}\n"), `functions.yml:3:27: functions.a.max_body: "10 megs" is not a size; write bytes, or a number with a unit like 512KiB, 64MiB or 1GiB`},
		{"max_body 0", specDoc("  a: {lang: go, max_body: 0}\n"), `functions.yml:3:27: functions.a.max_body: must be above 0, e.g. 10MiB (the default)`},
		{"memory small", specDoc("  a: {lang: go, limits: {memory: 1MiB}}\n"), `functions.yml:3:34: functions.a.limits.memory: 1048576 bytes is below 4MiB, the smallest memory limit Docker accepts; raise it, or remove it for the default (256MiB)`},
		{"memory 0", specDoc("  a: {lang: go, limits: {memory: 0}}\n"), `functions.yml:3:34: functions.a.limits.memory: 0: every replica has a memory limit; write one (at least 4MiB), or remove the key for the default, 256MiB`},
		{"memory text", specDoc("  a: {lang: go, limits: {memory: lots}}\n"), `functions.yml:3:34: functions.a.limits.memory: "lots" is not a size; write bytes, or a number with a unit like 512KiB, 64MiB or 1GiB`},
		{"cpus 0", specDoc("  a: {lang: go, limits: {cpus: 0}}\n"), `functions.yml:3:32: functions.a.limits.cpus: 0 is no limit; remove the key for no limit, or write a number of cores like 0.5`},
		{"cpus tiny", specDoc("  a: {lang: go, limits: {cpus: 0.001}}\n"), `functions.yml:3:32: functions.a.limits.cpus: 0.001 is below 0.01, the smallest CPU limit Docker accepts; raise it, or remove it for no limit`},
		{"cpus negative", specDoc("  a: {lang: go, limits: {cpus: -1}}\n"), `functions.yml:3:32: functions.a.limits.cpus: -1 is below 0.01, the smallest CPU limit Docker accepts; raise it, or remove it for no limit`},
		{"cpus infinite", specDoc("  a: {lang: go, limits: {cpus: .inf}}\n"), `functions.yml:3:32: functions.a.limits.cpus: ".inf" is not a number; write it like 0.5`},
		{"limits unknown", specDoc("  a: {lang: go, limits: {mem: 1GiB}}\n"), `functions.yml:3:26: functions.a.limits.mem: unknown key; did you mean memory? (known here: memory, cpus, pids)`},
		{"pids 0", specDoc("  a: {lang: go, limits: {pids: 0}}\n"), `functions.yml:3:32: functions.a.limits.pids: 0: every replica has a process limit; write one (32-4194304), or remove the key for the default, 512`},
		{"pids small", specDoc("  a: {lang: go, limits: {pids: 8}}\n"), `functions.yml:3:32: functions.a.limits.pids: 8 is outside 32-4194304: the processes and threads one replica may run, the watchdog's included (the default is 512)`},
		{"pids huge", specDoc("  a: {lang: go, limits: {pids: 5000000}}\n"), `functions.yml:3:32: functions.a.limits.pids: 5000000 is outside 32-4194304: the processes and threads one replica may run, the watchdog's included (the default is 512)`},
		{"pids text", specDoc("  a: {lang: go, limits: {pids: many}}\n"), `functions.yml:3:32: functions.a.limits.pids: "many" is not a whole number; write it like 512`},
		{"limits scalar", specDoc("  a: {lang: go, limits: 64MiB}\n"), `functions.yml:3:25: functions.a.limits: must be a mapping like {memory: 512MiB, cpus: 0.5, pids: 512}`},
		{"scale min above max", specDoc("  a:\n    lang: go\n    scale: {min: 20, max: 5}\n"), `functions.yml:5:18: functions.a.scale.min: 20 is above scale.max (5); lower min or raise max`},
		{"scale min above default max", specDoc("  a: {lang: go, scale: {min: 20}}\n"), `functions.yml:3:30: functions.a.scale.min: 20 is above scale.max (10); lower min or raise max`},
		{"scale max 0", specDoc("  a: {lang: go, scale: {min: 0, max: 0}}\n"), `functions.yml:3:38: functions.a.scale.max: 0: must be at least 1: every function has a cap; write the most replicas it may run, at least min and 1, e.g. 10`},
		{"scale min negative", specDoc("  a: {lang: go, scale: {min: -1}}\n"), `functions.yml:3:30: functions.a.scale.min: -1 is negative; write 0 (to allow scaling to zero) or more`},
		{"scale target 0", specDoc("  a: {lang: go, scale: {target: 0}}\n"), `functions.yml:3:33: functions.a.scale.target: 0: must be above 0: the value of the metric one replica should carry, e.g. 10`},
		{"scale metric", specDoc("  a: {lang: go, scale: {metric: cpu}}\n"), `functions.yml:3:33: functions.a.scale.metric: "cpu" is not a scaling metric; write inflight (requests in progress per replica), rps (requests per second per replica) or queue (queued async requests per replica)`},
		{"scale idle negative", specDoc("  a: {lang: go, scale: {idle: -5m}}\n"), `functions.yml:3:31: functions.a.scale.idle: -5m0s is negative; write how long a function may be idle before it scales to zero, e.g. 5m, or remove it to never scale to zero`},
		{"scale max float", specDoc("  a: {lang: go, scale: {max: 2.5}}\n"), `functions.yml:3:30: functions.a.scale.max: "2.5" is not a whole number; write it like 10`},
		{"rate limit without requests", specDoc("  a: {lang: go, rate_limit: {per: 1s}}\n"), `functions.yml:3:29: functions.a.rate_limit: requests is missing: write the most requests answered per period, e.g. {requests: 100, per: 1s}`},
		{"rate limit zero", specDoc("  a: {lang: go, rate_limit: {requests: 0}}\n"), `functions.yml:3:40: functions.a.rate_limit.requests: 0: want 1 to 1000000 requests per period`},
		{"rate limit per below a second", specDoc("  a: {lang: go, rate_limit: {requests: 5, per: 500ms}}\n"), `functions.yml:3:48: functions.a.rate_limit.per: 500ms: want whole seconds from 1s to 1h0m0s, e.g. 1s or 1m`},
		{"rate limit by", specDoc("  a: {lang: go, rate_limit: {requests: 5, by: ip}}\n"), `functions.yml:3:47: functions.a.rate_limit.by: "ip": want function (one budget for the function), client (one per client address) or key (one per invoke key)`},
		{"rate limit unknown key", specDoc("  a: {lang: go, rate_limit: {requests: 5, burst: 9}}\n"), `functions.yml:3:43: functions.a.rate_limit.burst: unknown key; known here: requests, per, by`},
		{"rate limit list", specDoc("  a: {lang: go, rate_limit: [5]}\n"), `functions.yml:3:29: functions.a.rate_limit: must be a mapping like {requests: 100, per: 1s, by: function}`},
		{"async retries negative", specDoc("  a: {lang: go, async: {retries: -1}}\n"), `functions.yml:3:34: functions.a.async.retries: -1: want 0 (no retry) to 100 dispatches after the first; the default is 3`},
		{"async retries too many", specDoc("  a: {lang: go, async: {retries: 101}}\n"), `functions.yml:3:34: functions.a.async.retries: 101: want 0 (no retry) to 100 dispatches after the first; the default is 3`},
		{"async retries text", specDoc("  a: {lang: go, async: {retries: many}}\n"), `functions.yml:3:34: functions.a.async.retries: "many" is not a whole number; write it like 3`},
		{"async max_age zero", specDoc("  a: {lang: go, async: {max_age: 0s}}\n"), `functions.yml:3:34: functions.a.async.max_age: 0s: want whole seconds from 1s to 168h (a week), e.g. 30m or 24h; the default is 1h`},
		{"async max_age below a second", specDoc("  a: {lang: go, async: {max_age: 500ms}}\n"), `functions.yml:3:34: functions.a.async.max_age: 500ms: want whole seconds from 1s to 168h (a week), e.g. 30m or 24h; the default is 1h`},
		{"async max_age not whole seconds", specDoc("  a: {lang: go, async: {max_age: 1.5s}}\n"), `functions.yml:3:34: functions.a.async.max_age: 1.5s: want whole seconds from 1s to 168h (a week), e.g. 30m or 24h; the default is 1h`},
		{"async max_age over a week", specDoc("  a: {lang: go, async: {max_age: 169h}}\n"), `functions.yml:3:34: functions.a.async.max_age: 169h0m0s: want whole seconds from 1s to 168h (a week), e.g. 30m or 24h; the default is 1h`},
		{"async max_age in days", specDoc("  a: {lang: go, async: {max_age: 2d}}\n"), `functions.yml:3:34: functions.a.async.max_age: "2d" is not a duration; write it like 30s or 2m`},
		{"async concurrency zero", specDoc("  a: {lang: go, async: {concurrency: 0}}\n"), `functions.yml:3:38: functions.a.async.concurrency: 0: want 1 to 1000 dispatches in flight per replica; the default is 4`},
		{"async concurrency too high", specDoc("  a: {lang: go, async: {concurrency: 1001}}\n"), `functions.yml:3:38: functions.a.async.concurrency: 1001: want 1 to 1000 dispatches in flight per replica; the default is 4`},
		{"async concurrency float", specDoc("  a: {lang: go, async: {concurrency: 2.5}}\n"), `functions.yml:3:38: functions.a.async.concurrency: "2.5" is not a whole number; write it like 4`},
		{"async retry_500 not a bool", specDoc("  a: {lang: go, async: {retry_500: yes}}\n"), `functions.yml:3:36: functions.a.async.retry_500: "yes" is not true or false; write one of those`},
		{"async retry_500 null", specDoc("  a:\n    lang: go\n    async:\n      retry_500:\n"), `functions.yml:6:17: functions.a.async.retry_500: has no value; write true or false, or remove the key`},
		{"async unknown key", specDoc("  a: {lang: go, async: {retries: 3, backoff: 1s}}\n"), `functions.yml:3:37: functions.a.async.backoff: unknown key; known here: retries, max_age, concurrency, retry_500`},
		{"async near miss", specDoc("  a: {lang: go, async: {max-age: 1h}}\n"), `functions.yml:3:25: functions.a.async.max-age: unknown key; did you mean max_age? (known here: retries, max_age, concurrency, retry_500)`},
		{"async list", specDoc("  a: {lang: go, async: [3]}\n"), `functions.yml:3:24: functions.a.async: must be a mapping like {retries: 3, max_age: 1h, concurrency: 4, retry_500: false}`},
		{"async as a switch", specDoc("  a: {lang: go, async: true}\n"), `functions.yml:3:24: functions.a.async: every function takes async requests (at /async-function/a); async only sets how pulsed dispatches them: write a mapping like {retries: 3, max_age: 1h, concurrency: 4, retry_500: false}, or remove it for those defaults`},
		{"async every value wrong", specDoc("  a:\n    lang: go\n    async: {retries: -1, max_age: 0s, concurrency: 0}\n"),
			"functions.yml:5:22: functions.a.async.retries: -1: want 0 (no retry) to 100 dispatches after the first; the default is 3\n" +
				"functions.yml:5:35: functions.a.async.max_age: 0s: want whole seconds from 1s to 168h (a week), e.g. 30m or 24h; the default is 1h\n" +
				"functions.yml:5:52: functions.a.async.concurrency: 0: want 1 to 1000 dispatches in flight per replica; the default is 4"},
		{"env reserved", specDoc("  a: {lang: go, env: {PULSE_TIMEOUT: 5s}}\n"), `functions.yml:3:23: functions.a.env.PULSE_TIMEOUT: names starting with PULSE_ are reserved for the watchdog's settings, which pulse deploy sets from this file; rename it`},
		{"env bad name", specDoc("  a: {lang: go, env: {1X: y}}\n"), `functions.yml:3:23: functions.a.env.1X: "1X" is not an environment variable name; use letters, digits and '_', not starting with a digit`},
		{"env CGI name in fork mode", specDoc("  a: {lang: c, env: {HTTP_PROXY: x, QUERY_STRING: y}}\n"),
			"functions.yml:3:22: functions.a.env.HTTP_PROXY: in fork mode the watchdog sets HTTP_* and the CGI variables for each request and drops its own; rename it\n" +
				"functions.yml:3:37: functions.a.env.QUERY_STRING: in fork mode the watchdog sets HTTP_* and the CGI variables for each request and drops its own; rename it"},
		{"env null", specDoc("  a: {lang: go, env: {X: }}\n"), `functions.yml:3:26: functions.a.env.X: has no value; write X: "" for an empty one`},
		{"env list", specDoc("  a: {lang: go, env: [X=1]}\n"), `functions.yml:3:22: functions.a.env: must be a mapping, e.g. {GREETING: hi}`},
		{"label reserved", specDoc("  a: {lang: go, labels: {pulse.team: web}}\n"), `functions.yml:3:26: functions.a.labels."pulse.team": labels under pulse. are reserved: pulse deploy sets them from this file (timeout, max_body, scale); rename it, e.g. "team" or com.example.team`},
		{"label space", specDoc("  a: {lang: go, labels: {\"my team\": web}}\n"), `functions.yml:3:26: functions.a.labels."my team": "my team" holds white space or a control character; use a key like team or com.example.team`},
		{"secret name", specDoc("  a: {lang: go, secrets: [-key]}\n"), `functions.yml:3:27: functions.a.secrets[0]: "-key" is not a Docker secret name; a Docker secret name is 1-64 of letters, digits, '-', '_' and '.', starting and ending with a letter or digit`},
		{"secret twice", specDoc("  a: {lang: go, secrets: [k, k]}\n"), `functions.yml:3:30: functions.a.secrets[1]: "k" is listed twice; keep one`},
		{"secrets string", specDoc("  a: {lang: go, secrets: k}\n"), `functions.yml:3:26: functions.a.secrets: must be a list, e.g. [db-password]`},
		{"auth removed", specDoc("  a: {lang: go, auth: {secret: a-key}}\n"), `functions.yml:3:17: functions.a.auth: no longer supported: invoke keys are managed with "pulse key add NAME" (keys live in pulsed's key store, which the gateway checks); remove auth (its Docker secret is not read)`},
		{"auth removed, empty", specDoc("  a:\n    lang: go\n    auth:\n"), `functions.yml:5:5: functions.a.auth: no longer supported: invoke keys are managed with "pulse key add NAME" (keys live in pulsed's key store, which the gateway checks); remove auth (its Docker secret is not read)`},
		{"secret reserved", specDoc("  a: {lang: go, secrets: [pulse-replica-auth]}\n"), `functions.yml:3:27: functions.a.secrets[0]: "pulse-replica-auth" is reserved: pulse deploy mounts the install's replica credential at /run/secrets/pulse-replica-auth; rename the secret`},
		{"constraint", specDoc("  a: {lang: go, constraints: [worker]}\n"), `functions.yml:3:31: functions.a.constraints[0]: "worker" is not a placement constraint; write KEY==VALUE or KEY!=VALUE, e.g. node.role==worker or node.labels.zone!=edge`},
		{"constraint empty value", specDoc("  a: {lang: go, constraints: [\"node.role==\"]}\n"), `functions.yml:3:31: functions.a.constraints[0]: "node.role==" is not a placement constraint; write KEY==VALUE or KEY!=VALUE, e.g. node.role==worker or node.labels.zone!=edge`},

		// Several problems at once, sorted by position, one per field.
		{"many", specDoc("  B:\n    lang: go\n    timeout: soon\n    scale: {min: 3, max: 2}\n  c:\n    lang: c\n    mode: http\n    port: 9\n"),
			`functions.yml:3:3: functions.B: "B" has upper case letters; ` + nameRule + `, e.g. "b"` + "\n" +
				`functions.yml:5:14: functions.B.timeout: "soon" is not a duration; write it like 30s or 2m` + "\n" +
				`functions.yml:6:18: functions.B.scale.min: 3 is above scale.max (2); lower min or raise max` + "\n" +
				`functions.yml:9:11: functions.c.mode: a c function runs in fork mode (one process per request, stdin to stdout), not in mode http; remove mode or write fork`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			specs, err := ParseSpecs("functions.yml", []byte(tt.yaml), specTestDir)
			if err == nil {
				t.Fatalf("no error; got %+v", specs)
			}
			if specs != nil {
				t.Errorf("specs %+v returned with an error", specs)
			}
			if err.Error() != tt.want {
				t.Errorf("error:\n got %s\nwant %s", err, tt.want)
			}
			var se *SpecError
			if !errors.As(err, &se) || se.File != "functions.yml" {
				t.Errorf("errors.As(*SpecError) = %v, %+v", errors.As(err, &se), se)
			}
		})
	}
}

func TestSpecValidate(t *testing.T) {
	valid := Spec{
		Name: "a", Lang: LangBin, Handler: "./a", Mode: "http", Port: 3000,
		Timeout: time.Second, MaxBody: 1, Scale: DefaultScale(),
	}
	tests := []struct {
		name   string
		change func(*Spec)
		want   string
	}{
		{"valid", func(*Spec) {}, ""},
		{"zero spec", func(s *Spec) { *s = Spec{} },
			`functions."": the name is empty; a function name becomes a DNS name, a URL path segment (/function/<name>) and a Swarm service name, so write it as a DNS label: 1-63 of a-z, 0-9 and '-', starting with a letter and not ending with '-'` + "\n" +
				"functions.\"\".lang: missing; set it to go, c, cpp or bin\n" +
				"functions.\"\".handler: is empty; write the path of the function's source (the executable for bin) relative to the spec file, e.g. ./\n" +
				"functions.\"\".timeout: 0s is too short; write at least 1ms (the default is 30s)\n" +
				"functions.\"\".max_body: must be above 0, e.g. 10MiB (the default)\n" +
				"functions.\"\".scale.metric: \"\" is not a scaling metric; write inflight (requests in progress per replica), rps (requests per second per replica) or queue (queued async requests per replica)\n" +
				"functions.\"\".scale.target: 0: must be above 0: the value of the metric one replica should carry, e.g. 10\n" +
				"functions.\"\".scale.max: 0: must be at least 1: every function has a cap; write the most replicas it may run, at least min and 1, e.g. 10"},
		{"position", func(s *Spec) { s.File, s.Line, s.Port = "f.yml", 7, 0 },
			"f.yml:7: functions.a.port: 0 is not a TCP port; use 1-65535 (the default is 3000)"},
		{"port outside http", func(s *Spec) { s.Mode = "fork" },
			"functions.a.port: applies only to mode http (where the function is a server on 127.0.0.1); this function's mode is fork, so remove it"},
		{"env key", func(s *Spec) { s.Env = map[string]string{"A B": "x"} },
			`functions.a.env."A B": "A B" is not an environment variable name; use letters, digits and '_', not starting with a digit`},
		{"env value NUL", func(s *Spec) { s.Env = map[string]string{"A": "x\x00"} },
			"functions.a.env.A: the value holds a NUL character, which an environment cannot carry"},
		{"args invalid UTF-8", func(s *Spec) { s.Args = []string{"ok", "\xff"} },
			"functions.a.args[1]: holds a NUL character or invalid UTF-8, which a command line cannot carry"},
		{"memory negative", func(s *Spec) { s.Limits.Memory = -1 },
			"functions.a.limits.memory: -1 bytes is below 4MiB, the smallest memory limit Docker accepts; raise it, or remove it for the default (256MiB)"},
		{"cpus NaN", func(s *Spec) { s.Limits.CPUs = math.NaN() },
			"functions.a.limits.cpus: is not a number of cores; write it like 0.5 or 2"},
		{"label value NUL", func(s *Spec) { s.Labels = map[string]string{"team": "\x00"} },
			"functions.a.labels.team: the value holds a NUL character"},
		{"upper-case reserved label", func(s *Spec) { s.Labels = map[string]string{"Pulse.x": "y"} },
			`functions.a.labels."Pulse.x": labels under pulse. are reserved: pulse deploy sets them from this file (timeout, max_body, scale); rename it, e.g. "x" or com.example.team`},
		{"async default", func(s *Spec) { p := contract.DefaultAsyncPolicy; s.Async = &p }, ""},
		{"async out of bounds", func(s *Spec) {
			s.Async = &contract.AsyncPolicy{Retries: -1, MaxAge: 2*time.Hour + 500*time.Millisecond, Concurrency: 1001}
		},
			"functions.a.async.retries: -1: want 0 (no retry) to 100 dispatches after the first; the default is 3\n" +
				"functions.a.async.max_age: 2h0m0.5s: want whole seconds from 1s to 168h (a week), e.g. 30m or 24h; the default is 1h\n" +
				"functions.a.async.concurrency: 1001: want 1 to 1000 dispatches in flight per replica; the default is 4"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := valid
			tt.change(&s)
			err := s.Validate()
			got := ""
			if err != nil {
				got = err.Error()
			}
			if got != tt.want {
				t.Errorf("Validate:\n got %s\nwant %s", got, tt.want)
			}
		})
	}
}

func TestLoadSpecs(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, SpecFile), []byte(specDoc("  a: {lang: c}\n")), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{dir, filepath.Join(dir, SpecFile)} {
		specs, err := LoadSpecs(path)
		if err != nil {
			t.Fatal(err)
		}
		if len(specs) != 1 || specs[0].Dir != dir || specs[0].File != filepath.Join(dir, SpecFile) {
			t.Errorf("LoadSpecs(%s) = %+v", path, specs)
		}
	}

	// A relative path keeps its name in messages and gets an absolute Dir.
	t.Chdir(dir)
	specs, err := LoadSpecs(SpecFile)
	if err != nil {
		t.Fatal(err)
	}
	if specs[0].File != SpecFile || specs[0].Dir != dir {
		t.Errorf("LoadSpecs(%s): File %q, Dir %q; want %q, %q", SpecFile, specs[0].File, specs[0].Dir, SpecFile, dir)
	}

	_, err = LoadSpecs(filepath.Join(dir, "missing.yml"))
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v, want ErrNotExist", err)
	}
}

func TestSpecNameSuggestions(t *testing.T) {
	tests := map[string]string{
		"Hello_World": "hello-world",
		"my.func":     "my-func",
		"--x--":       "x",
		"123":         "",
		"ÄB":          "b",
		"a//b":        "a-b",
	}
	for name, want := range tests {
		if got := suggestName(name); got != want {
			t.Errorf("suggestName(%q) = %q, want %q", name, got, want)
		}
	}
}

// FuzzParseSpecs feeds the loader arbitrary files: it must not panic, every
// problem must be a positioned SpecError, and every spec it accepts must
// pass Validate.
func FuzzParseSpecs(f *testing.F) {
	full, err := os.ReadFile("testdata/specs/full.yml")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(full)
	for _, s := range []string{
		"", "version: 1\n", specDoc("  a: {lang: go}\n"), specDoc("  a: &x {lang: c}\n  b: *x\n"),
		specDoc("  a: {lang: bin, mode: http, port: 0, args: [x], scale: {min: 0, idle: 1h}}\n"),
		specDoc("  A.b: {lang: q, env: {PULSE_X: 1}, labels: {pulse.x: y}, limits: {memory: 1}}\n"),
		"a: &a [*a]\n", "version: 1\nfunctions: {a: {<<: {lang: go}}}\n", "version: 1\n---\n",
		specDoc("  a: {lang: go, auth: {secret: k}, limits: {pids: 99999999999999999999, memory: 0}}\n"),
		specDoc("  a: {lang: c, limits: {pids: -1, cpus: 1}, secrets: [pulse-replica-auth]}\n"),
		specDoc("  a: {lang: go, async: {retries: 7, max_age: 90m, concurrency: 2, retry_500: true}, scale: {metric: queue}}\n"),
		specDoc("  a: {lang: go, async: {max_age: 1500ms, concurrency: -1, retry_500: 1}}\n"),
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		specs, err := ParseSpecs("f.yml", data, specTestDir)
		if err != nil {
			if specs != nil {
				t.Fatalf("specs with an error: %+v", specs)
			}
			joined, ok := err.(interface{ Unwrap() []error })
			if !ok {
				t.Fatalf("error is not joined: %T %v", err, err)
			}
			for _, e := range joined.Unwrap() {
				se, ok := e.(*SpecError)
				if !ok || se.File != "f.yml" || se.Line < 0 || se.Msg == "" {
					t.Fatalf("not a positioned SpecError: %#v", e)
				}
			}
			return
		}
		if len(specs) == 0 {
			t.Fatal("no specs and no error")
		}
		for _, s := range specs {
			if err := s.Validate(); err != nil {
				t.Fatalf("accepted spec does not validate: %v\n%+v", err, s)
			}
			// pulsed reads the label with contract.ParseAsyncPolicy: what
			// the file accepts, the label must carry.
			if a := s.Async; a != nil {
				if p, err := contract.ParseAsyncPolicy(a.String()); err != nil || p != *a {
					t.Fatalf("accepted async %+v: label %q reads back as %+v, %v", *a, a.String(), p, err)
				}
			}
			if s.Dir != specTestDir || s.File != "f.yml" || s.Line < 1 {
				t.Fatalf("bad position: %+v", s)
			}
		}
	})
}

// TestAsyncRoundTrip: functions.yml's async becomes the pulse.async label,
// which the catalog (what pulsed reads) reads back as the same policy; a
// function without async has no label, so pulsed applies the default.
func TestAsyncRoundTrip(t *testing.T) {
	for _, tc := range []struct{ doc, label string }{
		{"  a: {lang: go, async: {}}\n", "retries=3,max_age=1h,concurrency=4,retry_500=false"},
		{"  a: {lang: go, async: {retries: 0}}\n", "retries=0,max_age=1h,concurrency=4,retry_500=false"},
		{"  a: {lang: go, async: {retries: 10, max_age: 30m, concurrency: 16, retry_500: true}}\n", "retries=10,max_age=30m,concurrency=16,retry_500=true"},
		{"  a: {lang: go, async: {retries: 100, max_age: 168h, concurrency: 1000}}\n", "retries=100,max_age=168h,concurrency=1000,retry_500=false"},
		{"  a: {lang: go, async: {max_age: 1s, concurrency: 1}}\n", "retries=3,max_age=1s,concurrency=1,retry_500=false"},
		{"  a: {lang: go, async: {max_age: 90s}}\n", "retries=3,max_age=90s,concurrency=4,retry_500=false"},
		{"  a: {lang: go, async: {max_age: 90m}}\n", "retries=3,max_age=90m,concurrency=4,retry_500=false"},
	} {
		specs, err := ParseSpecs("functions.yml", []byte(specDoc(tc.doc)), specTestDir)
		if err != nil {
			t.Fatal(err)
		}
		labels := specs[0].ServiceLabels()
		if got := labels[contract.LabelAsync]; got != tc.label {
			t.Errorf("%s: label %s=%q, want %q", tc.doc, contract.LabelAsync, got, tc.label)
		}
		set, err := catalog.CheckFunction("a", labels)
		if err != nil {
			t.Fatalf("%s: label %q: %v", tc.doc, labels[contract.LabelAsync], err)
		}
		if set.Async == nil || *set.Async != *specs[0].Async {
			t.Errorf("%s: label %q read back as %+v, want %+v", tc.doc, labels[contract.LabelAsync], set.Async, *specs[0].Async)
		}
	}
	specs, err := ParseSpecs("functions.yml", []byte(specDoc("  a: {lang: go}\n")), specTestDir)
	if err != nil {
		t.Fatal(err)
	}
	if v, ok := specs[0].ServiceLabels()[contract.LabelAsync]; ok {
		t.Errorf("no async, label %q; want none", v)
	}
	if set, err := catalog.CheckFunction("a", specs[0].ServiceLabels()); err != nil || set.Async != nil {
		t.Errorf("no async: CheckFunction = %+v, %v; want no policy (pulsed's default)", set.Async, err)
	}
}

// TestRateLimitRoundTrip: functions.yml's rate_limit becomes the service
// label, which the catalog (pulsed's gateway) reads back as the same limit.
func TestRateLimitRoundTrip(t *testing.T) {
	for _, doc := range []string{
		"  a: {lang: go, rate_limit: {requests: 5}}\n",
		"  a: {lang: go, rate_limit: {requests: 50, per: 1m, by: client}}\n",
		"  a: {lang: go, rate_limit: {requests: 1000000, per: 1h, by: key}}\n",
		"  a: {lang: go, rate_limit: {requests: 7, per: 90s, by: key}}\n",
	} {
		specs, err := ParseSpecs("functions.yml", []byte(specDoc(doc)), specTestDir)
		if err != nil {
			t.Fatal(err)
		}
		labels := specs[0].ServiceLabels()
		set, err := catalog.CheckFunction("a", labels)
		if err != nil {
			t.Fatalf("%s: label %q: %v", doc, labels[contract.LabelRateLimit], err)
		}
		if set.RateLimit == nil || *set.RateLimit != *specs[0].RateLimit {
			t.Errorf("%s: label %q read back as %+v, want %+v", doc, labels[contract.LabelRateLimit], set.RateLimit, *specs[0].RateLimit)
		}
	}
	specs, err := ParseSpecs("functions.yml", []byte(specDoc("  a: {lang: go}\n")), specTestDir)
	if err != nil {
		t.Fatal(err)
	}
	if v, ok := specs[0].ServiceLabels()[contract.LabelRateLimit]; ok {
		t.Errorf("no rate_limit, label %q; want none", v)
	}
}

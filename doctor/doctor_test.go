package doctor

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

// golden compares got with testdata/name, or rewrites it with -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := "testdata/" + name
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs (go test -update rewrites it):\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}

// fakeControlNode is a host like this one: a single-node swarm on engine
// 20.10 set up by the playbook, no IPVS, HAProxy running, no
// Netdata, low inotify and open-file limits, and two replicas.
func fakeControlNode() Probes {
	cmds := allTools()
	delete(cmds, "netdata -v")
	d := engine()
	d.containers = []container.Summary{replica("hello", true), replica("echo", true)}
	return Probes{
		Root:   os.DirFS("testdata/hosts/nomesh"),
		Exec:   fakeExec(cmds),
		Docker: d,
		NoFile: func() (uint64, uint64, error) { return 20000, 20000, nil },
	}
}

// TestRun runs every check against a fake control node and compares the
// report, as text and as JSON, with golden files.
func TestRun(t *testing.T) {
	results := Run(context.Background(), fakeControlNode())

	var text bytes.Buffer
	if err := Format(&text, results); err != nil {
		t.Fatal(err)
	}
	golden(t, "report.txt", text.Bytes())

	var js bytes.Buffer
	enc := json.NewEncoder(&js)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(results); err != nil {
		t.Fatal(err)
	}
	golden(t, "report.json", js.Bytes())

	if ok, warn, fail := Summary(results); ok != 11 || warn != 6 || fail != 0 {
		t.Errorf("Summary = %d ok, %d warn, %d fail; want 11, 6, 0", ok, warn, fail)
	}
}

func TestFormat(t *testing.T) {
	results := []Result{
		{Check: "docker", Status: OK, Detail: "API 1.41 (engine 20.10.24)"},
		{Check: "swarm", Status: FAIL, Detail: "inactive", Hint: "docker swarm init --advertise-addr <addr>"},
		{Check: "ipvs", Status: WARN, Detail: "absent", Hint: "fine for Pulse\nsecond line"},
		{Check: "go", Status: OK, Detail: "1.26.8", Hint: "an OK line shows no hint"},
	}
	var b bytes.Buffer
	if err := Format(&b, results); err != nil {
		t.Fatal(err)
	}
	want := strings.Join([]string{
		"OK   docker  API 1.41 (engine 20.10.24)",
		"FAIL swarm   inactive",
		"             hint: docker swarm init --advertise-addr <addr>",
		"WARN ipvs    absent",
		"             hint: fine for Pulse",
		"                   second line",
		"OK   go      1.26.8",
		"",
	}, "\n")
	if got := b.String(); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

func TestSummary(t *testing.T) {
	for _, tc := range []struct {
		name                string
		results             []Result
		wantOK, wantW, want int
	}{
		{"empty", nil, 0, 0, 0},
		{"mixed", []Result{{Status: OK}, {Status: WARN}, {Status: OK}, {Status: FAIL}, {Status: WARN}}, 2, 2, 1},
		{"unknown counts as fail", []Result{{Status: "?"}}, 0, 0, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ok, warn, fail := Summary(tc.results)
			if ok != tc.wantOK || warn != tc.wantW || fail != tc.want {
				t.Errorf("got %d, %d, %d; want %d, %d, %d", ok, warn, fail, tc.wantOK, tc.wantW, tc.want)
			}
		})
	}
}

// byCheck indexes results by check name.
func byCheck(results []Result) map[string]Result {
	m := map[string]Result{}
	for _, r := range results {
		m[r.Check] = r
	}
	return m
}

// TestRunNeverHangs gives Run probes that never answer: a Docker API that
// ignores its context and commands that wait for theirs. Every check must
// still report, within its own timeout.
func TestRunNeverHangs(t *testing.T) {
	stuck := make(chan struct{})
	t.Cleanup(func() { close(stuck) })
	hang := map[string]fakeCmd{}
	for line := range allTools() {
		hang[line] = fakeCmd{out: "hang"}
	}
	p := fakeControlNode()
	p.Docker = &fakeDocker{stuck: stuck}
	p.Exec = fakeExec(hang)
	p.CallTimeout = 20 * time.Millisecond
	p.CheckTimeout = 200 * time.Millisecond

	start := time.Now()
	results := Run(context.Background(), p)
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Run took %s", d)
	}
	const slow = "run pulse doctor again; a probe that stays this slow points at a hung engine or an overloaded host"
	got := byCheck(results)
	for _, want := range []Result{
		{Check: "docker", Status: FAIL, Detail: "no answer within 200ms", Hint: slow},
		{Check: "swarm", Status: FAIL, Detail: "no answer within 200ms", Hint: slow},
		{Check: "replicas", Status: WARN, Detail: "no answer within 200ms", Hint: slow},
		{Check: "haproxy", Status: WARN, Detail: "haproxy -v: context deadline exceeded",
			Hint: "apt-get install haproxy (2.6 or later; Debian 12 has 2.6)"},
		{Check: "gcc", Status: WARN, Detail: "gcc --version: context deadline exceeded", Hint: "apt-get install gcc libc6-dev"},
		// Files answer at once.
		{Check: "vxlan", Status: OK, Detail: "available (/sys/module/vxlan)"},
	} {
		if got[want.Check] != want {
			t.Errorf("\n got %#v\nwant %#v", got[want.Check], want)
		}
	}
}

func TestRunPanickingProbe(t *testing.T) {
	p := fakeControlNode()
	p.Docker = &fakeDocker{panics: true}
	got := byCheck(Run(context.Background(), p))
	for _, want := range []Result{
		{Check: "docker", Status: FAIL, Detail: "probe panicked: fake docker panics",
			Hint: "a bug in pulse doctor; please report it with this line"},
		{Check: "replicas", Status: WARN, Detail: "probe panicked: fake docker panics",
			Hint: "a bug in pulse doctor; please report it with this line"},
		{Check: "go", Status: OK, Detail: "1.26.8"},
	} {
		if got[want.Check] != want {
			t.Errorf("\n got %#v\nwant %#v", got[want.Check], want)
		}
	}
}

func TestRunCanceled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	results := Run(ctx, fakeControlNode())
	if len(results) != len(checks) {
		t.Fatalf("got %d results, want %d", len(results), len(checks))
	}
	for i, r := range results {
		want := Result{Check: checks[i].name, Status: checks[i].onError, Detail: "not checked: context canceled"}
		if r != want {
			t.Errorf("\n got %#v\nwant %#v", r, want)
		}
	}
}

// TestRunNoProbes: a zero Probes reports every check as not OK, with a
// detail, and does not panic.
func TestRunNoProbes(t *testing.T) {
	for _, r := range Run(context.Background(), Probes{}) {
		if r.Status == OK || r.Detail == "" || strings.Contains(r.Detail, "panicked") {
			t.Errorf("%#v", r)
		}
	}
}

func TestVersionLess(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want bool
	}{
		{"1.40", "1.41", true},
		{"1.41", "1.41", false},
		{"1.51", "1.41", false},
		{"1.9", "1.41", true},
		{"2.6.12-1+deb12u4", "2.6", false},
		{"2.4.22", "2.6", true},
		{"1.19.8", "1.21", true},
		{"1.21rc2", "1.21", false},
		{"", "1.41", true},
	} {
		if got := versionLess(tc.a, tc.b); got != tc.want {
			t.Errorf("versionLess(%q, %q) = %v, want %v", tc.a, tc.b, got, tc.want)
		}
	}
}

func TestParseKernelConfig(t *testing.T) {
	in := "#\n# Automatically generated file; DO NOT EDIT.\n#\nCONFIG_IP_VS=m\n# CONFIG_VXLAN is not set\nCONFIG_LOCALVERSION=\"-amd64\"\n# Some comment\n\nCONFIG_HZ=250\n"
	got, err := parseKernelConfig(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"CONFIG_IP_VS": "m", "CONFIG_VXLAN": "n", "CONFIG_LOCALVERSION": `"-amd64"`, "CONFIG_HZ": "250"}
	if len(got) != len(want) {
		t.Errorf("got %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
}

package main

import (
	"flag"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/pulsefaas/pulse/alarms"
	"github.com/pulsefaas/pulse/collector"
	"github.com/pulsefaas/pulse/contract"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

func golden(t *testing.T, name, got string) {
	t.Helper()
	p := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(p, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if got != string(want) {
		t.Fatalf("%s differs from the golden file (go test -update to accept):\n%s", name, got)
	}
}

func TestSetConfBlock(t *testing.T) {
	block := confBlock("/etc/netdata")
	tests := []struct{ name, conf, want string }{
		{"empty file", "", block},
		{"appended after a blank line", "[global]\n\tx = 1\n", "[global]\n\tx = 1\n\n" + block},
		{"no final newline", "[global]\n\tx = 1", "[global]\n\tx = 1\n\n" + block},
		{"replaced in place", "a\n\n" + confBegin + "\nold\n" + confEnd + "\nafter\n", "a\n\n" + block + "after\n"},
		{"lost end marker", "a\n" + confBegin + "\nold\n", "a\n" + block},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := setConfBlock(tc.conf, block)
			if got != tc.want {
				t.Fatalf("setConfBlock =\n%q\nwant\n%q", got, tc.want)
			}
			if again := setConfBlock(got, block); again != got {
				t.Fatalf("not idempotent:\n%q\nthen\n%q", got, again)
			}
		})
	}
}

// Debian's stock netdata.conf keeps every line; the block comes last.
func TestConfGolden(t *testing.T) {
	stock, err := os.ReadFile("testdata/netdata.conf.debian")
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "netdata.conf.golden", setConfBlock(string(stock), confBlock("/etc/netdata")))
}

func TestDashboardInfoGolden(t *testing.T) {
	info := dashboardInfo()
	if !strings.Contains(info, `customDashboard.menu["pulse"] = {`) || !strings.Contains(info, `title: "Pulse functions"`) {
		t.Errorf("dashboard info does not title the pulse menu:\n%s", info)
	}
	for i := 0; i < len(info); i++ {
		if info[i] > '~' {
			t.Fatalf("dashboard info has byte %q at %d: keep it ASCII (HTML entities for the rest)", info[i], i)
		}
	}
	golden(t, DashboardInfoFile, info)
}

func TestNetdataFiles(t *testing.T) {
	conf := fstest.MapFS{
		"pulse.d.conf":       {Data: []byte("modules:\n  pulse: yes\n")},
		"pulse.d/pulse.conf": {Data: []byte("jobs:\n  - name: pulse\n")},
		"pulse.d":            {Mode: fs.ModeDir},
	}
	files, err := netdataFiles(conf, "template: x\n")
	if err != nil {
		t.Fatal(err)
	}
	type file struct {
		root       Root
		path, data string
		mode       fs.FileMode
	}
	var got []file
	for _, f := range files {
		got = append(got, file{f.Root, f.Path, string(f.Data), f.Mode})
	}
	want := []file{ // the collector's files in lexical order, then ours
		{Etc, "pulse.d/pulse.conf", "jobs:\n  - name: pulse\n", 0},
		{Etc, "pulse.d.conf", "modules:\n  pulse: yes\n", 0},
		{Etc, "health.d/pulse.conf", "template: x\n", 0},
		{Etc, CgroupNameScript, string(cgroupNameScript), 0o755},
		{Web, "pulse-dashboard-info.js", dashboardInfo(), 0},
	}
	if !slices.Equal(got, want) {
		t.Fatalf("netdataFiles = %+v\nwant %+v", got, want)
	}
	if _, err := netdataFiles(fstest.MapFS{}, "x"); err == nil {
		t.Fatal("no error for an empty collector configuration")
	}
}

// The real embedded files: the collector's two configuration files are
// among them, under the names Netdata's go.d framework reads for a plugin
// called pulse.d.
func TestNetdataFilesEmbedded(t *testing.T) {
	files, err := netdataFiles(collector.ConfigFiles, alarms.Templates())
	if err != nil {
		t.Fatal(err)
	}
	var paths []string
	for _, f := range files {
		paths = append(paths, f.Path)
	}
	for _, p := range []string{contract.PluginName + ".conf", contract.PluginName + "/" + contract.CollectorModule + ".conf", alarms.HealthFile, DashboardInfoFile} {
		if !slices.Contains(paths, p) {
			t.Errorf("%s not among %v", p, paths)
		}
	}
}

func TestInstall(t *testing.T) {
	etc, web := t.TempDir(), t.TempDir()
	stock, err := os.ReadFile("testdata/netdata.conf.debian")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(etc, "netdata.conf"), stock, 0o640); err != nil {
		t.Fatal(err)
	}
	files := []File{{Etc, "pulse.d/pulse.conf", []byte("a"), 0}, {Etc, "health.d/pulse.conf", []byte("b"), 0},
		{Etc, CgroupNameScript, []byte("#!/bin/sh\n"), 0o755}, {Web, DashboardInfoFile, []byte("c"), 0}}
	// The first run writes five files, the second finds them in place and
	// says nothing (the playbook's changed=0).
	for run, wantLines := range []int{5, 0} {
		var log strings.Builder
		if err := install(etc, web, files, &writer{log: &log}); err != nil {
			t.Fatal(err)
		}
		if n := strings.Count(log.String(), "wrote "); n != wantLines || strings.Count(log.String(), "\n") != wantLines {
			t.Errorf("run %d said %q, want %d \"wrote\" lines", run+1, log.String(), wantLines)
		}
	}
	// -check: a file changed by hand is reported, not written.
	changed := filepath.Join(etc, "pulse.d/pulse.conf")
	if err := os.WriteFile(changed, []byte("edited"), 0o644); err != nil {
		t.Fatal(err)
	}
	var log strings.Builder
	if err := install(etc, web, files, &writer{check: true, log: &log}); err != nil || log.String() != "would write "+changed+"\n" {
		t.Errorf("check run said %q, %v; want only %q", log.String(), err, "would write "+changed)
	}
	if b, _ := os.ReadFile(changed); string(b) != "edited" {
		t.Errorf("check run wrote %s", changed)
	}
	if err := install(etc, web, files, &writer{log: io.Discard}); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		filepath.Join(etc, "pulse.d/pulse.conf"):  "a",
		filepath.Join(etc, "health.d/pulse.conf"): "b",
		filepath.Join(web, DashboardInfoFile):     "c",
		filepath.Join(etc, CgroupNameScript):      "#!/bin/sh\n",
		filepath.Join(etc, "netdata.conf"):        setConfBlock(string(stock), confBlock(etc)),
	}
	for p, content := range want {
		b, err := os.ReadFile(p)
		if err != nil || string(b) != content {
			t.Errorf("%s = %q, %v; want %q", p, b, err, content)
		}
	}
	if st, err := os.Stat(filepath.Join(etc, "netdata.conf")); err != nil || st.Mode().Perm() != 0o640 {
		t.Errorf("netdata.conf mode changed: %v %v", st.Mode(), err)
	}
	if st, err := os.Stat(filepath.Join(etc, CgroupNameScript)); err != nil || st.Mode().Perm() != 0o755 {
		t.Errorf("cgroup name script mode %v %v, want 0755", st.Mode(), err)
	}
	if st, err := os.Stat(filepath.Join(web, DashboardInfoFile)); err != nil || st.Mode().Perm() != 0o644 {
		t.Errorf("dashboard info mode %v %v, want 0644", st.Mode(), err)
	}
	left, _ := filepath.Glob(filepath.Join(etc, "*", ".*"))
	if len(left) > 0 {
		t.Errorf("temporary files left: %v", left)
	}
}

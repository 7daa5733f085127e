package provision

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"testing/fstest"
	"time"
)

func TestParsePatterns(t *testing.T) {
	valid := []struct {
		raw  string
		want pattern
	}{
		{"proc/[0-9]*/comm", pattern{raw: "proc/[0-9]*/comm", segs: []string{"proc", "[0-9]*", "comm"}}},
		{"proc/{pid:docker-proxy}/stat", pattern{raw: "proc/{pid:docker-proxy}/stat", segs: []string{"proc", "{pid:docker-proxy}", "stat"}, pid: "docker-proxy"}},
		{"boot/config-{release}", pattern{raw: "boot/config-{release}", segs: []string{"boot", "config-{release}"}, release: true}},
		{"{flag:dockerd:config-file}", pattern{raw: "{flag:dockerd:config-file}", proc: "dockerd", flag: "config-file"}},
		{"etc/docker/daemon.json", pattern{raw: "etc/docker/daemon.json", segs: []string{"etc", "docker", "daemon.json"}}},
	}
	for _, tc := range valid {
		got, err := parsePattern(tc.raw)
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("parsePattern(%q) = %#v, %v; want %#v", tc.raw, got, err, tc.want)
		}
	}
	invalid := []struct{ raw, err string }{
		{"", "want a path relative to /"},
		{"/etc/passwd", "want a path relative to /"},
		{"etc/", "want a path relative to /"},
		{"etc//passwd", `segment ""`},
		{"etc/../root", "no . or .. segments"},
		{"proc/./1", "no . or .. segments"},
		{"etc/*", `segment "*"`},
		{"proc/[0-9]/comm", `segment "[0-9]"`},
		{"proc/[1-9]*/comm", `segment "[1-9]*"`},
		{"etc/a b", `segment "a b"`},
		{"etc/$(reboot)", `segment "$(reboot)"`},
		{"etc/`id`", "segment \"`id`\""},
		{"etc/a'b", `segment "a'b"`},
		{`etc/a"b`, `segment "a\"b"`},
		{"etc/a;b", `segment "a;b"`},
		{"etc/x\ny", `segment "x\ny"`},
		{"etc/{home}", `segment "{home}"`},
		{"proc/{pid:a b}/stat", `segment "{pid:a b}"`},
		{"proc/{pid:averyveryverylongname}/stat", `segment "{pid:averyveryverylongname}"`},
		{"proc/{pid:a}/task/{pid:b}", "more than one {pid:NAME} segment"},
		{"{flag:dockerd:--config-file}", `segment "{flag:dockerd:--config-file}"`},
		{"x/{flag:dockerd:config-file}", `segment "{flag:dockerd:config-file}"`},
		{strings.Repeat("a/", 128) + "a", "longer than 256 bytes"},
	}
	for _, tc := range invalid {
		if _, err := parsePattern(tc.raw); err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("parsePattern(%q) err = %v, want one containing %q", tc.raw, err, tc.err)
		}
	}
	if _, err := parsePatterns(nil); err == nil {
		t.Error("no patterns accepted")
	}
	if _, err := parsePatterns(make([]string, maxPatterns+1)); err == nil {
		t.Error("too many patterns accepted")
	}
	if _, err := parsePatterns([]string{"etc/hostname", "etc/a b"}); err == nil || !strings.Contains(err.Error(), `pattern "etc/a b"`) {
		t.Errorf("a bad pattern among good ones: err = %v, want it named", err)
	}
}

func TestPatternCovers(t *testing.T) {
	tests := []struct {
		pattern, name string
		want          bool
	}{
		{"proc/[0-9]*/comm", "proc", true},
		{"proc/[0-9]*/comm", "proc/42", true},
		{"proc/[0-9]*/comm", "proc/42/comm", true},
		{"proc/[0-9]*/comm", "proc/self/comm", false},
		{"proc/[0-9]*/comm", "proc/42/cmdline", false},
		{"proc/[0-9]*/comm", "proc/42/comm/x", false},
		{"proc/{pid:dockerd}/root/proc/sys/net/ipv4/ip_local_port_range", "proc/900/root/proc/sys/net/ipv4/ip_local_port_range", true},
		{"proc/{pid:dockerd}/root/proc/sys/net/ipv4/ip_local_port_range", "proc/900/root/etc/passwd", false},
		{"boot/config-{release}", "boot/config-6.1.0-18-amd64", true},
		{"boot/config-{release}", "boot/vmlinuz-6.1.0-18-amd64", false},
		{"etc/docker/daemon.json", "etc/docker", true},
		{"etc/docker/daemon.json", "etc/docker/daemon.json", true},
		{"etc/docker/daemon.json", "etc/docker/key.json", false},
		{"{flag:dockerd:config-file}", "etc/docker/daemon.json", false},
	}
	for _, tc := range tests {
		p, err := parsePattern(tc.pattern)
		if err != nil {
			t.Fatal(err)
		}
		if got := p.covers(tc.name); got != tc.want {
			t.Errorf("%q covers %q = %v, want %v", tc.pattern, tc.name, got, tc.want)
		}
	}
}

// wantFS checks fsys against files (path → content; "<dir>" a directory)
// and errs (path → the error Open must give).
func wantFS(t *testing.T, fsys fs.FS, files map[string]string, errs map[string]error) {
	t.Helper()
	for name, want := range files {
		if want == "<dir>" {
			if fi, err := fs.Stat(fsys, name); err != nil || !fi.IsDir() {
				t.Errorf("%s: %v, %v; want a directory", name, fi, err)
			}
			continue
		}
		if got, err := fs.ReadFile(fsys, name); err != nil || string(got) != want {
			t.Errorf("%s = %q, %v; want %q", name, got, err, want)
		}
	}
	for name, want := range errs {
		if _, err := fsys.Open(name); !errors.Is(err, want) {
			t.Errorf("open %s: %v; want %v", name, err, want)
		}
	}
}

func TestParseSnapshot(t *testing.T) {
	ps, err := parsePatterns([]string{"proc/[0-9]*/comm", "proc/{pid:dockerd}/cmdline", "etc/docker/daemon.json",
		"{flag:dockerd:config-file}", "run/docker.pid", "proc/{pid:dockerd}/root/proc/sys/net/ipv4/ip_local_port_range", "sys/module/vxlan"})
	if err != nil {
		t.Fatal(err)
	}
	reply := "pulse-snapshot 1\n" +
		"t /proc/1/comm systemd\n" +
		"t /proc/900/comm dockerd\n" +
		"t /proc/901/comm Web Content \n" +
		"t /proc/902/comm \n" +
		"f /proc/900/cmdline\nL3Vzci9zYmluL2RvY2tlcmQALS1jb25maWctZmls\nZT0vb3B0L2QuanNvbgA=\n.\n" +
		"n /etc/docker/daemon.json\n" +
		"f /opt/d.json\n\n.\n" +
		"p /proc/900/root/proc/sys/net/ipv4/ip_local_port_range\n" +
		"d /sys/module/vxlan\n" +
		"t /proc/1/comm init\n" + // read again: the first counts
		"end\n"
	snap, err := parseSnapshot([]byte(reply))
	if err != nil {
		t.Fatal(err)
	}
	fsys := snap.fs(ps)
	wantFS(t, fsys, map[string]string{
		"proc/1/comm":      "systemd\n",
		"proc/900/comm":    "dockerd\n",
		"proc/901/comm":    "Web Content \n",
		"proc/902/comm":    "\n",
		"proc/900/cmdline": "/usr/sbin/dockerd\x00--config-file=/opt/d.json\x00",
		"opt/d.json":       "",
		"sys/module/vxlan": "<dir>",
		"proc":             "<dir>",
	}, map[string]error{
		"proc/900/root/proc/sys/net/ipv4/ip_local_port_range": fs.ErrPermission,
		"proc/900/root/proc":     fs.ErrPermission,
		"etc/docker/daemon.json": fs.ErrNotExist,
		"proc/2/comm":            fs.ErrNotExist, // a pattern covers it: absent
		"run/docker.pid":         fs.ErrNotExist,
		"proc/900/stat":          ErrNotCaptured,
		"etc/passwd":             ErrNotCaptured,
		"opt/other.json":         ErrNotCaptured,
		"../etc":                 fs.ErrInvalid,
	})
	entries, err := fs.ReadDir(fsys, "proc")
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if want := []string{"1", "900", "901", "902"}; err != nil || !reflect.DeepEqual(names, want) {
		t.Errorf("ReadDir(proc) = %q, %v; want %q", names, err, want)
	}
	if err := fstest.TestFS(fsys, "proc/1/comm", "proc/900/cmdline", "opt/d.json", "sys/module/vxlan"); err != nil {
		t.Error(err)
	}

	// A skipped path: what no record names is unknown, patterns or not.
	snap, err = parseSnapshot([]byte("pulse-snapshot 1\nt /proc/1/comm init\ni\nn /run/docker.pid\nend\n"))
	if err != nil {
		t.Fatal(err)
	}
	wantFS(t, snap.fs(ps), map[string]string{"proc/1/comm": "init\n"},
		map[string]error{"proc/2/comm": ErrNotCaptured, "run/docker.pid": fs.ErrNotExist})
}

func TestParseSnapshotErrors(t *testing.T) {
	tests := []struct{ name, reply, err string }{
		{"empty", "", "does not start with"},
		{"no header", "t /proc/1/comm init\nend\n", "does not start with"},
		{"cut short", "pulse-snapshot 1\nt /proc/1/comm init\n", `does not end with "end"`},
		{"no newline after end", "pulse-snapshot 1\nend", `does not end with "end"`},
		{"something after end", "pulse-snapshot 1\nend\nt /proc/1/comm x\n", `does not end with "end"`},
		{"stderr on stdout", "pulse-snapshot 1\nsh: 3: oops\nend\n", `line 2: "sh: 3: oops" is not a record`},
		{"unknown record", "pulse-snapshot 1\nx /etc/passwd\nend\n", `line 2: unknown record "x"`},
		{"relative path", "pulse-snapshot 1\nn etc/passwd\nend\n", `"etc/passwd" is not a clean absolute path`},
		{"dot dot", "pulse-snapshot 1\nn /etc/../passwd\nend\n", "not a clean absolute path"},
		{"root", "pulse-snapshot 1\nd /\nend\n", "not a clean absolute path"},
		{"trailing slash", "pulse-snapshot 1\nd /etc/\nend\n", "not a clean absolute path"},
		{"backslash", "pulse-snapshot 1\nd /a\\b\nend\n", `character '\\' is not one a snapshot sends`},
		{"t without text", "pulse-snapshot 1\nt /proc/1/comm\nend\n", "a t record has a path and a text"},
		{"base64 without end", "pulse-snapshot 1\nf /etc/hostname\naG9zdAo=\nend\n", "the base64 of etc/hostname has no end"},
		{"bad base64", "pulse-snapshot 1\nf /etc/hostname\naG9zdAo\n.\nend\n", "the base64 of etc/hostname: illegal base64"},
		{"a file on the way", "pulse-snapshot 1\nt /proc/1 x\nt /proc/1/comm init\nend\n", "proc/1 is on the way to proc/1/comm, but not a directory"},
		{"an absent path on the way", "pulse-snapshot 1\nn /etc\nf /etc/hostname\naG9zdAo=\n.\nend\n", "etc is on the way to etc/hostname"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := parseSnapshot([]byte(tc.reply)); err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("err = %v, want one containing %q", err, tc.err)
			}
		})
	}
}

// FuzzParseSnapshot: whatever a node replies, parseSnapshot returns an
// error or a file system that holds exactly the files the reply's first
// records give, passes fstest.TestFS, and never panics.
func FuzzParseSnapshot(f *testing.F) {
	f.Add([]byte("pulse-snapshot 1\nt /proc/1/comm systemd\nf /etc/hostname\naG9zdAo=\n.\nd /sys/module/vxlan\np /proc/1/root/x\nn /etc/docker/daemon.json\nend\n"))
	f.Add([]byte("pulse-snapshot 1\ni\nend\n"))
	f.Add([]byte("pulse-snapshot 1\nf /a\n\n.\nf /a/b\n.\nend\n"))
	f.Add([]byte("pulse-snapshot 1\nt /a x\nt /a y\nd /b\nt /b z\nend\n"))
	ps, err := parsePatterns([]string{"proc/[0-9]*/comm", "etc/hostname", "{flag:dockerd:config-file}"})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, reply []byte) {
		snap, err := parseSnapshot(reply)
		if err != nil {
			return
		}
		fsys := snap.fs(ps)
		var files []string
		for name, file := range snap.files {
			if !fs.ValidPath(name) || name == "." {
				t.Fatalf("path %q", name)
			}
			files = append(files, name)
			if file.Mode.IsDir() {
				continue
			}
			if got, err := fs.ReadFile(fsys, name); err != nil || !bytes.Equal(got, file.Data) {
				t.Fatalf("%s = %q, %v; want %q", name, got, err, file.Data)
			}
		}
		for name := range snap.denied {
			if _, err := fsys.Open(name); !errors.Is(err, fs.ErrPermission) {
				t.Fatalf("open %s: %v, want ErrPermission", name, err)
			}
		}
		if err := fstest.TestFS(fsys, files...); err != nil {
			t.Fatal(err)
		}
	})
}

// TestSnapshot reads a tree of this host through SSH and a real sh: text,
// binary and empty files, a directory, a [0-9]* glob, the kernel release,
// a process's files by its name and a path from its command line; what the
// patterns name and is not there is absent, what they do not name is
// ErrNotCaptured.
func TestSnapshot(t *testing.T) {
	c := dialShServer(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	dir := t.TempDir()
	rel := strings.TrimPrefix(dir, "/")
	release, err := exec.Command("uname", "-r").Output()
	if err != nil {
		t.Fatal(err)
	}
	binary := "\x00\x01\xff\n\nno newline at the end\x00"
	for name, data := range map[string]string{
		"text":      "one line\n",
		"binary":    binary,
		"empty":     "",
		"sub/inner": "in a directory\n",
		"1/data":    "one\n",
		"22/data":   "twenty-two\n",
		"x/data":    "not a number\n",
		"config-" + strings.TrimSpace(string(release)): "CONFIG_VXLAN=m\n",
		"eq.json": `{"by": "--config-file=PATH"}`,
		"sp.json": `{"by": "--config-file PATH"}`,
	} {
		os.MkdirAll(filepath.Dir(filepath.Join(dir, name)), 0o755)
		writeFile(t, filepath.Join(dir, name), data, 0o644)
	}
	// A process named for this test, with both spellings of a flag.
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Fatal(err)
	}
	proc := filepath.Join(dir, "pulsesnaptest")
	b, err := os.ReadFile(sh)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, proc, string(b), 0o755)
	cmd := exec.Command(proc, "-c", "sleep 60; :", "x", "--config-file="+dir+"/eq.json", "--config-file", dir+"/sp.json", "--config-file=relative.json")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // its sleep goes with it
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL); cmd.Wait() })

	fsys, err := c.Snapshot(ctx, []string{
		rel + "/text", rel + "/binary", rel + "/empty", rel + "/sub", rel + "/sub/inner", rel + "/missing",
		rel + "/[0-9]*/data", rel + "/config-{release}",
		"proc/{pid:pulsesnaptest}/cmdline", "proc/{pid:pulsesnaptest}/comm", "{flag:pulsesnaptest:config-file}",
	})
	if err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	cmdline, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "cmdline"))
	if err != nil {
		t.Fatal(err)
	}
	wantFS(t, fsys, map[string]string{
		rel + "/text":      "one line\n",
		rel + "/binary":    binary,
		rel + "/empty":     "",
		rel + "/sub":       "<dir>",
		rel + "/sub/inner": "in a directory\n",
		rel + "/1/data":    "one\n",
		rel + "/22/data":   "twenty-two\n",
		rel + "/config-" + strings.TrimSpace(string(release)): "CONFIG_VXLAN=m\n",
		"proc/" + strconv.Itoa(pid) + "/cmdline":              string(cmdline),
		"proc/" + strconv.Itoa(pid) + "/comm":                 "pulsesnaptest\n",
		rel + "/eq.json":                                      `{"by": "--config-file=PATH"}`,
		rel + "/sp.json":                                      `{"by": "--config-file PATH"}`,
	}, map[string]error{
		rel + "/missing":  fs.ErrNotExist,
		rel + "/333/data": fs.ErrNotExist,
		rel + "/x/data":   ErrNotCaptured,
		rel + "/unlisted": ErrNotCaptured,
		"relative.json":   ErrNotCaptured,
		"proc/1/cmdline":  fs.ErrNotExist, // not named pulsesnaptest: not read, but covered
		"etc/hostname":    ErrNotCaptured,
	})
}

// TestSnapshotUnreadable: as a user who may not read them, a file and
// what lies behind a directory it may not search are fs.ErrPermission, as
// open(2) would say to that user, not absent.
func TestSnapshotUnreadable(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root, to run the node's shell as nobody")
	}
	c := dialShServer(t, &syscall.Credential{Uid: 65534, Gid: 65534})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	dir := t.TempDir()
	for d := dir; d != filepath.Dir(d) && strings.HasPrefix(d, os.TempDir()) && d != os.TempDir(); d = filepath.Dir(d) {
		os.Chmod(d, 0o755) // t.TempDir's directories are 0700
	}
	rel := strings.TrimPrefix(dir, "/")
	writeFile(t, filepath.Join(dir, "secret"), "root only\n", 0o600)
	writeFile(t, filepath.Join(dir, "open"), "anyone\n", 0o644)
	os.Mkdir(filepath.Join(dir, "closed"), 0o700)
	writeFile(t, filepath.Join(dir, "closed", "inner"), "behind a closed directory\n", 0o644)

	fsys, err := c.Snapshot(ctx, []string{rel + "/secret", rel + "/open", rel + "/closed/inner", rel + "/closed/missing"})
	if err != nil {
		t.Fatal(err)
	}
	wantFS(t, fsys, map[string]string{rel + "/open": "anyone\n"}, map[string]error{
		rel + "/secret":         fs.ErrPermission,
		rel + "/closed/inner":   fs.ErrPermission,
		rel + "/closed/missing": fs.ErrPermission, // nobody can tell it is missing
	})
}

// TestSnapshotTooLarge: a reply over MaxSnapshotBytes ends the session
// and says so.
func TestSnapshotTooLarge(t *testing.T) {
	c := dialShServer(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "big"), strings.Repeat("x", MaxSnapshotBytes), 0o644)
	_, err := c.Snapshot(ctx, []string{strings.TrimPrefix(dir, "/") + "/big"})
	if !errors.Is(err, errSnapshotTooLarge) || !strings.Contains(err.Error(), "exceeds 4 MiB") {
		t.Errorf("err = %v, want the reply too large", err)
	}
	if _, err := c.Snapshot(ctx, []string{"etc/a b"}); err == nil || !strings.Contains(err.Error(), `pattern "etc/a b"`) {
		t.Errorf("a bad pattern: err = %v", err)
	}
}

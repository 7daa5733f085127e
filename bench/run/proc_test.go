package main

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
)

func TestParseStat(t *testing.T) {
	tests := []struct {
		name    string
		line    string
		want    procStat
		wantErr bool
	}{
		{
			name: "watchdog",
			line: "100 (pulse-watchdog) S 1 100 100 0 -1 4194560 1200 35000 0 0 250 120 900 400 20 0 9 0 5000 1300000000 1650",
			want: procStat{PID: 100, PPID: 1, Comm: "pulse-watchdog", State: "S", UTime: 250, STime: 120, CUTime: 900, CSTime: 400, StartTime: 5000},
		},
		{
			name: "command name with spaces and parentheses",
			line: "7 (a (b) c) R 3 7 7 0 -1 0 0 0 0 0 1 2 3 4 20 0 1 0 99 0 0\n",
			want: procStat{PID: 7, PPID: 3, Comm: "a (b) c", State: "R", UTime: 1, STime: 2, CUTime: 3, CSTime: 4, StartTime: 99},
		},
		{name: "truncated", line: "7 (cat) R 3 7 7 0 -1 0 0 0 0 0 1 2", wantErr: true},
		{name: "no command", line: "7 cat R 3", wantErr: true},
		{name: "negative time", line: "7 (cat) R 3 7 7 0 -1 0 0 0 0 0 1 2 -3 4 20 0 1 0 99 0 0", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseStat(strings.NewReader(tt.line))
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if got != tt.want {
				t.Errorf("got %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestProcessTree(t *testing.T) {
	tests := []struct {
		name     string
		root     int
		wantPIDs []int
		wantCPU  uint64
		wantErr  error
	}{
		{
			name:     "watchdog with upstream and its child",
			root:     100,
			wantPIDs: []int{100, 101, 102},
			// 250+120+900+400 + 80+40 + 1+2
			wantCPU: 1793,
		},
		{name: "leaf", root: 102, wantPIDs: []int{102}, wantCPU: 3},
		{name: "gone", root: 999, wantErr: errNoProcess},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tree, err := processTree("testdata/proc", tt.root)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			var pids []int
			for _, p := range tree {
				pids = append(pids, p.PID)
			}
			if !reflect.DeepEqual(pids, tt.wantPIDs) {
				t.Errorf("pids = %v, want %v", pids, tt.wantPIDs)
			}
			if got := treeCPU(tree); got != tt.wantCPU {
				t.Errorf("treeCPU = %d, want %d", got, tt.wantCPU)
			}
		})
	}
}

func TestParseStatus(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    memStatus
		wantErr bool
	}{
		{name: "golden", in: readTestdata(t, "proc/100/status"), want: memStatus{RSSKB: 1684}},
		{name: "no VmRSS", in: "VmHWM:\t 10 kB\n", wantErr: true},
		{name: "bad unit", in: "VmHWM:\t 10 kB\nVmRSS:\t 8 MB\n", wantErr: true},
		{name: "no number", in: "VmRSS:\t kB\n", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseStatus(strings.NewReader(tt.in))
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestParseHostCPU(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    hostCPU
		wantErr bool
	}{
		{
			name: "golden",
			in:   readTestdata(t, "proc/stat"),
			// user 20830 nice 0 system 12404 idle 102298 iowait 278 irq 0 softirq 2689 steal 36
			want: hostCPU{Busy: 35923, Steal: 36, Total: 138535},
		},
		{name: "no cpu line", in: "cpu0 1 2 3 4 5 6 7 8\n", wantErr: true},
		{name: "short", in: "cpu 1 2 3\n", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseHostCPU(strings.NewReader(tt.in))
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestReadLoad1(t *testing.T) {
	got, err := readLoad1("testdata/proc")
	if err != nil || got != 0.52 {
		t.Errorf("readLoad1 = %v, %v; want 0.52", got, err)
	}
}

func readTestdata(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestReadCmdline(t *testing.T) {
	tests := []struct {
		in   string
		want []string
	}{
		{in: "", want: nil},
		{in: "\x00", want: nil},
		{in: "haproxy\x00-W\x00-f\x00/a b/haproxy.cfg\x00", want: []string{"haproxy", "-W", "-f", "/a b/haproxy.cfg"}},
		{in: "no-nul", want: []string{"no-nul"}},
	}
	proc := t.TempDir()
	if err := os.Mkdir(filepath.Join(proc, "7"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		if err := os.WriteFile(filepath.Join(proc, "7", "cmdline"), []byte(tt.in), 0o644); err != nil {
			t.Fatal(err)
		}
		if got, err := readCmdline(proc, 7); err != nil || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("readCmdline(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
	if _, err := readCmdline(proc, 8); err == nil {
		t.Error("readCmdline of a process that is gone: no error")
	}
}

func TestProcWatchClassify(t *testing.T) {
	const cfg = "/tmp/pulse-bench-1/state-2/haproxy.cfg"
	w := procWatch{HAProxyConfig: cfg, Ports: []int{33620, 33622}, Replicas: []int{500, 501}, Pulsed: 42}
	master := strings.Fields("haproxy -W -db -S /tmp/pulse-bench-1/state-2/master.sock,mode,600 -f " + cfg + " -p /tmp/pulse-bench-1/state-2/haproxy.pid")
	reexec := append(strings.Fields("haproxy -sf 14259 13731 -x sockpair@5"), master[1:]...)
	tests := []struct {
		name string
		p    procStat
		cmd  []string
		want string
	}{
		{name: "pulsed", p: procStat{PID: 42, Comm: "pulsed"}, want: groupPulsed},
		{name: "a replica", p: procStat{PID: 501, Comm: "function"}, want: groupReplicas},
		{name: "haproxy master", p: procStat{PID: 7, Comm: "haproxy"}, cmd: master, want: groupHAProxy},
		{name: "haproxy after a reload", p: procStat{PID: 8, Comm: "haproxy"}, cmd: reexec, want: groupHAProxy},
		{name: "another pulsed's haproxy", p: procStat{PID: 9, Comm: "haproxy"},
			cmd: strings.Fields("haproxy -W -db -S /var/lib/pulse/master.sock,mode,600 -f /var/lib/pulse/haproxy.cfg"), want: ""},
		{name: "haproxy whose -f is last", p: procStat{PID: 9, Comm: "haproxy"}, cmd: []string{"haproxy", "-f"}, want: ""},
		{name: "docker-proxy of a replica", p: procStat{PID: 10, Comm: "docker-proxy"},
			cmd: strings.Fields("/usr/sbin/docker-proxy -proto tcp -host-ip 0.0.0.0 -host-port 33622 -container-ip 172.17.0.6 -container-port 8080"), want: groupDockerProxy},
		{name: "docker-proxy of another port", p: procStat{PID: 11, Comm: "docker-proxy"},
			cmd: strings.Fields("/usr/sbin/docker-proxy -proto tcp -host-ip :: -host-port 33549 -container-ip 172.17.0.6 -container-port 8080"), want: ""},
		{name: "docker-proxy with a bad port", p: procStat{PID: 12, Comm: "docker-proxy"}, cmd: strings.Fields("docker-proxy -host-port x"), want: ""},
		{name: "a stranger", p: procStat{PID: 13, Comm: "bash"}, want: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := w.classify(tt.p, tt.cmd); got != tt.want {
				t.Errorf("classify = %q, want %q", got, tt.want)
			}
		})
	}
	if got := (procWatch{}).classify(procStat{PID: 7, Comm: "haproxy"}, master); got != "" {
		t.Errorf("an empty watch classified haproxy as %q", got)
	}
}

func TestCPUDelta(t *testing.T) {
	a, b, c := procKey{1, 100}, procKey{2, 200}, procKey{3, 300}
	reused := procKey{1, 900} // pid 1 again, a new process
	tests := []struct {
		name          string
		before, after map[procKey]uint64
		want          uint64
	}{
		{name: "nothing"},
		{name: "same processes", before: map[procKey]uint64{a: 10, b: 5}, after: map[procKey]uint64{a: 15, b: 7}, want: 7},
		{name: "one started in between counts whole", before: map[procKey]uint64{a: 10}, after: map[procKey]uint64{a: 12, c: 4}, want: 6},
		{name: "one exited in between is lost", before: map[procKey]uint64{a: 10, b: 5}, after: map[procKey]uint64{a: 12}, want: 2},
		{name: "a reused pid is a new process", before: map[procKey]uint64{a: 50}, after: map[procKey]uint64{reused: 3}, want: 3},
		{name: "a counter going backwards adds nothing", before: map[procKey]uint64{a: 10}, after: map[procKey]uint64{a: 9}, want: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := cpuDelta(tt.before, tt.after); got != tt.want {
				t.Errorf("cpuDelta = %d, want %d", got, tt.want)
			}
		})
	}
}

// fakeProc writes a /proc entry: stat (own utime, stime) and cmdline.
func fakeProc(t *testing.T, dir string, pid int, comm, state string, utime, stime, start uint64, argv ...string) {
	t.Helper()
	d := filepath.Join(dir, strconv.Itoa(pid))
	if err := os.MkdirAll(d, 0o755); err != nil {
		t.Fatal(err)
	}
	// Fields 3.. of proc(5): state ppid pgrp session tty tpgid flags minflt
	// cminflt majflt cmajflt utime stime cutime cstime priority nice
	// num_threads itrealvalue starttime.
	stat := strconv.Itoa(pid) + " (" + comm + ") " + state + " 1 1 1 0 -1 0 0 0 0 0 " +
		strconv.FormatUint(utime, 10) + " " + strconv.FormatUint(stime, 10) + " 0 0 20 0 1 0 " + strconv.FormatUint(start, 10) + " 0 0\n"
	if err := os.WriteFile(filepath.Join(d, "stat"), []byte(stat), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := ""
	if len(argv) > 0 {
		cmd = strings.Join(argv, "\x00") + "\x00"
	}
	if err := os.WriteFile(filepath.Join(d, "cmdline"), []byte(cmd), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestScanProcsAndFindHAProxies(t *testing.T) {
	proc := t.TempDir()
	run := "/tmp/pulse-bench-9"
	cfg := run + "/state-1/haproxy.cfg"
	fakeProc(t, proc, 100, "pulsed", "S", 30, 10, 1000, "pulsed", "-config", run+"/pulsed.yaml")
	fakeProc(t, proc, 101, "haproxy", "S", 5, 5, 1001, "haproxy", "-W", "-f", cfg)
	fakeProc(t, proc, 102, "haproxy", "S", 200, 100, 1002, "haproxy", "-sf", "101", "-W", "-f", cfg)
	fakeProc(t, proc, 103, "haproxy", "Z", 1, 1, 1003, "haproxy", "-W", "-f", run+"/state-0/haproxy.cfg") // a zombie: gone
	fakeProc(t, proc, 104, "haproxy", "S", 9, 9, 1004, "haproxy", "-W", "-f", run+"/state-0/haproxy.cfg")
	fakeProc(t, proc, 105, "haproxy", "S", 9, 9, 1005, "haproxy", "-W", "-f", "/var/lib/pulse/haproxy.cfg")
	fakeProc(t, proc, 200, "docker-proxy", "S", 40, 60, 2000, "/usr/sbin/docker-proxy", "-host-port", "33620")
	fakeProc(t, proc, 300, "function", "S", 70, 30, 3000, "/function")
	if err := os.WriteFile(filepath.Join(proc, "stat"), []byte("cpu 1 2 3 4 5 6 7 8\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	got, err := scanAllProcs(proc, procWatch{HAProxyConfig: cfg, Ports: []int{33620}, Replicas: []int{300}, Pulsed: 100})
	if err != nil {
		t.Fatal(err)
	}
	want := procCPU{
		groupPulsed:      {{100, 1000}: 40},
		groupHAProxy:     {{101, 1001}: 10, {102, 1002}: 300},
		groupDockerProxy: {{200, 2000}: 100},
		groupReplicas:    {{300, 3000}: 100},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("scanAllProcs groups = %v, want %v", got, want)
	}

	found, err := findHAProxies(proc, run)
	if err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(found, func(a, b procKey) int { return a.PID - b.PID })
	if want := []procKey{{101, 1001}, {102, 1002}, {104, 1004}}; !reflect.DeepEqual(found, want) {
		t.Errorf("findHAProxies = %v, want %v", found, want)
	}
	// A directory that is only a prefix of another's name does not match.
	if found, _ := findHAProxies(proc, run+"/state"); len(found) != 0 {
		t.Errorf("findHAProxies(%s/state) = %v, want none", run, found)
	}
}

func TestParseHAProxyVersion(t *testing.T) {
	for in, want := range map[string]string{
		"HAProxy version 2.6.12-1+deb12u4 2026/10/17 - https://haproxy.org/\nStatus: long-term supported branch": "HAProxy 2.6.12-1+deb12u4",
		"something else": "something else",
	} {
		if got := parseHAProxyVersion(in); got != want {
			t.Errorf("parseHAProxyVersion(%q) = %q, want %q", in, got, want)
		}
	}
}

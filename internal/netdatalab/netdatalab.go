// Package netdatalab runs a private Netdata for Pulse's tests and
// benchmarks: Debian's real netdata binary, on its own loopback port and
// directories, with only Pulse's plugin (pulse.d.plugin) and health
// templates, pointed at the test's own pulsed. It never touches the
// system's Netdata, its configuration or a running `make up` instance.
//
// Netdata drops its privileges to the netdata user, so the lab lives in a
// directory that user can read (under os.TempDir, not a test's 0700 temp
// directory) and its data directories belong to that user.
package netdatalab

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/pulsefaas/pulse/contract"
)

// JobConfig is a pulse.d/pulse.conf for the lab: the shipped one's keys
// (collector/config/pulse.d/pulse.conf), pointed at a test's pulsed
// catalog and HAProxy exporter. Without WithReplicaAuthFile the job reads
// the collector's default replica_auth_file (contract.DefaultReplicaAuthFile);
// WithCAFile sets the ca_file an https:// catalog URL is verified with
// (SelfSigned and CAFile make a certificate and a file for it).
func JobConfig(catalogURL, haproxyURL string, opts ...JobOption) string {
	var o jobOptions
	for _, opt := range opts {
		opt(&o)
	}
	conf := fmt.Sprintf(`update_every: 1
autodetection_retry: 0
jobs:
  - name: %s
    catalog_url: %s
    haproxy_url: %s
    timeout: 800ms
`, contract.CollectorJob, catalogURL, haproxyURL)
	if o.replicaAuthFile != "" {
		conf += fmt.Sprintf("    replica_auth_file: %s\n", o.replicaAuthFile)
	}
	if o.caFile != "" {
		conf += fmt.Sprintf("    ca_file: %s\n", o.caFile)
	}
	return conf
}

// JobOption sets one more key of JobConfig's job.
type JobOption func(*jobOptions)

type jobOptions struct {
	replicaAuthFile string
	caFile          string
}

// WithCAFile sets the job's ca_file: the PEM bundle the collector verifies
// an https:// catalog_url (and haproxy_url) with. The netdata user must be
// able to read it (CAFile makes such a file).
func WithCAFile(path string) JobOption {
	return func(o *jobOptions) { o.caFile = path }
}

// HookEnv is the environment that points the lab's alarm hook
// (cmd/pulse-alarm-hook) at a test's pulsed: its webhook URL and token
// file, and with HookCAFile the CA file for an https:// URL. Pass it as
// Config.Env. The hook reads no config file then (PULSE_ALARM_URL is set).
func HookEnv(url, tokenFile string, opts ...HookOption) []string {
	var o hookOptions
	for _, opt := range opts {
		opt(&o)
	}
	env := []string{"PULSE_ALARM_URL=" + url, "PULSE_ALARM_TOKEN_FILE=" + tokenFile}
	if o.caFile != "" {
		env = append(env, "PULSE_ALARM_CA_FILE="+o.caFile)
	}
	return env
}

// HookOption sets one more variable of HookEnv.
type HookOption func(*hookOptions)

type hookOptions struct{ caFile string }

// HookCAFile sets PULSE_ALARM_CA_FILE: the PEM bundle the hook verifies an
// https:// webhook URL with.
func HookCAFile(path string) HookOption {
	return func(o *hookOptions) { o.caFile = path }
}

// CAFile writes a PEM bundle to a new file everyone may read (0644, in a
// 0755 directory under os.TempDir), as make up's /etc/pulse/tls-ca.pem is,
// and returns its path and a function that removes it.
func CAFile(pemData []byte) (path string, remove func(), err error) {
	dir, err := os.MkdirTemp("", "pulse-netdatalab-ca-")
	if err != nil {
		return "", nil, fmt.Errorf("netdatalab: ca file: %w", err)
	}
	remove = func() { os.RemoveAll(dir) }
	path = filepath.Join(dir, "tls-ca.pem")
	err = os.Chmod(dir, 0o755)
	if err == nil {
		err = os.WriteFile(path, pemData, 0o644)
	}
	if err == nil {
		err = os.Chmod(path, 0o644)
	}
	if err != nil {
		remove()
		return "", nil, fmt.Errorf("netdatalab: ca file: %w", err)
	}
	return path, remove, nil
}

// WithReplicaAuthFile sets the job's replica_auth_file: the replica
// credential the collector presents to the test's replicas. The netdata
// user must be able to read it (ReplicaAuthFile makes such a file).
func WithReplicaAuthFile(path string) JobOption {
	return func(o *jobOptions) { o.replicaAuthFile = path }
}

// ReplicaAuthFile writes credential to a new file the lab's collector can
// read, as pulsed's replica_auth_file is (root:netdata 0640, in a directory
// user netdata can enter, under os.TempDir), and returns its path and a
// function that removes it. Rewrite the file (as root) to rotate the
// credential: the collector re-reads it when it changes. An empty
// credential writes no file: the path is for a test's pulsed, which
// generates the file (root:netdata 0640) where it is missing.
func ReplicaAuthFile(credential string) (path string, remove func(), err error) {
	g, err := user.LookupGroup("netdata")
	if err != nil {
		return "", nil, fmt.Errorf("netdatalab: replica credential: %w", err)
	}
	gid, _ := strconv.Atoi(g.Gid)
	dir, err := os.MkdirTemp("", "pulse-netdatalab-auth-")
	if err != nil {
		return "", nil, fmt.Errorf("netdatalab: replica credential: %w", err)
	}
	remove = func() { os.RemoveAll(dir) }
	path = filepath.Join(dir, "replica-auth")
	err = os.Chmod(dir, 0o755)
	if err == nil && credential == "" {
		return path, remove, nil
	}
	if err == nil {
		err = os.WriteFile(path, []byte(credential+"\n"), 0o640)
	}
	if err == nil {
		err = os.Chown(path, 0, gid)
	}
	if err == nil {
		err = os.Chmod(path, 0o640)
	}
	if err != nil {
		remove()
		return "", nil, fmt.Errorf("netdatalab: replica credential: %w", err)
	}
	return path, remove, nil
}

// Config says what the lab Netdata runs and where it reports.
type Config struct {
	Netdata string // the netdata binary; default /usr/sbin/netdata
	Plugin  string // a built pulse.d.plugin; "" for none (pulse.d off)
	// PluginConfig is the plugin's job file (pulse.d/pulse.conf), e.g.
	// JobConfig with the test pulsed's catalog and HAProxy's exporter.
	PluginConfig string
	// Health is the health templates file; "" for none.
	Health string
	// Env is added to Netdata's environment (and so its plugins' and
	// hooks').
	Env []string
	// Stderr receives Netdata's own output; nil discards it.
	Stderr io.Writer
	// NetdataConf is appended to the lab's netdata.conf: Netdata merges
	// repeated sections and the last value of an option wins, so it can
	// override the lab's settings (e.g. pulse-netdata-files' block).
	NetdataConf string
	// Cgroups turns on Netdata's cgroups collector (off by default in
	// the lab), checking for new cgroups every second, with the stock
	// cgroup-name.sh unless NetdataConf names another script.
	Cgroups bool
}

// Netdata is a running lab instance.
type Netdata struct {
	Dir  string // the lab's directory; removed by Stop
	URL  string // http://127.0.0.1:<port>
	cmd  *exec.Cmd
	done chan error
}

// Available reports why a lab cannot run here, or nil.
func Available() error {
	if os.Geteuid() != 0 {
		return errors.New("netdatalab needs root (netdata drops to the netdata user)")
	}
	if _, err := os.Stat("/usr/sbin/netdata"); err != nil {
		return fmt.Errorf("netdata is not installed (apt-get install netdata): %w", err)
	}
	if _, err := user.Lookup("netdata"); err != nil {
		return fmt.Errorf("no netdata user: %w", err)
	}
	return nil
}

// Start writes the lab's configuration and starts Netdata; it returns once
// Netdata's API answers.
func Start(ctx context.Context, cfg Config) (*Netdata, error) {
	if err := Available(); err != nil {
		return nil, err
	}
	if cfg.Netdata == "" {
		cfg.Netdata = "/usr/sbin/netdata"
	}
	u, err := user.Lookup("netdata")
	if err != nil {
		return nil, err
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	dir, err := os.MkdirTemp("", "pulse-netdatalab-")
	if err != nil {
		return nil, err
	}
	n := &Netdata{Dir: dir, done: make(chan error, 1)}
	fail := func(err error) (*Netdata, error) {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("netdatalab: %w", err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		return fail(err)
	}
	port, err := freePort()
	if err != nil {
		return fail(err)
	}
	n.URL = "http://127.0.0.1:" + strconv.Itoa(port)
	for _, d := range []string{"etc/pulse.d", "etc/health.d", "plugins.d", "stock-health.d"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return fail(err)
		}
	}
	for _, d := range []string{"cache", "lib", "log", "lock", "home"} {
		p := filepath.Join(dir, d)
		if err := os.MkdirAll(p, 0o755); err != nil {
			return fail(err)
		}
		if err := os.Chown(p, uid, gid); err != nil {
			return fail(err)
		}
	}
	conf := netdataConf(dir, port)
	if cfg.Plugin == "" {
		conf += "[plugins]\n\tpulse.d = no\n"
	}
	if cfg.Cgroups {
		// The stock naming script is not in the lab's plugins directory.
		conf += "[plugins]\n\tcgroups = yes\n[plugin:cgroups]\n\tcheck for new cgroups every = 1\n" +
			"\tscript to get cgroup names = /usr/lib/netdata/plugins.d/cgroup-name.sh\n"
	}
	conf += cfg.NetdataConf
	files := map[string]struct {
		data string
		mode os.FileMode
	}{
		"etc/pulse.d.conf":        {"modules:\n  pulse: yes\n", 0o644},
		"etc/pulse.d/pulse.conf":  {cfg.PluginConfig, 0o644},
		"etc/health.d/pulse.conf": {cfg.Health, 0o644},
		"etc/netdata.conf":        {conf, 0o644},
	}
	if cfg.Plugin != "" {
		plugin, err := os.ReadFile(cfg.Plugin)
		if err != nil {
			return fail(fmt.Errorf("plugin: %w", err))
		}
		files["plugins.d/pulse.d.plugin"] = struct {
			data string
			mode os.FileMode
		}{string(plugin), 0o755}
	}
	for name, f := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(f.data), f.mode); err != nil {
			return fail(err)
		}
	}
	// -D: stay in the foreground (our child); -c: the lab's config only.
	cmd := exec.Command(cfg.Netdata, "-D", "-c", filepath.Join(dir, "etc/netdata.conf"))
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), cfg.Env...)
	cmd.Stdout, cmd.Stderr = cfg.Stderr, cfg.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fail(err)
	}
	n.cmd = cmd
	go func() { n.done <- cmd.Wait() }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if err := n.get(ctx, "/api/v1/info", nil); err == nil {
			return n, nil
		}
		select {
		case err := <-n.done:
			n.done <- err
			n.Stop()
			return fail(fmt.Errorf("netdata exited at start: %v (see %s/log/error.log)", err, dir))
		case <-ctx.Done():
			n.Stop()
			return fail(ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			n.Stop()
			return fail(errors.New("netdata's API did not answer within 30 s"))
		}
	}
}

// netdataConf is the lab's netdata.conf: one-second updates in RAM, health
// on, every collector but plugins.d off, only the lab's plugin directory.
func netdataConf(dir string, port int) string {
	return fmt.Sprintf(`[global]
	run as user = netdata
	hostname = pulse-lab
[db]
	update every = 1
	mode = ram
	retention = 600
[directories]
	config = %[1]s/etc
	stock config = /usr/lib/netdata/conf.d
	log = %[1]s/log
	web = /usr/share/netdata/web
	cache = %[1]s/cache
	lib = %[1]s/lib
	home = %[1]s/home
	lock = %[1]s/lock
	plugins = "%[1]s/plugins.d"
	stock health config = %[1]s/stock-health.d
	health config = %[1]s/etc/health.d
[logs]
	debug = %[1]s/log/debug.log
	error = %[1]s/log/error.log
	access = none
[health]
	enabled = yes
	enable stock health configuration = no
[web]
	bind to = 127.0.0.1:%[2]d
	mode = static-threaded
[registry]
	enabled = no
[ml]
	enabled = no
[cloud]
	enabled = no
[plugins]
	timex = no
	idlejitter = no
	netdata monitoring = no
	tc = no
	diskspace = no
	proc = no
	cgroups = no
	statsd = no
	apps = no
	fping = no
	ioping = no
	python.d = no
	perf = no
	cups = no
	charts.d = no
	nfacct = no
	slabinfo = no
	ebpf = no
	go.d = no
	enable running new plugins = no
	pulse.d = yes
`, dir, port)
}

// Stop stops Netdata (and with it its plugins) and removes the lab.
func (n *Netdata) Stop() error {
	if n.cmd != nil && n.cmd.Process != nil {
		_ = syscall.Kill(-n.cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-n.done:
		case <-time.After(15 * time.Second):
			_ = syscall.Kill(-n.cmd.Process.Pid, syscall.SIGKILL)
			<-n.done
		}
		// Plugins run in Netdata's process group, but make sure.
		_ = syscall.Kill(-n.cmd.Process.Pid, syscall.SIGKILL)
	}
	return os.RemoveAll(n.Dir)
}

// ErrorLog returns the lab Netdata's error log (health, plugin messages).
func (n *Netdata) ErrorLog() string {
	b, _ := os.ReadFile(filepath.Join(n.Dir, "log/error.log"))
	return string(b)
}

// PluginPath is where the lab's copy of the plugin is: the first word of
// the plugin process's command line.
func (n *Netdata) PluginPath() string { return filepath.Join(n.Dir, "plugins.d", "pulse.d.plugin") }

// PID is Netdata's process ID.
func (n *Netdata) PID() int { return n.cmd.Process.Pid }

// Chart is the part of /api/v1/charts' chart objects the tests read.
//
// An obsolete chart (go.d's MarkRemove: the plugin sends CHART again with
// the "obsolete" option) is, in Netdata 1.37.1, left out of /api/v1/charts
// while /api/v1/chart?chart=<id> still answers with it, its last_entry
// frozen, until Netdata frees it ([db] cleanup obsolete charts after secs,
// an hour by default). 1.37.1's chart objects have no "obsolete" field:
// Obsolete stays false there; it is kept for later releases that send it.
type Chart struct {
	ID         string                     `json:"id"`
	Title      string                     `json:"title"`
	Units      string                     `json:"units"`
	Family     string                     `json:"family"`
	Context    string                     `json:"context"`
	Obsolete   bool                       `json:"obsolete"`
	FirstEntry int64                      `json:"first_entry"` // Unix seconds
	LastEntry  int64                      `json:"last_entry"`  // Unix seconds
	Dimensions map[string]json.RawMessage `json:"dimensions"`
	Variables  map[string]float64         `json:"chart_variables"`
}

// DimensionNames returns the chart's dimension names (as health templates
// and /api/v1/data's labels name them), sorted; the Dimensions map is keyed
// by dimension ID.
func (c Chart) DimensionNames() []string {
	var out []string
	for _, raw := range c.Dimensions {
		var d struct {
			Name string `json:"name"`
		}
		if json.Unmarshal(raw, &d) == nil {
			out = append(out, d.Name)
		}
	}
	sort.Strings(out)
	return out
}

// Charts lists the charts Netdata has, by ID.
func (n *Netdata) Charts(ctx context.Context) (map[string]Chart, error) {
	var out struct {
		Charts map[string]Chart `json:"charts"`
	}
	if err := n.get(ctx, "/api/v1/charts", &out); err != nil {
		return nil, err
	}
	return out.Charts, nil
}

// Chart reads one chart with /api/v1/chart, which, unlike /api/v1/charts,
// also answers for an obsolete chart; a chart Netdata does not have is an
// error.
func (n *Netdata) Chart(ctx context.Context, id string) (Chart, error) {
	var c Chart
	err := n.get(ctx, "/api/v1/chart?"+url.Values{"chart": {id}}.Encode(), &c)
	return c, err
}

// Data is /api/v1/data's answer in its json format: Labels[0] is "time".
type Data struct {
	Labels []string    `json:"labels"`
	Rows   [][]float64 `json:"data"` // newest first
}

// Column returns the values of label, newest first.
func (d Data) Column(label string) []float64 {
	for i, l := range d.Labels {
		if l == label {
			out := make([]float64, 0, len(d.Rows))
			for _, r := range d.Rows {
				if i < len(r) {
					out = append(out, r[i])
				}
			}
			return out
		}
	}
	return nil
}

// DataRange reads chart's per-second values from Unix second after (or, if
// negative, that many seconds ago) to before (0: now), unaligned.
func (n *Netdata) DataRange(ctx context.Context, chart string, after, before int64) (Data, error) {
	q := url.Values{"chart": {chart}, "after": {strconv.FormatInt(after, 10)}, "format": {"json"}, "options": {"unaligned|null2zero"}}
	if before != 0 {
		q.Set("before", strconv.FormatInt(before, 10))
	}
	var d Data
	err := n.get(ctx, "/api/v1/data?"+q.Encode(), &d)
	return d, err
}

// AlarmStatus is the status (CLEAR, WARNING, CRITICAL, UNDEFINED, ...) of
// the alarm name on chart, from /api/v1/alarms?all; an error when Netdata
// has no such alarm (yet).
func (n *Netdata) AlarmStatus(ctx context.Context, name, chart string) (string, error) {
	var out struct {
		Alarms map[string]struct {
			Name   string `json:"name"`
			Chart  string `json:"chart"`
			Status string `json:"status"`
		} `json:"alarms"`
	}
	if err := n.get(ctx, "/api/v1/alarms?all", &out); err != nil {
		return "", err
	}
	for _, a := range out.Alarms {
		if a.Name == name && a.Chart == chart {
			return a.Status, nil
		}
	}
	return "", fmt.Errorf("no alarm %s on %s", name, chart)
}

// AlarmLogEntry is one entry of /api/v1/alarm_log.
type AlarmLogEntry struct {
	UniqueID  uint64  `json:"unique_id"`
	Name      string  `json:"name"`
	Chart     string  `json:"chart"`
	Family    string  `json:"family"`
	When      int64   `json:"when"`
	Status    string  `json:"status"`
	OldStatus string  `json:"old_status"`
	Value     float64 `json:"value"`
	Exec      string  `json:"exec"`
	ExecRun   int64   `json:"exec_run"`
	ExecCode  int     `json:"exec_code"`
}

// AlarmLog returns the health log entries after unique ID after.
func (n *Netdata) AlarmLog(ctx context.Context, after uint64) ([]AlarmLogEntry, error) {
	var out []AlarmLogEntry
	err := n.get(ctx, "/api/v1/alarm_log?after="+strconv.FormatUint(after, 10), &out)
	return out, err
}

func (n *Netdata) get(ctx context.Context, path string, into any) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, n.URL+path, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s: %s", path, resp.Status, strings.TrimSpace(string(body)))
	}
	if into == nil {
		return nil
	}
	if err := json.Unmarshal(body, into); err != nil {
		return fmt.Errorf("GET %s: %w", path, err)
	}
	return nil
}

// Process is one process of the lab: Netdata or one of its descendants
// (its spawn server, the plugin), as /proc shows it.
type Process struct {
	PID, PPID int
	Cmdline   []string
	UID       int   // real user ID
	GIDs      []int // real group ID followed by the supplementary groups
	RSSKB     int64 // VmRSS
}

// Processes returns Netdata (first) and its live descendants, found
// through /proc; processes that exit meanwhile are left out.
func (n *Netdata) Processes() ([]Process, error) {
	return ProcessTree("/proc", n.PID())
}

// ProcessTree returns process root (first) and its live descendants under
// procDir (normally /proc), e.g. a system Netdata's, for comparison.
func ProcessTree(procDir string, root int) ([]Process, error) {
	entries, err := os.ReadDir(procDir)
	if err != nil {
		return nil, err
	}
	byParent := map[int][]Process{}
	var top *Process
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		p, err := readProcess(filepath.Join(procDir, e.Name()), pid)
		if err != nil {
			continue // gone
		}
		if pid == root {
			top = &p
			continue
		}
		byParent[p.PPID] = append(byParent[p.PPID], p)
	}
	if top == nil {
		return nil, fmt.Errorf("process %d: %w", root, os.ErrNotExist)
	}
	out := []Process{*top}
	for i := 0; i < len(out); i++ {
		out = append(out, byParent[out[i].PID]...)
	}
	return out, nil
}

// readProcess reads one process's cmdline and status.
func readProcess(dir string, pid int) (Process, error) {
	p := Process{PID: pid}
	cmdline, err := os.ReadFile(filepath.Join(dir, "cmdline"))
	if err != nil {
		return p, err
	}
	p.Cmdline = strings.Split(strings.TrimRight(string(cmdline), "\x00"), "\x00")
	status, err := os.ReadFile(filepath.Join(dir, "status"))
	if err != nil {
		return p, err
	}
	p.UID = -1
	for _, line := range strings.Split(string(status), "\n") {
		key, val, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		f := strings.Fields(val)
		switch key {
		case "PPid":
			if len(f) > 0 {
				p.PPID, _ = strconv.Atoi(f[0])
			}
		case "Uid":
			if len(f) > 0 {
				p.UID, _ = strconv.Atoi(f[0])
			}
		case "Gid":
			if len(f) > 0 {
				g, _ := strconv.Atoi(f[0])
				p.GIDs = append([]int{g}, p.GIDs...)
			}
		case "Groups":
			for _, s := range f {
				g, _ := strconv.Atoi(s)
				p.GIDs = append(p.GIDs, g)
			}
		case "VmRSS":
			if len(f) > 0 {
				p.RSSKB, _ = strconv.ParseInt(f[0], 10, 64)
			}
		}
	}
	if p.UID < 0 {
		return p, fmt.Errorf("%s/status: no Uid line", dir)
	}
	return p, nil
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

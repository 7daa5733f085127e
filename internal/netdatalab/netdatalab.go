// Package netdatalab runs a private Netdata for Pulse's tests and
// benchmarks: Debian's real netdata binary, on its own loopback port and
// directories, with only Pulse's plugin (pulse.d.plugin) and health
// templates, pointed at the test's own pulsed. It never touches the
// system's Netdata, its configuration or a running `make up` instance.
//
// Netdata drops its privileges to the netdata user, so the lab lives in a
// directory that user can read (under os.TempDir, not a test's 0700 temp
// directory) and its data directories belong to that user.
//
// Files: netdatalab.go starts and stops the lab (Start, Stop); jobconfig.go
// writes the collector's job and the alarm hook's settings (JobConfig,
// HookEnv and the files they point at); api.go reads Netdata's API
// (charts, data, alarms); process.go lists the lab's processes. Certificates
// for a test's HTTPS server are internal/testcert's.
package netdatalab

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/pulsefaas/pulse/internal/testport"
)

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
	port, err := testport.Free()
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

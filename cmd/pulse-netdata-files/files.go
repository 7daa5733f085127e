package main

import (
	"bytes"
	_ "embed" // the cgroup naming script
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/pulsefaas/pulse/alarms"
	"github.com/pulsefaas/pulse/contract"
)

// DashboardInfoFile is the dashboard decoration's name in Netdata's web
// directory; netdata.conf's `custom dashboard_info.js` names it relative to
// the web root, which is how the dashboard fetches it.
const DashboardInfoFile = "pulse-dashboard-info.js"

// Root says which directory a file's path is relative to.
type Root int

const (
	Etc Root = iota // Netdata's configuration directory
	Web             // Netdata's web files
)

// File is one file to install.
type File struct {
	Root Root
	Path string // slash-separated, relative to Root
	Data []byte
	Mode fs.FileMode // 0 means 0644
}

// CgroupNameScript is the cgroup naming script's name in Netdata's
// configuration directory; netdata.conf's block names it.
const CgroupNameScript = "pulse-cgroup-name.sh"

// cgroupNameScript keeps Docker containers, which user netdata cannot name
// (no Docker socket), out of Netdata's cgroup charts (cgroup-name.sh).
//
//go:embed cgroup-name.sh
var cgroupNameScript []byte

// hiddenCgroupPrefix is the name cgroupNameScript gives a container
// (its PULSE_HIDDEN_PREFIX): the block's pattern excludes it.
const hiddenCgroupPrefix = "pulse_hidden_container_"

// netdataFiles lists the files to install: every regular file of the
// collector's configuration, the health templates, the cgroup naming
// script and the dashboard info.
func netdataFiles(collectorConf fs.FS, templates string) ([]File, error) {
	var files []File
	err := fs.WalkDir(collectorConf, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		b, err := fs.ReadFile(collectorConf, p)
		files = append(files, File{Etc, p, b, 0})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("collector configuration: %w", err)
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("collector configuration: no files")
	}
	return append(files,
		File{Etc, alarms.HealthFile, []byte(templates), 0},
		File{Etc, CgroupNameScript, cgroupNameScript, 0o755},
		File{Web, DashboardInfoFile, []byte(dashboardInfo()), 0},
	), nil
}

// dashboardInfo is a custom dashboard_info.js: the dashboard merges
// customDashboard into its own menu, submenu and context descriptions.
func dashboardInfo() string {
	q := func(s string) string { // a JSON string is a JS string
		var b strings.Builder
		enc := json.NewEncoder(&b)
		enc.SetEscapeHTML(false)
		_ = enc.Encode(s)
		return strings.TrimSuffix(b.String(), "\n")
	}
	return `// Pulse: names the dashboard's "` + contract.ChartType + `" menu (written by pulse-netdata-files).
customDashboard.menu = customDashboard.menu || {};
customDashboard.menu[` + q(contract.ChartType) + `] = {
    title: ` + q(contract.DashboardMenuTitle) + `,
    icon: '<i class="fas fa-bolt"></i>',
    info: ` + q("Every Pulse function, one section per function: requests and errors answered by its replicas, "+
		"latency, requests in flight, replicas, the gateway's view of its demand, and <b>utilization</b>, "+
		"100 &times; demand / (ready replicas &times; target), which the <code>"+contract.AlarmScaleUp+"</code> and <code>"+
		contract.AlarmScaleDown+"</code> alarms watch to resize the function.") + `
};
customDashboard.context = customDashboard.context || {};
customDashboard.context[` + q(contract.CtxUtilization) + `] = {
    info: ` + q("Demand as a percentage of what the ready replicas are meant to carry (the chart variables "+
		"<code>replicas</code> and <code>target</code>). Above 100 % for 3 s Pulse adds replicas; under 50 % for 30 s it removes up to half.") + `
};
customDashboard.context[` + q(contract.CtxLatency) + `] = {
    info: ` + q("Measured inside the replica by its watchdog, from receiving the request to having written the response: "+
		"a client also waits for the network, the gateway (HAProxy) and any queue there, so it sees more.") + `
};
customDashboard.context[` + q(contract.CtxInflight) + `] = {
    info: ` + q("Requests being answered, summed over the replicas: each replica's average since its previous scrape "+
		"(busy seconds per second), so a fast function under light load shows a fraction of a request.") + `
};
`
}

// confBlock is what Pulse needs in netdata.conf, for Netdata's
// configuration directory etc. Netdata merges repeated sections and the last
// value of an option wins, so the block, kept at the end of the file,
// overrides the stock file without editing it. Its [plugin:cgroups] part
// keeps Docker containers out of the cgroup charts (cgroup-name.sh says
// why).
func confBlock(etc string) string {
	return confBegin + `
[web]
	custom dashboard_info.js = ` + DashboardInfoFile + `
[health]
	enabled = yes
[plugin:cgroups]
	script to get cgroup names = ` + filepath.Join(etc, CgroupNameScript) + `
	enable by default cgroups names matching = !` + hiddenCgroupPrefix + `* *
` + confEnd + "\n"
}

const (
	confBegin = "# BEGIN pulse: written by pulse-netdata-files, replaced on every install"
	confEnd   = "# END pulse"
)

// setConfBlock returns conf with its Pulse block replaced by block, or block
// appended when there is none.
func setConfBlock(conf, block string) string {
	if i := strings.Index(conf, confBegin); i >= 0 {
		rest := conf[i:]
		if j := strings.Index(rest, confEnd); j >= 0 {
			rest = strings.TrimPrefix(rest[j+len(confEnd):], "\n")
			return conf[:i] + block + rest
		}
		return conf[:i] + block // the end marker was lost: the block ran to the end
	}
	if conf != "" && !strings.HasSuffix(conf, "\n") {
		conf += "\n"
	}
	if conf != "" {
		conf += "\n"
	}
	return conf + block
}

// install writes the files and netdata.conf's block, naming each file it
// writes on log.
func install(etc, web string, files []File, w *writer) error {
	for _, f := range files {
		dir := etc
		if f.Root == Web {
			dir = web
		}
		path := filepath.Join(dir, filepath.FromSlash(f.Path))
		mode := f.Mode
		if mode == 0 {
			mode = 0o644
		}
		if err := w.put(path, f.Data, mode); err != nil {
			return err
		}
	}
	confPath := filepath.Join(etc, "netdata.conf")
	conf, err := os.ReadFile(confPath)
	if err != nil && !os.IsNotExist(err) {
		return err
	}
	mode := fs.FileMode(0o644)
	if st, err := os.Stat(confPath); err == nil {
		mode = st.Mode().Perm()
	}
	return w.put(confPath, []byte(setConfBlock(string(conf), confBlock(etc))), mode)
}

// writer writes files that differ from what they should hold, in content
// or mode, and says so in one line each ("wrote PATH"); with check it only
// says what it would write ("would write PATH"). A file that is as it
// should be is left alone and not mentioned, so a second run prints
// nothing (the playbook's changed test).
type writer struct {
	check bool
	log   io.Writer
}

// put makes path hold data with mode.
func (w *writer) put(path string, data []byte, mode fs.FileMode) error {
	if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, data) {
		if st, err := os.Stat(path); err == nil && st.Mode().Perm() == mode {
			return nil
		}
	}
	if w.check {
		fmt.Fprintln(w.log, "would write", path)
		return nil
	}
	if err := writeFile(path, data, mode); err != nil {
		return err
	}
	fmt.Fprintln(w.log, "wrote", path)
	return nil
}

// writeFile replaces path atomically, creating its directory.
func writeFile(path string, data []byte, mode fs.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // after a successful rename: nothing there
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

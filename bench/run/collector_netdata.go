package main

// The collector suite's Netdata run: Debian's real netdata in a private lab
// (internal/netdatalab: its own port and directories, every collector but
// the built pulse.d.plugin off) against the suite's 100-replica catalog,
// for the memory goal of netdata and the plugin together. A system Netdata,
// if one runs (stock configuration, every collector), is measured beside it
// and left alone.

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/pulsefaas/pulse/collector"
	"github.com/pulsefaas/pulse/contract"
	"github.com/pulsefaas/pulse/internal/netdatalab"
)

const (
	collectorNetdataRSSGoalMB  = 110 // netdata + pulse.d.plugin
	collectorNetdataDuration   = 30 * time.Second
	collectorQuickNetdataTime  = 8 * time.Second
	collectorNetdataSystemPID  = "/run/netdata.pid" // Debian's init script's
	collectorNetdataPluginName = contract.PluginName + ".plugin"
)

// collectorNetdata is the lab Netdata run.
type collectorNetdata struct {
	Replicas      int     `json:"replicas"`
	Functions     int     `json:"functions"`
	DurationS     float64 `json:"duration_s"`
	Charts        int     `json:"charts"`
	NetdataProcs  int     `json:"netdata_procs"`
	NetdataRSSMB  float64 `json:"netdata_rss_mb"` // netdata and its children but the plugin
	PluginRSSMB   float64 `json:"plugin_rss_mb"`
	TotalRSSMB    float64 `json:"total_rss_mb"`
	NetdataHWMMB  float64 `json:"netdata_peak_rss_mb"` // VmHWM of the netdata process
	NetdataCPUPct float64 `json:"netdata_cpu_pct_of_one_core"`
	PluginCPUPct  float64 `json:"plugin_cpu_pct_of_one_core"`
	Skipped       string  `json:"skipped,omitempty"`
	Error         string  `json:"error,omitempty"`
}

// systemNetdata is a Netdata the machine runs, measured as found.
type systemNetdata struct {
	PID          int      `json:"pid"`
	Procs        int      `json:"procs"`
	NetdataRSSMB float64  `json:"netdata_rss_mb"` // netdata and its netdata children (spawn server)
	PluginRSSMB  float64  `json:"pulse_plugin_rss_mb"`
	OtherRSSMB   float64  `json:"other_plugins_rss_mb"`
	TotalRSSMB   float64  `json:"total_rss_mb"`
	Others       []string `json:"other_plugins"`
	// UptimeS is how long it had run: its RSS grows with the charts it
	// keeps (every container's cgroup charts stay an hour after it goes).
	UptimeS float64 `json:"uptime_s"`
}

// netdataMemory splits a Netdata process tree's RSS: netdata itself and
// its netdata children (the spawn server), Pulse's plugin, other plugins.
type netdataMemory struct {
	netdataKB, pluginKB, otherKB int64
	pluginPIDs, netdataPIDs      []int
	others                       []string
}

func splitNetdataTree(procs []netdatalab.Process) netdataMemory {
	var m netdataMemory
	for _, p := range procs {
		name := ""
		if len(p.Cmdline) > 0 {
			name = filepath.Base(p.Cmdline[0])
		}
		if interpreters[name] && len(p.Cmdline) > 1 { // charts.d, python.d, tc-qos-helper.sh
			name = filepath.Base(p.Cmdline[1])
		}
		switch name {
		case "netdata":
			m.netdataKB += p.RSSKB
			m.netdataPIDs = append(m.netdataPIDs, p.PID)
		case collectorNetdataPluginName:
			m.pluginKB += p.RSSKB
			m.pluginPIDs = append(m.pluginPIDs, p.PID)
		default:
			m.otherKB += p.RSSKB
			if name == "" {
				name = "pid " + strconv.Itoa(p.PID)
			}
			m.others = append(m.others, name)
		}
	}
	slices.Sort(m.others)
	return m
}

var interpreters = map[string]bool{"bash": true, "sh": true, "python3": true, "python": true}

// runLabNetdata runs a lab Netdata with the plugin against the bench
// server, presenting the replica credential in credFile, for d and reads
// the RSS of its processes at the end and their CPU over the second half.
func runLabNetdata(ctx context.Context, plugin, base, credFile string, clk float64, d time.Duration, functions int) collectorNetdata {
	res := collectorNetdata{DurationS: d.Seconds()}
	if err := netdatalab.Available(); err != nil {
		res.Skipped = err.Error()
		return res
	}
	fail := func(err error) collectorNetdata { res.Error = err.Error(); return res }
	lab, err := netdatalab.Start(ctx, netdatalab.Config{Plugin: plugin,
		PluginConfig: netdatalab.JobConfig(base+contract.CatalogPath, base+"/metrics", netdatalab.WithReplicaAuthFile(credFile))})
	if err != nil {
		return fail(err)
	}
	defer lab.Stop()
	started := time.Now()
	if err := sleepCtx(ctx, d/2); err != nil {
		return fail(err)
	}
	cpu0, err := labTicks(lab)
	if err != nil {
		return fail(err)
	}
	t0 := time.Now()
	if err := sleepCtx(ctx, d-d/2); err != nil {
		return fail(err)
	}
	cpu1, err := labTicks(lab)
	if err != nil {
		return fail(err)
	}
	elapsed := time.Since(t0).Seconds()
	res.DurationS = secondsSince(started)
	procs, err := lab.Processes()
	if err != nil {
		return fail(err)
	}
	m := splitNetdataTree(procs)
	if len(m.pluginPIDs) != 1 {
		return fail(fmt.Errorf("%d %s processes in the lab, want 1 (see %s/log/error.log)", len(m.pluginPIDs), collectorNetdataPluginName, lab.Dir))
	}
	res.NetdataProcs = len(procs) - len(m.pluginPIDs)
	res.NetdataRSSMB, res.PluginRSSMB = kbToMB(m.netdataKB+m.otherKB), kbToMB(m.pluginKB)
	res.TotalRSSMB = round3(res.NetdataRSSMB + res.PluginRSSMB)
	if st, err := readStatus("/proc", lab.PID()); err == nil {
		res.NetdataHWMMB = kbToMB(st.HWMKB)
	}
	var ndTicks, plTicks uint64
	for pid, t := range cpu1 {
		dt := t - cpu0[pid] // a process started in between counts whole
		if slices.Contains(m.pluginPIDs, pid) {
			plTicks += dt
		} else {
			ndTicks += dt
		}
	}
	res.NetdataCPUPct = round3(100 * float64(ndTicks) / clk / elapsed)
	res.PluginCPUPct = round3(100 * float64(plTicks) / clk / elapsed)
	charts, err := lab.Charts(ctx)
	if err != nil {
		return fail(err)
	}
	for id := range charts {
		if strings.HasPrefix(id, contract.ChartType+".fn_") {
			res.Charts++
		}
	}
	if want := functions * len(collector.ChartSpecs()); res.Charts != want {
		res.Error = fmt.Sprintf("%d function charts in the lab Netdata, want %d × %d: the plugin did not chart every function", res.Charts, functions, len(collector.ChartSpecs()))
	}
	return res
}

// labTicks is utime + stime of every process of the lab, by PID.
func labTicks(lab *netdatalab.Netdata) (map[int]uint64, error) {
	procs, err := lab.Processes()
	if err != nil {
		return nil, err
	}
	out := map[int]uint64{}
	for _, p := range procs {
		st, err := readStat("/proc", p.PID)
		if err != nil {
			continue // exited
		}
		out[p.PID] = st.UTime + st.STime
	}
	return out, nil
}

// findSystemNetdata returns the machine's own Netdata, if one runs: the
// PID in Debian's pid file, else a netdata process whose parent is not
// netdata; never the lab's (exclude).
func findSystemNetdata(procDir string, exclude int) (int, error) {
	isNetdata := func(pid int) bool {
		b, err := os.ReadFile(filepath.Join(procDir, strconv.Itoa(pid), "cmdline"))
		return err == nil && filepath.Base(strings.SplitN(string(b), "\x00", 2)[0]) == "netdata"
	}
	if b, err := os.ReadFile(collectorNetdataSystemPID); err == nil {
		if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pid != exclude && isNetdata(pid) {
			return pid, nil
		}
	}
	entries, err := os.ReadDir(procDir)
	if err != nil {
		return 0, err
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == exclude || !isNetdata(pid) {
			continue
		}
		st, err := readStat(procDir, pid)
		if err != nil || st.PPID == exclude || isNetdata(st.PPID) {
			continue
		}
		return pid, nil
	}
	return 0, errNoProcess
}

// measureSystemNetdata reads the system Netdata's tree, or nil if none.
func measureSystemNetdata(clk float64) (*systemNetdata, error) {
	pid, err := findSystemNetdata("/proc", 0)
	if errors.Is(err, errNoProcess) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	procs, err := netdatalab.ProcessTree("/proc", pid)
	if err != nil {
		return nil, err
	}
	m := splitNetdataTree(procs)
	s := &systemNetdata{PID: pid, Procs: len(procs), NetdataRSSMB: kbToMB(m.netdataKB), PluginRSSMB: kbToMB(m.pluginKB),
		OtherRSSMB: kbToMB(m.otherKB), Others: m.others}
	s.TotalRSSMB = round3(s.NetdataRSSMB + s.PluginRSSMB + s.OtherRSSMB)
	if st, err := readStat("/proc", pid); err == nil {
		if b, err := os.ReadFile("/proc/uptime"); err == nil {
			var up float64
			if _, err := fmt.Sscan(string(b), &up); err == nil {
				s.UptimeS = math.Round(up - float64(st.StartTime)/clk)
			}
		}
	}
	return s, nil
}

var collectorNetdataHeader = []string{"Netdata", "processes", "netdata MB", "pulse.d.plugin MB", "other plugins MB", "total MB", "CPU % of a core (netdata / plugin)"}

func collectorNetdataRows(r collectorReport) [][]string {
	n := r.Netdata
	var rows [][]string
	switch {
	case n.Skipped != "":
		rows = append(rows, []string{"lab: only pulse.d.plugin", "skipped: " + n.Skipped, "", "", "", "", ""})
	default:
		rows = append(rows, []string{fmt.Sprintf("lab: only pulse.d.plugin, %d replicas, %d charts, after %.0f s", n.Replicas, n.Charts, n.DurationS),
			fmt.Sprint(n.NetdataProcs + 1), fmt.Sprintf("%.1f", n.NetdataRSSMB), fmt.Sprintf("%.1f", n.PluginRSSMB), "0",
			fmt.Sprintf("%.1f", n.TotalRSSMB), fmt.Sprintf("%.2f / %.2f", n.NetdataCPUPct, n.PluginCPUPct)})
	}
	if s := r.SystemNetdata; s != nil {
		rows = append(rows, []string{fmt.Sprintf("system (informational): stock Debian config, all collectors, up %.0f min", s.UptimeS/60), fmt.Sprint(s.Procs),
			fmt.Sprintf("%.1f", s.NetdataRSSMB), fmt.Sprintf("%.1f", s.PluginRSSMB),
			fmt.Sprintf("%.1f (%s)", s.OtherRSSMB, strings.Join(s.Others, ", ")), fmt.Sprintf("%.1f", s.TotalRSSMB), "–"})
	}
	return rows
}

package main

// The soak's CPU accounting: windows of the host's and each process
// group's CPU, per request, through the gateway and straight to a replica.

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strings"
)

// soakCPU is a CPU comparison: the whole host's busy CPU per request over
// windows through the gateway and windows straight to one replica, at the
// same connections.
type soakCPU struct {
	Conns             int     `json:"connections"`
	GatewayS          float64 `json:"gateway_s"`
	DirectS           float64 `json:"direct_s"`
	GatewayTicks      uint64  `json:"gateway_busy_ticks"`
	DirectTicks       uint64  `json:"direct_busy_ticks"`
	GatewayTotalTicks uint64  `json:"gateway_total_ticks"` // busy, idle and stolen
	DirectTotalTicks  uint64  `json:"direct_total_ticks"`
	GatewayRequests   int64   `json:"gateway_requests"`
	DirectRequests    int64   `json:"direct_requests"`
	GatewayUS         float64 `json:"gateway_us_per_request"`
	DirectUS          float64 `json:"direct_us_per_request"`
	Ratio             float64 `json:"ratio"`
	GatewayBusyPct    float64 `json:"gateway_busy_pct"` // of the whole host
	DirectBusyPct     float64 `json:"direct_busy_pct"`
	GatewayReplicas   string  `json:"gateway_replicas"` // during the gateway minute, e.g. "2" or "2–3"
	// The same without the client: the whole host's busy CPU less the
	// harness's (the load's client, and in the soak the log receiver and
	// the pollers), per request; 0 without the groups.
	GatewayServerUS float64 `json:"gateway_server_us_per_request,omitempty"`
	DirectServerUS  float64 `json:"direct_server_us_per_request,omitempty"`
	ServerRatio     float64 `json:"server_ratio,omitempty"`
	StealTicks      uint64  `json:"steal_ticks"`
	// Groups is where the CPU went, per process group (own utime + stime
	// from /proc; "other" is the host's busy CPU less the groups: the
	// kernel's softirq work, dockerd, ...).
	Groups []soakCPUGroup `json:"groups,omitempty"`
	// The raw ticks per group and window.
	GatewayGroupTicks map[string]uint64 `json:"gateway_group_ticks,omitempty"`
	DirectGroupTicks  map[string]uint64 `json:"direct_group_ticks,omitempty"`
	// What "other" holds: the processes outside the groups by command
	// name, and the host's irq + softirq ticks (/proc/stat; a tick in
	// softirq is also charged to the process it interrupted, so these
	// overlap the groups).
	GatewayOtherTicks map[string]uint64 `json:"gateway_other_process_ticks,omitempty"`
	DirectOtherTicks  map[string]uint64 `json:"direct_other_process_ticks,omitempty"`
	GatewayIRQTicks   uint64            `json:"gateway_irq_ticks"`
	DirectIRQTicks    uint64            `json:"direct_irq_ticks"`
}

// cpuMark is the host's CPU and, if read, the process groups' at one
// moment.
type cpuMark struct {
	host           hostCPU
	groups, others procCPU
}

// mark reads the host's CPU, then (groups) the CPU of w's groups, of the
// harness and of the lab Netdata.
func (l *pulseLab) mark(w procWatch, groups bool) cpuMark {
	var m cpuMark
	m.host, _ = readHostCPU("/proc")
	if groups {
		m.groups, m.others = l.sampleGroups(w)
	}
	return m
}

// cpuWindow is the CPU of one window of a comparison, in ticks.
type cpuWindow struct {
	Seconds float64           `json:"seconds"`
	Busy    uint64            `json:"busy_ticks"`
	IRQ     uint64            `json:"irq_ticks"` // irq + softirq, part of busy
	Total   uint64            `json:"total_ticks"`
	Steal   uint64            `json:"steal_ticks"`
	Groups  map[string]uint64 `json:"group_ticks,omitempty"`
	// Others are the processes outside the groups that used CPU, by
	// command name.
	Others map[string]uint64 `json:"other_process_ticks,omitempty"`
}

// windowOf is the CPU between two marks, seconds apart.
func windowOf(seconds float64, from, to cpuMark) cpuWindow {
	w := cpuWindow{Seconds: seconds, Busy: to.host.Busy - from.host.Busy, IRQ: to.host.IRQ - from.host.IRQ, Total: to.host.Total - from.host.Total,
		Steal: to.host.Steal - from.host.Steal, Groups: groupDelta(from.groups, to.groups)}
	for comm, t := range groupDelta(from.others, to.others) {
		if t > 0 {
			if w.Others == nil {
				w.Others = map[string]uint64{}
			}
			w.Others[comm] = t
		}
	}
	return w
}

// add counts a window on the direct side or the gateway's.
func (c *soakCPU) add(direct bool, w cpuWindow) {
	s, busy, irq, total, groups, others := &c.GatewayS, &c.GatewayTicks, &c.GatewayIRQTicks, &c.GatewayTotalTicks, &c.GatewayGroupTicks, &c.GatewayOtherTicks
	if direct {
		s, busy, irq, total, groups, others = &c.DirectS, &c.DirectTicks, &c.DirectIRQTicks, &c.DirectTotalTicks, &c.DirectGroupTicks, &c.DirectOtherTicks
	}
	*s += w.Seconds
	*busy += w.Busy
	*irq += w.IRQ
	*total += w.Total
	c.StealTicks += w.Steal
	sum := func(dst *map[string]uint64, src map[string]uint64) {
		if src != nil && *dst == nil {
			*dst = map[string]uint64{}
		}
		for k, t := range src {
			(*dst)[k] += t
		}
	}
	sum(groups, w.Groups)
	sum(others, w.Others)
}

// finish works the per-request figures out once the requests are set.
func (c *soakCPU) finish(clk float64) {
	c.GatewayUS = cpuPerRequest(c.GatewayTicks, clk, c.GatewayRequests)
	c.DirectUS = cpuPerRequest(c.DirectTicks, clk, c.DirectRequests)
	c.GatewayBusyPct = busyPct(c.GatewayTicks, c.GatewayTotalTicks)
	c.DirectBusyPct = busyPct(c.DirectTicks, c.DirectTotalTicks)
	c.Groups = cpuGroups(*c, clk)
	c.Ratio, c.GatewayServerUS, c.DirectServerUS, c.ServerRatio = 0, 0, 0, 0
	if c.GatewayUS > 0 && c.DirectUS > 0 {
		c.Ratio = round3(c.GatewayUS / c.DirectUS)
	}
	gh, dh := c.GatewayGroupTicks[groupHarness], c.DirectGroupTicks[groupHarness]
	if gh > 0 && dh > 0 && gh < c.GatewayTicks && dh < c.DirectTicks {
		c.GatewayServerUS = cpuPerRequest(c.GatewayTicks-gh, clk, c.GatewayRequests)
		c.DirectServerUS = cpuPerRequest(c.DirectTicks-dh, clk, c.DirectRequests)
		if c.GatewayServerUS > 0 && c.DirectServerUS > 0 {
			c.ServerRatio = round3(c.GatewayServerUS / c.DirectServerUS)
		}
	}
}

// busyPct is busy ticks in % of total ticks (the whole host), 0 for none.
func busyPct(busy, total uint64) float64 {
	if total == 0 {
		return 0
	}
	return round3(100 * float64(busy) / float64(total))
}

// soakCPUGroup is one process group's CPU per request in each window.
type soakCPUGroup struct {
	Group     string  `json:"group"`
	GatewayUS float64 `json:"gateway_us_per_request"`
	DirectUS  float64 `json:"direct_us_per_request"`
}

// groupOther is the breakdown's row of the host's busy CPU less the groups.
const groupOther = "other"

// soakGroupOrder is the breakdown's row order.
var soakGroupOrder = []string{groupHAProxy, groupDockerProxy, groupReplicas, groupHarness, groupPulsed, groupNetdata, groupOther}

// cpuGroups turns the windows' ticks per group into µs per request, with
// "other" the host's busy ticks less the groups' (negative when the
// processes' own times, accounted per task, add up to more than the host's
// busy time in /proc/stat).
func cpuGroups(c soakCPU, clk float64) []soakCPUGroup {
	if len(c.GatewayGroupTicks) == 0 && len(c.DirectGroupTicks) == 0 {
		return nil
	}
	rest := func(total uint64, m map[string]uint64) float64 {
		sum := 0.0
		for _, v := range m {
			sum += float64(v)
		}
		return float64(total) - sum
	}
	var out []soakCPUGroup
	for _, g := range soakGroupOrder {
		gw, di := float64(c.GatewayGroupTicks[g]), float64(c.DirectGroupTicks[g])
		if g == groupOther {
			gw, di = rest(c.GatewayTicks, c.GatewayGroupTicks), rest(c.DirectTicks, c.DirectGroupTicks)
		}
		out = append(out, soakCPUGroup{Group: g, GatewayUS: cpuPerRequest(gw, clk, c.GatewayRequests), DirectUS: cpuPerRequest(di, clk, c.DirectRequests)})
	}
	return out
}

var soakCPUHeader = []string{"process group", "through the gateway µs/req", "straight to one replica µs/req"}

func soakCPURows(c soakCPU, clk float64) [][]string {
	var rows [][]string
	us := func(ticks uint64, requests int64) string {
		return fmt.Sprintf("%.1f", cpuPerRequest(ticks, clk, requests))
	}
	for _, g := range c.Groups {
		rows = append(rows, []string{g.Group, fmt.Sprintf("%.1f", g.GatewayUS), fmt.Sprintf("%.1f", g.DirectUS)})
		if g.Group != groupOther {
			continue
		}
		for _, comm := range topOthers(c, soakTopOthers) {
			rows = append(rows, []string{"· other: " + comm, us(c.GatewayOtherTicks[comm], c.GatewayRequests), us(c.DirectOtherTicks[comm], c.DirectRequests)})
		}
	}
	if len(rows) > 0 {
		rows = append(rows, []string{"whole host", fmt.Sprintf("%.1f", c.GatewayUS), fmt.Sprintf("%.1f", c.DirectUS)})
		if c.GatewayIRQTicks+c.DirectIRQTicks > 0 {
			rows = append(rows, []string{"of which irq + softirq (/proc/stat)", us(c.GatewayIRQTicks, c.GatewayRequests), us(c.DirectIRQTicks, c.DirectRequests)})
		}
	}
	return rows
}

// soakTopOthers is how many processes outside the groups the CPU tables
// name.
const soakTopOthers = 4

// topOthers returns the n commands outside the groups that used the most
// CPU over both paths, most first.
func topOthers(c soakCPU, n int) []string {
	total := map[string]uint64{}
	for _, m := range []map[string]uint64{c.GatewayOtherTicks, c.DirectOtherTicks} {
		for comm, t := range m {
			total[comm] += t
		}
	}
	comms := slices.Collect(maps.Keys(total))
	slices.SortFunc(comms, func(a, b string) int {
		if total[a] != total[b] {
			return cmp.Compare(total[b], total[a])
		}
		return strings.Compare(a, b)
	})
	return comms[:min(n, len(comms))]
}

const soakCPUCaption = "Informational, not the goal: where the CPU per request went in the soak's two CPU minutes, with HAProxy's request log on and through the gateway the replicas the autoscaler kept (own utime + stime of each group from /proc; haproxy = pulsed's HAProxy master and workers; " +
	"docker-proxy = the engine's userland proxy of the replicas' published ports, if the engine runs one (without it the kernel NATs a loopback call to a published port); replicas = the replicas' processes; " +
	"harness = this program: the load's client, HAProxy's log receiver and the pollers; netdata = the lab Netdata and its plugins; other = the host's busy CPU less the groups: " +
	"dockerd, containerd, other processes (the busiest named below it), and time no process is charged with (softirq work done while a CPU was idle); negative when the processes' own times add up to more than /proc/stat's busy time. The kernel's network work on loopback " +
	"(and the NAT to a published port) is mostly charged to the process that sends; irq + softirq, from /proc/stat, is within the groups' times where it interrupted one of their processes):"

// cpuPerRequest is µs of CPU per request from busy ticks.
func cpuPerRequest[T uint64 | float64](ticks T, clk float64, requests int64) float64 {
	if requests <= 0 || clk <= 0 {
		return 0
	}
	return round3(float64(ticks) / clk * 1e6 / float64(requests))
}

package doctor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"strconv"
	"strings"

	"github.com/pulsefaas/pulse/internal/portrange"
)

// Files the port checks read, relative to the root.
const (
	portRangeFile     = "proc/sys/net/ipv4/ip_local_port_range"
	reservedPortsFile = "proc/sys/net/ipv4/ip_local_reserved_ports"
	daemonJSONFile    = "etc/docker/daemon.json"
)

// dockerPIDFiles are where dockerd writes its pid, relative to the root.
var dockerPIDFiles = []string{"run/docker.pid", "var/run/docker.pid"}

// dockerHostHint is the fix for both port checks.
const dockerHostHint = "run Pulse's playbook (make up, or ansible/site.yml on a cluster): dockerd then takes host ports from its own range " +
	"(/etc/pulse/docker-port-range), which the kernel reserves from client sockets, and runs without the userland proxy"

// minClientPorts is the fewest ephemeral ports left to client sockets
// (HAProxy to replicas, functions calling out) below which a busy node runs
// out; Linux's default range has 28232.
const minClientPorts = 4096

// findDockerd returns the pid of this host's dockerd: the one in
// /run/docker.pid (dockerd writes it, with systemd too), else the lowest pid
// named dockerd (nested engines, such as the multi-node lab's, started later).
// pid 0 with no error means none runs here.
func findDockerd(ctx context.Context, root fs.FS) (int, error) {
	if root == nil {
		return 0, errors.New("no host file system configured")
	}
	for _, f := range dockerPIDFiles {
		s, err := readTrimmed(root, f)
		if err != nil {
			continue
		}
		if pid, err := strconv.Atoi(s); err == nil && pid > 0 {
			if comm, err := readTrimmed(root, fmt.Sprintf("proc/%d/comm", pid)); err == nil && comm == "dockerd" {
				return pid, nil
			}
		}
	}
	pids, err := findProcesses(ctx, root, "dockerd")
	if err != nil || len(pids) == 0 {
		return 0, err
	}
	return pids[0], nil
}

// checkHostPorts compares the port range dockerd really uses -- read through
// its mount namespace, /proc/<pid>/root, where the playbook's dockerd wrapper
// bind-mounts its own range over the kernel's file -- with the kernel's
// reserved ports and client range.
func checkHostPorts(ctx context.Context, p Probes) Result {
	pid, err := findDockerd(ctx, p.Root)
	switch {
	case err != nil:
		return Result{Status: WARN, Detail: "dockerd: " + err.Error(), Hint: dockerHostHint}
	case pid == 0:
		return Result{Status: WARN, Detail: "no dockerd runs on this host: nothing to check",
			Hint: "run pulse doctor on every node; start dockerd with Pulse's playbook (make up, or ansible/site.yml on a cluster)"}
	}
	viewFile := fmt.Sprintf("proc/%d/root/%s", pid, portRangeFile)
	s, err := readTrimmed(p.Root, viewFile)
	if err != nil {
		hint := dockerHostHint
		if errors.Is(err, fs.ErrPermission) {
			hint = "run pulse doctor as root: only root reads dockerd's view of /proc"
		}
		return Result{Status: WARN, Detail: fmt.Sprintf("dockerd (pid %d): %v", pid, err), Hint: hint}
	}
	docker, err := portrange.ParseRange(s)
	if err != nil {
		return Result{Status: WARN, Detail: fmt.Sprintf("/%s: %v", viewFile, err), Hint: dockerHostHint}
	}
	s, err = readTrimmed(p.Root, portRangeFile)
	if err != nil {
		return Result{Status: WARN, Detail: err.Error(), Hint: "cat /" + portRangeFile}
	}
	kernel, err := portrange.ParseRange(s)
	if err != nil {
		return Result{Status: WARN, Detail: fmt.Sprintf("/%s: %v", portRangeFile, err), Hint: "cat /" + portRangeFile}
	}
	s, err = readTrimmed(p.Root, reservedPortsFile)
	if err != nil {
		return Result{Status: WARN, Detail: err.Error(), Hint: "cat /" + reservedPortsFile}
	}
	reserved, err := portrange.ParseList(s)
	if err != nil {
		return Result{Status: WARN, Detail: fmt.Sprintf("/%s: %v", reservedPortsFile, err), Hint: "cat /" + reservedPortsFile}
	}

	reservedText := reserved.String()
	if reservedText == "" {
		reservedText = "none"
	}
	clients := reserved.Outside(kernel)
	if open := reserved.Outside(docker); len(open) > 0 {
		how := fmt.Sprintf("dockerd (pid %d) assigns host ports from %s", pid, docker)
		if docker == kernel {
			how += ", the kernel's client range"
		}
		return Result{Status: FAIL,
			Detail: fmt.Sprintf("%s; %d of them not reserved (net.ipv4.ip_local_reserved_ports: %s): under client load a new replica can fail with \"bind: address already in use\"",
				how, open.Len(), reservedText),
			Hint: dockerHostHint}
	}
	if clients.Len() == 0 {
		return Result{Status: FAIL,
			Detail: fmt.Sprintf("no client ports left: the kernel's range %s is all reserved (%s)", kernel, reservedText),
			Hint:   "widen net.ipv4.ip_local_port_range, or give dockerd a smaller range: set pulse_docker_port_range in the playbook's inventory and run it (make up)"}
	}
	detail := fmt.Sprintf("dockerd %s (reserved), clients %s (%d ports)", docker, clients, clients.Len())
	if clients.Len() < minClientPorts {
		return Result{Status: WARN, Detail: fmt.Sprintf("%s: fewer than %d", detail, minClientPorts),
			Hint: "widen net.ipv4.ip_local_port_range, or give dockerd a smaller range: set pulse_docker_port_range in the playbook's inventory and run it (make up)"}
	}
	return Result{Status: OK, Detail: detail}
}

// parentPID returns the parent of pid from /proc/<pid>/stat, 0 if unknown.
func parentPID(root fs.FS, pid int) int {
	b, err := fs.ReadFile(root, fmt.Sprintf("proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// "pid (comm) state ppid ...": comm may hold spaces and parentheses.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 2 {
		return 0
	}
	ppid, _ := strconv.Atoi(f[1])
	return ppid
}

// proxySetting is what a configuration says of the userland proxy.
type proxySetting int

const (
	proxyUnset proxySetting = iota
	proxyOn
	proxyOff
)

// dockerdArgs returns dockerd's arguments (after the program name).
func dockerdArgs(root fs.FS, pid int) ([]string, error) {
	b, err := fs.ReadFile(root, fmt.Sprintf("proc/%d/cmdline", pid))
	if err != nil {
		return nil, err
	}
	args := strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
	if len(args) > 0 {
		args = args[1:]
	}
	return args, nil
}

// flagValue returns the value of --name=value or "--name value" in args,
// and whether it is there; a boolean flag alone (--name) gives "true".
func flagValue(args []string, name string, boolean bool) (string, bool) {
	for i, a := range args {
		if v, ok := strings.CutPrefix(a, "--"+name+"="); ok {
			return v, true
		}
		if a == "--"+name {
			if boolean {
				return "true", true
			}
			if i+1 < len(args) {
				return args[i+1], true
			}
		}
	}
	return "", false
}

// parseDaemonJSONProxy returns daemon.json's "userland-proxy".
func parseDaemonJSONProxy(b []byte) (proxySetting, error) {
	var cfg map[string]json.RawMessage
	if err := json.Unmarshal(b, &cfg); err != nil {
		return proxyUnset, err
	}
	raw, ok := cfg["userland-proxy"]
	if !ok || string(raw) == "null" {
		return proxyUnset, nil
	}
	var on bool
	if err := json.Unmarshal(raw, &on); err != nil {
		return proxyUnset, fmt.Errorf(`"userland-proxy": %s is not a boolean`, raw)
	}
	if on {
		return proxyOn, nil
	}
	return proxyOff, nil
}

// loopbackSkipsDNAT reports whether iptables' nat OUTPUT chain (iptables -t
// nat -S OUTPUT) sends local traffic to Docker's DNAT chain except for
// 127.0.0.0/8: the rule dockerd installs when the userland proxy serves
// loopback. Without the proxy the rule has no such exception.
func loopbackSkipsDNAT(rules string) (skips, found bool) {
	for line := range strings.Lines(rules) {
		f := strings.Fields(line)
		if len(f) < 2 || f[0] != "-A" || f[1] != "OUTPUT" || !slices.Contains(pairs(f), [2]string{"-j", "DOCKER"}) {
			continue
		}
		found = true
		if strings.Contains(line, "! -d 127.0.0.0/8") || strings.Contains(line, "! --dst 127.0.0.0/8") {
			skips = true
		}
	}
	return skips, found
}

// pairs returns the consecutive pairs of f.
func pairs(f []string) [][2]string {
	var p [][2]string
	for i := 0; i+1 < len(f); i++ {
		p = append(p, [2]string{f[i], f[i+1]})
	}
	return p
}

// checkUserlandProxy reports whether Docker's userland proxy is on: from the
// configuration (daemon.json, or dockerd's --userland-proxy flag; on by
// default) and from the running engine (docker-proxy processes; Docker's
// nat OUTPUT rule). `docker info` does not show the setting.
func checkUserlandProxy(ctx context.Context, p Probes) Result {
	if p.Root == nil {
		return Result{Status: WARN, Detail: "no host file system configured"}
	}
	pid, err := findDockerd(ctx, p.Root)
	if err != nil {
		return Result{Status: WARN, Detail: "dockerd: " + err.Error(), Hint: dockerHostHint}
	}
	if pid == 0 {
		return Result{Status: WARN, Detail: "no dockerd runs on this host: nothing to check",
			Hint: "run pulse doctor on every node; start dockerd with Pulse's playbook (make up, or ansible/site.yml on a cluster)"}
	}

	// The configuration the running dockerd was started with.
	setting, why := proxyUnset, ""
	args, _ := dockerdArgs(p.Root, pid)
	cfgFile := daemonJSONFile
	if v, ok := flagValue(args, "config-file", false); ok {
		cfgFile = strings.TrimPrefix(v, "/")
	}
	if v, ok := flagValue(args, "userland-proxy", true); ok {
		why = "dockerd --userland-proxy=" + v
		if on, err := strconv.ParseBool(v); err == nil && !on {
			setting = proxyOff
		} else {
			setting = proxyOn
		}
	} else if b, err := fs.ReadFile(p.Root, cfgFile); err == nil {
		if setting, err = parseDaemonJSONProxy(b); err != nil {
			return Result{Status: WARN, Detail: fmt.Sprintf("/%s: %v", cfgFile, err),
				Hint: "fix the file (dockerd does not start with an invalid one), then run Pulse's playbook (make up)"}
		}
		switch setting {
		case proxyOff:
			why = `"userland-proxy": false in /` + cfgFile
		case proxyOn:
			why = `"userland-proxy": true in /` + cfgFile
		default:
			why = `Docker's default: /` + cfgFile + ` does not set "userland-proxy"`
		}
	} else if errors.Is(err, fs.ErrNotExist) {
		why = "Docker's default: no /" + cfgFile
	} else {
		return Result{Status: WARN, Detail: fmt.Sprintf("/%s: %v", cfgFile, err), Hint: "run pulse doctor as root"}
	}

	// What the running engine does.
	var live []string
	proxies, err := findProcesses(ctx, p.Root, "docker-proxy")
	if err == nil {
		// Only this dockerd's: a nested engine (the lab's nodes) has its own.
		proxies = slices.DeleteFunc(proxies, func(px int) bool { return parentPID(p.Root, px) != pid })
	}
	if err == nil && len(proxies) > 0 {
		what := "1 docker-proxy process"
		if len(proxies) > 1 {
			what = fmt.Sprintf("%d docker-proxy processes", len(proxies))
		}
		live = append(live, fmt.Sprintf("%s running (pids %s)", what, pidList(proxies)))
	}
	if p.Exec != nil {
		if out, err := call(ctx, p, func(ctx context.Context) ([]byte, error) {
			return p.Exec(ctx, "iptables", "-w", "-t", "nat", "-S", "OUTPUT")
		}); err == nil {
			if skips, _ := loopbackSkipsDNAT(string(out)); skips {
				live = append(live, "Docker's nat OUTPUT rule leaves 127.0.0.0/8 to the proxy")
			}
		}
	}

	switch {
	case setting != proxyOff:
		detail := "on (" + why + ")"
		if len(live) > 0 {
			detail += ": " + strings.Join(live, "; ")
		}
		return Result{Status: FAIL, Detail: detail + "; a docker-proxy process copies every request to 127.0.0.1:<host port>",
			Hint: dockerHostHint}
	case len(live) > 0:
		return Result{Status: FAIL,
			Detail: fmt.Sprintf("off (%s), but the running dockerd (pid %d) still uses it: %s", why, pid, strings.Join(live, "; ")),
			Hint:   "restart dockerd: run Pulse's playbook (make up, or ansible/site.yml on a cluster)"}
	}
	return Result{Status: OK, Detail: fmt.Sprintf("off (%s): 127.0.0.1:<host port> reaches replicas through iptables DNAT", why)}
}

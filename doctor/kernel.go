package doctor

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"strconv"
	"strings"
)

// kernelConfig is a kernel's build configuration: option → "y", "m", a
// value, or "n" for "# CONFIG_X is not set".
type kernelConfig struct {
	opts   map[string]string
	source string // the file it came from, with its leading slash
}

// readKernelConfig reads /proc/config.gz, or else /boot/config-$(uname -r).
// It returns a nil config, not an error, when neither exists.
func readKernelConfig(root fs.FS) (*kernelConfig, error) {
	if b, err := fs.ReadFile(root, "proc/config.gz"); err == nil {
		zr, err := gzip.NewReader(bytes.NewReader(b))
		if err != nil {
			return nil, fmt.Errorf("/proc/config.gz: %w", err)
		}
		opts, err := parseKernelConfig(zr)
		if err != nil {
			return nil, fmt.Errorf("/proc/config.gz: %w", err)
		}
		return &kernelConfig{opts: opts, source: "/proc/config.gz"}, nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("/proc/config.gz: %w", err)
	}
	release, err := readTrimmed(root, "proc/sys/kernel/osrelease")
	if err != nil || release == "" || strings.Contains(release, "/") {
		return nil, nil
	}
	name := "boot/config-" + release
	f, err := root.Open(name)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("/%s: %w", name, err)
	}
	defer f.Close()
	opts, err := parseKernelConfig(f)
	if err != nil {
		return nil, fmt.Errorf("/%s: %w", name, err)
	}
	return &kernelConfig{opts: opts, source: "/" + name}, nil
}

// parseKernelConfig parses a kernel .config.
func parseKernelConfig(r io.Reader) (map[string]string, error) {
	opts := map[string]string{}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if name, ok := strings.CutPrefix(line, "# "); ok {
			if name, ok := strings.CutSuffix(name, " is not set"); ok && strings.HasPrefix(name, "CONFIG_") {
				opts[name] = "n"
			}
			continue
		}
		if name, value, ok := strings.Cut(line, "="); ok && strings.HasPrefix(name, "CONFIG_") {
			opts[name] = value
		}
	}
	return opts, sc.Err()
}

// kernelFeature is what the host shows of one kernel feature.
type kernelFeature struct {
	present bool   // known to be there
	absent  bool   // known not to be there
	detail  string // the evidence
	err     error  // a probe that failed on the way
}

// probeFeature looks for a kernel feature: first the runtime evidence
// (procFile if not empty, the module in /proc/modules or /sys/module), then
// the build configuration.
func probeFeature(root fs.FS, procFile, module, option string) kernelFeature {
	if root == nil {
		return kernelFeature{err: errors.New("no host file system configured")}
	}
	if procFile != "" && exists(root, procFile) {
		return kernelFeature{present: true, detail: "available (/" + procFile + ")"}
	}
	if exists(root, "sys/module/"+module) {
		return kernelFeature{present: true, detail: "available (/sys/module/" + module + ")"}
	}
	if b, err := fs.ReadFile(root, "proc/modules"); err == nil {
		for line := range strings.Lines(string(b)) {
			if f := strings.Fields(line); len(f) > 0 && f[0] == module {
				return kernelFeature{present: true, detail: "module " + module + " loaded (/proc/modules)"}
			}
		}
	}
	cfg, err := readKernelConfig(root)
	if err != nil {
		return kernelFeature{err: err}
	}
	if cfg == nil {
		none := "no " + module + " module, no kernel config"
		if procFile != "" {
			none = "no /" + procFile + ", " + none
		}
		return kernelFeature{detail: "unknown (" + none + ")"}
	}
	switch v := cfg.opts[option]; v {
	case "y":
		return kernelFeature{present: true, detail: fmt.Sprintf("built in (%s=y in %s)", option, cfg.source)}
	case "m":
		return kernelFeature{present: true,
			detail: fmt.Sprintf("module (%s=m in %s), loaded on first use", option, cfg.source)}
	case "", "n":
		return kernelFeature{absent: true, detail: fmt.Sprintf("absent (%s not set in %s)", option, cfg.source)}
	default:
		return kernelFeature{detail: fmt.Sprintf("unknown (%s=%s in %s)", option, v, cfg.source)}
	}
}

func checkIPVS(_ context.Context, p Probes) Result {
	f := probeFeature(p.Root, "proc/net/ip_vs", "ip_vs", "CONFIG_IP_VS")
	const why = "Swarm's routing mesh and service VIPs do not work"
	const hint = "fine for Pulse: it publishes host-mode ports and balances with HAProxy, not the routing mesh"
	switch {
	case f.err != nil:
		return Result{Status: WARN, Detail: fmt.Sprintf("unknown (%v); without IPVS %s", f.err, why), Hint: hint}
	case f.present:
		return Result{Status: OK, Detail: f.detail}
	case f.absent:
		return Result{Status: WARN, Detail: f.detail + ": " + why, Hint: hint}
	default:
		return Result{Status: WARN, Detail: f.detail + "; without IPVS " + why, Hint: hint}
	}
}

func checkVXLAN(_ context.Context, p Probes) Result {
	f := probeFeature(p.Root, "", "vxlan", "CONFIG_VXLAN")
	const why = "multi-node overlay networks need it"
	const hint = "one node works without it; to try: ip link add vx0 type vxlan id 42 dstport 4789 && ip link del vx0"
	switch {
	case f.err != nil:
		return Result{Status: WARN, Detail: fmt.Sprintf("unknown (%v): %s", f.err, why), Hint: hint}
	case f.present:
		return Result{Status: OK, Detail: f.detail}
	default:
		return Result{Status: WARN, Detail: f.detail + ": " + why, Hint: hint}
	}
}

// Limits below which a busy control node runs out: Docker, Netdata and
// config watchers each hold inotify instances; HAProxy holds two
// descriptors per proxied connection.
const (
	minInotifyWatches   = 65536
	minInotifyInstances = 512
	minNoFile           = 65536
)

// inotifyDir holds the inotify limits, relative to the root.
const inotifyDir = "proc/sys/fs/inotify/"

// inotifyLimits are the files under inotifyDir checkInotify reads, with
// their minimums.
var inotifyLimits = []struct {
	name string
	min  uint64
}{{"max_user_watches", minInotifyWatches}, {"max_user_instances", minInotifyInstances}}

func checkInotify(_ context.Context, p Probes) Result {
	if p.Root == nil {
		return Result{Status: WARN, Detail: "no host file system configured"}
	}
	var parts, low, errs []string
	for _, l := range inotifyLimits {
		path := inotifyDir + l.name
		s, err := readTrimmed(p.Root, path)
		if err != nil {
			errs = append(errs, err.Error())
			continue
		}
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			errs = append(errs, fmt.Sprintf("/%s: %q is not a number", path, s))
			continue
		}
		if n < l.min {
			parts = append(parts, fmt.Sprintf("%s %d (< %d)", l.name, n, l.min))
			low = append(low, fmt.Sprintf("fs.inotify.%s=%d", l.name, l.min))
		} else {
			parts = append(parts, fmt.Sprintf("%s %d", l.name, n))
		}
	}
	if len(errs) > 0 {
		return Result{Status: WARN, Detail: strings.Join(append(parts, errs...), "; "),
			Hint: "cat /proc/sys/fs/inotify/max_user_watches /proc/sys/fs/inotify/max_user_instances"}
	}
	detail := strings.Join(parts, ", ")
	if len(low) > 0 {
		return Result{Status: WARN, Detail: detail,
			Hint: fmt.Sprintf("sysctl -w %s, and put the same in /etc/sysctl.d/90-pulse.conf", strings.Join(low, " "))}
	}
	return Result{Status: OK, Detail: detail}
}

func checkNoFile(_ context.Context, p Probes) Result {
	if p.NoFile == nil {
		return Result{Status: WARN, Detail: "no RLIMIT_NOFILE probe configured"}
	}
	soft, hard, err := p.NoFile()
	if err != nil {
		return Result{Status: WARN, Detail: fmt.Sprintf("getrlimit RLIMIT_NOFILE: %v", err), Hint: "ulimit -n; ulimit -Hn"}
	}
	detail := fmt.Sprintf("soft %s, hard %s", rlimitString(soft), rlimitString(hard))
	switch {
	case hard < minNoFile:
		return Result{Status: WARN, Detail: fmt.Sprintf("%s (< %d)", detail, minNoFile),
			Hint: fmt.Sprintf("raise the hard limit: LimitNOFILE=%d in the systemd units (docker, pulsed, haproxy), or nofile in /etc/security/limits.conf; HAProxy fails to start with maxconn above about half of it", minNoFile)}
	case soft < minNoFile:
		return Result{Status: WARN, Detail: fmt.Sprintf("%s (soft < %d)", detail, minNoFile),
			Hint: fmt.Sprintf("ulimit -n %d in the shell that starts Pulse, or LimitNOFILE=%d in its systemd unit", minNoFile, minNoFile)}
	}
	return Result{Status: OK, Detail: detail}
}

func rlimitString(n uint64) string {
	if n == ^uint64(0) {
		return "unlimited"
	}
	return strconv.FormatUint(n, 10)
}

// readTrimmed reads a small file, such as one under /proc/sys, without its
// surrounding space. Errors name the file with its leading slash.
func readTrimmed(root fs.FS, name string) (string, error) {
	b, err := fs.ReadFile(root, name)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			return "", fmt.Errorf("/%s: %w", name, pe.Err)
		}
		return "", fmt.Errorf("/%s: %w", name, err)
	}
	return strings.TrimSpace(string(b)), nil
}

func exists(root fs.FS, name string) bool {
	_, err := fs.Stat(root, name)
	return err == nil
}

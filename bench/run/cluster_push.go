package main

// The cluster suite's push stage (bench/README.md, "Push"): pushes to one
// node and to three, a one-layer change, the diagnostics, each profiled.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/pulsefaas/pulse/bench/report"
	"github.com/pulsefaas/pulse/function"
)

// Variants of the push trials (label variant; label test: push, ssh, local).
const (
	pushDefault = "provision (x/crypto default cipher order: aes128-gcm)"
	pushLimited = "provision, at most 2 loads at once"
	pushLocal   = "docker load in the node"
	layerFull   = "A: full (fresh base + function layer)"
	layerThin   = "B: function layer changed (same base)"
	layerNonce  = 32 // random bytes appended to the layer images' base and handler
	pushTimeout = 3 * time.Minute
)

// pushCiphers are the ciphers the diagnostics compare (x/crypto's names).
var pushCiphers = []string{"aes128-gcm@openssh.com", "chacha20-poly1305@openssh.com", "aes128-ctr"}

// dialFunc reaches a node's engine.
type dialFunc = func(context.Context, labNode) (function.NodeEngine, error)

// trialRunner waits for a quiet host and runs f into a new row of kind.
type trialRunner = func(kind, test, variant string, round int, nodes []labNode, f func(*report.Row) error)

// push runs the goal's trials, the layer-change pairs, then the diagnostics.
func (b *clusterBench) push(ctx context.Context) error {
	one, all := b.lab.nodes[1:2], b.lab.nodes
	var stop error
	run := func(kind, test, variant string, round int, nodes []labNode, f func(*report.Row) error) {
		if stop != nil {
			return
		}
		if _, _, stop = waitQuiet(ctx, b.env.clk, b.cfg.QuietWait); stop != nil {
			return
		}
		r := report.NewRow(kind, "test", test, "variant", variant, "nodes", len(nodes), "round", round+1)
		r.Fail(f(r))
		b.rep.Add(r)
		b.log.Info("push trial", "test", test, "variant", variant, "nodes", len(nodes), "wall_s", r.V("wall_s"),
			"host_cpu_s", r.V("host_cpu_s"), "node_cpu_s", r.V("node_cpu_s"), "busy_cores", r.V("busy_cores"), "err", r.Error)
		stop = ctx.Err()
	}
	counts := func(round int) [][]labNode { return rotate([][]labNode{one, all}, round) }
	for round := range b.plan.Trials {
		for _, nodes := range counts(round) {
			run("push", "push", pushDefault, round, nodes, func(r *report.Row) error { return b.pushFresh(ctx, r, nodes, b.lab.provisionDial, 0) })
		}
	}
	for round := range b.plan.Trials {
		for _, nodes := range counts(round) {
			b.layerPair(ctx, rand.Reader, round, nodes, run)
		}
	}
	for round := range b.plan.DiagTrials {
		for _, nodes := range counts(round) {
			for _, c := range pushCiphers {
				run("push", "ssh", c, round, nodes, func(r *report.Row) error { return b.sshTrial(ctx, r, c, nodes) })
			}
			run("push", "local", pushLocal, round, nodes, func(r *report.Row) error { return b.localLoad(ctx, r, nodes) })
			for _, c := range pushCiphers {
				run("push", "push", "cipher "+c, round, nodes, func(r *report.Row) error { return b.pushFresh(ctx, r, nodes, b.lab.cipherDial(c), 0) })
			}
		}
		run("push", "push", pushLimited, round, all, func(r *report.Row) error { return b.pushFresh(ctx, r, all, b.lab.provisionDial, 2) })
	}
	return stop
}

// freshImage assembles an image no node has: a random 16 MiB payload.
func (b *clusterBench) freshImage(r *report.Row) (function.Image, error) {
	data := make([]byte, clusterPayload)
	if _, err := rand.Read(data); err != nil {
		return function.Image{}, err
	}
	img, err := function.Assemble(function.ImageSpec{Files: []function.File{{Path: "/payload", Mode: 0o755, Content: data}},
		Entrypoint: []string{"/payload"}, User: function.ImageUser, Labels: benchLabels(b.run)})
	r.Put("archive_bytes", float64(len(img.Archive)))
	return img, err
}

// dropImage removes the images ids from nodes (docker exec, not measured).
func dropImage(ctx context.Context, nodes []labNode, ids ...string) {
	_ = parallel(nodes, func(_ int, n labNode) error {
		_, err := nodeExec(context.WithoutCancel(ctx), n, nil, "sh", "-c", "docker rmi -f "+strings.Join(ids, " ")+" >/dev/null 2>&1; rm -f /tmp/pbench-img.tar")
		return err
	})
}

// pushFresh pushes a fresh image to nodes (see distribute).
func (b *clusterBench) pushFresh(ctx context.Context, r *report.Row, nodes []labNode, dial dialFunc, limit int) error {
	img, err := b.freshImage(r)
	if err != nil {
		return err
	}
	defer dropImage(ctx, nodes, img.ID)
	return b.distribute(ctx, r, nodes, dial, limit, img, false)
}

// distribute pushes img to nodes with ClusterDistributor over dial's engines
// (limit > 0: as many loads at once), profiled; each node must load it.
func (b *clusterBench) distribute(ctx context.Context, r *report.Row, nodes []labNode, dial dialFunc, limit int, img function.Image, thin bool) error {
	ctx, cancel := context.WithTimeout(ctx, pushTimeout)
	defer cancel()
	var took time.Duration
	var res []function.NodeResult
	err := b.profiled(r, nodes, func(p *pushProfile) (err error) {
		var sem chan struct{}
		if limit > 0 {
			sem = make(chan struct{}, limit)
		}
		wrapped := func(ctx context.Context, n labNode) (function.NodeEngine, error) {
			e, err := dial(ctx, n)
			if inner := e.Close; err == nil {
				e.Close = func() error { p.beforeClose(n.Name); return inner() }
				if sem != nil {
					e.API = limitedLoader{e.API, sem}
				}
			}
			return e, err
		}
		res, err = function.ClusterDistributor{Nodes: labEngines{lab: b.lab, only: nodes, dial: wrapped, took: &took}}.EnsureAll(ctx, img)
		return err
	})
	var slowest, thinLoads, sent, full float64
	for _, nr := range res {
		slowest, sent, full = max(slowest, nr.Elapsed.Seconds()), max(sent, float64(nr.Sent)), max(full, float64(nr.Full))
		if nr.Thin {
			thinLoads++
		}
	}
	r.PutAll(map[string]float64{"dial_s": took.Seconds(), "slowest_node_s": slowest, "loads": float64(len(res)), "thin_loads": thinLoads,
		"sent_max_bytes": sent, "full_bytes": full})
	if err != nil {
		return err
	}
	return checkLoads(res, thin)
}

// checkLoads says what is wrong with a push's results: every node must have
// loaded the image, the thin archive if thin, the full one otherwise.
func checkLoads(res []function.NodeResult, thin bool) error {
	for _, r := range res {
		switch {
		case r.Outcome != "loaded":
			return fmt.Errorf("%s: %s, want loaded (a fresh image)", r.Node, r.Outcome)
		case thin && !r.Thin:
			return fmt.Errorf("%s: sent the full archive (%d bytes; fallback: %v), want the thin one: the node held the base layer", r.Node, r.Sent, r.Fallback)
		case !thin && r.Thin:
			return fmt.Errorf("%s: sent the thin archive, want the full one: no node held the fresh base layer", r.Node)
		}
	}
	return nil
}

// limitedLoader lets a load run (until its answer closes) only while it
// holds a place in sem.
type limitedLoader struct {
	function.NodeAPI
	sem chan struct{}
}

// ImageLoad waits for a place, then loads.
func (l limitedLoader) ImageLoad(ctx context.Context, r io.Reader, opts ...client.ImageLoadOption) (image.LoadResponse, error) {
	select {
	case l.sem <- struct{}{}:
	case <-ctx.Done():
		return image.LoadResponse{}, ctx.Err()
	}
	resp, err := l.NodeAPI.ImageLoad(ctx, r, opts...)
	if err != nil {
		<-l.sem
		return resp, err
	}
	resp.Body = releaseOnClose{resp.Body, sync.OnceFunc(func() { <-l.sem })}
	return resp, nil
}

// releaseOnClose calls release when closed.
type releaseOnClose struct {
	io.ReadCloser
	release func()
}

// Close closes the body and releases.
func (r releaseOnClose) Close() error { defer r.release(); return r.ReadCloser.Close() }

// sshTrial sends a fresh archive with cipher to `cat > /dev/null` on each
// node at once (dials not timed): the SSH transport alone.
func (b *clusterBench) sshTrial(ctx context.Context, r *report.Row, cipher string, nodes []labNode) error {
	img, err := b.freshImage(r)
	if err != nil {
		return err
	}
	clients := make([]*ssh.Client, len(nodes))
	defer func() {
		for _, c := range clients {
			if c != nil {
				c.Close()
			}
		}
	}()
	if err := parallel(nodes, func(i int, n labNode) (err error) { clients[i], err = b.lab.sshDial(ctx, n, cipher); return err }); err != nil {
		return err
	}
	return b.profiled(r, nodes, func(p *pushProfile) error {
		return parallel(nodes, func(i int, n labNode) error { defer p.beforeClose(n.Name); return sshSink(clients[i], img.Archive) })
	})
}

// localLoad copies a fresh archive into each node (not timed), then runs
// `docker load -i` of it in every node at once: no SSH.
func (b *clusterBench) localLoad(ctx context.Context, r *report.Row, nodes []labNode) error {
	img, err := b.freshImage(r)
	if err != nil {
		return err
	}
	defer dropImage(ctx, nodes, img.ID)
	for _, n := range nodes {
		if _, err := nodeExec(ctx, n, img.Archive, "sh", "-c", "cat > /tmp/pbench-img.tar"); err != nil {
			return err
		}
	}
	return b.profiled(r, nodes, func(*pushProfile) error {
		return parallel(nodes, func(_ int, n labNode) error {
			out, err := nodeExec(ctx, n, nil, "docker", "load", "-q", "-i", "/tmp/pbench-img.tar")
			if err == nil && !strings.Contains(out, strings.TrimPrefix(img.ID, "sha256:")) {
				err = fmt.Errorf("%s: docker load said %q, want %s", n.Name, truncate(strings.TrimSpace(out), 200), img.ID)
			}
			return err
		})
	})
}

// layerPair runs one layer-change trial on nodes: a fresh pair of images,
// A pushed (full), then B (thin).
func (b *clusterBench) layerPair(ctx context.Context, rnd io.Reader, round int, nodes []labNode, run trialRunner) {
	a, bImg, err := layerChangeImages(rnd, b.wd, b.hostFn, benchLabels(b.run))
	sizes := map[string]float64{}
	if err == nil {
		sizes = map[string]float64{"base_file_bytes": float64(len(b.wd) + layerNonce), "function_file_bytes": float64(len(b.hostFn) + layerNonce),
			"archive_bytes": float64(len(a.Archive)), "thin_bytes": float64(len(bImg.Thin))}
		defer dropImage(ctx, nodes, bImg.ID, a.ID)
	}
	fullOK := false
	run("layer", "layer", layerFull, round, nodes, func(r *report.Row) error {
		if r.PutAll(sizes); err == nil {
			err = b.distribute(ctx, r, nodes, b.lab.provisionDial, 0, a, false)
		}
		fullOK = err == nil
		return err
	})
	run("layer", "layer", layerThin, round, nodes, func(r *report.Row) error {
		if r.PutAll(sizes); !fullOK {
			return errors.New("not run: A's push failed")
		}
		return b.distribute(ctx, r, nodes, b.lab.provisionDial, 0, bImg, true)
	})
}

// layerChangeImages assembles two images in pulse build's fork-mode layout
// sharing a fresh base layer (wd + random bytes), their handlers fn + others.
func layerChangeImages(rnd io.Reader, wd, fn []byte, labels map[string]string) (full, changed function.Image, err error) {
	withNonce := func(b []byte) ([]byte, error) {
		n := make([]byte, layerNonce)
		if _, err := io.ReadFull(rnd, n); err != nil {
			return nil, fmt.Errorf("layer-change images: random bytes: %w", err)
		}
		return append(slices.Clip(b), n...), nil
	}
	base, err := withNonce(wd)
	if err != nil {
		return full, changed, err
	}
	for _, img := range []*function.Image{&full, &changed} {
		handler, err := withNonce(fn)
		if err != nil {
			return full, changed, err
		}
		if *img, err = function.Assemble(function.ImageSpec{
			BaseFiles:  []function.File{{Path: function.WatchdogPath, Mode: 0o755, Content: base}},
			Files:      []function.File{{Path: function.FunctionPath, Mode: 0o755, Content: handler}},
			Entrypoint: []string{function.WatchdogPath}, User: function.ImageUser, Labels: labels,
		}); err != nil {
			return full, changed, fmt.Errorf("layer-change images: %w", err)
		}
	}
	if full.BaseLayer == "" || full.BaseLayer != changed.BaseLayer || full.ID == changed.ID {
		return full, changed, fmt.Errorf("layer-change images: base layers %q and %q, IDs %s and %s: want one shared base layer and two images",
			full.BaseLayer, changed.BaseLayer, full.ID, changed.ID)
	}
	return full, changed, nil
}

// --- the profile ---

// nodeGroup is the group of a node's process by its command name.
func nodeGroup(comm string) string {
	switch {
	case comm == "sshd" || comm == "dockerd":
		return comm
	case comm == "docker":
		return "docker_cli"
	case comm == "containerd" || strings.HasPrefix(comm, "containerd-shim"):
		return "containerd"
	}
	return "other"
}

// hostStat is /proc/stat's cpu line: hostCPU and iowait, in ticks.
type hostStat struct {
	hostCPU
	IOWait uint64
}

// readHostStat reads procDir/stat.
func readHostStat(procDir string) (hostStat, error) {
	b, err := os.ReadFile(filepath.Join(procDir, "stat"))
	if err != nil {
		return hostStat{}, fmt.Errorf("host cpu: %w", err)
	}
	h, err := parseHostCPU(bytes.NewReader(b))
	if err != nil {
		return hostStat{}, err
	}
	f := strings.Fields(string(b)) // the first line: cpu user nice system idle iowait ...
	if len(f) < 6 || f[0] != "cpu" {
		return hostStat{}, errors.New("parse /proc/stat: no iowait")
	}
	io, err := strconv.ParseUint(f[5], 10, 64)
	return hostStat{h, io}, err
}

// diskWrites is the bytes written to the disks whole names in a
// /proc/diskstats table; loop, ram and zram devices are left out.
func diskWrites(diskstats string, whole func(name string) bool) int64 {
	var bytes int64
	sc := bufio.NewScanner(strings.NewReader(diskstats))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 10 || strings.HasPrefix(f[2], "loop") || strings.HasPrefix(f[2], "ram") || strings.HasPrefix(f[2], "zram") || !whole(f[2]) {
			continue
		}
		n, _ := strconv.ParseInt(f[9], 10, 64)
		bytes += n * 512
	}
	return bytes
}

// readDiskWrites is diskWrites of /proc/diskstats for /sys/block's disks.
func readDiskWrites() int64 {
	b, _ := os.ReadFile("/proc/diskstats")
	return diskWrites(string(b), func(name string) bool { _, err := os.Stat(filepath.Join("/sys/block", name)); return err == nil })
}

// procTicks is a node process's group and CPU ticks (with reaped children).
type procTicks struct {
	group string
	ticks uint64
}

// nodeProcs reads the processes directly in n's cgroup.
func nodeProcs(n labNode) map[procKey]procTicks {
	out := map[procKey]procTicks{}
	b, _ := os.ReadFile(n.cgroupFile("cpuacct", "cgroup.procs"))
	for _, l := range strings.Fields(string(b)) {
		if pid, err := strconv.Atoi(l); err == nil {
			if st, err := readStat("/proc", pid); err == nil {
				out[procKey{st.PID, st.StartTime}] = procTicks{nodeGroup(st.Comm), st.UTime + st.STime + st.CUTime + st.CSTime}
			}
		}
	}
	return out
}

// selfCPU is this process's user + system time (getrusage).
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// pushProfile is the readings before a trial, and each node's processes
// just before its connection closes (its sshd and dial-stdio exit with it).
type pushProfile struct {
	nodes          []labNode
	start          time.Time
	self           time.Duration
	host           hostStat
	disk           int64
	cgNS           map[string]int64
	mu             sync.Mutex
	procs0, procs1 map[string]map[procKey]procTicks
}

// profiled runs f on nodes, profiled, into r: wall_s is f's time.
func (b *clusterBench) profiled(r *report.Row, nodes []labNode, f func(*pushProfile) error) error {
	p := &pushProfile{nodes: nodes, cgNS: map[string]int64{}, procs0: map[string]map[procKey]procTicks{}, procs1: map[string]map[procKey]procTicks{}}
	for _, n := range nodes {
		p.procs0[n.Name] = nodeProcs(n)
		p.cgNS[n.Name], _ = n.cgroupInt("cpuacct", "cpuacct.usage")
	}
	p.host, _ = readHostStat("/proc")
	p.disk, p.self, p.start = readDiskWrites(), selfCPU(), time.Now()
	err := f(p)
	r.Put("wall_s", time.Since(p.start).Seconds())
	p.finish(r, b.env.clk)
	return err
}

// beforeClose reads node's processes, once, before its connection closes.
func (p *pushProfile) beforeClose(node string) {
	if i := slices.IndexFunc(p.nodes, func(n labNode) bool { return n.Name == node }); i >= 0 {
		procs := nodeProcs(p.nodes[i])
		p.mu.Lock()
		defer p.mu.Unlock()
		if _, ok := p.procs1[node]; !ok {
			p.procs1[node] = procs
		}
	}
}

// finish reads everything again and puts where the trial's CPU went into r
// (bench/README.md lists the metrics; clk: ticks per second).
func (p *pushProfile) finish(r *report.Row, clk float64) {
	self, span := selfCPU(), time.Since(p.start).Seconds()
	host, _ := readHostStat("/proc")
	cpu := map[string]float64{"span_s": span, "host_cpu_s": (self - p.self).Seconds(), "disk_write_mb": float64(readDiskWrites()-p.disk) / mb}
	for _, g := range []string{"sshd", "docker_cli", "dockerd", "containerd", "other", "gone"} {
		cpu["node_"+g+"_cpu_s"] = 0
	}
	for _, n := range p.nodes {
		ns, _ := n.cgroupInt("cpuacct", "cpuacct.usage")
		node := float64(ns-p.cgNS[n.Name]) / 1e9
		cpu["node_cpu_s"] += node
		cpu["node_gone_cpu_s"] += node
		p.mu.Lock()
		after, ok := p.procs1[n.Name]
		p.mu.Unlock()
		if !ok {
			after = nodeProcs(n)
		}
		for k, t := range after {
			if before := p.procs0[n.Name][k]; before.ticks <= t.ticks {
				s := float64(t.ticks-before.ticks) / clk
				cpu["node_"+t.group+"_cpu_s"] += s
				cpu["node_gone_cpu_s"] -= s
			}
		}
	}
	busy := float64(host.Busy-p.host.Busy) / clk
	cpu["machine_cpu_s"], cpu["other_cpu_s"], cpu["busy_cores"] = busy, busy-cpu["host_cpu_s"]-cpu["node_cpu_s"], busy/span
	cpu["iowait_cores"], cpu["steal_cores"] = float64(host.IOWait-p.host.IOWait)/clk/span, float64(host.Steal-p.host.Steal)/clk/span
	r.PutAll(cpu)
}

// --- the diagnostics' SSH client ---

// sshDial is provision.Dial to root@n offering only cipher, which
// provision.Config does not expose.
func (l *clusterLab) sshDial(ctx context.Context, n labNode, cipher string) (*ssh.Client, error) {
	fail := func(err error) (*ssh.Client, error) {
		return nil, fmt.Errorf("ssh %s with %s: %w", n.Addr, cipher, err)
	}
	key, err := os.ReadFile(l.keyFile)
	if err != nil {
		return fail(err)
	}
	signer, err := ssh.ParsePrivateKey(key)
	if err != nil {
		return fail(err)
	}
	hk, err := knownhosts.New(l.knownHosts)
	if err != nil {
		return fail(err)
	}
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	addr := net.JoinHostPort(n.Addr, "22")
	conn, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
	if err != nil {
		return fail(err)
	}
	_ = conn.SetDeadline(time.Now().Add(15 * time.Second))
	cc, chans, reqs, err := ssh.NewClientConn(conn, addr, &ssh.ClientConfig{User: "root", Auth: []ssh.AuthMethod{ssh.PublicKeys(signer)},
		HostKeyCallback: hk, HostKeyAlgorithms: []string{ssh.KeyAlgoED25519}, Config: ssh.Config{Ciphers: []string{cipher}}})
	if err != nil {
		conn.Close()
		return fail(err)
	}
	_ = conn.SetDeadline(time.Time{})
	return ssh.NewClient(cc, chans, reqs), nil
}

// cipherDial reaches a node's engine as provision does (dial-stdio
// sessions, pinged) over sshDial.
func (l *clusterLab) cipherDial(cipher string) dialFunc {
	return func(ctx context.Context, n labNode) (function.NodeEngine, error) {
		sc, err := l.sshDial(ctx, n, cipher)
		if err != nil {
			return function.NodeEngine{}, err
		}
		tr := &http.Transport{MaxConnsPerHost: 6, MaxIdleConns: 6, IdleConnTimeout: 30 * time.Second}
		eng, err := client.NewClientWithOpts(client.WithHTTPClient(&http.Client{Transport: tr}), client.WithHost("http://docker"),
			func(*client.Client) error {
				tr.Proxy, tr.DialContext = nil, func(context.Context, string, string) (net.Conn, error) { return dialStdio(sc) }
				return nil
			}, client.WithAPIVersionNegotiation())
		if err == nil {
			pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			ping, perr := eng.Ping(pctx)
			cancel()
			if err = perr; err == nil {
				eng.NegotiateAPIVersionPing(ping)
			} else {
				eng.Close()
			}
		}
		if err != nil {
			sc.Close()
			return function.NodeEngine{}, fmt.Errorf("docker over ssh %s: %w", n.Addr, err)
		}
		return function.NodeEngine{Node: n.Name, API: eng, Close: func() error { eng.Close(); return sc.Close() }}, nil
	}
}

// stdioConn is a net.Conn over a dial-stdio session (provision's is not
// exported).
type stdioConn struct {
	s   *ssh.Session
	in  io.WriteCloser
	out io.Reader
}

// dialStdio starts `docker system dial-stdio` in a new session of sc.
func dialStdio(sc *ssh.Client) (net.Conn, error) {
	s, err := sc.NewSession()
	if err != nil {
		return nil, err
	}
	c := &stdioConn{s: s}
	if c.in, err = s.StdinPipe(); err == nil {
		if c.out, err = s.StdoutPipe(); err == nil {
			err = s.Start("docker system dial-stdio")
		}
	}
	if err != nil {
		s.Close()
		return nil, err
	}
	return c, nil
}

// The net.Conn of a session: its stdin and stdout, no addresses nor deadlines.
func (c *stdioConn) Read(p []byte) (int, error)       { return c.out.Read(p) }
func (c *stdioConn) Write(p []byte) (int, error)      { return c.in.Write(p) }
func (c *stdioConn) Close() error                     { return c.s.Close() }
func (c *stdioConn) CloseWrite() error                { return c.in.Close() }
func (c *stdioConn) LocalAddr() net.Addr              { return &net.UnixAddr{Name: "local", Net: "ssh"} }
func (c *stdioConn) RemoteAddr() net.Addr             { return &net.UnixAddr{Name: "node", Net: "ssh"} }
func (c *stdioConn) SetDeadline(time.Time) error      { return nil }
func (c *stdioConn) SetReadDeadline(time.Time) error  { return nil }
func (c *stdioConn) SetWriteDeadline(time.Time) error { return nil }

// sshSink sends data to `cat > /dev/null` on sc and waits for it to exit.
func sshSink(sc *ssh.Client, data []byte) error {
	s, err := sc.NewSession()
	if err != nil {
		return err
	}
	defer s.Close()
	s.Stdin = bytes.NewReader(data)
	return s.Run("cat > /dev/null")
}

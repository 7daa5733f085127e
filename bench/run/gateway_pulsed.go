package main

// The gateway suite's pulsed: started as a process with its HAProxy,
// waited for until it routes the function, and stopped (with its HAProxy).

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/pulsefaas/pulse/gateway"
)

// pulsedProc is a running pulsed.
type pulsedProc struct {
	srv      *server
	stateDir string
	api      string // pulsed's API (host:port)
	gateway  string // HAProxy's public port
	admin    string
	balance  string // "" for pulsed's default
	stage    string
	rt       *gateway.Runtime
	started  time.Time
}

func (b *gatewayBench) configFile() string { return filepath.Join(b.env.tmp, "pulsed.yaml") }

// startPulsed starts pulsed as a process with a fresh state directory and
// fresh loopback ports, and waits until it routes the function to want
// replicas, all of them ready in HAProxy. balance "" leaves pulsed's default.
func (b *gatewayBench) startPulsed(ctx context.Context, stage, balance string, want int) (*pulsedProc, error) {
	b.mu.Lock()
	b.starts++
	n := b.starts
	b.mu.Unlock()
	p := &pulsedProc{stateDir: filepath.Join(b.env.tmp, fmt.Sprintf("state-%d", n)), balance: balance, stage: stage}
	if err := os.Mkdir(p.stateDir, 0o750); err != nil {
		return nil, fmt.Errorf("state dir: %w", err)
	}
	for _, a := range []*string{&p.api, &p.gateway, &p.admin} {
		addr, err := freeAddr()
		if err != nil {
			return nil, err
		}
		*a = addr
	}
	env := append(baseEnv(),
		"PULSE_STATE_DIR="+p.stateDir,
		"PULSE_INSTANCE="+benchInstance(b.run),
		"PULSE_API_LISTEN="+p.api,
		"PULSE_AUTOSCALE=false", // the suite measures routing; no scaler acting on the engine's functions
		"PULSE_GATEWAY_LISTEN="+p.gateway,
		"PULSE_ADMIN_LISTEN="+p.admin,
		"PULSE_LEAVE_RUNNING=false",
		"PULSE_HAPROXY="+b.env.tools.haproxy,
		b.cred.pulsedEnv(),
	)
	if balance != "" {
		env = append(env, "PULSE_BALANCE="+balance)
	}
	p.started = time.Now()
	srv, err := startServer(launchSpec{Bin: b.arts.path("pulsed"), Args: []string{"-config", b.configFile()}, Env: env, Addr: p.api},
		filepath.Join(b.logDir, fmt.Sprintf("pulsed-%d.log", n)))
	if err != nil {
		return nil, err
	}
	p.srv = srv
	p.rt = gateway.NewRuntime(filepath.Join(p.stateDir, "haproxy.sock"), time.Second)
	b.mu.Lock()
	b.pulsed = p
	b.mu.Unlock()
	if err := waitReady(ctx, srv, "http://"+p.api+"/healthz", gwRouteTimeout, nil); err != nil {
		return p, err
	}
	if err := b.waitRouted(ctx, p, want); err != nil {
		return p, err
	}
	b.log.Info("pulsed routing", "balance", gwOr(balance, "default"), "replicas", want, "took", time.Since(p.started).Round(time.Millisecond))
	return p, nil
}

func gwOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// waitRouted waits until HAProxy has exactly want servers (slots) of the
// function holding a replica, every one ready and up, and a POST through the gateway answers
// 200 with its body.
func (b *gatewayBench) waitRouted(ctx context.Context, p *pulsedProc, want int) error {
	ctx, cancel := context.WithTimeout(ctx, gwRouteTimeout)
	defer cancel()
	var last error
	for {
		servers, err := p.rt.Servers(ctx, gateway.BackendName(b.name))
		if err == nil {
			live, serving := countSlots(servers)
			if serving == want && live == want {
				err = probe(ctx, "http://"+p.gateway+"/function/"+b.name, b.body, nil)
				if err == nil {
					return nil
				}
			} else {
				err = fmt.Errorf("%d servers holding a replica, %d of them ready and up; want %d", live, serving, want)
			}
		}
		last = err
		select {
		case <-p.srv.done:
			return fmt.Errorf("pulsed exited (%s); log: %s", p.srv.cmd.ProcessState, p.srv.logTail(2000))
		case <-ctx.Done():
			return fmt.Errorf("%s not routed to %d replicas after %s (last: %v); pulsed log: %s", b.name, want, gwRouteTimeout, last, p.srv.logTail(2000))
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// stopPulsed stops the running pulsed, if any: SIGTERM (pulsed stops its
// HAProxy: PULSE_LEAVE_RUNNING=false), up to gwStopGrace for it to exit,
// then SIGKILL to its process group. Then it waits up to gwHAProxyLinger for
// every haproxy process of its state directory to be gone by itself, and
// kills what is left. What happened is recorded in the report.
func (b *gatewayBench) stopPulsed() gatewayPulsedStop {
	b.mu.Lock()
	p := b.pulsed
	b.pulsed = nil
	b.mu.Unlock()
	if p == nil || p.srv == nil {
		return gatewayPulsedStop{}
	}
	st := gatewayPulsedStop{Stage: p.stage, Balance: p.balance}
	start := time.Now()
	s := p.srv
	pid := s.pid()
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err == nil {
		t := time.NewTimer(gwStopGrace)
		select {
		case <-s.done:
		case <-t.C:
			st.Error = fmt.Sprintf("pulsed still running %s after SIGTERM: killed", gwStopGrace)
		}
		t.Stop()
	}
	_ = syscall.Kill(-pid, syscall.SIGKILL) // pulsed's group (its HAProxy has its own)
	<-s.done
	st.StopS = round3(time.Since(start).Seconds())
	st.Exit = s.cmd.ProcessState.ExitCode()
	if st.Error == "" && st.Exit != 0 {
		st.Error = fmt.Sprintf("pulsed exited with code %d after SIGTERM; log: %s", st.Exit, s.logTail(1000))
	}
	exited := time.Now()
	for {
		left, err := findHAProxies("/proc", p.stateDir)
		if err != nil || len(left) == 0 {
			break
		}
		st.HAProxyLingerS = round3(time.Since(exited).Seconds())
		if time.Since(exited) >= gwHAProxyLinger {
			st.Killed = killHAProxies(p.stateDir)
			b.log.Warn("haproxy outlived pulsed; killed", "pids", st.Killed, "after", gwHAProxyLinger)
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	if st.HAProxyLingerS > 0 && len(st.Killed) == 0 {
		b.log.Info("haproxy outlived pulsed, then exited", "by_s", st.HAProxyLingerS)
	}
	b.rep.PulsedStops = append(b.rep.PulsedStops, st)
	return st
}

// killHAProxies SIGKILLs every haproxy process whose configuration file is
// under dir and returns their pids.
func killHAProxies(dir string) []int {
	procs, err := findHAProxies("/proc", dir)
	if err != nil {
		return nil
	}
	var pids []int
	for _, p := range procs {
		if st, err := readStat("/proc", p.PID); err == nil && st.StartTime == p.Start {
			_ = syscall.Kill(p.PID, syscall.SIGKILL)
			pids = append(pids, p.PID)
		}
	}
	return pids
}

package main

import (
	"cmp"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/pulsefaas/pulse/gateway"
)

// startGatewayPulsed starts pulsed with a fresh state directory and fresh
// loopback ports, the autoscaler off (the suite measures routing; no scaler
// acting on the engine's functions), and waits until it routes the
// function to want replicas, all of them ready in HAProxy. balance ""
// leaves pulsed's default.
func (b *gatewayBench) startGatewayPulsed(ctx context.Context, stage, balance string, want int) error {
	n := len(b.pulsedLogs) + 1
	b.pulsedLog = filepath.Join(b.env.tmp, fmt.Sprintf("pulsed-%d.log", n))
	b.pulsedLogs = append(b.pulsedLogs, b.pulsedLog)
	b.stateDir = filepath.Join(b.env.tmp, fmt.Sprintf("state-%d", n))
	if err := os.Mkdir(b.stateDir, 0o750); err != nil {
		return fmt.Errorf("state dir: %w", err)
	}
	for _, a := range []*string{&b.apiAddr, &b.gwAddr, &b.adminAddr} {
		addr, err := freeAddr()
		if err != nil {
			return err
		}
		*a = addr
	}
	env := append(baseEnv(), "PULSE_STATE_DIR="+b.stateDir, "PULSE_INSTANCE="+benchInstance(b.run), "PULSE_API_LISTEN="+b.apiAddr,
		"PULSE_AUTOSCALE=false", "PULSE_GATEWAY_LISTEN="+b.gwAddr, "PULSE_ADMIN_LISTEN="+b.adminAddr, "PULSE_LEAVE_RUNNING=false",
		"PULSE_HAPROXY="+b.haproxy, b.cred.pulsedEnv())
	if balance != "" {
		env = append(env, "PULSE_BALANCE="+balance)
	}
	b.stage, b.balance, b.started = stage, balance, time.Now()
	var err error
	if b.pulsed, err = startServer(launchSpec{Bin: b.arts.path("pulsed"), Args: []string{"-config", b.configFile()}, Env: env, Addr: b.apiAddr}, b.pulsedLog); err != nil {
		return err
	}
	b.rt = gateway.NewRuntime(filepath.Join(b.stateDir, "haproxy.sock"), time.Second)
	if err := waitReady(ctx, b.pulsed, "http://"+b.apiAddr+"/healthz", gwRouteTimeout, nil); err != nil {
		return err
	}
	if err := b.waitRouted(ctx, b.name, want, b.body); err != nil {
		return err
	}
	b.log.Info("pulsed routing", "balance", cmp.Or(balance, "default"), "replicas", want, "took", time.Since(b.started).Round(time.Millisecond))
	return nil
}

// replicas returns the watch of the running pulsed's process groups with
// the function's replicas', and the replicas' addresses on loopback, from
// pulsed's catalog; it fails unless there are want replicas.
func (b *gatewayBench) replicas(ctx context.Context, want int) (procWatch, []string, error) {
	f, err := b.catalogFunction(ctx, b.name)
	if err != nil {
		return procWatch{}, nil, err
	}
	if len(f.Replicas) != want {
		return procWatch{}, nil, fmt.Errorf("%d replicas, want %d", len(f.Replicas), want)
	}
	var addrs []string
	for _, r := range f.Replicas {
		addr, rewrote := loopbackAddr(r.Addr)
		b.rewrote = b.rewrote || rewrote
		addrs = append(addrs, addr)
	}
	watch := b.procWatch()
	b.watchReplicas(ctx, b.name, &watch)
	return watch, addrs, nil
}

// stopGatewayPulsed stops the running pulsed, if any: SIGTERM (pulsed stops
// its HAProxy: PULSE_LEAVE_RUNNING=false), up to gwStopGrace for it to
// exit, then SIGKILL to its process group. Then it waits up to
// haproxyLinger for every haproxy process of its state directory to be
// gone by itself, and kills what is left. What happened is recorded in the
// report. (pulseLab.stopPulsed kills pulsed's descendants at once, so it
// cannot see whether HAProxy outlives pulsed.)
func (b *gatewayBench) stopGatewayPulsed() gatewayPulsedStop {
	s := b.pulsed
	if s == nil {
		return gatewayPulsedStop{}
	}
	b.pulsed = nil
	st := gatewayPulsedStop{Stage: b.stage, Balance: b.balance}
	start := time.Now()
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err == nil {
		select {
		case <-s.done:
		case <-time.After(gwStopGrace):
			st.Error = fmt.Sprintf("pulsed still running %s after SIGTERM: killed", gwStopGrace)
		}
	}
	_ = syscall.Kill(-s.pid(), syscall.SIGKILL) // pulsed's group (its HAProxy has its own)
	<-s.done
	st.StopS = secondsSince(start)
	st.Exit = s.cmd.ProcessState.ExitCode()
	if st.Error == "" && st.Exit != 0 {
		st.Error = fmt.Sprintf("pulsed exited with code %d after SIGTERM; log: %s", st.Exit, s.logTail(1000))
	}
	lingered, killed := reapHAProxies(b.stateDir, haproxyLinger)
	st.HAProxyLingerS, st.Killed = round3(lingered.Seconds()), killed
	if len(killed) > 0 {
		b.log.Warn("haproxy outlived pulsed; killed", "pids", killed, "after", haproxyLinger)
	}
	if st.HAProxyLingerS > 0 && len(st.Killed) == 0 {
		b.log.Info("haproxy outlived pulsed, then exited", "by_s", st.HAProxyLingerS)
	}
	b.rep.PulsedStops = append(b.rep.PulsedStops, st)
	return st
}

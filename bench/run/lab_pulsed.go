package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/pulsefaas/pulse/alarms"
	"github.com/pulsefaas/pulse/contract"
	"github.com/pulsefaas/pulse/gateway"
	"github.com/pulsefaas/pulse/internal/netdatalab"
)

// healthWithHook returns the health templates with every exec: line
// running hook (a path) instead of the installed hook.
func healthWithHook(templates, hook string) (string, error) {
	lines := strings.Split(templates, "\n")
	n := 0
	for i, l := range lines {
		key, val, ok := strings.Cut(l, ":")
		if !ok || strings.TrimSpace(key) != "exec" {
			continue
		}
		if strings.TrimSpace(val) != hookInstalled {
			return "", fmt.Errorf("health templates: exec line %q does not run %s", l, hookInstalled)
		}
		lines[i] = key + ": " + hook
		n++
	}
	if n == 0 {
		return "", errors.New("health templates: no exec: line")
	}
	return strings.Join(lines, "\n"), nil
}

// startNetdata picks pulsed's ports (so that each can point at the other)
// and starts the lab Netdata. Netdata 1.37 runs exec: as one quoted word
// (sh -c "exec '<exec>' '<recipient>' ..."), so the hook cannot take flags
// there: it gets pulsed's URL and the token file from Netdata's
// environment instead.
func (l *pulseLab) startNetdata(ctx context.Context) error {
	for _, a := range []*string{&l.apiAddr, &l.gwAddr, &l.adminAddr, &l.coldAddr} {
		addr, err := freeAddr()
		if err != nil {
			return err
		}
		*a = addr
	}
	health, err := healthWithHook(alarms.Templates(), filepath.Join(l.shared, "pulse-alarm-hook"))
	if err != nil {
		return err
	}
	ndLog, err := os.Create(filepath.Join(l.env.tmp, "netdata.log"))
	if err != nil {
		return err
	}
	defer ndLog.Close()
	l.nd, err = netdatalab.Start(ctx, netdatalab.Config{
		Plugin: l.arts.path("pulse.d.plugin"),
		PluginConfig: netdatalab.JobConfig("http://"+l.apiAddr+contract.CatalogPath, "http://"+l.adminAddr+"/metrics",
			netdatalab.WithReplicaAuthFile(l.cred.path)),
		Health: health,
		Env:    []string{"PULSE_ALARM_URL=http://" + l.apiAddr + contract.AlarmsPath, "PULSE_ALARM_TOKEN_FILE=" + l.tokenFile},
		Stderr: ndLog,
	})
	if err != nil {
		return err
	}
	l.log.Info("lab netdata", "url", l.nd.URL)
	return nil
}

// startPulsed starts a new lifetime of pulsed: a fresh state directory, the
// lab's ports, the autoscaler on, every setting at pulsed's default but
// the run's instance and selector and changed (PULSE_*=… lines); and waits
// until its API answers. It returns the settings that differ from a
// default install (instance, selector, changed), for the report.
func (l *pulseLab) startPulsed(ctx context.Context, changed ...string) ([]string, error) {
	n := len(l.pulsedLogs) + 1
	l.stateDir = filepath.Join(l.env.tmp, fmt.Sprintf("state-%d", n))
	if err := os.Mkdir(l.stateDir, 0o750); err != nil {
		return nil, fmt.Errorf("state dir: %w", err)
	}
	cfgFile := filepath.Join(l.env.tmp, "pulsed.yaml")
	if err := os.WriteFile(cfgFile, []byte("# pulse bench: every setting comes from PULSE_* variables\n"), 0o644); err != nil {
		return nil, fmt.Errorf("pulsed config: %w", err)
	}
	changed = append([]string{"PULSE_INSTANCE=" + benchInstance(l.run), "PULSE_SELECTOR=" + runLabel + "=" + l.run}, changed...)
	env := append(append(baseEnv(),
		"PULSE_STATE_DIR="+l.stateDir,
		"PULSE_API_LISTEN="+l.apiAddr,
		"PULSE_GATEWAY_LISTEN="+l.gwAddr,
		"PULSE_ADMIN_LISTEN="+l.adminAddr,
		"PULSE_COLDSTART_LISTEN="+l.coldAddr,
		"PULSE_LEAVE_RUNNING=false",
		"PULSE_HAPROXY="+l.haproxy,
		"PULSE_AUTOSCALE=true",
		"PULSE_ALARM_TOKEN_FILE="+l.tokenFile,
		"PULSE_NETDATA_URL="+l.nd.URL,
		l.cred.pulsedEnv(),
	), changed...)
	l.pulsedLog = filepath.Join(l.env.tmp, fmt.Sprintf("pulsed-%d.log", n))
	l.pulsedLogs = append(l.pulsedLogs, l.pulsedLog)
	var err error
	l.pulsed, err = startServer(launchSpec{Bin: l.arts.path("pulsed"), Args: []string{"-config", cfgFile}, Env: env, Addr: l.apiAddr}, l.pulsedLog)
	if err != nil {
		return nil, err
	}
	l.rt = gateway.NewRuntime(filepath.Join(l.stateDir, "haproxy.sock"), time.Second)
	if err := waitReady(ctx, l.pulsed, "http://"+l.apiAddr+"/healthz", l.routeTimeout, nil); err != nil {
		return nil, err
	}
	l.log.Info("pulsed started", "lifetime", n, "api", l.apiAddr, "gateway", l.gwAddr, "settings", changed)
	return changed, nil
}

// stopPulsed ends pulsed's lifetime: SIGTERM (it stops its HAProxy:
// PULSE_LEAVE_RUNNING=false), then up to haproxyLinger for its HAProxy
// to be gone, killing what is left. It returns what went wrong.
func (l *pulseLab) stopPulsed() []string {
	if l.pulsed == nil {
		return nil
	}
	var found []string
	if _, err := l.pulsed.stop(l.stopGrace); err != nil {
		found = append(found, "pulsed: "+err.Error())
	}
	l.pulsed = nil
	if _, pids := reapHAProxies(l.stateDir, haproxyLinger); len(pids) > 0 {
		found = append(found, fmt.Sprintf("haproxy processes %v outlived pulsed: killed", pids))
	}
	return found
}

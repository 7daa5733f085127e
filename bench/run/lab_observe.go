package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/pulsefaas/pulse/contract"
)

// alarmStatus is the status of fn's scale-up alarm in the lab Netdata.
func (l *pulseLab) alarmStatus(ctx context.Context, fn string) (string, error) {
	return l.nd.AlarmStatus(ctx, alarmScaleUp, utilChart(fn))
}

// waitAlarm waits up to timeout for fn's scale-up alarm to be initialised
// (CLEAR).
func (l *pulseLab) waitAlarm(ctx context.Context, fn string, timeout time.Duration) error {
	return poll(ctx, timeout, 500*time.Millisecond, func(late bool) (bool, error) {
		st, err := l.alarmStatus(ctx, fn)
		if err == nil && st == "CLEAR" {
			return true, nil
		}
		if late {
			return false, fmt.Errorf("%s of %s not initialised after %s (status %q, %v); netdata log: %s", alarmScaleUp, fn, timeout, st, err, truncate(l.nd.ErrorLog(), 2000))
		}
		return false, nil
	})
}

func utilChart(fn string) string {
	return contract.Chart(fn, contract.ChartUtilization)
}

// getJSON GETs url from pulsed's API (auth: with the alarm token) and
// decodes the answer into into.
func (l *pulseLab) getJSON(ctx context.Context, url string, auth bool, into any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	if auth {
		req.Header.Set("Authorization", "Bearer "+l.token)
	}
	resp, err := l.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 300))
		return fmt.Errorf("GET %s: %s: %s", url, resp.Status, strings.TrimSpace(string(msg)))
	}
	return json.NewDecoder(io.LimitReader(resp.Body, 16<<20)).Decode(into)
}

// events returns the scaler's recent decisions.
func (l *pulseLab) events(ctx context.Context) (contract.ScaleEvents, error) {
	var ev contract.ScaleEvents
	err := l.getJSON(ctx, "http://"+l.apiAddr+contract.EventsPath, true, &ev)
	return ev, err
}

// catalogFunction returns fn as pulsed's catalog lists it.
func (l *pulseLab) catalogFunction(ctx context.Context, fn string) (contract.CatalogFunction, error) {
	var cat contract.Catalog
	if err := l.getJSON(ctx, "http://"+l.apiAddr+contract.CatalogPath, false, &cat); err != nil {
		return contract.CatalogFunction{}, err
	}
	for _, f := range cat.Functions {
		if f.Name == fn {
			return f, nil
		}
	}
	return contract.CatalogFunction{}, fmt.Errorf("%s is not in pulsed's catalog", fn)
}

// reloads returns how many times the running pulsed has reloaded HAProxy
// (GET /healthz: {"status":"ok","reloads":N}).
func (l *pulseLab) reloads(ctx context.Context) (int, error) {
	var h struct {
		Status  string `json:"status"`
		Reloads *int   `json:"reloads"`
	}
	if err := l.getJSON(ctx, "http://"+l.apiAddr+"/healthz", false, &h); err != nil {
		return 0, err
	}
	if h.Reloads == nil {
		return 0, fmt.Errorf("healthz: status %q, no reload count", h.Status)
	}
	return *h.Reloads, nil
}

// watchReplicas adds fn's running replicas (their processes, as the engine
// reports them, and their published ports, from pulsed's catalog) to w.
func (l *pulseLab) watchReplicas(ctx context.Context, fn string, w *procWatch) {
	if f, err := l.catalogFunction(ctx, fn); err == nil {
		for _, r := range f.Replicas {
			if _, p, err := net.SplitHostPort(r.Addr); err == nil {
				if n, err := strconv.Atoi(p); err == nil && !slices.Contains(w.Ports, n) {
					w.Ports = append(w.Ports, n)
				}
			}
		}
	}
	ids, err := serviceContainers(ctx, l.api, fn)
	if err != nil {
		return
	}
	cctx, cancel := call(ctx)
	defer cancel()
	for _, id := range ids {
		if ci, err := l.api.ContainerInspect(cctx, id); err == nil && ci.ContainerJSONBase != nil && ci.State != nil && ci.State.Pid > 0 &&
			!slices.Contains(w.Replicas, ci.State.Pid) {
			w.Replicas = append(w.Replicas, ci.State.Pid)
		}
	}
}

// procWatch is the watch of the running pulsed's groups (HAProxy, pulsed),
// without replicas yet.
func (l *pulseLab) procWatch() procWatch {
	return procWatch{HAProxyConfig: filepath.Join(l.stateDir, "haproxy.cfg"), Pulsed: l.pulsed.pid()}
}

// sampleGroups reads the CPU of w's groups, of this program (the harness)
// and of the lab Netdata's process tree; and of every other process, by
// command name.
func (l *pulseLab) sampleGroups(w procWatch) (groups, others procCPU) {
	groups, others, err := scanAllProcs("/proc", w)
	if err != nil {
		groups, others = procCPU{}, procCPU{}
	}
	group := func(name string, sts []procStat) {
		m := map[procKey]uint64{}
		for _, st := range sts {
			k := procKey{st.PID, st.StartTime}
			m[k] = st.UTime + st.STime
			delete(others[st.Comm], k)
		}
		groups[name] = m
	}
	if st, err := readStat("/proc", os.Getpid()); err == nil {
		group(groupHarness, []procStat{st})
	}
	if l.nd != nil {
		if tree, err := processTree("/proc", l.nd.PID()); err == nil {
			group(groupNetdata, tree)
		}
	}
	return groups, others
}

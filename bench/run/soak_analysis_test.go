package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"image/png"
	"maps"
	mrand "math/rand/v2"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/pulsefaas/pulse/bench/report"
	"github.com/pulsefaas/pulse/contract"
	"github.com/pulsefaas/pulse/gateway"
)

// syntheticSoak runs the soak's pure analysis (attribution, the per-second
// series, minutes, servers, the parts before the soak, tables, goals,
// notes) over a synthetic run: 3 minutes of requests with a few dozen
// failures, some of them logged by HAProxy, a slot timeline with replicas
// coming and going, `show stat` counters with a reload, and a kill.
func syntheticSoak(t *testing.T) *report.Report {
	t.Helper()
	rng := mrand.New(mrand.NewPCG(3, 4))
	t0 := time.Date(2026, 12, 6, 5, 0, 0, 0, time.UTC)
	phases, updateAt, killAt, _ := soakSchedule(3 * time.Minute)
	phases[2].Addr, phases[2].Task = "127.0.0.1:30005", "task5"
	n := 180
	// The timeline: slots s1…s4, re-pointed every 30 s, one of them free.
	var tl soakTimeline
	addrOf := func(k int) string { return fmt.Sprintf("127.0.0.1:%d", 30000+k) }
	for i := 0; i < 2*n; i++ {
		gen := i / 60
		smp := soakSample{At: t0.Add(time.Duration(i) * 500 * time.Millisecond), Desired: 2 + gen%3}
		for sl := 1; sl <= 4; sl++ {
			k, st := sl+4*gen, gateway.StateReady
			if (sl+gen)%4 == 0 {
				st = gateway.StateMaint
			}
			smp.Slots = append(smp.Slots, slotInfo{Name: fmt.Sprintf("s%d", sl), Addr: addrOf(k), State: st, Serving: st == gateway.StateReady})
			if st != gateway.StateMaint {
				smp.Replicas = append(smp.Replicas, contract.Replica{TaskID: fmt.Sprintf("task%d", k), Addr: addrOf(k), Routed: sl != 3, Draining: sl == 2 && gen%2 == 1})
			}
		}
		tl = append(tl, smp)
	}
	// The client's records, HAProxy's lines of some failures.
	r := soakRun{t0: t0, phases: phases, tl: tl, clk: 100, stats: newStatAcc(),
		events: []soakEvent{{Name: soakEventUpdate, AtS: updateAt.Seconds()}, {Name: soakEventUpdateDone, AtS: updateAt.Seconds() + 9},
			{Name: soakEventKill, AtS: killAt.Seconds(), Task: "task6", Addr: addrOf(6), Detail: "docker kill"}}}
	h := &haLog{backend: "fn_x", loc: time.UTC, res: haLogResult{ByServer: map[string]*[3]int64{}}}
	for i := 0; i < 60000; i++ {
		q := loadReq{StartNS: int64(rng.Float64()*float64(n+1)*1e9) - int64(time.Second/2), LatencyUS: int32(rng.ExpFloat64() * 3000), Status: 200, Port: uint16(30000 + rng.IntN(20000))}
		if p := phaseAt(phases, float64(q.StartNS)/1e9); p >= 0 {
			q.Direct = phases[p].Direct
		}
		if rng.IntN(3000) == 0 {
			q.Err = uint8(1 + rng.IntN(6))
			if q.Err == reqErrStatus {
				q.Status = 502
			} else if q.Err <= reqErrRead {
				q.Status = 0
			}
			r.fails = append(r.fails, loadFail{Req: q, Msg: fmt.Sprintf("msg %d", i)})
			if !q.Direct && rng.IntN(2) == 0 {
				acc := t0.Add(time.Duration(q.StartNS) + time.Duration(rng.IntN(800))*time.Millisecond).Truncate(time.Millisecond)
				h.add(fmt.Sprintf("127.0.0.1:%d [%s] gateway fn_x/s%d 0/0/0/-1/3 502 209 - - SH-- 12/12/11/3/%d 0/0 \"POST /function/x HTTP/1.1\"",
					q.Port, acc.Format(haLogTime), 1+rng.IntN(4), rng.IntN(2)), t0)
			}
		}
		r.recs = append(r.recs, q)
	}
	for _, l := range []string{logOK, log502, logRetried, logServerOff, logAborted, logNoSrv, "garbage"} {
		h.add(l, t0.Add(time.Minute))
	}
	r.log = h.res
	// `show stat` polls, with a reload (every counter restarting) at 90 s;
	// the host poller every second.
	cum := map[string]*gateway.ServerStat{}
	var hc hostCPU
	for i := 0; i < n; i++ {
		var rows []gateway.ServerStat
		for sl := 1; sl <= 4; sl++ {
			name := fmt.Sprintf("s%d", sl)
			c := cum[name]
			if c == nil || i == 90 {
				c = &gateway.ServerStat{Backend: "fn_x", Server: name}
				cum[name] = c
			}
			c.Addr, c.Status = addrOf(sl+4*(2*i/60)), "UP"
			for _, f := range []struct {
				p *int64
				n int
			}{{&c.Sessions, 3000}, {&c.Connects, 5}, {&c.Reuses, 3000}} {
				*f.p += int64(rng.IntN(f.n))
			}
			for _, f := range []struct {
				p *int64
				n int
			}{{&c.ConnErrors, 40}, {&c.RespErrors, 40}, {&c.HTTP5xx, 30}, {&c.Downs, 100}, {&c.CheckFails, 50}, {&c.Retries, 50}, {&c.Redispatches, 50}} {
				*f.p += int64(rng.IntN(f.n) / (f.n - 1))
			}
			rows = append(rows, *c)
		}
		r.stats.add(t0.Add(time.Duration(i)*time.Second+700*time.Millisecond), rows)
	}
	for i := 0; i < n; i++ {
		hc.Busy, hc.Total = hc.Busy+uint64(rng.IntN(200)), hc.Total+200
		r.host = append(r.host, soakHostSample{At: t0.Add(time.Duration(i)*time.Second + 300*time.Millisecond), TimeWait: rng.IntN(1000), CPU: hc})
	}
	r.kill = &soakKill{CallAt: t0.Add(killAt - 10*time.Second), At: t0.Add(killAt + 10*time.Second), Task: "task6", Addr: addrOf(6)}
	ticks := func() map[string]float64 {
		return map[string]float64{"busy": float64(1000 + rng.IntN(1000)), "irq": 10, "total": 3000, groupHAProxy: float64(rng.IntN(300)), groupHarness: 100}
	}

	rep := report.New(suiteSoak, t0)
	rep.Setup = "a synthetic run"
	// The parts before the soak, over the same records.
	var sts []stretch
	for i := range 8 {
		st := stretch{path: pathGateway, from: float64(i * 20), to: float64(i*20 + 15), ticks: ticks(), ha: map[string]float64{"haproxy_conns": 3, "haproxy_requests": 5000, "server_connects": 1}}
		if fairDirect(i) {
			st.path, st.ha = pathDirect, nil
		}
		sts = append(sts, st)
	}
	for _, row := range fairRows(sts, r.recs, 100) {
		rep.Add(row)
	}
	r.cpu = [2]map[string]float64{ticks(), ticks()}
	for _, t := range r.cpu {
		maps.Copy(t, map[string]float64{"steal": 2, groupReplicas: 400, "other:dockerd": 7, "other:kworker/0:1": 3})
	}
	var sat soakSat
	summarizeSat(&sat, r.recs, r.fails, r.stats, 120)
	rep.Add(satRow(sat))
	sum := report.NewRow("soak").PutAll(map[string]float64{"haproxy_rss_mb": 22.3, "haproxy_procs": 2, "haproxy_peak_mb": 22.4, "pulsed_rss_mb": 18.2,
		"pulsed_peak_mb": 18.7, "dropped_logs": 0, "reloads": 1, "scale_events": 4, "rolling_update_s": 9.3})
	sum.Labels["rolling_update"] = "completed: update completed"
	analyzeSoak(rep, sum, r)
	soakTables(rep, "results/soak-20261206T050000Z.png")
	return rep
}

// TestSoakAnalysisGolden checks the synthetic run's rows (and a sample of
// its per-second series), goals and notes against a golden file (-update
// rewrites it).
func TestSoakAnalysisGolden(t *testing.T) {
	rep := syntheticSoak(t)
	sec := rep.Records["seconds"].(map[string][]float64)
	sample := map[string][]float64{}
	for k, s := range sec {
		for i := 0; i < len(s); i += 15 { // a sample keeps the file small
			sample[k] = append(sample[k], s[i])
		}
	}
	got, err := json.MarshalIndent(struct {
		Rows    []report.Row
		Seconds map[string][]float64
		Events  any
		Goals   []report.Goal
		Notes   []string
	}{rep.Rows, sample, rep.Records["haproxy_events"], rep.Goals, rep.Notes}, "", " ")
	if err != nil {
		t.Fatal(err)
	}
	got = append(got, '\n')
	if *update {
		if err := os.WriteFile("testdata/soak-analysis.json", got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if want := readTestdata(t, "soak-analysis.json"); string(got) != want {
		t.Errorf("the analysis differs from testdata/soak-analysis.json (run go test ./bench/run -update after an intended change)")
	}
}

// TestRenderSoakMarkdown checks the README's soak section of the synthetic
// run against a golden file; -update rewrites it.
func TestRenderSoakMarkdown(t *testing.T) {
	rep := syntheticSoak(t)
	got := rep.Render(true, "results/soak-20261206T050000Z.json")
	if *update {
		if err := os.WriteFile("testdata/soak-results.md", []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if want := readTestdata(t, "soak-results.md"); got != want {
		t.Errorf("the soak's README section differs from testdata/soak-results.md (run go test ./bench/run -update):\n%s", got)
	}
	text := rep.Render(false, "")
	for _, cell := range []string{"replica killed", "not logged, unknown", "task6", "· other: dockerd", "whole host without the harness",
		"2.500×", "FAIL", "PASS", "INFO", "22.3 MB", "DOWN transitions", "soak-time whole-host CPU/request, gateway ÷ direct", "1.30×", "results/soak-20261206T050000Z.png"} {
		if !strings.Contains(text, cell) {
			t.Errorf("the text rendering lacks %q", cell)
		}
	}
}

func TestRenderSoakPlot(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*report.Report)
	}{
		{"a run with failures", func(*report.Report) {}},
		{"no failures, no events", func(r *report.Report) {
			sec := r.Records["seconds"].(map[string][]float64)
			clear(sec["failed"])
			clear(sec["excused"])
			r.Rows = report.Of(r.Rows, "minute")
		}},
		{"empty", func(r *report.Report) { r.Records["seconds"], r.Rows = map[string][]float64{}, nil }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rep := syntheticSoak(t)
			tc.edit(rep)
			b, err := renderSoakPlot(rep, 3*time.Minute)
			if err != nil {
				t.Fatal(err)
			}
			img, err := png.Decode(bytes.NewReader(b))
			if err != nil {
				t.Fatal(err)
			}
			if got := img.Bounds().Dx(); got != 1300 {
				t.Errorf("width %d px, want 1300", got)
			}
			if out := os.Getenv("SOAK_PLOT_OUT"); out != "" && tc.name == "a run with failures" {
				if err := os.WriteFile(out, b, 0o644); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}

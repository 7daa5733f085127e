package main

import (
	"encoding/json"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/pulsefaas/pulse/bench/report"
	"github.com/pulsefaas/pulse/gateway"
)

// syntheticSoak runs the soak's pure analysis (attribution, minutes,
// servers, the parts before the soak, tables, goals, notes) over a
// synthetic run: 3 minutes of requests with a few dozen failures, some of
// them logged by HAProxy, `show stat` polls with slots re-pointed and a
// reload, and a kill.
func syntheticSoak(t *testing.T) *report.Report {
	t.Helper()
	rng := mrand.New(mrand.NewPCG(3, 4))
	t0 := time.Date(2026, 12, 6, 5, 0, 0, 0, time.UTC)
	phases, _, killAt, _ := soakSchedule(3 * time.Minute)
	n := 180
	addrOf := func(k int) string { return fmt.Sprintf("127.0.0.1:%d", 30000+k) }
	// The client's records, HAProxy's lines of some failures.
	r := soakRun{t0: t0, phases: phases, stats: newStatAcc()}
	h := &haLog{backend: "fn_x", loc: time.UTC}
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
					q.Port, acc.Format(haLogTime), 1+rng.IntN(4), rng.IntN(2)))
			}
		}
		r.recs = append(r.recs, q)
	}
	for _, l := range []string{logOK, log502, logRetried, logServerOff, logAborted, logNoSrv, "garbage"} {
		h.add(l)
	}
	r.log = h.res
	// `show stat` polls every second: slots s1…s4 re-pointed every 30 s,
	// one of them in maintenance; a reload (every counter restarting) at
	// 90 s.
	cum := map[string]*gateway.ServerStat{}
	for i := 0; i < n; i++ {
		var rows []gateway.ServerStat
		gen := i / 30
		for sl := 1; sl <= 4; sl++ {
			name := fmt.Sprintf("s%d", sl)
			c := cum[name]
			if c == nil || i == 90 {
				c = &gateway.ServerStat{Backend: "fn_x", Server: name}
				cum[name] = c
			}
			c.Addr, c.Status = addrOf(sl+4*gen), "UP"
			if (sl+gen)%4 == 0 {
				c.Status = "MAINT"
			}
			c.Sessions, c.Connects = c.Sessions+int64(rng.IntN(3000)), c.Connects+int64(rng.IntN(5))
			for _, f := range []struct {
				p *int64
				n int
			}{{&c.ConnErrors, 40}, {&c.RespErrors, 40}, {&c.HTTP5xx, 30}, {&c.Downs, 100}, {&c.CheckFails, 50}} {
				*f.p += int64(rng.IntN(f.n) / (f.n - 1)) // now and then
			}
			rows = append(rows, *c)
		}
		r.stats.add(t0.Add(time.Duration(i)*time.Second+700*time.Millisecond), rows)
	}
	r.kill = &soakKill{CallAt: t0.Add(killAt - 10*time.Second), At: t0.Add(killAt + 10*time.Second), Addr: addrOf(2 + 4*int(killAt/(30*time.Second)))}

	rep := report.New(suiteSoak, t0)
	rep.Setup = "a synthetic run"
	// The parts before the soak, over the same records.
	var sts []stretch
	for i := range 8 {
		st := stretch{path: pathGateway, from: float64(i * 20), to: float64(i*20 + 15), ticks: map[string]float64{"busy": float64(1000 + rng.IntN(1000)), "total": 3000, "steal": 1, groupHarness: 100}}
		if fairDirect(i) {
			st.path = pathDirect
		}
		sts = append(sts, st)
	}
	for _, row := range fairRows(sts, r.recs, 100) {
		rep.Add(row)
	}
	var sat soakSat
	summarizeSat(&sat, r.recs, r.fails, r.stats, 120)
	sat.HostBusyPct = 99.5
	rep.Add(satRow(sat))
	sum := report.NewRow("soak")
	sum.Labels["rolling_update"] = "completed: update completed"
	analyzeSoak(rep, sum, r)
	soakTables(rep)
	return rep
}

// TestSoakAnalysisGolden checks the synthetic run's rows, goals and notes
// against a golden file (-update rewrites it).
func TestSoakAnalysisGolden(t *testing.T) {
	rep := syntheticSoak(t)
	got, err := json.MarshalIndent(struct {
		Rows  []report.Row
		Goals []report.Goal
		Notes []string
	}{rep.Rows, rep.Goals, rep.Notes}, "", " ")
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
	for _, cell := range []string{"whole-host CPU/req µs", "connect/stot %", "direct CPU", "2.500×", "FAIL", "INFO", "DOWN transitions", "in flight on the killed replica"} {
		if !strings.Contains(text, cell) {
			t.Errorf("the text rendering lacks %q", cell)
		}
	}
}

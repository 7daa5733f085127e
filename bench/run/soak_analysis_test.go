package main

import (
	"encoding/json"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/pulsefaas/pulse/contract"
	"github.com/pulsefaas/pulse/gateway"
)

// TestSoakAnalysisGolden runs the soak's pure analysis (attribution,
// seconds, minutes, servers, summary, the parts before the soak, goals,
// notes) over a synthetic run: 3 minutes of requests with a few dozen
// failures, some of them logged by HAProxy, a slot timeline with replicas
// coming and going, `show stat` counters with a reload, and a kill; and
// checks the whole result against a golden file (-update rewrites it). The
// golden file was written by the analysis before it was condensed.
func TestSoakAnalysisGolden(t *testing.T) {
	rng := mrand.New(mrand.NewPCG(3, 4))
	t0 := time.Date(2026, 12, 6, 5, 0, 0, 0, time.UTC)
	phases, _, killAt, _ := soakSchedule(3 * time.Minute)
	n := 180
	// The timeline: slots s1…s4, re-pointed every 30 s, one of them free.
	var tl soakTimeline
	addrOf := func(k int) string { return fmt.Sprintf("127.0.0.1:%d", 30000+k) }
	for i := 0; i < 2*n; i++ {
		at := t0.Add(time.Duration(i) * 500 * time.Millisecond)
		gen := i / 60
		smp := soakSample{At: at, Desired: 2 + gen%3}
		for sl := 1; sl <= 4; sl++ {
			k := sl + 4*gen
			st := gateway.StateReady
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
	var recs []loadReq
	var fails []loadFail
	var lines []haLogLine
	var logText []string
	for i := 0; i < 60000; i++ {
		startNS := int64(rng.Float64() * float64(n+1) * 1e9)
		r := loadReq{StartNS: startNS - int64(time.Second/2), LatencyUS: int32(rng.ExpFloat64() * 3000), Status: 200, Port: uint16(30000 + rng.IntN(20000))}
		if p := phaseAt(phases, float64(r.StartNS)/1e9); p != nil {
			r.Direct = p.Direct
		}
		if rng.IntN(3000) == 0 {
			r.Err = uint8(1 + rng.IntN(6))
			if r.Err == reqErrStatus {
				r.Status = 502
			} else if r.Err <= reqErrRead {
				r.Status = 0
			}
			fails = append(fails, loadFail{Req: r, Msg: fmt.Sprintf("msg %d", i)})
			if !r.Direct && rng.IntN(2) == 0 {
				acc := t0.Add(time.Duration(r.StartNS) + time.Duration(rng.IntN(800))*time.Millisecond).Truncate(time.Millisecond)
				srv := fmt.Sprintf("s%d", 1+rng.IntN(4))
				txt := fmt.Sprintf("127.0.0.1:%d [%s] gateway fn_x/%s 0/0/0/-1/3 502 209 - - SH-- 12/12/11/3/%d 0/0 \"POST /function/x HTTP/1.1\"", r.Port, acc.Format(haLogTime), srv, rng.IntN(2))
				l, err := parseHAProxyLog(txt, time.UTC)
				if err != nil {
					t.Fatal(err)
				}
				lines = append(lines, l)
				logText = append(logText, txt)
			}
		}
		recs = append(recs, r)
	}
	logText = append(logText, logOK, log502, logRetried, logServerOff, logAborted, logNoSrv, "garbage")
	// `show stat` polls, with a reload (every counter restarting) at 90 s.
	acc := newStatAcc()
	cum := map[string]*gateway.ServerStat{}
	for i := 0; i < n; i++ {
		var rows []gateway.ServerStat
		for sl := 1; sl <= 4; sl++ {
			name := fmt.Sprintf("s%d", sl)
			c := cum[name]
			if c == nil || i == 90 {
				c = &gateway.ServerStat{Backend: "fn_x", Server: name}
				cum[name] = c
			}
			c.Addr = addrOf(sl + 4*(2*i/60))
			c.Status = "UP"
			c.Sessions += int64(rng.IntN(3000))
			c.Connects += int64(rng.IntN(5))
			c.Reuses += int64(rng.IntN(3000))
			c.ConnErrors += int64(rng.IntN(40) / 39)
			c.RespErrors += int64(rng.IntN(40) / 39)
			c.HTTP5xx += int64(rng.IntN(30) / 29)
			c.Downs += int64(rng.IntN(100) / 99)
			c.CheckFails += int64(rng.IntN(50) / 49)
			c.Retries += int64(rng.IntN(50) / 49)
			c.Redispatches += int64(rng.IntN(50) / 49)
			rows = append(rows, *c)
		}
		acc.add(t0.Add(time.Duration(i)*time.Second+700*time.Millisecond), rows)
	}
	var host []soakHostSample
	var hc hostCPU
	for i := 0; i < n; i++ {
		hc.Busy += uint64(rng.IntN(200))
		hc.Total += 200
		host = append(host, soakHostSample{At: t0.Add(time.Duration(i)*time.Second + 300*time.Millisecond), TimeWait: rng.IntN(1000), CPU: hc})
	}
	kill := &soakKill{CallAt: t0.Add(killAt - 10*time.Second), At: t0.Add(killAt + 10*time.Second), Task: "task6", Addr: addrOf(6)}
	failures, excused := attributeFailures(fails, t0, lines, acc.errs, acc.polls, tl, kill)
	secs := soakSeconds(recs, excused, phases, n)
	fillSeconds(secs, t0, tl, host)
	events := []soakEvent{{Name: soakEventUpdate, AtS: 34}, {Name: soakEventKill, AtS: killAt.Seconds()}}
	mins := soakMinutes(recs, excused, phases, secs, events)
	h := &haLog{backend: "fn_x", loc: time.UTC, res: haLogResult{ByServer: map[string]*haServer{}}}
	for _, l := range logText {
		h.add(l, t0)
	}
	hres := h.res
	servers := soakServers(acc, hres.ByServer, tl.holdings(t0))
	var sum soakSummary
	summarizeSoak(&sum, recs, failures)
	sum.KillCallS, sum.KillEndS = killAt.Seconds(), killAt.Seconds()+0.2
	sum.KillFailed, sum.KillFailedOn, sum.KillWindowMS = killWindow(failures, sum.KillCallS)
	sum.kill = kill
	rep := soakReport{Phases: phases, Events: events, Seconds: secs, Minutes: mins, Servers: servers, Failures: failures, Summary: sum}
	// The parts before the soak, over the same records.
	var stretches []soakStretch
	for i := range 8 {
		st := soakStretch{Path: pathGateway, StartS: float64(i * 20), EndS: float64(i*20 + 15)}
		if fairDirect(i) {
			st.Path = pathDirect
		}
		st.CPU = cpuWindow{Seconds: 15, Busy: uint64(1000 + rng.IntN(1000)), IRQ: 10, Total: 3000, Groups: map[string]uint64{groupHAProxy: uint64(rng.IntN(300)), groupHarness: 100}}
		stretches = append(stretches, st)
	}
	rep.Fair.Conns = 16
	summarizeFair(&rep.Fair, stretches, recs, len(fails), 100)
	summarizeSat(&rep.Saturation, recs, fails, acc, 120)
	rep.Goals = soakGoals(rep)
	rep.Notes = soakNotes(rep)
	rep.Seconds = slices.DeleteFunc(rep.Seconds, func(s soakSecond) bool { return s.T%15 != 0 }) // a sample keeps the file small
	ex := map[string]bool{}
	for k, v := range excused {
		ex[fmt.Sprint(k)] = v
	}
	got, err := json.MarshalIndent(struct {
		Rep     soakReport
		Excused map[string]bool
		Log     haLogResult
		Notable int
		Events  []haLogOther
	}{rep, ex, hres, len(hres.Notable), hres.Events}, "", " ")
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

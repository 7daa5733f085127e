package main

// The soak suite's second part, health under saturation: a fork-mode
// function whose static C handler burns satBurnMS of CPU per request,
// pinned at one replica, under satConns closed-loop connections through the
// gateway for satDuration, far more than two cores serve. It must stay in
// rotation: no DOWN transition of its slot, no request detoured through
// pulsed's cold-start path (the backup server), none failed.

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/pulsefaas/pulse/bench/report"
	"github.com/pulsefaas/pulse/gateway"
)

// Settings of the saturation.
const (
	satConns    = 64
	satBurnMS   = 15
	satDuration = 2 * time.Minute
	satPoll     = time.Second
)

// burnEchoC is the saturation's handler: read stdin, burn BURN_MS
// (default 15) ms of CPU, write what was read to stdout.
const burnEchoC = `#include <stdlib.h>
#include <time.h>
#include <unistd.h>
int main(void){static char b[1<<20];size_t n=0;ssize_t r;
while(n<sizeof b&&(r=read(0,b+n,sizeof b-n))>0)n+=(size_t)r;
const char*v=getenv("BURN_MS");long ms=v?atol(v):15;struct timespec a,c;
clock_gettime(CLOCK_PROCESS_CPUTIME_ID,&a);volatile unsigned long x=0;
for(;;){for(int i=0;i<100000;i++)x+=i;clock_gettime(CLOCK_PROCESS_CPUTIME_ID,&c);
if((c.tv_sec-a.tv_sec)*1000+(c.tv_nsec-a.tv_nsec)/1000000>=ms)break;}
return write(1,b,n)==(ssize_t)n?0:1;}
`

// soakSat is a saturation's result: the client's requests, and HAProxy's
// counters over the load for the busiest slot (Server), every slot (Downs,
// CheckFails) and the backup server.
type soakSat struct {
	Requests, OK, Failed                        int64
	FailedByKind                                map[string]int
	RPS, P50MS, P99MS, MaxMS                    float64 // RPS: answers per second
	Server                                      string
	Sessions, Downs, CheckFails, BackupSessions int64
	Polls, DownPolls, PollErrs                  int     // 1 s polls of show stat; those finding a slot DOWN; failed
	HostBusyPct                                 float64 // of all cores
}

// saturation runs the saturation on pulsed's first lifetime and adds its
// row.
func (b *soakBench) saturation(ctx context.Context) error {
	var s soakSat
	acc := newStatAcc()
	poll := func() error {
		rows, err := serverStats(ctx, b.rt, gateway.BackendName(b.burn))
		if err != nil {
			s.PollErrs++
			return err
		}
		acc.add(time.Now(), rows)
		s.Polls++
		s.DownPolls += btoi(slices.ContainsFunc(rows, func(r gateway.ServerStat) bool {
			return r.Server != gateway.BackupServerName && strings.HasPrefix(r.Status, "DOWN")
		}))
		return nil
	}
	if err := poll(); err != nil {
		return err
	}
	acc.restart()
	s.Polls, s.DownPolls = 0, 0
	b.log.Info("saturation", "function", b.burn, "connections", satConns, "burn_ms", satBurnMS, "for", satDuration)
	h0, t0 := markCPU(), time.Now()
	load := newClosedLoop(t0, b.body, nil)
	load.set(satConns, b.gwAddr, "/function/"+b.burn, false)
	lctx, cancel := context.WithTimeout(ctx, satDuration)
	every(lctx, satPoll, func() { _ = poll() })
	cancel()
	recs, fails := load.end()
	h1, wall := markCPU(), time.Since(t0).Seconds()
	if err := ctx.Err(); err != nil {
		return err
	}
	_ = poll()
	summarizeSat(&s, recs, fails, acc, wall)
	s.HostBusyPct = busyPct(uint64(h1["busy"]-h0["busy"]), uint64(h1["total"]-h0["total"]))
	if s.PollErrs > 0 {
		b.rep.Note("%d `show stat` polls of the saturation failed", s.PollErrs)
	}
	b.rep.Add(satRow(s))
	return nil
}

// summarizeSat fills s from the client's records and HAProxy's counters
// over wall seconds.
func summarizeSat(s *soakSat, recs []loadReq, fails []loadFail, acc *statAcc, wall float64) {
	lat := report.Values(recs, func(r loadReq) float64 { return float64(r.LatencyUS) / 1000 })
	s.Requests, s.OK, s.P50MS, s.P99MS, s.MaxMS = int64(len(recs)), int64(len(recs)-len(fails)), 0, 0, 0
	if len(lat) > 0 { // NaN would not marshal
		s.P50MS, s.P99MS, s.MaxMS = report.Percentile(lat, 50), report.Percentile(lat, 99), report.Percentile(lat, 100)
	}
	if wall > 0 {
		s.RPS = report.Round3(float64(s.OK) / wall)
	}
	s.Failed, s.FailedByKind = int64(len(fails)), nil
	for _, f := range fails {
		if s.FailedByKind == nil {
			s.FailedByKind = map[string]int{}
		}
		key := reqErrName(f.Req.Err)
		if f.Req.Status != 0 {
			key += " " + strconv.Itoa(int(f.Req.Status))
		}
		s.FailedByKind[key]++
	}
	s.Server, s.Sessions, s.Downs, s.CheckFails, s.BackupSessions = "", 0, 0, 0, 0
	for name, t := range acc.total {
		if name == gateway.BackupServerName {
			s.BackupSessions = t.Sessions
			continue
		}
		s.Downs += t.Downs
		s.CheckFails += t.CheckFails
		if s.Server == "" || t.Sessions > s.Sessions || t.Sessions == s.Sessions && slotNumber(name) < slotNumber(s.Server) {
			s.Server, s.Sessions = name, t.Sessions
		}
	}
}

// satRow is the saturation's row.
func satRow(s soakSat) *report.Row {
	r := report.NewRow("saturation", "server", s.Server, "failed_by_kind", kinds(s.FailedByKind))
	return r.PutAll(map[string]float64{"requests": float64(s.Requests), "failed": float64(s.Failed), "rps": s.RPS, "p50_ms": s.P50MS,
		"p99_ms": s.P99MS, "max_ms": s.MaxMS, "sessions": float64(s.Sessions), "chkdown": float64(s.Downs), "chkfail": float64(s.CheckFails),
		"backup_sessions": float64(s.BackupSessions), "polls": float64(s.Polls), "down_polls": float64(s.DownPolls), "host_busy_pct": s.HostBusyPct})
}

// busyPct is busy ticks in % of total ticks (the whole host), 0 for none.
func busyPct(busy, total uint64) float64 {
	if total == 0 {
		return 0
	}
	return report.Round3(100 * float64(busy) / float64(total))
}

// kinds is "kind ×n, …" of failures counted by kind.
func kinds(m map[string]int) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%s ×%d", k, m[k]))
	}
	return strings.Join(parts, ", ")
}

package main

// The soak suite's second part: health under saturation (the issue's
// "flaps under saturation"). A fork-mode function whose static C handler
// burns satBurnMS of CPU per request, pinned at one replica, takes satConns
// closed-loop connections through the gateway for satDuration: far more
// than the two cores can serve, so the replica is saturated the whole time
// and answers its health checks late. It must stay in rotation: no DOWN
// transition of its slot (HAProxy's chkdown), no request detoured through
// pulsed's cold-start path (the backup server's stot) and no failed
// request. pulsed runs at its defaults, as for the fair comparison.

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/pulsefaas/pulse/gateway"
)

// Settings of the saturation.
const (
	satConns    = 64
	satBurnMS   = 15
	satDuration = 2 * time.Minute
	satPoll     = time.Second
	satHandler  = "watchdog (fork mode) + a static C handler that reads the request, burns BURN_MS of CPU (CLOCK_PROCESS_CPUTIME_ID) and echoes it"
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

// soakSat is the saturation's result.
type soakSat struct {
	Function  string   `json:"function"`
	Handler   string   `json:"handler"`
	BurnMS    int      `json:"burn_ms"`
	Conns     int      `json:"connections"`
	DurationS float64  `json:"duration_s"`
	PulsedEnv []string `json:"pulsed_env"`
	// The client's records (requests by start time).
	Requests     int64          `json:"requests"`
	OK           int64          `json:"ok"`
	Failed       int64          `json:"failed"`
	FailedByKind map[string]int `json:"failed_by_kind,omitempty"`
	RPS          float64        `json:"rps"` // answers per second
	P50MS        float64        `json:"p50_ms"`
	P99MS        float64        `json:"p99_ms"`
	MaxMS        float64        `json:"max_ms"`
	// HAProxy's counters over the load (show stat, polled every second):
	// the replica's slot and the backup server (pulsed's cold-start path).
	Server         string `json:"server"`
	Sessions       int64  `json:"sessions"`
	Connects       int64  `json:"connects"`
	Downs          int64  `json:"chkdown"` // every slot's, the replica's included
	CheckFails     int64  `json:"chkfail"`
	HTTP5xx        int64  `json:"hrsp_5xx"`
	BackupSessions int64  `json:"backup_sessions"`
	// Polls counts the 1 s polls, DownPolls those that found a slot DOWN.
	Polls     int    `json:"polls"`
	DownPolls int    `json:"down_polls"`
	PollErrs  int    `json:"poll_errors,omitempty"`
	StatusEnd string `json:"status_end"`
	// The whole host's busy CPU over the load, % of all cores, and per
	// request answered.
	HostBusyPct  float64 `json:"host_busy_pct"`
	HostMSPerReq float64 `json:"host_ms_per_request"`
}

// saturation runs the saturation on pulsed's first lifetime.
func (b *soakBench) saturation(ctx context.Context) error {
	s := &b.rep.Saturation
	backend := gateway.BackendName(b.burn)
	acc := newStatAcc()
	poll := func() error {
		rows, err := serverStats(ctx, b.rt, backend)
		if err != nil {
			return err
		}
		acc.add(time.Now(), rows)
		for _, r := range rows {
			if r.Server != gateway.BackupServerName && strings.HasPrefix(r.Status, "DOWN") {
				s.DownPolls++
				break
			}
		}
		return nil
	}
	count := func() {
		if err := poll(); err != nil {
			s.PollErrs++
		} else {
			s.Polls++
		}
	}
	if err := poll(); err != nil {
		return err
	}
	acc.restart()
	s.DownPolls = 0
	b.log.Info("saturation", "function", b.burn, "connections", satConns, "burn_ms", satBurnMS, "for", satDuration)
	h0, _ := readHostCPU("/proc")
	t0 := time.Now()
	load := newClosedLoop(t0, b.body, nil)
	load.set(satConns, b.gwAddr, "/function/"+b.burn, false)
	lctx, cancel := context.WithTimeout(ctx, satDuration)
	every(lctx, satPoll, count)
	cancel()
	recs, fails := load.end()
	h1, _ := readHostCPU("/proc")
	wall := time.Since(t0).Seconds()
	if err := ctx.Err(); err != nil {
		return err
	}
	count()
	summarizeSat(s, recs, fails, acc, wall)
	s.HostBusyPct = busyPct(h1.Busy-h0.Busy, h1.Total-h0.Total)
	if s.OK > 0 && b.env.clk > 0 {
		s.HostMSPerReq = round3(float64(h1.Busy-h0.Busy) / b.env.clk * 1000 / float64(s.OK))
	}
	b.log.Info("saturation done", "requests", s.Requests, "failed", s.Failed, "chkdown", s.Downs, "backup_sessions", s.BackupSessions, "p99_ms", s.P99MS)
	return nil
}

// summarizeSat fills s from the client's records and HAProxy's counters
// over wall seconds.
func summarizeSat(s *soakSat, recs []loadReq, fails []loadFail, acc *statAcc, wall float64) {
	t := tallyByStart(recs, nil, 1, func(int64) int { return 0 })[0]
	s.Requests, s.OK = t.requests, t.requests-t.failed
	s.P50MS, s.P99MS, s.MaxMS = t.ms(50), t.ms(99), t.ms(100)
	if wall > 0 {
		s.RPS = round3(float64(s.OK) / wall)
	}
	s.Failed = int64(len(fails))
	s.FailedByKind = nil
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
	s.Server, s.Sessions, s.Connects, s.Downs, s.CheckFails, s.HTTP5xx, s.BackupSessions, s.StatusEnd = "", 0, 0, 0, 0, 0, 0, ""
	for name, t := range acc.total {
		if name == gateway.BackupServerName {
			s.BackupSessions = t.Sessions
			continue
		}
		s.Downs += t.Downs
		s.CheckFails += t.CheckFails
		s.HTTP5xx += t.HTTP5xx
		if s.Server == "" || t.Sessions > s.Sessions || t.Sessions == s.Sessions && slotNumber(name) < slotNumber(s.Server) {
			s.Server, s.Sessions, s.Connects, s.StatusEnd = name, t.Sessions, t.Connects, t.Status
		}
	}
}

// --- rendering ---

func satCaption(s soakSat) string {
	return fmt.Sprintf("Health under saturation, before the soak, on the same pulsed (at its defaults): %s, %s, pinned at one replica (scale min = max = 1), "+
		"%d closed-loop connections through the gateway for %.0f s; HAProxy's counters over the load from `show stat` polled every second:",
		s.Function, strings.Replace(s.Handler, "BURN_MS", strconv.Itoa(s.BurnMS)+" ms", 1), s.Conns, s.DurationS)
}

func satRows(s soakSat) [][]string {
	if s.Polls == 0 && s.Requests == 0 {
		return nil
	}
	return [][]string{
		{"requests", strconv.FormatInt(s.Requests, 10), fmt.Sprintf("%d answered 2xx with the body, %.1f per second", s.OK, s.RPS)},
		{"failed", strconv.FormatInt(s.Failed, 10), kinds(s.FailedByKind)},
		{"latency p50 / p99 / max", fmt.Sprintf("%.0f / %.0f / %.0f ms", s.P50MS, s.P99MS, s.MaxMS), "by start, every request"},
		{"DOWN transitions (chkdown)", strconv.FormatInt(s.Downs, 10), fmt.Sprintf("slot %s: %d sessions over %d connections, %s at the end; failed checks (chkfail) %d; "+
			"%d of %d polls found a slot DOWN", s.Server, s.Sessions, s.Connects, s.StatusEnd, s.CheckFails, s.DownPolls, s.Polls)},
		{"detours through the cold-start path", strconv.FormatInt(s.BackupSessions, 10), "the backup server's stot"},
		{"5xx from the replica's slot", strconv.FormatInt(s.HTTP5xx, 10), ""},
		{"host busy", fmt.Sprintf("%.0f %%", s.HostBusyPct), fmt.Sprintf("%.1f ms of whole-host CPU per answered request", s.HostMSPerReq)},
	}
}

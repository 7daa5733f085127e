package main

import (
	"math"
	"net"
	"os"
	"os/exec"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pulsefaas/pulse/bench/report"
	"github.com/pulsefaas/pulse/gateway"
)

// Lines as HAProxy 2.6 wrote them with `option httplog` and `format raw`.
const (
	logOK        = `127.0.0.1:39996 [06/Dec/2026:05:01:03.291] gateway fn_x/s1 0/0/0/6/6 200 535 - - ---- 1/1/0/0/0 0/0 "POST /function/x/a?b=1 HTTP/1.1"`
	logNoSrv     = `127.0.0.1:40002 [06/Dec/2026:05:01:03.330] gateway gateway/<NOSRV> -1/-1/-1/-1/0 503 217 - - SC-- 1/1/0/0/0 0/0 "GET /function/y/ HTTP/1.1"`
	log502       = `127.0.0.1:41000 [06/Dec/2026:05:01:04.007] gateway fn_x/s4 0/0/0/-1/3 502 209 - - SH-- 12/12/11/3/0 0/0 "POST /function/x HTTP/1.1"`
	logRetried   = `127.0.0.1:41001 [06/Dec/2026:05:01:04.010] gateway fn_x/s2 0/0/1/1/1002 200 150 - - ---- 12/12/11/4/+1 0/0 "POST /function/x HTTP/1.1"`
	logAborted   = `::1:41002 [06/Dec/2026:05:01:04.500] gateway fn_x/s3 0/0/0/-1/20 -1 0 - - CD-- 3/3/2/1/0 0/0 "POST /function/x HTTP/1.1"`
	logServerOff = `Server fn_x/s4 is DOWN, reason: Layer4 connection problem, info: "Connection refused", check duration: 0ms. 3 active and 1 backup servers left.`
)

func TestParseHAProxyLog(t *testing.T) {
	at := func(s string) time.Time {
		tm, err := time.ParseInLocation("2006-01-02 15:04:05.000", s, time.UTC)
		if err != nil {
			t.Fatal(err)
		}
		return tm
	}
	for _, tc := range []struct {
		name   string
		line   string
		want   haLogLine
		failed bool
		err    bool
	}{
		{"ok", logOK + "\n", haLogLine{ClientPort: 39996, Accept: at("2026-12-06 05:01:03.291"), Backend: "fn_x", Server: "s1", Status: 200, Term: "----"}, false, false},
		{"no server", logNoSrv, haLogLine{ClientPort: 40002, Accept: at("2026-12-06 05:01:03.330"), Backend: "gateway", Server: "<NOSRV>", Status: 503, Term: "SC--"}, true, false},
		{"502 from a dead server", log502, haLogLine{ClientPort: 41000, Accept: at("2026-12-06 05:01:04.007"), Backend: "fn_x", Server: "s4", Status: 502, Term: "SH--"}, true, false},
		{"redispatched", logRetried, haLogLine{ClientPort: 41001, Accept: at("2026-12-06 05:01:04.010"), Backend: "fn_x", Server: "s2", Status: 200, Term: "----"}, false, false},
		{"client aborted, IPv6", logAborted, haLogLine{ClientPort: 41002, Accept: at("2026-12-06 05:01:04.500"), Backend: "fn_x", Server: "s3", Status: -1, Term: "CD--"}, true, false},
		{"a server state change", logServerOff, haLogLine{}, false, true},
		{"proxy started", "Proxy fn_x started.", haLogLine{}, false, true},
		{"empty", "", haLogLine{}, false, true},
		{"bad date", strings.Replace(logOK, "06/Dec/2026", "06/Foo/2026", 1), haLogLine{}, false, true},
		{"bad timers", strings.Replace(logOK, "0/0/0/6/6", "0/0/6/6", 1), haLogLine{}, false, true},
		{"bad timer", strings.Replace(logOK, "0/0/0/6/6", "0/0/-2/6/6", 1), haLogLine{}, false, true},
		{"bad retries", strings.Replace(logOK, "1/1/0/0/0", "1/1/0/0/x", 1), haLogLine{}, false, true},
		{"bad status", strings.Replace(logOK, " 200 ", " OK ", 1), haLogLine{}, false, true},
		{"bad bytes", strings.Replace(logOK, " 535 ", " -5 ", 1), haLogLine{}, false, true},
		{"bad termination", strings.Replace(logOK, " ---- ", " --- ", 1), haLogLine{}, false, true},
		{"no port", strings.Replace(logOK, "127.0.0.1:39996", "127.0.0.1", 1), haLogLine{}, false, true},
		{"no server", strings.Replace(logOK, "fn_x/s1", "fn_x", 1), haLogLine{}, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseHAProxyLog(tc.line, time.UTC)
			if tc.err {
				if err == nil {
					t.Fatalf("parseHAProxyLog(%q) = %+v, want an error", tc.line, got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("parseHAProxyLog =\n%+v\nwant\n%+v", got, tc.want)
			}
			if got.Failed() != tc.failed {
				t.Errorf("Failed %t, want %t", got.Failed(), tc.failed)
			}
		})
	}
}

// FuzzParseHAProxyLog: HAProxy's log is outside input; the parser must
// never panic, and what it accepts must be a whole request line.
func FuzzParseHAProxyLog(f *testing.F) {
	for _, l := range []string{logOK, logNoSrv, log502, logRetried, logAborted, logServerOff, "", `a:1 [x] f b/s 1/2/3/4/5 200 1 - - ---- 1/1/1/1/1 0/0 "`} {
		f.Add(l)
	}
	f.Fuzz(func(t *testing.T, line string) {
		l, err := parseHAProxyLog(line, time.UTC)
		if err != nil {
			return
		}
		if len(l.Term) != 4 || l.Server == "" || l.Backend == "" || l.Accept.IsZero() || l.ClientPort < 0 || l.ClientPort > 65535 || l.Status < -1 {
			t.Fatalf("parseHAProxyLog(%q) accepted %+v", line, l)
		}
		_ = l.Failed() // must not panic
	})
}

func TestHALogReceiver(t *testing.T) {
	h, err := listenHALog("fn_x")
	if err != nil {
		t.Fatal(err)
	}
	h.loc = time.UTC
	addr, _, _ := strings.Cut(h.Target(), " ")
	if !strings.HasSuffix(h.Target(), " format raw local0") {
		t.Errorf("Target = %q", h.Target())
	}
	c, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// Lines that are not the backend's requests first: they are left out.
	other := strings.Replace(logOK, "fn_x/s1", "fn_y/s1", 1)
	for _, l := range []string{logServerOff, other, logOK, logOK, log502, logRetried} {
		if _, err := c.Write([]byte(l + "\n")); err != nil {
			t.Fatal(err)
		}
	}
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		h.mu.Lock()
		n := h.res.Requests
		h.mu.Unlock()
		if n == 4 {
			break
		}
	}
	res := h.close(0)
	if res.Requests != 4 || len(res.Failed) != 1 || res.Failed[0].Server != "s4" || res.Failed[0].Status != 502 {
		t.Errorf("requests %d, failed %+v; want 4 and the 502 on s4", res.Requests, res.Failed)
	}
}

func TestSoakSchedule(t *testing.T) {
	for _, tc := range []struct {
		d            time.Duration
		conns        []int
		update, kill time.Duration
	}{
		{10 * time.Minute, []int{4, 16, 32, 16, 48, 8, 32, 16, 16, 16}, 4*time.Minute + 30*time.Second, 6*time.Minute + 30*time.Second},
		{3 * time.Minute, []int{16, 16, 16}, 34 * time.Second, 49 * time.Second},
		{12 * time.Minute, []int{4, 16, 32, 16, 48, 8, 32, 16, 4, 16, 16, 16}, 5*time.Minute + 38*time.Second, 8*time.Minute + 8*time.Second},
	} {
		t.Run(tc.d.String(), func(t *testing.T) {
			ps, update, kill, err := soakSchedule(tc.d)
			if err != nil {
				t.Fatal(err)
			}
			var conns []int
			for _, p := range ps {
				conns = append(conns, p.Conns)
			}
			if !reflect.DeepEqual(conns, tc.conns) {
				t.Errorf("connections %v, want %v", conns, tc.conns)
			}
			if update != tc.update || kill != tc.kill {
				t.Errorf("update %s kill %s, want %s %s", update, kill, tc.update, tc.kill)
			}
			n := len(ps)
			if ps[n-1].Name != soakPhaseDirect || !ps[n-1].Direct || ps[n-2].Name != soakPhaseGwCPU || ps[n-2].Direct || ps[n-1].EndS != tc.d.Seconds() {
				t.Errorf("last phases %+v %+v: want the gateway then the direct CPU minute, ending at %s", ps[n-2], ps[n-1], tc.d)
			}
			for i := 1; i < n; i++ {
				if ps[i].StartS != ps[i-1].EndS || ps[i].EndS-ps[i].StartS != 60 {
					t.Errorf("phase %d: %+v after %+v", i, ps[i], ps[i-1])
				}
			}
		})
	}
	for _, d := range []time.Duration{2 * time.Minute, 3*time.Minute + 30*time.Second, 0} {
		if _, _, _, err := soakSchedule(d); err == nil {
			t.Errorf("soakSchedule(%s): want an error", d)
		}
	}
	if i := phaseAt([]soakPhase{{StartS: 0, EndS: 60, Conns: 4}}, 60); i != -1 {
		t.Errorf("phaseAt(60) = %d, want none (phases end before their end)", i)
	}
}

// req is a loadReq starting at s seconds.
func req(s, latencyMS float64, status int16, e uint8, direct bool, port uint16) loadReq {
	return loadReq{StartNS: int64(s * 1e9), LatencyUS: int32(latencyMS * 1000), Status: status, Err: e, Direct: direct, Port: port}
}

func TestCountByStartAndOKIn(t *testing.T) {
	recs := []loadReq{
		req(0.1, 1, 200, reqOK, false, 1), req(0.2, 3, 200, reqOK, false, 1), req(0.3, 1900, 200, reqOK, false, 2), // the last ends in second 2
		req(1.5, 2, 0, reqErrRead, false, 3), req(1.6, 2, 502, reqErrStatus, false, 4),
		req(2.5, 1, 200, reqOK, true, 5),
		req(3.5, 1, 200, reqOK, true, 5), // after the buckets: left out
	}
	reqs, failed := countByStart(recs, 3, func(s float64) int { return int(s) })
	if !reflect.DeepEqual(reqs, []float64{3, 2, 1}) || !reflect.DeepEqual(failed, []float64{0, 2, 0}) {
		t.Errorf("countByStart = %v, %v; want [3 2 1], [0 2 0]", reqs, failed)
	}
	if n := okIn(recs, 0, 2, false); n != 2 {
		t.Errorf("okIn gateway [0,2) = %d, want 2 (failed and late ones left out)", n)
	}
	if n := okIn(recs, 2, 3, true); n != 1 {
		t.Errorf("okIn direct [2,3) = %d, want 1", n)
	}
}

func stat(server, addr, status string, stot, connect, eresp int64) gateway.ServerStat {
	return gateway.ServerStat{Backend: "fn_x", Server: server, Addr: addr, Status: status, Sessions: stot, Connects: connect, RespErrors: eresp}
}

func TestStatAcc(t *testing.T) {
	t0 := time.Unix(1000, 0)
	a := newStatAcc()
	a.add(t0, []gateway.ServerStat{stat("s1", "127.0.0.1:30001", "UP", 100, 2, 0), stat("s2", "127.0.0.1:1", "MAINT", 0, 0, 0)})
	a.add(t0.Add(time.Second), []gateway.ServerStat{stat("s1", "127.0.0.1:30001", "UP", 300, 3, 0), stat("s2", "127.0.0.1:30002", "UP", 50, 1, 0)})
	// A reload: a new worker counts from zero; s2 lost an answer.
	a.add(t0.Add(2*time.Second), []gateway.ServerStat{stat("s1", "127.0.0.1:30001", "UP", 10, 1, 0), stat("s2", "127.0.0.1:30002", "DOWN", 70, 1, 2)})
	if s1 := a.total["s1"]; s1.Sessions != 310 || s1.Connects != 4 {
		t.Errorf("s1 total %+v, want 310 sessions, 4 connects", s1)
	}
	wantErrs := []soakStatErr{{At: t0.Add(2 * time.Second), Server: "s2", Addr: "127.0.0.1:30002"}}
	if !reflect.DeepEqual(a.errs, wantErrs) {
		t.Errorf("errs %+v, want %+v", a.errs, wantErrs)
	}
	rows := serverRows(a)
	if len(rows) != 2 || rows[0].Label("server") != "s1" || rows[1].Label("server") != "s2" {
		t.Fatalf("serverRows = %+v", rows)
	}
	if r := rows[0]; r.V("connect_pct") != 1.29 || r.V("sessions") != 310 {
		t.Errorf("s1 = %+v, want connect 1.29 %%", r)
	}
	if r := rows[1]; r.V("sessions") != 70 || r.V("connects") != 1 {
		t.Errorf("s2 = %+v", r)
	}
	a.restart()
	if len(a.total) != 0 || len(a.polls) != 0 || len(a.errs) != 0 {
		t.Errorf("after restart: %+v", a)
	}
}

// testPolls: s1 holds A all along; s2 holds B until 10 s, then is in
// maintenance and given C at 12 s.
func testPolls(t0 time.Time) *statAcc {
	a := newStatAcc()
	for _, p := range []struct {
		at       float64
		s2, addr string
	}{{0, "UP", "127.0.0.1:30002"}, {5, "UP", "127.0.0.1:30002"}, {10, "MAINT", "127.0.0.1:30002"}, {12, "UP", "127.0.0.1:30003"}} {
		a.add(t0.Add(time.Duration(p.at*float64(time.Second))), []gateway.ServerStat{stat("s1", "127.0.0.1:30001", "UP", 0, 0, 0), stat("s2", p.addr, p.s2, 0, 0, 0)})
	}
	return a
}

func TestAddrAt(t *testing.T) {
	t0 := time.Unix(1000, 0)
	a := testPolls(t0)
	for _, tc := range []struct {
		server string
		at     float64
		addr   string
	}{
		{"s1", 3, "127.0.0.1:30001"},
		{"s2", 7, "127.0.0.1:30002"},
		{"s2", 11, "127.0.0.1:30002"},   // in maintenance at 10: its last replica
		{"s2", 12.5, "127.0.0.1:30003"}, // re-pointed
		{"s2", -1, "127.0.0.1:30002"},   // before the first poll: the first after
		{"s3", 5, ""},
		{"s1", 30, ""}, // more than 10 s after the last poll
	} {
		if addr := a.addrAt(tc.server, t0.Add(time.Duration(tc.at*float64(time.Second)))); addr != tc.addr {
			t.Errorf("addrAt(%s, %g) = %q, want %q", tc.server, tc.at, addr, tc.addr)
		}
	}
}

func TestAttributeFailures(t *testing.T) {
	t0 := time.Date(2026, 12, 6, 5, 1, 0, 0, time.UTC)
	sec := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	parse := func(l string) haLogLine {
		p, err := parseHAProxyLog(l, time.UTC)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	// log502 is at 05:01:04.007 on s4; make it s2's, port 41000.
	lines := []haLogLine{parse(strings.Replace(log502, "fn_x/s4", "fn_x/s2", 1)), parse(logRetried)}
	// `show stat` polls: s2 (B) loses answers at 4.5, s1 and s2 at 7.5.
	acc := newStatAcc()
	for _, p := range []struct{ at, eresp1, eresp2 float64 }{{3.5, 0, 0}, {4.5, 0, 2}, {7.5, 1, 3}, {8.5, 1, 3}} {
		acc.add(sec(p.at), []gateway.ServerStat{stat("s1", "127.0.0.1:30001", "UP", 0, 0, int64(p.eresp1)), stat("s2", "127.0.0.1:30002", "UP", 0, 0, int64(p.eresp2))})
	}
	kill := &soakKill{At: sec(4.008), Addr: "127.0.0.1:30002"}
	fails := []loadFail{
		// Logged 502 on s2 (B), in flight at the kill.
		{Req: req(4.006, 3, 502, reqErrStatus, false, 41000), Msg: "502 Bad Gateway"},
		// Not logged, s2's eresp rose in the next poll: in flight too.
		{Req: req(4.005, 4, 0, reqErrRead, false, 42000), Msg: "read: unexpected EOF"},
		// Not logged, two servers' counters rose: unknown.
		{Req: req(7.2, 1, 0, reqErrRead, false, 42001), Msg: "read: EOF"},
		// Logged nowhere and after the last poll.
		{Req: req(13, 1, 0, reqErrRead, false, 42002), Msg: "read: EOF"},
		// Direct.
		{Req: req(2, 1, 0, reqErrDial, true, 0), Msg: "dial: refused"},
	}
	got := attributeFailures(fails, t0, lines, acc, kill)
	if len(got) != 5 {
		t.Fatalf("%d failures, want 5", len(got))
	}
	// In start order: direct (2), unlogged (4.005), logged (4.006), 7.2, 13.
	if f := got[0]; f.Label("path") != pathDirect || f.Label("via") != "" || f.Label("in_flight") != "" || f.V("start_s") != 2 {
		t.Errorf("direct failure %+v", f)
	}
	if f := got[1]; f.Label("via") != viaCounters || f.Label("server") != "s2" || f.Label("addr") != "127.0.0.1:30002" || f.Label("in_flight") != "yes" {
		t.Errorf("unlogged failure at the kill %+v", f)
	}
	if f := got[2]; f.Label("via") != viaLog || f.Label("server") != "s2" || f.Label("addr") != "127.0.0.1:30002" || f.Label("in_flight") != "yes" || f.V("latency_ms") != 3 {
		t.Errorf("logged failure %+v", f)
	}
	if f := got[3]; f.Label("via") != "" || f.Label("server") != "" || f.Label("in_flight") != "" {
		t.Errorf("ambiguous failure %+v", f)
	}
	if f := got[4]; f.Label("via") != "" || f.Label("in_flight") != "" || f.Label("error") != "read" || f.Label("message") != "read: EOF" {
		t.Errorf("late failure %+v", f)
	}
	// On another replica, the same failures are not in flight at the kill.
	for _, f := range attributeFailures(fails, t0, lines, acc, &soakKill{At: sec(4.008), Addr: "127.0.0.1:30001"}) {
		if f.Label("in_flight") != "" {
			t.Errorf("in flight on another replica: %+v", f)
		}
	}
	// The kill takes from its call to the container's end: a request on
	// the replica in that span was in flight at the kill.
	span := &soakKill{CallAt: sec(3.9), At: sec(4.2), Addr: "127.0.0.1:30002"}
	for _, tc := range []struct {
		start, end float64
		want       bool
	}{{3.8, 3.95, true}, {4.1, 4.15, true}, {4.19, 4.3, true}, {3.5, 3.89, false}, {4.21, 4.3, false}} {
		if got := span.inFlight(sec(tc.start), sec(tc.end)); got != tc.want {
			t.Errorf("inFlight(%g–%g) = %t, want %t", tc.start, tc.end, got, tc.want)
		}
	}
}

// soakTestRows are the rows of a small run: the fair comparison, the
// saturation, servers and the soak's figures.
func soakTestRows() []report.Row {
	row := func(kind string, labels []any, v map[string]float64) report.Row {
		return *report.NewRow(kind, labels...).PutAll(v)
	}
	return []report.Row{
		row("stretch", []any{"stretch", 1, "path", pathGateway}, map[string]float64{"cpu_per_req_us": 95}),
		row("stretch", []any{"stretch", 2, "path", pathDirect}, map[string]float64{"cpu_per_req_us": 50}),
		row("stretch", []any{"stretch", 3, "path", pathDirect}, map[string]float64{"cpu_per_req_us": 50}),
		row("stretch", []any{"stretch", 4, "path", pathGateway}, map[string]float64{"cpu_per_req_us": 110}),
		row("fair_cpu", []any{"path", pathGateway}, map[string]float64{"seconds": 60, "cpu_per_req_us": 100, "requests": 10, "server_cpu_per_req_us": 80}),
		row("fair_cpu", []any{"path", pathDirect}, map[string]float64{"seconds": 60, "cpu_per_req_us": 50, "requests": 20, "server_cpu_per_req_us": 25}),
		row("saturation", []any{"server", "s1", "failed_by_kind", ""}, map[string]float64{"requests": 9000, "failed": 0, "chkdown": 1, "backup_sessions": 0, "p99_ms": 900, "sessions": 9000}),
		row("server", []any{"server", "s1"}, map[string]float64{"sessions": 100000, "connects": 40, "connect_pct": 0.04}),
		row("server", []any{"server", "s2"}, map[string]float64{"sessions": 5000, "connects": 100, "connect_pct": 2}),
		row("server", []any{"server", "s3"}, map[string]float64{"sessions": 999, "connects": 999, "connect_pct": 100}),
		row("soak", []any{"rolling_update", "completed: update completed"}, map[string]float64{"gateway_requests": 1000, "gateway_failed": 3, "in_flight_at_kill": 3,
			"kill_call_s": 390, "kill_end_s": 390.2, "kill_failed": 3, "kill_failed_on_killed": 3, "kill_window_ms": 272, "log_requests": 1000}),
	}
}

func TestSoakGoals(t *testing.T) {
	rows := soakTestRows()
	got := soakGoals(rows)
	if len(got) != 8 {
		t.Fatalf("%d goals", len(got))
	}
	if g := got[0]; g.Status != report.Pass || g.Value != 2 || !strings.Contains(g.Note, "per pair of stretches 1.90–2.20×") ||
		!strings.Contains(g.Note, "without the client's CPU 80.0 ÷ 25.0 µs = 3.20×") || !strings.Contains(g.Name, "c=16, 60 s per path in 4 interleaved stretches") {
		t.Errorf("CPU goal %+v", g)
	}
	if g := got[1]; g.Status != report.Pass || g.Value != 0 || !strings.Contains(g.Note, "3 in flight on the killed replica") || !strings.Contains(g.Note, "6:30.0") {
		t.Errorf("failures goal %+v", g)
	}
	if g := got[2]; g.Status != report.Fail || g.Value != 2 || !strings.HasPrefix(g.Note, "s2: 100 connects / 5000 sessions; 2 server(s)") {
		t.Errorf("connect goal %+v", g)
	}
	if g := got[3]; g.Status != report.Info || g.Value != 272 || !strings.HasPrefix(g.Note, "3 request(s) through the gateway failed") {
		t.Errorf("kill window %+v", g)
	}
	if g := got[4]; g.Status != report.Fail || g.Value != 1 || !strings.Contains(g.Name, "DOWN transitions") || !strings.Contains(g.Name, "64 connections, 15 ms of CPU each, 120 s") {
		t.Errorf("saturation DOWN goal %+v", g)
	}
	if g := got[5]; g.Status != report.Pass || g.Value != 0 || !strings.Contains(g.Name, "cold-start path") {
		t.Errorf("saturation detour goal %+v", g)
	}
	if g := got[6]; g.Status != report.Pass || g.Value != 0 || g.Note != "of 9000" {
		t.Errorf("saturation failures goal %+v", g)
	}
	if g := got[7]; g.Status != report.Info || g.Value != 900 {
		t.Errorf("saturation p99 %+v", g)
	}
	// A failure not at the kill fails the goal; the error window without
	// a failure after the kill is 0.
	s := &rows[len(rows)-1]
	s.Values["gateway_failed"], s.Values["kill_failed"] = 5, 0
	got = soakGoals(rows)
	if g := got[1]; g.Status != report.Fail || g.Value != 2 || !strings.HasPrefix(g.Note, "5 of 1000 failed; 3 in flight") {
		t.Errorf("failures goal %+v", g)
	}
	if g := got[3]; g.Status != report.Info || g.Value != 0 || g.Note != "no request failed after the kill" {
		t.Errorf("kill window without failures %+v", g)
	}
	// Without the parts before the soak, the kill and busy servers, those
	// goals are SKIP.
	s.Values["kill_call_s"] = 0
	got = soakGoals(slices.DeleteFunc(rows, func(r report.Row) bool {
		return r.Kind == "fair_cpu" || r.Kind == "saturation" || r.Kind == "stretch" || r.Label("server") != "s3" && r.Kind == "server"
	}))
	if len(got) != 8 {
		t.Fatalf("%d goals without the parts before the soak: %+v", len(got), got)
	}
	for _, i := range []int{0, 2, 3, 4, 5, 6, 7} {
		if got[i].Status != report.Skip {
			t.Errorf("goal without data: %+v; want SKIP", got[i])
		}
	}
	if got := soakGoals(nil)[1]; got.Status != report.Skip {
		t.Errorf("failures goal without the soak: %+v; want SKIP", got)
	}
}

func TestSoakNotes(t *testing.T) {
	rows := soakTestRows()
	if notes := soakNotes(rows); len(notes) != 0 {
		t.Errorf("notes on a clean run: %q", notes)
	}
	s := &rows[len(rows)-1]
	s.Values["kill_call_s"], s.Values["log_requests"], s.Values["direct_failed"], s.Labels["rolling_update"] = 0, 990, 2, "paused: update paused"
	rows[4].Values["steal_ticks"] = 7
	want := []string{"the hypervisor stole 7 ticks in the fair comparison's gateway stretches", "no replica was killed", "HAProxy's log has 990 request lines for 1000",
		"2 request(s) straight to the replica failed", "the rolling update did not complete: paused: update paused"}
	notes := soakNotes(rows)
	if len(notes) != len(want) {
		t.Fatalf("notes %q, want %d", notes, len(want))
	}
	for i, w := range want {
		if !strings.HasPrefix(notes[i], w) {
			t.Errorf("note %d = %q, want %q…", i, notes[i], w)
		}
	}
}

func TestFairRows(t *testing.T) {
	// 4 stretches of 10 s (gateway, direct, direct, gateway), each after a
	// 2 s settle; the gateway answers every 2 ms, the replica every 1 ms.
	var recs []loadReq
	var sts []stretch
	for i, from := range []float64{2, 14, 26, 38} {
		step, st := 2.0, stretch{path: pathGateway, from: from, to: from + 10, ticks: map[string]float64{"busy": 1000, "total": 2000, "steal": 1, groupHarness: 200}}
		if fairDirect(i) {
			step, st = 1, stretch{path: pathDirect, from: from, to: from + 10, ticks: map[string]float64{"busy": 800, "total": 2000, groupHarness: 300}}
		}
		for ms := (from - 2) * 1000; ms < (from+10)*1000; ms += step {
			recs = append(recs, req(ms/1000, 0.5, 200, reqOK, fairDirect(i), 1))
		}
		if i == 0 {
			recs = append(recs, req(from+1, 0.5, 502, reqErrStatus, false, 1)) // failed: counted apart, not ok
		}
		sts = append(sts, st)
	}
	rows := fairRows(sts, recs, 100)
	if len(rows) != 6 || rows[4].Kind != "fair_cpu" || rows[5].Label("path") != pathDirect {
		t.Fatalf("rows %+v", rows)
	}
	if r := rows[0]; r.V("ok") != 5000 || r.V("failed") != 1 || r.V("cpu_per_req_us") != 2000 || r.V("busy_pct") != 50 || r.Label("stretch") != "1" {
		t.Errorf("gateway stretch %+v", r)
	}
	if r := rows[1]; r.V("ok") != 10000 || r.V("failed") != 0 || r.V("cpu_per_req_us") != 800 {
		t.Errorf("direct stretch %+v", r)
	}
	if gw, di := rows[4], rows[5]; gw.V("requests") != 10000 || di.V("requests") != 20000 || gw.V("cpu_per_req_us") != 2000 || di.V("cpu_per_req_us") != 800 ||
		gw.V("seconds") != 20 || gw.V("server_cpu_per_req_us") != 1600 || di.V("server_cpu_per_req_us") != 500 || gw.V("steal_ticks") != 2 || gw.V("harness_ticks") != 400 {
		t.Errorf("fair_cpu %+v %+v", gw, di)
	}
	if r := fairRows(sts[:1], nil, 100); !math.IsNaN(r[0].V("cpu_per_req_us")) || !math.IsNaN(r[1].V("cpu_per_req_us")) {
		t.Errorf("without requests: %+v", r)
	}
	var order []bool
	for i := range 8 {
		order = append(order, fairDirect(i))
	}
	if want := []bool{false, true, true, false, true, false, false, true}; !reflect.DeepEqual(order, want) {
		t.Errorf("order %v, want %v", order, want)
	}
}

func TestSummarizeSat(t *testing.T) {
	recs := []loadReq{req(0, 500, 200, reqOK, false, 1), req(0.1, 900, 200, reqOK, false, 2), req(0.2, 100, 503, reqErrStatus, false, 3)}
	fails := []loadFail{{Req: recs[2], Msg: "503 Service Unavailable"}}
	acc := newStatAcc()
	row := func(server string, stot, connect, downs, chkfail int64, status string) gateway.ServerStat {
		return gateway.ServerStat{Backend: "fn_b", Server: server, Status: status, Sessions: stot, Connects: connect, Downs: downs, CheckFails: chkfail}
	}
	acc.add(time.Unix(0, 0), []gateway.ServerStat{row("s1", 10, 1, 0, 0, "UP"), row("s2", 0, 0, 0, 0, "MAINT"), row(gateway.BackupServerName, 0, 0, 0, 0, "UP")})
	acc.restart()
	acc.add(time.Unix(1, 0), []gateway.ServerStat{row("s1", 12, 3, 1, 4, "UP"), row("s2", 0, 0, 0, 0, "MAINT"), row(gateway.BackupServerName, 1, 1, 0, 0, "UP")})
	var s soakSat
	summarizeSat(&s, recs, fails, acc, 2)
	if s.Requests != 3 || s.OK != 2 || s.Failed != 1 || s.FailedByKind["status 503"] != 1 || s.RPS != 1 {
		t.Errorf("counts %+v", s)
	}
	if s.P50MS != 500 || s.P99MS != 900 || s.MaxMS != 900 {
		t.Errorf("latency %g / %g / %g", s.P50MS, s.P99MS, s.MaxMS)
	}
	if s.Server != "s1" || s.Sessions != 2 || s.Downs != 1 || s.CheckFails != 4 || s.BackupSessions != 1 {
		t.Errorf("counters since the restart: %+v", s)
	}
	s.Polls, s.DownPolls, s.HostBusyPct = 120, 3, 99.5
	r := satRow(s)
	if r.Kind != "saturation" || r.Label("server") != "s1" || r.Label("failed_by_kind") != "status 503 ×1" || r.V("chkdown") != 1 || r.V("backup_sessions") != 1 ||
		r.V("p99_ms") != 900 || r.V("chkfail") != 4 || r.V("down_polls") != 3 || r.V("polls") != 120 || r.V("host_busy_pct") != 99.5 {
		t.Errorf("satRow = %+v", r)
	}
	summarizeSat(&s, nil, nil, newStatAcc(), 0)
	if s.Requests != 0 || s.Failed != 0 || s.P99MS != 0 || s.Server != "" || s.Downs != 0 || len(s.FailedByKind) != 0 {
		t.Errorf("without requests: %+v", s)
	}
}

func TestBurnEchoC(t *testing.T) {
	gcc, err := exec.LookPath("gcc")
	if err != nil {
		t.Skip("no gcc")
	}
	dir := t.TempDir()
	st := cStep(tools{gcc: gcc}, dir, "burnecho", burnEchoC)
	if out, err := exec.Command(st.argv[0], st.argv[1:]...).CombinedOutput(); err != nil {
		t.Skipf("gcc -static: %v: %s", err, out) // no static libc here
	}
	cmd := exec.Command(st.out)
	cmd.Env = []string{"BURN_MS=20"}
	cmd.Stdin = strings.NewReader("0123456789abcdef")
	start := time.Now()
	out, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	if string(out) != "0123456789abcdef" {
		t.Errorf("echoed %q", out)
	}
	if cpu := cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime(); cpu < 20*time.Millisecond {
		t.Errorf("burnt %s of CPU in %s, want at least 20ms", cpu, time.Since(start))
	}
}

func TestReadmeHasSoakSection(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	begin, end := report.SectionMarkers(suiteSoak)
	for _, s := range []string{"## The soak suite", begin, end, "-suite soak", "-soak-duration"} {
		if !strings.Contains(string(readme), s) {
			t.Errorf("bench/README.md lacks %q", s)
		}
	}
}

// BenchmarkHALogAdd is the harness's cost per HAProxy log line.
func BenchmarkHALogAdd(b *testing.B) {
	h := &haLog{backend: "fn_x", loc: time.UTC}
	for b.Loop() {
		h.add(logOK)
	}
}

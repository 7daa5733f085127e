package main

import (
	"net"
	"os"
	"os/exec"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/pulsefaas/pulse/contract"
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
		name    string
		line    string
		want    haLogLine
		failed  bool
		notable bool
		err     bool
	}{
		{"ok", logOK + "\n", haLogLine{ClientIP: "127.0.0.1", ClientPort: 39996, Accept: at("2026-12-06 05:01:03.291"), Frontend: "gateway", Backend: "fn_x", Server: "s1",
			TR: 0, Tw: 0, Tc: 0, Tr: 6, Ta: 6, Status: 200, Bytes: 535, Term: "----", Request: "POST /function/x/a?b=1 HTTP/1.1"}, false, false, false},
		{"no server", logNoSrv, haLogLine{ClientIP: "127.0.0.1", ClientPort: 40002, Accept: at("2026-12-06 05:01:03.330"), Frontend: "gateway", Backend: "gateway", Server: "<NOSRV>",
			TR: -1, Tw: -1, Tc: -1, Tr: -1, Ta: 0, Status: 503, Bytes: 217, Term: "SC--", Request: "GET /function/y/ HTTP/1.1"}, true, true, false},
		{"502 from a dead server", log502, haLogLine{ClientIP: "127.0.0.1", ClientPort: 41000, Accept: at("2026-12-06 05:01:04.007"), Frontend: "gateway", Backend: "fn_x", Server: "s4",
			TR: 0, Tw: 0, Tc: 0, Tr: -1, Ta: 3, Status: 502, Bytes: 209, Term: "SH--", Request: "POST /function/x HTTP/1.1"}, true, true, false},
		{"redispatched", logRetried, haLogLine{ClientIP: "127.0.0.1", ClientPort: 41001, Accept: at("2026-12-06 05:01:04.010"), Frontend: "gateway", Backend: "fn_x", Server: "s2",
			TR: 0, Tw: 0, Tc: 1, Tr: 1, Ta: 1002, Status: 200, Bytes: 150, Term: "----", Retries: 1, Redispatched: true, Request: "POST /function/x HTTP/1.1"}, false, true, false},
		{"client aborted, IPv6", logAborted, haLogLine{ClientIP: "::1", ClientPort: 41002, Accept: at("2026-12-06 05:01:04.500"), Frontend: "gateway", Backend: "fn_x", Server: "s3",
			TR: 0, Tw: 0, Tc: 0, Tr: -1, Ta: 20, Status: -1, Bytes: 0, Term: "CD--", Request: "POST /function/x HTTP/1.1"}, true, true, false},
		{"a server state change", logServerOff, haLogLine{}, false, false, true},
		{"proxy started", "Proxy fn_x started.", haLogLine{}, false, false, true},
		{"empty", "", haLogLine{}, false, false, true},
		{"bad date", strings.Replace(logOK, "06/Dec/2026", "06/Foo/2026", 1), haLogLine{}, false, false, true},
		{"bad timers", strings.Replace(logOK, "0/0/0/6/6", "0/0/6/6", 1), haLogLine{}, false, false, true},
		{"bad status", strings.Replace(logOK, " 200 ", " OK ", 1), haLogLine{}, false, false, true},
		{"bad termination", strings.Replace(logOK, " ---- ", " --- ", 1), haLogLine{}, false, false, true},
		{"no port", strings.Replace(logOK, "127.0.0.1:39996", "127.0.0.1", 1), haLogLine{}, false, false, true},
		{"no server", strings.Replace(logOK, "fn_x/s1", "fn_x", 1), haLogLine{}, false, false, true},
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
			if got.Failed() != tc.failed || got.Notable() != tc.notable {
				t.Errorf("Failed %t Notable %t, want %t %t", got.Failed(), got.Notable(), tc.failed, tc.notable)
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
		if len(l.Term) != 4 || l.Server == "" || l.Backend == "" || l.Accept.IsZero() || l.ClientPort < 0 || l.ClientPort > 65535 {
			t.Fatalf("parseHAProxyLog(%q) accepted %+v", line, l)
		}
		_ = l.Failed() // must not panic
		for _, v := range []int{l.TR, l.Tw, l.Tc, l.Tr, l.Ta, l.Status} {
			if v < -1 {
				t.Fatalf("parseHAProxyLog(%q): negative field %d", line, v)
			}
		}
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
	other := strings.Replace(logOK, "fn_x/s1", "fn_y/s1", 1)
	for _, l := range []string{logOK, logOK, log502, logRetried, logServerOff, other} {
		if _, err := c.Write([]byte(l + "\n")); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		h.mu.Lock()
		n := h.res.Lines
		h.mu.Unlock()
		if n == 6 || time.Now().After(deadline) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	res := h.close(0)
	if res.Lines != 6 || res.Requests != 4 || res.Others != 1 || len(res.Events) != 1 || len(res.Notable) != 2 {
		t.Errorf("lines %d requests %d others %d events %d notable %d; want 6 4 1 1 2", res.Lines, res.Requests, res.Others, len(res.Events), len(res.Notable))
	}
	if got := res.ByServer["s1"]; got == nil || got.Requests != 2 || got.Failed != 0 {
		t.Errorf("s1 = %+v, want 2 requests", got)
	}
	if got := res.ByServer["s4"]; got == nil || got.Failed != 1 {
		t.Errorf("s4 = %+v, want 1 failed", got)
	}
}

func TestSoakSchedule(t *testing.T) {
	conns := func(ps []soakPhase) []int {
		var out []int
		for _, p := range ps {
			out = append(out, p.Conns)
		}
		return out
	}
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
			if got := conns(ps); !reflect.DeepEqual(got, tc.conns) {
				t.Errorf("connections %v, want %v", got, tc.conns)
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
	if p := phaseAt([]soakPhase{{StartS: 0, EndS: 60, Conns: 4}}, 60); p != nil {
		t.Errorf("phaseAt(60) = %+v, want none (phases end before their end)", p)
	}
}

// req is a loadReq starting at s seconds.
func req(s, latencyMS float64, status int16, e uint8, direct bool, port uint16) loadReq {
	return loadReq{StartNS: int64(s * 1e9), LatencyUS: int32(latencyMS * 1000), Status: status, Err: e, Direct: direct, Port: port}
}

func TestSoakSecondsAndMinutes(t *testing.T) {
	phases := []soakPhase{{Name: soakPhaseStep, StartS: 0, EndS: 2, Conns: 4}, {Name: soakPhaseDirect, StartS: 2, EndS: 3, Conns: 8, Direct: true}}
	recs := []loadReq{
		req(0.1, 1, 200, reqOK, false, 1), req(0.2, 3, 200, reqOK, false, 1), req(0.3, 900, 200, reqOK, false, 2), // the last ends in second 1
		req(1.5, 2, 0, reqErrRead, false, 3), req(1.6, 2, 502, reqErrStatus, false, 4),
		req(2.5, 1, 200, reqOK, true, 5),
		req(3.5, 1, 200, reqOK, true, 5), // after the run: left out
	}
	excused := map[soakKey]bool{keyOf(recs[3]): true}
	secs := soakSeconds(recs, excused, phases, 3)
	want := []soakSecond{
		{T: 0, Conns: 4, Started: 3, Answered: 2, P50MS: 3, P99MS: 900},
		{T: 1, Conns: 4, Started: 2, Answered: 2, Failed: 2, Excused: 1, P50MS: 2, P99MS: 2},
		{T: 2, Conns: 8, Direct: true, Started: 1, Answered: 1, P50MS: 1, P99MS: 1},
	}
	if !reflect.DeepEqual(secs, want) {
		t.Errorf("soakSeconds =\n%+v\nwant\n%+v", secs, want)
	}
	secs[0].Replicas, secs[1].Replicas, secs[1].Draining = 1, 2, 1
	ms := soakMinutes(recs, excused, phases, secs, []soakEvent{{Name: soakEventKill, AtS: 1.5}})
	if len(ms) != 2 {
		t.Fatalf("%d minutes, want 2", len(ms))
	}
	if m := ms[0]; m.Requests != 5 || m.Failed != 2 || m.Excused != 1 || m.RPS != 2 || m.P50MS != 2 || m.MaxMS != 900 || m.MaxReplicas != 3 ||
		m.Events != "replica killed @0:01.5" {
		t.Errorf("minute 0 = %+v", m)
	}
	if m := ms[1]; m.Requests != 1 || !m.Direct || m.Conns != 8 || m.RPS != 1 {
		t.Errorf("minute 1 = %+v", m)
	}
	if n := okIn(recs, 0, 2, false); n != 3 {
		t.Errorf("okIn gateway [0,2) = %d, want 3", n)
	}
	if n := okIn(recs, 2, 3, true); n != 1 {
		t.Errorf("okIn direct [2,3) = %d, want 1", n)
	}
}

func stat(server, addr string, stot, connect, eresp int64) gateway.ServerStat {
	return gateway.ServerStat{Backend: "fn_x", Server: server, Addr: addr, Status: "UP", Sessions: stot, Connects: connect, Reuses: stot - connect, RespErrors: eresp}
}

func TestStatAcc(t *testing.T) {
	t0 := time.Unix(1000, 0)
	a := newStatAcc()
	a.add(t0, []gateway.ServerStat{stat("s1", "127.0.0.1:30001", 100, 2, 0), stat("s2", "127.0.0.1:1", 0, 0, 0)})
	a.add(t0.Add(time.Second), []gateway.ServerStat{stat("s1", "127.0.0.1:30001", 300, 3, 0), stat("s2", "127.0.0.1:30002", 50, 1, 0)})
	// A reload: a new worker counts from zero; s2 lost an answer.
	a.add(t0.Add(2*time.Second), []gateway.ServerStat{stat("s1", "127.0.0.1:30001", 10, 1, 0), stat("s2", "127.0.0.1:30002", 70, 1, 2)})
	if a.resets != 1 {
		t.Errorf("resets %d, want 1", a.resets)
	}
	if s1 := a.total["s1"]; s1.Sessions != 310 || s1.Connects != 4 {
		t.Errorf("s1 total %+v, want 310 sessions, 4 connects", s1)
	}
	if s2 := a.byAddr["s2"]["127.0.0.1:30002"]; s2 == nil || s2.Sessions != 70 || s2.RespErrors != 2 {
		t.Errorf("s2 at 30002 = %+v, want 70 sessions, 2 eresp", s2)
	}
	wantErrs := []soakStatErr{{At: t0.Add(2 * time.Second), Server: "s2", Addr: "127.0.0.1:30002", RespErrors: 2}}
	if !reflect.DeepEqual(a.errs, wantErrs) {
		t.Errorf("errs %+v, want %+v", a.errs, wantErrs)
	}
	held := map[string][]soakHolding{"s2": {{Addr: "127.0.0.1:30002", Task: "t2", FromS: 1, ToS: 2}}}
	logs := map[string]*haServer{"s1": {Requests: 310}, "s2": {Requests: 68, Failed: 2}}
	ss := soakServers(a, logs, held)
	if len(ss) != 2 || ss[0].Server != "s1" || ss[1].Server != "s2" {
		t.Fatalf("soakServers = %+v", ss)
	}
	if s := ss[0]; s.ConnectPct != 1.29 || s.LogRequests != 310 {
		t.Errorf("s1 = %+v, want connect 1.29 %%", s)
	}
	if s := ss[1]; len(s.Held) != 1 || s.Held[0].Sessions != 70 || s.LogFailed != 2 || s.RespErrors != 2 {
		t.Errorf("s2 = %+v", s)
	}
}

// timeline: s1 holds A all along; s2 holds B until 10 s, then is freed and
// given to C at 12 s.
func testTimeline(t0 time.Time) soakTimeline {
	smp := func(at float64, s2 slotInfo, reps ...contract.Replica) soakSample {
		return soakSample{At: t0.Add(time.Duration(at * float64(time.Second))),
			Slots:    []slotInfo{{Name: "s1", Addr: "127.0.0.1:30001", State: gateway.StateReady, Serving: true}, s2},
			Replicas: append([]contract.Replica{{TaskID: "A", Addr: "127.0.0.1:30001"}}, reps...)}
	}
	b := contract.Replica{TaskID: "B", Addr: "127.0.0.1:30002"}
	c := contract.Replica{TaskID: "C", Addr: "127.0.0.1:30003"}
	return soakTimeline{
		smp(0, slotInfo{Name: "s2", Addr: "127.0.0.1:30002", State: gateway.StateReady, Serving: true}, b),
		smp(5, slotInfo{Name: "s2", Addr: "127.0.0.1:30002", State: gateway.StateReady, Serving: true}, b),
		smp(10, slotInfo{Name: "s2", Addr: "127.0.0.1:30002", State: gateway.StateMaint}),
		smp(12, slotInfo{Name: "s2", Addr: "127.0.0.1:30003", State: gateway.StateReady, Serving: true}, c),
	}
}

func TestTimeline(t *testing.T) {
	t0 := time.Unix(1000, 0)
	tl := testTimeline(t0)
	sec := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	for _, tc := range []struct {
		server     string
		at         float64
		addr, task string
	}{
		{"s1", 3, "127.0.0.1:30001", "A"},
		{"s2", 7, "127.0.0.1:30002", "B"},
		{"s2", 11, "127.0.0.1:30002", "B"},   // freed at 10: its last replica
		{"s2", 12.5, "127.0.0.1:30003", "C"}, // re-pointed
		{"s3", 5, "", ""},
	} {
		if addr, task := tl.replicaAt(tc.server, sec(tc.at)); addr != tc.addr || task != tc.task {
			t.Errorf("replicaAt(%s, %g) = %s %s, want %s %s", tc.server, tc.at, addr, task, tc.addr, tc.task)
		}
	}
	h := tl.holdings(t0)
	want := map[string][]soakHolding{
		"s1": {{Addr: "127.0.0.1:30001", Task: "A", FromS: 0, ToS: 12}},
		"s2": {{Addr: "127.0.0.1:30002", Task: "B", FromS: 0, ToS: 5}, {Addr: "127.0.0.1:30003", Task: "C", FromS: 12, ToS: 12}},
	}
	if !reflect.DeepEqual(h, want) {
		t.Errorf("holdings =\n%+v\nwant\n%+v", h, want)
	}
	if got := tl.taskAt("127.0.0.1:30003", sec(20)); got != "C" {
		t.Errorf("taskAt = %q, want C", got)
	}
}

func TestAttributeFailures(t *testing.T) {
	t0 := time.Date(2026, 12, 6, 5, 1, 0, 0, time.UTC)
	tl := testTimeline(t0)
	sec := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	parse := func(l string) haLogLine {
		p, err := parseHAProxyLog(l, time.UTC)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	// log502 is at 05:01:04.007 on s4; make it s2's, port 41000.
	l502 := parse(strings.Replace(log502, "fn_x/s4", "fn_x/s2", 1))
	lines := []haLogLine{l502, parse(logRetried)}
	kill := &soakKill{At: sec(4.008), Task: "B", Addr: "127.0.0.1:30002"}
	fails := []loadFail{
		// Logged 502 on s2 (B), in flight at the kill.
		{Req: req(4.006, 3, 502, reqErrStatus, false, 41000), Msg: "502 Bad Gateway"},
		// Not logged, s2's eresp rose in the next poll: in flight too.
		{Req: req(4.005, 4, 0, reqErrRead, false, 42000), Msg: "read: unexpected EOF"},
		// Not logged, two servers' counters rose: unknown.
		{Req: req(7.2, 1, 0, reqErrRead, false, 42001), Msg: "read: EOF"},
		// Logged nowhere and after the kill.
		{Req: req(13, 1, 0, reqErrRead, false, 42002), Msg: "read: EOF"},
		// Direct.
		{Req: req(2, 1, 0, reqErrDial, true, 0), Msg: "dial: refused"},
	}
	polls := []time.Time{sec(3.5), sec(4.5), sec(7.5), sec(8.5)}
	errs := []soakStatErr{
		{At: sec(4.5), Server: "s2", Addr: "127.0.0.1:30002", RespErrors: 2},
		{At: sec(7.5), Server: "s1", Addr: "127.0.0.1:30001", RespErrors: 1},
		{At: sec(7.5), Server: "s2", Addr: "127.0.0.1:30002", ConnErrors: 1},
	}
	got, excused := attributeFailures(fails, t0, lines, errs, polls, tl, kill)
	if len(got) != 5 {
		t.Fatalf("%d failures, want 5", len(got))
	}
	// In start order: direct (2), unlogged (4.005), logged (4.006), 7.2, 13.
	if f := got[0]; !f.Direct || f.Via != "" || f.InFlight {
		t.Errorf("direct failure %+v", f)
	}
	if f := got[1]; f.Via != viaCounters || f.Server != "s2" || f.Task != "B" || !f.InFlight || f.Logged {
		t.Errorf("unlogged failure at the kill %+v", f)
	}
	if f := got[2]; f.Via != viaLog || f.Server != "s2" || f.Task != "B" || f.HAStatus != 502 || f.Term != "SH--" || f.Timers != "0/0/0/-1/3" || !f.InFlight || f.AcceptErr != 1 {
		t.Errorf("logged failure %+v", f)
	}
	if f := got[3]; f.Via != "" || f.Server != "" || f.InFlight {
		t.Errorf("ambiguous failure %+v", f)
	}
	if f := got[4]; f.Via != "" || f.InFlight {
		t.Errorf("late failure %+v", f)
	}
	if len(excused) != 2 || !excused[keyOf(fails[0].Req)] || !excused[keyOf(fails[1].Req)] {
		t.Errorf("excused %v, want the two at the kill", excused)
	}
	// The kill takes from its call to the container's end: a request on
	// the replica in that span was in flight at the kill.
	span := &soakKill{CallAt: sec(3.9), At: sec(4.2), Task: "B", Addr: "127.0.0.1:30002"}
	for _, tc := range []struct {
		start, end float64
		want       bool
	}{{3.8, 3.95, true}, {4.1, 4.15, true}, {4.19, 4.3, true}, {3.5, 3.89, false}, {4.21, 4.3, false}} {
		if got := span.inFlight(sec(tc.start), sec(tc.end)); got != tc.want {
			t.Errorf("inFlight(%g–%g) = %t, want %t", tc.start, tc.end, got, tc.want)
		}
	}
	note := killNote(got, soakSummary{KillCallS: 4.0, KillEndS: 4.2})
	if !strings.Contains(note, "2 request(s) failed on the killed replica, 0 of them started before the docker kill call (0:04.0) and 2 while it was being killed") ||
		!strings.Contains(note, "HAProxy logged 1 of them and aborted 1 without a line") {
		t.Errorf("killNote = %q", note)
	}
	if killNote(got[:1], soakSummary{}) != "" {
		t.Error("killNote without failures on the killed replica: want none")
	}
	recs := []loadReq{req(1, 1, 200, reqOK, false, 1), req(1, 1, 200, reqOK, true, 2)}
	for _, f := range fails {
		recs = append(recs, f.Req)
	}
	var s soakSummary
	summarizeSoak(&s, recs, got)
	if s.Requests != 7 || s.GatewayRequests != 5 || s.DirectRequests != 2 || s.Failed != 5 || s.GatewayFailed != 4 || s.DirectFailed != 1 || s.InFlightAtKill != 2 {
		t.Errorf("summary %+v", s)
	}
	if want := map[string]int{"unknown (not logged)": 2}; !reflect.DeepEqual(s.FailedByServer, want) {
		t.Errorf("failed by server %v, want %v", s.FailedByServer, want)
	}
}

func TestSoakGoals(t *testing.T) {
	servers := []soakServer{{Server: "s1", Sessions: 100000, Connects: 40, ConnectPct: 0.04}, {Server: "s2", Sessions: 5000, Connects: 100, ConnectPct: 2},
		{Server: "s3", Sessions: 999, Connects: 999, ConnectPct: 100}}
	r := soakReport{Servers: servers,
		Fair: soakFair{CPU: soakCPU{Conns: 16, GatewayS: 60, GatewayUS: 100, DirectUS: 50, Ratio: 2, GatewayRequests: 10, DirectRequests: 20},
			Stretches: make([]soakStretch, 8), PairRatios: []float64{1.9, 2.2}},
		Saturation: soakSat{Conns: 64, BurnMS: 15, DurationS: 120, Requests: 9000, Failed: 0, Downs: 1, BackupSessions: 0, P99MS: 900, Server: "s1"},
		Summary: soakSummary{GatewayRequests: 1000, GatewayFailed: 3, InFlightAtKill: 3, KillCallS: 390, KillEndS: 390.2, KillFailed: 3, KillFailedOn: 3, KillWindowMS: 272,
			CPU: soakCPU{Ratio: 9}}}
	got := soakGoals(r)
	if len(got) != 8 {
		t.Fatalf("%d goals", len(got))
	}
	if g := got[0]; g.Status != pass || g.Value != 2 || !strings.Contains(g.Note, "per pair of stretches 1.90–2.20×") || !strings.Contains(g.Name, "c=16, 60 s per path in 8 interleaved stretches") {
		t.Errorf("CPU goal %+v (the soak-time ratio is no goal)", g)
	}
	if g := got[1]; g.Status != pass || g.Value != 0 || !strings.Contains(g.Note, "3 in flight on the killed replica") {
		t.Errorf("failures goal %+v", g)
	}
	if g := got[2]; g.Status != fail || g.Value != 2 || !strings.HasPrefix(g.Note, "s2: 100 connects / 5000 sessions; 2 server(s)") {
		t.Errorf("connect goal %+v", g)
	}
	if g := got[3]; g.Status != info || g.Value != 272 || !strings.HasPrefix(g.Note, "3 request(s) through the gateway failed") {
		t.Errorf("kill window %+v", g)
	}
	if g := got[4]; g.Status != fail || g.Value != 1 || !strings.Contains(g.Name, "DOWN transitions") {
		t.Errorf("saturation DOWN goal %+v", g)
	}
	if g := got[5]; g.Status != pass || g.Value != 0 || !strings.Contains(g.Name, "cold-start path") {
		t.Errorf("saturation detour goal %+v", g)
	}
	if g := got[6]; g.Status != pass || g.Value != 0 {
		t.Errorf("saturation failures goal %+v", g)
	}
	if g := got[7]; g.Status != info || g.Value != 900 {
		t.Errorf("saturation p99 %+v", g)
	}
	r.Summary.GatewayFailed, r.Summary.FailedByServer = 5, map[string]int{"s4": 2}
	r.Summary.KillCallS = 0
	r.Fair = soakFair{}
	r.Saturation = soakSat{}
	r.Servers = servers[2:]
	got = soakGoals(r)
	if len(got) != 5 {
		t.Fatalf("%d goals without the parts before the soak: %+v", len(got), got)
	}
	if got[1].Status != fail || got[1].Value != 2 || !strings.Contains(got[1].Note, "others by server: s4 2") {
		t.Errorf("failures goal %+v", got[1])
	}
	for _, i := range []int{0, 2, 3, 4} {
		if got[i].Status != skip {
			t.Errorf("goal without data: %+v; want SKIP", got[i])
		}
	}
}

func TestKillWindow(t *testing.T) {
	fs := []soakFailure{
		{StartS: 10, LatencyMS: 5},                     // before the kill: not in its window
		{StartS: 390.1, LatencyMS: 77, InFlight: true}, // ends at 390.177
		{StartS: 390.2, LatencyMS: 70, InFlight: true}, // ends at 390.27: the last
		{StartS: 391, LatencyMS: 3, Direct: true},      // straight to a replica
		{StartS: 500, LatencyMS: 1},                    // more than a minute after
	}
	n, on, w := killWindow(fs, 390)
	if n != 2 || on != 2 || w != 270 {
		t.Errorf("killWindow = %d, %d on the killed replica, %g ms; want 2, 2, 270", n, on, w)
	}
	if n, _, w := killWindow(nil, 390); n != 0 || w != 0 {
		t.Errorf("no failures: %d, %g", n, w)
	}
}

func TestSoakCPUAddFinish(t *testing.T) {
	var c soakCPU
	c.add(false, cpuWindow{Seconds: 15, Busy: 1500, IRQ: 100, Total: 3000, Steal: 2, Groups: map[string]uint64{groupHAProxy: 600, groupReplicas: 500},
		Others: map[string]uint64{"dockerd": 10, "ksoftirqd/0": 30}})
	c.add(true, cpuWindow{Seconds: 15, Busy: 1200, IRQ: 50, Total: 3000, Groups: map[string]uint64{groupReplicas: 700}, Others: map[string]uint64{"containerd": 20, "dockerd": 5}})
	c.add(false, cpuWindow{Seconds: 15, Busy: 1500, Total: 3000, Steal: 1, Groups: map[string]uint64{groupHAProxy: 600}})
	c.GatewayRequests, c.DirectRequests = 100000, 200000
	c.finish(100)
	if c.GatewayS != 30 || c.GatewayTicks != 3000 || c.GatewayTotalTicks != 6000 || c.StealTicks != 3 || c.GatewayGroupTicks[groupHAProxy] != 1200 {
		t.Errorf("sums: %+v", c)
	}
	if c.GatewayUS != 300 || c.DirectUS != 60 || c.Ratio != 5 || c.GatewayBusyPct != 50 || c.DirectBusyPct != 40 {
		t.Errorf("per request: %g µs, %g µs, %g×, busy %g %% / %g %%", c.GatewayUS, c.DirectUS, c.Ratio, c.GatewayBusyPct, c.DirectBusyPct)
	}
	c.GatewayGroupTicks[groupHarness], c.DirectGroupTicks[groupHarness] = 1000, 160
	c.finish(100)
	if c.GatewayServerUS != 200 || c.DirectServerUS != 52 || c.ServerRatio != 3.846 {
		t.Errorf("without the client: %g µs, %g µs, %g×", c.GatewayServerUS, c.DirectServerUS, c.ServerRatio)
	}
	if got := topOthers(c, 2); !reflect.DeepEqual(got, []string{"ksoftirqd/0", "containerd"}) {
		t.Errorf("topOthers = %v", got)
	}
	rows := soakCPURows(c, 100)
	if last := rows[len(rows)-1]; last[0] != "of which irq + softirq (/proc/stat)" || last[1] != "10.0" || last[2] != "2.5" {
		t.Errorf("irq row %v", last)
	}
	w := windowOf(2, cpuMark{host: hostCPU{Busy: 10, Total: 50, Steal: 1}, groups: procCPU{groupPulsed: {{1, 1}: 3}}, others: procCPU{"sleepy": {{2, 1}: 4}}},
		cpuMark{host: hostCPU{Busy: 40, IRQ: 3, Total: 250, Steal: 1}, groups: procCPU{groupPulsed: {{1, 1}: 8}}, others: procCPU{"sleepy": {{2, 1}: 4}, "dockerd": {{3, 1}: 2}}})
	if w.Busy != 30 || w.IRQ != 3 || w.Total != 200 || w.Steal != 0 || w.Groups[groupPulsed] != 5 || !reflect.DeepEqual(w.Others, map[string]uint64{"dockerd": 2}) {
		t.Errorf("windowOf = %+v", w)
	}
}

func TestSummarizeFair(t *testing.T) {
	// 4 stretches of 10 s (gateway, direct, direct, gateway), each after a
	// 2 s settle; the gateway answers every 2 ms, the replica every 1 ms.
	var recs []loadReq
	starts := []float64{2, 14, 26, 38}
	for i, from := range starts {
		step := 2.0
		if fairDirect(i) {
			step = 1
		}
		for ms := (from - 2) * 1000; ms < (from+10)*1000; ms += step {
			recs = append(recs, req(ms/1000, 0.5, 200, reqOK, fairDirect(i), 1))
		}
	}
	var sts []soakStretch
	for i, from := range starts {
		path := pathGateway
		busy := uint64(1000)
		if fairDirect(i) {
			path, busy = pathDirect, 800
		}
		sts = append(sts, soakStretch{Path: path, StartS: from, EndS: from + 10, CPU: cpuWindow{Seconds: 10, Busy: busy, Total: 2000,
			Groups: map[string]uint64{groupReplicas: busy / 2}}})
	}
	fr := soakFair{Conns: 16}
	summarizeFair(&fr, sts, recs, 0, 100)
	if len(fr.Stretches) != 4 || fr.Stretches[0].OK != 5000 || fr.Stretches[1].OK != 10000 {
		t.Fatalf("stretches %+v", fr.Stretches)
	}
	if st := fr.Stretches[0]; st.US != 2000 || st.BusyPct != 50 || st.RPS != 500 || st.P99MS != 0.5 {
		t.Errorf("gateway stretch %+v", st)
	}
	c := fr.CPU
	if c.GatewayRequests != 10000 || c.DirectRequests != 20000 || c.GatewayUS != 2000 || c.DirectUS != 800 || c.Ratio != 2.5 || c.GatewayReplicas != "1" {
		t.Errorf("CPU %+v", c)
	}
	if !reflect.DeepEqual(fr.PairRatios, []float64{2.5, 2.5}) {
		t.Errorf("pair ratios %v", fr.PairRatios)
	}
	var order []bool
	for i := range 8 {
		order = append(order, fairDirect(i))
	}
	if want := []bool{false, true, true, false, true, false, false, true}; !reflect.DeepEqual(order, want) {
		t.Errorf("order %v, want %v", order, want)
	}
	if fr.Requests != int64(len(recs)) || fr.Failed != 0 {
		t.Errorf("requests %d, failed %d", fr.Requests, fr.Failed)
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
	if s.Server != "s1" || s.Sessions != 2 || s.Connects != 2 || s.Downs != 1 || s.CheckFails != 4 || s.BackupSessions != 1 || s.StatusEnd != "UP" {
		t.Errorf("counters since the restart: %+v", s)
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

func TestCPUGroups(t *testing.T) {
	c := soakCPU{GatewayTicks: 1000, DirectTicks: 600, GatewayRequests: 100000, DirectRequests: 300000,
		GatewayGroupTicks: map[string]uint64{groupHAProxy: 200, groupReplicas: 300, groupHarness: 100},
		DirectGroupTicks:  map[string]uint64{groupReplicas: 450, groupHarness: 300}}
	got := cpuGroups(c, 100)
	want := map[string][2]float64{groupHAProxy: {20, 0}, groupReplicas: {30, 15}, groupHarness: {10, 10}, groupOther: {40, -5}, groupPulsed: {0, 0}}
	for _, g := range got {
		if w, ok := want[g.Group]; ok && (g.GatewayUS != w[0] || g.DirectUS != w[1]) {
			t.Errorf("%s: %g / %g µs, want %v", g.Group, g.GatewayUS, g.DirectUS, w)
		}
	}
	if len(got) != len(soakGroupOrder) {
		t.Errorf("%d groups, want %d", len(got), len(soakGroupOrder))
	}
	if cpuGroups(soakCPU{}, 100) != nil {
		t.Error("no group ticks: want no breakdown")
	}
}

func TestCountTimeWaitAndShowInfo(t *testing.T) {
	tcp := `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0000000000000000 100 0 0 10 0
   1: 0100007F:A1B2 0100007F:1F90 06 00000000:00000000 03:00000F9E 00000000     0        0 0 3 0000000000000000
   2: 0100007F:A1B3 0100007F:1F90 06 00000000:00000000 03:00000F9E 00000000     0        0 0 3 0000000000000000
   3: 0100007F:A1B4 0100007F:1F90 01 00000000:00000000 00:00000000 00000000     0        0 2 1 0000000000000000 20 4 0 10 -1
`
	if n, err := countTimeWait(strings.NewReader(tcp)); n != 2 || err != nil {
		t.Errorf("countTimeWait = %d, %v; want 2", n, err)
	}
	if n, err := readTimeWait(t.TempDir()); n != 0 || err != nil {
		t.Errorf("readTimeWait of a dir without net/ = %d, %v; want 0", n, err)
	}
	info := parseShowInfo("Name: HAProxy\nVersion: 2.6.12\nDroppedLogs: 17\nnothing here\n")
	if info["DroppedLogs"] != "17" || info["Name"] != "HAProxy" {
		t.Errorf("parseShowInfo = %v", info)
	}
}

// testSoakReport is a small report for the rendering.
func testSoakReport(t *testing.T) soakReport {
	r := syntheticSoak(t)
	r.Seconds = r.Seconds[:3]
	r.Machine = machineInfo{CPUs: 2, CPUModel: "AMD EPYC", Kernel: "6.1.0", Go: "go version go1.26.8 linux/amd64", ClockTicks: 100}
	r.Engine, r.HAProxy, r.Netdata = "Docker Engine 20.10.24+dfsg1 (API 1.41)", "HAProxy 2.6.12-1+deb12u4", "netdata v1.37.1"
	r.Config = soakConfig{DurationS: 600, Function: "pbench-soak-abc123-echo", Handler: "bench/inproc", Metric: "inflight", Target: 8, Min: 1, Max: 8,
		TimeoutS: 10, DrainGraceS: 5, BodyBytes: 64, PulsedEnv: []string{"PULSE_SELECTOR=pulse-bench.run=abc123"}}
	r.Events[2].Task, r.Events[2].Addr, r.Events[2].Server = "bykxopq24n3k86dh06nspzarj", "127.0.0.1:52409", "s4"
	r.Minutes = []soakMinute{{Phase: soakPhaseStep, Conns: 4, Requests: 120000, RPS: 2000, P50MS: 0.9, P99MS: 9.5, MaxMS: 40, MaxReplicas: 1},
		{Phase: soakPhaseStep, StartS: 60, Conns: 48, Requests: 600000, Failed: 12, Excused: 12, RPS: 10000, P50MS: 4, P99MS: 30, MaxMS: 1000, MaxReplicas: 7,
			Events: "replica killed @1:10.0"}}
	r.Servers = []soakServer{{Server: "s1", Sessions: 152902, Connects: 32, Reuses: 152870, ConnectPct: 0.021, LogRequests: 152902, Downs: 1,
		Held: []soakHolding{{Addr: "127.0.0.1:52204", Task: "jfuslpo0oo1234", FromS: 0, ToS: 42, Sessions: 152902}}}}
	r.Failures = []soakFailure{{StartS: 70, LatencyMS: 2.9, Error: "read", Message: "read: unexpected EOF", Via: viaCounters, Server: "s4",
		Addr: "127.0.0.1:52409", Task: "bykxopq24n3k86dh06nspzarj", InFlight: true}}
	r.Summary = soakSummary{Requests: 720000, GatewayRequests: 720000, Failed: 12, GatewayFailed: 12, InFlightAtKill: 12, FailedByKind: map[string]int{"read": 12},
		CPU: soakCPU{Conns: 16, GatewayS: 60, DirectS: 60, GatewayRequests: 600000, DirectRequests: 1800000, GatewayUS: 197, DirectUS: 65.2, Ratio: 3.021,
			GatewayBusyPct: 100, DirectBusyPct: 98, GatewayReplicas: "2", Groups: []soakCPUGroup{{Group: groupHAProxy, GatewayUS: 50, DirectUS: 0}}},
		TimeWaitPeak: 347, TimeWaitPeakAt: 60, MaxReplicas: 7, MaxDesired: 6, ScaleEvents: 9, UpdateS: 8.2, UpdateState: "completed: update completed",
		RSS: soakRSS{HAProxyMB: 22.3, HAProxyProcs: 2, HAProxyHWMMB: 22.3, PulsedMB: 18.2, PulsedHWMMB: 18.7}}
	r.Summary.Log.Requests = 720000
	r.Fair = soakFair{Function: "pbench-soak-abc123-hello", Handler: "bench/inproc", Scale: "inflight target 8 min 1 max 1", PulsedEnv: []string{"PULSE_INSTANCE=bench-abc123"},
		Conns: 16, StretchS: 15, SettleS: 2, QuietWaitS: 1, QuietBusyPct: 4,
		Stretches: []soakStretch{{Path: pathGateway, Addr: "127.0.0.1:8080", StartS: 2, EndS: 17, OK: 120000, Requests: 120000, RPS: 8000, P50MS: 1.8, P99MS: 6.1, US: 105.3, BusyPct: 95,
			HAProxyConns: 0, HAProxyReqs: 120016, ServerConnects: 0},
			{Path: pathDirect, Addr: "127.0.0.1:50048", StartS: 19, EndS: 34, OK: 390000, Requests: 390000, RPS: 26000, P50MS: 0.4, P99MS: 3.2, US: 27.5, BusyPct: 80}},
		CPU: soakCPU{Conns: 16, GatewayS: 15, DirectS: 15, GatewayRequests: 120000, DirectRequests: 390000, GatewayUS: 105.3, DirectUS: 27.5, Ratio: 3.829,
			GatewayBusyPct: 95, DirectBusyPct: 80, GatewayReplicas: "1", Groups: []soakCPUGroup{{Group: groupHAProxy, GatewayUS: 48.2, DirectUS: 0.1}}},
		PairRatios: []float64{3.829}}
	r.Saturation = soakSat{Function: "pbench-soak-abc123-burn", Handler: satHandler, BurnMS: 15, Conns: 64, DurationS: 120, Requests: 14000, OK: 14000, RPS: 116.7,
		P50MS: 540, P99MS: 910, MaxMS: 1200, Server: "s1", Sessions: 14000, Connects: 64, StatusEnd: "UP", Polls: 121}
	r.Summary.KillCallS, r.Summary.KillEndS, r.Summary.KillFailed, r.Summary.KillFailedOn, r.Summary.KillWindowMS = 70, 70.2, 12, 12, 272
	r.Goals = soakGoals(r)
	r.Notes = []string{"a note"}
	return r
}

// TestRenderSoakMarkdown checks the README's soak section against a golden
// file; run with -update to rewrite it after an intended change.
func TestRenderSoakMarkdown(t *testing.T) {
	r := testSoakReport(t)
	got := renderSoak(r, true, "results/soak-20261206T050000Z.json")
	golden := "testdata/soak-results.md"
	if *update {
		if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if want := readTestdata(t, "soak-results.md"); got != want {
		t.Errorf("renderSoak differs from %s (run go test ./bench/run -update):\n%s", golden, got)
	}
	text := renderSoak(r, false, "")
	for _, cell := range []string{"replica killed", "s4 (not logged; its econ/eresp rose)", "bykxopq24n", "3.02×", "3.829×", "FAIL", "PASS", "INFO", "0.021", "a note",
		"197.0 µs", "105.3", "120016", "22.3 MB", "347", "272.0 ms", "DOWN transitions", "910.0 ms"} {
		if !strings.Contains(text, cell) {
			t.Errorf("renderSoak text lacks %q", cell)
		}
	}
	if strings.Contains(text, "results/") {
		t.Error("the text rendering links the picture")
	}
}

func TestReadmeHasSoakSection(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	begin, end := sectionMarkers(suiteSoak)
	for _, s := range []string{"## The soak suite", begin, end, "-suite soak", "-soak-duration"} {
		if !strings.Contains(string(readme), s) {
			t.Errorf("bench/README.md lacks %q", s)
		}
	}
}

// BenchmarkHALogAdd is the harness's cost per HAProxy log line (part of the
// gateway's whole-host CPU in the soak's CPU comparison).
func BenchmarkHALogAdd(b *testing.B) {
	h := &haLog{backend: "fn_x", loc: time.UTC, res: haLogResult{ByServer: map[string]*haServer{}}}
	for b.Loop() {
		h.add(logOK, time.Time{})
	}
}

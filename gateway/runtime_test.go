package gateway

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// testdata/show_servers_state.txt was captured from HAProxy 2.6.12 running
// testdata/show_servers_state.cfg after the runtime commands listed in
// testdata/runtime_capture.md.
func TestParseServersStateGolden(t *testing.T) {
	f, err := os.Open(filepath.Join("testdata", "show_servers_state.txt"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got, err := ParseServersState(f)
	if err != nil {
		t.Fatal(err)
	}
	hello := func(s ServerState) ServerState {
		s.BackendID, s.Backend = 3, "fn_hello"
		return s
	}
	want := []ServerState{
		hello(ServerState{ID: 1, Name: "r1", Addr: "127.0.0.1", Port: 18901, OpState: OpRunning, UserWeight: 1, InitWeight: 1,
			SinceLastChange: 2 * time.Second, CheckStatus: 15, CheckResult: 3, CheckHealth: 4, CheckState: 6}),
		hello(ServerState{ID: 2, Name: "r2", Addr: "127.0.0.1", Port: 18903, OpState: OpStopped, Admin: AdminForcedMaint | AdminConfigMaint,
			UserWeight: 1, InitWeight: 1, SinceLastChange: 2 * time.Second, CheckStatus: 1, CheckState: 14}),
		hello(ServerState{ID: 3, Name: "pulsed", Addr: "127.0.0.1", Port: 8090, OpState: OpRunning, UserWeight: 1, InitWeight: 1,
			SinceLastChange: 2 * time.Second, CheckStatus: 1, CheckHealth: 2}),
		hello(ServerState{ID: 4, Name: "t1", Addr: "127.0.0.1", Port: 18901, OpState: OpStopped, Admin: AdminForcedMaint,
			UserWeight: 1, InitWeight: 1, SinceLastChange: time.Second, CheckStatus: 1, CheckState: 2}),
		hello(ServerState{ID: 5, Name: "t2", Addr: "127.0.0.1", Port: 18901, OpState: OpRunning, UserWeight: 1, InitWeight: 1,
			SinceLastChange: time.Second, CheckStatus: 15, CheckResult: 3, CheckHealth: 4, CheckState: 6}),
		hello(ServerState{ID: 6, Name: "t3", Addr: "127.0.0.1", Port: 18901, OpState: OpRunning, Admin: AdminForcedDrain,
			UserWeight: 1, InitWeight: 1, SinceLastChange: time.Second, CheckStatus: 15, CheckResult: 3, CheckHealth: 4, CheckState: 6}),
		hello(ServerState{ID: 7, Name: "dead", Addr: "127.0.0.1", Port: 1, OpState: OpStopped, UserWeight: 1, InitWeight: 1,
			SinceLastChange: time.Second, CheckStatus: 8, CheckResult: 2, CheckState: 6}),
		hello(ServerState{ID: 8, Name: "v6", Addr: "::1", Port: 18905, OpState: OpStopped, Admin: AdminForcedMaint,
			UserWeight: 50, InitWeight: 50, SinceLastChange: time.Second, CheckStatus: 1}),
		{BackendID: 4, Backend: "fn_empty", ID: 1, Name: "e1", Addr: "127.0.0.1", Port: 18901, OpState: OpRunning,
			UserWeight: 1, InitWeight: 1, SinceLastChange: time.Second, CheckStatus: 1},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("parsed:\n%+v\nwant:\n%+v", got, want)
	}

	// What the derived views make of each captured server.
	type view struct {
		State                  AdminState
		Serving, HealthEnabled bool
		Address                string
	}
	wantViews := map[string]view{
		"r1":     {StateReady, true, true, "127.0.0.1:18901"},
		"r2":     {StateMaint, false, false, "127.0.0.1:18903"}, // `disabled` in the file
		"pulsed": {StateReady, true, false, "127.0.0.1:8090"},   // backup, no check
		"t1":     {StateMaint, false, false, "127.0.0.1:18901"}, // add server only
		"t2":     {StateReady, true, true, "127.0.0.1:18901"},
		"t3":     {StateDrain, false, true, "127.0.0.1:18901"},
		"dead":   {StateReady, false, true, "127.0.0.1:1"}, // ready but its check fails
		"v6":     {StateMaint, false, false, "[::1]:18905"},
		"e1":     {StateReady, true, false, "127.0.0.1:18901"},
	}
	for _, s := range got {
		v := view{s.State(), s.Serving(), s.HealthEnabled(), s.Address()}
		if v != wantViews[s.Name] {
			t.Errorf("%s: %+v, want %+v", s.Name, v, wantViews[s.Name])
		}
	}
}

func TestParseServersState(t *testing.T) {
	header := "1\n# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight srv_time_since_last_change srv_check_status srv_check_result srv_check_health srv_check_state srv_agent_state bk_f_forced_id srv_f_forced_id srv_fqdn srv_port srvrecord srv_use_ssl srv_check_port srv_check_addr srv_agent_addr srv_agent_port\n"
	golden, err := os.ReadFile(filepath.Join("testdata", "show_servers_state_one_backend.txt"))
	if err != nil {
		t.Fatal(err)
	}
	e1 := ServerState{BackendID: 4, Backend: "fn_empty", ID: 1, Name: "e1", Addr: "127.0.0.1", Port: 18901, OpState: OpRunning,
		UserWeight: 1, InitWeight: 1, SinceLastChange: time.Second, CheckStatus: 1}
	tests := []struct {
		name    string
		in      string
		want    []ServerState
		wantErr string
	}{
		{name: "one backend (captured)", in: string(golden), want: []ServerState{e1}},
		{name: "empty backend", in: header + "\n", want: nil},
		{name: "leading blank line", in: "\n" + header + "4 fn_empty 1 e1 127.0.0.1 2 0 1 1 1 1 0 0 0 0 0 0 - 18901 - 0 0 - - 0\n", want: []ServerState{e1}},
		{name: "fqdn, ssl, check and agent address", in: header +
			"5 fn_x 2 s2 10.0.0.7 2 0 100 100 42 15 3 4 6 0 0 0 node1.example 443 _http._tcp.x 1 8443 10.0.0.8 10.0.0.9 5555\n",
			want: []ServerState{{BackendID: 5, Backend: "fn_x", ID: 2, Name: "s2", Addr: "10.0.0.7", Port: 443, OpState: OpRunning,
				UserWeight: 100, InitWeight: 100, SinceLastChange: 42 * time.Second, CheckStatus: 15, CheckResult: 3, CheckHealth: 4,
				CheckState: 6, FQDN: "node1.example", SRVRecord: "_http._tcp.x", UseSSL: true, CheckPort: 8443, CheckAddr: "10.0.0.8",
				AgentAddr: "10.0.0.9", AgentPort: 5555}}},
		{name: "appended column ignored",
			in: strings.Replace(header, "srv_agent_port", "srv_agent_port srv_future", 1) +
				"4 fn_empty 1 e1 127.0.0.1 2 0 1 1 1 1 0 0 0 0 0 0 - 18901 - 0 0 - - 0 xyz\n",
			want: []ServerState{e1}},
		{name: "empty answer", in: "", wantErr: "empty answer"},
		{name: "other version", in: "2\n", wantErr: `format version "2"`},
		{name: "no header", in: "1\n", wantErr: "no header"},
		{name: "row before header", in: "1\n4 fn 1 e1\n", wantErr: "line 2: server line before the header"},
		{name: "missing column", in: "1\n# be_id be_name\n", wantErr: "no column srv_id"},
		{name: "short row", in: header + "4 fn_empty 1 e1\n", wantErr: "line 3: 4 fields, want 25"},
		{name: "not a number", in: header + "4 fn_empty x e1 127.0.0.1 2 0 1 1 1 1 0 0 0 0 0 0 - 18901 - 0 0 - - 0\n", wantErr: `column srv_id: "x" is not a number`},
		{name: "negative admin state", in: header + "4 fn_empty 1 e1 127.0.0.1 2 -1 1 1 1 1 0 0 0 0 0 0 - 18901 - 0 0 - - 0\n", wantErr: "srv_admin_state: negative"},
		{name: "a runtime error answer", in: "Can't find backend.\n", wantErr: `format version "Can't find backend."`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseServersState(strings.NewReader(tt.in))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err %v, want it to contain %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func FuzzParseServersState(f *testing.F) {
	for _, name := range []string{"show_servers_state.txt", "show_servers_state_one_backend.txt"} {
		b, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(string(b))
	}
	f.Add("1\n# be_id\n")
	f.Add("")
	f.Add("[3]: No such backend.\n")
	f.Fuzz(func(t *testing.T, in string) {
		got, err := ParseServersState(strings.NewReader(in))
		if err != nil {
			if got != nil {
				t.Fatalf("servers %v with error %v", got, err)
			}
			return
		}
		for _, s := range got {
			if s.Name == "" || s.Backend == "" {
				t.Fatalf("server without a name: %+v", s)
			}
			if s.SinceLastChange < 0 {
				t.Fatalf("negative duration: %+v", s)
			}
			switch s.State() {
			case StateReady, StateDrain, StateMaint:
			default:
				t.Fatalf("state %q", s.State())
			}
		}
	})
}

func TestParseRuntimeAnswer(t *testing.T) {
	// Answers as HAProxy 2.6.12 wrote them after `set severity-output number;`.
	tests := []struct {
		name, answer string
		want         string
		wantSev      int
		wantErr      error // sentinel, or errAny for an error without one
	}{
		{name: "add server", answer: "\n[6]: New server registered.\n\n", want: "New server registered."},
		{name: "set server state", answer: "\n\n", want: ""},
		{name: "del server", answer: "\n[6]: Server deleted.\n", want: "Server deleted."},
		{name: "show servers state", answer: "\n1\n# be_id be_name\n\n", want: "1\n# be_id be_name\n\n"},
		{name: "duplicate", answer: "\n[3]: Already exists a server with the same name in backend.\n\n", wantSev: 3, wantErr: ErrServerExists},
		{name: "no backend (set server)", answer: "\n[3]: No such backend.\n\n", wantSev: 3, wantErr: ErrNoBackend},
		{name: "no backend (show servers state)", answer: "\n[3]: Can't find backend.\n\n", wantSev: 3, wantErr: ErrNoBackend},
		{name: "no server", answer: "\n[3]: No such server.\n\n", wantSev: 3, wantErr: ErrNoServer},
		{name: "del not in maint", answer: "\n[3]: Only servers in maintenance mode can be deleted.\n", wantSev: 3, wantErr: ErrServerNotInMaint},
		{name: "del busy", answer: "\n[3]: Server still has connections attached to it, cannot remove it.\n", wantSev: 3, wantErr: ErrServerHasConns},
		{name: "bad state", answer: "\n[3]: 'set server <srv> state' expects 'ready', 'drain' and 'maint'.\n\n", wantSev: 3, wantErr: errAny},
		{name: "bad address", answer: "\n[3]: invalid character 'x' in port number 'xx' in 'notanaddr:xx'\n\n\n", wantSev: 3, wantErr: errAny},
		{name: "unknown command", answer: "\n[6]: Unknown command, but maybe one of the following ones is a better match:\n  add map [@<ver>] <map> <key> <val>      : add a map entry\n", wantSev: 6, wantErr: ErrUnknownCommand},
		{name: "not a severity", answer: "[abc]: x\n", want: "[abc]: x\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseRuntimeAnswer("cmd", tt.answer)
			if tt.wantErr == nil {
				if err != nil || got != tt.want {
					t.Fatalf("got %q, %v; want %q", got, err, tt.want)
				}
				return
			}
			var re *RuntimeError
			if !errors.As(err, &re) || re.Severity != tt.wantSev || re.Command != "cmd" || strings.Contains(re.Message, "\n") {
				t.Fatalf("err %#v, want a one-line *RuntimeError with severity %d", err, tt.wantSev)
			}
			if tt.wantErr != errAny && !errors.Is(err, tt.wantErr) {
				t.Fatalf("err %v, want %v", err, tt.wantErr)
			}
		})
	}
}

var errAny = errors.New("any error")

func TestRuntimeRefusesBadInput(t *testing.T) {
	rt := NewRuntime(filepath.Join(t.TempDir(), "none.sock"), time.Second)
	ctx := context.Background()
	tests := []struct {
		name string
		call func() error
	}{
		{"two commands", func() error { _, err := rt.Exec(ctx, "show info; shutdown sessions server b/s"); return err }},
		{"line break", func() error { _, err := rt.Exec(ctx, "show info\nshow stat"); return err }},
		{"server name with space", func() error { return rt.SetState(ctx, "fn", "a b", StateReady) }},
		{"backend with semicolon", func() error { return rt.SetState(ctx, "fn;x", "s", StateReady) }},
		{"bad state", func() error { return rt.SetState(ctx, "fn", "s", "up") }},
		{"address without port", func() error { return rt.SetAddr(ctx, "fn", "s", "10.0.0.1") }},
		{"address with a keyword", func() error { return rt.SetAddr(ctx, "fn", "s", "10.0.0.1:80 backup") }},
		{"host name", func() error { return rt.SetAddr(ctx, "fn", "s", "replica.lan:80") }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call()
			if err == nil || strings.Contains(err.Error(), "none.sock") {
				t.Fatalf("err %v, want a refusal before dialling", err)
			}
		})
	}
	if _, err := rt.Exec(ctx, "show info"); err == nil || !strings.Contains(err.Error(), "none.sock") {
		t.Fatalf("err %v, want a dial error naming the socket", err)
	}
}

// TestRuntimeSlots drives the runtime API of a real HAProxy over slots, as
// pulsed does: servers declared disabled in the file are pointed at
// replicas and set ready (traffic at once), reuse their connections under a
// keep-alive load (connect/stot, the figure that was 1.0 for servers made
// with `add server`), drain, and are re-pointed at another replica.
func TestRuntimeSlots(t *testing.T) {
	slots := "    default-server inter 1s fall 3 rise 1 observe layer4 error-limit 1 on-error mark-down\n"
	for i := range 3 {
		slots += fmt.Sprintf("    server %s %s check disabled\n", SlotServer(i), freeSlotAddr)
	}
	hx := hxSetup(t, hxSetupOptions{servers: slots})
	hx.start(t)
	ctx := t.Context()
	rt := hx.rt
	r1, r1hits := hxReplica(t, "r1", nil)
	r2, r2hits := hxReplica(t, "r2", nil)
	r3, _ := hxReplica(t, "r3", nil)

	got, err := rt.Servers(ctx, "fn_test")
	if err != nil || len(got) != 3 {
		t.Fatalf("servers of the slot backend: %v, %v", got, err)
	}
	for _, s := range got {
		if s.State() != StateMaint {
			t.Fatalf("free slot %s not in maintenance: %+v", s.Name, s)
		}
	}
	if st, _, err := hx.client(t).get("/"); err != nil || st != http.StatusServiceUnavailable {
		t.Fatalf("no slot in use: %d, %v; want 503", st, err)
	}

	point := func(slot, addr string) time.Duration {
		t.Helper()
		begin := time.Now()
		if err := rt.SetAddr(ctx, "fn_test", slot, addr); err != nil {
			t.Fatal(err)
		}
		if err := rt.SetState(ctx, "fn_test", slot, StateReady); err != nil {
			t.Fatal(err)
		}
		return time.Since(begin)
	}
	for _, r := range []struct{ slot, name, addr string }{{"s1", "r1", r1}, {"s2", "r2", r2}} {
		took := point(r.slot, r.addr)
		// No retries, no waiting for a check: the slot is in rotation as
		// soon as it is ready (at most one request goes elsewhere first).
		c := hx.client(t)
		served := false
		for i := 0; i < 3 && !served; i++ {
			st, body, err := c.get("/")
			if err != nil || st != http.StatusOK {
				t.Fatalf("request %d after pointing %s at %s: %d %q, %v", i, r.slot, r.name, st, body, err)
			}
			served = body == r.name
		}
		if !served {
			t.Fatalf("%s took no request of the first three", r.name)
		}
		t.Logf("%s → %s: set addr + ready in %v", r.slot, r.name, took)
	}
	if s := hxServer(t, rt, "s1"); s == nil || !s.Serving() || !s.HealthEnabled() || s.Address() != r1 {
		t.Fatalf("s1: %+v, want serving %s with health checks", s, r1)
	}

	// Keep-alive load: both slots must reuse their connections.
	load := hxStartLoad(t, hx, 8)
	time.Sleep(3 * time.Second)
	load.halt()
	if n := load.failed.Load(); n != 0 {
		t.Fatalf("%d failed requests under load: %q", n, load.samples())
	}
	stats, err := rt.ServerStats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, st := range stats {
		if st.Backend != "fn_test" || st.Sessions == 0 {
			continue
		}
		t.Logf("%s: stot=%d connect=%d reuse=%d", st.Server, st.Sessions, st.Connects, st.Reuses)
		if st.ConnectRatio() > 0.01 {
			t.Errorf("%s opened %d connections for %d requests: connect/stot %.3f, want ≤ 0.01", st.Server, st.Connects, st.Sessions, st.ConnectRatio())
		}
	}
	if load.ok.Load() < 1000 {
		t.Fatalf("only %d requests in 3 s", load.ok.Load())
	}

	// Drain: s2 stays listed but gets no new requests.
	if err := rt.SetState(ctx, "fn_test", "s2", StateDrain); err != nil {
		t.Fatal(err)
	}
	if seen := hxSpread(t, hx, 20); seen["r1"] != 20 {
		t.Fatalf("after draining s2: %v, want all 20 on r1", seen)
	}
	if s := hxServer(t, rt, "s2"); s == nil || s.State() != StateDrain || s.Serving() {
		t.Fatalf("drained s2: %+v", s)
	}

	// Free s2 and give it to r3: nothing reaches r2 any more.
	if err := rt.SetState(ctx, "fn_test", "s2", StateMaint); err != nil {
		t.Fatal(err)
	}
	before := r2hits.Load()
	point("s2", r3)
	if seen := hxSpread(t, hx, 20); seen["r3"] == 0 || seen["r2"] != 0 || seen["r1"] == 0 {
		t.Fatalf("after re-pointing s2 at r3: %v", seen)
	}
	if r2hits.Load() != before || r1hits.Load() == 0 {
		t.Fatalf("r2 got %d requests after its slot was re-pointed", r2hits.Load()-before)
	}

	// HAProxy's refusals as sentinels.
	refusals := []struct {
		name string
		err  error
		want error
	}{
		{"state of unknown server", rt.SetState(ctx, "fn_test", "nope", StateReady), ErrNoServer},
		{"address of unknown server", rt.SetAddr(ctx, "fn_test", "nope", r1), ErrNoServer},
		{"servers of unknown backend", func() error { _, err := rt.Servers(ctx, "fn_nope"); return err }(), ErrNoBackend},
		{"unknown command", func() error { _, err := rt.Exec(ctx, "frobnicate"); return err }(), ErrUnknownCommand},
	}
	for _, r := range refusals {
		if !errors.Is(r.err, r.want) {
			t.Errorf("%s: %v, want %v", r.name, r.err, r.want)
		}
	}
}

// hxServer returns the named server of fn_test, or nil.
func hxServer(t *testing.T, rt *Runtime, name string) *ServerState {
	t.Helper()
	servers, err := rt.Servers(t.Context(), "fn_test")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range servers {
		if s.Name == name {
			return &s
		}
	}
	return nil
}

// hxSpread sends n requests on one keep-alive connection and counts which
// replica answered each.
func hxSpread(t *testing.T, hx *hxInstance, n int) map[string]int {
	t.Helper()
	c := hx.client(t)
	seen := map[string]int{}
	for i := 0; i < n; i++ {
		st, body, err := c.get("/")
		if err != nil || st != http.StatusOK {
			t.Fatalf("request %d: %d %q, %v", i, st, body, err)
		}
		seen[body]++
	}
	return seen
}

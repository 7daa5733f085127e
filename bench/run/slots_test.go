package main

import (
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/pulsefaas/pulse/gateway"
)

// Admin flags as HAProxy reports them for slots: a slot declared
// `disabled` keeps AdminConfigMaint (0x04) after pulsed sets it ready.
const (
	flagsFree    = gateway.AdminForcedMaint | gateway.AdminConfigMaint // declared disabled, never used
	flagsReady   = gateway.AdminConfigMaint                            // declared disabled, set ready
	flagsDrained = gateway.AdminConfigMaint | gateway.AdminForcedDrain
)

func srv(name, addr string, port int, op gateway.OpState, admin gateway.AdminFlags) gateway.ServerState {
	return gateway.ServerState{Backend: "fn_hello", Name: name, Addr: addr, Port: port, OpState: op, Admin: admin}
}

// slotBackend is one backend as HAProxy lists it mid-run: s1 serving, s2
// draining, s3 free after an earlier replica, s4 never used, s5 pointed at
// a new replica but not ready yet, and the backup server in maintenance.
var slotBackend = []gateway.ServerState{
	srv("s1", "127.0.0.1", 30001, gateway.OpRunning, flagsReady),
	srv("s2", "127.0.0.1", 30002, gateway.OpRunning, flagsDrained),
	srv("s3", "127.0.0.1", 30003, gateway.OpStopped, flagsFree),
	srv("s4", "127.0.0.1", 1, gateway.OpStopped, flagsFree),
	srv("s5", "127.0.0.1", 30005, gateway.OpStopped, gateway.AdminForcedMaint|gateway.AdminConfigMaint),
	srv(gateway.BackupServerName, "127.0.0.1", 40000, gateway.OpStopped, gateway.AdminForcedMaint),
}

func TestCountSlots(t *testing.T) {
	for _, tc := range []struct {
		name          string
		in            []gateway.ServerState
		live, serving int
	}{
		{"mid-run", slotBackend, 2, 1},
		{"none", nil, 0, 0},
		{"only the backup, ready (scaled to zero)", []gateway.ServerState{srv(gateway.BackupServerName, "127.0.0.1", 40000, gateway.OpRunning, 0)}, 0, 0},
		{"ready but down", []gateway.ServerState{srv("s1", "127.0.0.1", 30001, gateway.OpStopped, flagsReady)}, 1, 0},
		{"starting counts as up", []gateway.ServerState{srv("s1", "127.0.0.1", 30001, gateway.OpStarting, 0)}, 1, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			live, serving := countSlots(tc.in)
			if live != tc.live || serving != tc.serving {
				t.Errorf("countSlots = %d live, %d serving; want %d, %d", live, serving, tc.live, tc.serving)
			}
		})
	}
}

func TestJoinSlotsAndLive(t *testing.T) {
	stats := []gateway.ServerStat{
		{Backend: "fn_hello", Server: "s1", Sessions: 100},
		{Backend: "fn_hello", Server: "s2", Sessions: 40},
		{Backend: "fn_hello", Server: "s3", Sessions: 7},
		{Backend: "fn_hello", Server: gateway.BackupServerName, Sessions: 2},
	}
	got := joinSlots(slotBackend, stats)
	want := []slotInfo{
		{Name: "s1", Addr: "127.0.0.1:30001", State: gateway.StateReady, Serving: true, Stot: 100},
		{Name: "s2", Addr: "127.0.0.1:30002", State: gateway.StateDrain, Stot: 40},
		{Name: "s3", Addr: "127.0.0.1:30003", State: gateway.StateMaint, Stot: 7},
		{Name: "s4", Addr: "127.0.0.1:1", State: gateway.StateMaint},
		{Name: "s5", Addr: "127.0.0.1:30005", State: gateway.StateMaint},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("joinSlots =\n%+v\nwant\n%+v", got, want)
	}
	if live := liveSlots(got); !reflect.DeepEqual(live, want[:2]) {
		t.Errorf("liveSlots = %+v, want s1 and s2", live)
	}
}

// TestSlotsFromRealHAProxy reads what HAProxy 2.6 answered for a backend
// of pulsed's, captured in a soak run during a rolling update of two
// replicas: s1 and s2 draining (the old replicas, failing health), s3 and
// s4 ready (the new ones), s5–s8 free, the backup server in maintenance.
func TestSlotsFromRealHAProxy(t *testing.T) {
	states, err := gateway.ParseServersState(strings.NewReader(readTestdata(t, "slots-servers-state.txt")))
	if err != nil {
		t.Fatal(err)
	}
	stats, err := gateway.ParseServerStat(strings.NewReader(readTestdata(t, "slots-show-stat.csv")))
	if err != nil {
		t.Fatal(err)
	}
	live, serving := countSlots(states)
	if live != 4 || serving != 2 {
		t.Errorf("countSlots = %d live, %d serving; want 4, 2", live, serving)
	}
	var got []string
	for _, s := range liveSlots(joinSlots(states, stats)) {
		got = append(got, fmt.Sprintf("%s %s %s %t %d", s.Name, s.Addr, s.State, s.Serving, s.Stot))
	}
	want := []string{
		"s1 127.0.0.1:52204 drain false 152902",
		"s2 127.0.0.1:52405 drain false 142753",
		"s3 127.0.0.1:52407 ready true 18002",
		"s4 127.0.0.1:52409 ready true 10640",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("live slots =\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestNewTraffic(t *testing.T) {
	base := map[string]int64{"s1": 100, "s2": 50, "s3": 7}
	old := map[string]bool{"127.0.0.1:30001": true}
	now := []slotInfo{
		{Name: "s1", Addr: "127.0.0.1:30001", State: gateway.StateReady, Serving: true, Stot: 180},  // the old replica
		{Name: "s2", Addr: "127.0.0.1:30009", State: gateway.StateReady, Serving: true, Stot: 50},   // re-pointed, no session yet
		{Name: "s3", Addr: "127.0.0.1:30010", State: gateway.StateReady, Serving: true, Stot: 8},    // re-pointed, took one
		{Name: "s4", Addr: "127.0.0.1:30011", State: gateway.StateReady, Serving: true, Stot: 1},    // never used before
		{Name: "s5", Addr: "127.0.0.1:30012", State: gateway.StateMaint, Serving: false, Stot: 900}, // freed
	}
	var got []string
	for _, s := range newTraffic(now, base, old) {
		got = append(got, s.Name)
	}
	if want := []string{"s3", "s4"}; !reflect.DeepEqual(got, want) {
		t.Errorf("newTraffic = %v, want %v", got, want)
	}
}

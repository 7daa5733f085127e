package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/pulsefaas/pulse/gateway"
)

// HAProxy backends are made of slots (gateway.Slots): every backend
// declares servers s1…sN in the rendered file, free ones in maintenance at
// 127.0.0.1:1, and pulsed points a slot at a replica through the runtime
// API. So a server's name says nothing about which replica it is (its
// address does, against pulsed's catalog), a backend lists all its slots
// whatever the replicas, and a slot's counters (stot, connect, ...) run on
// from one replica to the next. These helpers are what the suites need of
// that.

// slotInfo is one server of a function's backend, the backup server
// excepted, from `show servers state` and `show stat` together.
type slotInfo struct {
	Name    string
	Addr    string             // host:port it points at (its last replica's while free)
	State   gateway.AdminState // ready, drain or maint
	Serving bool               // ready and up: gets new requests
	Stot    int64              // sessions so far, over every replica it held
}

// Live reports whether the slot holds a replica: anything but maintenance
// (draining replicas included).
func (s slotInfo) Live() bool { return s.State != gateway.StateMaint }

// countSlots returns how many of a backend's servers hold a replica (not in
// maintenance) and how many of those are serving (ready and up), the
// backup server left out.
func countSlots(ss []gateway.ServerState) (live, serving int) {
	for _, s := range ss {
		if s.Name == gateway.BackupServerName || s.State() == gateway.StateMaint {
			continue
		}
		live++
		if s.Serving() {
			serving++
		}
	}
	return live, serving
}

// joinSlots joins a backend's `show servers state` with its `show stat`
// rows by server name, in the order of states, leaving the backup server
// out. A server missing from stats has Stot 0.
func joinSlots(states []gateway.ServerState, stats []gateway.ServerStat) []slotInfo {
	stot := make(map[string]int64, len(stats))
	for _, st := range stats {
		stot[st.Server] = st.Sessions
	}
	var out []slotInfo
	for _, s := range states {
		if s.Name == gateway.BackupServerName {
			continue
		}
		out = append(out, slotInfo{Name: s.Name, Addr: s.Address(), State: s.State(), Serving: s.Serving(), Stot: stot[s.Name]})
	}
	return out
}

// liveSlots returns the slots that hold a replica.
func liveSlots(ss []slotInfo) []slotInfo {
	var out []slotInfo
	for _, s := range ss {
		if s.Live() {
			out = append(out, s)
		}
	}
	return out
}

// readSlots reads backend's servers (state and sessions) from HAProxy's
// runtime API.
func readSlots(ctx context.Context, rt *gateway.Runtime, backend string) ([]slotInfo, error) {
	states, err := rt.Servers(ctx, backend)
	if err != nil {
		return nil, err
	}
	stats, err := serverStats(ctx, rt, backend)
	if err != nil {
		return nil, err
	}
	return joinSlots(states, stats), nil
}

// serverStats reads the `show stat` rows of backend's servers.
func serverStats(ctx context.Context, rt *gateway.Runtime, backend string) ([]gateway.ServerStat, error) {
	out, err := rt.Exec(ctx, "show stat "+backend+" 4 -1") // type 4: servers only
	if err != nil {
		return nil, fmt.Errorf("show stat %s: %w", backend, err)
	}
	stats, err := gateway.ParseServerStat(strings.NewReader(out))
	if err != nil {
		return nil, fmt.Errorf("show stat %s: %w", backend, err)
	}
	return stats, nil
}

// newTraffic returns the slots that took a session since base (name →
// stot when it was taken) while pointing at an address not in old: a new
// replica's server taking traffic, whichever slot it was given, and even in
// a slot whose counters an earlier replica had already raised.
func newTraffic(now []slotInfo, base map[string]int64, old map[string]bool) []slotInfo {
	var out []slotInfo
	for _, s := range now {
		if s.Live() && !old[s.Addr] && s.Stot > base[s.Name] {
			out = append(out, s)
		}
	}
	return out
}

// slotOf returns the slot whose address is addr in slotAddr, "" if none.
func slotOf(slotAddr map[string]string, addr string) string {
	for name, a := range slotAddr {
		if addr != "" && a == addr {
			return name
		}
	}
	return ""
}

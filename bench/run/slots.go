package main

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/pulsefaas/pulse/gateway"
)

// slotInfo is a slot (gateway.Slots) of a backend: its name says nothing of
// its replica (its address does); its counters run on from one to the next.
type slotInfo struct {
	Name    string
	Addr    string             // host:port it points at (its last replica's while free)
	State   gateway.AdminState // ready, drain or maint
	Serving bool               // ready and up: gets new requests
	Stot    int64              // sessions so far, over every replica it held
}

// Live reports whether the slot holds a replica (draining included).
func (s slotInfo) Live() bool { return s.State != gateway.StateMaint }

// countSlots returns how many of a backend's servers, the backup left out,
// hold a replica, and how many of those are serving.
func countSlots(ss []gateway.ServerState) (live, serving int) {
	for _, s := range ss {
		if s.Name != gateway.BackupServerName && s.State() != gateway.StateMaint {
			live++
			if s.Serving() {
				serving++
			}
		}
	}
	return live, serving
}

// joinSlots joins a backend's server states with its `show stat` rows by
// name, in the order of states, the backup left out (no stats: Stot 0).
func joinSlots(states []gateway.ServerState, stats []gateway.ServerStat) []slotInfo {
	stot := make(map[string]int64, len(stats))
	for _, st := range stats {
		stot[st.Server] = st.Sessions
	}
	var out []slotInfo
	for _, s := range states {
		if s.Name != gateway.BackupServerName {
			out = append(out, slotInfo{Name: s.Name, Addr: s.Address(), State: s.State(), Serving: s.Serving(), Stot: stot[s.Name]})
		}
	}
	return out
}

// liveSlots returns the slots that hold a replica.
func liveSlots(ss []slotInfo) []slotInfo {
	return slices.DeleteFunc(slices.Clone(ss), func(s slotInfo) bool { return !s.Live() })
}

// readSlots reads backend's servers (state and sessions) from HAProxy.
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
	var stats []gateway.ServerStat
	if err == nil {
		stats, err = gateway.ParseServerStat(strings.NewReader(out))
	}
	if err != nil {
		return nil, fmt.Errorf("show stat %s: %w", backend, err)
	}
	return stats, nil
}

// newTraffic returns the live slots that took a session since base (name →
// stot) at an address not in old: new replicas taking traffic.
func newTraffic(now []slotInfo, base map[string]int64, old map[string]bool) []slotInfo {
	return slices.DeleteFunc(slices.Clone(now), func(s slotInfo) bool { return !s.Live() || old[s.Addr] || s.Stot <= base[s.Name] })
}

package gateway

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/pulsefaas/pulse/contract"
)

// Slots is where every replica sits in its function's backend. A backend
// declares a fixed number of servers in the rendered file (s1 … sN, the
// slots); a replica is given a free slot, and pulsed points that server at
// the replica through the runtime API (`set server … addr`, then ready).
// Servers are never created with `add server`: HAProxy 2.6 reused no idle
// connection to such a server (measured: connect=28777 reuse=0 under wrk,
// one TCP connection per request, ~28 000 TIME_WAIT sockets and 502s after
// ~30 s), while a server declared in the file and re-pointed reused them as
// the rendered ones do. So the file is the one place a server's settings
// are written, for every path: a reload, a new replica, a reused slot.
//
// Slots is pure state with no I/O: Place changes it to fit a catalog, and
// Render writes it. The reconciler owns one and recovers it from HAProxy's
// own server list when pulsed restarts.
type Slots map[string]*BackendSlots

// BackendSlots is one function's slots: Tasks[i] is the task ID in server
// s<i+1>, "" for a free slot. len(Tasks) is the number of slots rendered.
type BackendSlots struct {
	Tasks []string
	// freed[i] orders free slots by when they were last given up (0 =
	// never used): a new replica takes a never-used slot first, else the
	// one freed longest ago, so HAProxy has the most time to close what
	// the previous replica left.
	freed []uint64
	seq   uint64
}

// Slot sizes: a backend starts with room for twice its replicas (a
// start-first rolling update runs old and new side by side), at least
// minSlots, in steps of slotStep; when full it grows to twice the replicas
// it must hold, which takes one reload.
const (
	minSlots = 8
	slotStep = 8
	// maxSlots bounds one backend (HAProxy handles thousands; the bound
	// keeps a runaway catalog from writing a huge file).
	maxSlots = 4096
)

// SlotServer is the HAProxy server name of slot i (0-based): s1, s2, ….
// Names never collide with the backup server's.
func SlotServer(i int) string { return "s" + strconv.Itoa(i+1) }

// slotIndex is the inverse of SlotServer, -1 for another name.
func slotIndex(name string) int {
	if !strings.HasPrefix(name, "s") {
		return -1
	}
	n, err := strconv.Atoi(name[1:])
	if err != nil || n < 1 || name[1:] != strconv.Itoa(n) {
		return -1
	}
	return n - 1
}

func slotSize(n int) int {
	size := max(minSlots, 2*n)
	size = (size + slotStep - 1) / slotStep * slotStep
	return min(size, maxSlots)
}

// Of returns fn's slots, nil if it has none.
func (s Slots) Of(fn string) *BackendSlots { return s[fn] }

// Slot returns the slot index of task in fn, -1 if it has none.
func (s Slots) Slot(fn, task string) int {
	b := s[fn]
	if b == nil {
		return -1
	}
	return slices.Index(b.Tasks, task)
}

// Clone returns a deep copy.
func (s Slots) Clone() Slots {
	out := make(Slots, len(s))
	for fn, b := range s {
		out[fn] = &BackendSlots{Tasks: slices.Clone(b.Tasks), freed: slices.Clone(b.freed), seq: b.seq}
	}
	return out
}

// Place makes s fit cat: a task no longer listed frees its slot, a
// replica without a slot gets a free one (a draining replica too: it keeps
// serving its last requests from there), a function no longer listed loses
// its slots, a new function gets slotSize of its replicas. It reports
// whether any backend's number of slots changed (which needs a reload: the
// servers are declared in the file). Tasks keep their slots while listed.
func (s Slots) Place(cat contract.Catalog) (resized bool) {
	listed := make(map[string]bool, len(cat.Functions))
	for _, fn := range cat.Functions {
		listed[fn.Name] = true
		b := s[fn.Name]
		if b == nil {
			b = &BackendSlots{}
			s[fn.Name] = b
		}
		tasks := make(map[string]bool, len(fn.Replicas))
		for _, r := range fn.Replicas {
			tasks[r.TaskID] = true
		}
		for i, t := range b.Tasks {
			if t != "" && !tasks[t] {
				b.seq++
				b.Tasks[i], b.freed[i] = "", b.seq
			}
		}
		// Replicas in task-ID order, so the same catalog places the same way.
		reps := slices.SortedFunc(slices.Values(fn.Replicas), func(x, y contract.Replica) int { return strings.Compare(x.TaskID, y.TaskID) })
		var need []string
		for _, r := range reps {
			if !slices.Contains(b.Tasks, r.TaskID) {
				need = append(need, r.TaskID)
			}
		}
		switch free := b.free(); {
		case len(b.Tasks) == 0:
			b.grow(slotSize(len(fn.Replicas)))
			resized = true
		case free < len(need) && len(b.Tasks) < maxSlots:
			b.grow(slotSize(len(b.Tasks) - free + len(need)))
			resized = true
		}
		for _, t := range need {
			i := b.pick()
			if i < 0 {
				break // maxSlots reached: the replica stays out of the gateway
			}
			b.Tasks[i] = t
		}
	}
	for fn := range s {
		if !listed[fn] {
			delete(s, fn)
			resized = true
		}
	}
	return resized
}

func (b *BackendSlots) grow(n int) {
	for len(b.Tasks) < n {
		b.Tasks = append(b.Tasks, "")
		b.freed = append(b.freed, 0)
	}
}

func (b *BackendSlots) free() int {
	n := 0
	for _, t := range b.Tasks {
		if t == "" {
			n++
		}
	}
	return n
}

// pick returns the free slot to use next: never used first (lowest index),
// else the one freed longest ago; -1 when none is free.
func (b *BackendSlots) pick() int {
	best := -1
	for i, t := range b.Tasks {
		if t != "" {
			continue
		}
		if best < 0 || b.freed[i] < b.freed[best] {
			best = i
		}
	}
	return best
}

// Recover rebuilds fn's slots from HAProxy's servers (after pulsed
// restarted while HAProxy kept running): a slot server whose address is a
// listed replica's, and which is not in maintenance, holds that replica.
// It only fills s for functions it has no slots for yet.
func (s Slots) Recover(cat contract.Catalog, servers []ServerState) {
	byBackend := map[string][]ServerState{}
	for _, sv := range servers {
		byBackend[sv.Backend] = append(byBackend[sv.Backend], sv)
	}
	for _, fn := range cat.Functions {
		if s[fn.Name] != nil {
			continue
		}
		have := byBackend[BackendName(fn.Name)]
		n := 0
		for _, sv := range have {
			if i := slotIndex(sv.Name); i >= 0 {
				n = max(n, i+1)
			}
		}
		if n == 0 {
			continue
		}
		b := &BackendSlots{}
		b.grow(n)
		byAddr := map[string]string{}
		for _, r := range fn.Replicas {
			byAddr[r.Addr] = r.TaskID
		}
		for _, sv := range have {
			i := slotIndex(sv.Name)
			if i < 0 || sv.State() == StateMaint {
				continue
			}
			if t, ok := byAddr[sv.Address()]; ok && !slices.Contains(b.Tasks, t) {
				b.Tasks[i] = t
			}
		}
		s[fn.Name] = b
	}
}

// String is a compact dump for logs and test failures.
func (s Slots) String() string {
	var b strings.Builder
	for _, fn := range slices.Sorted(maps.Keys(s)) {
		fmt.Fprintf(&b, "%s%v ", fn, s[fn].Tasks)
	}
	return strings.TrimSpace(b.String())
}

package gateway

import (
	"slices"
	"strconv"
	"testing"

	"github.com/pulsefaas/pulse/contract"
)

// slotsCat is a catalog of one function "f" with the given tasks
// (draining when the ID ends in "~").
func slotsCat(tasks ...string) contract.Catalog {
	fn := contract.CatalogFunction{Name: "f", Desired: len(tasks)}
	for i, t := range tasks {
		draining := len(t) > 1 && t[len(t)-1] == '~'
		if draining {
			t = t[:len(t)-1]
		}
		fn.Replicas = append(fn.Replicas, contract.Replica{TaskID: t, Addr: "10.0.0.1:" + strconv.Itoa(1000*(i+1)), Draining: draining})
	}
	return contract.Catalog{Functions: []contract.CatalogFunction{fn}}
}

func TestSlotsPlace(t *testing.T) {
	type step struct {
		tasks   []string
		want    []string // f's slots after Place
		resized bool
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{"a new function gets eight slots however few replicas it has", []step{
			{[]string{"a"}, []string{"a", "", "", "", "", "", "", ""}, true},
		}},
		{"a function with no replica still gets its slots", []step{
			{nil, []string{"", "", "", "", "", "", "", ""}, true},
		}},
		{"replicas keep their slots while new ones fill the lowest never-used", []step{
			{[]string{"b", "a"}, []string{"a", "b", "", "", "", "", "", ""}, true},
			{[]string{"a", "b", "c"}, []string{"a", "b", "c", "", "", "", "", ""}, false},
		}},
		{"a gone replica frees its slot, which is reused only after the never-used ones", []step{
			{[]string{"a", "b"}, []string{"a", "b", "", "", "", "", "", ""}, true},
			{[]string{"b"}, []string{"", "b", "", "", "", "", "", ""}, false},
			{[]string{"b", "c", "d", "e", "f", "g", "h"}, []string{"", "b", "c", "d", "e", "f", "g", "h"}, false},
			{[]string{"b", "c", "d", "e", "f", "g", "h", "i"}, []string{"i", "b", "c", "d", "e", "f", "g", "h"}, false},
		}},
		{"of two freed slots the one freed first is taken first", []step{
			{[]string{"a"}, pad(8, "a"), true},
			{[]string{"a", "b", "c", "d", "e", "f", "g", "h"}, pad(8, "a", "b", "c", "d", "e", "f", "g", "h"), false},
			{[]string{"a", "c", "d", "e", "f", "g", "h"}, pad(8, "a", "", "c", "d", "e", "f", "g", "h"), false},
			{[]string{"c", "d", "e", "f", "g", "h"}, pad(8, "", "", "c", "d", "e", "f", "g", "h"), false},
			{[]string{"c", "d", "e", "f", "g", "h", "x"}, pad(8, "", "x", "c", "d", "e", "f", "g", "h"), false},
		}},
		{"a draining replica keeps its slot until it is gone", []step{
			{[]string{"a"}, pad(8, "a"), true},
			{[]string{"a~", "b"}, pad(8, "a", "b"), false},
			{[]string{"b"}, pad(8, "", "b"), false},
		}},
		{"a function deployed with many replicas gets twice as many slots", []step{
			{[]string{"a", "b", "c", "d", "e", "f", "g", "h", "i"}, pad(24, "a", "b", "c", "d", "e", "f", "g", "h", "i"), true},
		}},
		{"a full backend grows to twice what it must hold, in steps of eight (one reload)", []step{
			{[]string{"a"}, pad(8, "a"), true},
			{[]string{"a", "b", "c", "d", "e", "f", "g", "h"}, pad(8, "a", "b", "c", "d", "e", "f", "g", "h"), false},
			{[]string{"a", "b", "c", "d", "e", "f", "g", "h", "i"}, pad(24, "a", "b", "c", "d", "e", "f", "g", "h", "i"), true},
		}},
		{"scaling down never shrinks the backend (no reload)", []step{
			{[]string{"a", "b", "c", "d", "e", "f", "g", "h", "i"}, pad(24, "a", "b", "c", "d", "e", "f", "g", "h", "i"), true},
			{[]string{"a"}, pad(24, "a"), false},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := Slots{}
			for i, st := range tt.steps {
				resized := s.Place(slotsCat(st.tasks...))
				if got := s.Of("f").Tasks; !slices.Equal(got, st.want) || resized != st.resized {
					t.Fatalf("step %d: slots %q resized %t; want %q resized %t", i+1, got, resized, st.want, st.resized)
				}
			}
		})
	}
}

// pad returns tasks followed by free slots up to n.
func pad(n int, tasks ...string) []string {
	out := slices.Clone(tasks)
	for len(out) < n {
		out = append(out, "")
	}
	return out
}

func TestSlotsRemovedFunction(t *testing.T) {
	s := Slots{}
	s.Place(slotsCat("a"))
	if !s.Place(contract.Catalog{}) || s.Of("f") != nil {
		t.Fatalf("a function no longer listed keeps its slots: %s", s)
	}
}

func TestSlotsRecover(t *testing.T) {
	cat := slotsCat("a", "b", "c") // at ports 1000, 2000, 3000
	servers := []ServerState{
		{Backend: "fn_f", Name: "s1", Addr: "10.0.0.1", Port: 2000},                          // b
		{Backend: "fn_f", Name: "s2", Addr: "10.0.0.1", Port: 9999},                          // nobody's: free
		{Backend: "fn_f", Name: "s3", Addr: "10.0.0.1", Port: 3000, Admin: AdminForcedMaint}, // in maintenance: free
		{Backend: "fn_f", Name: "s4", Addr: "10.0.0.1", Port: 1000},                          // a
		{Backend: "fn_f", Name: BackupServerName, Addr: "127.0.0.1", Port: 8091},
		{Backend: "fn_other", Name: "s1", Addr: "10.0.0.1", Port: 3000},
	}
	s := Slots{}
	s.Recover(cat, servers)
	if got, want := s.Of("f").Tasks, []string{"b", "", "", "a"}; !slices.Equal(got, want) {
		t.Fatalf("recovered %q, want %q", got, want)
	}
	if s.Place(cat) {
		t.Fatal("placing after recovery resized the backend")
	}
	if got, want := s.Of("f").Tasks, []string{"b", "c", "", "a"}; !slices.Equal(got, want) {
		t.Fatalf("after Place: %q, want %q", got, want)
	}
}

func TestSlotIndex(t *testing.T) {
	for _, tt := range []struct {
		name string
		want int
	}{{"s1", 0}, {"s12", 11}, {"s0", -1}, {"s01", -1}, {"s", -1}, {BackupServerName, -1}, {"x1", -1}} {
		if got := slotIndex(tt.name); got != tt.want {
			t.Errorf("slotIndex(%q) = %d, want %d", tt.name, got, tt.want)
		}
		if tt.want >= 0 && SlotServer(tt.want) != tt.name {
			t.Errorf("SlotServer(%d) = %q", tt.want, SlotServer(tt.want))
		}
	}
}

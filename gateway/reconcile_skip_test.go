package gateway

import (
	"testing"
	"time"

	"github.com/pulsefaas/pulse/contract"
)

// TestReconcilerSkipsBadFunctions: a catalog with two functions HAProxy's
// file cannot hold (as a catalog from before pulsed skipped them would
// list) still routes the good one on a real HAProxy, and keeps following
// its replicas; both bad ones are reported with their reasons.
func TestReconcilerSkipsBadFunctions(t *testing.T) {
	l := newRecLab(t)
	bad := []contract.CatalogFunction{
		{Name: "bad1", Labels: map[string]string{contract.LabelTimeout: "abc"}, Replicas: []contract.Replica{}},
		{Name: "bad2", Labels: map[string]string{contract.LabelMaxBody: "-1"}, Replicas: []contract.Replica{}},
	}
	send := func(names ...string) {
		fn := contract.CatalogFunction{Name: "f", ServiceID: "svc", Desired: len(names)}
		for _, n := range names {
			fn.Replicas = append(fn.Replicas, contract.Replica{TaskID: "task" + n, Addr: l.replica(n), State: "running"})
		}
		l.cats <- contract.Catalog{Version: "v" + time.Now().String(), Functions: append([]contract.CatalogFunction{bad[0], fn}, bad[1])}
	}
	send("a")
	l.until("a serves", func(m map[string]int) bool { return m["a"] == 20 })
	send("a", "b")
	l.until("a and b serve", func(m map[string]int) bool { return m["a"] > 0 && m["b"] > 0 && m["a"]+m["b"] == 20 })
	left := l.rec.LeftOut()
	if len(left) != 2 || left["bad1"] == "" || left["bad2"] == "" {
		t.Errorf("left out %v: want bad1 and bad2 with reasons", left)
	}
	if err := l.rec.Err(); err != nil {
		t.Errorf("Err = %v: the good function is served", err)
	}
}

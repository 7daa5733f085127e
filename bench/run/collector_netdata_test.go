package main

import (
	"reflect"
	"testing"

	"github.com/pulsefaas/pulse/internal/netdatalab"
)

func TestSplitNetdataTree(t *testing.T) {
	procs := []netdatalab.Process{
		{PID: 10, Cmdline: []string{"/usr/sbin/netdata", "-D"}, RSSKB: 100000},
		{PID: 11, Cmdline: []string{"/usr/sbin/netdata", "--special-spawn-server"}, RSSKB: 5000},
		{PID: 12, Cmdline: []string{"/etc/netdata/custom-plugins.d/pulse.d.plugin", "1"}, RSSKB: 14000},
		{PID: 13, Cmdline: []string{"/usr/lib/netdata/plugins.d/apps.plugin", "1"}, RSSKB: 7000},
		{PID: 14, Cmdline: []string{"bash", "/usr/lib/netdata/plugins.d/tc-qos-helper.sh", "1"}, RSSKB: 3000},
	}
	got := splitNetdataTree(procs)
	want := netdataMemory{netdataKB: 105000, pluginKB: 14000, otherKB: 10000, pluginPIDs: []int{12}, netdataPIDs: []int{10, 11},
		others: []string{"apps.plugin", "tc-qos-helper.sh"}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("splitNetdataTree =\n%+v\nwant\n%+v", got, want)
	}
}

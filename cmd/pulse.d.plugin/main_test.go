package main

import (
	"reflect"
	"testing"

	"github.com/netdata/go.d.plugin/cli"
)

func TestAgentConfig(t *testing.T) {
	for _, tc := range []struct {
		name              string
		args              []string
		env               env
		conf, mods, watch []string
		state, module     string
		every             int
	}{
		{name: "under netdata", args: []string{"pulse.d.plugin", "1"},
			env:  env{userDir: "/etc/netdata", stockDir: "/usr/lib/netdata/conf.d", varLibDir: "/var/lib/netdata", lockDir: "/var/lib/netdata/lock"},
			conf: []string{"/etc/netdata", "/usr/lib/netdata/conf.d"}, mods: []string{"/etc/netdata/pulse.d", "/usr/lib/netdata/conf.d/pulse.d"},
			state: "/var/lib/netdata/pulse.d-jobs-statuses.json", module: "all", every: 1},
		{name: "by hand with -c, -m and an interval", args: []string{"pulse.d.plugin", "-d", "-m", "pulse", "-c", "/tmp/c", "2"},
			env:  env{userDir: "/etc/netdata"},
			conf: []string{"/tmp/c"}, mods: []string{"/tmp/c"}, module: "pulse", every: 2},
		{name: "no environment: relative to the plugin's directory", args: []string{"pulse.d.plugin"},
			conf: []string{"/etc/netdata", "/usr/lib/netdata/conf.d"}, mods: []string{"/etc/netdata/pulse.d", "/usr/lib/netdata/conf.d/pulse.d"},
			module: "all", every: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts, err := cli.Parse(tc.args)
			if err != nil {
				t.Fatal(err)
			}
			got := agentConfig(opts, tc.env, "/usr/libexec/netdata/plugins.d")
			if got.Name != "pulse.d" || !reflect.DeepEqual(got.ConfDir, tc.conf) || !reflect.DeepEqual(got.ModulesConfDir, tc.mods) ||
				got.StateFile != tc.state || got.RunModule != tc.module || got.MinUpdateEvery != tc.every || len(got.ModuleRegistry) != 1 {
				t.Errorf("agentConfig = %+v", got)
			}
		})
	}
}

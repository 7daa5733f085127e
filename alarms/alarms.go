// Package alarms holds Pulse's Netdata health templates (embedded, installed
// as HealthFile under Netdata's configuration directory) and the pure part of
// the alarm hook: turning the arguments Netdata passes an exec'd notification
// program into a contract.AlarmEvent (DESIGN §7).
package alarms

import _ "embed" // the health templates

// Install locations on the control node.
const (
	// HealthFile is the templates' path under Netdata's configuration
	// directory (/etc/netdata on Debian).
	HealthFile = "health.d/pulse.conf"
	// HookPath is where the hook binary is installed; the templates' exec:
	// lines name it.
	HookPath = "/usr/local/lib/pulse/pulse-alarm-hook"
)

//go:embed health/pulse.conf
var templates string

// Templates returns the health configuration file (alarms/health/pulse.conf),
// to be written to HealthFile.
func Templates() string { return templates }

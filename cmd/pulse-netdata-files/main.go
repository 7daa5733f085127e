// Command pulse-netdata-files writes the Netdata side of Pulse, all embedded
// in it, into a Netdata installation (scripts/install-netdata.sh runs it as
// root):
//
//	ETC/pulse.d.conf, ETC/pulse.d/*.conf  the collector's configuration (collector.ConfigFiles)
//	ETC/health.d/pulse.conf               the scaling alarms (alarms.Templates)
//	WEB/pulse-dashboard-info.js           titles the dashboard's "pulse" menu
//	ETC/netdata.conf                      a marked block: [web] custom dashboard_info.js, [health] enabled
//
// ETC defaults to /etc/netdata and WEB to /usr/share/netdata/web (Debian).
// Everything else in netdata.conf stays as it is; running it again rewrites
// the same files and the same block. It does not restart Netdata.
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/pulsefaas/pulse/alarms"
	"github.com/pulsefaas/pulse/collector"
)

func main() {
	etc := flag.String("etc", "/etc/netdata", "Netdata's configuration directory")
	web := flag.String("web", "/usr/share/netdata/web", "Netdata's web files directory (netdata.conf [directories] web)")
	flag.Parse()
	files, err := netdataFiles(collector.ConfigFiles, alarms.Templates())
	if err == nil {
		err = install(*etc, *web, files, os.Stdout)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "pulse-netdata-files:", err)
		os.Exit(1)
	}
}

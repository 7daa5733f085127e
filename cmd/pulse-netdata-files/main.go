// Command pulse-netdata-files writes the Netdata side of Pulse, all embedded
// in it, into a Netdata installation (the playbook's netdata role runs it as
// root):
//
//	ETC/pulse.d.conf, ETC/pulse.d/*.conf  the collector's configuration (collector.ConfigFiles)
//	ETC/health.d/pulse.conf               the scaling alarms (alarms.Templates)
//	ETC/pulse-cgroup-name.sh              0755: keeps Docker containers out of the cgroup charts
//	WEB/pulse-dashboard-info.js           titles the dashboard's "pulse" menu
//	ETC/netdata.conf                      a marked block: [web] custom dashboard_info.js, [health] enabled,
//	                                      [plugin:cgroups] the script and the pattern that hides what it hides
//	/etc/pulse/alarm-hook.conf            0644 (-hook-conf): the alarm hook's webhook URL and CA file
//
// -api (default http://127.0.0.1:8090) is pulsed's API: the collector's
// catalog_url and the hook's PULSE_ALARM_URL are made from it. When pulsed
// serves HTTPS (its tls_cert), pass -api https://… and -ca-file with the
// CA to verify it (make up's self-signed certificate: /etc/pulse/tls-ca.pem):
// the job gets ca_file and the hook's file PULSE_ALARM_CA_FILE. Without
// them both go back to plain http://.
//
// Docker containers are kept out of Netdata's cgroup charts because user
// netdata cannot name them (their names come from the Docker socket, which
// is root on the host): on a Pulse node they are function replicas, each a
// menu section named by a hex ID, while the "pulse" menu already shows every
// function by name. Other cgroups keep the stock cgroup-name.sh's names.
//
// ETC defaults to /etc/netdata and WEB to /usr/share/netdata/web (Debian).
// Everything else in netdata.conf stays as it is. A file is written only
// when its content or mode differs, with one line "wrote PATH"; a second run
// writes and prints nothing. -check writes nothing and prints "would write
// PATH" instead (the playbook's --check). It does not restart Netdata.
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/pulsefaas/pulse/alarms"
	"github.com/pulsefaas/pulse/collector"
	"github.com/pulsefaas/pulse/contract"
)

func main() {
	etc := flag.String("etc", "/etc/netdata", "Netdata's configuration directory")
	web := flag.String("web", "/usr/share/netdata/web", "Netdata's web files directory (netdata.conf [directories] web)")
	var api API
	flag.StringVar(&api.URL, "api", DefaultAPI, "pulsed's API, http://HOST:PORT or https://HOST:PORT (https when pulsed's tls_cert is set)")
	flag.StringVar(&api.CAFile, "ca-file", "", "PEM bundle the collector and the hook verify an https API with (make up writes /etc/pulse/tls-ca.pem); none: the system's CAs")
	hookConf := flag.String("hook-conf", contract.DefaultAlarmHookConfig, "the alarm hook's config file to write; empty: none")
	w := &writer{log: os.Stdout}
	flag.BoolVar(&w.check, "check", false, "write nothing: say which files would be written (the playbook's --check)")
	flag.Parse()
	err := api.Validate()
	var files []File
	if err == nil {
		files, err = netdataFiles(collector.ConfigFiles, alarms.Templates())
	}
	if err == nil {
		err = pointFiles(files, api)
	}
	if err == nil {
		err = install(*etc, *web, files, w)
	}
	if err == nil && *hookConf != "" {
		err = installHookConfig(*hookConf, api, w)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "pulse-netdata-files:", err)
		os.Exit(1)
	}
}

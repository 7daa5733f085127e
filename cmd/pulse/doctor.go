package main

import (
	"encoding/json"
	"errors"

	"github.com/spf13/cobra"

	"github.com/pulsefaas/pulse/doctor"
)

func (a *app) doctorCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "doctor",
		Short: "Check this host for what Pulse needs",
		Long: `Probe this host, one line per check (OK, WARN or FAIL, with a hint): Docker and its
API version, swarm state and nodes, dockerd's host-port range against the ports the kernel
reserves from client sockets, the userland proxy (off), IPVS and VXLAN, inotify and open-file
limits, HAProxy, Netdata, the compilers, and which Pulse components run. The engine is the
one every other command uses: docker_host in the config, PULSE_DOCKER_HOST, else DOCKER_HOST.
Exit code 1 if any check fails.`,
		Example: "  pulse doctor\n  pulse doctor --json | jq '.[] | select(.status != \"OK\")'",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			p := doctor.DefaultProbes(a.cfg.DockerHost)
			defer p.Close()
			res := doctor.Run(cmd.Context(), p)
			if asJSON {
				enc := json.NewEncoder(a.out)
				enc.SetEscapeHTML(false)
				enc.SetIndent("", "  ")
				if err := enc.Encode(res); err != nil {
					return err
				}
			} else if err := doctor.Format(a.out, res); err != nil {
				return err
			}
			if _, _, fail := doctor.Summary(res); fail > 0 {
				return errors.New("some checks failed; see the hints above")
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the results as JSON")
	return cmd
}

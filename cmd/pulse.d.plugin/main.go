// Command pulse.d.plugin is Pulse's Netdata plugin: the go.d.plugin
// framework (v0.58.1) running only Pulse's collector (module "pulse",
// package collector). It is named so that it coexists with a stock
// go.d.plugin: its configuration is pulse.d.conf and pulse.d/pulse.conf in
// Netdata's user and stock config directories.
//
//	pulse.d.plugin [-d] [-m pulse] [-c DIR]... [-w PATH]... [-v] [update-every]
//
// Netdata starts it from plugins.d with NETDATA_USER_CONFIG_DIR and
// NETDATA_STOCK_CONFIG_DIR set; by hand, set them (or pass -c) to find the
// configuration. It writes Netdata's plugins.d protocol to stdout and logs
// to stderr.
package main

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/jessevdk/go-flags"
	"github.com/netdata/go.d.plugin/agent"
	"github.com/netdata/go.d.plugin/cli"
	"github.com/netdata/go.d.plugin/logger"

	"github.com/pulsefaas/pulse/collector"
	"github.com/pulsefaas/pulse/contract"
)

var version = "dev"

func main() {
	opts, err := cli.Parse(os.Args)
	if err != nil {
		var ferr *flags.Error
		if errors.As(err, &ferr) && errors.Is(ferr.Type, flags.ErrHelp) {
			os.Exit(0)
		}
		os.Exit(1)
	}
	if opts.Version {
		fmt.Printf("%s.plugin, version: %s\n", contract.PluginName, version)
		return
	}
	env := environ(os.Getenv)
	if env.logLevel != "" {
		logger.Level.SetByName(env.logLevel)
	}
	if opts.Debug {
		logger.Level.Set(slog.LevelDebug)
	}
	cwd, _ := os.Getwd()
	a := agent.New(agentConfig(opts, env, cwd))
	// agent.New (v0.58.1) ignores Config.ModuleRegistry and takes go.d's
	// default registry: set ours, which holds only module pulse.
	a.ModuleRegistry = collector.Registry()
	a.Infof("plugin: name=%s, version=%s", contract.PluginName, version)
	a.Run()
}

// env is the part of Netdata's environment the plugin reads.
type env struct {
	userDir, stockDir, varLibDir, lockDir, logLevel string
}

func environ(get func(string) string) env {
	return env{
		userDir:   get("NETDATA_USER_CONFIG_DIR"),
		stockDir:  get("NETDATA_STOCK_CONFIG_DIR"),
		varLibDir: get("NETDATA_LIB_DIR"),
		lockDir:   get("NETDATA_LOCK_DIR"),
		logLevel:  get("NETDATA_LOG_LEVEL"),
	}
}

// agentConfig is go.d's own main's configuration, for our plugin name: the
// config dirs from -c, else from Netdata's environment, else relative to
// the working directory as Netdata lays out a static install.
func agentConfig(opts *cli.Option, e env, cwd string) agent.Config {
	name := contract.PluginName
	confDir := []string(opts.ConfDir)
	modDir := []string(opts.ConfDir)
	if len(confDir) == 0 {
		var dirs []string
		if e.userDir != "" || e.stockDir != "" {
			dirs = nonEmpty(e.userDir, e.stockDir)
		} else {
			dirs = []string{filepath.Join(cwd, "/../../../../etc/netdata"), filepath.Join(cwd, "/../../../../usr/lib/netdata/conf.d")}
		}
		confDir = dirs
		modDir = nil
		for _, d := range dirs {
			modDir = append(modDir, filepath.Join(d, name))
		}
	}
	var stateFile string
	if e.varLibDir != "" {
		stateFile = filepath.Join(e.varLibDir, name+"-jobs-statuses.json") // go.d: god-jobs-statuses.json
	}
	return agent.Config{
		Name:              name,
		ConfDir:           confDir,
		ModulesConfDir:    modDir,
		ModulesSDConfPath: opts.WatchPath,
		VnodesConfDir:     confDir,
		StateFile:         stateFile,
		LockDir:           e.lockDir,
		ModuleRegistry:    collector.Registry(),
		RunModule:         opts.Module,
		MinUpdateEvery:    opts.UpdateEvery,
	}
}

func nonEmpty(ss ...string) []string {
	var out []string
	for _, s := range ss {
		if s != "" {
			out = append(out, s)
		}
	}
	return out
}

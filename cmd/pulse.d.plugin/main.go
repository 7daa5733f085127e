package main

import (
	_ "github.com/labstack/echo/v4"
	"github.com/netdata/go.d.plugin/agent"
	_ "github.com/netdata/go.d.plugin/pkg/prometheus"
	_ "github.com/netdata/go.d.plugin/pkg/web"
	_ "github.com/netdata/go.d.plugin/cli"
)

func main() { agent.New(agent.Config{Name: "pulse.d"}).Run() }

package collector

import (
	"embed"
	"io/fs"
)

//go:embed config
var configFS embed.FS

// ConfigFiles holds the plugin's configuration as Netdata wants it, for the
// installer to write out under Netdata's config directory
// (/etc/netdata or /usr/lib/netdata/conf.d): "pulse.d.conf" (the plugin:
// only module pulse enabled) and "pulse.d/pulse.conf" (one job named
// "pulse", so every chart's type is "pulse").
var ConfigFiles fs.FS = func() fs.FS {
	sub, err := fs.Sub(configFS, "config")
	if err != nil {
		panic("collector: embedded config: " + err.Error())
	}
	return sub
}()

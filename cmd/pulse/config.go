package main

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/viper"

	"github.com/pulsefaas/pulse/contract"
	"github.com/pulsefaas/pulse/provision"
)

// Config is the CLI's configuration: a YAML file (--config, else
// $XDG_CONFIG_HOME/pulse/config.yaml when it exists) overridden by PULSE_*
// environment variables. Unknown keys are errors.
type Config struct {
	// DockerHost is the Docker Engine to talk to (default: DOCKER_HOST, then
	// the local socket).
	DockerHost string `mapstructure:"docker_host"`
	// Gateway is the gateway's base URL (default http://127.0.0.1:8080,
	// pulsed's gateway_listen default): `pulse invoke` goes through it.
	// Replicas serve only the gateway and the collector, so nothing in the
	// CLI calls a replica itself.
	Gateway string `mapstructure:"gateway"`
	// ReplicaGateway is the gateway's URL as seen from inside a replica,
	// injected as PULSE_GATEWAY_URL for functions that call functions.
	ReplicaGateway string `mapstructure:"replica_gateway"`
	// CacheDir holds the watchdog SDK and built watchdogs.
	CacheDir string `mapstructure:"cache_dir"`
	// API is pulsed's API, whose replica catalog says when the gateway
	// routes a deployed or scaled function's replicas.
	API string `mapstructure:"api"`
	// Instance is the Pulse install `pulse deploy` deploys to (label
	// pulse.instance): only the pulsed with the same instance routes and
	// scales the function.
	Instance string `mapstructure:"instance"`
	// TokenFile holds pulsed's management token (its api_token_file), which
	// `pulse key` sends as a bearer token.
	TokenFile string `mapstructure:"token_file"`
	// CAFile is a PEM bundle of the CAs that sign the gateway's and pulsed's
	// certificates (https URLs); empty: the system's CAs.
	CAFile string `mapstructure:"ca_file"`
	// Fingerprint pins the SHA-256 of the gateway's and pulsed's leaf
	// certificate (hex, colons optional) instead of a CA: the certificate
	// must be exactly that one, whatever names it carries.
	Fingerprint string `mapstructure:"fingerprint"`
	// SSHKnownHosts is the known_hosts file SSH host keys are checked
	// against (docker_host ssh://, pulse node, images to nodes); default
	// ~/.ssh/known_hosts.
	SSHKnownHosts string `mapstructure:"ssh_known_hosts"`
	// SSHIdentityFiles are private key files offered after the SSH agent's
	// keys (a YAML list, or comma-separated); default those of
	// ~/.ssh/id_ed25519, id_ecdsa and id_rsa that exist.
	SSHIdentityFiles []string `mapstructure:"ssh_identity_files"`
}

// configKeys are the keys and their environment variables.
var configKeys = map[string]string{
	"docker_host":        "PULSE_DOCKER_HOST",
	"gateway":            "PULSE_GATEWAY",
	"replica_gateway":    "PULSE_REPLICA_GATEWAY",
	"cache_dir":          "PULSE_CACHE_DIR",
	"api":                "PULSE_API",
	"instance":           "PULSE_INSTANCE",
	"token_file":         "PULSE_TOKEN_FILE",
	"ca_file":            "PULSE_CA_FILE",
	"fingerprint":        "PULSE_FINGERPRINT",
	"ssh_known_hosts":    "PULSE_SSH_KNOWN_HOSTS",
	"ssh_identity_files": "PULSE_SSH_IDENTITY_FILES",
}

// configKeyList lists the keys for messages.
const configKeyList = "docker_host, gateway, replica_gateway, cache_dir, api, instance, token_file, ca_file, fingerprint, ssh_known_hosts, ssh_identity_files"

// configDefaults are the keys' defaults; the others default to "".
var configDefaults = map[string]string{
	"api":        "http://127.0.0.1:8090", // pulsed's api_listen default
	"gateway":    "http://127.0.0.1:8080", // pulsed's gateway_listen port
	"instance":   contract.DefaultInstance,
	"token_file": contract.DefaultAPITokenFile,
}

// loadConfig reads the configuration. path is --config ("" for the
// default location, which may be absent).
func loadConfig(path string, env func(string) string) (Config, error) {
	v := viper.New()
	v.SetConfigType("yaml")
	for k := range configKeys {
		v.SetDefault(k, configDefaults[k])
	}
	explicit := path != ""
	if !explicit {
		dir := env("XDG_CONFIG_HOME")
		if dir == "" {
			if home := env("HOME"); home != "" {
				dir = filepath.Join(home, ".config")
			}
		}
		if dir != "" {
			path = filepath.Join(dir, "pulse", "config.yaml")
		}
	}
	if path != "" {
		f, err := os.Open(path)
		switch {
		case err == nil:
			defer f.Close()
			if err := v.ReadConfig(f); err != nil {
				return Config{}, fmt.Errorf("config %s: %w", path, err)
			}
		case explicit || !errors.Is(err, os.ErrNotExist):
			return Config{}, fmt.Errorf("config: %w", err)
		}
	}
	// The environment wins over the file. (Read through env rather than
	// viper's AutomaticEnv, so tests inject it.)
	for k, e := range configKeys {
		if val := env(e); val != "" {
			v.Set(k, val)
		}
	}
	var c Config
	if err := v.UnmarshalExact(&c); err != nil {
		return Config{}, fmt.Errorf("config %s: %w (known keys: %s)", path, err, configKeyList)
	}
	if c.DockerHost == "" {
		c.DockerHost = env("DOCKER_HOST")
	}
	return c, c.Validate()
}

// Validate checks the URLs and the instance.
func (c Config) Validate() error {
	var errs []error
	if c.API == "" {
		errs = append(errs, fmt.Errorf("api is empty: want pulsed's API URL, e.g. %s (set it in the config file or %s)", configDefaults["api"], configKeys["api"]))
	}
	for _, u := range []struct{ key, val, example string }{
		{"gateway", c.Gateway, "http://127.0.0.1:8080"}, {"replica_gateway", c.ReplicaGateway, "http://172.17.0.1:8080"}, {"api", c.API, configDefaults["api"]},
	} {
		if u.val == "" {
			continue
		}
		p, err := url.Parse(u.val)
		if err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" {
			errs = append(errs, fmt.Errorf("%s %q: want an http:// or https:// URL such as %s (set it in the config file or %s)",
				u.key, u.val, u.example, configKeys[u.key]))
		}
	}
	// SSH files are absolute or under ~/: a relative known_hosts would
	// make which host keys are trusted depend on the current directory.
	for _, f := range append([]string{c.SSHKnownHosts}, c.SSHIdentityFiles...) {
		if f != "" && !filepath.IsAbs(f) && !strings.HasPrefix(f, "~/") {
			errs = append(errs, fmt.Errorf("ssh file %q (ssh_known_hosts, ssh_identity_files): want an absolute path or one starting with ~/", f))
		}
	}
	if !contract.ValidInstance(c.Instance) {
		errs = append(errs, fmt.Errorf("instance %q: want %s, e.g. %s (set it in the config file or %s)",
			c.Instance, contract.InstanceSyntax, contract.DefaultInstance, configKeys["instance"]))
	}
	if c.DockerHost != "" && !strings.Contains(c.DockerHost, "://") {
		errs = append(errs, fmt.Errorf("docker_host %q: want unix:///var/run/docker.sock, tcp://host:2376 or ssh://[user@]host[:port]", c.DockerHost))
	} else if _, _, err := c.sshDockerHost(); err != nil {
		errs = append(errs, err)
	}
	if c.Gateway == "" {
		errs = append(errs, fmt.Errorf("gateway is empty: want the gateway's URL, e.g. %s (set it in the config file or %s)", configDefaults["gateway"], configKeys["gateway"]))
	}
	if c.TokenFile == "" {
		errs = append(errs, fmt.Errorf("token_file is empty: want the file holding pulsed's management token, e.g. %s (set it in the config file or %s)", contract.DefaultAPITokenFile, configKeys["token_file"]))
	}
	errs = append(errs, c.validateTLS())
	return errors.Join(errs...)
}

// sshDockerHost reads docker_host ssh://[user@]host[:port]: ok is false
// for any other scheme.
func (c Config) sshDockerHost() (t provision.Target, ok bool, err error) {
	if !strings.HasPrefix(c.DockerHost, "ssh://") {
		return t, false, nil
	}
	t, err = provision.ParseSSHURL(c.DockerHost)
	if err != nil {
		return provision.Target{}, true, fmt.Errorf("docker_host: %w (set it in the config file or %s)", err, configKeys["docker_host"])
	}
	return t, true, nil
}

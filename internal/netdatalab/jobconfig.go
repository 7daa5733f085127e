package netdatalab

import (
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strconv"

	"github.com/pulsefaas/pulse/contract"
)

// JobConfig is a pulse.d/pulse.conf for the lab: the shipped one's keys
// (collector/config/pulse.d/pulse.conf), pointed at a test's pulsed
// catalog and HAProxy exporter. Without WithReplicaAuthFile the job reads
// the collector's default replica_auth_file (contract.DefaultReplicaAuthFile);
// WithCAFile sets the ca_file an https:// catalog URL is verified with
// (testcert.SelfSigned and CAFile make a certificate and a file for it).
func JobConfig(catalogURL, haproxyURL string, opts ...JobOption) string {
	var o jobOptions
	for _, opt := range opts {
		opt(&o)
	}
	conf := fmt.Sprintf(`update_every: 1
autodetection_retry: 0
jobs:
  - name: %s
    catalog_url: %s
    haproxy_url: %s
    timeout: 800ms
`, contract.CollectorJob, catalogURL, haproxyURL)
	if o.replicaAuthFile != "" {
		conf += fmt.Sprintf("    replica_auth_file: %s\n", o.replicaAuthFile)
	}
	if o.caFile != "" {
		conf += fmt.Sprintf("    ca_file: %s\n", o.caFile)
	}
	return conf
}

// JobOption sets one more key of JobConfig's job.
type JobOption func(*jobOptions)

type jobOptions struct {
	replicaAuthFile string
	caFile          string
}

// WithCAFile sets the job's ca_file: the PEM bundle the collector verifies
// an https:// catalog_url (and haproxy_url) with. The netdata user must be
// able to read it (CAFile makes such a file).
func WithCAFile(path string) JobOption {
	return func(o *jobOptions) { o.caFile = path }
}

// HookEnv is the environment that points the lab's alarm hook
// (cmd/pulse-alarm-hook) at a test's pulsed: its webhook URL and token
// file, and with HookCAFile the CA file for an https:// URL. Pass it as
// Config.Env. The hook reads no config file then (PULSE_ALARM_URL is set).
func HookEnv(url, tokenFile string, opts ...HookOption) []string {
	var o hookOptions
	for _, opt := range opts {
		opt(&o)
	}
	env := []string{"PULSE_ALARM_URL=" + url, "PULSE_ALARM_TOKEN_FILE=" + tokenFile}
	if o.caFile != "" {
		env = append(env, "PULSE_ALARM_CA_FILE="+o.caFile)
	}
	return env
}

// HookOption sets one more variable of HookEnv.
type HookOption func(*hookOptions)

type hookOptions struct{ caFile string }

// HookCAFile sets PULSE_ALARM_CA_FILE: the PEM bundle the hook verifies an
// https:// webhook URL with.
func HookCAFile(path string) HookOption {
	return func(o *hookOptions) { o.caFile = path }
}

// CAFile writes a PEM bundle to a new file everyone may read (0644, in a
// 0755 directory under os.TempDir), as make up's /etc/pulse/tls-ca.pem is,
// and returns its path and a function that removes it.
func CAFile(pemData []byte) (path string, remove func(), err error) {
	dir, err := os.MkdirTemp("", "pulse-netdatalab-ca-")
	if err != nil {
		return "", nil, fmt.Errorf("netdatalab: ca file: %w", err)
	}
	remove = func() { os.RemoveAll(dir) }
	path = filepath.Join(dir, "tls-ca.pem")
	err = os.Chmod(dir, 0o755)
	if err == nil {
		err = os.WriteFile(path, pemData, 0o644)
	}
	if err == nil {
		err = os.Chmod(path, 0o644)
	}
	if err != nil {
		remove()
		return "", nil, fmt.Errorf("netdatalab: ca file: %w", err)
	}
	return path, remove, nil
}

// WithReplicaAuthFile sets the job's replica_auth_file: the replica
// credential the collector presents to the test's replicas. The netdata
// user must be able to read it (ReplicaAuthFile makes such a file).
func WithReplicaAuthFile(path string) JobOption {
	return func(o *jobOptions) { o.replicaAuthFile = path }
}

// ReplicaAuthFile writes credential to a new file the lab's collector can
// read, as pulsed's replica_auth_file is (root:netdata 0640, in a directory
// user netdata can enter, under os.TempDir), and returns its path and a
// function that removes it. Rewrite the file (as root) to rotate the
// credential: the collector re-reads it when it changes. An empty
// credential writes no file: the path is for a test's pulsed, which
// generates the file (root:netdata 0640) where it is missing.
func ReplicaAuthFile(credential string) (path string, remove func(), err error) {
	g, err := user.LookupGroup("netdata")
	if err != nil {
		return "", nil, fmt.Errorf("netdatalab: replica credential: %w", err)
	}
	gid, _ := strconv.Atoi(g.Gid)
	dir, err := os.MkdirTemp("", "pulse-netdatalab-auth-")
	if err != nil {
		return "", nil, fmt.Errorf("netdatalab: replica credential: %w", err)
	}
	remove = func() { os.RemoveAll(dir) }
	path = filepath.Join(dir, "replica-auth")
	err = os.Chmod(dir, 0o755)
	if err == nil && credential == "" {
		return path, remove, nil
	}
	if err == nil {
		err = os.WriteFile(path, []byte(credential+"\n"), 0o640)
	}
	if err == nil {
		err = os.Chown(path, 0, gid)
	}
	if err == nil {
		err = os.Chmod(path, 0o640)
	}
	if err != nil {
		remove()
		return "", nil, fmt.Errorf("netdatalab: replica credential: %w", err)
	}
	return path, remove, nil
}

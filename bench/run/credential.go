package main

// A run's replica credential (contract/auth.go): replicas serve only
// requests that carry their instance's credential (contract.HeaderReplicaAuth),
// and function.Swarm.Deploy refuses an instance without its secret. Each
// run is its own instance (benchInstance), so it makes its own credential
// before its first deploy, as pulsed does at start: a file (pulsed's
// replica_auth_file, readable by the lab Netdata's collector) and the
// Docker secret replicas mount; and removes both when the run ends, after
// its services.

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"time"

	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/errdefs"

	"github.com/pulsefaas/pulse/contract"
	"github.com/pulsefaas/pulse/internal/credential"
	"github.com/pulsefaas/pulse/internal/netdatalab"
)

// runCredential is a run's replica credential.
type runCredential struct {
	instance string
	// path is the credential file: 0640 root:netdata in a directory the
	// netdata user can enter when that group exists (the lab Netdata's
	// collector reads it), else in the run's temporary directory.
	path   string
	value  string
	rmFile func()
}

// secretRemoveWait bounds the removal of the run's secrets: Docker refuses
// to remove a secret a service still uses, and a service being removed may
// hold it for a moment.
const secretRemoveWait = 30 * time.Second

// newRunCredential creates the credential file for instance (tmp is the
// run's temporary directory) and, when api is not nil, the instance's
// secret (credential.EnsureReplicaAuthSecret, as pulsed makes it).
func newRunCredential(ctx context.Context, api credential.SecretAPI, instance, tmp string) (*runCredential, error) {
	c := &runCredential{instance: instance, rmFile: func() {}}
	if _, err := user.LookupGroup("netdata"); err == nil {
		path, remove, err := netdatalab.ReplicaAuthFile("")
		if err != nil {
			return nil, fmt.Errorf("replica credential: %w", err)
		}
		c.path, c.rmFile = path, remove
	} else {
		c.path = filepath.Join(tmp, "replica-auth")
		c.rmFile = func() { _ = os.Remove(c.path) }
	}
	v, err := credential.ReadOrCreateReplicaAuth(c.path)
	if err != nil {
		c.rmFile()
		return nil, fmt.Errorf("replica credential: %w", err)
	}
	c.value = v
	if api == nil {
		return c, nil
	}
	cctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	if _, err := credential.EnsureReplicaAuthSecret(cctx, api, instance, v); err != nil {
		c.rmFile()
		return nil, fmt.Errorf("replica credential of instance %s: %w", instance, err)
	}
	return c, nil
}

// header is the credential as a request header.
func (c *runCredential) header() http.Header {
	if c == nil {
		return nil
	}
	return http.Header{contract.HeaderReplicaAuth: {c.value}}
}

// pulsedEnv points pulsed's replica_auth_file at the credential file.
func (c *runCredential) pulsedEnv() string {
	return contract.EnvReplicaAuthFile + "=" + c.path
}

// remove removes every secret labelled with the run's instance (waiting,
// up to secretRemoveWait, for services being removed to let go of them)
// and the credential file. Call it after the run's services are gone. It
// returns what it could not remove.
func (c *runCredential) remove(api credential.SecretAPI) []string {
	return c.removeWithin(secretRemoveWait, api)
}

// removeWithin is remove waiting up to wait.
func (c *runCredential) removeWithin(wait time.Duration, api credential.SecretAPI) []string {
	if c == nil {
		return nil
	}
	defer c.rmFile()
	if api == nil {
		return nil
	}
	deadline := time.Now().Add(wait)
	cctx, cancel := call(context.Background())
	list, err := api.SecretList(cctx, swarm.SecretListOptions{Filters: filters.NewArgs(filters.Arg("label", contract.LabelInstance+"="+c.instance))})
	cancel()
	if err != nil {
		return []string{fmt.Sprintf("secrets of instance %s: list: %v", c.instance, err)}
	}
	var left []string
	for _, s := range list {
		if s.Spec.Labels[contract.LabelInstance] != c.instance {
			continue
		}
		for {
			cctx, cancel := call(context.Background())
			err := api.SecretRemove(cctx, s.ID)
			cancel()
			if err == nil || errdefs.IsNotFound(err) {
				break
			}
			inUse := errdefs.IsInvalidParameter(err) || strings.Contains(err.Error(), "in use")
			if !inUse || time.Now().After(deadline) {
				left = append(left, fmt.Sprintf("secret %s: %v", s.Spec.Name, err))
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	return left
}

// refusesWithout POSTs body to url without the replica credential and
// reports whether the replica refused it (403): the watchdog checks the
// credential. Any other answer (200: no check) is reported as not refused.
func refusesWithout(ctx context.Context, url, body string) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		return false, err
	}
	resp, err := probeClient.Do(req)
	if err != nil {
		return false, fmt.Errorf("POST %s without the replica credential: %w", url, err)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	return resp.StatusCode == http.StatusForbidden, nil
}

// noCredentialCheck is the note of a run whose replica answered a request
// without the credential.
const noCredentialCheck = "the replica answered a request without the replica credential (" + contract.HeaderReplicaAuth +
	"): its watchdog does not check it, so the direct path ran without that check"

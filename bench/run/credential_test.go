package main

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/swarm"

	"github.com/pulsefaas/pulse/contract"
)

// TestRunCredential (real engine): a run's credential is a 0640 file and a
// secret labelled with the run's instance that function.Swarm.Deploy
// accepts; remove waits for a service being removed to let go of the
// secret, then removes it and the file.
func TestRunCredential(t *testing.T) {
	api, _, _, err := connectSingleNodeSwarm(context.Background(), "test", "")
	if err != nil {
		t.Skip("no single-node swarm: ", err)
	}
	defer api.Close()
	run, err := runID()
	if err != nil {
		t.Fatal(err)
	}
	instance := benchInstance(run)
	listSecrets := func() []swarm.Secret {
		t.Helper()
		list, err := api.SecretList(context.Background(), swarm.SecretListOptions{Filters: filters.NewArgs(filters.Arg("label", contract.LabelInstance+"="+instance))})
		if err != nil {
			t.Fatal(err)
		}
		return list
	}
	t.Cleanup(func() {
		_ = api.ServiceRemove(context.Background(), "pbench-cred-"+run)
		for _, s := range listSecrets() {
			_ = api.SecretRemove(context.Background(), s.ID)
		}
	})
	ctx := context.Background()
	c, err := newRunCredential(ctx, api, instance, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(c.path)
	if err != nil || st.Mode().Perm() != 0o640 || len(c.value) != 64 {
		t.Fatalf("credential file %s: %v, %v; value %d chars; want 0640, 64 hex digits", c.path, st, err, len(c.value))
	}
	if h := c.header(); h.Get(contract.HeaderReplicaAuth) != c.value || len(h) != 1 {
		t.Errorf("header = %v", h)
	}
	if env := c.pulsedEnv(); env != contract.EnvReplicaAuthFile+"="+c.path {
		t.Errorf("pulsedEnv = %q", env)
	}
	list := listSecrets()
	if len(list) != 1 || list[0].Spec.Name != contract.ReplicaAuthSecretName(instance, c.value) || list[0].Spec.Labels[contract.LabelRole] != contract.RoleReplicaAuth {
		t.Fatalf("secrets of %s: %+v; want one, named for the credential, role %s", instance, list, contract.RoleReplicaAuth)
	}

	// A service holding the secret, removed just before the credential:
	// remove waits until Docker lets go of it.
	name := "pbench-cred-" + run
	_, err = api.ServiceCreate(ctx, swarm.ServiceSpec{
		Annotations: swarm.Annotations{Name: name, Labels: benchLabels(run)},
		TaskTemplate: swarm.TaskSpec{ContainerSpec: &swarm.ContainerSpec{
			Image:   "pulse-bench-none:absent", // never runs: the service only holds the secret
			Secrets: []*swarm.SecretReference{{SecretID: list[0].ID, SecretName: list[0].Spec.Name, File: &swarm.SecretReferenceFileTarget{Name: "x", Mode: 0o400}}},
		}},
		Mode: swarm.ServiceMode{Replicated: &swarm.ReplicatedService{Replicas: new(uint64)}},
	}, swarm.ServiceCreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if left := (&runCredential{instance: instance, path: c.path, value: c.value, rmFile: func() {}}).removeWithin(2*time.Second, api); len(left) != 1 || !strings.Contains(left[0], "in use") {
		t.Errorf("remove while a service uses the secret = %v, want it reported in use", left)
	}
	if err := api.ServiceRemove(ctx, name); err != nil {
		t.Fatal(err)
	}
	if left := c.remove(api); len(left) != 0 {
		t.Errorf("remove = %v, want nothing left", left)
	}
	if list := listSecrets(); len(list) != 0 {
		t.Errorf("secrets of %s after remove: %d", instance, len(list))
	}
	if _, err := os.Stat(c.path); !os.IsNotExist(err) {
		t.Errorf("credential file after remove: %v, want gone", err)
	}
	var nilCred *runCredential
	if nilCred.header() != nil || nilCred.remove(api) != nil {
		t.Error("a nil credential: want no header, nothing to remove")
	}
}

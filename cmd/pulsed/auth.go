package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/errdefs"
	"go.yaml.in/yaml/v3"

	"github.com/pulsefaas/pulse/contract"
)

// readOrCreateReplicaAuth returns the replica credential kept in path,
// creating it when missing: 32 random bytes, hex, mode 0640, group netdata
// when that group exists (the collector, run by Netdata, presents it). A
// file readable by others is refused: anyone holding it reaches replicas
// without the gateway.
func readOrCreateReplicaAuth(path string) (string, error) {
	v, err := readSecretFile(path, 0o007, "chmod 640")
	if err == nil || !errors.Is(err, os.ErrNotExist) {
		return v, err
	}
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return "", fmt.Errorf("replica_auth_file: random: %w", err)
	}
	v = hex.EncodeToString(raw)
	gid := -1
	if g, err := user.LookupGroup("netdata"); err == nil {
		if n, err := strconv.Atoi(g.Gid); err == nil {
			gid = n
		}
	}
	if err := writeFileAtomic(path, []byte(v+"\n"), 0o640, gid); err != nil {
		return "", fmt.Errorf("replica_auth_file: create: %w", err)
	}
	return v, nil
}

// readAPIToken reads the management token: a missing or empty file is
// ("", nil), the endpoints then answer 503; a file readable by group or
// others is refused.
func readAPIToken(path string) (string, error) {
	v, err := readSecretFile(path, 0o077, "chmod 600")
	if errors.Is(err, os.ErrNotExist) || errors.Is(err, errEmpty) {
		return "", nil
	}
	return v, err
}

var errEmpty = errors.New("empty")

// readSecretFile reads a one-line secret, refusing a file whose mode has
// any of the forbidden bits (fix: what to run).
func readSecretFile(path string, forbidden os.FileMode, fix string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("read %s: %w", path, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return "", fmt.Errorf("stat %s: %w", path, err)
	}
	if !st.Mode().IsRegular() {
		return "", fmt.Errorf("%s is not a regular file", path)
	}
	if perm := st.Mode().Perm(); perm&forbidden != 0 {
		return "", fmt.Errorf("%s has mode %04o: it must not be readable by %s; run `%s %s`",
			path, perm, whoReads(perm&forbidden), fix, path)
	}
	b := make([]byte, 4097)
	n, _ := f.Read(b)
	if n > 4096 {
		return "", fmt.Errorf("%s is over 4096 bytes: want one line", path)
	}
	v := strings.TrimSpace(string(b[:n]))
	if v == "" {
		return "", fmt.Errorf("%s is empty: %w", path, errEmpty)
	}
	if strings.ContainsAny(v, "\r\n") {
		return "", fmt.Errorf("%s holds several lines: want one", path)
	}
	return v, nil
}

func whoReads(bits os.FileMode) string {
	switch {
	case bits&0o070 != 0 && bits&0o007 != 0:
		return "group or others"
	case bits&0o070 != 0:
		return "its group"
	}
	return "others"
}

// writeFileAtomic writes b to path through a temporary file in the same
// directory (fsynced, then renamed), with mode perm and, when gid >= 0,
// that group.
func writeFileAtomic(path string, b []byte, perm os.FileMode, gid int) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp) // after the rename, nothing
	if err := f.Chmod(perm); err != nil {
		f.Close()
		return err
	}
	if gid >= 0 {
		if err := f.Chown(-1, gid); err != nil {
			f.Close()
			return err
		}
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}

// secretAPI is what pulsed needs of Docker's secrets.
type secretAPI interface {
	SecretList(ctx context.Context, options swarm.SecretListOptions) ([]swarm.Secret, error)
	SecretCreate(ctx context.Context, spec swarm.SecretSpec) (swarm.SecretCreateResponse, error)
	SecretRemove(ctx context.Context, id string) error
}

// ensureReplicaAuthSecret makes sure the Docker secret holding credential
// for instance exists (contract.ReplicaAuthSecretName), creating it with
// the instance and role labels. It returns the secret's name.
func ensureReplicaAuthSecret(ctx context.Context, api secretAPI, instance, credential string) (string, error) {
	name := contract.ReplicaAuthSecretName(instance, credential)
	list, err := api.SecretList(ctx, swarm.SecretListOptions{Filters: filters.NewArgs(filters.Arg("name", name))})
	if err != nil {
		return "", fmt.Errorf("replica auth secret %s: list: %w", name, err)
	}
	for _, s := range list {
		if s.Spec.Name != name {
			continue // the filter matches prefixes
		}
		if s.Spec.Labels[contract.LabelInstance] != instance || s.Spec.Labels[contract.LabelRole] != contract.RoleReplicaAuth {
			return "", fmt.Errorf("replica auth secret %s exists without the labels %s=%s, %s=%s: it was not made by pulsed; remove it (docker secret rm %s)",
				name, contract.LabelInstance, instance, contract.LabelRole, contract.RoleReplicaAuth, name)
		}
		return name, nil
	}
	_, err = api.SecretCreate(ctx, swarm.SecretSpec{
		Annotations: swarm.Annotations{Name: name, Labels: map[string]string{
			contract.LabelInstance: instance, contract.LabelRole: contract.RoleReplicaAuth}},
		Data: []byte(credential),
	})
	if err != nil && !errdefs.IsConflict(err) {
		return "", fmt.Errorf("replica auth secret %s: create: %w", name, err)
	}
	return name, nil
}

// pruneReplicaAuthSecrets removes instance's replica credential secrets
// other than keep (made for a credential since replaced) that no service
// uses any more: Docker refuses to remove one in use, and those stay until
// their functions are deployed again. It returns the names removed.
func pruneReplicaAuthSecrets(ctx context.Context, api secretAPI, instance, keep string) ([]string, error) {
	list, err := api.SecretList(ctx, swarm.SecretListOptions{Filters: filters.NewArgs(
		filters.Arg("label", contract.LabelInstance+"="+instance), filters.Arg("label", contract.LabelRole+"="+contract.RoleReplicaAuth))})
	if err != nil {
		return nil, fmt.Errorf("replica auth secrets: list: %w", err)
	}
	var removed []string
	for _, s := range list {
		if s.Spec.Name == keep || s.Spec.Labels[contract.LabelInstance] != instance || s.Spec.Labels[contract.LabelRole] != contract.RoleReplicaAuth {
			continue
		}
		if err := api.SecretRemove(ctx, s.ID); err == nil {
			removed = append(removed, s.Spec.Name)
		}
	}
	return removed, nil
}

// loadLegacyKeys reads the deprecated keys_file: a YAML map of function
// name to plaintext key. It must not be readable by group or others.
func loadLegacyKeys(path string) (map[string]string, error) {
	if path == "" {
		return nil, nil
	}
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("keys_file: %w", err)
	}
	if perm := st.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("keys_file %s has mode %04o: it holds plaintext keys and must not be readable by %s; run `chmod 600 %s` (better: import them with `pulse key add` and remove keys_file)",
			path, perm, whoReads(perm&0o077), path)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("keys_file: %w", err)
	}
	var m map[string]string
	if err := yaml.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("keys_file %s: want a YAML map of function name to key: %w", path, err)
	}
	for fn, k := range m {
		if msg := functionNameProblem(fn); msg != "" {
			return nil, fmt.Errorf("keys_file %s: function %q: %s", path, fn, msg)
		}
		if k == "" {
			return nil, fmt.Errorf("keys_file %s: function %s: empty key", path, fn)
		}
	}
	return m, nil
}

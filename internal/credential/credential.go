// Package credential keeps Pulse's secrets on disk and in Docker: the
// one-line secret files (replica credential, management token) with their
// permission checks, atomic writes, and the Docker secret that hands the
// replica credential to replicas (contract/auth.go). pulsed uses it; so do
// the end-to-end tests and the benchmarks, which give their own instances a
// credential the same way.
package credential

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

	"github.com/pulsefaas/pulse/contract"
)

// ReadOrCreateReplicaAuth returns the replica credential kept in path,
// creating it when missing: 32 random bytes, hex, mode 0640, group netdata
// when that group exists (the collector, run by Netdata, presents it). A
// file readable by others is refused: anyone holding it reaches replicas
// without the gateway.
func ReadOrCreateReplicaAuth(path string) (string, error) {
	v, err := ReadFile(path, 0o007, "chmod 640")
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
	if err := WriteFileAtomic(path, []byte(v+"\n"), 0o640, gid); err != nil {
		return "", fmt.Errorf("replica_auth_file: create: %w", err)
	}
	return v, nil
}

// ReadAPIToken reads the management token: a missing or empty file is
// ("", nil), the endpoints then answer 503; a file readable by group or
// others is refused.
func ReadAPIToken(path string) (string, error) {
	v, err := ReadFile(path, 0o077, "chmod 600")
	if errors.Is(err, os.ErrNotExist) || errors.Is(err, ErrEmpty) {
		return "", nil
	}
	return v, err
}

var ErrEmpty = errors.New("empty")

// ReadFile reads a one-line secret, refusing a file whose mode has
// any of the forbidden bits (fix: what to run).
func ReadFile(path string, forbidden os.FileMode, fix string) (string, error) {
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
			path, perm, WhoReads(perm&forbidden), fix, path)
	}
	b := make([]byte, 4097)
	n, _ := f.Read(b)
	if n > 4096 {
		return "", fmt.Errorf("%s is over 4096 bytes: want one line", path)
	}
	v := strings.TrimSpace(string(b[:n]))
	if v == "" {
		return "", fmt.Errorf("%s is empty: %w", path, ErrEmpty)
	}
	if strings.ContainsAny(v, "\r\n") {
		return "", fmt.Errorf("%s holds several lines: want one", path)
	}
	return v, nil
}

func WhoReads(bits os.FileMode) string {
	switch {
	case bits&0o070 != 0 && bits&0o007 != 0:
		return "group or others"
	case bits&0o070 != 0:
		return "its group"
	}
	return "others"
}

// WriteFileAtomic writes b to path through a temporary file in the same
// directory (fsynced, then renamed), with mode perm and, when gid >= 0,
// that group.
func WriteFileAtomic(path string, b []byte, perm os.FileMode, gid int) error {
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

// SecretAPI is what pulsed needs of Docker's secrets.
type SecretAPI interface {
	SecretList(ctx context.Context, options swarm.SecretListOptions) ([]swarm.Secret, error)
	SecretCreate(ctx context.Context, spec swarm.SecretSpec) (swarm.SecretCreateResponse, error)
	SecretRemove(ctx context.Context, id string) error
}

// EnsureReplicaAuthSecret makes sure the Docker secret holding credential
// for instance exists (contract.ReplicaAuthSecretName), creating it with
// the instance and role labels. It returns the secret's name.
func EnsureReplicaAuthSecret(ctx context.Context, api SecretAPI, instance, credential string) (string, error) {
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

// PruneReplicaAuthSecrets removes instance's replica credential secrets
// other than keep (made for a credential since replaced) that no service
// uses any more: Docker refuses to remove one in use, and those stay until
// their functions are deployed again. It returns the names removed.
func PruneReplicaAuthSecrets(ctx context.Context, api SecretAPI, instance, keep string) ([]string, error) {
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

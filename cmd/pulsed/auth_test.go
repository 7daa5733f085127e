package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/client"

	"github.com/pulsefaas/pulse/contract"
	"github.com/pulsefaas/pulse/gateway"
	"github.com/pulsefaas/pulse/internal/credential"
)

// TestReplicaAuthFile: created when missing (64 hex digits, 0640, group
// netdata when it exists), read back the same, refused when others can
// read it, when empty or not a file.
func TestReplicaAuthFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "sub", "replica-auth")
	v, err := credential.ReadOrCreateReplicaAuth(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(v) != 64 || strings.Trim(v, "0123456789abcdef") != "" {
		t.Errorf("credential %q: want 64 lowercase hex digits", v)
	}
	if err := gateway.CheckReplicaAuth(v); err != nil {
		t.Errorf("the gateway refuses the credential: %v", err)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o640 {
		t.Errorf("mode %v, want 0640", st.Mode().Perm())
	}
	if g, err := user.LookupGroup("netdata"); err == nil {
		gid, _ := strconv.Atoi(g.Gid)
		if got := int(st.Sys().(*syscall.Stat_t).Gid); got != gid {
			t.Errorf("group %d, want netdata's %d", got, gid)
		}
	}
	again, err := credential.ReadOrCreateReplicaAuth(path)
	if err != nil || again != v {
		t.Errorf("read back %q, %v; want the same credential", again, err)
	}
	other, _ := credential.ReadOrCreateReplicaAuth(filepath.Join(dir, "other"))
	if other == v {
		t.Error("two files, one credential: not random")
	}

	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := credential.ReadOrCreateReplicaAuth(path); err == nil || !strings.Contains(err.Error(), "has mode 0644: it must not be readable by others; run `chmod 640 "+path+"`") {
		t.Errorf("others can read: %v", err)
	}
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := credential.ReadOrCreateReplicaAuth(empty); err == nil || !strings.Contains(err.Error(), "is empty") {
		t.Errorf("empty: %v", err)
	}
	if _, err := credential.ReadOrCreateReplicaAuth(dir); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("a directory: %v", err)
	}
	two := filepath.Join(dir, "two")
	if err := os.WriteFile(two, []byte("aaaaaaaaaaaaaaaa\nbbbbbbbbbbbbbbbb\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := credential.ReadOrCreateReplicaAuth(two); err == nil || !strings.Contains(err.Error(), "several lines") {
		t.Errorf("two lines: %v", err)
	}
}

// TestAPITokenFile: missing or empty is "no token" (503s), group- or
// other-readable is refused.
func TestAPITokenFile(t *testing.T) {
	dir := t.TempDir()
	if tok, err := credential.ReadAPIToken(filepath.Join(dir, "absent")); tok != "" || err != nil {
		t.Errorf("missing: %q, %v; want no token, no error", tok, err)
	}
	p := filepath.Join(dir, "api-token")
	if err := os.WriteFile(p, []byte(""), 0o600); err != nil {
		t.Fatal(err)
	}
	if tok, err := credential.ReadAPIToken(p); tok != "" || err != nil {
		t.Errorf("empty: %q, %v", tok, err)
	}
	if err := os.WriteFile(p, []byte(" s3cret \n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if tok, err := credential.ReadAPIToken(p); tok != "s3cret" || err != nil {
		t.Errorf("good: %q, %v", tok, err)
	}
	for mode, who := range map[os.FileMode]string{0o640: "its group", 0o604: "others", 0o644: "group or others"} {
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		if _, err := credential.ReadAPIToken(p); err == nil || !strings.Contains(err.Error(), "must not be readable by "+who+"; run `chmod 600") {
			t.Errorf("mode %04o: %v", mode, err)
		}
	}
}

// TestReplicaAuthSecret (real engine): pulsed creates the secret once,
// labelled, finds it again, and refuses one of that name it did not make.
func TestReplicaAuthSecret(t *testing.T) {
	cli, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if info, err := cli.Info(ctx); err != nil || info.Swarm.LocalNodeState != swarm.LocalNodeStateActive {
		if os.Getenv("PULSE_TEST_REQUIRE_ENGINE") != "" {
			t.Fatalf("needs Docker in swarm mode: %v", err)
		}
		t.Skipf("needs Docker in swarm mode: %v", err)
	}
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	instance := "t" + hex.EncodeToString(b)
	cleanup := func() {
		list, _ := cli.SecretList(context.Background(), swarm.SecretListOptions{Filters: filters.NewArgs(filters.Arg("label", contract.LabelInstance+"="+instance))})
		for _, s := range list {
			_ = cli.SecretRemove(context.Background(), s.ID)
		}
	}
	t.Cleanup(cleanup)
	cred := strings.Repeat("ab", 32)
	name, err := credential.EnsureReplicaAuthSecret(ctx, cli, instance, cred)
	if err != nil {
		t.Fatal(err)
	}
	if name != contract.ReplicaAuthSecretName(instance, cred) {
		t.Errorf("name %s", name)
	}
	if again, err := credential.EnsureReplicaAuthSecret(ctx, cli, instance, cred); err != nil || again != name {
		t.Errorf("second call: %s, %v", again, err)
	}
	list, err := cli.SecretList(ctx, swarm.SecretListOptions{Filters: filters.NewArgs(filters.Arg("label", contract.LabelInstance+"="+instance))})
	if err != nil || len(list) != 1 || list[0].Spec.Name != name || list[0].Spec.Labels[contract.LabelRole] != contract.RoleReplicaAuth {
		t.Fatalf("secrets of the instance: %+v, %v; want one, %s, role %s", list, err, name, contract.RoleReplicaAuth)
	}
	// A new credential is a new secret; the old one goes once unused.
	cred2 := strings.Repeat("cd", 32)
	name2, err := credential.EnsureReplicaAuthSecret(ctx, cli, instance, cred2)
	if err != nil || name2 == name {
		t.Errorf("new credential: %s, %v", name2, err)
	}
	other := "t" + hex.EncodeToString(b) + "x" // another instance's: untouched
	otherName, err := credential.EnsureReplicaAuthSecret(ctx, cli, other, cred)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cli.SecretRemove(context.Background(), otherName) })
	if removed, err := credential.PruneReplicaAuthSecrets(ctx, cli, instance, name2); err != nil || len(removed) != 1 || removed[0] != name {
		t.Errorf("pruned %v, %v; want [%s]", removed, err, name)
	}
	if _, _, err := cli.SecretInspectWithRaw(ctx, otherName); err != nil {
		t.Errorf("another instance's secret: %v", err)
	}
	if _, _, err := cli.SecretInspectWithRaw(ctx, name2); err != nil {
		t.Errorf("the current secret: %v", err)
	}
	// Someone else's secret of that name.
	cred3 := strings.Repeat("ef", 32)
	foreign := contract.ReplicaAuthSecretName(instance, cred3)
	if _, err := cli.SecretCreate(ctx, swarm.SecretSpec{Annotations: swarm.Annotations{Name: foreign,
		Labels: map[string]string{contract.LabelInstance: instance}}, Data: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	if _, err := credential.EnsureReplicaAuthSecret(ctx, cli, instance, cred3); err == nil || !strings.Contains(err.Error(), "was not made by pulsed") {
		t.Errorf("foreign secret: %v", err)
	}
}

package ansible_test

import (
	"context"
	"os"
	"os/exec"
	"testing"
	"time"
)

// need finds a tool the test runs, skipping without it (failing in CI,
// where .ci/run installs it).
func need(t *testing.T, tool, pkg string) {
	t.Helper()
	if _, err := exec.LookPath(tool); err != nil {
		if os.Getenv("PULSE_TEST_REQUIRE_ENGINE") != "" {
			t.Fatalf("%s missing: apt-get install %s", tool, pkg)
		}
		t.Skipf("%s missing (apt-get install %s)", tool, pkg)
	}
}

// TestLint: the playbook passes ansible-lint's production profile, with only
// the skips .ansible-lint lists (each with its reason), and both inventories
// pass ansible-playbook's syntax check.
func TestLint(t *testing.T) {
	need(t, "ansible-lint", "ansible-lint")
	need(t, "ansible-playbook", "ansible")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	for _, args := range [][]string{
		{"ansible-lint", "--profile", "production", "--nocolor"},
		{"ansible-playbook", "--syntax-check", "-i", "inventory/local.yml", "site.yml"},
		{"ansible-playbook", "--syntax-check", "-i", "inventory/example.yml", "site.yml"},
	} {
		cmd := exec.CommandContext(ctx, args[0], args[1:]...)
		cmd.Env = append(os.Environ(), "ANSIBLE_NOCOLOR=1")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("%v: %v\n%s", args, err, out)
		}
	}
}

package doctor

import (
	"bytes"
	"context"
	"os"
	"testing"
	"time"
)

// TestDefaultProbes runs every check against this host: each must answer,
// and the Docker check must be OK whenever the engine answers a ping of
// its own.
func TestDefaultProbes(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p := DefaultProbes()
	defer p.Close()

	results := Run(ctx, p)
	var out bytes.Buffer
	if err := Format(&out, results); err != nil {
		t.Fatal(err)
	}
	t.Logf("pulse doctor on this host:\n%s", out.String())

	if len(results) != len(checks) {
		t.Fatalf("got %d results, want %d", len(results), len(checks))
	}
	byName := map[string]Result{}
	for i, r := range results {
		if r.Check != checks[i].name {
			t.Errorf("result %d is %q, want %q", i, r.Check, checks[i].name)
		}
		switch r.Status {
		case OK, WARN, FAIL:
		default:
			t.Errorf("%s: status %q", r.Check, r.Status)
		}
		if r.Detail == "" {
			t.Errorf("%s: empty detail", r.Check)
		}
		byName[r.Check] = r
	}

	pingCtx, cancelPing := context.WithTimeout(ctx, 5*time.Second)
	defer cancelPing()
	if _, err := newDockerClient().Ping(pingCtx); err != nil {
		if os.Getenv("PULSE_TEST_REQUIRE_ENGINE") != "" {
			t.Fatalf("PULSE_TEST_REQUIRE_ENGINE is set and the engine does not answer: %v", err)
		}
		t.Logf("no engine (%v): the docker check is %s", err, byName[CheckDocker].Status)
		return
	}
	if r := byName[CheckDocker]; r.Status != OK {
		t.Errorf("the engine answers a ping, but the docker check says %+v", r)
	}
}

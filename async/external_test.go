package async

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/pulsefaas/pulse/contract"
	"github.com/pulsefaas/pulse/internal/testport"
)

// freeAddr returns a loopback address nobody listens on now.
func freeAddr(t *testing.T) string {
	t.Helper()
	return testport.Addr(t)
}

// natsCluster runs n real nats-server processes (built from the module
// pulsed embeds) clustered over loopback, JetStream on, each with its own
// store. It returns their client URLs and a kill for each.
func natsCluster(t *testing.T, n int) (urls []string, kill []func()) {
	t.Helper()
	dir := t.TempDir()
	bin := filepath.Join(dir, "nats-server")
	build := exec.Command("go", "build", "-o", bin, "github.com/nats-io/nats-server/v2")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build nats-server: %v\n%s", err, out)
	}
	clients, routes := make([]string, n), make([]string, n)
	for i := range n {
		clients[i], routes[i] = freeAddr(t), freeAddr(t)
	}
	var all []string
	for _, r := range routes {
		all = append(all, "nats-route://"+r)
	}
	for i := range n {
		host, port, _ := net.SplitHostPort(clients[i])
		cmd := exec.Command(bin, "-a", host, "-p", port, "-js", "-sd", filepath.Join(dir, fmt.Sprintf("s%d", i)),
			"--name", fmt.Sprintf("n%d", i), "--cluster_name", "pulse-test", "--cluster", "nats://"+routes[i],
			"--routes", strings.Join(all, ","))
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		log, _ := os.Create(filepath.Join(dir, fmt.Sprintf("s%d.log", i)))
		cmd.Stdout, cmd.Stderr = log, log
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		k := func() {
			_ = cmd.Process.Kill()
			<-done
		}
		t.Cleanup(k)
		kill = append(kill, k)
		urls = append(urls, "nats://"+clients[i])
	}
	return urls, kill
}

// Against an external NATS cluster of three real servers, with the
// streams replicated three times, requests are stored, dispatched and kept
// through the loss of one server.
func TestQueueOnExternalCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs nats-server")
	}
	urls, kill := natsCluster(t, 3)
	var calls atomic.Int32
	fnSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { calls.Add(1) }))
	defer fnSrv.Close()
	fns := staticFunctions{"f": {Name: "f", Policy: contract.DefaultAsyncPolicy, MaxBody: 1 << 20, Timeout: 5 * time.Second}}
	var q *Queue
	deadline := time.Now().Add(60 * time.Second)
	for {
		// The cluster elects its JetStream leader first.
		cfg := DefaultConfig()
		cfg.URL, cfg.Replicas = strings.Join(urls, ","), 3
		cfg.DispatchURL, cfg.DispatchToken, cfg.ReplicaAuth = fnSrv.URL, "dispatch-token-0123456789", testCred
		cfg.Backoff, cfg.AckWait = 50*time.Millisecond, 2*time.Second
		// A stock server takes 1 MiB messages: the default 10 MiB body is
		// refused with what to do, a 512 KiB one fits.
		_, err := Open(context.Background(), cfg, fns, testLog())
		if err == nil || !strings.Contains(err.Error(), "takes messages of at most 1048576 bytes") {
			if time.Now().After(deadline) {
				t.Fatalf("open with a 10 MiB body limit: %v; want refused (max_payload)", err)
			}
			time.Sleep(500 * time.Millisecond)
			continue
		}
		cfg.MaxPayload = 512 << 10
		q, err = Open(context.Background(), cfg, fns, testLog())
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("open on the cluster: %v", err)
		}
		time.Sleep(500 * time.Millisecond)
	}
	defer q.Close()
	if q.ns != nil {
		t.Fatal("an embedded server started although a URL was given")
	}
	info, err := q.reqs.Info(context.Background())
	if err != nil || info.Config.Replicas != 3 || info.Cluster == nil || len(info.Cluster.Replicas) != 2 {
		t.Fatalf("stream %s: %+v, %v; want 3 replicas", StreamRequests, info, err)
	}
	var ids []string
	for range 10 {
		w := enqueue(t, q, "f", "x", nil)
		if w.Code != http.StatusAccepted {
			t.Fatalf("enqueue: %d %s", w.Code, w.Body)
		}
		ids = append(ids, w.Header().Get(contract.HeaderAsyncRequestID))
	}
	// One server goes; the stored requests stay and are dispatched.
	kill[2]()
	stop := runQueue(t, q)
	defer stop()
	// The cluster elects new leaders for the groups the lost server led
	// (seconds; longer on a loaded machine).
	for _, id := range ids {
		waitStateFor(t, q, id, 2*time.Minute, func(s contract.AsyncRequest) bool { return s.State == contract.AsyncDone })
	}
	if n := calls.Load(); n < 10 {
		t.Errorf("%d dispatches; want 10", n)
	}
}

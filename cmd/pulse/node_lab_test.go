package main

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/swarm"

	"github.com/pulsefaas/pulse/contract"
	"github.com/pulsefaas/pulse/function"
	"github.com/pulsefaas/pulse/internal/labtest"
	"github.com/pulsefaas/pulse/provision"
)

// TestNodeLab is the success path of `pulse node` and of images to every
// node, on the lab (3 real nodes, one test function so the lab comes up
// once): a swarm made on node1 through its engine over SSH; the CLI with
// docker_host ssh://root@node1 refuses node2's unknown host key with the
// fingerprint and the flag, adds it with --accept-new-host-key, adds node3,
// adds both again (nothing to do); `node ls` lists 3 Ready nodes with their
// SSH labels; an assembled image goes to one node, then to all 3 (checked
// by image ID on each node from inside it), and a second time is present
// everywhere; two images on one base layer go to all 3, the first in full,
// the second only its own layer; `pulse push` and `pulse deploy` of a real
// function put its image on all 3 and its replica runs; the function
// changed and deployed again moves only its own layer to the workers (the
// watchdog layer is there) and its new replica runs; `node rm` refuses the
// manager it talks to and takes node3 out, leaving 2; node3 added back
// without the function's image joins drained, gets only the image's own
// layer (it kept the watchdog's), and only then becomes active.
func TestNodeLab(t *testing.T) {
	lab := labtest.Up(t, 3)
	t.Setenv("SSH_AUTH_SOCK", "") // the lab's key only
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	n1, n2, n3 := lab.Nodes[0], lab.Nodes[1], lab.Nodes[2]

	// The swarm, on node1, through its engine over SSH.
	sshCfg := provision.Config{IdentityFiles: []string{lab.KeyFile}, KnownHosts: lab.KnownHosts}
	c, err := provision.Dial(ctx, sshCfg, provision.Target{User: "root", Host: n1.Addr, Port: 22})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	eng, err := c.Engine(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	spec := swarm.Spec{Annotations: swarm.Annotations{Name: "default"}, Dispatcher: swarm.DispatcherConfig{HeartbeatPeriod: 2 * time.Second}}
	if _, err := eng.SwarmInit(ctx, swarm.InitRequest{ListenAddr: "0.0.0.0:2377", AdvertiseAddr: n1.Addr, Spec: spec}); err != nil {
		t.Fatal(err)
	}

	// known_hosts without node2, to see the first contact refused.
	dir := t.TempDir()
	kh := filepath.Join(dir, "known_hosts")
	all, err := os.ReadFile(lab.KnownHosts)
	if err != nil {
		t.Fatal(err)
	}
	var kept []string
	for _, l := range strings.Split(strings.TrimSpace(string(all)), "\n") {
		if !strings.HasPrefix(l, n2.Addr+" ") {
			kept = append(kept, l)
		}
	}
	if err := os.WriteFile(kh, []byte(strings.Join(kept, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{
		"PULSE_DOCKER_HOST":        "ssh://root@" + n1.Addr,
		"PULSE_SSH_KNOWN_HOSTS":    kh,
		"PULSE_SSH_IDENTITY_FILES": lab.KeyFile,
		"SSH_AUTH_SOCK":            "",
		"DOCKER_HOST":              "",
		// The gateway as the nodes reach it (deploy refuses docker0 on a
		// swarm of several nodes).
		"PULSE_REPLICA_GATEWAY": "http://" + lab.Host + ":8080",
	}
	cli := func(args ...string) (string, string) {
		t.Helper()
		start := time.Now()
		code, stdout, stderr := pulse(t, dir, env, args...)
		t.Logf("pulse %s: exit %d in %v\n%s%s", strings.Join(args, " "), code, time.Since(start).Round(time.Millisecond), stdout, stderr)
		if code != exitOK {
			t.Fatalf("pulse %s: exit %d", strings.Join(args, " "), code)
		}
		return stdout, stderr
	}

	// docker_host's own key unknown: the fix names the command with the flag.
	empty := maps.Clone(env)
	empty["PULSE_SSH_KNOWN_HOSTS"] = filepath.Join(dir, "empty_known_hosts")
	code, _, stderr := pulse(t, dir, empty, "node", "ls")
	if code != exitFailure || !strings.Contains(stderr, "unknown host key") || !strings.Contains(stderr, "`pulse node add root@"+n1.Addr+":22 --accept-new-host-key`") {
		t.Errorf("node ls with docker_host's key unknown: exit %d, stderr:\n%s", code, stderr)
	}
	code, _, stderr = pulse(t, dir, env, "node", "add", "root@"+n2.Addr)
	t.Logf("node add of a host not in known_hosts: exit %d\n%s", code, stderr)
	if code != exitFailure || !strings.Contains(stderr, "unknown host key") || !strings.Contains(stderr, "--accept-new-host-key") || !strings.Contains(stderr, "SHA256:") {
		t.Fatalf("node add of an unknown host: exit %d, stderr:\n%s\nwant exit 1 with the fingerprint and --accept-new-host-key", code, stderr)
	}
	out, _ := cli("node", "add", "root@"+n2.Addr, "--accept-new-host-key", "--label", "zone=a")
	if !strings.Contains(out, n2.Name+": joined as a worker") {
		t.Errorf("node add %s: stdout %q, want joined", n2.Name, out)
	}
	out, _ = cli("node", "add", "root@"+n3.Addr)
	if !strings.Contains(out, n3.Name+": joined as a worker") {
		t.Errorf("node add %s: stdout %q, want joined", n3.Name, out)
	}
	out, _ = cli("node", "add", "root@"+n2.Addr, "root@"+n3.Addr)
	for _, n := range []labtest.Node{n2, n3} {
		if !strings.Contains(out, n.Name+": already in this swarm as a worker") {
			t.Errorf("node add again: stdout %q, want %s already in the swarm", out, n.Name)
		}
	}

	// The manager pulse talks to, added too: only labelled.
	out, _ = cli("node", "add", "root@"+n1.Addr)
	if !strings.Contains(out, n1.Name+": already in this swarm as a manager") {
		t.Errorf("node add of the manager: stdout %q", out)
	}
	out, _ = cli("node", "ls", "--json")
	var nodes []provision.NodeInfo
	if err := json.Unmarshal([]byte(out), &nodes); err != nil {
		t.Fatal(err)
	}
	type row struct{ name, role, status, ssh string }
	var got []row
	for _, n := range nodes {
		got = append(got, row{n.Name, n.Role, n.Status, n.SSH})
	}
	want := []row{
		{n1.Name, "manager", "ready", "root@" + n1.Addr + ":22"},
		{n2.Name, "worker", "ready", "root@" + n2.Addr + ":22"},
		{n3.Name, "worker", "ready", "root@" + n3.Addr + ":22"},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("node ls:\n %v\nwant\n %v", got, want)
	}
	cli("node", "ls")
	// The labels as the swarm holds them (what deploy reads).
	sn, err := eng.NodeList(ctx, swarm.NodeListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range sn {
		if n.Description.Hostname == n2.Name {
			if l := n.Spec.Labels; l[contract.LabelNodeSSH] != "root@"+n2.Addr+":22" || l["zone"] != "a" {
				t.Errorf("%s labels %v", n2.Name, l)
			}
		}
	}

	// Images to every node. node1 (the manager pulse talks to) has no SSH
	// label: it is reached through docker_host's own client.
	a := &app{streams: streams{in: strings.NewReader(""), out: &testWriter{t}, err: &testWriter{t}}, env: func(k string) string {
		if v, ok := env[k]; ok {
			return v
		}
		return os.Getenv(k)
	}}
	a.cfg, err = loadConfig("", func(k string) string {
		if k == "HOME" || k == "XDG_CONFIG_HOME" {
			return dir
		}
		return a.env(k)
	})
	if err != nil {
		t.Fatal(err)
	}
	a.ctx = ctx
	mgr, err := a.engine()
	if err != nil {
		t.Fatal(err)
	}
	defer func() { mgr.Close(); a.sshc.Close() }()
	dist, count, err := a.distributor(ctx, "test")
	if _, ok := dist.(function.ClusterDistributor); err != nil || !ok || count != 3 {
		t.Fatalf("distributor for 3 nodes: %T, %d, %v; want a ClusterDistributor", dist, count, err)
	}
	assemble := func(size int) function.Image {
		payload := make([]byte, size)
		rand.Read(payload)
		img, err := function.Assemble(function.ImageSpec{
			Files:      []function.File{{Path: "/payload", Mode: 0o755, Content: payload}},
			Entrypoint: []string{"/payload"}, User: "65534:65534",
		})
		if err != nil {
			t.Fatal(err)
		}
		return img
	}
	const size = 16 << 20
	onNodes := func(img function.Image, nodes ...labtest.Node) {
		t.Helper()
		for _, n := range nodes {
			got, err := lab.Exec(ctx, n, "docker", "image", "inspect", "--format", "{{.Id}}", img.ID)
			if err != nil || strings.TrimSpace(got) != img.ID {
				t.Errorf("on %s: image %s = %q, %v", n.Name, img.ID, got, err)
			}
		}
	}
	outcomes := func(rs []function.NodeResult) map[string]string {
		m := map[string]string{}
		for _, r := range rs {
			m[r.Node] = r.Outcome
		}
		return m
	}
	cd := a.clusterDistributor("test")

	// One node (node2 only).
	one := assemble(size)
	cd1 := cd
	cd1.Nodes = onlyNode{cd.Nodes, n2.Name}
	start := time.Now()
	rs, err := cd1.EnsureAll(ctx, one)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("distribution of %d bytes to 1 node: %v", len(one.Archive), time.Since(start).Round(time.Millisecond))
	if fmt.Sprint(outcomes(rs)) != fmt.Sprint(map[string]string{n2.Name: "loaded"}) {
		t.Errorf("one node: %v", outcomes(rs))
	}
	onNodes(one, n2)

	// All three.
	img := assemble(size)
	start = time.Now()
	rs, err = cd.EnsureAll(ctx, img)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("distribution of %d bytes to 3 nodes: %v", len(img.Archive), time.Since(start).Round(time.Millisecond))
	loaded := map[string]string{n1.Name: "loaded", n2.Name: "loaded", n3.Name: "loaded"}
	if fmt.Sprint(outcomes(rs)) != fmt.Sprint(loaded) {
		t.Errorf("first distribution: %v, want %v", outcomes(rs), loaded)
	}
	onNodes(img, n1, n2, n3)
	start = time.Now()
	rs, err = cd.EnsureAll(ctx, img)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("second distribution (present everywhere): %v", time.Since(start).Round(time.Millisecond))
	present := map[string]string{n1.Name: "present", n2.Name: "present", n3.Name: "present"}
	if fmt.Sprint(outcomes(rs)) != fmt.Sprint(present) {
		t.Errorf("second distribution: %v, want %v", outcomes(rs), present)
	}

	// Two images on one base layer (a 6 MB stand-in for the watchdog): the
	// nodes lack it, so the first goes in full; the second, only its own
	// layer.
	watchdog := make([]byte, 6<<20)
	rand.Read(watchdog)
	layered := func() function.Image {
		fn := make([]byte, 64<<10)
		rand.Read(fn)
		img, err := function.Assemble(function.ImageSpec{
			BaseFiles:  []function.File{{Path: "/pulse-watchdog", Mode: 0o755, Content: watchdog}},
			Files:      []function.File{{Path: "/function", Mode: 0o755, Content: fn}},
			Entrypoint: []string{"/pulse-watchdog"}, User: "65534:65534",
		})
		if err != nil {
			t.Fatal(err)
		}
		return img
	}
	la, lb := layered(), layered()
	for _, step := range []struct {
		img  function.Image
		thin bool
	}{{la, false}, {lb, true}} {
		start = time.Now()
		rs, err = cd.EnsureAll(ctx, step.img)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("distribution of a two-layer image (%d bytes, thin %d) to 3 nodes: %v", len(step.img.Archive), len(step.img.Thin), time.Since(start).Round(time.Millisecond))
		for _, r := range rs {
			t.Logf("  %s: %s", r.Node, nodeOutcome(r.Outcome, r.LoadReport, r.Elapsed))
			want := int64(len(step.img.Archive))
			if step.thin {
				want = int64(len(step.img.Thin))
			}
			if r.Outcome != "loaded" || r.Thin != step.thin || r.Sent != want || r.Full != int64(len(step.img.Archive)) || r.Fallback != nil {
				t.Errorf("%s: %s %+v; want loaded, thin %v, %d bytes sent", r.Node, r.Outcome, r.LoadReport, step.thin, want)
			}
		}
		onNodes(step.img, n1, n2, n3)
	}
	if len(lb.Thin)*20 > len(lb.Archive) {
		t.Errorf("thin archive %d bytes of %d, want far fewer", len(lb.Thin), len(lb.Archive))
	}

	// pulse push and pulse deploy of a real function (bin: a static C
	// echo), on the 3 nodes.
	echo := filepath.Join(dir, "echo")
	src := filepath.Join(dir, "echo.c")
	if err := os.WriteFile(src, []byte("#include <unistd.h>\nint main(void){char b[4096];ssize_t n;while((n=read(0,b,sizeof b))>0)if(write(1,b,n)!=n)return 1;return 0;}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("gcc", "-static", "-O2", "-s", "-o", echo, src).CombinedOutput(); err != nil {
		t.Fatalf("gcc: %v\n%s", err, out)
	}
	env["PULSE_CACHE_DIR"] = t.TempDir()
	cli("new", "labecho", "--lang", "bin")
	fdir := filepath.Join(dir, "labecho")
	if b, err := os.ReadFile(echo); err != nil || os.WriteFile(filepath.Join(fdir, "fn"), b, 0o755) != nil {
		t.Fatal(err)
	}
	dirCLI := func(args ...string) (string, string) {
		t.Helper()
		start := time.Now()
		code, stdout, stderr := pulse(t, fdir, env, args...)
		t.Logf("pulse %s: exit %d in %v\n%s%s", strings.Join(args, " "), code, time.Since(start).Round(time.Millisecond), stdout, stderr)
		if code != exitOK {
			t.Fatalf("pulse %s: exit %d", strings.Join(args, " "), code)
		}
		return stdout, stderr
	}
	out, stderr = dirCLI("push")
	if !strings.Contains(out, "on 3 node(s)") || strings.Count(stderr, ": loaded (") != 2 || !strings.Contains(stderr, "image on "+n1.Name+": present") {
		t.Errorf("push: want loaded on the 2 workers, present on the manager (loaded there by the build)")
	}
	// The replica credential pulsed would have made (deploy needs it).
	if _, err := eng.SecretCreate(ctx, swarm.SecretSpec{
		Annotations: swarm.Annotations{Name: contract.ReplicaAuthSecretName(contract.DefaultInstance, "lab-credential"),
			Labels: map[string]string{contract.LabelInstance: contract.DefaultInstance, contract.LabelRole: contract.RoleReplicaAuth}},
		Data: []byte("lab-credential"),
	}); err != nil {
		t.Fatal(err)
	}
	out, stderr = dirCLI("deploy", "--no-wait")
	if !strings.Contains(out, "labecho: service created") || strings.Count(stderr, ": present (") != 3 {
		t.Errorf("deploy: want the service created, the image present on 3 nodes")
	}

	// The replica runs wherever Swarm put it: its image was there.
	waitRunning := func(image string) {
		t.Helper()
		deadline := time.Now().Add(time.Minute)
		for {
			tasks, err := eng.TaskList(ctx, swarm.TaskListOptions{Filters: filters.NewArgs(filters.Arg("service", "labecho"))})
			if err != nil {
				t.Fatal(err)
			}
			var states []string
			running := ""
			for _, tk := range tasks {
				states = append(states, fmt.Sprintf("%s %s %s", tk.NodeID, tk.Status.State, tk.Status.Err))
				if tk.Status.State == swarm.TaskStateRunning && tk.Spec.ContainerSpec != nil && tk.Spec.ContainerSpec.Image == image {
					running = tk.NodeID
				}
			}
			if running != "" {
				t.Logf("labecho's replica of %s runs on node %s", image, running)
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("labecho: no running replica of %s within a minute: %v", image, states)
			}
			time.Sleep(250 * time.Millisecond)
		}
	}
	serviceImage := func() string {
		t.Helper()
		svc, _, err := eng.ServiceInspectWithRaw(ctx, "labecho", swarm.ServiceInspectOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return svc.Spec.TaskTemplate.ContainerSpec.Image
	}
	firstID := serviceImage()
	waitRunning(firstID)

	// The function changed (bytes after the end of the executable, which
	// the kernel does not load): deploy sends the workers its own layer
	// only, the watchdog's being there from the first version.
	if b, err := os.ReadFile(echo); err != nil || os.WriteFile(filepath.Join(fdir, "fn"), append(b, "labecho v2"...), 0o755) != nil {
		t.Fatal(err)
	}
	_, stderr = dirCLI("deploy", "--no-wait")
	echoID := serviceImage()
	if echoID == firstID {
		t.Fatalf("the changed function kept image %s", echoID)
	}
	thinLine := regexp.MustCompile(`image on (\S+): loaded \(([0-9.]+ [KM]?B) → ([0-9.]+ [KM]?B) thin, `)
	thinNodes := map[string]bool{}
	for _, m := range thinLine.FindAllStringSubmatch(stderr, -1) {
		full, sent := parseSize(t, m[2]), parseSize(t, m[3])
		t.Logf("%s: %s of %s sent (%.1f%%)", m[1], m[3], m[2], 100*sent/full)
		if sent*5 > full {
			t.Errorf("%s: %s sent of %s: want the function's layer only", m[1], m[3], m[2])
		}
		thinNodes[m[1]] = true
	}
	if !thinNodes[n2.Name] || !thinNodes[n3.Name] || !strings.Contains(stderr, "image on "+n1.Name+": present") {
		t.Errorf("deploy of the changed function: thin loads on %v, want %s and %s; present on %s (loaded there by the build)", thinNodes, n2.Name, n3.Name, n1.Name)
	}
	onNodes(function.Image{ID: echoID}, n1, n2, n3)
	waitRunning(echoID)

	// Removal.
	code, _, stderr = pulse(t, dir, env, "node", "rm", n1.Name)
	if code != exitFailure || !strings.Contains(stderr, "is the manager pulse talks to (docker_host)") {
		t.Errorf("node rm of the manager: exit %d, stderr:\n%s", code, stderr)
	}
	out, _ = cli("node", "rm", n3.Addr)
	if !strings.Contains(out, n3.Name+": left the swarm and removed") {
		t.Errorf("node rm: stdout %q", out)
	}
	if st, err := lab.Exec(ctx, n3, "docker", "info", "--format", "{{.Swarm.LocalNodeState}}"); err != nil || strings.TrimSpace(st) != "inactive" {
		t.Errorf("%s after rm: swarm state %q, %v; want inactive", n3.Name, st, err)
	}
	out, _ = cli("node", "ls", "--json")
	nodes = nil
	if err := json.Unmarshal([]byte(out), &nodes); err != nil {
		t.Fatal(err)
	}
	if len(nodes) != 2 || nodes[0].Name != n1.Name || nodes[1].Name != n2.Name {
		t.Errorf("node ls after rm: %+v, want %s and %s", nodes, n1.Name, n2.Name)
	}

	// node3 back, without labecho's image (but with the first version's,
	// and so the watchdog layer): it joins drained, gets the image's own
	// layer from the manager, then becomes active.
	if _, err := lab.Exec(ctx, n3, "sh", "-c", "docker container prune -f && docker image rm -f "+echoID); err != nil {
		t.Fatal(err)
	}
	if _, err := lab.Exec(ctx, n3, "docker", "image", "inspect", echoID); err == nil {
		t.Fatalf("%s still has %s", n3.Name, echoID)
	}
	out, stderr = cli("node", "add", "root@"+n3.Addr)
	if !strings.Contains(out, n3.Name+": joined as a worker") || !strings.Contains(stderr, "drained until prepared") ||
		!regexp.MustCompile(`\(labecho\): copied \([0-9.]+ MB → [0-9.]+ KB thin, `).MatchString(stderr) || !strings.Contains(stderr, "prepared; active") {
		t.Errorf("node add of a node that lacks a deployed image: want it joined drained, the image's own layer copied, then active")
	}
	onNodes(function.Image{ID: echoID}, n3)
	out, _ = cli("node", "ls", "--json")
	nodes = nil
	if err := json.Unmarshal([]byte(out), &nodes); err != nil {
		t.Fatal(err)
	}
	if len(nodes) != 3 || nodes[2].Name != n3.Name || nodes[2].Status != "ready" || nodes[2].Availability != "active" {
		t.Errorf("node ls after adding %s back: %+v, want it ready and active", n3.Name, nodes)
	}
}

// parseSize reads a size as transferSize writes it.
func parseSize(t *testing.T, s string) float64 {
	t.Helper()
	num, unit, _ := strings.Cut(s, " ")
	v, err := strconv.ParseFloat(num, 64)
	if err != nil {
		t.Fatalf("size %q: %v", s, err)
	}
	return v * map[string]float64{"B": 1, "KB": 1e3, "MB": 1e6}[unit]
}

// onlyNode keeps one node of another NodeEngines' list, closing the rest.
type onlyNode struct {
	function.NodeEngines
	name string
}

func (o onlyNode) Engines(ctx context.Context) ([]function.NodeEngine, error) {
	all, err := o.NodeEngines.Engines(ctx)
	var keep []function.NodeEngine
	for _, e := range all {
		if e.Node == o.name {
			keep = append(keep, e)
		} else if e.Close != nil {
			e.Close()
		}
	}
	return keep, err
}

// testWriter logs what is written to it.
type testWriter struct{ t *testing.T }

func (w *testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

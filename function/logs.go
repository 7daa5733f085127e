package function

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/pkg/stdcopy"
)

// Logs writes the function's logs (all its tasks, stdout and stderr) to w,
// each line prefixed by its task (name.slot.id@node, as `docker service
// logs` does) and stamped with the engine's timestamp. since is a duration
// (10m) or a time (RFC 3339 or Unix seconds), empty for all; follow keeps
// streaming until ctx ends, which is then no error.
func (s *Swarm) Logs(ctx context.Context, name string, follow bool, since string, w io.Writer) error {
	fail := func(err error) error { return fmt.Errorf("logs %s: %w", name, err) }
	svc, err := s.inspectFunction(ctx, name)
	if err != nil {
		return fail(err)
	}
	p := &logPrefixer{s: s, ctx: ctx, name: name, serviceID: svc.ID, nodes: s.newNodeCache(), w: w, tasks: map[string]int{}}
	if err := p.refresh(); err != nil {
		return fail(err)
	}
	rc, err := s.api.ServiceLogs(ctx, svc.ID, container.LogsOptions{
		ShowStdout: true,
		ShowStderr: true,
		Timestamps: true,
		Details:    true, // the task and node of each line
		Follow:     follow,
		Since:      since,
	})
	if err != nil {
		return fail(fmt.Errorf("service logs: %w", err))
	}
	defer rc.Close()
	_, err = stdcopy.StdCopy(p, p, rc)
	if err != nil && !(follow && ctx.Err() != nil) {
		return fail(fmt.Errorf("read logs: %w", err))
	}
	return nil
}

// logPrefixer rewrites the engine's log lines, "<timestamp> <details>
// <line>", as "<task>@<node> | <timestamp> <line>". stdcopy writes one
// message per Write.
type logPrefixer struct {
	s         *Swarm
	ctx       context.Context
	name      string
	serviceID string
	nodes     *nodeCache
	w         io.Writer
	tasks     map[string]int // task ID → slot
	mu        sync.Mutex
}

func (p *logPrefixer) refresh() error {
	tasks, err := p.s.tasks(p.ctx, p.serviceID, false)
	if err != nil {
		return err
	}
	for _, t := range tasks {
		p.tasks[t.ID] = t.Slot
	}
	return nil
}

func (p *logPrefixer) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	ts, rest, _ := bytes.Cut(b, []byte(" "))
	details, line, ok := bytes.Cut(rest, []byte(" "))
	if !ok || !bytes.Contains(details, []byte("=")) { // no details
		details, line = nil, rest
	}
	var taskID, nodeID string
	for _, kv := range strings.Split(string(details), ",") {
		k, v, _ := strings.Cut(kv, "=")
		switch k {
		case "com.docker.swarm.task.id":
			taskID = v
		case "com.docker.swarm.node.id":
			nodeID = v
		}
	}
	prefix := p.prefix(taskID, nodeID)
	if !bytes.HasSuffix(line, []byte("\n")) {
		line = append(slices.Clip(line), '\n')
	}
	if _, err := fmt.Fprintf(p.w, "%s | %s %s", prefix, ts, line); err != nil {
		return 0, err
	}
	return len(b), nil
}

// prefix names a task as Docker does: function.slot.taskid@node.
func (p *logPrefixer) prefix(taskID, nodeID string) string {
	if taskID == "" {
		return p.name
	}
	slot, ok := p.tasks[taskID]
	if !ok { // a task started since: read the task list again
		if err := p.refresh(); err != nil {
			p.s.log.Debug("logs: refresh tasks", "err", err)
		}
		slot = p.tasks[taskID]
		p.tasks[taskID] = slot // not listed any more: do not ask again
	}
	short := taskID
	if len(short) > 12 {
		short = short[:12]
	}
	node := nodeID
	if n, err := p.nodes.node(p.ctx, nodeID); err == nil {
		node = n.hostname
	}
	return fmt.Sprintf("%s.%d.%s@%s", p.name, slot, short, node)
}

package gateway

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"
)

// haproxyOutput logs HAProxy's output lines and keeps the last few for
// error messages.
type haproxyOutput struct {
	log  *slog.Logger
	eof  chan struct{} // closed when the pipe is drained (nil: adopted, no pipe)
	mu   sync.Mutex
	tail []string
	n    int // lines so far
}

const outputTail = 16

func newHAProxyOutput(log *slog.Logger) *haproxyOutput {
	return &haproxyOutput{log: log, eof: make(chan struct{})}
}

func (o *haproxyOutput) consume(r io.ReadCloser) {
	defer close(o.eof)
	defer r.Close()
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 64<<10)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		level, msg, pid := parseHAProxyLine(line)
		o.log.Log(context.Background(), level, msg, "haproxy_pid", pid)
		o.mu.Lock()
		o.tail = append(o.tail, line)
		if len(o.tail) > outputTail {
			o.tail = o.tail[len(o.tail)-outputTail:]
		}
		o.n++
		o.mu.Unlock()
	}
}

// settle gives the reader a moment to catch up with what HAProxy has
// written: until the pipe is drained, or a line containing marker arrives
// after line number from, or within passes.
func (o *haproxyOutput) settle(from int, marker string, within time.Duration) {
	if o.eof == nil {
		return
	}
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		select {
		case <-o.eof:
			return
		default:
		}
		o.mu.Lock()
		n, tail := o.n, o.tail
		found := false
		if marker != "" {
			for i := max(0, len(tail)-(n-from)); i < len(tail); i++ {
				found = found || strings.Contains(tail[i], marker)
			}
		}
		o.mu.Unlock()
		if found {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (o *haproxyOutput) lines() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.n
}

// tailText is for error messages: the ALERT lines among the last ones
// HAProxy printed, or all of those if none is an alert.
func (o *haproxyOutput) tailText() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	var alerts []string
	for _, l := range o.tail {
		if strings.HasPrefix(l, "[ALERT]") {
			alerts = append(alerts, l)
		}
	}
	switch {
	case len(alerts) > 0:
		return strings.Join(alerts, " | ")
	case len(o.tail) > 0:
		return strings.Join(o.tail, " | ")
	case o.eof == nil:
		return "(output not captured: adopted master)"
	}
	return "(nothing)"
}

// parseHAProxyLine splits "[WARNING]  (1234) : text" into a log level, the
// text and the pid; other lines are logged at info as they are.
func parseHAProxyLine(line string) (slog.Level, string, int) {
	tag, rest, ok := strings.Cut(line, "]")
	if !ok || !strings.HasPrefix(tag, "[") {
		return slog.LevelInfo, line, 0
	}
	level := slog.LevelInfo
	switch tag[1:] {
	case "ALERT", "EMERG":
		level = slog.LevelError
	case "WARNING":
		level = slog.LevelWarn
	}
	rest = strings.TrimSpace(rest)
	pid := 0
	if strings.HasPrefix(rest, "(") {
		if p, after, ok := strings.Cut(rest[1:], ")"); ok {
			pid, _ = strconv.Atoi(p)
			rest = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(after), ":"))
		}
	}
	return level, rest, pid
}

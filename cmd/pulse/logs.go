package main

import (
	"bytes"
	"container/heap"
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/pulsefaas/pulse/function"
)

// tailLogs prints the n newest lines of name's logs (since, as --since),
// oldest first, and with follow then the lines that come after them.
//
// The engine's own tail counts per task and sends the tasks' lines in no
// global order, so the tail is taken here: read the logs once without
// following, keep the n newest lines by their timestamps, print them; then
// follow from just after the newest timestamp read (or from since when
// there was none).
func (a *app) tailLogs(ctx context.Context, sw *function.Swarm, name string, follow bool, since string, n int) error {
	tw := newTailWriter(n)
	if err := sw.Logs(ctx, name, false, since, tw); err != nil {
		return err
	}
	if err := tw.flush(a.out); err != nil {
		return err
	}
	if !follow {
		return nil
	}
	next := since
	if !tw.newest.IsZero() {
		t := tw.newest.Add(time.Nanosecond)
		next = fmt.Sprintf("%d.%09d", t.Unix(), t.Nanosecond())
	}
	return sw.Logs(ctx, name, true, next, a.out)
}

// tailWriter keeps the n newest lines written to it by their engine
// timestamp (the engine interleaves its tasks' logs in no time order), and
// the newest timestamp among all the lines. function.Swarm.Logs writes each
// line as "<task>@<node> | <RFC 3339 time> <line>"; a line without a
// readable time counts as older than any with one.
type tailWriter struct {
	n       int
	kept    tailHeap // the n newest so far; the oldest of them on top
	seq     int      // arrival order, to break ties
	partial []byte   // a line not yet ended by '\n'
	newest  time.Time
}

type tailLine struct {
	ts   time.Time
	seq  int
	text string
}

func (a tailLine) before(b tailLine) bool {
	if !a.ts.Equal(b.ts) {
		return a.ts.Before(b.ts)
	}
	return a.seq < b.seq
}

// tailHeap is a min-heap of lines by (time, arrival).
type tailHeap []tailLine

func (h tailHeap) Len() int           { return len(h) }
func (h tailHeap) Less(i, j int) bool { return h[i].before(h[j]) }
func (h tailHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *tailHeap) Push(x any)        { *h = append(*h, x.(tailLine)) }
func (h *tailHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

func newTailWriter(n int) *tailWriter { return &tailWriter{n: n} }

func (t *tailWriter) Write(b []byte) (int, error) {
	data := append(t.partial, b...)
	for {
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			break
		}
		t.add(string(data[:i+1]))
		data = data[i+1:]
	}
	// Bound a line that never ends: keep its start.
	t.partial = append(t.partial[:0], data[:min(len(data), 1<<20)]...)
	return len(b), nil
}

func (t *tailWriter) add(text string) {
	ts, ok := logTime(text)
	if ok && ts.After(t.newest) {
		t.newest = ts
	}
	l := tailLine{ts: ts, seq: t.seq, text: text}
	t.seq++
	switch {
	case t.n == 0:
	case len(t.kept) < t.n:
		heap.Push(&t.kept, l)
	case t.kept[0].before(l):
		t.kept[0] = l
		heap.Fix(&t.kept, 0)
	}
}

// logTime reads the engine's timestamp of a line Logs wrote.
func logTime(line string) (time.Time, bool) {
	_, rest, ok := strings.Cut(line, " | ")
	if !ok {
		return time.Time{}, false
	}
	ts, _, _ := strings.Cut(rest, " ")
	t, err := time.Parse(time.RFC3339Nano, strings.TrimSpace(ts))
	return t, err == nil
}

// flush writes the kept lines, oldest first (a line still unended counts
// as the last).
func (t *tailWriter) flush(w io.Writer) error {
	if len(t.partial) > 0 {
		t.add(string(t.partial) + "\n")
		t.partial = nil
	}
	lines := slices.Clone(t.kept)
	slices.SortFunc(lines, func(a, b tailLine) int {
		if a.before(b) {
			return -1
		}
		return 1
	})
	for _, l := range lines {
		if _, err := io.WriteString(w, l.text); err != nil {
			return err
		}
	}
	return nil
}

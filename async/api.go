package async

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/pulsefaas/pulse/contract"
)

// Queues answers every function's queue: the functions in the catalog and
// any other with requests stored (a function removed with its queue).
func (q *Queue) Queues(ctx context.Context) (contract.Queues, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	info, err := q.reqs.Info(ctx, jetstream.WithSubjectFilter(subjectRequests+"*"))
	if err != nil {
		return contract.Queues{}, fmt.Errorf("queues: %w", err)
	}
	names := map[string]bool{}
	if fns, err := q.fns.AsyncFunctions(); err == nil {
		for n := range fns {
			names[n] = true
		}
	}
	depth := map[string]uint64{}
	for subj, n := range info.State.Subjects {
		name := strings.TrimPrefix(subj, subjectRequests)
		depth[name], names[name] = n, true
	}
	q.mu.Lock()
	for n := range q.stats {
		names[n] = true
	}
	q.mu.Unlock()
	out := contract.Queues{Queues: []contract.QueueStatus{}}
	for _, name := range slices.Sorted(maps.Keys(names)) {
		s := contract.QueueStatus{Function: name, Depth: depth[name]}
		if s.Depth > 0 {
			// Consumer fetches the consumer's info: one request, not two.
			if c, err := q.reqs.Consumer(ctx, consumerName(name)); err == nil {
				s.InFlight = min(uint64(c.CachedInfo().NumAckPending), s.Depth)
			}
			if m, err := q.reqs.GetMsg(ctx, 1, jetstream.WithGetMsgSubject(subjectRequests+name)); err == nil {
				s.OldestAge = max(0, time.Since(m.Time).Seconds())
			}
		}
		s.Pending = s.Depth - s.InFlight
		q.mu.Lock()
		if c := q.stats[name]; c != nil {
			s.Enqueued, s.Done, s.Failed, s.Retried = c.enqueued, c.done, c.failed, c.retried
		}
		q.mu.Unlock()
		out.Queues = append(out.Queues, s)
	}
	return out, nil
}

// QueuesHandler serves GET contract.QueuesPath.
func (q *Queue) QueuesHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !readOnly(w, r) {
			return
		}
		qs, err := q.Queues(r.Context())
		if err != nil {
			writeError(w, http.StatusServiceUnavailable, err.Error(), "")
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(qs)
	})
}

// RequestsHandler serves GET contract.AsyncRequestsPath + <id> (the caller
// checks the management token first).
func (q *Queue) RequestsHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !readOnly(w, r) {
			return
		}
		id := strings.TrimPrefix(r.URL.Path, contract.AsyncRequestsPath)
		if !ValidID(id) {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("request id %q: want the 32 hex digits the 202 gave", id), "")
			return
		}
		st, err := q.Request(r.Context(), id)
		switch {
		case errors.Is(err, ErrNotFound):
			writeError(w, http.StatusNotFound, err.Error(), "")
			return
		case err != nil:
			writeError(w, http.StatusServiceUnavailable, err.Error(), "")
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(st)
	})
}

// readOnly answers 405 with Allow to a method other than GET or HEAD and
// says whether the request may go on.
func readOnly(w http.ResponseWriter, r *http.Request) bool {
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		return true
	}
	w.Header().Set("Allow", "GET, HEAD")
	writeError(w, http.StatusMethodNotAllowed, "method not allowed: use GET", "")
	return false
}

package async

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pulsefaas/pulse/contract"
)

// Run runs the dispatchers and the callback deliverer until ctx ends. Every
// second it follows the catalog: a function gets a consumer and
// Policy.Concurrency workers per ready replica (at least one worker, which
// wakes a function scaled to zero through the gateway's cold-start path);
// workers are added as replicas come and leave after their current
// dispatch as they go, so scaling on queue depth drains the queue faster.
// A function that left the catalog loses its workers and keeps its queue
// for OrphanAfter (a redeploy dispatches it), then its requests fail
// (sweepOrphans). When ctx ends no new dispatch starts; the
// ones under way get dispatchGrace to finish, then are handed back
// (negative acknowledgement) for after the restart.
func (q *Queue) Run(ctx context.Context) error {
	dctx, dcancel := context.WithCancel(context.WithoutCancel(ctx))
	defer dcancel()
	var wg sync.WaitGroup
	defer func() {
		done := make(chan struct{})
		go func() { wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(dispatchGrace):
			dcancel()
			<-done
		}
		// HAProxy keeps a worker until its idle keep-alive connections
		// close (idle-close-on-response): let it stop now.
		q.dispatch.CloseIdleConnections()
	}()
	q.startCallbacks(ctx, dctx, &wg)
	pools := map[string]*pool{}
	missing := map[string]time.Time{}
	var swept time.Time
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		fns, err := q.fns.AsyncFunctions()
		if err != nil {
			q.log.Warn("async: catalog unavailable; dispatch continues with the functions known", "err", err)
		} else {
			if time.Since(swept) >= orphanSweep {
				q.sweepOrphans(ctx, dctx, fns, missing)
				swept = time.Now()
			}
			for name, p := range pools {
				if _, ok := fns[name]; !ok {
					p.limit.Store(0)
					delete(pools, name)
				}
			}
			for name, fn := range fns {
				p := pools[name]
				if p == nil {
					cons, err := q.consumer(ctx, name)
					if err != nil {
						q.log.Warn("async: consumer", "function", name, "err", err)
						continue
					}
					p = &pool{cons: cons}
					pools[name] = p
				}
				p.fn.Store(&fn)
				want := min(int64(fn.Policy.Concurrency)*int64(max(1, fn.Replicas)), MaxDispatches)
				p.limit.Store(want)
				for p.alive.Load() < want {
					p.alive.Add(1)
					wg.Go(func() { q.work(ctx, dctx, p) })
				}
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// orphanSweep is how often queues of functions out of the catalog are
// looked for.
var orphanSweep = 10 * time.Second // a variable for the tests

// sweepOrphans fails the requests queued for a function out of the catalog
// for longer than OrphanAfter (missing says since when each was seen
// missing), with their callbacks: they would otherwise wait for ever.
func (q *Queue) sweepOrphans(ctx, dctx context.Context, fns map[string]Function, missing map[string]time.Time) {
	ictx, cancel := context.WithTimeout(ctx, 5*time.Second)
	info, err := q.reqs.Info(ictx, jetstream.WithSubjectFilter(subjectRequests+"*"))
	cancel()
	if err != nil {
		q.log.Warn("async: queues unreadable", "err", err)
		return
	}
	seen := map[string]bool{}
	for subj, n := range info.State.Subjects {
		name := strings.TrimPrefix(subj, subjectRequests)
		seen[name] = true
		if _, ok := fns[name]; ok || n == 0 {
			delete(missing, name)
			continue
		}
		since, ok := missing[name]
		if !ok {
			missing[name] = time.Now()
			q.log.Info("async: requests queued for a function not in the catalog; they fail if it does not come back", "function", name, "queued", n, "after", q.cfg.OrphanAfter)
			continue
		}
		if time.Since(since) < q.cfg.OrphanAfter {
			continue
		}
		cons, err := q.consumer(ctx, name)
		if err != nil {
			continue
		}
		fn := Function{Name: name, Policy: contract.DefaultAsyncPolicy}
		failed := 0
		for i := uint64(0); i < min(n, 1000) && ctx.Err() == nil; i++ {
			msg, err := next(ctx, cons)
			if err != nil {
				break // the rest are being retried, or gone: the next sweep
			}
			md, err := msg.Metadata()
			if err != nil {
				_ = msg.Term()
				continue
			}
			h := msg.Headers()
			st, err := q.state(dctx, h.Get(hdrID), name, md.Timestamp, h.Get(hdrCallback))
			if err != nil {
				_ = msg.NakWithDelay(time.Second)
				continue
			}
			st.Error = fmt.Sprintf("function %s was removed with this request queued and not deployed again within %s (%s)", name, q.cfg.OrphanAfter, lastError(st.Error))
			q.finish(dctx, fn, msg, st, contract.AsyncFailed, outcome{status: st.Status})
			failed++
		}
		q.log.Warn("async: requests of a removed function failed", "function", name, "failed", failed)
	}
	for name := range missing {
		if !seen[name] {
			delete(missing, name)
		}
	}
}

// dispatchGrace is how long dispatches under way may finish when pulsed
// stops.
const dispatchGrace = 10 * time.Second

// pool is one function's workers: alive of them run, limit is how many
// should.
type pool struct {
	cons  jetstream.Consumer
	fn    atomic.Pointer[Function]
	limit atomic.Int64
	alive atomic.Int64
}

// leave lets one worker go when more are alive than the limit.
func (p *pool) leave() bool {
	for {
		a := p.alive.Load()
		if a <= p.limit.Load() {
			return false
		}
		if p.alive.CompareAndSwap(a, a-1) {
			return true
		}
	}
}

// consumerName is a function's durable consumer.
func consumerName(fn string) string { return "fn_" + fn }

func (q *Queue) consumer(ctx context.Context, fn string) (jetstream.Consumer, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	return q.reqs.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{
		Durable: consumerName(fn), FilterSubject: subjectRequests + fn,
		AckPolicy: jetstream.AckExplicitPolicy, AckWait: q.cfg.AckWait, MaxDeliver: -1,
		// Requests waiting for a retry stay pending; the workers bound
		// the dispatches in flight.
		MaxAckPending: 100_000, DeliverPolicy: jetstream.DeliverAllPolicy,
		// Every worker waits with its own pull request.
		MaxWaiting: 2 * MaxDispatches,
	})
}

// work dispatches one request at a time until ctx ends or its pool has
// more workers than it should.
func (q *Queue) work(ctx, dctx context.Context, p *pool) {
	defer func() {
		if ctx.Err() != nil {
			p.alive.Add(-1)
		}
	}()
	for ctx.Err() == nil && !p.leave() {
		fn := *p.fn.Load()
		msg, err := next(ctx, p.cons)
		if err != nil {
			if ctx.Err() == nil && !errors.Is(err, jetstream.ErrNoMessages) && !errors.Is(err, nats.ErrTimeout) && !errors.Is(err, context.DeadlineExceeded) {
				q.log.Warn("async: fetch", "function", fn.Name, "err", err)
				sleep(ctx, time.Second)
			}
			continue
		}
		q.handle(ctx, dctx, fn, msg)
	}
}

// outcome is one dispatch's result.
type outcome struct {
	status int
	header http.Header
	body   []byte
	err    error // no answer: connection error or timeout
	// gateway: the request never reached the function's backend (the
	// dispatch frontend refused the connection: HAProxy is down or
	// restarting; or it does not route the function yet): not an attempt.
	gateway string
}

func (o outcome) retryable(p contract.AsyncPolicy) bool {
	if o.err != nil {
		return true
	}
	switch o.status {
	case http.StatusTooManyRequests, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return true
	case http.StatusInternalServerError:
		return p.Retry500
	}
	return false
}

func (o outcome) describe() string {
	if o.err != nil {
		return o.err.Error()
	}
	return fmt.Sprintf("the function answered %d %s", o.status, http.StatusText(o.status))
}

// handle dispatches one request. ctx is the run's (done: pulsed is
// stopping, no new dispatch starts and a failure then is not held against
// the request), dctx the dispatch's (done after the stop's grace). The
// attempt count is the state's: only dispatches that reached the function's
// backend count, not redeliveries after a crash or a stop.
func (q *Queue) handle(ctx, dctx context.Context, fn Function, msg jetstream.Msg) {
	if ctx.Err() != nil {
		_ = msg.Nak() // fetched as pulsed stopped: for after the restart
		return
	}
	md, err := msg.Metadata()
	if err != nil {
		q.log.Error("async: message without metadata", "function", fn.Name, "err", err)
		_ = msg.Term()
		return
	}
	// The ack wait is renewed until the request is settled, whatever takes
	// the time (the dispatch, the state, the callback, the acknowledgement).
	stopRenew := renew(msg, q.cfg.AckWait)
	defer stopRenew()
	h := msg.Headers()
	id := h.Get(hdrID)
	st, err := q.state(dctx, id, fn.Name, md.Timestamp, h.Get(hdrCallback))
	if err != nil {
		q.log.Warn("async: state unreadable; the request comes back later", "request_id", id, "err", err)
		_ = msg.NakWithDelay(time.Second)
		return
	}
	if age := time.Since(md.Timestamp); age > fn.Policy.MaxAge {
		st.Error = fmt.Sprintf("expired: not done within max_age %s (%s)", fn.Policy.MaxAge, lastError(st.Error))
		q.finish(dctx, fn, msg, st, contract.AsyncFailed, outcome{status: st.Status})
		return
	}
	attempt := st.Attempts + 1
	prev := st
	st.State, st.Attempts, st.UpdatedAt = contract.AsyncRunning, attempt, time.Now()
	if err := q.putState(dctx, st); err != nil {
		_ = msg.NakWithDelay(time.Second)
		return
	}

	o := q.invoke(dctx, fn, msg, id, attempt)
	switch {
	case dctx.Err() != nil:
		// The stop's grace ran out during the dispatch: for after the
		// restart (it may have run: at least once).
		_ = msg.Nak()
		return
	case o.gateway != "" || (ctx.Err() != nil && o.retryable(fn.Policy)):
		// Not an attempt: the gateway could not take it, or pulsed is
		// stopping (HAProxy with it). Back in the queue, uncounted.
		why := o.gateway
		if why == "" {
			why = "pulsed stopping: " + o.describe()
		}
		prev.State, prev.Error, prev.UpdatedAt = contract.AsyncQueued, why+"; retry in 1s", time.Now()
		_ = q.putState(dctx, prev)
		_ = msg.NakWithDelay(time.Second)
		return
	}
	st.Status, st.Error = o.status, ""
	switch {
	case !o.retryable(fn.Policy):
		q.finish(dctx, fn, msg, st, contract.AsyncDone, o)
	case attempt > fn.Policy.Retries:
		st.Error = fmt.Sprintf("gave up after %d attempts: %s", attempt, o.describe())
		q.finish(dctx, fn, msg, st, contract.AsyncFailed, o)
	default:
		delay := backoff(q.cfg.Backoff, q.cfg.MaxBackoff, attempt)
		st.State, st.Error, st.UpdatedAt = contract.AsyncQueued, fmt.Sprintf("attempt %d: %s; retry in %s", attempt, o.describe(), delay), time.Now()
		if err := q.putState(dctx, st); err != nil {
			_ = msg.NakWithDelay(delay)
			return
		}
		q.count(fn.Name, func(c *counters) { c.retried++ })
		if err := msg.NakWithDelay(delay); err != nil {
			q.log.Warn("async: retry not scheduled; it comes back after the ack wait", "request_id", id, "err", err)
		}
	}
}

// renew tells JetStream every third of the ack wait that the message is
// still being worked on, until the returned stop is called.
func renew(msg jetstream.Msg, ackWait time.Duration) (stop func()) {
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(max(100*time.Millisecond, ackWait/3))
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				_ = msg.InProgress()
			}
		}
	}()
	return func() { close(done) }
}

// lastError names the last error for an expiry message.
func lastError(e string) string {
	if e == "" {
		return "no attempt failed"
	}
	return "last: " + e
}

// backoff is the delay before retry n (n ≥ 1): base × 2^(n-1), at most
// limit.
func backoff(base, limit time.Duration, n int) time.Duration {
	d := base
	for i := 1; i < n && d < limit; i++ {
		d *= 2
	}
	return min(d, limit)
}

// invoke sends the request through the gateway's dispatch frontend,
// renewing the message's ack wait while it runs.
func (q *Queue) invoke(ctx context.Context, fn Function, msg jetstream.Msg, id string, attempt int) outcome {
	h := msg.Headers()
	ictx, cancel := context.WithTimeout(ctx, fn.Timeout+q.cfg.DispatchSlack)
	defer cancel()
	req, err := http.NewRequestWithContext(ictx, h.Get(hdrMethod), q.cfg.DispatchURL+"/function/"+fn.Name+h.Get(hdrURI), bytes.NewReader(msg.Data()))
	if err != nil {
		return outcome{err: fmt.Errorf("building the request: %w", err)}
	}
	for k, vs := range h {
		if storedHeader(k) && k != "Nats-Msg-Id" {
			req.Header[k] = vs
		}
	}
	req.ContentLength = int64(len(msg.Data()))
	req.Header.Set(contract.HeaderDispatch, q.cfg.DispatchToken)
	req.Header.Set(contract.HeaderAsyncRequestID, id)
	req.Header.Set(contract.HeaderAttempt, strconv.Itoa(attempt))
	req.Header.Set("X-Request-ID", id)

	resp, err := q.dispatch.Do(req)
	if err != nil {
		var op *net.OpError
		if errors.As(err, &op) && op.Op == "dial" {
			return outcome{gateway: fmt.Sprintf("the gateway's dispatch frontend (%s) is not answering: %v", q.cfg.DispatchURL, op.Err)}
		}
		return outcome{err: fmt.Errorf("dispatch: %w", err)}
	}
	defer resp.Body.Close()
	if resp.Header.Get(contract.HeaderUnrouted) != "" {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		return outcome{gateway: fmt.Sprintf("the gateway does not route %s yet (%d)", fn.Name, resp.StatusCode)}
	}
	limit := int64(q.cfg.MaxPayload) - maxStoredHeaders
	body, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return outcome{err: fmt.Errorf("reading the answer: %w", err)}
	}
	o := outcome{status: resp.StatusCode, header: resp.Header, body: body}
	if int64(len(body)) > limit {
		o.body = nil
		o.header = resp.Header.Clone()
		o.header.Set(contract.HeaderAsyncError, fmt.Sprintf("response body over %d bytes: not kept", limit))
	}
	return o
}

// finish records the end of a request, queues its callback, then removes
// it from the queue. A crash between the two dispatches it again: at least
// once.
func (q *Queue) finish(ctx context.Context, fn Function, msg jetstream.Msg, st contract.AsyncRequest, state string, o outcome) {
	now := time.Now()
	st.State, st.UpdatedAt, st.FinishedAt = state, now, now
	// The state first: the deliverer's "delivered" must come after it.
	if st.Callback != "" {
		st.CallbackState = contract.CallbackPending
	}
	if err := q.putState(ctx, st); err != nil {
		// Not recorded: the request comes back (and may run again).
		_ = msg.NakWithDelay(backoff(q.cfg.Backoff, q.cfg.MaxBackoff, st.Attempts))
		return
	}
	if st.Callback != "" {
		if err := q.queueCallback(ctx, fn.Name, st, o); err != nil {
			q.log.Warn("async: callback not queued; the request will be dispatched again", "request_id", st.ID, "err", err)
			_ = msg.NakWithDelay(backoff(q.cfg.Backoff, q.cfg.MaxBackoff, st.Attempts))
			return
		}
	}
	if err := msg.DoubleAck(ctx); err != nil {
		q.log.Warn("async: acknowledgement lost; the request may be dispatched again", "request_id", st.ID, "err", err)
	}
	q.count(fn.Name, func(c *counters) {
		if state == contract.AsyncDone {
			c.done++
		} else {
			c.failed++
		}
	})
}

// state reads a request's state, or makes one when it is missing (written
// at enqueue after the request was stored: it may be lost in a crash).
func (q *Queue) state(ctx context.Context, id, fn string, enqueued time.Time, callback string) (contract.AsyncRequest, error) {
	e, err := q.kv.Get(ctx, id)
	switch {
	case err == nil:
		var st contract.AsyncRequest
		if json.Unmarshal(e.Value(), &st) == nil && st.ID == id {
			return st, nil
		}
	case !errors.Is(err, jetstream.ErrKeyNotFound):
		return contract.AsyncRequest{}, err
	}
	st := contract.AsyncRequest{ID: id, Function: fn, State: contract.AsyncQueued, Callback: callback, EnqueuedAt: enqueued, UpdatedAt: time.Now()}
	if callback != "" {
		st.CallbackState = contract.CallbackPending
	}
	return st, nil
}

// putState writes a request's state. A finished request's is kept for
// Retention after this write; an unfinished one's as long as the request
// may wait (the bucket's age limit), so a long queue never outlives it.
func (q *Queue) putState(ctx context.Context, st contract.AsyncRequest) error {
	b, err := json.Marshal(st)
	if err == nil {
		if st.State == contract.AsyncDone || st.State == contract.AsyncFailed {
			_, err = q.js.Publish(ctx, stateSubject(st.ID), b, jetstream.WithMsgTTL(q.cfg.Retention))
		} else {
			_, err = q.kv.Put(ctx, st.ID, b)
		}
	}
	if err != nil {
		q.log.Warn("async: state not written", "request_id", st.ID, "state", st.State, "err", err)
		return fmt.Errorf("write state of %s: %w", st.ID, err)
	}
	return nil
}

// stateSubject is where the state bucket stores a request's state.
func stateSubject(id string) string { return "$KV." + StateBucket + "." + id }

// Request answers a request's state; ErrNotFound when it is unknown or its
// retention has passed.
func (q *Queue) Request(ctx context.Context, id string) (contract.AsyncRequest, error) {
	var st contract.AsyncRequest
	if !ValidID(id) {
		return st, ErrNotFound
	}
	e, err := q.kv.Get(ctx, id)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return st, ErrNotFound
	}
	if err != nil {
		return st, fmt.Errorf("read state of %s: %w", id, err)
	}
	if err := json.Unmarshal(e.Value(), &st); err != nil {
		return st, fmt.Errorf("read state of %s: %w", id, err)
	}
	return st, nil
}

// ErrNotFound: no such request, or its state has expired.
var ErrNotFound = errors.New("no such async request (or its retention has passed)")

// next waits up to 2 s for the consumer's next message.
func next(ctx context.Context, cons jetstream.Consumer) (jetstream.Msg, error) {
	fctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	return cons.Next(jetstream.FetchContext(fctx))
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

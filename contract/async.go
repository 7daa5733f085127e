package contract

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Asynchronous invocation (DESIGN §3, issue 16). A client POSTs to the
// gateway at AsyncFunctionPrefix + <name>[/rest]; HAProxy checks the invoke
// key as for /function/ and hands the request to pulsed's async listener,
// which stores it (synced to disk) and answers 202 with AsyncAccepted. A
// dispatcher in pulsed later invokes the function through the gateway's
// dispatch frontend, retries what may succeed later, and posts the result to
// the client's callback URL.
const (
	// AsyncFunctionPrefix is the gateway's path prefix for async invoke.
	AsyncFunctionPrefix = "/async-function/"
	// HeaderAsyncRequestID is the async request's id: in the 202's header, on
	// every dispatch to the function (so it can be idempotent: delivery is
	// at least once) and on the callback.
	HeaderAsyncRequestID = "X-Pulse-Request-Id"
	// HeaderCallbackURL is where the client wants the result POSTed.
	HeaderCallbackURL = "X-Callback-Url"
	// HeaderAttempt is the dispatch attempt, 1 for the first, on every
	// dispatch to the function.
	HeaderAttempt = "X-Pulse-Attempt"
	// HeaderAsyncState is on the callback: AsyncDone or AsyncFailed.
	HeaderAsyncState = "X-Pulse-State"
	// HeaderAsyncStatus is on the callback: the function's HTTP status (0
	// when it never answered).
	HeaderAsyncStatus = "X-Pulse-Status"
	// HeaderAsyncError is on a failed request's callback: why it failed.
	HeaderAsyncError = "X-Pulse-Error"
	// HeaderDispatch carries the dispatcher's credential to the gateway's
	// dispatch frontend: requests with it skip the invoke-key check (done at
	// enqueue) and the client rate limit (dispatch has its own concurrency).
	HeaderDispatch = "X-Pulse-Dispatch"
	// HeaderUnrouted is on the gateway's own "function not found" and
	// "gateway reloading" answers: the request never reached a function
	// (the dispatcher does not count it as an attempt).
	HeaderUnrouted = "X-Pulse-Unrouted"

	// AsyncRequestsPath is pulsed's API for async requests (bearer token):
	// GET AsyncRequestsPath + <id> answers AsyncRequest.
	AsyncRequestsPath = "/v1/async/"
	// QueuesPath is pulsed's queue depths (GET, no token: numbers only, read
	// by the collector): Queues.
	QueuesPath = "/v1/queues"

	// DefaultAsyncListen is where HAProxy reaches pulsed's async listener.
	DefaultAsyncListen = "127.0.0.1:8092"
	// DefaultDispatchListen is the gateway's dispatch frontend (loopback).
	DefaultDispatchListen = "127.0.0.1:8093"
)

// States of an async request.
const (
	AsyncQueued  = "queued"  // stored, waiting for dispatch (or for a retry)
	AsyncRunning = "running" // being dispatched now
	AsyncDone    = "done"    // the function answered; Status says how
	AsyncFailed  = "failed"  // given up: Error says why
)

// AsyncAccepted is the 202's body.
type AsyncAccepted struct {
	RequestID string `json:"request_id"`
	Function  string `json:"function"`
	State     string `json:"state"`
}

// AsyncRequest is an async request's state, kept for pulsed's retention
// period after it ended.
type AsyncRequest struct {
	ID       string `json:"id"`
	Function string `json:"function"`
	State    string `json:"state"`
	// Status is the function's HTTP status of the last attempt (0: none).
	Status int `json:"status,omitempty"`
	// Attempts counts dispatches so far.
	Attempts int `json:"attempts"`
	// Error is why the last attempt failed, or why the request failed.
	Error string `json:"error,omitempty"`
	// Callback is the callback URL (empty: none); CallbackState is
	// "pending", "delivered" or "failed", CallbackError why.
	Callback      string    `json:"callback,omitempty"`
	CallbackState string    `json:"callback_state,omitempty"`
	CallbackError string    `json:"callback_error,omitempty"`
	EnqueuedAt    time.Time `json:"enqueued_at"`
	UpdatedAt     time.Time `json:"updated_at"`
	FinishedAt    time.Time `json:"finished_at,omitzero"`
}

// Callback delivery states.
const (
	CallbackPending   = "pending"
	CallbackDelivered = "delivered"
	CallbackFailed    = "failed"
)

// Queues is what GET QueuesPath answers: one entry per function with a
// queue, sorted by name.
type Queues struct {
	Queues []QueueStatus `json:"queues"`
}

// QueueStatus is one function's async queue. Depth = Pending + InFlight:
// the requests not finished yet (InFlight counts those being dispatched and
// those waiting for a retry). The counters count since pulsed started.
type QueueStatus struct {
	Function string `json:"function"`
	Depth    uint64 `json:"depth"`
	Pending  uint64 `json:"pending"`
	InFlight uint64 `json:"in_flight"`
	// OldestAge is the age in seconds of the oldest request not finished
	// (0: none).
	OldestAge float64 `json:"oldest_age_seconds"`
	Enqueued  uint64  `json:"enqueued"`
	Done      uint64  `json:"done"`
	Failed    uint64  `json:"failed"`
	Retried   uint64  `json:"retried"`
}

// LabelAsync is a function's async policy (functions.yml's async), as
// AsyncPolicy.String writes it: "retries=3,max_age=1h,concurrency=4,retry_500=false".
// Absent: DefaultAsyncPolicy.
const LabelAsync = "pulse.async"

// Bounds and defaults of an async policy.
const (
	MaxAsyncRetries     = 100
	MinAsyncMaxAge      = time.Second
	MaxAsyncMaxAge      = 7 * 24 * time.Hour
	MaxAsyncConcurrency = 1000
)

// AsyncPolicy is how the dispatcher treats a function's async requests.
type AsyncPolicy struct {
	// Retries is how many times a request is dispatched again after a
	// retryable failure (connection error, 429, 502, 503, 504; 500 with
	// Retry500), with exponential backoff.
	Retries int
	// MaxAge: a request not done this long after it was accepted fails.
	MaxAge time.Duration
	// Concurrency bounds the dispatches in flight per ready replica (a
	// function at zero counts as one): more replicas, more dispatches.
	Concurrency int
	// Retry500 retries a 500 answer too.
	Retry500 bool
}

// DefaultAsyncPolicy applies to a function without the label.
var DefaultAsyncPolicy = AsyncPolicy{Retries: 3, MaxAge: time.Hour, Concurrency: 4}

// Problem says what is wrong with the policy ("" when nothing is), in the
// words of functions.yml's async.
func (p AsyncPolicy) Problem() string {
	var out []string
	if p.Retries < 0 || p.Retries > MaxAsyncRetries {
		out = append(out, fmt.Sprintf("retries %d: want 0 to %d", p.Retries, MaxAsyncRetries))
	}
	if p.MaxAge < MinAsyncMaxAge || p.MaxAge > MaxAsyncMaxAge || p.MaxAge%time.Second != 0 {
		out = append(out, fmt.Sprintf("max_age %s: want whole seconds from %s to %s", p.MaxAge, MinAsyncMaxAge, MaxAsyncMaxAge))
	}
	if p.Concurrency < 1 || p.Concurrency > MaxAsyncConcurrency {
		out = append(out, fmt.Sprintf("concurrency %d: want 1 to %d", p.Concurrency, MaxAsyncConcurrency))
	}
	return strings.Join(out, "; ")
}

// String is the label's value.
func (p AsyncPolicy) String() string {
	return fmt.Sprintf("retries=%d,max_age=%s,concurrency=%d,retry_500=%t",
		p.Retries, formatRatePer(p.MaxAge), p.Concurrency, p.Retry500)
}

// ParseAsyncPolicy reads the label's value, as String writes it (keys in
// any order; a missing key keeps its default), and checks it.
func ParseAsyncPolicy(v string) (AsyncPolicy, error) {
	p := DefaultAsyncPolicy
	seen := map[string]bool{}
	for _, kv := range strings.Split(v, ",") {
		k, val, ok := strings.Cut(kv, "=")
		if !ok {
			return AsyncPolicy{}, fmt.Errorf("%q: want key=value, e.g. %q", kv, DefaultAsyncPolicy.String())
		}
		if seen[k] {
			return AsyncPolicy{}, fmt.Errorf("%s given twice", k)
		}
		seen[k] = true
		var err error
		switch k {
		case "retries":
			p.Retries, err = strconv.Atoi(val)
		case "max_age":
			p.MaxAge, err = time.ParseDuration(val)
		case "concurrency":
			p.Concurrency, err = strconv.Atoi(val)
		case "retry_500":
			p.Retry500, err = strconv.ParseBool(val)
		default:
			return AsyncPolicy{}, fmt.Errorf("unknown key %q: want retries, max_age, concurrency or retry_500", k)
		}
		if err != nil {
			return AsyncPolicy{}, fmt.Errorf("%s %q: want %s", k, val, asyncValueForm[k])
		}
	}
	if pr := p.Problem(); pr != "" {
		return AsyncPolicy{}, errors.New(pr)
	}
	return p, nil
}

var asyncValueForm = map[string]string{
	"retries": "a whole number", "max_age": "a duration such as 1h", "concurrency": "a whole number", "retry_500": "true or false",
}

// ScaleMetricQueue scales a function on its async queue depth: target is
// the queued requests per replica.
const ScaleMetricQueue = "queue"

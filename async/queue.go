package async

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pulsefaas/pulse/contract"
)

// JetStream names.
const (
	StreamRequests  = "PULSE_ASYNC"
	StreamCallbacks = "PULSE_CALLBACKS"
	StateBucket     = "PULSE_ASYNC_STATE"
	subjectRequests = "pulse.async.req."
	subjectCallback = "pulse.async.cb."
	callbackGroup   = "callbacks"
)

// Config is the queue's configuration (pulsed's async_* keys).
type Config struct {
	// StoreDir holds the embedded server's file storage. Ignored with URL.
	StoreDir string
	// URL is an external NATS cluster with JetStream; empty: embedded.
	URL string
	// Replicas is the streams' replication in an external cluster (1 when
	// embedded).
	Replicas int
	// Retention: how long a request's state stays readable after its last
	// change.
	Retention time.Duration
	// MaxQueued bounds the requests waiting per function; beyond it the
	// enqueue answers 429.
	MaxQueued int64
	// MaxBytes bounds what the waiting requests hold on disk, over every
	// function; beyond it the enqueue answers 507.
	MaxBytes int64
	// MaxPayload bounds one stored request (body and headers): the largest
	// max-body an async request may have, plus room for its headers.
	MaxPayload int32
	// DispatchURL is the gateway's dispatch frontend (http://host:port)
	// and DispatchToken its credential.
	DispatchURL   string
	DispatchToken string
	// ReplicaAuth is what HAProxy sets on the requests it passes to the
	// enqueue listener (contract.HeaderReplicaAuth): only HAProxy may
	// enqueue.
	ReplicaAuth string
	// DispatchSlack is added to a function's timeout for one dispatch: the
	// gateway's margin and a cold start from zero.
	DispatchSlack time.Duration
	// AckWait is how long a dispatch may go without a sign of life before
	// JetStream hands the request out again (pulsed renews it while the
	// dispatch runs, so only a stopped pulsed lets it expire).
	AckWait time.Duration
	// Callbacks: where results may be posted, and how.
	Callback CallbackConfig
	// Backoff is the first retry's delay (doubled each retry, up to
	// MaxBackoff).
	Backoff, MaxBackoff time.Duration
	// OrphanAfter: requests queued for a function that has been out of the
	// catalog this long (removed, not deployed again) fail, with their
	// callbacks.
	OrphanAfter time.Duration
}

// DefaultConfig returns the defaults pulsed documents.
func DefaultConfig() Config {
	return Config{
		Replicas:      1,
		Retention:     24 * time.Hour,
		MaxQueued:     100_000,
		MaxBytes:      10 << 30,
		MaxPayload:    contract.DefaultMaxBody + 64<<10,
		DispatchSlack: 40 * time.Second,
		AckWait:       30 * time.Second,
		Backoff:       500 * time.Millisecond,
		MaxBackoff:    time.Minute,
		OrphanAfter:   10 * time.Minute,
		Callback:      DefaultCallbackConfig(),
	}
}

// Function is what the queue needs to know of a function in the catalog.
type Function struct {
	Name string
	// Replicas is how many replicas are ready: the dispatches in flight
	// are Policy.Concurrency per replica (at least one replica's worth).
	Replicas int
	Policy   contract.AsyncPolicy
	MaxBody  int64
	Timeout  time.Duration
}

// Functions is the queue's view of the catalog: the functions it may
// enqueue for and dispatch to.
type Functions interface {
	// AsyncFunctions answers the functions by name; the map may be shared
	// between calls: callers only read it.
	AsyncFunctions() (map[string]Function, error)
}

// Queue is the async engine. Open it, serve Handler on the listener
// HAProxy's pulse_async backend reaches, Run the dispatchers, Close at the
// end.
type Queue struct {
	cfg  Config
	log  *slog.Logger
	fns  Functions
	ns   *server.Server // nil with an external URL
	nc   *nats.Conn
	js   jetstream.JetStream
	reqs jetstream.Stream
	cbs  jetstream.Stream
	kv   jetstream.KeyValue

	dispatch *http.Client
	callback *http.Client
	allow    *CallbackPolicy

	mu    sync.Mutex
	stats map[string]*counters
}

// Open starts the embedded JetStream server (or connects to cfg.URL) and
// creates the streams and the state bucket when they are missing.
func Open(ctx context.Context, cfg Config, fns Functions, log *slog.Logger) (*Queue, error) {
	if cfg.DispatchURL == "" || cfg.DispatchToken == "" {
		return nil, errors.New("async: want DispatchURL and DispatchToken")
	}
	allow, err := NewCallbackPolicy(cfg.Callback)
	if err != nil {
		return nil, fmt.Errorf("async: callback allow-list: %w", err)
	}
	q := &Queue{cfg: cfg, log: log.With("component", "async"), fns: fns, allow: allow, stats: map[string]*counters{}}
	if cfg.URL == "" {
		opts := &server.Options{
			// The server keeps its store in StoreDir/jetstream.
			ServerName: "pulsed", JetStream: true, StoreDir: cfg.StoreDir,
			SyncAlways: true, DontListen: true, NoSigs: true, NoLog: true,
			MaxPayload: cfg.MaxPayload, JetStreamMaxStore: -1, JetStreamMaxMemory: 64 << 20,
		}
		if q.ns, err = server.NewServer(opts); err != nil {
			return nil, fmt.Errorf("async: start JetStream: %w", err)
		}
		q.ns.Start()
		if !q.ns.ReadyForConnections(30 * time.Second) {
			q.ns.Shutdown()
			return nil, errors.New("async: JetStream did not start within 30s (a large store recovering, or a broken one under " + filepath.Join(opts.StoreDir, "jetstream") + ")")
		}
		q.nc, err = nats.Connect(q.ns.ClientURL(), nats.InProcessServer(q.ns), nats.Name("pulsed"), nats.MaxReconnects(-1))
	} else {
		q.nc, err = nats.Connect(cfg.URL, nats.Name("pulsed"), nats.MaxReconnects(-1), nats.Timeout(5*time.Second))
	}
	if err != nil {
		q.Close()
		return nil, fmt.Errorf("async: connect to NATS: %w", err)
	}
	if mp := q.nc.MaxPayload(); mp < int64(cfg.MaxPayload) {
		q.Close()
		return nil, fmt.Errorf("async: the NATS server takes messages of at most %d bytes; async_max_body needs %d: raise the server's max_payload or lower async_max_body", mp, cfg.MaxPayload)
	}
	if q.js, err = jetstream.New(q.nc); err != nil {
		q.Close()
		return nil, fmt.Errorf("async: JetStream: %w", err)
	}
	if err := q.setup(ctx); err != nil {
		q.Close()
		return nil, err
	}
	q.dispatch = &http.Client{
		// At most MaxDispatches connections: the dispatch frontend's maxconn.
		Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 256, MaxConnsPerHost: MaxDispatches,
			IdleConnTimeout: 25 * time.Second, DisableCompression: true},
		// A redirect is the function's answer, not ours to follow.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	q.callback = allow.Client()
	return q, nil
}

func (q *Queue) setup(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	replicas := max(1, q.cfg.Replicas)
	if q.ns != nil {
		replicas = 1
	}
	var err error
	q.reqs, err = q.js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name: StreamRequests, Description: "Pulse async requests, one subject per function",
		Subjects: []string{subjectRequests + "*"}, Retention: jetstream.WorkQueuePolicy,
		Storage: jetstream.FileStorage, Replicas: replicas,
		MaxMsgsPerSubject: q.cfg.MaxQueued, Discard: jetstream.DiscardNew, DiscardNewPerSubject: true, MaxBytes: q.cfg.MaxBytes,
		MaxMsgSize: q.cfg.MaxPayload, Duplicates: 2 * time.Minute, AllowDirect: true,
		// A backstop: no request waits longer than the longest max_age.
		MaxAge: contract.MaxAsyncMaxAge + 24*time.Hour,
	})
	if err != nil {
		return fmt.Errorf("async: stream %s: %w", StreamRequests, err)
	}
	q.cbs, err = q.js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name: StreamCallbacks, Description: "Pulse async results to post to callback URLs",
		Subjects: []string{subjectCallback + "*"}, Retention: jetstream.WorkQueuePolicy,
		Storage: jetstream.FileStorage, Replicas: replicas,
		MaxMsgSize: q.cfg.MaxPayload, Duplicates: 2 * time.Minute,
	})
	if err != nil {
		return fmt.Errorf("async: stream %s: %w", StreamCallbacks, err)
	}
	q.kv, err = q.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket: StateBucket, Description: "Pulse async request states",
		// Unfinished states live as long as a request may wait; a finished
		// one is written with its own TTL, Retention (putState).
		History: 1, TTL: q.cfg.Retention + contract.MaxAsyncMaxAge + time.Hour, LimitMarkerTTL: time.Minute,
		Storage: jetstream.FileStorage, Replicas: replicas,
	})
	if err != nil {
		return fmt.Errorf("async: bucket %s: %w", StateBucket, err)
	}
	return nil
}

// Close stops the connection and the embedded server (which syncs its
// store).
func (q *Queue) Close() {
	if q.nc != nil {
		q.nc.Close()
	}
	if q.ns != nil {
		q.ns.Shutdown()
		q.ns.WaitForShutdown()
	}
	if q.dispatch != nil {
		q.dispatch.CloseIdleConnections()
	}
	if q.callback != nil {
		q.callback.CloseIdleConnections()
	}
}

// MaxDispatches bounds the dispatches in flight over every function: the
// gateway's dispatch frontend takes this many connections (gateway
// render's dispatchMaxConn), and one function's workers are capped at it.
const MaxDispatches = 1024

// counters are one function's totals since pulsed started.
type counters struct {
	enqueued, done, failed, retried uint64
}

func (q *Queue) count(fn string, f func(c *counters)) {
	q.mu.Lock()
	c := q.stats[fn]
	if c == nil {
		c = &counters{}
		q.stats[fn] = c
	}
	f(c)
	q.mu.Unlock()
}

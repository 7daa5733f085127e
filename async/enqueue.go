package async

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pulsefaas/pulse/contract"
)

// Headers of a stored request (NATS message headers). A client's headers
// are stored as they came, except these names and the hop-by-hop ones.
const (
	hdrMethod   = "Pulse-Method"
	hdrURI      = "Pulse-Uri"
	hdrCallback = "Pulse-Callback"
	hdrID       = "Pulse-Id"
	hdrFunction = "Pulse-Function"
)

// Handler is the enqueue endpoint HAProxy's pulse_async backend reaches:
// the function's name in contract.HeaderFunction, the path already
// rewritten to what follows the name, the invoke key already checked.
func (q *Queue) Handler() http.Handler { return http.HandlerFunc(q.enqueue) }

func (q *Queue) enqueue(w http.ResponseWriter, r *http.Request) {
	if q.cfg.ReplicaAuth != "" && subtle.ConstantTimeCompare([]byte(r.Header.Get(contract.HeaderReplicaAuth)), []byte(q.cfg.ReplicaAuth)) != 1 {
		writeError(w, http.StatusForbidden, "forbidden: async requests come through the gateway", "")
		return
	}
	name := r.Header.Get(contract.HeaderFunction)
	fns, err := q.fns.AsyncFunctions()
	if err != nil {
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusServiceUnavailable, "function catalog unavailable: "+err.Error(), name)
		return
	}
	fn, ok := fns[name]
	if !ok {
		writeError(w, http.StatusNotFound, "function not found", name)
		return
	}
	var callback string
	if cb := r.Header.Values(contract.HeaderCallbackURL); len(cb) > 1 {
		writeError(w, http.StatusBadRequest, "more than one "+contract.HeaderCallbackURL, name)
		return
	} else if len(cb) == 1 {
		ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
		err := q.allow.CheckURL(ctx, cb[0])
		cancel()
		if err != nil {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("%s refused: %v", contract.HeaderCallbackURL, err), name)
			return
		}
		callback = cb[0]
	}
	limit := fn.MaxBody
	if room := int64(q.cfg.MaxPayload) - maxStoredHeaders; limit <= 0 || limit > room {
		limit = room
	}
	if r.ContentLength > limit {
		writeLimit(w, name, limit)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			writeLimit(w, name, limit)
			return
		}
		writeError(w, http.StatusBadRequest, "reading the body: "+err.Error(), name)
		return
	}
	id := newID()
	msg := nats.NewMsg(subjectRequests + name)
	msg.Data = body
	for k, vs := range r.Header {
		if storedHeader(k) {
			msg.Header[k] = vs
		}
	}
	msg.Header.Set(hdrID, id)
	msg.Header.Set(hdrFunction, name)
	msg.Header.Set(hdrMethod, r.Method)
	msg.Header.Set(hdrURI, r.URL.RequestURI())
	if callback != "" {
		msg.Header.Set(hdrCallback, callback)
	}
	if size := headerSize(msg.Header); size > maxStoredHeaders {
		writeError(w, http.StatusRequestHeaderFieldsTooLarge, fmt.Sprintf("request headers of %d bytes: at most %d", size, maxStoredHeaders), name)
		return
	}
	now := time.Now()
	ctx, cancel := context.WithTimeout(r.Context(), 20*time.Second)
	defer cancel()
	if _, err := q.js.PublishMsg(ctx, msg, jetstream.WithMsgID(id), jetstream.WithExpectStream(StreamRequests)); err != nil {
		if isQueueFull(err) {
			w.Header().Set("Retry-After", "1")
			writeError(w, http.StatusTooManyRequests, fmt.Sprintf("async queue full: %d requests waiting", q.cfg.MaxQueued), name)
			return
		}
		if isStoreFull(err) {
			w.Header().Set("Retry-After", "5")
			writeError(w, http.StatusInsufficientStorage, fmt.Sprintf("async queue full: the requests waiting hold async_max_store (%d bytes)", q.cfg.MaxBytes), name)
			return
		}
		q.log.Error("async enqueue failed", "function", name, "err", err)
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusServiceUnavailable, "async queue unavailable: the request was not stored", name)
		return
	}
	// Stored: from here the 202 holds whatever the state write does. The
	// dispatcher writes the state too; Create never overwrites its newer one.
	st := contract.AsyncRequest{ID: id, Function: name, State: contract.AsyncQueued, Callback: callback, EnqueuedAt: now, UpdatedAt: now}
	if callback != "" {
		st.CallbackState = contract.CallbackPending
	}
	if b, err := json.Marshal(st); err == nil {
		if _, err := q.kv.Create(ctx, id, b); err != nil && !errors.Is(err, jetstream.ErrKeyExists) {
			q.log.Warn("async state not written", "request_id", id, "err", err)
		}
	}
	q.count(name, func(c *counters) { c.enqueued++ })
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set(contract.HeaderAsyncRequestID, id)
	w.WriteHeader(http.StatusAccepted)
	_ = json.NewEncoder(w).Encode(contract.AsyncAccepted{RequestID: id, Function: name, State: contract.AsyncQueued})
}

// maxStoredHeaders bounds a stored request's headers (the gateway already
// caps a request head at 12 KiB).
const maxStoredHeaders = 32 << 10

func headerSize(h nats.Header) int {
	n := 0
	for k, vs := range h {
		for _, v := range vs {
			n += len(k) + len(v) + 4
		}
	}
	return n
}

// storedHeader reports whether a client's header is kept with the request:
// not hop-by-hop, not one of the gateway's own, not a NATS or Pulse one.
func storedHeader(k string) bool {
	switch http.CanonicalHeaderKey(k) {
	case "Connection", "Keep-Alive", "Proxy-Connection", "Te", "Trailer", "Transfer-Encoding", "Upgrade",
		"Content-Length", "Host", contract.HeaderCallbackURL, contract.HeaderReplicaAuth, contract.HeaderFunction,
		contract.HeaderDispatch, contract.HeaderAsyncRequestID, contract.HeaderAttempt:
		return false
	}
	l := strings.ToLower(k)
	return !strings.HasPrefix(l, "nats-") && !strings.HasPrefix(l, "pulse-")
}

// isQueueFull and isStoreFull read JetStream's refusals (its API errors
// carry no distinct codes for these).
func isQueueFull(err error) bool {
	return strings.Contains(err.Error(), "maximum messages per subject exceeded")
}

func isStoreFull(err error) bool {
	return strings.Contains(err.Error(), "maximum bytes exceeded")
}

// newID is a request id: 32 hex digits of crypto randomness.
func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// ValidID reports whether s may be a request id (what GET accepts).
func ValidID(s string) bool {
	if len(s) != 32 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

func writeLimit(w http.ResponseWriter, name string, limit int64) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusRequestEntityTooLarge)
	_ = json.NewEncoder(w).Encode(map[string]any{"error": "request body too large", "function": name, "limit": limit})
}

func writeError(w http.ResponseWriter, code int, msg, function string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	body := map[string]string{"error": msg}
	if function != "" {
		body["function"] = function
	}
	_ = json.NewEncoder(w).Encode(body)
}

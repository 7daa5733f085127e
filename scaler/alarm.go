package scaler

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"strings"

	"github.com/pulsefaas/pulse/contract"
)

// alarmKey orders alarm events: by When, then UniqueID (EventID counts per
// alarm only).
type alarmKey struct {
	when int64
	id   uint64
}

func (k alarmKey) less(o alarmKey) bool {
	return k.when < o.when || (k.when == o.when && k.id < o.id)
}

// Alarm outcomes (also the result label of the alarms metric).
const (
	AlarmAccepted  = "accepted"  // the function will be evaluated
	AlarmDuplicate = "duplicate" // the same event again
	AlarmReordered = "reordered" // older than one already seen
	AlarmStale     = "stale"     // older than the function's last decision
	AlarmDropped   = "dropped"   // the queue is full; the periodic evaluation comes anyway
)

// Alarm takes the hint ev gives: it classifies ev at once and, when it is
// new, asks for an evaluation of its function. It returns ErrNotFound for a
// function not in the catalog and ErrCatalogPending before the catalog's
// first poll.
func (s *Scaler) Alarm(ev contract.AlarmEvent) (string, error) {
	cat, at, _ := s.cat.Current()
	if at.IsZero() {
		return "", ErrCatalogPending
	}
	if _, ok := findFunction(cat, ev.Function); !ok {
		return "", fmt.Errorf("%w: %q is not in the replica catalog", ErrNotFound, ev.Function)
	}
	key := alarmKey{when: ev.When, id: ev.UniqueID}
	s.mu.Lock()
	st := s.stateLocked(ev.Function)
	var result string
	switch {
	case key == st.lastAlarm:
		result = AlarmDuplicate
	case key.less(st.lastAlarm):
		result = AlarmReordered
	case ev.When < st.lastDecision.Unix():
		result = AlarmStale
		st.lastAlarm = key
	default:
		result = AlarmAccepted
		st.lastAlarm = key
	}
	s.mu.Unlock()
	if result == AlarmAccepted {
		select {
		case s.triggers <- trigger{fn: ev.Function, kind: contract.TriggerAlarm, alarm: &ev, received: s.now()}:
		default:
			result = AlarmDropped
		}
	}
	return result, nil
}

// parseAlarm reads one contract.AlarmEvent from a webhook body and says
// what is wrong with one it cannot use. Unknown fields are accepted (a newer
// hook may send more); the function and the time are required.
func parseAlarm(body []byte) (contract.AlarmEvent, error) {
	var ev contract.AlarmEvent
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&ev); err != nil {
		var syn *json.SyntaxError
		var typ *json.UnmarshalTypeError
		switch {
		case errors.Is(err, io.EOF):
			return ev, errors.New("empty body: want a JSON alarm event")
		case errors.As(err, &syn):
			return ev, fmt.Errorf("malformed JSON at byte %d: %v", syn.Offset, syn)
		case errors.As(err, &typ) && typ.Field != "":
			return ev, fmt.Errorf("field %s: want a %s, got a JSON %s", typ.Field, jsonKind(typ.Type), typ.Value)
		case errors.As(err, &typ):
			return ev, fmt.Errorf("want a JSON object, got a JSON %s", typ.Value)
		default:
			return ev, fmt.Errorf("malformed JSON: %v", err)
		}
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return ev, errors.New("malformed JSON: data after the alarm event")
	}
	switch {
	case ev.Function == "":
		return ev, errors.New("field function: missing (the chart's family, the function name)")
	case ev.When <= 0:
		return ev, errors.New("field when: missing or not a positive unix time")
	}
	return ev, nil
}

// jsonKind names a Go type as JSON knows it.
func jsonKind(t reflect.Type) string {
	switch t.Kind() {
	case reflect.String:
		return "string"
	case reflect.Int, reflect.Int64, reflect.Uint64, reflect.Float64:
		return "number"
	case reflect.Struct, reflect.Map:
		return "object"
	}
	return t.String()
}

// ReadToken reads the webhook's bearer token from path (surrounding space
// trimmed). A missing, unreadable or empty file is an error; the webhook then
// refuses every request with 503 (see NewHandler).
func ReadToken(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("alarm token: %w", err)
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return "", fmt.Errorf("alarm token file %s is empty", path)
	}
	return tok, nil
}

// tokenChecker compares bearer tokens in constant time: both sides are
// hashed first, so neither the content nor the length leaks.
type tokenChecker struct {
	sum [sha256.Size]byte
	set bool
}

func newTokenChecker(token string) tokenChecker {
	if token == "" {
		return tokenChecker{}
	}
	return tokenChecker{sum: sha256.Sum256([]byte(token)), set: true}
}

// check reports whether an Authorization header carries the token.
func (t tokenChecker) check(header string) bool {
	scheme, given, ok := strings.Cut(header, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || !t.set {
		return false
	}
	sum := sha256.Sum256([]byte(strings.TrimSpace(given)))
	return subtle.ConstantTimeCompare(sum[:], t.sum[:]) == 1
}

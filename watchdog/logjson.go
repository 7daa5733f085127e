package watchdog

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"sync"
	"time"
)

// jsonHandler is a slog.Handler writing one JSON object a line, in the same
// shape as slog.JSONHandler (time, level, msg, then attributes; groups as
// nested objects). slog.JSONHandler itself links encoding/json and its
// reflection into every function image: 90 KB of binary and part of the
// idle RSS that a replica's footprint goal cannot spare.
type jsonHandler struct {
	w      io.Writer
	mu     *sync.Mutex
	level  slog.Leveler
	prefix []byte   // rendered attributes from WithAttrs, each followed by ','
	groups []string // open groups, outermost first
	// opened counts the groups of groups already opened in prefix.
	opened int
}

// NewJSONHandler returns a handler writing JSON lines to w at level and
// above.
func NewJSONHandler(w io.Writer, level slog.Leveler) slog.Handler {
	return &jsonHandler{w: w, mu: new(sync.Mutex), level: level}
}

func (h *jsonHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= h.level.Level() }

func (h *jsonHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	if len(attrs) == 0 {
		return h
	}
	h2 := *h
	h2.prefix = append([]byte(nil), h.prefix...)
	for ; h2.opened < len(h2.groups); h2.opened++ {
		h2.prefix = appendJSONString(h2.prefix, h2.groups[h2.opened])
		h2.prefix = append(h2.prefix, ":{"...)
	}
	for _, a := range attrs {
		h2.prefix = appendAttr(h2.prefix, a)
	}
	return &h2
}

func (h *jsonHandler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	h2 := *h
	h2.groups = append(append([]string(nil), h.groups...), name)
	return &h2
}

func (h *jsonHandler) Handle(_ context.Context, r slog.Record) error {
	b := make([]byte, 0, 256)
	b = append(b, '{')
	if !r.Time.IsZero() {
		b = append(b, `"time":"`...)
		b = r.Time.AppendFormat(b, time.RFC3339Nano)
		b = append(b, `",`...)
	}
	b = append(b, `"level":`...)
	b = appendJSONString(b, r.Level.String())
	b = append(b, `,"msg":`...)
	b = appendJSONString(b, r.Message)
	b = append(b, ',')
	b = append(b, h.prefix...)
	open := h.opened
	if r.NumAttrs() > 0 {
		for ; open < len(h.groups); open++ {
			b = appendJSONString(b, h.groups[open])
			b = append(b, ":{"...)
		}
		r.Attrs(func(a slog.Attr) bool {
			b = appendAttr(b, a)
			return true
		})
	}
	b = closeObject(b)
	for ; open > 0; open-- {
		b = append(b, '}')
	}
	b = append(b, '}', '\n')
	h.mu.Lock()
	defer h.mu.Unlock()
	_, err := h.w.Write(b)
	return err
}

// closeObject drops a trailing ',' (or an empty group's ':{' stays valid).
func closeObject(b []byte) []byte {
	if n := len(b); n > 0 && b[n-1] == ',' {
		return b[:n-1]
	}
	return b
}

// appendAttr appends "key":value, — with a trailing comma.
func appendAttr(b []byte, a slog.Attr) []byte {
	a.Value = a.Value.Resolve()
	if a.Equal(slog.Attr{}) {
		return b
	}
	if a.Value.Kind() == slog.KindGroup {
		attrs := a.Value.Group()
		if len(attrs) == 0 {
			return b
		}
		if a.Key == "" { // inline, as slog does
			for _, ga := range attrs {
				b = appendAttr(b, ga)
			}
			return b
		}
		b = appendJSONString(b, a.Key)
		b = append(b, ":{"...)
		for _, ga := range attrs {
			b = appendAttr(b, ga)
		}
		b = closeObject(b)
		return append(b, '}', ',')
	}
	b = appendJSONString(b, a.Key)
	b = append(b, ':')
	b = appendValue(b, a.Value)
	return append(b, ',')
}

func appendValue(b []byte, v slog.Value) []byte {
	switch v.Kind() {
	case slog.KindString:
		return appendJSONString(b, v.String())
	case slog.KindInt64:
		return strconv.AppendInt(b, v.Int64(), 10)
	case slog.KindUint64:
		return strconv.AppendUint(b, v.Uint64(), 10)
	case slog.KindFloat64:
		f := v.Float64()
		if f != f || f > 1e308 || f < -1e308 { // NaN and ±Inf are not JSON
			return appendJSONString(b, strconv.FormatFloat(f, 'g', -1, 64))
		}
		return strconv.AppendFloat(b, f, 'g', -1, 64)
	case slog.KindBool:
		return strconv.AppendBool(b, v.Bool())
	case slog.KindDuration:
		return strconv.AppendInt(b, int64(v.Duration()), 10) // nanoseconds, as slog.JSONHandler
	case slog.KindTime:
		b = append(b, '"')
		b = v.Time().AppendFormat(b, time.RFC3339Nano)
		return append(b, '"')
	default:
		switch x := v.Any().(type) {
		case error:
			return appendJSONString(b, x.Error())
		case fmt.Stringer:
			return appendJSONString(b, x.String())
		case []byte:
			return appendJSONString(b, string(x))
		default:
			return appendJSONString(b, fmt.Sprint(x))
		}
	}
}

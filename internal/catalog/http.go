package catalog

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/pulsefaas/pulse/contract"
)

// Source is what the catalog handler serves: *Catalog, or a view of it
// (gateway.WithRouting adds which replicas HAProxy routes).
type Source interface {
	Current() (contract.Catalog, time.Time, error)
}

var _ Source = (*Catalog)(nil)

// retryAfter is the Retry-After of a catalog that is not ready yet:
// the first poll takes milliseconds once the engine answers.
const retryAfter = 1 * time.Second

// NewHandler returns the read-only handler of GET contract.CatalogPath:
// the current catalog as JSON with its version as the ETag, 304 Not Modified
// to a request whose If-None-Match holds it, 503 until the first poll
// succeeded, 405 to anything but GET and HEAD. After a failed poll it keeps
// serving the last good catalog. It is a plain http.Handler, so it can be
// mounted on any server or router; it does not look at the path.
func NewHandler(src Source) http.Handler {
	return &handler{src: src}
}

type handler struct {
	src Source

	mu      sync.Mutex
	version string // of body
	body    []byte
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-cache")
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		writeError(w, http.StatusMethodNotAllowed, "method not allowed")
		return
	}
	cat, _, err := h.src.Current()
	if errors.Is(err, ErrNotReady) {
		w.Header().Set("Retry-After", strconv.Itoa(int(retryAfter/time.Second)))
		writeError(w, http.StatusServiceUnavailable, ErrNotReady.Error())
		return
	}
	etag := `"` + cat.Version + `"`
	w.Header().Set("ETag", etag)
	if etagMatches(r.Header.Get("If-None-Match"), etag) {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	body := h.encode(cat)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(body)
}

// encode returns cat as JSON, encoded once per version.
func (h *handler) encode(cat contract.Catalog) []byte {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.body == nil || h.version != cat.Version {
		b, err := json.Marshal(cat)
		if err != nil { // strings, ints and bools only: cannot happen
			panic("encode catalog: " + err.Error())
		}
		h.version, h.body = cat.Version, append(b, '\n')
	}
	return h.body
}

// etagMatches reports whether an If-None-Match value names etag, with the
// weak comparison RFC 9110 §13.1.2 prescribes for it.
func etagMatches(ifNoneMatch, etag string) bool {
	if ifNoneMatch == "" {
		return false
	}
	for _, tag := range strings.Split(ifNoneMatch, ",") {
		tag = strings.TrimSpace(tag)
		if tag == "*" || strings.TrimPrefix(tag, "W/") == etag {
			return true
		}
	}
	return false
}

// writeError answers with a JSON error.
func writeError(w http.ResponseWriter, code int, msg string) {
	b, _ := json.Marshal(struct {
		Error string `json:"error"`
	}{msg})
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)+1))
	w.WriteHeader(code)
	_, _ = w.Write(append(b, '\n'))
}

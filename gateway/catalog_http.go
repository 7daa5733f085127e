package gateway

import (
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/pulsefaas/pulse/contract"
)

// CatalogSource is what the catalog handler serves: *Catalog.
type CatalogSource interface {
	Current() (contract.Catalog, time.Time, error)
}

var _ CatalogSource = (*Catalog)(nil)

// catalogRetryAfter is the Retry-After of a catalog that is not ready yet:
// the first poll takes milliseconds once the engine answers.
const catalogRetryAfter = 1 * time.Second

// NewCatalogHandler returns the read-only handler of GET contract.CatalogPath:
// the current catalog as JSON with its version as the ETag, 304 Not Modified
// to a request whose If-None-Match holds it, 503 until the first poll
// succeeded, 405 to anything but GET and HEAD. After a failed poll it keeps
// catalogServing the last good catalog. It is a plain http.Handler, so it can be
// mounted on any server or router; it does not look at the path.
func NewCatalogHandler(src CatalogSource) http.Handler {
	return &catalogHandler{src: src}
}

type catalogHandler struct {
	src CatalogSource

	mu      sync.Mutex
	version string // of body
	body    []byte
}

func (h *catalogHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-cache")
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		writeCatalogError(w, http.StatusMethodNotAllowed, "method not allowed")
		return
	}
	cat, _, err := h.src.Current()
	if errors.Is(err, ErrCatalogNotReady) {
		w.Header().Set("Retry-After", strconv.Itoa(int(catalogRetryAfter/time.Second)))
		writeCatalogError(w, http.StatusServiceUnavailable, ErrCatalogNotReady.Error())
		return
	}
	etag := `"` + cat.Version + `"`
	w.Header().Set("ETag", etag)
	if catalogETagMatches(r.Header.Get("If-None-Match"), etag) {
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
func (h *catalogHandler) encode(cat contract.Catalog) []byte {
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

// catalogETagMatches reports whether an If-None-Match value names etag, with the
// weak comparison RFC 9110 §13.1.2 prescribes for it.
func catalogETagMatches(ifNoneMatch, etag string) bool {
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

// writeCatalogError answers with a JSON error.
func writeCatalogError(w http.ResponseWriter, code int, msg string) {
	b, _ := json.Marshal(struct {
		Error string `json:"error"`
	}{msg})
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)+1))
	w.WriteHeader(code)
	_, _ = w.Write(append(b, '\n'))
}

// RoutingSource says which replicas the gateway routes requests to:
// *Reconciler.
type RoutingSource interface {
	Routing() (map[string]map[string]bool, uint64)
}

var _ RoutingSource = (*Reconciler)(nil)

// WithRouting returns src with every replica's Routed set from routing and
// a version that changes when either does, so GET /v1/replicas tells a
// client (`pulse deploy`, `pulse scale --wait`) when the gateway really
// sends a new replica requests.
func WithRouting(src CatalogSource, routing RoutingSource) CatalogSource {
	return routedCatalog{src: src, routing: routing}
}

type routedCatalog struct {
	src     CatalogSource
	routing RoutingSource
}

func (c routedCatalog) Current() (contract.Catalog, time.Time, error) {
	cat, at, err := c.src.Current()
	if err != nil {
		return cat, at, err
	}
	routed, ver := c.routing.Routing()
	out := cat
	out.Version = cat.Version + "-" + strconv.FormatUint(ver, 10)
	out.Functions = make([]contract.CatalogFunction, len(cat.Functions))
	for i, fn := range cat.Functions {
		fn.Replicas = slices.Clone(fn.Replicas)
		for j := range fn.Replicas {
			fn.Replicas[j].Routed = routed[fn.Name][fn.Replicas[j].TaskID] && !fn.Replicas[j].Draining
		}
		out.Functions[i] = fn
	}
	return out, at, nil
}

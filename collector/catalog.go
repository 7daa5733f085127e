package collector

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/pulsefaas/pulse/contract"
)

// maxCatalogBytes caps the catalog's body: a few hundred bytes per replica.
const maxCatalogBytes = 16 << 20

// errCatalogStatus reports an answer other than 200 or 304.
var errCatalogStatus = errors.New("unexpected status")

// catalogReader polls pulsed's read-only catalog with If-None-Match, so an
// unchanged catalog costs a 304 and no decoding. It keeps the last good
// catalog; its caller decides what to log.
type catalogReader struct {
	client *http.Client
	url    string
	cur    contract.Catalog
	have   bool   // cur holds a catalog that was read
	etag   string // of cur, as pulsed sent it
}

// read fetches the catalog. changed says whether cur changed; on error cur
// is left as it was.
func (c *catalogReader) read(ctx context.Context) (changed bool, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.url, nil)
	if err != nil {
		return false, fmt.Errorf("catalog %s: %w", c.url, err)
	}
	req.Header.Set("Accept", "application/json")
	if c.have && c.etag != "" {
		req.Header.Set("If-None-Match", c.etag)
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return false, fmt.Errorf("catalog: %w", err)
	}
	defer func() {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		resp.Body.Close()
	}()
	switch resp.StatusCode {
	case http.StatusNotModified:
		if !c.have {
			return false, fmt.Errorf("catalog %s: 304 to a request without If-None-Match", c.url)
		}
		return false, nil
	case http.StatusOK:
	default:
		return false, fmt.Errorf("catalog %s: %w %s", c.url, errCatalogStatus, resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxCatalogBytes+1))
	if err != nil {
		return false, fmt.Errorf("catalog %s: read: %w", c.url, err)
	}
	if len(body) > maxCatalogBytes {
		return false, fmt.Errorf("catalog %s: larger than %d bytes", c.url, maxCatalogBytes)
	}
	cat, err := parseCatalog(body)
	if err != nil {
		return false, fmt.Errorf("catalog %s: %w", c.url, err)
	}
	etag := resp.Header.Get("ETag")
	if etag == "" {
		etag = `"` + cat.Version + `"`
	}
	changed = !c.have || cat.Version != c.cur.Version
	c.cur, c.have, c.etag = cat, true, etag
	return changed, nil
}

// parseCatalog decodes and checks a catalog. A function whose name could
// not be a chart ID or family, a duplicate, or a replica without task ID or
// address makes the whole catalog malformed: pulsed never sends one, so
// something else is answering.
func parseCatalog(body []byte) (contract.Catalog, error) {
	var cat contract.Catalog
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&cat); err != nil {
		return contract.Catalog{}, fmt.Errorf("decode: %w", err)
	}
	if dec.More() {
		return contract.Catalog{}, errors.New("decode: data after the catalog")
	}
	if cat.Version == "" {
		return contract.Catalog{}, errors.New("no version")
	}
	seen := make(map[string]bool, len(cat.Functions))
	for _, f := range cat.Functions {
		if !validFunctionName(f.Name) {
			return contract.Catalog{}, fmt.Errorf("function name %q: want 1-63 lower-case letters, digits and '-'", f.Name)
		}
		if seen[f.Name] {
			return contract.Catalog{}, fmt.Errorf("function %q listed twice", f.Name)
		}
		seen[f.Name] = true
		if f.Desired < 0 {
			return contract.Catalog{}, fmt.Errorf("function %q: desired %d", f.Name, f.Desired)
		}
		tasks := make(map[string]bool, len(f.Replicas))
		for _, r := range f.Replicas {
			if r.TaskID == "" || r.Addr == "" || strings.ContainsAny(r.Addr, "/?#@ \t") || tasks[r.TaskID] {
				return contract.Catalog{}, fmt.Errorf("function %q: replica %q at %q: want a unique task ID and host:port", f.Name, r.TaskID, r.Addr)
			}
			tasks[r.TaskID] = true
		}
	}
	return cat, nil
}

// validFunctionName reports whether name can be a chart family and part of
// a chart ID as is: what `pulse deploy` accepts (a DNS label).
func validFunctionName(name string) bool {
	if name == "" || len(name) > 63 {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

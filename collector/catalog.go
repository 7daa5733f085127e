package collector

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"

	"github.com/pulsefaas/pulse/collector/tlsclient"
	"github.com/pulsefaas/pulse/contract"
)

// maxCatalogBytes caps the catalog's body: a few hundred bytes per replica.
const maxCatalogBytes = 16 << 20

// catalogTLSKeys name the job keys a TLS failure's fix refers to.
var catalogTLSKeys = tlsclient.Keys{URL: "catalog_url", CAFile: "ca_file"}

// errCatalogStatus reports an answer other than 200 or 304.
var errCatalogStatus = errors.New("unexpected status")

// catalogReader polls pulsed's read-only catalog with If-None-Match, so an
// unchanged catalog costs a 304 and no decoding. It keeps the last good
// catalog; its caller decides what to log about reading it. Entries it
// skips it logs itself, once per entry and reason.
type catalogReader struct {
	client  *http.Client
	url     string
	ca      *tlsclient.CAFile // what an https:// url is verified with
	cur     contract.Catalog
	have    bool   // cur holds a catalog that was read
	etag    string // of cur, as pulsed sent it
	log     *slog.Logger
	skipped map[string]string // entry → reason, as logged
}

// read fetches the catalog. changed says whether cur changed; on error cur
// is left as it was.
func (c *catalogReader) read(ctx context.Context) (changed bool, err error) {
	etag := ""
	if c.have {
		etag = c.etag
	}
	resp, err := getPulsed(ctx, c.client, "catalog", c.url, c.ca, etag)
	if err != nil {
		return false, err
	}
	defer drainClose(resp.Body)
	switch resp.StatusCode {
	case http.StatusNotModified:
		if !c.have {
			return false, fmt.Errorf("catalog %s: 304 to a request without If-None-Match", c.url)
		}
		return false, nil
	}
	body, err := pulsedBody("catalog", c.url, resp, maxCatalogBytes)
	if err != nil {
		return false, err
	}
	cat, skipped, err := parseCatalog(body)
	if err != nil {
		return false, fmt.Errorf("catalog %s: %w", c.url, err)
	}
	noteSkipped(c.log, c.skipped, skipped, "skipping a catalog entry the collector cannot chart; the other functions are collected")
	etag = resp.Header.Get("ETag")
	if etag == "" {
		etag = `"` + cat.Version + `"`
	}
	changed = !c.have || cat.Version != c.cur.Version
	c.cur, c.have, c.etag = cat, true, etag
	return changed, nil
}

// getPulsed sends pulsed a GET for JSON at u (what names the answer in
// errors), with If-None-Match when etag is set. A failure to get an answer
// says what to check (tlsclient.Explain). Close the body with drainClose.
func getPulsed(ctx context.Context, client *http.Client, what, u string, ca *tlsclient.CAFile, etag string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", what, u, err)
	}
	req.Header.Set("Accept", "application/json")
	if etag != "" {
		req.Header.Set("If-None-Match", etag)
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, tlsclient.Explain(err, u, ca, catalogTLSKeys))
	}
	return resp, nil
}

// drainClose reads what is left of an answer's body, up to 64 KiB (so
// its keep-alive connection is used again), and closes it.
func drainClose(body io.ReadCloser) {
	_, _ = io.Copy(io.Discard, io.LimitReader(body, 64<<10))
	body.Close()
}

// noteSkipped logs the entries skipped in an answer (the catalog, the
// queues) with msg, each once for as long as it is skipped for the same
// reason (the catalog changes every time a replica does, and each change is
// read anew); seen holds what was logged.
func noteSkipped(log *slog.Logger, seen map[string]string, skipped []skippedEntry, msg string) {
	now := make(map[string]bool, len(skipped))
	for _, s := range skipped {
		now[s.entry] = true
		if seen[s.entry] == s.reason {
			continue
		}
		seen[s.entry] = s.reason
		log.Warn(msg, "entry", s.entry, "reason", s.reason)
	}
	for e := range seen {
		if !now[e] {
			delete(seen, e)
		}
	}
}

// skippedEntry is a function or replica parseCatalog left out (or a queue
// parseQueues left out), and why.
type skippedEntry struct{ entry, reason string }

// maxLoggedName caps a name as logged: a catalog entry may be anything.
const maxLoggedName = 80

func loggedName(s string) string {
	if len(s) > maxLoggedName {
		s = s[:maxLoggedName] + "..."
	}
	return strconv.Quote(s)
}

// parseCatalog decodes and checks a catalog. A body that is not a catalog
// (not JSON, no version) is an error: something else is answering. Within
// a catalog, an entry the collector cannot chart is skipped and reported,
// and the rest is kept: a function whose name could not be a chart ID and
// family (Swarm accepts service names like "Odd_Name", which `pulse deploy`
// does not make), a name listed twice (every copy), a negative desired
// count; a replica without task ID or host:port address, or a task listed
// twice in its function.
func parseCatalog(body []byte) (contract.Catalog, []skippedEntry, error) {
	var cat contract.Catalog
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&cat); err != nil {
		return contract.Catalog{}, nil, fmt.Errorf("decode: %w", err)
	}
	if dec.More() {
		return contract.Catalog{}, nil, errors.New("decode: data after the catalog")
	}
	if cat.Version == "" {
		return contract.Catalog{}, nil, errors.New("no version")
	}
	var skipped []skippedEntry
	count := make(map[string]int, len(cat.Functions))
	for _, f := range cat.Functions {
		count[f.Name]++
	}
	fns := cat.Functions[:0:0]
	for _, f := range cat.Functions {
		switch {
		case !validFunctionName(f.Name):
			skipped = append(skipped, skippedEntry{"function " + loggedName(f.Name), "the name is not 1-63 lower-case letters, digits and '-' (what pulse deploy makes), so it cannot name the function's charts"})
			continue
		case count[f.Name] > 1:
			skipped = append(skipped, skippedEntry{"function " + loggedName(f.Name), "listed more than once"})
			continue
		case f.Desired < 0:
			skipped = append(skipped, skippedEntry{"function " + loggedName(f.Name), fmt.Sprintf("desired replicas %d", f.Desired)})
			continue
		}
		tasks := make(map[string]int, len(f.Replicas))
		for _, r := range f.Replicas {
			tasks[r.TaskID]++
		}
		replicas := f.Replicas[:0:0]
		for _, r := range f.Replicas {
			entry := "replica " + loggedName(r.TaskID) + " of function " + f.Name
			switch {
			case r.TaskID == "":
				skipped = append(skipped, skippedEntry{entry + " at " + loggedName(r.Addr), "no task ID"})
			case tasks[r.TaskID] > 1:
				skipped = append(skipped, skippedEntry{entry, "listed more than once"})
			case r.Addr == "" || strings.ContainsAny(r.Addr, "/?#@ \t"):
				skipped = append(skipped, skippedEntry{entry, "address " + loggedName(r.Addr) + " is not host:port"})
			default:
				replicas = append(replicas, r)
			}
		}
		f.Replicas = replicas
		fns = append(fns, f)
	}
	cat.Functions = fns
	return cat, skipped, nil
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

// pulsedBody reads the body of pulsed's 200 answer (at most max bytes) for
// what (catalog, queues) at url; any other status is an error, which says
// what to fix when plain HTTP reached pulsed's HTTPS.
func pulsedBody(what, url string, resp *http.Response, max int) ([]byte, error) {
	if resp.StatusCode != http.StatusOK {
		head, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		if tlsclient.PlainToTLS(resp.StatusCode, head) {
			return nil, fmt.Errorf("%s %s: %w %s: the server serves HTTPS (pulsed's tls_cert is set); fix: use https:// in catalog_url and set ca_file (make up writes %s)", what, url, errCatalogStatus, resp.Status, tlsclient.DefaultCAFile)
		}
		return nil, fmt.Errorf("%s %s: %w %s", what, url, errCatalogStatus, resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, int64(max)+1))
	if err != nil {
		return nil, fmt.Errorf("%s %s: read: %w", what, url, err)
	}
	if len(body) > max {
		return nil, fmt.Errorf("%s %s: larger than %d bytes", what, url, max)
	}
	return body, nil
}

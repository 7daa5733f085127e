package collector

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"

	"github.com/pulsefaas/pulse/collector/tlsclient"
	"github.com/pulsefaas/pulse/contract"
)

// maxQueuesBytes caps the queues' body: about 200 bytes per function.
const maxQueuesBytes = 4 << 20

// errNoQueues: pulsed answered 404 on contract.QueuesPath, so it has no
// async queues (async is off, or pulsed predates it). Not a failure: the
// cycle has no queue data, and nothing is logged.
var errNoQueues = errors.New("pulsed serves no async queues (404)")

// queuesURL is where pulsed serves its queues: contract.QueuesPath at the
// catalog's base, i.e. catalog_url with its contract.CatalogPath suffix
// replaced (a catalog_url with another path: the host's root).
func queuesURL(catalogURL string) string {
	u, err := url.Parse(catalogURL)
	if err != nil {
		return catalogURL // Validate refused it; read fails and says so
	}
	base := ""
	if strings.HasSuffix(u.Path, contract.CatalogPath) {
		base = strings.TrimSuffix(u.Path, contract.CatalogPath)
	}
	u.Path, u.RawPath, u.RawQuery, u.Fragment = base+contract.QueuesPath, "", "", ""
	return u.String()
}

// queueReader reads pulsed's async queues, every cycle (they change with
// every request; pulsed sends no ETag). Entries it skips it logs itself,
// once per entry and reason.
type queueReader struct {
	client  *http.Client
	url     string
	ca      *tlsclient.CAFile
	log     *slog.Logger
	skipped map[string]string // entry → reason, as logged
}

// read fetches the queues, by function. A 404 is errNoQueues; an answer
// that is not a contract.Queues is an error.
func (q *queueReader) read(ctx context.Context) (map[string]contract.QueueStatus, error) {
	resp, err := getPulsed(ctx, q.client, "queues", q.url, q.ca, "")
	if err != nil {
		return nil, err
	}
	defer drainClose(resp.Body)
	if resp.StatusCode == http.StatusNotFound {
		return nil, errNoQueues
	}
	body, err := pulsedBody("queues", q.url, resp, maxQueuesBytes)
	if err != nil {
		return nil, err
	}
	qs, skipped, err := parseQueues(body)
	if err != nil {
		return nil, fmt.Errorf("queues %s: %w", q.url, err)
	}
	noteSkipped(q.log, q.skipped, skipped, "skipping an async queue entry the collector cannot chart; the other functions' queues are collected")
	return qs, nil
}

// parseQueues decodes pulsed's queues (contract.Queues) by function. A body
// that is not one (not JSON, no "queues" key, a count that is not a
// non-negative integer) is an error: something else is answering. An entry
// whose function name could not be a chart's, or a name listed more than
// once (every copy), is skipped and reported; the rest are kept.
func parseQueues(body []byte) (map[string]contract.QueueStatus, []skippedEntry, error) {
	var top map[string]json.RawMessage
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&top); err != nil {
		return nil, nil, fmt.Errorf("decode: %w", err)
	}
	if dec.More() {
		return nil, nil, errors.New("decode: data after the queues")
	}
	raw, ok := top["queues"]
	if !ok {
		return nil, nil, errors.New(`no "queues"`)
	}
	var list []contract.QueueStatus
	if err := json.Unmarshal(raw, &list); err != nil {
		return nil, nil, fmt.Errorf("decode queues: %w", err)
	}
	count := make(map[string]int, len(list))
	for _, s := range list {
		count[s.Function]++
	}
	var skipped []skippedEntry
	out := make(map[string]contract.QueueStatus, len(list))
	for _, s := range list {
		switch {
		case !validFunctionName(s.Function):
			skipped = append(skipped, skippedEntry{"queue of function " + loggedName(s.Function), "the name is not 1-63 lower-case letters, digits and '-', so it cannot name the function's charts"})
		case count[s.Function] > 1:
			skipped = append(skipped, skippedEntry{"queue of function " + loggedName(s.Function), "listed more than once"})
		default:
			out[s.Function] = s
		}
	}
	return out, skipped, nil
}

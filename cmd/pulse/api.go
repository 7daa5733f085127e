package main

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/pulsefaas/pulse/contract"
	"github.com/pulsefaas/pulse/function"
)

// apiTimeout bounds one request to pulsed's API: it answers from memory
// (keys: after writing its key file and updating HAProxy's map).
const apiTimeout = 10 * time.Second

// maxAPIAnswer bounds what the CLI reads of one answer of pulsed's API.
const maxAPIAnswer = 64 << 20

// apiClient talks to pulsed's API (config key api) over the configured TLS.
type apiClient struct {
	base string // without a trailing slash
	http *http.Client
	// token is the management token; read on first need (readToken).
	tokenFile string
}

func (a *app) api() (*apiClient, error) {
	hc, err := a.httpClient(apiTimeout, true)
	if err != nil {
		return nil, err
	}
	return &apiClient{base: strings.TrimRight(a.cfg.API, "/"), http: hc, tokenFile: a.cfg.TokenFile}, nil
}

// readToken reads the management token from the token file: pulsed's
// api_token_file, root's by default.
func readToken(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		how := "set token_file in the config (or " + configKeys["token_file"] + ") to a file holding pulsed's api_token_file's token"
		if errors.Is(err, os.ErrPermission) {
			how = "run as root (sudo pulse key …), or " + how + " that you may read"
		}
		return "", fmt.Errorf("management token: cannot read %s (token_file): %w; %s", path, err, how)
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return "", fmt.Errorf("management token: %s (token_file) is empty; it must hold pulsed's api_token_file's token", path)
	}
	if strings.ContainsAny(tok, " \t\r\n") {
		return "", fmt.Errorf("management token: %s (token_file) holds more than one line or word; it must hold the token alone", path)
	}
	return tok, nil
}

// apiError is an error answer of pulsed's API: its status and its JSON
// {"error": "..."} message.
type apiError struct {
	status int
	msg    string
}

func (e *apiError) Error() string {
	return fmt.Sprintf("pulsed answered %d %s: %s", e.status, http.StatusText(e.status), e.msg)
}

// unreachableError is a request to pulsed's API that got no answer.
type unreachableError struct{ error }

func (e unreachableError) Unwrap() error { return e.error }

// parseErrorAnswer reads an error answer of pulsed's API or the gateway:
// the message of a JSON {"error": "..."}, else the start of the body as
// text.
func parseErrorAnswer(body []byte) string {
	var e struct {
		Error string `json:"error"`
	}
	if json.Unmarshal(body, &e) == nil && e.Error != "" {
		return sanitize(e.Error, 500)
	}
	return cmp.Or(sanitize(strings.TrimSpace(string(body)), 200), "no body")
}

// sanitize keeps a server's words to one printable line of at most n
// runes: no terminal escapes from a remote answer.
func sanitize(s string, n int) string {
	var b strings.Builder
	i := 0
	for _, r := range s {
		if i == n {
			b.WriteString("…")
			break
		}
		switch {
		case r == '\n' || r == '\r' || r == '\t':
			r = ' '
		case r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) || r == '\uFFFD':
			r = '?'
		}
		b.WriteRune(r)
		i++
	}
	return b.String()
}

// do sends one request to the management API with the token, and decodes
// a 2xx answer's JSON into out (nil: none expected).
func (c *apiClient) do(ctx context.Context, method, path string, body, out any) error {
	data, err := c.send(ctx, method, path, body, true)
	if err != nil || out == nil {
		return err
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("pulsed's API at %s: not the answer expected of %s %s: %w", c.base, method, path, err)
	}
	return nil
}

// send sends one request to pulsed's API, with the management token when
// withToken (the token is then read first, and never sent over plain http
// to another host), and returns a 2xx answer's body. A non-2xx answer is
// an *apiError (401 with the token said to be wrong).
func (c *apiClient) send(ctx context.Context, method, path string, body any, withToken bool) ([]byte, error) {
	var tok string
	if withToken {
		if err := requireConfidential(c.base, "api", "the management token"); err != nil {
			return nil, err
		}
		var err error
		if tok, err = readToken(c.tokenFile); err != nil {
			return nil, err
		}
	}
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return nil, err
	}
	if withToken {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		var ce *certError
		if errors.As(err, &ce) {
			return nil, ce
		}
		return nil, unreachableError{fmt.Errorf("pulsed's API at %s: %w; is pulsed running there? Its API is set by the config key api (%s)", c.base, explainTransport(err), configKeys["api"])}
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxAPIAnswer))
	if err != nil {
		return nil, fmt.Errorf("pulsed's API at %s: reading the answer: %w", c.base, err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		e := &apiError{status: resp.StatusCode, msg: parseErrorAnswer(data)}
		if resp.StatusCode == http.StatusUnauthorized && withToken {
			return nil, fmt.Errorf("%w; token_file %s does not hold the token of this pulsed's api_token_file", e, c.tokenFile)
		}
		return nil, e
	}
	return data, nil
}

// catalogClient reads pulsed's replica catalog (GET contract.CatalogPath,
// no token), asking with the last ETag. Before pulsed's first reading of the
// swarm (503) it asks again until ctx ends. Errors wrap
// function.ErrCatalog and name the URL.
//
// function.CatalogClient does the same over a client without the CLI's TLS
// settings; this one verifies an https api as configured.
type catalogClient struct {
	api *apiClient

	mu   sync.Mutex
	etag string
	last contract.Catalog
}

var _ function.CatalogSource = (*catalogClient)(nil)

// catalogPoll is how often Catalog asks a pulsed that is not ready yet.
const catalogPoll = 200 * time.Millisecond

func (c *catalogClient) url() string { return c.api.base + contract.CatalogPath }

func (c *catalogClient) Catalog(ctx context.Context) (contract.Catalog, error) {
	for {
		cat, pending, err := c.fetch(ctx)
		if err != nil || pending == "" {
			return cat, err
		}
		select {
		case <-ctx.Done():
			return contract.Catalog{}, fmt.Errorf("%w at %s: %s (%w)", function.ErrCatalog, c.url(), pending, context.Cause(ctx))
		case <-time.After(catalogPoll):
		}
	}
}

// fetch asks once; pending says why pulsed has no catalog yet.
func (c *catalogClient) fetch(ctx context.Context) (cat contract.Catalog, pending string, err error) {
	fail := func(err error) (contract.Catalog, string, error) {
		return contract.Catalog{}, "", fmt.Errorf("%w at %s: %w", function.ErrCatalog, c.url(), err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.url(), nil)
	if err != nil {
		return fail(err)
	}
	c.mu.Lock()
	etag := c.etag
	c.mu.Unlock()
	if etag != "" {
		req.Header.Set("If-None-Match", etag)
	}
	resp, err := c.api.http.Do(req)
	if err != nil {
		return fail(explainTransport(err))
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxAPIAnswer))
	if err != nil {
		return fail(err)
	}
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusNotModified:
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.last, "", nil
	case http.StatusServiceUnavailable: // before pulsed's first poll
		return contract.Catalog{}, "pulsed's replica catalog is not ready yet: " + parseErrorAnswer(body), nil
	default:
		return fail(fmt.Errorf("%s: %s", resp.Status, parseErrorAnswer(body)))
	}
	if err := json.Unmarshal(body, &cat); err != nil {
		return fail(fmt.Errorf("not a replica catalog: %w", err))
	}
	c.mu.Lock()
	c.etag, c.last = resp.Header.Get("ETag"), cat
	c.mu.Unlock()
	return cat, "", nil
}

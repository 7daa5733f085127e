package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/pulsefaas/pulse/contract"
)

func (a *app) invokeCmd() *cobra.Command {
	var (
		data    string
		headers []string
		query   []string
		method  string
		path    string
		keyFile string
		timeout time.Duration
		verbose bool
		// Asynchronous invoke (issue 16).
		async    bool
		callback string
		asJSON   bool
	)
	cmd := &cobra.Command{
		Use:   "invoke NAME",
		Short: "Call a function through the gateway",
		Long: `Call a function through the gateway (config key gateway, PULSE_GATEWAY; default
http://127.0.0.1:8080). Replicas answer only the gateway, so there is no way around it.

A function with invoke keys (pulse key) needs one: the CLI sends the key in PULSE_KEY, or the
one in the file --key-file names, as "Authorization: Bearer KEY". There is no --key flag: a key
on the command line is visible to every local user (ps) and kept in shell history. A key is
sent over plain http:// only to a gateway on this host.

The answer's body goes to stdout; a non-2xx answer exits 1 with a line saying what it means
(the gateway's own errors are JSON {"error": "..."}).

With --async the request goes to the gateway's ` + contract.AsyncFunctionPrefix + `NAME instead: pulsed stores
it and answers 202 at once, then calls the function (retrying what may succeed later)
and, with --callback URL, POSTs the result there (headers ` + contract.HeaderAsyncRequestID + `,
` + contract.HeaderAsyncState + `, ` + contract.HeaderAsyncStatus + `). The request id alone goes to stdout (--json:
the 202's body); ` + "`pulse queue inspect ID`" + ` shows the request's state, --wait until it ends.`,
		Example: "  pulse invoke hello -d world\n  pulse invoke echo -d @body.json -H Content-Type=application/json --query a=1\n  echo hi | pulse invoke hello -d -\n  PULSE_KEY=$(cat hello.key) pulse invoke hello\n  pulse invoke hello --key-file hello.key\n" +
			"  id=$(pulse invoke --async resize -d @photo.jpg) && pulse queue inspect \"$id\" --wait\n  pulse invoke --async resize -d @photo.jpg --callback https://app.example/done",
		Args:              exactArgs(1, "NAME"),
		ValidArgsFunction: a.completeFunctions,
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			if msg := contract.FunctionNameProblem(name); msg != "" {
				return usagef("NAME %q: %s", name, msg)
			}
			if err := checkAsyncFlags(async, callback, asJSON); err != nil {
				return err
			}
			body, err := a.readData(data)
			if err != nil {
				return err
			}
			q := url.Values{}
			for _, kv := range query {
				k, v, ok := strings.Cut(kv, "=")
				if !ok || k == "" {
					return usagef("--query %q: want key=value", kv)
				}
				q.Add(k, v)
			}
			if !strings.HasPrefix(path, "/") {
				path = "/" + path
			}
			key, err := a.invokeKey(keyFile)
			if err != nil {
				return err
			}
			prefix := "/function/"
			if async {
				prefix = contract.AsyncFunctionPrefix
			}
			u := strings.TrimSuffix(a.cfg.Gateway, "/") + prefix + name + path
			if len(q) > 0 {
				u += "?" + q.Encode()
			}
			req, err := http.NewRequestWithContext(cmd.Context(), method, u, bytes.NewReader(body))
			if err != nil {
				return usageError{err}
			}
			for _, h := range headers {
				k, v, ok := strings.Cut(h, "=")
				if !ok {
					k, v, ok = strings.Cut(h, ":")
				}
				if !ok || strings.TrimSpace(k) == "" {
					return usagef("-H %q: want Name=value", h)
				}
				req.Header.Add(strings.TrimSpace(k), strings.TrimSpace(v))
			}
			if callback != "" {
				if req.Header.Get(contract.HeaderCallbackURL) != "" {
					return usagef("a %s header (-H) and --callback both given: use --callback", contract.HeaderCallbackURL)
				}
				req.Header.Set(contract.HeaderCallbackURL, callback)
			}
			if key != "" {
				if req.Header.Get("Authorization") != "" {
					return usagef("an Authorization header (-H) and a key (PULSE_KEY or --key-file) both given: use one")
				}
				if err := requireConfidential(a.cfg.Gateway, "gateway", "the invoke key"); err != nil {
					return err
				}
				req.Header.Set("Authorization", "Bearer "+key)
			}
			// One request, one connection: none is kept idle for later (a
			// connection opened before an HAProxy reload is served by the
			// retired worker, which knows no function added since).
			req.Close = true
			hc, err := a.httpClient(timeout, false)
			if err != nil {
				return err
			}
			resp, err := hc.Do(req)
			if err != nil {
				var ce *certError
				if errors.As(err, &ce) {
					return fmt.Errorf("invoke %s: %w", name, ce)
				}
				return fmt.Errorf("invoke %s: %w; is the gateway running there? It is set by the config key gateway (%s)", name, explainTransport(err), configKeys["gateway"])
			}
			defer resp.Body.Close()
			if verbose {
				fmt.Fprintf(a.err, "%s %s → %s\n", method, u, resp.Status)
			}
			if async {
				return a.asyncAnswer(name, resp, asJSON, key != "", callback != "")
			}
			ok := resp.StatusCode >= 200 && resp.StatusCode <= 299
			if ok {
				if _, err := io.Copy(a.out, resp.Body); err != nil {
					return fmt.Errorf("invoke %s: reading the answer: %w", name, err)
				}
				return nil
			}
			// Keep the start of an error answer to explain it; the whole of
			// it still goes to stdout.
			var head bytes.Buffer
			if _, err := io.Copy(a.out, io.TeeReader(io.LimitReader(resp.Body, 64<<10), &head)); err != nil {
				return fmt.Errorf("invoke %s: reading the answer: %w", name, err)
			}
			if _, err := io.Copy(a.out, resp.Body); err != nil {
				return fmt.Errorf("invoke %s: reading the answer: %w", name, err)
			}
			return fmt.Errorf("invoke %s: %s", name, explainAnswer(name, resp.StatusCode, resp.Header.Get("Content-Type"), head.Bytes(), key != ""))
		},
	}
	f := cmd.Flags()
	f.StringVarP(&data, "data", "d", "", "request body: text, @file, or - for stdin")
	f.StringArrayVarP(&headers, "header", "H", nil, "request header Name=value (repeatable)")
	f.StringArrayVar(&query, "query", nil, "query parameter key=value (repeatable)")
	f.StringVarP(&method, "method", "X", http.MethodPost, "HTTP method")
	f.StringVar(&path, "path", "/", "path after the function's name")
	f.StringVar(&keyFile, "key-file", "", "send the invoke key in this file (else PULSE_KEY's)")
	f.DurationVar(&timeout, "timeout", time.Minute, "give up after this long")
	f.BoolVarP(&verbose, "verbose", "v", false, "print the URL and status to stderr")
	f.BoolVar(&async, "async", false, "queue the request (pulsed calls the function later) and print its id")
	f.StringVar(&callback, "callback", "", "with --async: POST the result to this http:// or https:// URL")
	f.BoolVar(&asJSON, "json", false, "with --async: print the 202's JSON body instead of the id alone")
	return cmd
}

// invokeKey is the key to send: --key-file's, else PULSE_KEY's, else none.
func (a *app) invokeKey(keyFile string) (string, error) {
	if keyFile != "" {
		b, err := os.ReadFile(keyFile)
		if err != nil {
			return "", usagef("--key-file: %v", err)
		}
		k, err := parseKey(b)
		if err != nil {
			return "", usagef("--key-file %s: %v", keyFile, err)
		}
		return k, nil
	}
	if v := a.env("PULSE_KEY"); v != "" {
		k, err := parseKey([]byte(v))
		if err != nil {
			return "", usagef("PULSE_KEY: %v", err)
		}
		return k, nil
	}
	return "", nil
}

// explainAnswer says what a non-2xx answer means. The gateway's own answers
// are JSON {"error": "..."}: "function not found" with the function's name
// means the gateway has no such function; others are said with their
// message and what to do. A function's own answer is said by its status.
func explainAnswer(name string, status int, contentType string, body []byte, sentKey bool) string {
	var e struct {
		Error    *string `json:"error"`
		Function *string `json:"function"`
	}
	isJSON := strings.HasPrefix(strings.ToLower(strings.TrimSpace(contentType)), "application/json")
	gw := isJSON && json.Unmarshal(body, &e) == nil && e.Error != nil
	msg := ""
	if gw {
		msg = sanitize(*e.Error, 300)
	}
	line := fmt.Sprintf("%d %s", status, http.StatusText(status))
	if msg != "" {
		line += ": " + msg
	}
	switch {
	case status == http.StatusBadRequest && bytes.Contains(body, []byte("Client sent an HTTP request to an HTTPS server")):
		return fmt.Sprintf("the server answered %s: it speaks TLS: use an https:// URL", line)
	case status == http.StatusNotFound && gw && e.Function != nil && *e.Function == name:
		return fmt.Sprintf("%s is not deployed, or the gateway does not route it (yet): the gateway answered %s; `pulse ls` lists the deployed functions (and the services the gateway skips), `pulse deploy` deploys it", name, line)
	case status == http.StatusNotFound && gw && msg == "not found":
		return fmt.Sprintf("the gateway answered %s: the path is not a function's (it has /function/NAME/... only, and /_/ is reserved); check --path", line)
	case status == http.StatusUnauthorized && gw && !sentKey:
		return fmt.Sprintf("the gateway answered %s: %s needs an invoke key: set PULSE_KEY or --key-file (`pulse key add %s` makes one)", line, name, name)
	case status == http.StatusUnauthorized && gw:
		return fmt.Sprintf("the gateway answered %s: the key sent is not one of %s's (`pulse key ls %s` lists their ids)", line, name, name)
	case status == http.StatusRequestEntityTooLarge && gw:
		return fmt.Sprintf("the gateway answered %s: the body is over %s's max_body", line, name)
	case status == http.StatusServiceUnavailable && gw:
		return fmt.Sprintf("the gateway answered %s: no replica of %s is ready; `pulse describe %s` shows them", line, name, name)
	case gw:
		return "the gateway or the function answered " + line
	}
	return "the function answered " + line
}

// readData reads -d: text, @file, or - for stdin.
func (a *app) readData(d string) ([]byte, error) {
	switch {
	case d == "-":
		return io.ReadAll(a.in)
	case strings.HasPrefix(d, "@"):
		b, err := os.ReadFile(d[1:])
		if err != nil {
			return nil, usagef("-d %s: %v", d, err)
		}
		return b, nil
	}
	return []byte(d), nil
}

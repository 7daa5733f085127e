package main

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

func (a *app) invokeCmd() *cobra.Command {
	var (
		data    string
		headers []string
		query   []string
		method  string
		path    string
		timeout time.Duration
		verbose bool
	)
	cmd := &cobra.Command{
		Use:   "invoke NAME",
		Short: "Call a function",
		Long: `Call a function: through the gateway when one is configured (gateway in the config or
PULSE_GATEWAY), otherwise straight to one of its replicas from the Swarm task list.
The answer's body goes to stdout; a non-2xx answer exits 1.`,
		Example:           "  pulse invoke hello -d world\n  pulse invoke echo -d @body.json -H Content-Type=application/json --query a=1\n  echo hi | pulse invoke hello -d -",
		Args:              exactArgs(1, "NAME"),
		ValidArgsFunction: a.completeFunctions,
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
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
			var base string
			if a.cfg.Gateway != "" {
				base = strings.TrimSuffix(a.cfg.Gateway, "/") + "/function/" + name
			} else {
				sw, err := a.swarm()
				if err != nil {
					return err
				}
				eps, err := sw.Endpoints(cmd.Context(), name)
				if err != nil {
					return explain(err, name)
				}
				if len(eps) == 0 {
					return fmt.Errorf("%s has no running replica; `pulse describe %s` shows why, `pulse scale %s 1` starts one", name, name, name)
				}
				base = "http://" + eps[rand.IntN(len(eps))].Addr
			}
			u := base + path
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
			// One request, one connection: none is kept idle for later (a
			// connection opened before an HAProxy reload is served by the
			// retired worker, which knows no function added since).
			req.Close = true
			resp, err := (&http.Client{Timeout: timeout}).Do(req)
			if err != nil {
				return fmt.Errorf("invoke %s: %w", name, err)
			}
			defer resp.Body.Close()
			if verbose {
				fmt.Fprintf(a.err, "%s %s → %s\n", method, u, resp.Status)
			}
			if _, err := io.Copy(a.out, resp.Body); err != nil {
				return fmt.Errorf("invoke %s: reading the answer: %w", name, err)
			}
			if resp.StatusCode < 200 || resp.StatusCode > 299 {
				return fmt.Errorf("invoke %s: the function answered %s", name, resp.Status)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVarP(&data, "data", "d", "", "request body: text, @file, or - for stdin")
	f.StringArrayVarP(&headers, "header", "H", nil, "request header Name=value (repeatable)")
	f.StringArrayVar(&query, "query", nil, "query parameter key=value (repeatable)")
	f.StringVarP(&method, "method", "X", http.MethodPost, "HTTP method")
	f.StringVar(&path, "path", "/", "path after the function's name")
	f.DurationVar(&timeout, "timeout", time.Minute, "give up after this long")
	f.BoolVarP(&verbose, "verbose", "v", false, "print the URL and status to stderr")
	return cmd
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

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
	"net/url"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/pulsefaas/pulse/contract"
)

// Asynchronous invocation (issue 16): `pulse invoke --async` queues a
// request through the gateway's contract.AsyncFunctionPrefix; `pulse queue
// ls` reads pulsed's queue depths (contract.QueuesPath, no token) and `pulse
// queue inspect` one request's state (contract.AsyncRequestsPath, with the
// management token).

// maxRequestIDLen bounds a request id: pulsed makes short ones; anything
// longer is a mistake (a pasted body, two ids).
const maxRequestIDLen = 64

// Polling of `pulse queue inspect --wait`.
const (
	asyncPollInterval = 200 * time.Millisecond
	defaultWaitAsync  = time.Minute
)

// maxAsyncAcceptBody bounds what the CLI reads of the gateway's answer to
// an async invoke: a small JSON object, or an error.
const maxAsyncAcceptBody = 64 << 10

// requestIDProblem says what is wrong with an async request id ("" when
// nothing is): 1 to 64 letters, digits, '-' and '_' — a path segment that
// needs no escaping and prints safely.
func requestIDProblem(id string) string {
	if id == "" {
		return "empty: want the id `pulse invoke --async` printed"
	}
	if len(id) > maxRequestIDLen {
		return fmt.Sprintf("%d characters: want 1 to %d letters, digits, '-' and '_'", len(id), maxRequestIDLen)
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_':
		case c >= 0x80:
			return fmt.Sprintf("a non-ASCII character at byte %d: want letters, digits, '-' and '_' only", i+1)
		default:
			return fmt.Sprintf("%q at character %d: want letters, digits, '-' and '_' only", c, i+1)
		}
	}
	return ""
}

// checkAsyncFlags checks invoke's async flags against each other before
// anything is read or sent.
func checkAsyncFlags(async bool, callback string, asJSON bool) error {
	if !async {
		switch {
		case callback != "":
			return usagef("--callback needs --async: only a queued request has a result to post back")
		case asJSON:
			return usagef("--json needs --async: a synchronous invoke prints the function's answer as it is")
		}
		return nil
	}
	if callback != "" {
		if msg := callbackProblem(callback); msg != "" {
			return usagef("--callback %q: %s", callback, msg)
		}
	}
	return nil
}

// callbackProblem says what is wrong with a callback URL that pulsed
// could never post to ("" when nothing is); pulsed may refuse more (400).
func callbackProblem(raw string) string {
	u, err := url.Parse(raw)
	switch {
	case err != nil:
		return fmt.Sprintf("not a URL: %v", errors.Unwrap(err))
	case u.Scheme != "http" && u.Scheme != "https":
		return "want an absolute http:// or https:// URL, e.g. https://app.example/done"
	case u.Host == "" || u.Hostname() == "":
		return "no host: want an absolute http:// or https:// URL, e.g. https://app.example/done"
	case u.Fragment != "":
		return "has a #fragment, which is never sent: remove it"
	}
	return ""
}

// asyncAnswer reads the gateway's answer to an async invoke: a 202 prints
// the request id (asJSON: the 202's body); anything else is an error that
// says what to fix. Nothing goes to stdout then: it holds only an id, for
// `id=$(pulse invoke --async f)`.
func (a *app) asyncAnswer(name string, resp *http.Response, asJSON, sentKey, sentCallback bool) error {
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxAsyncAcceptBody))
	if err != nil {
		return fmt.Errorf("invoke --async %s: reading the answer: %w", name, err)
	}
	if resp.StatusCode != http.StatusAccepted {
		return fmt.Errorf("invoke --async %s: %s", name, explainAsyncAnswer(name, resp.StatusCode, resp.Header.Get("Content-Type"), body, sentKey, sentCallback))
	}
	acc, err := parseAsyncAccepted(body, resp.Header.Get(contract.HeaderAsyncRequestID))
	if err != nil {
		return fmt.Errorf("invoke --async %s: the gateway answered 202 Accepted, but %w", name, err)
	}
	if asJSON {
		if err := a.printRawJSON(body); err != nil {
			return err
		}
	} else {
		fmt.Fprintln(a.out, acc.RequestID)
	}
	fmt.Fprintf(a.err, "%s: request %s %s; `pulse queue inspect %s` shows its state (--wait: until it ends)\n",
		name, acc.RequestID, sanitize(acc.State, 20), acc.RequestID)
	return nil
}

// parseAsyncAccepted reads a 202's body; the id in the header (headerID,
// "" if none) must agree with it. The id is checked, so it prints safely.
func parseAsyncAccepted(body []byte, headerID string) (contract.AsyncAccepted, error) {
	var acc contract.AsyncAccepted
	if err := json.Unmarshal(body, &acc); err != nil {
		return acc, fmt.Errorf("its body is not the JSON expected ({request_id, function, state}): %v", err)
	}
	if acc.RequestID == "" {
		acc.RequestID = headerID
	}
	if msg := requestIDProblem(acc.RequestID); msg != "" {
		return acc, fmt.Errorf("its request id is unusable: %s", msg)
	}
	if headerID != "" && headerID != acc.RequestID {
		return acc, fmt.Errorf("its %s header (%q) and body (%q) name different requests", contract.HeaderAsyncRequestID, sanitize(headerID, 70), acc.RequestID)
	}
	if acc.State == "" {
		acc.State = contract.AsyncQueued
	}
	return acc, nil
}

// explainAsyncAnswer says what a non-202 answer to an async invoke means.
// The gateway and pulsed's async listener answer JSON {"error": "..."}.
// Answers both paths share (401, 404 for an unknown function, 413) are
// said as for a synchronous invoke.
func explainAsyncAnswer(name string, status int, contentType string, body []byte, sentKey, sentCallback bool) string {
	var e struct {
		Error *string `json:"error"`
	}
	isJSON := strings.HasPrefix(strings.ToLower(strings.TrimSpace(contentType)), "application/json")
	gw := isJSON && json.Unmarshal(body, &e) == nil && e.Error != nil
	line := fmt.Sprintf("%d %s", status, http.StatusText(status))
	if gw {
		if msg := sanitize(*e.Error, 300); msg != "" {
			line += ": " + msg
		}
	}
	switch {
	case status >= 200 && status <= 299:
		return fmt.Sprintf("the gateway answered %s, not 202 Accepted: nothing was queued; is %s Pulse's gateway, with async invoke?", line, contract.AsyncFunctionPrefix)
	case status == http.StatusBadRequest && gw && sentCallback && strings.Contains(*e.Error, contract.HeaderCallbackURL):
		return fmt.Sprintf("the gateway answered %s: fix --callback (an http:// or https:// URL that pulsed may post to)", line)
	case status == http.StatusBadRequest && gw:
		return fmt.Sprintf("the gateway answered %s: fix the request (-H, --path, --query)", line)
	case status == http.StatusNotFound && gw && *e.Error == "not found":
		return fmt.Sprintf("the gateway answered %s: it has no %s path: its pulsed predates async invoke, or --path is wrong", line, contract.AsyncFunctionPrefix)
	case status == http.StatusTooManyRequests && gw:
		return fmt.Sprintf("the gateway answered %s: over %s's rate limit (`pulse describe %s` shows it) or its async queue is full (`pulse queue ls`); try again later", line, name, name)
	case status == http.StatusServiceUnavailable && gw:
		return fmt.Sprintf("the gateway answered %s: pulsed cannot queue the request now; `pulse queue ls` shows the queues, `pulse doctor` checks pulsed; try again later", line)
	case gw && (status == http.StatusUnauthorized || status == http.StatusNotFound || status == http.StatusRequestEntityTooLarge):
		return explainAnswer(name, status, contentType, body, sentKey)
	case gw:
		return "the gateway answered " + line
	}
	return fmt.Sprintf("the gateway answered %s: %s (not the gateway's JSON error: is PULSE_GATEWAY Pulse's gateway?)", line, parseErrorAnswer(body))
}

// printRawJSON prints a JSON answer as the server sent it (every field,
// also those this CLI does not know), indented as printJSON does.
func (a *app) printRawJSON(b []byte) error {
	var out bytes.Buffer
	if err := json.Indent(&out, bytes.TrimSpace(b), "", "  "); err != nil {
		return fmt.Errorf("not JSON: %w", err)
	}
	out.WriteByte('\n')
	_, err := a.out.Write(out.Bytes())
	return err
}

func (a *app) queueCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "queue",
		Short: "Show asynchronous invocations: queues and requests (pulse invoke --async)",
		Long: `pulse invoke --async queues a request in pulsed, which calls the function later (retrying
what may succeed later) and posts the result to the callback URL, if one was given.

queue ls reads pulsed's API (config key api) without a token; queue inspect sends the
management token in token_file (default ` + contract.DefaultAPITokenFile + `, root's), as pulse key does.`,
		Example: "  pulse queue ls\n  pulse queue inspect \"$id\" --wait",
	}
	return withSubcommands(cmd, a.queueLsCmd(), a.queueInspectCmd())
}

func (a *app) queueLsCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List the async queues: depth, oldest request, counts since pulsed started",
		Long: `List every function's async queue: DEPTH requests not finished (PENDING waiting for
dispatch, IN-FLIGHT being dispatched or waiting for a retry), the age of the OLDEST of them,
and the requests ENQUEUED, DONE, FAILED and RETRIED since pulsed started.`,
		Example: "  pulse queue ls\n  pulse queue ls --json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			api, err := a.api()
			if err != nil {
				return err
			}
			body, err := api.send(cmd.Context(), http.MethodGet, contract.QueuesPath, nil, false)
			if err != nil {
				var ae *apiError
				if errors.As(err, &ae) && ae.status == http.StatusNotFound {
					return fmt.Errorf("queue ls: %w: this pulsed has no %s: it predates async invoke", err, contract.QueuesPath)
				}
				return fmt.Errorf("queue ls: %w", err)
			}
			var qs contract.Queues
			if err := json.Unmarshal(body, &qs); err != nil {
				return fmt.Errorf("queue ls: pulsed's API at %s: not the answer expected of GET %s: %w", api.base, contract.QueuesPath, err)
			}
			if asJSON {
				return a.printRawJSON(body)
			}
			if len(qs.Queues) == 0 {
				fmt.Fprintln(a.err, "no async queues: no function has had an async request since pulsed started")
				return nil
			}
			return renderQueues(a.out, qs)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print pulsed's JSON")
	return cmd
}

// renderQueues writes queue ls's table.
func renderQueues(w io.Writer, qs contract.Queues) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "FUNCTION\tDEPTH\tPENDING\tIN-FLIGHT\tOLDEST\tENQUEUED\tDONE\tFAILED\tRETRIED")
	for _, q := range qs.Queues {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%s\t%d\t%d\t%d\t%d\n", sanitize(q.Function, 63), q.Depth, q.Pending, q.InFlight,
			formatAge(q.OldestAge), q.Enqueued, q.Done, q.Failed, q.Retried)
	}
	return tw.Flush()
}

// formatAge writes an age in seconds for a person: "-" for none, "<1s",
// then the two largest units: 42s, 4m05s, 2h03m, 3d04h.
func formatAge(sec float64) string {
	if !(sec > 0) { // also NaN
		return "-"
	}
	if sec < 1 {
		return "<1s"
	}
	if sec > 1e9 { // ~31 years: not an age pulsed keeps
		return ">31y"
	}
	s := int64(sec)
	switch {
	case s < 60:
		return fmt.Sprintf("%ds", s)
	case s < 3600:
		return fmt.Sprintf("%dm%02ds", s/60, s%60)
	case s < 86400:
		return fmt.Sprintf("%dh%02dm", s/3600, s%3600/60)
	}
	return fmt.Sprintf("%dd%02dh", s/86400, s%86400/3600)
}

func (a *app) queueInspectCmd() *cobra.Command {
	var (
		asJSON  bool
		wait    bool
		timeout time.Duration
	)
	cmd := &cobra.Command{
		Use:   "inspect REQUEST-ID",
		Short: "Show an async request's state; --wait until it ends",
		Long: `Show an async request's state (the id pulse invoke --async printed): its function, state
(queued, running, done, failed), the function's HTTP status, attempts, the last error, the
callback and whether it was delivered, and its times. pulsed keeps an ended request for its
retention period; after that the id is unknown.

With --wait, ask every 200ms until the request is done or failed (at most --timeout), print
it, and exit 0 only if it is done with a 2xx status: 1 if it failed, the function answered
otherwise, or the time ran out.`,
		Example:           "  pulse queue inspect 7f3a9c2e-41d0-4c6e-9b8a-2f5d1e0c6a11\n  pulse queue inspect \"$id\" --wait --timeout 5m\n  pulse queue inspect \"$id\" --json",
		Args:              exactArgs(1, "REQUEST-ID"),
		ValidArgsFunction: cobra.NoFileCompletions,
		RunE: func(cmd *cobra.Command, args []string) error {
			id := args[0]
			if msg := requestIDProblem(id); msg != "" {
				return usagef("REQUEST-ID %q: %s", sanitize(id, 80), msg)
			}
			if wait && timeout <= 0 {
				return usagef("--timeout %s: want a duration > 0", timeout)
			}
			api, err := a.api()
			if err != nil {
				return err
			}
			var (
				req  contract.AsyncRequest
				body []byte
			)
			if wait {
				req, body, err = waitAsyncRequest(cmd.Context(), api, id, timeout, asyncPollInterval)
			} else {
				req, body, err = getAsyncRequest(cmd.Context(), api, id)
			}
			if body != nil { // the last state read, also when waiting ran out
				if asJSON {
					if perr := a.printRawJSON(body); perr != nil {
						return perr
					}
				} else {
					renderAsyncRequest(a.out, req, time.Now())
				}
			}
			if err != nil {
				return fmt.Errorf("queue inspect %s: %w", id, err)
			}
			if wait {
				if msg := asyncOutcome(req); msg != "" {
					return fmt.Errorf("queue inspect %s: %s", id, msg)
				}
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print pulsed's JSON")
	cmd.Flags().BoolVar(&wait, "wait", false, "ask again until the request is done or failed; exit 0 only for done with a 2xx status")
	cmd.Flags().DurationVar(&timeout, "timeout", defaultWaitAsync, "with --wait: how long to wait")
	return cmd
}

// errRequestUnknown: pulsed does not know the request (404).
var errRequestUnknown = errors.New("unknown request")

// getAsyncRequest reads one request's state, and its JSON as pulsed sent
// it.
func getAsyncRequest(ctx context.Context, api *apiClient, id string) (contract.AsyncRequest, []byte, error) {
	var r contract.AsyncRequest
	path := contract.AsyncRequestsPath + url.PathEscape(id)
	body, err := api.send(ctx, http.MethodGet, path, nil, true)
	if err != nil {
		var ae *apiError
		if errors.As(err, &ae) && ae.status == http.StatusNotFound {
			return r, nil, fmt.Errorf("%w: pulsed does not know it (%v): a mistyped id, or it ended longer ago than pulsed keeps requests", errRequestUnknown, err)
		}
		return r, nil, err
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return r, nil, fmt.Errorf("pulsed's API at %s: not the answer expected of GET %s: %w", api.base, path, err)
	}
	if r.ID != id {
		return r, nil, fmt.Errorf("pulsed's API at %s: GET %s answered request %q, not %s", api.base, path, sanitize(r.ID, 70), id)
	}
	return r, body, nil
}

// waitAsyncRequest asks for the request's state every interval until it is
// done or failed, or timeout passes. pulsed unreachable or answering 502,
// 503 or 504 (restarting: its requests are on disk) is asked again; any
// other error ends the wait. When the time runs out it returns the last
// state read (if any) with the error.
func waitAsyncRequest(ctx context.Context, api *apiClient, id string, timeout, interval time.Duration) (contract.AsyncRequest, []byte, error) {
	ctx, cancel := context.WithTimeoutCause(ctx, timeout, errWaitTimeout)
	defer cancel()
	var (
		last     contract.AsyncRequest
		lastBody []byte
		lastErr  error
	)
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		r, body, err := getAsyncRequest(ctx, api, id)
		switch {
		case err == nil:
			last, lastBody, lastErr = r, body, nil
			if asyncEnded(r.State) {
				return r, body, nil
			}
		case ctx.Err() != nil:
			// The deadline cut this request short: say the wait's end.
		case !retryableWhileWaiting(err):
			return last, lastBody, err
		default:
			lastErr = err
		}
		select {
		case <-ctx.Done():
			if !errors.Is(context.Cause(ctx), errWaitTimeout) {
				return last, lastBody, context.Cause(ctx)
			}
			msg := fmt.Sprintf("%s after waiting %s", errWaitTimeout, timeout)
			switch {
			case lastBody != nil:
				msg += fmt.Sprintf(": still %s after %d attempt(s)", sanitize(last.State, 20), last.Attempts)
			case lastErr != nil:
				msg += fmt.Sprintf(": %v", lastErr)
			}
			return last, lastBody, errors.New(msg + "; ask again with pulse queue inspect " + id)
		case <-tick.C:
		}
	}
}

var errWaitTimeout = errors.New("timed out")

// retryableWhileWaiting: pulsed not reachable, or its proxy or itself not
// ready (502, 503, 504).
func retryableWhileWaiting(err error) bool {
	var ae *apiError
	if errors.As(err, &ae) {
		return ae.status == http.StatusBadGateway || ae.status == http.StatusServiceUnavailable || ae.status == http.StatusGatewayTimeout
	}
	var ue unreachableError
	return errors.As(err, &ue)
}

func asyncEnded(state string) bool {
	return state == contract.AsyncDone || state == contract.AsyncFailed
}

// asyncOutcome says why an ended request is not a success ("" when it is
// done with a 2xx status).
func asyncOutcome(r contract.AsyncRequest) string {
	switch {
	case r.State == contract.AsyncDone && r.Status >= 200 && r.Status <= 299:
		return ""
	case r.State == contract.AsyncDone:
		return fmt.Sprintf("done, but %s answered %s", sanitize(r.Function, 63), statusLine(r.Status))
	case r.State == contract.AsyncFailed && r.Error != "":
		return fmt.Sprintf("failed after %d attempt(s): %s", r.Attempts, sanitize(r.Error, 300))
	case r.State == contract.AsyncFailed:
		return fmt.Sprintf("failed after %d attempt(s)", r.Attempts)
	}
	return fmt.Sprintf("not ended: %s", sanitize(r.State, 20))
}

func statusLine(status int) string {
	if status == 0 {
		return "nothing (no answer)"
	}
	if t := http.StatusText(status); t != "" {
		return fmt.Sprintf("%d %s", status, t)
	}
	return fmt.Sprintf("%d", status)
}

// renderAsyncRequest writes queue inspect's text: one field a line, as
// describe does; times in UTC with their age at now.
func renderAsyncRequest(w io.Writer, r contract.AsyncRequest, now time.Time) {
	status := "none yet"
	if r.Status != 0 {
		status = statusLine(r.Status)
	}
	fmt.Fprintf(w, "Request:   %s\nFunction:  %s\nState:     %s\nStatus:    %s\nAttempts:  %d\n",
		sanitize(r.ID, maxRequestIDLen), sanitize(r.Function, 63), sanitize(r.State, 20), status, r.Attempts)
	if r.Error != "" {
		fmt.Fprintf(w, "Error:     %s\n", sanitize(r.Error, 500))
	}
	if r.Callback == "" {
		fmt.Fprintf(w, "Callback:  none\n")
	} else {
		fmt.Fprintf(w, "Callback:  %s (%s)\n", sanitize(r.Callback, 500), sanitize(cmp.Or(r.CallbackState, "state unknown"), 20))
		if r.CallbackError != "" {
			fmt.Fprintf(w, "           %s\n", sanitize(r.CallbackError, 500))
		}
	}
	stamp := func(t time.Time) string {
		switch {
		case t.IsZero():
			return "-"
		case t.After(now): // another host's clock
			return t.UTC().Format(time.RFC3339)
		}
		return fmt.Sprintf("%s (%s ago)", t.UTC().Format(time.RFC3339), formatAge(now.Sub(t).Seconds()))
	}
	fmt.Fprintf(w, "Enqueued:  %s\nUpdated:   %s\n", stamp(r.EnqueuedAt), stamp(r.UpdatedAt))
	if !r.FinishedAt.IsZero() {
		took := ""
		if !r.EnqueuedAt.IsZero() {
			took = fmt.Sprintf(", %s after it was enqueued", formatAge(r.FinishedAt.Sub(r.EnqueuedAt).Seconds()))
		}
		fmt.Fprintf(w, "Finished:  %s%s\n", stamp(r.FinishedAt), took)
	}
}

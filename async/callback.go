package async

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pulsefaas/pulse/contract"
)

// CallbackConfig is how results are posted to callback URLs.
type CallbackConfig struct {
	// Allow lists where callbacks may go: CIDR prefixes (10.0.0.0/8) and
	// addresses with a port (192.0.2.7:9000, [2001:db8::1]:443). Empty:
	// any address but the refused ones. Refused unless an entry names them
	// at least as narrowly as their class: loopback (127.0.0.0/8, ::1),
	// unspecified, link-local, multicast, and this host's own addresses
	// (so no callback reaches pulsed's API, HAProxy's admin port or
	// Netdata on the control node).
	Allow []string
	// Timeout bounds one delivery; Retries is how many times a failed
	// delivery (no answer, 429 or 5xx) is tried again, with backoff.
	Timeout time.Duration
	Retries int
	// Concurrency bounds the deliveries in flight.
	Concurrency int
}

// DefaultCallbackConfig returns the defaults pulsed documents.
func DefaultCallbackConfig() CallbackConfig {
	return CallbackConfig{Timeout: 10 * time.Second, Retries: 5, Concurrency: 16}
}

// CallbackPolicy decides where a callback may connect.
type CallbackPolicy struct {
	prefixes []netip.Prefix
	addrs    []netip.AddrPort
	timeout  time.Duration

	mu      sync.Mutex
	own     map[netip.Addr]bool
	ownRead time.Time
	// ownAddrs lists this host's addresses (a seam for tests).
	ownAddrs func() ([]net.Addr, error)
}

// NewCallbackPolicy checks the allow-list.
func NewCallbackPolicy(cfg CallbackConfig) (*CallbackPolicy, error) {
	p := &CallbackPolicy{timeout: cfg.Timeout, ownAddrs: net.InterfaceAddrs}
	if p.timeout <= 0 {
		p.timeout = DefaultCallbackConfig().Timeout
	}
	var errs []error
	for _, e := range cfg.Allow {
		if pr, err := netip.ParsePrefix(e); err == nil {
			p.prefixes = append(p.prefixes, pr.Masked())
			continue
		}
		if ap, err := netip.ParseAddrPort(e); err == nil && ap.Port() != 0 {
			p.addrs = append(p.addrs, netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()))
			continue
		}
		errs = append(errs, fmt.Errorf("%q: want a CIDR prefix (10.0.0.0/8) or an address with its port (192.0.2.7:9000)", e))
	}
	return p, errors.Join(errs...)
}

// refusedClass is the class an address is refused by default for, and its
// prefix length (an entry must be at least this narrow to allow it); ""
// when it is not refused.
func (p *CallbackPolicy) refusedClass(a netip.Addr) (string, int) {
	bits := 128
	if a.Is4() {
		bits = 32
	}
	switch {
	case a.IsLoopback():
		if a.Is4() {
			return "loopback", 8
		}
		return "loopback", 128
	case a.IsUnspecified():
		return "unspecified", bits
	case a.IsLinkLocalUnicast():
		if a.Is4() {
			return "link-local", 16
		}
		return "link-local", 10
	case a.IsMulticast(), a.IsLinkLocalMulticast(), a.IsInterfaceLocalMulticast():
		return "multicast", bits
	case p.isOwn(a):
		return "this host's own", bits
	}
	return "", 0
}

// isOwn reports whether a is one of this host's addresses (read again
// every few seconds). When they cannot be read, every address counts as
// this host's: refused, not let through.
func (p *CallbackPolicy) isOwn(a netip.Addr) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.own == nil || time.Since(p.ownRead) > 5*time.Second {
		addrs, err := p.ownAddrs()
		if err != nil {
			p.own, p.ownRead = nil, time.Time{}
			return true
		}
		own := map[netip.Addr]bool{}
		for _, ad := range addrs {
			if n, ok := ad.(*net.IPNet); ok {
				if ip, ok := netip.AddrFromSlice(n.IP); ok {
					own[ip.Unmap()] = true
				}
			}
		}
		p.own, p.ownRead = own, time.Now()
	}
	return p.own[a]
}

// CheckAddr says whether a callback may connect to ap, and why not.
func (p *CallbackPolicy) CheckAddr(ap netip.AddrPort) error {
	a := ap.Addr().Unmap()
	class, bits := p.refusedClass(a)
	matched, narrow := false, false
	for _, e := range p.addrs {
		if e.Addr() == a && e.Port() == ap.Port() {
			matched, narrow = true, true
		}
	}
	for _, pr := range p.prefixes {
		if pr.Contains(a) {
			matched = true
			if pr.Bits() >= bits {
				narrow = true
			}
		}
	}
	switch {
	case class != "" && !narrow:
		return fmt.Errorf("%s is a %s address: refused unless async_callback_allow names it", ap, class)
	case class == "" && len(p.addrs)+len(p.prefixes) > 0 && !matched:
		return fmt.Errorf("%s is not in async_callback_allow", ap)
	}
	return nil
}

// CheckURL checks a callback URL: http or https, a host, no credentials,
// and every address its host resolves to allowed. Delivery checks the
// address it connects to again (the name may resolve differently then).
func (p *CallbackPolicy) CheckURL(ctx context.Context, raw string) error {
	if len(raw) > 2048 {
		return errors.New("longer than 2048 bytes")
	}
	u, err := url.Parse(raw)
	if err != nil {
		return errors.New("not a URL")
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("scheme %q: want http or https", u.Scheme)
	}
	if u.User != nil {
		return errors.New("credentials in the URL: send them some other way")
	}
	host := u.Hostname()
	if host == "" {
		return errors.New("no host")
	}
	port := u.Port()
	if port == "" {
		port = map[string]string{"http": "80", "https": "443"}[u.Scheme]
	}
	pn, err := strconv.ParseUint(port, 10, 16)
	if err != nil || pn == 0 {
		return fmt.Errorf("port %q: want 1 to 65535", port)
	}
	var addrs []netip.Addr
	if a, err := netip.ParseAddr(host); err == nil {
		addrs = []netip.Addr{a}
	} else if addrs, err = net.DefaultResolver.LookupNetIP(ctx, "ip", host); err != nil {
		return fmt.Errorf("host %s does not resolve: %v", host, err)
	}
	for _, a := range addrs {
		if err := p.CheckAddr(netip.AddrPortFrom(a, uint16(pn))); err != nil {
			return err
		}
	}
	return nil
}

// Client is the HTTP client callbacks are posted with: no proxy, no
// redirects, and a dialer that refuses an address the policy refuses
// (checked on the address actually connected to).
func (p *CallbackPolicy) Client() *http.Client {
	d := &net.Dialer{Timeout: 5 * time.Second, Control: func(_, address string, _ syscall.RawConn) error {
		ap, err := netip.ParseAddrPort(address)
		if err != nil {
			return fmt.Errorf("callback address %q: %w", address, err)
		}
		return p.CheckAddr(ap)
	}}
	return &http.Client{
		Timeout: p.timeout,
		Transport: &http.Transport{Proxy: nil, DialContext: d.DialContext, MaxIdleConnsPerHost: 4,
			IdleConnTimeout: 30 * time.Second, TLSHandshakeTimeout: 5 * time.Second, ForceAttemptHTTP2: true},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// queueCallback stores a finished request's result for the deliverer.
func (q *Queue) queueCallback(ctx context.Context, fn string, st contract.AsyncRequest, o outcome) error {
	m := nats.NewMsg(subjectCallback + fn)
	m.Data = o.body
	if ct := o.header.Get("Content-Type"); ct != "" {
		m.Header.Set("Content-Type", ct)
	}
	m.Header.Set(hdrID, st.ID)
	m.Header.Set(hdrFunction, fn)
	m.Header.Set(hdrCallback, st.Callback)
	m.Header.Set(contract.HeaderAsyncState, st.State)
	m.Header.Set(contract.HeaderAsyncStatus, strconv.Itoa(st.Status))
	m.Header.Set(contract.HeaderAttempt, strconv.Itoa(st.Attempts))
	if e := o.header.Get(contract.HeaderAsyncError); e != "" && st.Error == "" {
		st.Error = e
	}
	if st.Error != "" {
		m.Header.Set(contract.HeaderAsyncError, oneLine(st.Error))
	}
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	// The same id for the same result: a repeat within the duplicate
	// window is stored once.
	_, err := q.js.PublishMsg(ctx, m, jetstream.WithMsgID("cb-"+st.ID+"-"+strconv.Itoa(st.Attempts)))
	return err
}

func oneLine(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
	if len(s) > 512 {
		s = s[:512]
	}
	return s
}

func (q *Queue) startCallbacks(ctx, dctx context.Context, wg *sync.WaitGroup) {
	wg.Go(func() {
		var cons jetstream.Consumer
		for ctx.Err() == nil {
			cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			var err error
			cons, err = q.cbs.CreateOrUpdateConsumer(cctx, jetstream.ConsumerConfig{
				Durable: callbackGroup, FilterSubject: subjectCallback + "*",
				AckPolicy: jetstream.AckExplicitPolicy, AckWait: q.cfg.Callback.Timeout + 20*time.Second, MaxDeliver: -1,
				MaxAckPending: 100_000, MaxWaiting: 4 * max(1, q.cfg.Callback.Concurrency),
			})
			cancel()
			if err == nil {
				break
			}
			q.log.Warn("async: callback consumer; trying again", "err", err)
			sleep(ctx, 2*time.Second)
		}
		if ctx.Err() != nil {
			return
		}
		for range max(1, q.cfg.Callback.Concurrency) {
			wg.Go(func() {
				for ctx.Err() == nil {
					msg, err := next(ctx, cons)
					if err != nil {
						if ctx.Err() == nil && !errors.Is(err, jetstream.ErrNoMessages) && !errors.Is(err, nats.ErrTimeout) && !errors.Is(err, context.DeadlineExceeded) {
							q.log.Warn("async: fetch callback", "err", err)
							sleep(ctx, time.Second)
						}
						continue
					}
					q.deliver(dctx, msg)
				}
			})
		}
	})
}

// deliver posts one result to its callback URL and records how it went.
// A state it cannot read or write sends the callback back to the queue (it
// may be posted again: at least once).
func (q *Queue) deliver(ctx context.Context, msg jetstream.Msg) {
	h := msg.Headers()
	id, target := h.Get(hdrID), h.Get(hdrCallback)
	md, err := msg.Metadata()
	attempt := 1
	if err == nil {
		attempt = int(md.NumDelivered)
	}
	stopRenew := renew(msg, q.cfg.Callback.Timeout+20*time.Second)
	defer stopRenew()
	err = q.post(ctx, target, h, msg.Data())
	if ctx.Err() != nil {
		_ = msg.Nak()
		return
	}
	st, rerr := q.Request(ctx, id)
	known := rerr == nil
	if rerr != nil && !errors.Is(rerr, ErrNotFound) {
		_ = msg.NakWithDelay(time.Second)
		return
	}
	var perm *permanentError
	switch {
	case err == nil:
		st.CallbackState, st.CallbackError = contract.CallbackDelivered, ""
	case errors.As(err, &perm) || attempt > q.cfg.Callback.Retries:
		q.log.Warn("async: callback failed", "request_id", id, "attempts", attempt, "err", err)
		st.CallbackState, st.CallbackError = contract.CallbackFailed, fmt.Sprintf("after %d attempts: %v", attempt, err)
	default:
		delay := backoff(q.cfg.Backoff, q.cfg.MaxBackoff, attempt)
		if known {
			st.CallbackError, st.UpdatedAt = fmt.Sprintf("attempt %d: %v; retry in %s", attempt, err, delay), time.Now()
			_ = q.putState(ctx, st)
		}
		_ = msg.NakWithDelay(delay)
		return
	}
	if known {
		st.UpdatedAt = time.Now()
		if err := q.putState(ctx, st); err != nil {
			_ = msg.NakWithDelay(time.Second)
			return
		}
	}
	_ = msg.DoubleAck(ctx)
}

// permanentError is a callback answer not worth retrying (4xx but 408 and
// 429), or an address the policy refuses.
type permanentError struct{ error }

func (q *Queue) post(ctx context.Context, target string, h nats.Header, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(body))
	if err != nil {
		return &permanentError{fmt.Errorf("callback URL: %w", err)}
	}
	for _, k := range []string{"Content-Type", contract.HeaderAsyncState, contract.HeaderAsyncStatus, contract.HeaderAsyncError, contract.HeaderAttempt} {
		if v := h.Get(k); v != "" {
			req.Header.Set(k, v)
		}
	}
	req.Header.Set(contract.HeaderAsyncRequestID, h.Get(hdrID))
	req.Header.Set(contract.HeaderFunction, h.Get(hdrFunction))
	req.Header.Set("User-Agent", "pulsed-async-callback")
	resp, err := q.callback.Do(req)
	if err != nil {
		if strings.Contains(err.Error(), "refused unless async_callback_allow") || strings.Contains(err.Error(), "not in async_callback_allow") {
			return &permanentError{err}
		}
		return err
	}
	// Read what little it says, so the connection is kept.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	_ = resp.Body.Close()
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		return nil
	case resp.StatusCode == http.StatusRequestTimeout || resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500:
		return fmt.Errorf("callback answered %d", resp.StatusCode)
	}
	return &permanentError{fmt.Errorf("callback answered %d", resp.StatusCode)}
}

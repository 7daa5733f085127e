package collector

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/pulsefaas/pulse/contract"
)

// Caps of the metrics pages the collector reads. A watchdog's page is about
// 6 KB (one function, a 20-bucket histogram); HAProxy's backend-scope page
// about 10 KB per function.
const (
	maxReplicaPageBytes = 1 << 20
	maxHAProxyPageBytes = 64 << 20
)

// Errors of scrapeTransport, for errors.Is.
var (
	// errPageTooLarge: the page is over the cap.
	errPageTooLarge = errors.New("metrics page too large")
	// errPageEncoding: the page came compressed (or otherwise encoded)
	// although the collector asked for identity.
	errPageEncoding = errors.New("metrics page encoded")
	// errReplicaForbidden: the replica answered 403, the answer of a
	// watchdog to a request without its install's credential (or with
	// another).
	errReplicaForbidden = errors.New("replica refused the collector (403 Forbidden): the credential is missing or not the replicas'")
)

// scrapeTransport is the RoundTripper of the collector's metrics pages
// (go.d's Prometheus client asks for gzip and inflates it without a limit):
// it asks for identity encoding only and refuses any other, caps the
// body at max bytes (a longer body fails the read with errPageTooLarge),
// and, when credential is set, adds contract.HeaderReplicaAuth with its
// value and turns a 403 into errReplicaForbidden.
type scrapeTransport struct {
	base       http.RoundTripper
	max        int64
	credential func() string // nil: no credential (HAProxy's page)
}

func (t *scrapeTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	r := req.Clone(req.Context())
	r.Header.Set("Accept-Encoding", "identity")
	sent := false
	if t.credential != nil {
		r.Header.Del(contract.HeaderReplicaAuth)
		if v := t.credential(); v != "" {
			r.Header.Set(contract.HeaderReplicaAuth, v)
			sent = true
		}
	}
	resp, err := t.base.RoundTrip(r)
	if err != nil {
		return nil, err
	}
	fail := func(err error) (*http.Response, error) {
		drainClose(resp.Body)
		return nil, err
	}
	if t.credential != nil && resp.StatusCode == http.StatusForbidden {
		if sent {
			return fail(fmt.Errorf("%w (a credential was sent)", errReplicaForbidden))
		}
		return fail(fmt.Errorf("%w (none was sent: the collector has no readable replica_auth_file)", errReplicaForbidden))
	}
	if ce := resp.Header.Get("Content-Encoding"); ce != "" && !strings.EqualFold(ce, "identity") {
		return fail(fmt.Errorf("%w: Content-Encoding %q to a request for identity", errPageEncoding, ce))
	}
	if resp.ContentLength > t.max {
		return fail(fmt.Errorf("%w: Content-Length %d, over the %d-byte cap", errPageTooLarge, resp.ContentLength, t.max))
	}
	resp.Body = &cappedBody{rc: resp.Body, left: t.max, max: t.max}
	return resp, nil
}

// cappedBody reads at most max bytes; a body with more fails the read with
// errPageTooLarge instead of ending early, so a truncated page is never
// parsed as a whole one.
type cappedBody struct {
	rc        io.ReadCloser
	left, max int64
}

func (b *cappedBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		var one [1]byte
		n, err := b.rc.Read(one[:])
		if n > 0 {
			return 0, fmt.Errorf("%w: over the %d-byte cap", errPageTooLarge, b.max)
		}
		return 0, err
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.rc.Read(p)
	b.left -= int64(n)
	return n, err
}

func (b *cappedBody) Close() error { return b.rc.Close() }

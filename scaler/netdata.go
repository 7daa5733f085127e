package scaler

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/pulsefaas/pulse/contract"
)

// Netdata reads utilisation from Netdata's API (the collector's
// CtxUtilization chart of each function): the real UtilisationSource.
type Netdata struct {
	base    *url.URL
	client  *http.Client
	timeout time.Duration
}

var _ UtilisationSource = (*Netdata)(nil)

// DefaultNetdataURL is Debian's Netdata (DESIGN §2).
const DefaultNetdataURL = "http://127.0.0.1:19999"

// maxNetdataBody caps a data response: one point is a few hundred bytes.
const maxNetdataBody = 64 << 10

// NewNetdata returns a source asking the Netdata at baseURL, each request
// bounded by timeout.
func NewNetdata(baseURL string, timeout time.Duration) (*Netdata, error) {
	u, err := url.Parse(baseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("netdata url %q: want http://HOST:PORT", baseURL)
	}
	if timeout <= 0 {
		return nil, fmt.Errorf("netdata timeout %v: must be positive", timeout)
	}
	return &Netdata{base: u, client: newNetdataClient(), timeout: timeout}, nil
}

// newNetdataClient never uses a proxy: HTTP_PROXY in pulsed's environment
// must not route the local Netdata's answers, which drive scaling, through
// another host. Redirects are not followed either: Netdata's data API does
// not redirect, and one would send the query elsewhere.
func newNetdataClient() *http.Client {
	tr := &http.Transport{
		Proxy:                 nil,
		DialContext:           (&net.Dialer{Timeout: 2 * time.Second}).DialContext,
		MaxIdleConnsPerHost:   4,
		IdleConnTimeout:       30 * time.Second,
		ResponseHeaderTimeout: 0, // each request has its own deadline (Netdata.timeout)
	}
	return &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	}}
}

// Utilisation asks /api/v1/data for one point of fn's utilisation chart
// over the last window (whole seconds, at least 1), unaligned so the window
// ends now. A chart that does not exist (yet) is ErrNoData.
func (n *Netdata) Utilisation(ctx context.Context, fn string, agg Aggregate, window time.Duration) (float64, error) {
	return n.read(ctx, fn, contract.ChartUtilization, contract.DimUtilization, agg, window)
}

// Demand reads pulse.<ChartID(fn, demand)>'s demand dimension the same way.
func (n *Netdata) Demand(ctx context.Context, fn string, agg Aggregate, window time.Duration) (float64, error) {
	return n.read(ctx, fn, contract.ChartDemand, contract.DimDemand, agg, window)
}

func (n *Netdata) read(ctx context.Context, fn, chart, dim string, agg Aggregate, window time.Duration) (float64, error) {
	q := url.Values{}
	q.Set("chart", contract.Chart(fn, chart))
	q.Set("after", strconv.FormatInt(-netdataSeconds(window), 10))
	q.Set("points", "1")
	q.Set("group", string(agg))
	q.Set("format", "json")
	q.Set("options", "unaligned")
	u := n.base.JoinPath("/api/v1/data")
	u.RawQuery = q.Encode()

	ctx, cancel := context.WithTimeout(ctx, n.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return 0, fmt.Errorf("netdata: %w", err)
	}
	resp, err := n.client.Do(req)
	if err != nil {
		return 0, fmt.Errorf("netdata: %w", err)
	}
	defer resp.Body.Close()
	body := io.LimitReader(resp.Body, maxNetdataBody)
	switch {
	case resp.StatusCode == http.StatusNotFound:
		// "No metrics where matched to query.": no chart (yet).
		_, _ = io.Copy(io.Discard, body)
		return 0, fmt.Errorf("netdata %s: %w", q.Get("chart"), ErrNoData)
	case resp.StatusCode != http.StatusOK:
		msg, _ := io.ReadAll(io.LimitReader(body, 200))
		return 0, fmt.Errorf("netdata %s: %s: %s", q.Get("chart"), resp.Status, strings.TrimSpace(string(msg)))
	}
	v, err := parseNetdataData(body, dim)
	if err != nil {
		return 0, fmt.Errorf("netdata %s: %w", q.Get("chart"), err)
	}
	return v, nil
}

// netdataSeconds is window in whole seconds, rounded up, at least 1.
func netdataSeconds(d time.Duration) int64 {
	return max(1, int64(math.Ceil(d.Seconds())))
}

// parseNetdataData reads the value of a format=json, points=1 answer:
// {"labels": ["time", dim...], "data": [[t, v...]]}. It takes the
// contract.DimUtilization column, or the only one. A null value is
// ErrNoData.
func parseNetdataData(r io.Reader, dim string) (float64, error) {
	var doc struct {
		Labels []string     `json:"labels"`
		Data   [][]*float64 `json:"data"`
	}
	if err := json.NewDecoder(r).Decode(&doc); err != nil {
		return 0, fmt.Errorf("parse data: %w", err)
	}
	col := -1
	for i, l := range doc.Labels {
		if i > 0 && l == dim {
			col = i
		}
	}
	if col < 0 {
		if len(doc.Labels) != 2 {
			return 0, fmt.Errorf("parse data: no %q column in %q", dim, doc.Labels)
		}
		col = 1
	}
	if len(doc.Data) == 0 {
		return 0, ErrNoData
	}
	row := doc.Data[0] // points=1: one row
	if len(row) != len(doc.Labels) {
		return 0, fmt.Errorf("parse data: a row of %d values for %d labels", len(row), len(doc.Labels))
	}
	if row[col] == nil {
		return 0, ErrNoData
	}
	v := *row[col]
	if math.IsNaN(v) || math.IsInf(v, 0) || v < 0 {
		return 0, fmt.Errorf("parse data: %s %v", dim, v)
	}
	return v, nil
}

package netdatalab

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Chart is the part of /api/v1/charts' chart objects the tests read.
//
// An obsolete chart (go.d's MarkRemove: the plugin sends CHART again with
// the "obsolete" option) is, in Netdata 1.37.1, left out of /api/v1/charts
// while /api/v1/chart?chart=<id> still answers with it, its last_entry
// frozen, until Netdata frees it ([db] cleanup obsolete charts after secs,
// an hour by default). 1.37.1's chart objects have no "obsolete" field:
// Obsolete stays false there; it is kept for later releases that send it.
type Chart struct {
	ID         string                     `json:"id"`
	Title      string                     `json:"title"`
	Units      string                     `json:"units"`
	Family     string                     `json:"family"`
	Context    string                     `json:"context"`
	Obsolete   bool                       `json:"obsolete"`
	FirstEntry int64                      `json:"first_entry"` // Unix seconds
	LastEntry  int64                      `json:"last_entry"`  // Unix seconds
	Dimensions map[string]json.RawMessage `json:"dimensions"`
	Variables  map[string]float64         `json:"chart_variables"`
}

// DimensionNames returns the chart's dimension names (as health templates
// and /api/v1/data's labels name them), sorted; the Dimensions map is keyed
// by dimension ID.
func (c Chart) DimensionNames() []string {
	var out []string
	for _, raw := range c.Dimensions {
		var d struct {
			Name string `json:"name"`
		}
		if json.Unmarshal(raw, &d) == nil {
			out = append(out, d.Name)
		}
	}
	sort.Strings(out)
	return out
}

// Charts lists the charts Netdata has, by ID.
func (n *Netdata) Charts(ctx context.Context) (map[string]Chart, error) {
	var out struct {
		Charts map[string]Chart `json:"charts"`
	}
	if err := n.get(ctx, "/api/v1/charts", &out); err != nil {
		return nil, err
	}
	return out.Charts, nil
}

// Chart reads one chart with /api/v1/chart, which, unlike /api/v1/charts,
// also answers for an obsolete chart; a chart Netdata does not have is an
// error.
func (n *Netdata) Chart(ctx context.Context, id string) (Chart, error) {
	var c Chart
	err := n.get(ctx, "/api/v1/chart?"+url.Values{"chart": {id}}.Encode(), &c)
	return c, err
}

// Data is /api/v1/data's answer in its json format: Labels[0] is "time".
type Data struct {
	Labels []string    `json:"labels"`
	Rows   [][]float64 `json:"data"` // newest first
}

// Column returns the values of label, newest first.
func (d Data) Column(label string) []float64 {
	for i, l := range d.Labels {
		if l == label {
			out := make([]float64, 0, len(d.Rows))
			for _, r := range d.Rows {
				if i < len(r) {
					out = append(out, r[i])
				}
			}
			return out
		}
	}
	return nil
}

// DataRange reads chart's per-second values from Unix second after (or, if
// negative, that many seconds ago) to before (0: now), unaligned.
func (n *Netdata) DataRange(ctx context.Context, chart string, after, before int64) (Data, error) {
	q := url.Values{"chart": {chart}, "after": {strconv.FormatInt(after, 10)}, "format": {"json"}, "options": {"unaligned|null2zero"}}
	if before != 0 {
		q.Set("before", strconv.FormatInt(before, 10))
	}
	var d Data
	err := n.get(ctx, "/api/v1/data?"+q.Encode(), &d)
	return d, err
}

// AlarmStatus is the status (CLEAR, WARNING, CRITICAL, UNDEFINED, ...) of
// the alarm name on chart, from /api/v1/alarms?all; an error when Netdata
// has no such alarm (yet).
func (n *Netdata) AlarmStatus(ctx context.Context, name, chart string) (string, error) {
	var out struct {
		Alarms map[string]struct {
			Name   string `json:"name"`
			Chart  string `json:"chart"`
			Status string `json:"status"`
		} `json:"alarms"`
	}
	if err := n.get(ctx, "/api/v1/alarms?all", &out); err != nil {
		return "", err
	}
	for _, a := range out.Alarms {
		if a.Name == name && a.Chart == chart {
			return a.Status, nil
		}
	}
	return "", fmt.Errorf("no alarm %s on %s", name, chart)
}

// AlarmLogEntry is one entry of /api/v1/alarm_log.
type AlarmLogEntry struct {
	UniqueID  uint64  `json:"unique_id"`
	Name      string  `json:"name"`
	Chart     string  `json:"chart"`
	Family    string  `json:"family"`
	When      int64   `json:"when"`
	Status    string  `json:"status"`
	OldStatus string  `json:"old_status"`
	Value     float64 `json:"value"`
	Exec      string  `json:"exec"`
	ExecRun   int64   `json:"exec_run"`
	ExecCode  int     `json:"exec_code"`
}

// AlarmLog returns the health log entries after unique ID after.
func (n *Netdata) AlarmLog(ctx context.Context, after uint64) ([]AlarmLogEntry, error) {
	var out []AlarmLogEntry
	err := n.get(ctx, "/api/v1/alarm_log?after="+strconv.FormatUint(after, 10), &out)
	return out, err
}

func (n *Netdata) get(ctx context.Context, path string, into any) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, n.URL+path, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s: %s", path, resp.Status, strings.TrimSpace(string(body)))
	}
	if into == nil {
		return nil
	}
	if err := json.Unmarshal(body, into); err != nil {
		return fmt.Errorf("GET %s: %w", path, err)
	}
	return nil
}

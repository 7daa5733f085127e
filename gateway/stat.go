package gateway

import (
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// BackendStat is one backend's counters from HAProxy's `show stat`: the
// gateway's view of a function's demand. Counters start again from zero in
// a new worker after a reload.
type BackendStat struct {
	Backend  string // fn_<function>
	Sessions int64  // scur: current sessions
	Queue    int64  // qcur: requests waiting for a server
	Total    int64  // stot: sessions so far
	Requests int64  // req_tot: HTTP requests so far
}

// Stats reads every backend's counters (`show stat -1 2 -1`: backends only).
func (r *Runtime) Stats(ctx context.Context) ([]BackendStat, error) {
	out, err := r.Exec(ctx, "show stat -1 2 -1")
	if err != nil {
		return nil, fmt.Errorf("show stat: %w", err)
	}
	stats, err := ParseStat(strings.NewReader(out))
	if err != nil {
		return nil, fmt.Errorf("show stat: %w", err)
	}
	return stats, nil
}

// ParseStat reads `show stat` CSV (header line "# pxname,svname,...") and
// returns its BACKEND rows. Columns are found by name, so fields HAProxy
// adds in later versions do no harm; an empty counter reads as 0.
func ParseStat(r io.Reader) ([]BackendStat, error) {
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = -1
	cr.ReuseRecord = true
	head, err := cr.Read()
	if err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New("empty answer: no header line")
		}
		return nil, fmt.Errorf("header: %w", err)
	}
	if len(head) == 0 || !strings.HasPrefix(head[0], "# ") {
		return nil, fmt.Errorf("header %q does not start with '# pxname'", strings.Join(head, ","))
	}
	cols := map[string]int{}
	for i, h := range head {
		cols[strings.TrimPrefix(h, "# ")] = i
	}
	for _, need := range []string{"pxname", "svname", "scur", "qcur", "stot", "req_tot"} {
		if _, ok := cols[need]; !ok {
			return nil, fmt.Errorf("header lacks column %q", need)
		}
	}
	var out []BackendStat
	for line := 2; ; line++ {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", line, err)
		}
		if len(rec) == 1 && rec[0] == "" {
			continue
		}
		field := func(name string) string {
			if i := cols[name]; i < len(rec) {
				return rec[i]
			}
			return ""
		}
		if field("svname") != "BACKEND" {
			continue
		}
		st := BackendStat{Backend: field("pxname")}
		for _, c := range []struct {
			name string
			dst  *int64
		}{{"scur", &st.Sessions}, {"qcur", &st.Queue}, {"stot", &st.Total}, {"req_tot", &st.Requests}} {
			v := field(c.name)
			if v == "" {
				continue
			}
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n < 0 {
				return nil, fmt.Errorf("line %d: backend %s: %s=%q is not a count", line, st.Backend, c.name, v)
			}
			*c.dst = n
		}
		out = append(out, st)
	}
}

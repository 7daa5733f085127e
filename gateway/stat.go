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
	var out []BackendStat
	err := walkStat(r, []string{"pxname", "svname", "scur", "qcur", "stot", "req_tot"}, func(row statRow) error {
		if row.field("svname") != "BACKEND" {
			return nil
		}
		st := BackendStat{Backend: row.field("pxname")}
		if err := row.counts("backend "+st.Backend, map[string]*int64{
			"scur": &st.Sessions, "qcur": &st.Queue, "stot": &st.Total, "req_tot": &st.Requests}); err != nil {
			return err
		}
		out = append(out, st)
		return nil
	})
	return out, err
}

// statRow is one data line of `show stat` CSV, its columns by name.
type statRow struct {
	rec  []string
	cols map[string]int
}

func (r statRow) field(name string) string {
	if i, ok := r.cols[name]; ok && i < len(r.rec) {
		return r.rec[i]
	}
	return ""
}

// counts parses the named columns into dst; an empty one reads as 0.
func (r statRow) counts(what string, dst map[string]*int64) error {
	for name, p := range dst {
		v := r.field(name)
		if v == "" {
			continue
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			return fmt.Errorf("%s: %s=%q is not a count", what, name, v)
		}
		*p = n
	}
	return nil
}

// walkStat reads `show stat` CSV: a header naming the columns (which must
// include need), then one row per line, each passed to fn; an error names
// its line.
func walkStat(r io.Reader, need []string, fn func(statRow) error) error {
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = -1
	cr.ReuseRecord = true
	head, err := cr.Read()
	if err != nil {
		if errors.Is(err, io.EOF) {
			return errors.New("empty answer: no header line")
		}
		return fmt.Errorf("header: %w", err)
	}
	if len(head) == 0 || !strings.HasPrefix(head[0], "# ") {
		return fmt.Errorf("header %q does not start with '# pxname'", strings.Join(head, ","))
	}
	cols := map[string]int{}
	for i, h := range head {
		cols[strings.TrimPrefix(h, "# ")] = i
	}
	for _, n := range need {
		if _, ok := cols[n]; !ok {
			return fmt.Errorf("header lacks column %q", n)
		}
	}
	for line := 2; ; line++ {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("line %d: %w", line, err)
		}
		if len(rec) == 1 && rec[0] == "" {
			continue
		}
		if err := fn(statRow{rec: rec, cols: cols}); err != nil {
			return fmt.Errorf("line %d: %w", line, err)
		}
	}
}

// ServerStat is one server's counters from `show stat`: enough to tell
// whether HAProxy reuses its connections to a replica (Connects against
// Sessions) and how the replica fared.
type ServerStat struct {
	Backend, Server string
	Addr            string // addr column: the server's ip:port
	Status          string // UP, DOWN, MAINT, DRAIN, no check, ...
	Sessions        int64  // stot: requests sent to it (one per request in HTTP mode)
	Connects        int64  // connect: TCP connections opened to it
	Reuses          int64  // reuse: requests sent over an existing connection
	CheckFails      int64  // chkfail
	Downs           int64  // chkdown: UP→DOWN transitions
	ConnErrors      int64  // econ
	RespErrors      int64  // eresp
	Retries         int64  // wretr
	Redispatches    int64  // wredis
	HTTP5xx         int64  // hrsp_5xx
}

// ConnectRatio is Connects per session: near 0 when connections are
// reused, 1 when every request opens its own.
func (s ServerStat) ConnectRatio() float64 {
	if s.Sessions == 0 {
		return 0
	}
	return float64(s.Connects) / float64(s.Sessions)
}

// ServerStats reads every server's counters (`show stat -1 4 -1`).
func (r *Runtime) ServerStats(ctx context.Context) ([]ServerStat, error) {
	out, err := r.Exec(ctx, "show stat -1 4 -1")
	if err != nil {
		return nil, fmt.Errorf("show stat: %w", err)
	}
	stats, err := ParseServerStat(strings.NewReader(out))
	if err != nil {
		return nil, fmt.Errorf("show stat: %w", err)
	}
	return stats, nil
}

// ParseServerStat reads `show stat` CSV and returns its server rows (not
// FRONTEND or BACKEND). Columns are found by name; an empty counter reads
// as 0.
func ParseServerStat(r io.Reader) ([]ServerStat, error) {
	var out []ServerStat
	err := walkStat(r, []string{"pxname", "svname", "status", "stot", "connect", "reuse"}, func(row statRow) error {
		if sv := row.field("svname"); sv == "FRONTEND" || sv == "BACKEND" {
			return nil
		}
		st := ServerStat{Backend: row.field("pxname"), Server: row.field("svname"), Addr: row.field("addr"), Status: row.field("status")}
		if err := row.counts("server "+st.Backend+"/"+st.Server, map[string]*int64{
			"stot": &st.Sessions, "connect": &st.Connects, "reuse": &st.Reuses, "chkfail": &st.CheckFails,
			"chkdown": &st.Downs, "econ": &st.ConnErrors, "eresp": &st.RespErrors, "wretr": &st.Retries,
			"wredis": &st.Redispatches, "hrsp_5xx": &st.HTTP5xx}); err != nil {
			return err
		}
		out = append(out, st)
		return nil
	})
	return out, err
}

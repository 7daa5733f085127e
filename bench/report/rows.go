package report

import (
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
)

// Row is one measured run or trial: what it was (Labels: the variant, the
// round, …), its figures by metric name (Values), and why it failed (Error)
// or did not run (Skipped). A metric that was not measured is absent, never
// zero. Flags say why the figures of a row that ran are not clean (request
// errors, an unclean exit); they flag its group, and a flagged group fails
// every goal over it.
type Row struct {
	Kind    string             `json:"kind"`
	Labels  map[string]string  `json:"labels,omitempty"`
	Values  map[string]float64 `json:"values,omitempty"`
	Error   string             `json:"error,omitempty"`
	Skipped string             `json:"skipped,omitempty"`
	Flags   []string           `json:"flags,omitempty"`
}

// NewRow starts a row of kind labelled by key, value pairs.
func NewRow(kind string, labels ...any) *Row {
	r := &Row{Kind: kind, Labels: map[string]string{}, Values: map[string]float64{}}
	for i := 0; i+1 < len(labels); i += 2 {
		r.Labels[fmt.Sprint(labels[i])] = fmt.Sprint(labels[i+1])
	}
	return r
}

// Put records metric's value. NaN and infinities (nothing measured) are
// left out, so that the JSON can hold the row.
func (r *Row) Put(metric string, v float64) *Row {
	if r.Values == nil {
		r.Values = map[string]float64{}
	}
	if !math.IsNaN(v) && !math.IsInf(v, 0) {
		r.Values[metric] = v
	}
	return r
}

// PutAll records metric, value pairs.
func (r *Row) PutAll(kv map[string]float64) *Row {
	for k, v := range kv {
		r.Put(k, v)
	}
	return r
}

// V is metric's value, NaN when it was not measured.
func (r Row) V(metric string) float64 {
	if v, ok := r.Values[metric]; ok {
		return v
	}
	return math.NaN()
}

// Label is the row's value of label k.
func (r Row) Label(k string) string { return r.Labels[k] }

// Fail records why the row failed (nil: it did not).
func (r *Row) Fail(err error) {
	if err != nil {
		r.Error = err.Error()
	}
}

// Flag records why the row's figures are not clean.
func (r *Row) Flag(format string, a ...any) { r.Flags = append(r.Flags, fmt.Sprintf(format, a...)) }

// OK says the row ran and did not fail.
func (r Row) OK() bool { return r.Error == "" && r.Skipped == "" }

// Of is the rows of kind.
func Of(rows []Row, kind string) []Row {
	return slices.DeleteFunc(slices.Clone(rows), func(r Row) bool { return r.Kind != kind })
}

// Group is the rows of one kind that share the values of some labels, and
// each metric's median, lowest and highest over those that ran and did not
// fail.
type Group struct {
	Labels  map[string]string  `json:"labels"`
	Runs    int                `json:"runs"`
	Failed  int                `json:"failed,omitempty"`
	Skipped string             `json:"skipped,omitempty"`
	Flags   []string           `json:"flags,omitempty"`
	Median  map[string]float64 `json:"median,omitempty"`
	Min     map[string]float64 `json:"min,omitempty"`
	Max     map[string]float64 `json:"max,omitempty"`
	// Rows are the group's rows, in order.
	Rows []Row `json:"-"`
}

// Summarize groups the rows of kind by the labels in by, in the order the
// groups first appear. A failed row counts in Failed and flags its group
// with its error; a row's flags flag its group. Each flag is prefixed with
// the row's other labels ("round 2: …").
func Summarize(rows []Row, kind string, by ...string) []Group {
	key := func(r Row) string {
		parts := make([]string, len(by))
		for i, k := range by {
			parts[i] = r.Labels[k]
		}
		return strings.Join(parts, "\x00")
	}
	var keys []string
	byKey := map[string][]Row{}
	for _, r := range Of(rows, kind) {
		if _, ok := byKey[key(r)]; !ok {
			keys = append(keys, key(r))
		}
		byKey[key(r)] = append(byKey[key(r)], r)
	}
	out := make([]Group, 0, len(keys))
	for _, k := range keys {
		rs := byKey[k]
		g := Group{Labels: map[string]string{}, Rows: rs, Median: map[string]float64{}, Min: map[string]float64{}, Max: map[string]float64{}}
		for _, l := range by {
			g.Labels[l] = rs[0].Labels[l]
		}
		vals := map[string][]float64{}
		for _, r := range rs {
			what := rowName(r, by)
			switch {
			case r.Skipped != "":
				g.Skipped = r.Skipped
				continue
			case r.Error != "":
				g.Failed++
				g.Flags = append(g.Flags, what+Truncate(r.Error, 200))
				continue
			}
			g.Runs++
			for _, f := range r.Flags {
				g.Flags = append(g.Flags, what+f)
			}
			for m, v := range r.Values {
				vals[m] = append(vals[m], v)
			}
		}
		for m, vs := range vals {
			g.Median[m], g.Min[m], g.Max[m] = Median(vs), slices.Min(vs), slices.Max(vs)
		}
		out = append(out, g)
	}
	return out
}

// rowName is "k v, k v: " of r's labels not in by, sorted by key; "" when
// there are none.
func rowName(r Row, by []string) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(r.Labels)) {
		if !slices.Contains(by, k) {
			parts = append(parts, k+" "+r.Labels[k])
		}
	}
	if len(parts) == 0 {
		return ""
	}
	return strings.Join(parts, ", ") + ": "
}

// M is metric's median over the group, NaN when it has none.
func (g Group) M(metric string) float64 {
	if v, ok := g.Median[metric]; ok {
		return v
	}
	return math.NaN()
}

// Values is metric's values in the rows that ran and did not fail.
func (g Group) Values(metric string) []float64 {
	var out []float64
	for _, r := range g.Rows {
		if v, ok := r.Values[metric]; ok && r.OK() {
			out = append(out, v)
		}
	}
	return out
}

// Flagged says the group's figures are not clean.
func (g Group) Flagged() bool { return len(g.Flags) > 0 }

// Label is the group's value of label k.
func (g Group) Label(k string) string { return g.Labels[k] }

// Find returns the group whose label k is v.
func Find(groups []Group, k, v string) (Group, bool) {
	for _, g := range groups {
		if g.Labels[k] == v {
			return g, true
		}
	}
	return Group{}, false
}

// Sort orders groups by where their label k comes in order; groups whose
// label is not in order come last, in their order.
func Sort(groups []Group, k string, order []string) {
	rank := func(g Group) int {
		if i := slices.Index(order, g.Labels[k]); i >= 0 {
			return i
		}
		return len(order)
	}
	slices.SortStableFunc(groups, func(a, b Group) int { return rank(a) - rank(b) })
}

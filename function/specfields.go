package function

import (
	"math"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/pulsefaas/pulse/contract"
)

// fnParser parses one function's settings. Each field's node is kept so the
// rule checks, which run on the finished Spec, can point at it; a field that
// did not parse is marked bad so no rule reports it a second time.
type fnParser struct {
	*specParser
	base string                // functions.<name>
	pos  map[string]*yaml.Node // relative field path → node
	bad  map[string]bool
}

func (f *fnParser) errorf(n *yaml.Node, field, format string, args ...any) {
	f.bad[field] = true
	f.add(n, f.path(field), format, args...)
}

// path is the full path of a field given relative to the function.
func (f *fnParser) path(field string) string {
	if field == "" {
		return f.base
	}
	return f.base + "." + field
}

func (p *specParser) function(name string, k, v *yaml.Node) Spec {
	s := Spec{
		Name:    name,
		Handler: "./" + name,
		Timeout: DefaultTimeout,
		MaxBody: DefaultMaxBody,
		Scale:   DefaultScale(),
		Dir:     p.dir,
		File:    p.file,
		Line:    k.Line,
	}
	f := &fnParser{specParser: p, base: fieldKey("functions", name), pos: map[string]*yaml.Node{"": k}, bad: map[string]bool{}}
	modeSet, portSet, overdueSet := false, false, false
	switch {
	case yamlIsNull(v):
		// No settings: the rules report the missing lang.
	case v.Kind != yaml.MappingNode:
		p.add(v, f.base, "must be a mapping of settings, e.g. \"%s: {lang: go}\"", name)
		if msg := nameProblem(name); msg != "" {
			p.add(k, f.base, "%s", msg)
		}
		return s
	default:
		p.mapping(v, f.base, functionKeys, func(key string, kn, vn *yaml.Node) {
			f.pos[key] = vn
			switch key {
			case "lang":
				f.str(vn, key, "go, c, cpp or bin", &s.Lang)
			case "handler":
				f.str(vn, key, "a path relative to this file, e.g. ./"+name, &s.Handler)
			case "mode":
				modeSet = f.str(vn, key, "inproc, fork or http", &s.Mode)
			case "args":
				f.strList(vn, key, `["--flag", "value"]`, &s.Args)
			case "port":
				portSet = f.integer(vn, key, "3000", &s.Port)
			case "env":
				f.strMap(vn, key, "{GREETING: hi}", &s.Env)
			case "secrets":
				f.strList(vn, key, "[db-password]", &s.Secrets)
			case "limits":
				f.limits(vn, key, &s.Limits)
			case "timeout":
				f.duration(vn, key, &s.Timeout)
			case "max_body":
				f.size(vn, key, &s.MaxBody)
			case "max_overdue":
				var n int
				if overdueSet = f.integer(vn, key, "8", &n); overdueSet {
					s.MaxOverdue = &n
				}
			case "scale":
				f.scale(vn, key, &s.Scale)
			case "rate_limit":
				f.rateLimit(vn, key, &s.RateLimit)
			case "async":
				f.async(vn, key, name, &s.Async)
			case "labels":
				f.strMap(vn, key, "{team: web}", &s.Labels)
			case "constraints":
				f.strList(vn, key, `["node.role==worker"]`, &s.Constraints)
			}
		})
	}
	if !modeSet && !f.bad["mode"] {
		s.Mode = langDefaultMode(s.Lang)
	}
	if s.Mode == contract.ModeHTTP && !portSet && !f.bad["port"] {
		s.Port = DefaultPort
	}
	if overdueSet && s.Mode != contract.ModeInProcess && langProblem(s.Lang) == "" {
		f.errorf(f.pos["max_overdue"], "max_overdue", "only for in-process (go) functions: a %s-mode request past its timeout has its process killed; remove it", s.Mode)
	}
	if s.Mode != contract.ModeHTTP && portSet && s.Port == 0 && langProblem(s.Lang) == "" {
		f.errorf(f.pos["port"], "port", "%s", portOutsideHTTP(s.Mode))
	}
	checkSpec(&s, func(field, msg string) {
		for up := field; up != ""; up = parentField(up) {
			if f.bad[up] {
				return
			}
		}
		f.add(f.nodeFor(field), f.path(field), "%s", msg)
	})
	return s
}

// nodeFor returns the node of field, or of the nearest enclosing field.
func (f *fnParser) nodeFor(field string) *yaml.Node {
	for ; field != ""; field = parentField(field) {
		if n, ok := f.pos[field]; ok {
			return n
		}
	}
	return f.pos[""]
}

// parentField returns the field enclosing a relative field path:
// scale.min → scale, secrets[1] → secrets, timeout → "".
func parentField(field string) string {
	if i := strings.LastIndexAny(field, ".["); i >= 0 {
		return field[:i]
	}
	return ""
}

// text returns the text of a scalar, or reports that n is not one.
func (f *fnParser) text(n *yaml.Node, field, want string) (string, bool) {
	switch {
	case n.Kind != yaml.ScalarNode:
		f.errorf(n, field, "must be a single value (%s), not a %s", want, yamlKindName(n))
		return "", false
	case yamlIsNull(n):
		f.errorf(n, field, "has no value; write %s, or remove the key", want)
		return "", false
	}
	return n.Value, true
}

func (f *fnParser) str(n *yaml.Node, field, want string, dst *string) bool {
	v, ok := f.text(n, field, want)
	if ok {
		*dst = v
	}
	return ok
}

func (f *fnParser) integer(n *yaml.Node, field, example string, dst *int) bool {
	v, ok := f.text(n, field, "a whole number like "+example)
	if !ok {
		return false
	}
	var i int
	if n.ShortTag() != "!!int" || n.Decode(&i) != nil {
		f.errorf(n, field, "%q is not a whole number; write it like %s", v, example)
		return false
	}
	*dst = i
	return true
}

func (f *fnParser) number(n *yaml.Node, field, example string, dst *float64) bool {
	v, ok := f.text(n, field, "a number like "+example)
	if !ok {
		return false
	}
	var x float64
	if tag := n.ShortTag(); (tag != "!!int" && tag != "!!float") || n.Decode(&x) != nil || math.IsNaN(x) || math.IsInf(x, 0) {
		f.errorf(n, field, "%q is not a number; write it like %s", v, example)
		return false
	}
	*dst = x
	return true
}

func (f *fnParser) boolean(n *yaml.Node, field string, dst *bool) bool {
	v, ok := f.text(n, field, "true or false")
	if !ok {
		return false
	}
	var b bool
	if n.ShortTag() != "!!bool" || n.Decode(&b) != nil {
		f.errorf(n, field, "%q is not true or false; write one of those", v)
		return false
	}
	*dst = b
	return true
}

func (f *fnParser) duration(n *yaml.Node, field string, dst *time.Duration) bool {
	v, ok := f.text(n, field, "a duration like 30s or 2m")
	if !ok {
		return false
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		f.errorf(n, field, "%q is not a duration; write it like 30s or 2m", v)
		return false
	}
	*dst = d
	return true
}

func (f *fnParser) size(n *yaml.Node, field string, dst *int64) bool {
	v, ok := f.text(n, field, "a size like 10MiB")
	if !ok {
		return false
	}
	b, err := contract.ParseSize(v)
	if err != nil {
		f.errorf(n, field, "%q is not a size; write bytes, or a number with a unit like 512KiB, 64MiB or 1GiB", v)
		return false
	}
	*dst = b
	return true
}

func (f *fnParser) strList(n *yaml.Node, field, example string, dst *[]string) {
	if yamlIsNull(n) {
		return
	}
	if n.Kind != yaml.SequenceNode {
		f.errorf(n, field, "must be a list, e.g. %s", example)
		return
	}
	list := make([]string, 0, len(n.Content))
	for i, item := range n.Content {
		item = yamlResolve(item)
		sub := fieldIndex(field, i)
		f.pos[sub] = item
		if v, ok := f.text(item, sub, "a string"); ok {
			list = append(list, v)
		}
	}
	*dst = list
}

func (f *fnParser) strMap(n *yaml.Node, field, example string, dst *map[string]string) {
	if yamlIsNull(n) {
		return
	}
	if n.Kind != yaml.MappingNode {
		f.errorf(n, field, "must be a mapping, e.g. %s", example)
		return
	}
	m := make(map[string]string, len(n.Content)/2)
	f.mapping(n, f.path(field), nil, func(key string, k, v *yaml.Node) {
		sub := fieldKey(field, key)
		f.pos[sub] = k
		if v.Kind == yaml.ScalarNode && yamlIsNull(v) {
			f.errorf(v, sub, "has no value; write %s: \"\" for an empty one", key)
			return
		}
		if val, ok := f.text(v, sub, "a string"); ok {
			m[key] = val
		}
	})
	*dst = m
}

// section checks that n is a mapping for the keys known and records the
// position of each.
func (f *fnParser) section(n *yaml.Node, field string, known []string, example string, each func(key string, v *yaml.Node)) {
	if yamlIsNull(n) {
		return
	}
	if n.Kind != yaml.MappingNode {
		f.errorf(n, field, "must be a mapping like %s", example)
		return
	}
	f.mapping(n, f.path(field), known, func(key string, k, v *yaml.Node) {
		f.pos[field+"."+key] = v
		each(key, v)
	})
}

func (f *fnParser) limits(n *yaml.Node, field string, l *Limits) {
	f.section(n, field, limitsKeys, "{memory: 512MiB, cpus: 0.5, pids: 512}", func(key string, v *yaml.Node) {
		sub := field + "." + key
		switch key {
		case "memory":
			if f.size(v, sub, &l.Memory) && l.Memory == 0 {
				f.errorf(v, sub, "0: every replica has a memory limit; write one (at least 4MiB), or remove the key for the default, 256MiB")
			}
		case "pids":
			var n int
			if f.integer(v, sub, "512", &n) && n == 0 {
				f.errorf(v, sub, "0: every replica has a process limit; write one (%d-%d), or remove the key for the default, %d", MinPids, MaxPids, DefaultPids)
			}
			l.Pids = int64(n)
		case "cpus":
			if f.number(v, sub, "0.5", &l.CPUs) && l.CPUs == 0 {
				f.errorf(v, sub, "0 is no limit; remove the key for no limit, or write a number of cores like 0.5")
			}
		}
	})
}

// rateLimit reads rate_limit: {requests: 100, per: 1s, by: function}; per
// defaults to 1s and by to function, requests has no default.
func (f *fnParser) rateLimit(n *yaml.Node, field string, dst **contract.RateLimit) {
	if yamlIsNull(n) {
		return
	}
	r := contract.RateLimit{Per: time.Second, By: contract.RateByFunction}
	requests := false
	f.section(n, field, rateLimitKeys, "{requests: 100, per: 1s, by: function}", func(key string, v *yaml.Node) {
		sub := field + "." + key
		switch key {
		case "requests":
			requests = f.integer(v, sub, "100", &r.Requests)
		case "per":
			f.duration(v, sub, &r.Per)
		case "by":
			f.str(v, sub, "function, client or key", &r.By)
		}
	})
	if n.Kind == yaml.MappingNode && !requests && !f.bad[field+".requests"] {
		f.errorf(n, field, "requests is missing: write the most requests answered per period, e.g. {requests: 100, per: 1s}")
	}
	*dst = &r
}

// async reads async: {retries: 3, max_age: 1h, concurrency: 4, retry_500:
// false}; a key left out keeps contract.DefaultAsyncPolicy's value.
func (f *fnParser) async(n *yaml.Node, field, name string, dst **contract.AsyncPolicy) {
	if yamlIsNull(n) {
		return
	}
	const example = "{retries: 3, max_age: 1h, concurrency: 4, retry_500: false}"
	if n.Kind == yaml.ScalarNode { // async: true, as if it were a switch
		f.errorf(n, field, "every function takes async requests (at %s%s); async only sets how pulsed dispatches them: write a mapping like %s, or remove it for those defaults",
			contract.AsyncFunctionPrefix, name, example)
		return
	}
	p := contract.DefaultAsyncPolicy
	f.section(n, field, asyncKeys, example, func(key string, v *yaml.Node) {
		sub := field + "." + key
		switch key {
		case "retries":
			f.integer(v, sub, "3", &p.Retries)
		case "max_age":
			f.duration(v, sub, &p.MaxAge)
		case "concurrency":
			f.integer(v, sub, "4", &p.Concurrency)
		case "retry_500":
			f.boolean(v, sub, &p.Retry500)
		}
	})
	*dst = &p
}

func (f *fnParser) scale(n *yaml.Node, field string, s *Scale) {
	f.section(n, field, scaleKeys, "{metric: inflight, target: 10, min: 1, max: 10, idle: 5m}", func(key string, v *yaml.Node) {
		sub := field + "." + key
		switch key {
		case "metric":
			f.str(v, sub, "inflight, rps or queue", &s.Metric)
		case "target":
			f.number(v, sub, "10", &s.Target)
		case "min":
			f.integer(v, sub, "1", &s.Min)
		case "max":
			f.integer(v, sub, "10", &s.Max)
		case "idle":
			f.duration(v, sub, &s.Idle)
		}
	})
}

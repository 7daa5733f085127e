package function

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// SpecVersion is the only functions.yml version this Pulse reads.
const SpecVersion = 1

// SpecError is one problem in a function spec: where it is, which field, and
// what to do about it. ParseSpecs and LoadSpecs return every problem of a
// file at once, joined with errors.Join and sorted by position; errors.As
// finds the first.
type SpecError struct {
	File   string // the spec file as named by the caller
	Line   int    // 1-based; 0 when unknown
	Column int    // 1-based; 0 when unknown (YAML syntax errors carry a line only)
	Field  string // the field path, e.g. functions.hello.timeout; empty for the file as a whole
	Msg    string // what is wrong and what to write instead
}

func (e *SpecError) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
		if e.Column > 0 {
			fmt.Fprintf(&b, ":%d", e.Column)
		}
	}
	if b.Len() > 0 {
		b.WriteString(": ")
	}
	if e.Field != "" {
		b.WriteString(e.Field)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// LoadSpecs reads a functions.yml (path may also name the directory holding
// one) and returns its functions in file order, with defaults applied.
func LoadSpecs(path string) ([]Spec, error) {
	if fi, err := os.Stat(path); err == nil && fi.IsDir() {
		path = filepath.Join(path, SpecFile)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load function spec: %w", err)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("load function spec: %w", err)
	}
	return ParseSpecs(path, data, filepath.Dir(abs))
}

// ParseSpecs parses the functions.yml in data. name is the file's name in
// messages; dir is its directory, which becomes every Spec's Dir (made
// absolute). It returns the functions in file order with defaults applied, or
// every problem found, each naming the file, line, column and field.
func ParseSpecs(name string, data []byte, dir string) ([]Spec, error) {
	if !filepath.IsAbs(dir) {
		if abs, err := filepath.Abs(dir); err == nil {
			dir = abs
		}
	}
	p := &specParser{file: name, dir: filepath.Clean(dir)}
	specs := p.parse(data)
	if len(p.errs) > 0 {
		slices.SortStableFunc(p.errs, func(a, b *SpecError) int {
			return cmp.Or(cmp.Compare(a.Line, b.Line), cmp.Compare(a.Column, b.Column),
				cmp.Compare(a.Field, b.Field), cmp.Compare(a.Msg, b.Msg))
		})
		errs := make([]error, 0, len(p.errs))
		for i, e := range p.errs {
			if i > 0 && *e == *p.errs[i-1] { // an alias can repeat a node's problem
				continue
			}
			errs = append(errs, e)
		}
		return nil, errors.Join(errs...)
	}
	return specs, nil
}

// Keys of the spec file, in the order messages list them.
var (
	rootKeys     = []string{"version", "functions"}
	functionKeys = []string{"lang", "handler", "mode", "args", "port", "env", "secrets", "limits",
		"timeout", "max_body", "max_overdue", "scale", "rate_limit", "async", "labels", "constraints"}
	rateLimitKeys = []string{"requests", "per", "by"}
	asyncKeys     = []string{"retries", "max_age", "concurrency", "retry_500"}
	limitsKeys    = []string{"memory", "cpus", "pids"}
	scaleKeys     = []string{"metric", "target", "min", "max", "idle"}
)

// removedKeys are function settings an older Pulse read, with what to use
// instead: refused, never ignored (a setting nothing enforces is worse than
// none).
var removedKeys = map[string]string{
	"auth": `no longer supported: invoke keys are managed with "pulse key add NAME" (keys live in pulsed's key store, ` +
		`which the gateway checks); remove auth (its Docker secret is not read)`,
}

type specParser struct {
	file string
	dir  string
	errs []*SpecError
}

func (p *specParser) add(n *yaml.Node, field, format string, args ...any) {
	e := &SpecError{File: p.file, Field: field, Msg: fmt.Sprintf(format, args...)}
	if n != nil {
		e.Line, e.Column = n.Line, n.Column
	}
	p.errs = append(p.errs, e)
}

var yamlLineError = regexp.MustCompile(`^yaml: line ([0-9]+): (.*)$`)

// syntaxError turns the YAML library's error, which carries a line but no
// column, into a SpecError.
func (p *specParser) syntaxError(data []byte, err error) {
	e := &SpecError{File: p.file, Msg: "not valid YAML: " + strings.TrimPrefix(err.Error(), "yaml: ")}
	if m := yamlLineError.FindStringSubmatch(err.Error()); m != nil {
		e.Line, _ = strconv.Atoi(m[1])
		e.Msg = "not valid YAML: " + m[2]
		if lines := bytes.Split(data, []byte("\n")); e.Line >= 1 && e.Line <= len(lines) && bytes.HasPrefix(bytes.TrimLeft(lines[e.Line-1], " "), []byte("\t")) {
			e.Msg += "; indent with spaces: YAML does not allow tabs there"
		}
	}
	p.errs = append(p.errs, e)
}

func (p *specParser) parse(data []byte) []Spec {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			p.add(nil, "", "the file is empty; start it with \"version: %d\" and a functions: map (pulse new writes one)", SpecVersion)
			return nil
		}
		p.syntaxError(data, err)
		return nil
	}
	var next yaml.Node
	if err := dec.Decode(&next); err == nil {
		p.add(&next, "", "a second YAML document; put every function under the one functions: map")
	} else if !errors.Is(err, io.EOF) {
		p.syntaxError(data, err)
	}
	if len(doc.Content) == 0 || yamlIsNull(doc.Content[0]) {
		p.add(&doc, "", "the file is empty; start it with \"version: %d\" and a functions: map (pulse new writes one)", SpecVersion)
		return nil
	}
	root := yamlResolve(doc.Content[0])
	if root.Kind != yaml.MappingNode {
		p.add(root, "", "the file must be a mapping with version: and functions:, e.g. \"version: %d\" then \"functions: {hello: {lang: go}}\"", SpecVersion)
		return nil
	}

	var version, functions *yaml.Node
	p.mapping(root, "", rootKeys, func(key string, k, v *yaml.Node) {
		switch key {
		case "version":
			version = v
		case "functions":
			functions = v
		}
	})
	switch {
	case version == nil:
		p.add(root, "version", "missing; start the file with \"version: %d\"", SpecVersion)
	case yamlResolve(version).Kind != yaml.ScalarNode || yamlResolve(version).Value != strconv.Itoa(SpecVersion):
		p.add(version, "version", "%s is not a version this Pulse reads; write \"version: %d\"", yamlValueText(version), SpecVersion)
	}
	if functions == nil {
		p.add(root, "functions", "missing; add the functions: map, e.g. \"functions: {hello: {lang: go}}\", or run pulse new")
		return nil
	}
	if yamlIsNull(functions) {
		p.add(functions, "functions", "no functions; add one, e.g. \"functions: {hello: {lang: go}}\", or run pulse new")
		return nil
	}
	functions = yamlResolve(functions)
	if functions.Kind != yaml.MappingNode {
		p.add(functions, "functions", "must be a mapping of function names to their settings, e.g. \"functions: {hello: {lang: go}}\"")
		return nil
	}
	if len(functions.Content) == 0 {
		p.add(functions, "functions", "no functions; add one, e.g. \"functions: {hello: {lang: go}}\", or run pulse new")
		return nil
	}
	var specs []Spec
	p.mapping(functions, "functions", nil, func(name string, k, v *yaml.Node) {
		specs = append(specs, p.function(name, k, v))
	})
	return specs
}

// mapping calls each for every key of the mapping n, in order, after
// checking that n is a mapping, its keys are strings, none repeats and (when
// known is not nil) every key is known. each gets the resolved value.
func (p *specParser) mapping(n *yaml.Node, path string, known []string, each func(key string, k, v *yaml.Node)) {
	seen := map[string]*yaml.Node{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], yamlResolve(n.Content[i+1])
		rk := yamlResolve(k)
		if rk.Kind != yaml.ScalarNode {
			p.add(k, path, "a key must be a plain string, not a %s", yamlKindName(rk))
			continue
		}
		key := rk.Value
		if yamlIsNull(rk) {
			key = ""
		}
		field := fieldKey(path, key)
		if rk.ShortTag() == "!!merge" {
			p.add(k, path, "merge keys (<<) are not supported; write the settings out")
			continue
		}
		if first, ok := seen[key]; ok {
			p.add(k, field, "set twice (first on line %d); keep one", first.Line)
			continue
		}
		seen[key] = k
		// A function's settings (the one mapping checked against
		// functionKeys) name a removed key with what replaced it.
		if msg, ok := removedKeys[key]; ok && known != nil && slices.Equal(known, functionKeys) {
			p.add(k, field, "%s", msg)
			continue
		}
		if known != nil && !slices.Contains(known, key) {
			p.add(k, field, "unknown key; %s", suggestKey(key, known))
			continue
		}
		each(key, k, v)
	}
}

// suggestKey names the known key closest to key, or lists them all.
func suggestKey(key string, known []string) string {
	norm := func(s string) string {
		return strings.NewReplacer("-", "", "_", "", " ", "").Replace(strings.ToLower(s))
	}
	best, bestDist := "", 3
	for _, k := range known {
		d := keyDistance(strings.ToLower(key), k)
		if norm(key) == norm(k) {
			d = 0
		} else if len(key) >= 3 && strings.HasPrefix(k, strings.ToLower(key)) {
			d = 1
		}
		if d < bestDist {
			best, bestDist = k, d
		}
	}
	if best != "" {
		return fmt.Sprintf("did you mean %s? (known here: %s)", best, strings.Join(known, ", "))
	}
	return "known here: " + strings.Join(known, ", ")
}

// keyDistance is the Levenshtein distance of a and b, in bytes.
func keyDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// yamlResolve follows an alias (*name) to the node it names.
func yamlResolve(n *yaml.Node) *yaml.Node {
	for i := 0; i < 8 && n.Kind == yaml.AliasNode && n.Alias != nil; i++ {
		n = n.Alias
	}
	return n
}

func yamlIsNull(n *yaml.Node) bool {
	n = yamlResolve(n)
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

func yamlKindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "mapping"
	case yaml.SequenceNode:
		return "list"
	case yaml.ScalarNode:
		return "value"
	case yaml.AliasNode:
		return "alias"
	}
	return "document"
}

// yamlValueText quotes a value for a message, or names its kind.
func yamlValueText(n *yaml.Node) string {
	n = yamlResolve(n)
	if n.Kind == yaml.ScalarNode {
		return strconv.Quote(n.Value)
	}
	return "a " + yamlKindName(n)
}

// fieldKey appends key to a field path, quoting it when it holds characters
// that would make the path ambiguous.
func fieldKey(path, key string) string {
	if !plainKey(key) {
		key = strconv.Quote(key)
	}
	if path == "" {
		return key
	}
	return path + "." + key
}

func fieldIndex(path string, i int) string {
	return path + "[" + strconv.Itoa(i) + "]"
}

func plainKey(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

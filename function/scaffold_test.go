package function

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"go/format"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/pulsefaas/pulse/contract"
)

func TestScaffold(t *testing.T) {
	base := func(name, lang, handler, mode string) Spec {
		return Spec{
			Name: name, Lang: lang, Handler: handler, Mode: mode,
			Timeout: 30 * time.Second, MaxBody: 10 << 20, Scale: DefaultScale(),
			File: SpecFile, Line: 5,
		}
	}
	tests := []struct {
		lang, mode string
		files      []string
		want       Spec
	}{
		{LangGo, "", []string{"functions.yml", "go.mod", "main.go"}, base("hello", LangGo, ".", "inproc")},
		{LangGo, "inproc", []string{"functions.yml", "go.mod", "main.go"}, base("hello", LangGo, ".", "inproc")},
		{LangC, "", []string{"functions.yml", "handler.c"}, base("hello", LangC, ".", "fork")},
		{LangCPP, "", []string{"functions.yml", "handler.cpp"}, base("hello", LangCPP, ".", "fork")},
		{LangBin, "", []string{"README.md", "functions.yml"}, base("hello", LangBin, "./fn", "fork")},
		{LangBin, "fork", []string{"README.md", "functions.yml"}, base("hello", LangBin, "./fn", "fork")},
		{LangBin, "http", []string{"README.md", "functions.yml"}, func() Spec {
			s := base("hello", LangBin, "./fn", "http")
			s.Port = 3000
			return s
		}()},
	}
	for _, tt := range tests {
		name := tt.mode
		if name == "" {
			name = "default"
		}
		t.Run(tt.lang+"/"+name, func(t *testing.T) {
			dir := t.TempDir()
			t.Chdir(dir)
			files, err := Scaffold(".", "hello", tt.lang, tt.mode)
			if err != nil {
				t.Fatal(err)
			}
			var want []string
			for _, f := range tt.files {
				want = append(want, filepath.Join("hello", f))
			}
			if !reflect.DeepEqual(files, want) {
				t.Errorf("files %q, want %q", files, want)
			}
			entries, err := os.ReadDir("hello")
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, e := range entries {
				names = append(names, e.Name())
				if fi, err := e.Info(); err != nil || fi.Mode() != 0o644 {
					t.Errorf("%s: mode %v, %v", e.Name(), fi.Mode(), err)
				}
			}
			if !reflect.DeepEqual(names, tt.files) {
				t.Errorf("directory holds %q, want %q", names, tt.files)
			}

			t.Chdir("hello")
			specs, err := LoadSpecs(SpecFile)
			if err != nil {
				t.Fatal(err)
			}
			tt.want.Dir = filepath.Join(dir, "hello")
			if !reflect.DeepEqual(specs, []Spec{tt.want}) {
				t.Errorf("spec\n got %+v\nwant %+v", specs, []Spec{tt.want})
			}
		})
	}
}

// TestScaffoldCommentedSettings: the rate_limit and async lines each
// template leaves commented out parse, once uncommented, to what their
// comments say: async's are contract.DefaultAsyncPolicy, what pulsed
// applies to a function without the section.
func TestScaffoldCommentedSettings(t *testing.T) {
	for _, lang := range []string{LangGo, LangC, LangCPP, LangBin} {
		t.Run(lang, func(t *testing.T) {
			dir := t.TempDir()
			if _, err := Scaffold(dir, "hello", lang, ""); err != nil {
				t.Fatal(err)
			}
			b, err := os.ReadFile(filepath.Join(dir, "hello", SpecFile))
			if err != nil {
				t.Fatal(err)
			}
			doc := string(b)
			for _, key := range []string{"rate_limit", "async"} {
				line := "\n    # " + key + ": {"
				if strings.Count(doc, line) != 1 {
					t.Fatalf("the template has %d commented %s lines, want 1:\n%s", strings.Count(doc, line), key, doc)
				}
				doc = strings.Replace(doc, line, "\n    "+key+": {", 1)
			}
			specs, err := ParseSpecs(SpecFile, []byte(doc), filepath.Join(dir, "hello"))
			if err != nil {
				t.Fatal(err)
			}
			wantRate := contract.RateLimit{Requests: 100, Per: time.Second, By: contract.RateByFunction}
			if s := specs[0]; s.RateLimit == nil || *s.RateLimit != wantRate || s.Async == nil || *s.Async != contract.DefaultAsyncPolicy {
				t.Errorf("uncommented: rate_limit %+v, async %+v; want %+v and %+v", s.RateLimit, s.Async, wantRate, contract.DefaultAsyncPolicy)
			}
		})
	}
}

func TestScaffoldRefusesOverwrite(t *testing.T) {
	dir := t.TempDir()
	if _, err := Scaffold(dir, "hello", LangC, ""); err != nil {
		t.Fatal(err)
	}
	spec := filepath.Join(dir, "hello", SpecFile)
	if err := os.WriteFile(spec, []byte("mine"), 0o644); err != nil {
		t.Fatal(err)
	}

	_, err := Scaffold(dir, "hello", LangCPP, "")
	want := "create " + spec + ": file already exists; a new function never overwrites anything: pick another name or directory, or move it away"
	if err == nil || err.Error() != want || !errors.Is(err, fs.ErrExist) {
		t.Errorf("second Scaffold: %v\nwant %s (and errors.Is fs.ErrExist)", err, want)
	}
	if b, _ := os.ReadFile(spec); string(b) != "mine" {
		t.Errorf("functions.yml was overwritten: %q", b)
	}
	if _, err := os.Stat(filepath.Join(dir, "hello", "handler.cpp")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("handler.cpp written next to a conflict: %v", err)
	}

	// One conflicting file stops everything: nothing is written.
	other := t.TempDir()
	if err := os.MkdirAll(filepath.Join(other, "hello"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(other, "hello", "main.go"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Scaffold(other, "hello", LangGo, ""); !errors.Is(err, fs.ErrExist) {
		t.Errorf("Scaffold over main.go: %v, want ErrExist", err)
	}
	if entries, _ := os.ReadDir(filepath.Join(other, "hello")); len(entries) != 1 {
		t.Errorf("files written despite the conflict: %v", entries)
	}

	// A file where the directory would be.
	if err := os.WriteFile(filepath.Join(other, "plain"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Scaffold(other, "plain", LangC, ""); !errors.Is(err, fs.ErrExist) {
		t.Errorf("Scaffold over a file: %v, want ErrExist", err)
	}

	// An existing directory without those files is fine.
	if err := os.MkdirAll(filepath.Join(other, "more"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := Scaffold(other, "more", LangBin, "http"); err != nil {
		t.Errorf("Scaffold into an existing empty directory: %v", err)
	}
}

func TestScaffoldBadInput(t *testing.T) {
	tests := []struct {
		name, lang, mode string
		want             string
	}{
		{"Hello", LangGo, "", `name: "Hello" has upper case letters; a function name becomes a DNS name, a URL path segment (/function/<name>) and a Swarm service name, so write it as a DNS label: 1-63 of a-z, 0-9 and '-', starting with a letter and not ending with '-', e.g. "hello"`},
		{"a/b", LangGo, "", `name: "a/b" has a path separator, which would split the URL path; a function name becomes a DNS name, a URL path segment (/function/<name>) and a Swarm service name, so write it as a DNS label: 1-63 of a-z, 0-9 and '-', starting with a letter and not ending with '-', e.g. "a-b"`},
		{"hello", "rust", "", `lang: "rust" is not a language Pulse builds; use go, c, cpp or bin (bin runs any static executable)`},
		{"hello", "", "", `lang: missing; set it to go, c, cpp or bin`},
		{"hello", LangGo, "fork", `mode: a go function runs in-process (the watchdog links its handler), not in mode fork; remove mode or write inproc`},
		{"hello", LangCPP, "http", `mode: a cpp function runs in fork mode (one process per request, stdin to stdout), not in mode http; remove mode or write fork`},
		{"hello", LangBin, "inproc", `mode: only a go function runs in-process; a bin function runs in mode fork (one process per request, stdin to stdout) or http (a server on 127.0.0.1:port)`},
		{"hello", LangBin, "grpc", `mode: "grpc" is not a mode; a bin function runs in mode fork or http`},
		{"x.y", "Go", "", `name: "x.y" has a '.', which would split it into several DNS labels; a function name becomes a DNS name, a URL path segment (/function/<name>) and a Swarm service name, so write it as a DNS label: 1-63 of a-z, 0-9 and '-', starting with a letter and not ending with '-', e.g. "x-y"` + "\n" +
			`lang: "Go" is not a language; write "go" (lower case)`},
	}
	for _, tt := range tests {
		t.Run(tt.name+"/"+tt.lang+"/"+tt.mode, func(t *testing.T) {
			dir := t.TempDir()
			_, err := Scaffold(dir, tt.name, tt.lang, tt.mode)
			if err == nil || err.Error() != tt.want {
				t.Errorf("Scaffold:\n got %v\nwant %s", err, tt.want)
			}
			if entries, _ := os.ReadDir(dir); len(entries) != 0 {
				t.Errorf("wrote %v", entries)
			}
		})
	}
}

// scaffoldTemplate scaffolds a function named hello in lang into a temporary
// directory and returns the function's directory.
func scaffoldTemplate(t *testing.T, lang string) string {
	t.Helper()
	dir := t.TempDir()
	if _, err := Scaffold(dir, "hello", lang, ""); err != nil {
		t.Fatal(err)
	}
	return filepath.Join(dir, "hello")
}

// compileTemplate compiles a C or C++ template statically, as pulse build
// does, and returns the executable.
func compileTemplate(t *testing.T, compiler, src string) string {
	t.Helper()
	if _, err := exec.LookPath(compiler); err != nil {
		t.Skipf("%s not installed (apt-get install %s): %v", compiler, map[string]string{"gcc": "gcc", "g++": "g++"}[compiler], err)
	}
	out := filepath.Join(filepath.Dir(src), "fn")
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, compiler, "-static", "-O2", "-Wall", "-Wextra", "-Werror", "-o", out, src)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", cmd, err, b)
	}
	return out
}

// runTemplate runs a compiled fork-mode function the way the watchdog does:
// the body on stdin, the request in CGI variables, nothing else inherited.
func runTemplate(t *testing.T, fn string, env []string, body []byte) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, fn)
	cmd.Env = env
	cmd.Stdin = bytes.NewReader(body)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s: %v\n%s", fn, err, stderr.Bytes())
	}
	if stderr.Len() > 0 {
		t.Errorf("stderr: %s", stderr.Bytes())
	}
	return out
}

// templateCGI is the request the template tests send.
var templateCGI = []string{
	"GATEWAY_INTERFACE=CGI/1.1",
	"REQUEST_METHOD=POST",
	"PATH_INFO=/p",
	"QUERY_STRING=a=1&b=x%20y",
	"HTTP_X_TEST=v",
	"CONTENT_LENGTH=5",
}

func TestTemplateC(t *testing.T) {
	fn := compileTemplate(t, "gcc", filepath.Join(scaffoldTemplate(t, LangC), "handler.c"))
	tests := []struct {
		name string
		body []byte
		want string
	}{
		{"body", []byte("pulse"), "Hello, pulse\n"},
		{"empty body", nil, "Hello, world\n"},
		{"binary body", []byte("a\x00b\xff"), "Hello, a\x00b\xff\n"},
		{"large body", bytes.Repeat([]byte("x"), 200_000), "Hello, " + strings.Repeat("x", 200_000) + "\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := string(runTemplate(t, fn, templateCGI, tt.body)); got != tt.want {
				t.Errorf("got %q, want %q", trimForMessage(got), trimForMessage(tt.want))
			}
		})
	}
}

func trimForMessage(s string) string {
	if len(s) > 100 {
		return s[:100] + "…"
	}
	return s
}

func TestTemplateCPP(t *testing.T) {
	fn := compileTemplate(t, "g++", filepath.Join(scaffoldTemplate(t, LangCPP), "handler.cpp"))

	// The experiment's request, as the brief states it: golden output.
	got := runTemplate(t, fn, templateCGI, []byte("hello \"pulse\"\n"))
	golden := filepath.Join("testdata", "template-cpp-echo.json")
	if *update {
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("echo:\n got %s\nwant %s", got, want)
	}

	// Decoding, escaping and header names, checked as JSON values.
	type echo struct {
		Method  string            `json:"method"`
		Path    string            `json:"path"`
		Query   map[string]string `json:"query"`
		Headers map[string]string `json:"headers"`
		Body    string            `json:"body"`
	}
	tests := []struct {
		name string
		env  []string
		body string
		want echo
	}{
		{
			name: "nothing",
			want: echo{Query: map[string]string{}, Headers: map[string]string{}},
		},
		{
			name: "query forms",
			env:  []string{"REQUEST_METHOD=GET", "QUERY_STRING=a=1&a=2&plus=x+y&pct=%41%zz%4&flag&&=empty&k%3D=v%26w&u=%C3%A9"},
			want: echo{Method: "GET", Query: map[string]string{
				"a": "2", "plus": "x y", "pct": "A%zz%4", "flag": "", "": "empty", "k=": "v&w", "u": "é",
			}, Headers: map[string]string{}},
		},
		{
			name: "headers",
			env: []string{"HTTP_X_TEST=v", "HTTP_ACCEPT=*/*", "HTTP_X_MULTI_WORD_NAME=a, b", "HTTP_=ignored",
				"CONTENT_TYPE=text/plain", "HOME=/", "PULSE_FUNCTION=hello"},
			want: echo{Query: map[string]string{}, Headers: map[string]string{
				"X-Test": "v", "Accept": "*/*", "X-Multi-Word-Name": "a, b", "Content-Type": "text/plain",
			}},
		},
		{
			name: "escapes",
			env:  []string{"PATH_INFO=/a\"b\\c", "QUERY_STRING=q=%0A%09%01%7F"},
			body: "quote\" backslash\\ nl\n cr\r tab\t bell\x07 nul\x00 é 😀 bad\xff\xc3 end",
			want: echo{Path: "/a\"b\\c", Query: map[string]string{"q": "\n\t\x01\x7f"}, Headers: map[string]string{},
				Body: "quote\" backslash\\ nl\n cr\r tab\t bell\x07 nul\x00 é 😀 bad\uFFFD\uFFFD end"},
		},
		{
			name: "invalid UTF-8 forms",
			body: "\xc0\xaf \xed\xa0\x80 \xf4\x90\x80\x80 \xe2\x82",
			want: echo{Query: map[string]string{}, Headers: map[string]string{},
				Body: "\uFFFD\uFFFD \uFFFD\uFFFD\uFFFD \uFFFD\uFFFD\uFFFD\uFFFD \uFFFD\uFFFD"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := runTemplate(t, fn, tt.env, []byte(tt.body))
			if !bytes.HasSuffix(out, []byte("}\n")) || bytes.Count(out, []byte("\n")) != 1 {
				t.Errorf("not one line of JSON: %q", out)
			}
			dec := json.NewDecoder(bytes.NewReader(out))
			dec.DisallowUnknownFields()
			var got echo
			if err := dec.Decode(&got); err != nil {
				t.Fatalf("%v: %q", err, out)
			}
			if !json.Valid(out) {
				t.Errorf("invalid JSON: %q", out)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("\n got %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

// TestTemplateGoVet checks that the Go template is gofmt-formatted and
// type-checks it against this module, the way pulse build supplies it: a
// replace directive and nothing fetched.
func TestTemplateGoVet(t *testing.T) {
	dir := scaffoldTemplate(t, LangGo)
	src, err := os.ReadFile(filepath.Join(dir, "main.go"))
	if err != nil {
		t.Fatal(err)
	}
	if formatted, err := format.Source(src); err != nil || !bytes.Equal(formatted, src) {
		t.Errorf("main.go is not gofmt-formatted (%v):\n%s", err, src)
	}
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	gomod := filepath.Join(dir, "go.mod")
	f, err := os.OpenFile(gomod, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString("\nreplace github.com/pulsefaas/pulse => " + root + "\n"); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "vet", "./...")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod", "GOPROXY=off", "GOWORK=off", "GOTOOLCHAIN=local")
	if out, err := cmd.CombinedOutput(); err != nil {
		b, _ := os.ReadFile(gomod)
		t.Fatalf("go vet: %v\n%s\ngo.mod:\n%s", err, out, b)
	}
}

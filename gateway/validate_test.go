package gateway

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// renderHAProxyBin returns the haproxy binary, or skips the test (.ci/run
// installs Debian's haproxy package).
func renderHAProxyBin(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath("haproxy")
	if err != nil {
		t.Skipf("haproxy not installed (apt-get install haproxy): %v", err)
	}
	return bin
}

// TestValidateGolden: HAProxy accepts every golden file; those without a
// host name to resolve or a server-state file to read raise no warning
// either.
func TestValidateGolden(t *testing.T) {
	bin := renderHAProxyBin(t)
	strict := map[string]bool{"empty": true, "one-function": true, "secured": true}
	renderGoldenFiles(t)
	for _, tc := range renderCases() {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := os.ReadFile(filepath.Join("testdata", "render", tc.name+".cfg"))
			if err != nil {
				t.Fatal(err)
			}
			if err := Validate(t.Context(), bin, cfg); err != nil {
				t.Errorf("Validate: %v", err)
			}
			if strict[tc.name] {
				if err := validateConfig(t.Context(), bin, cfg, "-dW"); err != nil {
					t.Errorf("haproxy -c -dW (warnings are errors): %v", err)
				}
			}
		})
	}
}

func TestValidateRejects(t *testing.T) {
	bin := renderHAProxyBin(t)
	good, err := os.ReadFile(filepath.Join("testdata", "render", "one-function.cfg"))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		cfg  []byte
		want []string // in the error, in order
	}{
		{
			"unknown balance algorithm",
			bytes.Replace(good, []byte("balance leastconn"), []byte("balance nonsense"), 1),
			[]string{"[haproxy.cfg:", "balance only supports", "Fatal errors found in configuration"},
		},
		{
			"unknown keyword",
			[]byte("frontend x\n    bindd 127.0.0.1:1\n"),
			[]string{"[haproxy.cfg:2]", "unknown keyword 'bindd'"},
		},
		{
			"bad ACL in a return rule",
			bytes.Replace(good, []byte("if { req.hdr_val(content-length) gt"), []byte("if { req.hdr_valx(content-length) gt"), 1),
			[]string{"[haproxy.cfg:", "hdr_valx"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Validate(t.Context(), bin, tt.cfg)
			if !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("Validate = %v, want ErrInvalidConfig", err)
			}
			msg := err.Error()
			rest := msg
			for _, w := range tt.want {
				i := strings.Index(rest, w)
				if i < 0 {
					t.Fatalf("error does not contain %q (in order):\n%s", w, msg)
				}
				rest = rest[i+len(w):]
			}
			if strings.Contains(msg, "[NOTICE]") || strings.Contains(msg, os.TempDir()+"/pulse-haproxy-check-") {
				t.Errorf("error keeps NOTICE lines or the temporary path:\n%s", msg)
			}
		})
	}
}

func TestValidateCannotRun(t *testing.T) {
	err := Validate(t.Context(), filepath.Join(t.TempDir(), "no-haproxy"), []byte("global\n"))
	if err == nil || errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("Validate with a missing binary = %v, want an error that is not ErrInvalidConfig", err)
	}

	bin := renderHAProxyBin(t)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := Validate(ctx, bin, []byte("global\n")); !errors.Is(err, context.Canceled) {
		t.Fatalf("Validate with a cancelled context = %v, want context.Canceled", err)
	}
}

// TestValidateLeavesNoFiles: the temporary directory goes away.
func TestValidateLeavesNoFiles(t *testing.T) {
	bin := renderHAProxyBin(t)
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	good, err := os.ReadFile(filepath.Join("testdata", "render", "empty.cfg"))
	if err != nil {
		t.Fatal(err)
	}
	if err := Validate(t.Context(), bin, []byte("frontend x\n    bindd 127.0.0.1:1\n")); err == nil {
		t.Fatal("Validate accepted a broken file")
	}
	if err := Validate(t.Context(), bin, good); err != nil {
		t.Fatalf("Validate(empty.cfg): %v", err)
	}
	left, err := os.ReadDir(tmp)
	if err != nil {
		t.Fatal(err)
	}
	if len(left) != 0 {
		t.Errorf("Validate left %d entries in TMPDIR", len(left))
	}
}

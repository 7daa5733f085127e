package main

import (
	"fmt"
	"os"

	"go.yaml.in/yaml/v3"

	"github.com/pulsefaas/pulse/contract"
	"github.com/pulsefaas/pulse/internal/credential"
)

// loadLegacyKeys reads the deprecated keys_file: a YAML map of function
// name to plaintext key. It must not be readable by group or others.
func loadLegacyKeys(path string) (map[string]string, error) {
	if path == "" {
		return nil, nil
	}
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("keys_file: %w", err)
	}
	if perm := st.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("keys_file %s has mode %04o: it holds plaintext keys and must not be readable by %s; run `chmod 600 %s` (better: import them with `pulse key add` and remove keys_file)",
			path, perm, credential.WhoReads(perm&0o077), path)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("keys_file: %w", err)
	}
	var m map[string]string
	if err := yaml.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("keys_file %s: want a YAML map of function name to key: %w", path, err)
	}
	for fn, k := range m {
		if msg := contract.FunctionNameProblem(fn); msg != "" {
			return nil, fmt.Errorf("keys_file %s: function %q: %s", path, fn, msg)
		}
		if k == "" {
			return nil, fmt.Errorf("keys_file %s: function %s: empty key", path, fn)
		}
	}
	return m, nil
}

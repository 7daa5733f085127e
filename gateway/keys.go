package gateway

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/pulsefaas/pulse/internal/credential"
)

// The keys map (RenderConfig.KeysMap) has two kinds of entries: "<name>
// required" marks a protected function, "<name>/<digest> ok" is one of its
// keys. A function name has no '/', so the two never collide.
const (
	keysMapRequired = "required"
	keysMapOK       = "ok"
)

// keysMapEntries returns the map's entries for keys (function name →
// lowercase hex SHA-256 digests of its keys), key → value. A function
// without digests has no entry: it is open.
func keysMapEntries(keys map[string][]string) map[string]string {
	out := map[string]string{}
	for fn, digests := range keys {
		if len(digests) == 0 {
			continue
		}
		out[fn] = keysMapRequired
		for _, d := range digests {
			out[fn+"/"+d] = keysMapOK
		}
	}
	return out
}

// CheckKeys reports every function name that is not one and every digest
// that is not a lowercase hex SHA-256 (contract.KeyDigest). Its errors name
// the function, never a digest.
func CheckKeys(keys map[string][]string) error {
	var errs []error
	for _, fn := range slices.Sorted(maps.Keys(keys)) {
		if !renderFunctionName(fn) {
			errs = append(errs, fmt.Errorf("keys: %q is not a function name", fn))
			continue
		}
		for i, d := range keys[fn] {
			if !isKeyDigest(d) {
				errs = append(errs, fmt.Errorf("keys of %s: digest %d: want 64 lowercase hex digits (contract.KeyDigest of the key)", fn, i+1))
			}
		}
	}
	return errors.Join(errs...)
}

func isKeyDigest(d string) bool {
	if len(d) != 64 {
		return false
	}
	for i := 0; i < len(d); i++ {
		if c := d[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// RenderKeysMap returns the keys map file for keys, sorted: what HAProxy
// loads at start and on every reload. It holds digests only, never a key.
func RenderKeysMap(keys map[string][]string) ([]byte, error) {
	if err := CheckKeys(keys); err != nil {
		return nil, fmt.Errorf("render keys map: %w", err)
	}
	entries := keysMapEntries(keys)
	var b strings.Builder
	b.WriteString("# Invoke keys of Pulse's gateway, written by pulsed: \"<function> required\" protects a function,\n")
	b.WriteString("# \"<function>/<sha256 of a key> ok\" is one of its keys. Changed at run time through HAProxy's runtime API.\n")
	for _, k := range slices.Sorted(maps.Keys(entries)) {
		fmt.Fprintf(&b, "%s %s\n", k, entries[k])
	}
	return []byte(b.String()), nil
}

// WriteKeysMap writes RenderKeysMap(keys) to path atomically, mode 0600.
func WriteKeysMap(path string, keys map[string][]string) error {
	data, err := RenderKeysMap(keys)
	if err != nil {
		return err
	}
	if err := credential.WriteFileAtomic(path, data, 0o600, -1); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// parseShowMap reads `show map <file>`: one "<id> <key> <value>" line per
// entry.
func parseShowMap(out string) (map[string]string, error) {
	m := map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		f := strings.Fields(line)
		if len(f) != 3 || !strings.HasPrefix(f[0], "0x") {
			return nil, fmt.Errorf("show map: unexpected line %q", line)
		}
		m[f[1]] = f[2]
	}
	return m, sc.Err()
}

// SetKeys replaces every function's invoke keys: keys maps a function name
// to the lowercase hex SHA-256 digests of its keys (contract.KeyDigest); a
// function with none (or absent) is open. The keys map file is rewritten
// at once (so HAProxy's next start or reload has them) and, once HAProxy
// runs, its in-memory map is brought to the same entries through the
// runtime API: new keys are added before the keys they replace are
// removed, so a rotation never refuses a valid key and never opens a
// protected function. No reload, no replica restart. Called before HAProxy
// started, the keys are kept and loaded with it. RenderConfig.KeysMap must
// be set.
func (r *Reconciler) SetKeys(ctx context.Context, keys map[string][]string) error {
	path := r.cfg.Render.KeysMap
	if path == "" {
		return errors.New("set keys: the gateway has no keys map (RenderConfig.KeysMap): keys cannot be enforced")
	}
	if err := CheckKeys(keys); err != nil {
		return fmt.Errorf("set keys: %w", err)
	}
	cp := make(map[string][]string, len(keys))
	for fn, ds := range keys {
		if len(ds) > 0 {
			cp[fn] = slices.Clone(ds)
		}
	}
	r.keysMu.Lock()
	defer r.keysMu.Unlock()
	if err := WriteKeysMap(path, cp); err != nil {
		return fmt.Errorf("set keys: %w", err)
	}
	r.mu.Lock()
	r.keys, r.keysSet = cp, true
	running := r.loadedSet
	r.mu.Unlock()
	if !running {
		return nil // loaded with the configuration at the first reload
	}
	if err := r.syncKeysLocked(ctx); err != nil {
		return fmt.Errorf("set keys: the file is written, but HAProxy's map is not: %w", err)
	}
	return nil
}

// syncKeys brings HAProxy's in-memory keys map to the keys last set.
func (r *Reconciler) syncKeys(ctx context.Context) error {
	if r.cfg.Render.KeysMap == "" {
		return nil
	}
	r.keysMu.Lock()
	defer r.keysMu.Unlock()
	return r.syncKeysLocked(ctx)
}

// syncKeysLocked diffs `show map` against the keys and applies the
// difference: added keys first, then protection marks, then removed marks,
// then removed keys. Called with keysMu held.
func (r *Reconciler) syncKeysLocked(ctx context.Context) error {
	path := r.cfg.Render.KeysMap
	r.mu.Lock()
	want, set := keysMapEntries(r.keys), r.keysSet
	r.mu.Unlock()
	if !set {
		return nil // nothing to apply yet: HAProxy keeps the file's keys
	}
	out, err := r.rt.Exec(ctx, "show map "+path)
	if err != nil {
		if strings.Contains(err.Error(), "Unknown map identifier") {
			// No backend uses the map (no function routed yet): HAProxy
			// has not loaded it, and reads the file at the reload that
			// adds the first backend.
			return nil
		}
		return fmt.Errorf("sync keys map: %w", err)
	}
	have, err := parseShowMap(out)
	if err != nil {
		return fmt.Errorf("sync keys map: %w", err)
	}
	var adds, marks, unmarks, dels []string
	for _, k := range slices.Sorted(maps.Keys(want)) {
		if v, ok := have[k]; ok && v == want[k] {
			continue
		}
		if want[k] == keysMapRequired {
			marks = append(marks, k)
		} else {
			adds = append(adds, k)
		}
	}
	for _, k := range slices.Sorted(maps.Keys(have)) {
		if _, ok := want[k]; ok {
			continue
		}
		if strings.Contains(k, "/") {
			dels = append(dels, k)
		} else {
			unmarks = append(unmarks, k)
		}
	}
	for _, k := range append(adds, marks...) {
		if _, ok := have[k]; ok { // wrong value: replace it
			if _, err := r.rt.Exec(ctx, fmt.Sprintf("set map %s %s %s", path, k, want[k])); err != nil {
				return fmt.Errorf("sync keys map: %w", err)
			}
			continue
		}
		if _, err := r.rt.Exec(ctx, fmt.Sprintf("add map %s %s %s", path, k, want[k])); err != nil {
			return fmt.Errorf("sync keys map: %w", err)
		}
	}
	for _, k := range append(unmarks, dels...) {
		if _, err := r.rt.Exec(ctx, fmt.Sprintf("del map %s %s", path, k)); err != nil {
			return fmt.Errorf("sync keys map: %w", err)
		}
	}
	if n := len(adds) + len(marks) + len(unmarks) + len(dels); n > 0 {
		r.log.Info("invoke keys applied", "changes", n, "protected", len(r.keysSnapshot()))
	}
	return nil
}

// keysSnapshot returns the protected functions' names.
func (r *Reconciler) keysSnapshot() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Sorted(maps.Keys(r.keys))
}

package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/pulsefaas/pulse/contract"
	"github.com/pulsefaas/pulse/internal/credential"
)

// The key store (issue 12, point 2): every function's invoke keys, as
// SHA-256 digests only, in <state_dir>/keys.json (0600, written atomically),
// applied to the gateway by a KeyApplier on every change (HAProxy's map at
// runtime: no reload, no replica restart).

// KeyApplier takes the whole key set: function → lowercase hex digests.
// gateway's Reconciler.SetKeys.
type KeyApplier func(ctx context.Context, keys map[string][]string) error

// maxKeysPerFunction bounds one function's keys (rotation needs two).
const maxKeysPerFunction = 16

// maxKeysBody bounds a POST body: a KeyAdd is ~120 bytes.
const maxKeysBody = 4 << 10

// storedKey is one key in keys.json.
type storedKey struct {
	ID      string `json:"id"`
	SHA256  string `json:"sha256"`
	Created string `json:"created"`
}

// keysFile is keys.json.
type keysFile struct {
	Version   int                    `json:"version"`
	Functions map[string][]storedKey `json:"functions"`
}

// keyStore holds the keys; every method is safe for concurrent use.
type keyStore struct {
	path  string
	apply KeyApplier
	now   func() time.Time

	mu   sync.Mutex
	keys map[string][]storedKey
}

var (
	errKeyNotFound  = errors.New("no such key")
	errKeyDuplicate = errors.New("duplicate key")
	errKeyLimit     = errors.New("too many keys")
)

// openKeyStore reads path (missing: empty). apply may be nil until the
// gateway is built (setApplier).
func openKeyStore(path string) (*keyStore, error) {
	s := &keyStore{path: path, now: time.Now, keys: map[string][]storedKey{}}
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return s, nil
	}
	if err != nil {
		return nil, fmt.Errorf("key store: %w", err)
	}
	if st, err := os.Stat(path); err == nil && st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("key store %s has mode %04o: run `chmod 600 %s`", path, st.Mode().Perm(), path)
	}
	keys, err := parseKeysFile(b)
	if err != nil {
		return nil, fmt.Errorf("key store %s: %w", path, err)
	}
	s.keys = keys
	return s, nil
}

// parseKeysFile reads and checks keys.json.
func parseKeysFile(b []byte) (map[string][]storedKey, error) {
	var f keysFile
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("malformed: %w", err)
	}
	if f.Version != 1 {
		return nil, fmt.Errorf("version %d: want 1", f.Version)
	}
	keys := map[string][]storedKey{}
	for fn, ks := range f.Functions {
		if msg := contract.FunctionNameProblem(fn); msg != "" {
			return nil, fmt.Errorf("function %q: %s", fn, msg)
		}
		if len(ks) > maxKeysPerFunction {
			return nil, fmt.Errorf("function %s: %d keys, over %d", fn, len(ks), maxKeysPerFunction)
		}
		ids := map[string]bool{}
		for _, k := range ks {
			if msg := contract.KeyIDProblem(k.ID); msg != "" {
				return nil, fmt.Errorf("function %s: key id %q: %s", fn, k.ID, msg)
			}
			if ids[k.ID] {
				return nil, fmt.Errorf("function %s: key id %s twice", fn, k.ID)
			}
			ids[k.ID] = true
			if msg := digestProblem(k.SHA256); msg != "" {
				return nil, fmt.Errorf("function %s: key %s: %s", fn, k.ID, msg)
			}
		}
		if len(ks) > 0 {
			keys[fn] = ks
		}
	}
	return keys, nil
}

func (s *keyStore) setApplier(apply KeyApplier) {
	s.mu.Lock()
	s.apply = apply
	s.mu.Unlock()
}

// digests is the set a KeyApplier takes.
func digests(keys map[string][]storedKey) map[string][]string {
	out := make(map[string][]string, len(keys))
	for fn, ks := range keys {
		for _, k := range ks {
			out[fn] = append(out[fn], k.SHA256)
		}
	}
	return out
}

// Digests returns the current set (for the gateway at start).
func (s *keyStore) Digests() map[string][]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return digests(s.keys)
}

// Apply hands the current set to the applier.
func (s *keyStore) Apply(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.apply == nil {
		return nil
	}
	return s.apply(ctx, digests(s.keys))
}

// change runs edit on a copy of the keys, then persists and applies the
// result; on any failure the store, the file and the gateway keep the old
// set.
func (s *keyStore) change(ctx context.Context, edit func(map[string][]storedKey) error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	next := make(map[string][]storedKey, len(s.keys))
	for fn, ks := range s.keys {
		next[fn] = slices.Clone(ks)
	}
	if err := edit(next); err != nil {
		return err
	}
	for fn, ks := range next {
		if len(ks) == 0 {
			delete(next, fn)
		}
	}
	if err := s.save(next); err != nil {
		return fmt.Errorf("save %s: %w", s.path, err)
	}
	if s.apply != nil {
		if err := s.apply(ctx, digests(next)); err != nil {
			if rerr := s.save(s.keys); rerr != nil {
				err = errors.Join(err, fmt.Errorf("restore %s: %w", s.path, rerr))
			}
			return fmt.Errorf("apply to the gateway: %w", err)
		}
	}
	s.keys = next
	return nil
}

func (s *keyStore) save(keys map[string][]storedKey) error {
	b, err := json.MarshalIndent(keysFile{Version: 1, Functions: keys}, "", "  ")
	if err != nil {
		return err
	}
	return credential.WriteFileAtomic(s.path, append(b, '\n'), 0o600, -1)
}

// Add stores a key for fn; an empty id gets a generated one. It returns
// the stored key's info.
func (s *keyStore) Add(ctx context.Context, fn string, add contract.KeyAdd) (contract.KeyInfo, error) {
	var info contract.KeyInfo
	err := s.change(ctx, func(keys map[string][]storedKey) error {
		if len(keys[fn]) >= maxKeysPerFunction {
			return fmt.Errorf("%w: %s has %d keys, the most a function may have; remove one first", errKeyLimit, fn, maxKeysPerFunction)
		}
		id := add.ID
		for _, k := range keys[fn] {
			if id != "" && k.ID == id {
				return fmt.Errorf("%w: %s already has a key %s; remove it first or choose another id", errKeyDuplicate, fn, id)
			}
			if subtle.ConstantTimeCompare([]byte(k.SHA256), []byte(add.SHA256)) == 1 {
				return fmt.Errorf("%w: %s already has this key (id %s)", errKeyDuplicate, fn, k.ID)
			}
		}
		if id == "" {
			id = newKeyID(keys[fn])
		}
		k := storedKey{ID: id, SHA256: add.SHA256, Created: s.now().UTC().Format(time.RFC3339)}
		keys[fn] = append(keys[fn], k)
		info = contract.KeyInfo{Function: fn, ID: k.ID, Created: k.Created}
		return nil
	})
	return info, err
}

// newKeyID returns "k" and 8 random hex digits, not among taken.
func newKeyID(taken []storedKey) string {
	for {
		b := make([]byte, 4)
		_, _ = rand.Read(b)
		id := "k" + hex.EncodeToString(b)
		if !slices.ContainsFunc(taken, func(k storedKey) bool { return k.ID == id }) {
			return id
		}
	}
}

// Remove deletes fn's key id.
func (s *keyStore) Remove(ctx context.Context, fn, id string) error {
	return s.change(ctx, func(keys map[string][]storedKey) error {
		i := slices.IndexFunc(keys[fn], func(k storedKey) bool { return k.ID == id })
		if i < 0 {
			return fmt.Errorf("%w: %s has no key %s", errKeyNotFound, fn, id)
		}
		keys[fn] = slices.Delete(keys[fn], i, i+1)
		return nil
	})
}

// List returns fn's keys, or every function's when fn is "", sorted.
func (s *keyStore) List(fn string) []contract.KeyInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := []contract.KeyInfo{}
	for f, ks := range s.keys {
		if fn != "" && f != fn {
			continue
		}
		for _, k := range ks {
			out = append(out, contract.KeyInfo{Function: f, ID: k.ID, Created: k.Created})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Function != out[j].Function {
			return out[i].Function < out[j].Function
		}
		return out[i].Created+out[i].ID < out[j].Created+out[j].ID
	})
	return out
}

// importLegacy adds the deprecated keys_file's keys (plaintext, hashed here)
// that the store does not hold yet, with id "keys-file"; it returns how many
// it added.
func (s *keyStore) importLegacy(ctx context.Context, legacy map[string]string) (int, error) {
	n := 0
	err := s.change(ctx, func(keys map[string][]storedKey) error {
		n = 0
		for _, fn := range sortedKeys(legacy) {
			d := contract.KeyDigest(legacy[fn])
			if slices.ContainsFunc(keys[fn], func(k storedKey) bool { return k.SHA256 == d }) {
				continue
			}
			id := "keys-file"
			if slices.ContainsFunc(keys[fn], func(k storedKey) bool { return k.ID == id }) {
				id = newKeyID(keys[fn])
			}
			keys[fn] = append(keys[fn], storedKey{ID: id, SHA256: d, Created: s.now().UTC().Format(time.RFC3339)})
			n++
		}
		return nil
	})
	return n, err
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// digestProblem checks a SHA-256 digest: 64 lowercase hex digits.
func digestProblem(d string) string {
	if len(d) != 64 {
		return fmt.Sprintf("sha256 has %d characters: want the 64 lowercase hex digits of the key's SHA-256", len(d))
	}
	for i := 0; i < len(d); i++ {
		if c := d[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return "sha256: want 64 lowercase hex digits (0-9, a-f)"
		}
	}
	return ""
}

// parseKeyAdd reads a POST body: one KeyAdd, nothing else.
func parseKeyAdd(body []byte) (contract.KeyAdd, error) {
	var add contract.KeyAdd
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&add); err != nil {
		if errors.Is(err, io.EOF) {
			return add, errors.New(`empty body: want {"sha256": "<64 hex digits>", "id": "<optional>"}`)
		}
		return add, fmt.Errorf("malformed JSON: %v", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return add, errors.New("malformed JSON: data after the object")
	}
	if msg := digestProblem(add.SHA256); msg != "" {
		return add, errors.New(msg)
	}
	if add.ID != "" {
		if msg := contract.KeyIDProblem(add.ID); msg != "" {
			return add, fmt.Errorf("id %q: %s", add.ID, msg)
		}
	}
	return add, nil
}

// bearer compares Authorization headers with a token in constant time.
type bearer struct {
	sum [sha256.Size]byte
	set bool
}

func newBearer(token string) bearer {
	if token == "" {
		return bearer{}
	}
	return bearer{sum: sha256.Sum256([]byte(token)), set: true}
}

func (b bearer) check(header string) bool {
	scheme, given, ok := strings.Cut(header, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || !b.set {
		return false
	}
	sum := sha256.Sum256([]byte(strings.TrimSpace(given)))
	return subtle.ConstantTimeCompare(sum[:], b.sum[:]) == 1
}

// keysHandler serves contract.KeysPath:
//
//	GET    /v1/keys/         every function's keys ([]contract.KeyInfo)
//	GET    /v1/keys/FN       FN's keys
//	POST   /v1/keys/FN       add one (body contract.KeyAdd): 201 KeyInfo
//	DELETE /v1/keys/FN/ID    remove one: 204
//
// Every request needs "Authorization: Bearer <api token>": 401 without it,
// 503 when no token is configured. Errors are JSON {"error": "..."}.
type keysHandler struct {
	store *keyStore
	tok   bearer
	log   *slog.Logger
}

func (h *keysHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxKeysBody)
	if !h.tok.set {
		writeJSONError(w, http.StatusServiceUnavailable, "no management token configured (api_token_file missing or empty): create it (make up, or the playbook, does) and restart pulsed")
		return
	}
	if !h.tok.check(r.Header.Get("Authorization")) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="pulsed"`)
		writeJSONError(w, http.StatusUnauthorized, "missing or wrong bearer token (the api_token_file's)")
		return
	}
	// Split the escaped path, so that an escaped '/' stays inside its
	// segment (and is refused there) instead of making another one.
	rest, ok := strings.CutPrefix(r.URL.EscapedPath(), contract.KeysPath)
	if !ok {
		writeJSONError(w, http.StatusNotFound, "not found")
		return
	}
	parts := strings.Split(rest, "/")
	for i, p := range parts {
		u, err := url.PathUnescape(p)
		if err != nil {
			writeJSONError(w, http.StatusBadRequest, "malformed path: "+err.Error())
			return
		}
		parts[i] = u
	}
	switch {
	case rest == "":
		if r.Method != http.MethodGet {
			methodNotAllowed(w, r, "GET")
			return
		}
		writeJSON(w, http.StatusOK, h.store.List(""))
	case len(parts) == 1:
		fn := parts[0]
		if msg := contract.FunctionNameProblem(fn); msg != "" {
			writeJSONError(w, http.StatusBadRequest, fmt.Sprintf("function %q: %s", fn, msg))
			return
		}
		switch r.Method {
		case http.MethodGet:
			writeJSON(w, http.StatusOK, h.store.List(fn))
		case http.MethodPost:
			h.add(w, r, fn)
		default:
			methodNotAllowed(w, r, "GET, POST")
		}
	case len(parts) == 2:
		fn, id := parts[0], parts[1]
		if msg := contract.FunctionNameProblem(fn); msg != "" {
			writeJSONError(w, http.StatusBadRequest, fmt.Sprintf("function %q: %s", fn, msg))
			return
		}
		if msg := contract.KeyIDProblem(id); msg != "" {
			writeJSONError(w, http.StatusBadRequest, fmt.Sprintf("key id %q: %s", id, msg))
			return
		}
		if r.Method != http.MethodDelete {
			methodNotAllowed(w, r, "DELETE")
			return
		}
		err := h.store.Remove(r.Context(), fn, id)
		if h.fail(w, err) {
			return
		}
		h.log.Info("invoke key removed", "component", "keys", "function", fn, "id", id)
		w.WriteHeader(http.StatusNoContent)
	default:
		writeJSONError(w, http.StatusNotFound, "want "+contract.KeysPath+"FUNCTION or "+contract.KeysPath+"FUNCTION/ID")
	}
}

func (h *keysHandler) add(w http.ResponseWriter, r *http.Request, fn string) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		var mb *http.MaxBytesError
		if errors.As(err, &mb) {
			writeJSONError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("body over %d bytes", maxKeysBody))
			return
		}
		writeJSONError(w, http.StatusBadRequest, "read body: "+err.Error())
		return
	}
	add, err := parseKeyAdd(body)
	if err != nil {
		writeJSONError(w, http.StatusBadRequest, err.Error())
		return
	}
	info, err := h.store.Add(r.Context(), fn, add)
	if h.fail(w, err) {
		return
	}
	h.log.Info("invoke key added", "component", "keys", "function", fn, "id", info.ID)
	writeJSON(w, http.StatusCreated, info)
}

// fail answers err, if any, and reports whether it did.
func (h *keysHandler) fail(w http.ResponseWriter, err error) bool {
	switch {
	case err == nil:
		return false
	case errors.Is(err, errKeyNotFound):
		writeJSONError(w, http.StatusNotFound, err.Error())
	case errors.Is(err, errKeyDuplicate):
		writeJSONError(w, http.StatusConflict, err.Error())
	case errors.Is(err, errKeyLimit):
		writeJSONError(w, http.StatusConflict, err.Error())
	default:
		h.log.Error("key store", "component", "keys", "err", err)
		writeJSONError(w, http.StatusInternalServerError, "key store: "+err.Error())
	}
	return true
}

func methodNotAllowed(w http.ResponseWriter, r *http.Request, allow string) {
	w.Header().Set("Allow", allow)
	writeJSONError(w, http.StatusMethodNotAllowed, fmt.Sprintf("method %s: want %s", r.Method, allow))
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func writeJSONError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, struct {
		Error string `json:"error"`
	}{msg})
}

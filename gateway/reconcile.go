package gateway

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/pulsefaas/pulse/contract"
)

// ReconcileConfig tunes the loop between the replica catalog and HAProxy.
type ReconcileConfig struct {
	Render     RenderConfig
	HAProxyBin string // for validation (haproxy -c)
	ConfigFile string // the file HAProxy loads; written atomically
	// Debounce coalesces catalog changes that need a reload (a function
	// added or removed, its settings changed) into one reload.
	Debounce time.Duration
	// Resync re-applies the last catalog this often even when nothing
	// changed: level-triggered, so a lost runtime command heals.
	Resync time.Duration
	// ProbeTimeout bounds one probe of a new replica's health; ProbeFor is
	// how long pulsed keeps probing before leaving it to HAProxy's checks.
	ProbeTimeout, ProbeFor time.Duration
}

// DefaultReconcileConfig returns the defaults.
func DefaultReconcileConfig() ReconcileConfig {
	return ReconcileConfig{
		Render: DefaultRenderConfig(), HAProxyBin: "haproxy",
		Debounce: 200 * time.Millisecond, Resync: 5 * time.Second,
		ProbeTimeout: 500 * time.Millisecond, ProbeFor: 30 * time.Second,
	}
}

// HAProxyReloader is what the reconciler needs of the supervisor.
type HAProxyReloader interface {
	Reload(ctx context.Context) error
}

// RuntimeAPI is what the reconciler needs of HAProxy's runtime API.
type RuntimeAPI interface {
	Servers(ctx context.Context, backend string) ([]ServerState, error)
	SetState(ctx context.Context, backend, name string, st AdminState) error
	SetAddr(ctx context.Context, backend, name, addr string) error
	Exec(ctx context.Context, command string) (string, error)
}

var (
	_ HAProxyReloader = (*HAProxy)(nil)
	_ RuntimeAPI      = (*Runtime)(nil)
)

// Reconciler keeps HAProxy exactly in step with the catalog: replica
// changes through the runtime API (and into the file, so a later reload
// keeps them), function changes by render → validate → reload. An invalid
// render is never loaded: the last good configuration stays and the error is
// logged and kept for /healthz.
type Reconciler struct {
	cfg    ReconcileConfig
	hap    HAProxyReloader
	rt     RuntimeAPI
	log    *slog.Logger
	client *http.Client

	mu        sync.Mutex
	loaded    string // structure key of the configuration HAProxy runs
	lastGood  []byte
	lastErr   error
	reloads   int
	probing   map[string]bool // backend/server being probed
	loadedSet bool
	again     chan struct{} // a replica became ready: apply the last catalog again

	// slots is where each replica sits; only Run's goroutine changes it.
	slots     Slots
	recovered bool
	// routed is, per function, the tasks whose slot is in rotation (ready
	// in HAProxy, not draining); routeVer changes whenever it does.
	routed   map[string]map[string]bool
	routeVer uint64

	// keys are the invoke keys last given to SetKeys (function → digests);
	// keysMu serialises writing the keys map and syncing HAProxy's copy.
	keys    map[string][]string
	keysSet bool
	keysMu  sync.Mutex
	// left is, per function left out of the gateway, why: logged when it
	// first appears or its reason changes, not on every apply.
	left map[string]string
}

// NewReconciler returns a reconciler; Run drives it.
func NewReconciler(cfg ReconcileConfig, hap HAProxyReloader, rt RuntimeAPI, log *slog.Logger) *Reconciler {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cfg.Render.ProbeNew = true
	return &Reconciler{cfg: cfg, hap: hap, rt: rt, log: log.With("component", "reconcile"),
		// Replicas are probed directly: never through HTTP_PROXY.
		client: &http.Client{Timeout: cfg.ProbeTimeout, Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 2, IdleConnTimeout: 30 * time.Second}}, probing: map[string]bool{}, again: make(chan struct{}, 1),
		slots: Slots{}, routed: map[string]map[string]bool{}, left: map[string]string{}}
}

// Err is the last reconcile error, or nil.
func (r *Reconciler) Err() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.lastErr
}

// Reloads counts the reloads done.
func (r *Reconciler) Reloads() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.reloads
}

// Run applies every catalog from updates until ctx ends.
func (r *Reconciler) Run(ctx context.Context, updates <-chan contract.Catalog) error {
	var (
		last    contract.Catalog
		have    bool
		pending <-chan time.Time
	)
	resync := time.NewTicker(r.cfg.Resync)
	defer resync.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case cat := <-updates:
			last, have = cat, true
			if r.needsReload(cat) {
				if pending == nil {
					pending = time.After(r.cfg.Debounce)
				}
				continue
			}
			r.apply(ctx, last)
		case <-pending:
			pending = nil
			r.apply(ctx, last)
		case <-resync.C:
			if have && pending == nil {
				r.apply(ctx, last)
			}
		case <-r.again:
			if have && pending == nil {
				r.apply(ctx, last)
			}
		}
	}
}

// renderedLabels are the service labels Render writes into a backend; a
// change of any other label (the image of a rolling update, the scale
// policy) needs no reload.
var renderedLabels = []string{contract.LabelTimeout, contract.LabelMaxBody}

// structureKey is what a runtime change cannot express: the functions, every
// setting rendered into their backends and their number of slots, but not
// which replica sits in which slot.
func (r *Reconciler) structureKey(cat contract.Catalog, slots Slots) string {
	var b strings.Builder
	for _, fn := range cat.Functions {
		fmt.Fprintf(&b, "%s{", fn.Name)
		for _, k := range renderedLabels {
			if v, ok := fn.Labels[k]; ok {
				fmt.Fprintf(&b, "%s=%s;", k, v)
			}
		}
		n := -1
		if bs := slots.Of(fn.Name); bs != nil {
			n = len(bs.Tasks)
		}
		fmt.Fprintf(&b, "slots=%d}", n)
	}
	return b.String()
}

// needsReload reports whether cat changes what the file declares (before
// any slot growth, which apply finds out itself).
func (r *Reconciler) needsReload(cat contract.Catalog) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.loadedSet {
		return true
	}
	probe := r.slots.Clone()
	probe.Place(cat)
	return r.loaded != r.structureKey(cat, probe)
}

// apply brings HAProxy to cat.
func (r *Reconciler) apply(ctx context.Context, cat contract.Catalog) {
	err := r.applyErr(ctx, cat)
	r.mu.Lock()
	r.lastErr = err
	r.mu.Unlock()
	if err != nil && ctx.Err() == nil {
		r.log.Error("reconcile", "err", err)
	}
}

func (r *Reconciler) applyErr(ctx context.Context, cat contract.Catalog) error {
	r.mu.Lock()
	if !r.recovered {
		// pulsed restarted while HAProxy ran on: keep each replica in the
		// slot HAProxy has it in.
		if have, err := r.rt.Servers(ctx, ""); err == nil {
			r.slots.Recover(cat, have)
			r.recoverRouted(cat, have)
			r.recovered = true
		}
	}
	r.slots.Place(cat)
	slots := r.slots.Clone()
	cat = withRouted(cat, r.routed)
	r.mu.Unlock()

	cfg, err := Render(r.cfg.Render, cat, slots)
	left := map[string]string{}
	if bad := functionErrors(err); len(bad) > 0 {
		// Bad functions must not hold up the others: drop every one of
		// them (the catalog skips most before they get here) and say so.
		for _, fe := range bad {
			left[fe.Function] = fe.Err.Error()
			cat = withoutFunction(cat, fe.Function)
		}
		r.mu.Lock()
		r.slots.Place(cat)
		slots = r.slots.Clone()
		r.mu.Unlock()
		cfg, err = Render(r.cfg.Render, cat, slots)
	}
	r.noteLeftOut(left)
	if err != nil {
		return fmt.Errorf("render: %w", err)
	}
	key := r.structureKey(cat, slots)
	r.mu.Lock()
	reload := !r.loadedSet || r.loaded != key
	r.mu.Unlock()
	if reload {
		if err := r.writeKeysMap(); err != nil {
			return err
		}
		if err := Validate(ctx, r.cfg.HAProxyBin, cfg); err != nil {
			return fmt.Errorf("new configuration refused, keeping the last good one: %w", err)
		}
		if err := r.write(cfg); err != nil {
			return err
		}
		r.saveState(ctx)
		if err := r.hap.Reload(ctx); err != nil {
			return fmt.Errorf("reload: %w", err)
		}
		r.mu.Lock()
		r.loaded, r.loadedSet, r.lastGood = key, true, cfg
		r.reloads++
		r.mu.Unlock()
		r.log.Info("haproxy reloaded", "functions", len(cat.Functions), "slots", slots.String())
		// The new worker starts from the saved states and the file: check
		// every slot against the catalog again at once.
		r.kick()
		return nil
	}
	// Same functions, settings and slots: replicas through the runtime API,
	// and the file updated so a later reload keeps them where they are.
	if !bytes.Equal(cfg, r.lastGood) {
		if err := r.write(cfg); err != nil {
			return err
		}
		r.mu.Lock()
		r.lastGood = cfg
		r.mu.Unlock()
	}
	var errs []error
	if err := r.syncKeys(ctx); err != nil {
		errs = append(errs, err)
	}
	listed := map[string]bool{}
	for _, fn := range cat.Functions {
		listed[fn.Name] = true
		if err := r.syncBackend(ctx, fn, slots.Of(fn.Name)); err != nil {
			errs = append(errs, err)
		}
	}
	r.mu.Lock()
	for fn := range r.routed {
		if !listed[fn] {
			delete(r.routed, fn)
			r.routeVer++
		}
	}
	r.mu.Unlock()
	r.saveState(ctx)
	return errors.Join(errs...)
}

// saveState writes HAProxy's current server states into the server-state
// file the configuration loads, so a reload — pulsed's or anyone's — starts
// the new worker with every server as it was (UP, drained, in maintenance)
// instead of down until its first health check (measured: a few 503s per
// reload without it).
func (r *Reconciler) saveState(ctx context.Context) {
	path := r.cfg.Render.ServerStateFile
	if path == "" {
		return
	}
	out, err := r.rt.Exec(ctx, "show servers state")
	if err != nil {
		r.log.Warn("save server states", "err", err)
		return
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(out), 0o640); err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		r.log.Warn("save server states", "err", err)
	}
}

// recoverRouted marks as routed the replicas HAProxy already serves from
// their slot (pulsed restarted while HAProxy ran on), so the reload of the
// first apply keeps them in rotation. Called with mu held.
func (r *Reconciler) recoverRouted(cat contract.Catalog, servers []ServerState) {
	for _, fn := range cat.Functions {
		backend := BackendName(fn.Name)
		for _, rep := range fn.Replicas {
			i := r.slots.Slot(fn.Name, rep.TaskID)
			for _, sv := range servers {
				if sv.Backend == backend && slotIndex(sv.Name) == i && i >= 0 && sv.State() == StateReady && sv.Address() == rep.Addr {
					if r.routed[fn.Name] == nil {
						r.routed[fn.Name] = map[string]bool{}
					}
					r.routed[fn.Name][rep.TaskID] = true
				}
			}
		}
	}
}

// withRouted returns cat with each replica's Routed from routed (the file
// then declares a replica not probed yet disabled: ProbeNew).
func withRouted(cat contract.Catalog, routed map[string]map[string]bool) contract.Catalog {
	out := cat
	out.Functions = make([]contract.CatalogFunction, len(cat.Functions))
	for i, fn := range cat.Functions {
		fn.Replicas = slices.Clone(fn.Replicas)
		for j := range fn.Replicas {
			fn.Replicas[j].Routed = routed[fn.Name][fn.Replicas[j].TaskID]
		}
		out.Functions[i] = fn
	}
	return out
}

// functionErrors returns every *FunctionError in err (Render joins one per
// bad function).
func functionErrors(err error) []*FunctionError {
	if err == nil {
		return nil
	}
	if fe, ok := err.(*FunctionError); ok {
		return []*FunctionError{fe}
	}
	switch e := err.(type) {
	case interface{ Unwrap() []error }:
		var out []*FunctionError
		for _, inner := range e.Unwrap() {
			out = append(out, functionErrors(inner)...)
		}
		return out
	case interface{ Unwrap() error }:
		return functionErrors(e.Unwrap())
	}
	return nil
}

// noteLeftOut logs each function left out of the gateway once, and again
// only when its reason changes; and when it is back.
func (r *Reconciler) noteLeftOut(left map[string]string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, fn := range slices.Sorted(maps.Keys(left)) {
		if r.left[fn] != left[fn] {
			r.log.Error("function left out of the gateway", "function", fn, "err", left[fn])
		}
	}
	for fn := range r.left {
		if _, ok := left[fn]; !ok {
			r.log.Info("function back in the gateway", "function", fn)
		}
	}
	r.left = left
}

// LeftOut returns the functions the last apply left out of the gateway,
// with the reason.
func (r *Reconciler) LeftOut() map[string]string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return maps.Clone(r.left)
}

// writeKeysMap writes the keys last set to the keys map file before a
// reload or a first start, so HAProxy finds it (it refuses a configuration
// whose map file is missing).
func (r *Reconciler) writeKeysMap() error {
	if r.cfg.Render.KeysMap == "" {
		return nil
	}
	r.keysMu.Lock()
	defer r.keysMu.Unlock()
	r.mu.Lock()
	keys, set := r.keys, r.keysSet
	r.mu.Unlock()
	if !set {
		// No SetKeys yet (pulsed restarted and has not loaded its key
		// store): keep the file HAProxy runs with rather than open every
		// function; create an empty one only if there is none.
		if _, err := os.Stat(r.cfg.Render.KeysMap); err == nil {
			return nil
		}
	}
	return WriteKeysMap(r.cfg.Render.KeysMap, keys)
}

func withoutFunction(cat contract.Catalog, name string) contract.Catalog {
	out := cat
	out.Functions = nil
	for _, fn := range cat.Functions {
		if fn.Name != name {
			out.Functions = append(out.Functions, fn)
		}
	}
	return out
}

// write replaces the configuration file atomically.
func (r *Reconciler) write(cfg []byte) error {
	dir := filepath.Dir(r.cfg.ConfigFile)
	tmp, err := os.CreateTemp(dir, ".haproxy.cfg-")
	if err != nil {
		return fmt.Errorf("write config: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(cfg); err != nil {
		tmp.Close()
		return fmt.Errorf("write config: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write config: %w", err)
	}
	if err := os.Rename(tmp.Name(), r.cfg.ConfigFile); err != nil {
		return fmt.Errorf("write config: %w", err)
	}
	return nil
}

// kick asks Run to apply the last catalog again.
func (r *Reconciler) kick() {
	select {
	case r.again <- struct{}{}:
	default:
	}
}

// Slots returns a copy of where each replica sits.
func (r *Reconciler) Slots() Slots {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.slots.Clone()
}

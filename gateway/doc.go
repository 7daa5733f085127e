// Package gateway keeps HAProxy, Pulse's gateway, in step with the functions
// running in the swarm: HAProxy's configuration (render, validate, reload),
// its supervisor and runtime API, the reconcile loop from the replica catalog
// to HAProxy, the cold-start path and the idle watcher (DESIGN.md §3, §4).
//
// The replica catalog it follows (the one place that lists Swarm tasks,
// served read-only at contract.CatalogPath) is package internal/catalog;
// gateway reads it through CatalogReader and Reconciler.Run's updates, and
// adds the one fact only it knows, which replicas HAProxy routes
// (WithRouting, catalog_routing.go). The catalog moved there from this
// package in issue 13.
//
// Files, by job: render.go (Render: the global, defaults and frontend
// sections), renderconfig.go (RenderConfig, its defaults and checks),
// renderbackend.go (a function's backend), validate.go (haproxy -c);
// haproxy.go (the supervisor), haproxyconfig.go, haproxyreload.go,
// haproxyproc.go (show proc, /proc), haproxyout.go (its output);
// runtime.go and stat.go (the runtime API); slots.go; reconcile.go (the
// loop: render, reload, state) and reconcileruntime.go (a backend's slots
// changed without a reload, new replicas probed); keys.go; coldstart.go;
// idle.go.
package gateway

// Package gateway keeps HAProxy, Pulse's gateway, in step with the functions
// running in the swarm: HAProxy's configuration (render, validate, reload),
// its supervisor and runtime API, the reconcile loop from the replica catalog
// to HAProxy, the cold-start path and the idle watcher (DESIGN.md §3, §4).
//
// The replica catalog it follows (the one place that lists Swarm tasks,
// served read-only at contract.CatalogPath) is package internal/catalog;
// gateway reads it through CatalogReader and Reconciler.Run's updates, and
// adds the one fact only it knows, which replicas HAProxy routes
// (WithRouting).
package gateway

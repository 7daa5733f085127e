// Package catalog is pulsed's replica catalog (DESIGN.md §4 "one replica
// catalog"): the one place that lists Swarm tasks. It polls the Docker API
// (fast while the swarm converges, slow when it is steady), builds a
// contract.Catalog of every function of this instance with its labels,
// desired replicas and running (or draining) replicas, leaves out the
// functions whose spec the gateway cannot use (CheckFunction, listed under
// contract.Catalog.Skipped with the reason), hands each new catalog to its
// subscribers (Subscribe) and serves it read-only at contract.CatalogPath
// (NewHandler).
//
// It sits below the components (it was package gateway's before issue 13):
// pulsed builds it, the gateway (HAProxy's reconcile loop, cold start, idle
// watcher) and the scaler read it in process, the collector and the CLI over
// HTTP, and package function counts a task as a running replica with Up, as
// the catalog does. Which replicas HAProxy really routes (Replica.Routed) is
// the gateway's knowledge: gateway.WithRouting adds it to what NewHandler
// serves.
//
// Files: catalog.go the poller (Config, New, Current, Subscribe, Refresh,
// Run); read.go what it reads from the swarm (the Docker SDK calls); build.go
// how that becomes a contract.Catalog, with Up, the rule for a running
// replica; check.go CheckFunction, the rules a function's service must meet;
// http.go the handler.
package catalog

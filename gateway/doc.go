// Package gateway keeps HAProxy, Pulse's gateway, in step with the functions
// running in the swarm: the replica catalog (the one place that lists Swarm
// tasks, served read-only at contract.CatalogPath), HAProxy's configuration
// (render, validate, reload) and runtime API, and the reconcile loop between
// them (DESIGN.md §3, §4).
package gateway

// Package scaler is pulsed's autoscaler (DESIGN §3–§5): the alarm webhook
// Netdata's hook posts to, and a level-triggered control loop. An alarm only
// names a function; the scaler then re-reads the truth — the service's
// replica count and version from Swarm, the ready replicas from the replica
// catalog, the utilisation from Netdata — computes the desired replica count
// with decideReplicas (pure) and applies it with ServiceUpdate at the version
// it read, re-reading on a conflict. It also evaluates every function
// periodically, so a lost alarm does no harm, and a repeated or late one
// computes the same answer and changes nothing.
//
// A function's scale policy (its defaults, its labels, their rules) is not
// here: it is internal/scalelabels, shared with the CLI, the collector and
// the gateway.
//
// Files: policy.go (decideReplicas), scaler.go (the loop, per-function
// serialisation, EnsureReplicas, ScaleToZero, Functions, Events),
// evaluate.go (one evaluation: read, decide, apply, record the decision),
// alarm.go (the webhook's alarm: classify, parse, token), netdata.go
// (utilisation from Netdata's API), swarm.go (the only file importing the
// Docker SDK), server.go (the only file importing echo), metrics.go
// (pulsed's own Prometheus exposition of the scaler).
package scaler

package gateway

import (
	"slices"
	"strconv"
	"time"

	"github.com/pulsefaas/pulse/contract"
	"github.com/pulsefaas/pulse/internal/catalog"
)

// The replica catalog itself (polling Swarm, skipping unusable functions,
// the GET contract.CatalogPath handler) is package internal/catalog. What
// stays here is the one fact only the gateway knows: which replicas HAProxy
// routes requests to.

// RoutingSource says which replicas the gateway routes requests to:
// *Reconciler.
type RoutingSource interface {
	Routing() (map[string]map[string]bool, uint64)
}

var _ RoutingSource = (*Reconciler)(nil)

// WithRouting returns src with every replica's Routed set from routing and
// a version that changes when either does, so GET /v1/replicas tells a
// client (`pulse deploy`, `pulse scale --wait`) when the gateway really
// sends a new replica requests.
func WithRouting(src catalog.Source, routing RoutingSource) catalog.Source {
	return routedCatalog{src: src, routing: routing}
}

type routedCatalog struct {
	src     catalog.Source
	routing RoutingSource
}

func (c routedCatalog) Current() (contract.Catalog, time.Time, error) {
	cat, at, err := c.src.Current()
	if err != nil {
		return cat, at, err
	}
	routed, ver := c.routing.Routing()
	out := cat
	out.Version = cat.Version + "-" + strconv.FormatUint(ver, 10)
	out.Functions = make([]contract.CatalogFunction, len(cat.Functions))
	for i, fn := range cat.Functions {
		fn.Replicas = slices.Clone(fn.Replicas)
		for j := range fn.Replicas {
			fn.Replicas[j].Routed = routed[fn.Name][fn.Replicas[j].TaskID] && !fn.Replicas[j].Draining
		}
		out.Functions[i] = fn
	}
	return out, at, nil
}

package main

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/pulsefaas/pulse/gateway"
)

// wireGatewayAuth gives the gateway what it checks and adds: the replica
// credential (added to every request and health check HAProxy sends), the
// invoke keys' map file (digests, in the state dir) and the certificate.
func wireGatewayAuth(r *gateway.RenderConfig, cfg Config, sec secrets) {
	r.ReplicaAuth = sec.replicaAuth
	r.KeysMap = filepath.Join(cfg.StateDir, "keys.map")
	r.TLSCert = cfg.TLSCert
}

// coldStartAuth gives the cold-start path the replica credential: it
// checks it on what HAProxy sends and adds it to what it forwards.
func coldStartAuth(c *gateway.ColdStartConfig, sec secrets) {
	c.ReplicaAuth = sec.replicaAuth
}

// applyKeys makes the reconciler the key store's applier and hands it the
// stored keys.
func applyKeys(ctx context.Context, rec *gateway.Reconciler, keys *keyStore) error {
	keys.setApplier(rec.SetKeys)
	if err := keys.Apply(ctx); err != nil {
		return fmt.Errorf("invoke keys: %w", err)
	}
	return nil
}

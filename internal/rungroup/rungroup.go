// Package rungroup runs the long-lived parts of a process together (pulsed's
// HAProxy supervisor, catalog, reconciler, API server, scaler, ...): each
// part runs in its own goroutine under the group's context; the first part
// to end, with or without an error, cancels the others; Wait waits for every
// part and returns the first error, wrapped with the name of the part that
// returned it.
//
// A group replaces counting parts by hand: a part started is a part waited
// for, so a supervisor that cleans up on cancel (HAProxy's, which stops
// HAProxy) always finishes before Wait returns.
package rungroup

import (
	"context"
	"fmt"
	"sync"
)

// Group is a set of parts sharing one context. Create it with New; the zero
// Group is not usable.
type Group struct {
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu    sync.Mutex
	first error
}

// New returns a group whose context is derived from ctx: cancelling ctx
// stops every part, as does the end of any one part.
func New(ctx context.Context) *Group {
	ctx, cancel := context.WithCancel(ctx)
	return &Group{ctx: ctx, cancel: cancel}
}

// Go runs fn(ctx) in a new goroutine, ctx being the group's context. When
// fn returns, the group's context is cancelled; a non-nil error is kept,
// as "name: err", if it is the first one to arrive.
func (g *Group) Go(name string, fn func(ctx context.Context) error) {
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		err := fn(g.ctx)
		if err != nil {
			g.mu.Lock()
			if g.first == nil {
				g.first = fmt.Errorf("%s: %w", name, err)
			}
			g.mu.Unlock()
		}
		g.cancel()
	}()
}

// Wait waits for every part started with Go to return, then returns the
// first non-nil error in the order the parts ended (nil if none failed).
// The group's context is cancelled when Wait returns.
func (g *Group) Wait() error {
	g.wg.Wait()
	g.cancel()
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.first
}

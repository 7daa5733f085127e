package watchdog

import (
	"context"
	"sync"
	"time"
)

// deadlineCtx is a request's context with the exec timeout's deadline. It
// behaves as context.WithDeadline(parent, deadline), but its timer and its
// link to the parent are made only when someone asks for Done: most
// functions never do, and for them context.WithTimeout's timer, parent
// registration and child map were the larger part of the watchdog's
// per-request cost in front of an in-process function.
type deadlineCtx struct {
	parent   context.Context
	deadline time.Time

	mu       sync.Mutex
	done     chan struct{} // made on first Done
	err      error         // set when done closes
	timer    *time.Timer
	stopLink func() bool
}

var _ context.Context = (*deadlineCtx)(nil)

func (c *deadlineCtx) Deadline() (time.Time, bool) { return c.deadline, true }

func (c *deadlineCtx) Value(key any) any { return c.parent.Value(key) }

func (c *deadlineCtx) Done() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.done == nil {
		c.done = make(chan struct{})
		if err := c.errLocked(); err != nil {
			c.err = err
			close(c.done)
			return c.done
		}
		c.timer = time.AfterFunc(time.Until(c.deadline), func() { c.cancel(context.DeadlineExceeded) })
		c.stopLink = context.AfterFunc(c.parent, func() { c.cancel(context.Cause(c.parent)) })
	}
	return c.done
}

func (c *deadlineCtx) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return c.err
	}
	return c.errLocked()
}

// errLocked derives the error without a channel: the deadline passed, or
// the parent ended.
func (c *deadlineCtx) errLocked() error {
	if err := c.parent.Err(); err != nil {
		return err
	}
	if !time.Now().Before(c.deadline) {
		return context.DeadlineExceeded
	}
	return nil
}

func (c *deadlineCtx) cancel(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return
	}
	if err == nil {
		err = context.Canceled
	}
	c.err = err
	close(c.done)
}

// expire ends the context now with err, unless it has ended: for a handler
// the watchdog stops waiting for, which release would otherwise leave with a
// Done that never closes.
func (c *deadlineCtx) expire(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return
	}
	c.err = err
	if c.done == nil {
		c.done = make(chan struct{})
	}
	close(c.done)
}

// release frees the timer and the parent link, if Done made them. After it,
// Err still tells the truth; Done no longer closes on the deadline.
func (c *deadlineCtx) release() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.timer != nil {
		c.timer.Stop()
		c.stopLink()
	}
}

// Package lazyctx is the context of one request or check: it carries a
// deadline, but creates the timer behind Done only when something waits
// on it (a DNS or ident lookup), and releasing it costs no allocation
// when nothing did. The front ends' address-only checks, the common case,
// thus never arm a timer: context.WithTimeout arms one, and registers
// with a cancellable parent, on every request.
package lazyctx

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// Context is a context.Context with a deadline whose timer is armed on
// the first call to Done. It is safe for concurrent use.
type Context struct {
	context.Context // the parent
	deadline        time.Time
	once            sync.Once
	inner           context.Context
	cancel          context.CancelFunc
	armed, released atomic.Bool
}

// WithTimeout returns a Context that ends timeout from now, when parent
// ends, or at Release, whichever comes first. Release it when the work
// is over.
func WithTimeout(parent context.Context, timeout time.Duration) *Context {
	return WithDeadline(parent, time.Now().Add(timeout))
}

// WithDeadline returns a Context that ends at d, when parent ends, or at
// Release, whichever comes first: WithTimeout for a caller that already
// knows the time. Release it when the work is over.
func WithDeadline(parent context.Context, d time.Time) *Context {
	if pd, ok := parent.Deadline(); ok && pd.Before(d) {
		d = pd
	}
	return &Context{Context: parent, deadline: d}
}

// canceled is the Done and Err of a Context released before anything
// waited on it.
var canceled = func() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}()

func (c *Context) arm() {
	c.once.Do(func() {
		if c.released.Load() {
			c.inner = canceled
			return
		}
		c.inner, c.cancel = context.WithDeadline(c.Context, c.deadline)
		c.armed.Store(true)
	})
}

// Armed reports whether the deadline timer has been created.
func (c *Context) Armed() bool { return c.armed.Load() }

// Deadline returns the deadline: the timeout's, or the parent's if that
// is earlier.
func (c *Context) Deadline() (time.Time, bool) { return c.deadline, true }

// Done arms the deadline timer on first use.
func (c *Context) Done() <-chan struct{} {
	c.arm()
	return c.inner.Done()
}

// Err reports context.Canceled once released, else the parent's error,
// else context.DeadlineExceeded after the deadline, without arming a
// timer.
func (c *Context) Err() error {
	if c.released.Load() {
		return context.Canceled
	}
	if err := c.Context.Err(); err != nil {
		return err
	}
	if !time.Now().Before(c.deadline) {
		return context.DeadlineExceeded
	}
	return nil
}

// Release ends the context: the timer, if armed, stops, and Done is
// closed for anyone still holding the context (a lookup that outlived
// the check).
func (c *Context) Release() {
	c.released.Store(true)
	c.once.Do(func() { c.inner = canceled })
	if c.cancel != nil {
		c.cancel()
	}
}

package accessd

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// checkContext is the context of one check: it carries the check's
// deadline, but creates the timer behind Done only when something waits on
// it (a DNS or ident lookup). Address-only checks, the common case, thus
// never arm a timer.
type checkContext struct {
	context.Context // the parent
	deadline        time.Time
	once            sync.Once
	inner           context.Context
	cancel          context.CancelFunc
	released        atomic.Bool
}

func newCheckContext(parent context.Context, timeout time.Duration) *checkContext {
	return &checkContext{Context: parent, deadline: time.Now().Add(timeout)}
}

func (c *checkContext) arm() {
	c.once.Do(func() { c.inner, c.cancel = context.WithDeadline(c.Context, c.deadline) })
}

// Deadline returns the check's deadline.
func (c *checkContext) Deadline() (time.Time, bool) { return c.deadline, true }

// Done arms the deadline timer on first use.
func (c *checkContext) Done() <-chan struct{} {
	c.arm()
	return c.inner.Done()
}

// Err reports context.DeadlineExceeded after the deadline, context.Canceled
// once the check is over, else the parent's error, without arming a timer.
func (c *checkContext) Err() error {
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

// release ends the check: the timer, if armed, stops, and Done is closed
// for anyone still holding the context (a lookup that outlived the check).
func (c *checkContext) release() {
	c.released.Store(true)
	c.once.Do(func() { c.inner, c.cancel = context.WithCancel(c.Context) })
	c.cancel()
}

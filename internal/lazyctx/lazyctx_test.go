package lazyctx

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestContext(t *testing.T) {
	c := WithTimeout(context.Background(), 30*time.Millisecond)
	if c.Err() != nil {
		t.Fatalf("fresh context has error %v", c.Err())
	}
	if c.Armed() {
		t.Fatal("timer armed before anyone waited")
	}
	select {
	case <-c.Done():
	case <-time.After(2 * time.Second):
		t.Fatal("Done not closed after the deadline")
	}
	if !errors.Is(c.Err(), context.DeadlineExceeded) {
		t.Errorf("Err = %v, want DeadlineExceeded", c.Err())
	}
	c.Release()

	parent, cancel := context.WithCancel(context.Background())
	c = WithTimeout(parent, time.Hour)
	done := c.Done()
	cancel()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		t.Fatal("parent cancel did not reach Done")
	}
	if !errors.Is(c.Err(), context.Canceled) {
		t.Errorf("Err = %v, want Canceled", c.Err())
	}
	c.Release()

	// A lookup that outlives its check sees the context done.
	c = WithTimeout(context.Background(), time.Hour)
	c.Release()
	select {
	case <-c.Done():
	default:
		t.Fatal("Done open after release")
	}
	if !errors.Is(c.Err(), context.Canceled) {
		t.Errorf("Err after release = %v, want Canceled", c.Err())
	}
}

// TestContextParentDeadline: an earlier parent deadline is the
// Context's, and releasing an unarmed Context allocates nothing.
func TestContextParentDeadline(t *testing.T) {
	parent, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	want, _ := parent.Deadline()
	c := WithTimeout(parent, time.Hour)
	if got, ok := c.Deadline(); !ok || !got.Equal(want) {
		t.Errorf("Deadline = %v, %v; want the parent's %v", got, ok, want)
	}
	if n := testing.AllocsPerRun(100, func() { WithTimeout(parent, time.Hour).Release() }); n > 1 {
		t.Errorf("WithTimeout+Release: %v allocations, want at most 1 (the Context)", n)
	}
}

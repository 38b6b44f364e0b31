package accessd

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestCheckContext(t *testing.T) {
	c := newCheckContext(context.Background(), 30*time.Millisecond)
	if c.Err() != nil {
		t.Fatalf("fresh context has error %v", c.Err())
	}
	if c.inner != nil {
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
	c.release()

	parent, cancel := context.WithCancel(context.Background())
	c = newCheckContext(parent, time.Hour)
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
	c.release()

	// A lookup that outlives its check sees the context done.
	c = newCheckContext(context.Background(), time.Hour)
	c.release()
	select {
	case <-c.Done():
	default:
		t.Fatal("Done open after release")
	}
	if !errors.Is(c.Err(), context.Canceled) {
		t.Errorf("Err after release = %v, want Canceled", c.Err())
	}
}

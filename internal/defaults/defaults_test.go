package defaults

import (
	"testing"
	"time"
)

func TestPositive(t *testing.T) {
	if got := Positive(0*time.Second, 5*time.Second); got != 5*time.Second {
		t.Errorf("zero: %v", got)
	}
	if got := Positive(-1, 7); got != 7 {
		t.Errorf("negative: %v", got)
	}
	if got := Positive(3, 7); got != 3 {
		t.Errorf("positive: %v", got)
	}
}

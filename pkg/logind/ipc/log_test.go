package ipc

import (
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
)

// writes records each Write as one string.
type writes struct {
	mu sync.Mutex
	w  []string
}

func (w *writes) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.w = append(w.w, string(p))
	return len(p), nil
}

func (w *writes) get() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.w...)
}

// TestLineLogBatches: a login process's INFO lines go to the supervisor
// in batches, at most logDelay late; a line of another level goes at
// once, after the batch (order kept), and so does a full batch.
func TestLineLogBatches(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := &writes{}
		l := &LineLog{W: w}
		l.Add("INFO", "a")
		l.Add("INFO", "b")
		if got := w.get(); len(got) != 0 {
			t.Fatalf("INFO lines written at once: %q", got)
		}
		time.Sleep(logDelay)
		synctest.Wait()
		l.Add("INFO", "c")
		l.Add("ERROR", "d")
		want := []string{"INFO a\nINFO b\n", "INFO c\nERROR d\n"}
		if d := cmp.Diff(want, w.get()); d != "" {
			t.Errorf("(-want +got)\n%s", d)
		}
		long := strings.Repeat("x", maxLogBatch)
		l.Add("INFO", long)
		l.Add("INFO", "e")
		time.Sleep(logDelay)
		synctest.Wait()
		want = append(want, "INFO "+long+"\n", "INFO e\n")
		if d := cmp.Diff(want, w.get()); d != "" {
			t.Errorf("(-want +got)\n%s", d)
		}
	})
}

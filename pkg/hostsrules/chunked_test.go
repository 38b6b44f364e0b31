package hostsrules

import (
	"cmp"
	"math/rand/v2"
	"slices"
	"testing"
)

// TestChunkedSortCompact checks sortCompact against slices.Sort and
// slices.Compact, for lists of one block, one sort group and several
// groups (which are merged), and that every block but the last is full.
func TestChunkedSortCompact(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, n := range []int{0, 1, 100, chunkLen, chunkLen + 1, 3*chunkLen + 5, 2*sortGroup*chunkLen + 3*chunkLen + 123} {
		var c chunked[uint64]
		var want []uint64
		for range n {
			v := rng.Uint64N(uint64(n)/2 + 1) // duplicates
			c.push(v)
			want = append(want, v)
		}
		slices.Sort(want)
		want = slices.Compact(want)
		c.sortCompact(cmp.Compare[uint64])
		if c.len() != len(want) {
			t.Fatalf("n=%d: %d entries, want %d", n, c.len(), len(want))
		}
		for i, b := range c.blocks {
			if i < len(c.blocks)-1 && len(b) != chunkLen {
				t.Fatalf("n=%d: block %d of %d has %d entries", n, i, len(c.blocks), len(b))
			}
		}
		for i, v := range want {
			if c.at(i) != v {
				t.Fatalf("n=%d: entry %d is %d, want %d", n, i, c.at(i), v)
			}
		}
		for _, x := range []uint64{0, 1, uint64(n) / 4, uint64(n)/2 + 1, 1 << 63} {
			want, _ := slices.BinarySearch(want, x)
			if got := lowerBoundChunked(&c, x); got != want {
				t.Fatalf("n=%d: lowerBoundChunked(%d) = %d, want %d", n, x, got, want)
			}
			if got := c.search(func(e uint64) bool { return e < x }); got != want {
				t.Fatalf("n=%d: search(%d) = %d, want %d", n, x, got, want)
			}
		}
	}
}

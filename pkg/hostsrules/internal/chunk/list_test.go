package chunk

import (
	"cmp"
	"math/rand/v2"
	"slices"
	"testing"
)

// TestListSortCompact checks SortCompact against slices.Sort and
// slices.Compact, for lists of one block, one sort group and several
// groups (which are merged), and that every block but the last is full.
func TestListSortCompact(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, n := range []int{0, 1, 100, BlockLen, BlockLen + 1, 3*BlockLen + 5, 2*sortGroup*BlockLen + 3*BlockLen + 123} {
		var c List[uint64]
		var want []uint64
		for range n {
			v := rng.Uint64N(uint64(n)/2 + 1) // duplicates
			c.Push(v)
			want = append(want, v)
		}
		slices.Sort(want)
		want = slices.Compact(want)
		c.SortCompact(cmp.Compare[uint64])
		if c.Len() != len(want) {
			t.Fatalf("n=%d: %d entries, want %d", n, c.Len(), len(want))
		}
		for i, b := range c.blocks {
			if i < len(c.blocks)-1 && len(b) != BlockLen {
				t.Fatalf("n=%d: block %d of %d has %d entries", n, i, len(c.blocks), len(b))
			}
		}
		for i, v := range want {
			if c.At(i) != v {
				t.Fatalf("n=%d: entry %d is %d, want %d", n, i, c.At(i), v)
			}
		}
		for _, x := range []uint64{0, 1, uint64(n) / 4, uint64(n)/2 + 1, 1 << 63} {
			want, _ := slices.BinarySearch(want, x)
			if got := LowerBound(&c, x); got != want {
				t.Fatalf("n=%d: LowerBound(%d) = %d, want %d", n, x, got, want)
			}
			if got := c.Search(func(e uint64) bool { return e < x }); got != want {
				t.Fatalf("n=%d: Search(%d) = %d, want %d", n, x, got, want)
			}
		}
	}
}

func TestLowerBound(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for n := range 70 {
		a := make([]uint64, n)
		for i := range a {
			a[i] = uint64(rng.IntN(40))
		}
		slices.Sort(a)
		for x := range uint64(42) {
			want, _ := slices.BinarySearch(a, x)
			if got := lowerBound(a, x); got != want {
				t.Fatalf("lowerBound(%v, %d) = %d, want %d", a, x, got, want)
			}
		}
	}
}

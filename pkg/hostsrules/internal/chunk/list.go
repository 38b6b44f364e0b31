// Package chunk holds the bounded-memory containers a compiled table is
// built from: List, a list kept in fixed-size blocks that is sorted by
// merging them, and Text, strings kept in fixed-size blocks addressed by a
// 32-bit offset. Neither ever needs a second copy of what it holds, so the
// peak memory of building a table stays close to what the table keeps
// (see "Memory" in the hostsrules package doc).
package chunk

import "slices"

// BlockLen is the number of entries in a full block of a List.
const BlockLen = 1 << 14

// sortGroup is how many blocks SortCompact sorts together before it
// merges: a buffer of 2 MiB of uint32 to 12 MiB of 24-byte entries (a string and a rule number).
const sortGroup = 32

// List is a list kept in blocks of BlockLen entries (all full but the
// last), so that it never moves: appending to a long list allocates one
// more block instead of copying the list into one 1.25 times as big, and
// sorting it needs a few blocks more, not a second list. This is what
// keeps the peak memory of building a table bounded by what the table
// keeps (tcpwrapd runs under Dovecot's vsz_limit, where every 64 MiB heap
// arena counts). The first block grows as a slice does, so a short list
// costs no more than a slice. The zero value is an empty list.
type List[E any] struct {
	blocks [][]E
	n      int
}

// Len returns the number of entries.
func (c *List[E]) Len() int { return c.n }

// At returns entry i.
func (c *List[E]) At(i int) E { return c.blocks[i/BlockLen][i%BlockLen] }

// Ref returns a pointer to entry i.
func (c *List[E]) Ref(i int) *E { return &c.blocks[i/BlockLen][i%BlockLen] }

// Push appends e.
func (c *List[E]) Push(e E) {
	k := len(c.blocks) - 1
	switch {
	case k < 0:
		c.blocks = append(c.blocks, make([]E, 0, 8))
		k = 0
	case len(c.blocks[k]) == BlockLen:
		c.blocks = append(c.blocks, make([]E, 0, BlockLen))
		k++
	case len(c.blocks[k]) == cap(c.blocks[k]):
		b := make([]E, len(c.blocks[k]), min(2*cap(c.blocks[k]), BlockLen))
		copy(b, c.blocks[k])
		c.blocks[k] = b
	}
	c.blocks[k] = append(c.blocks[k], e)
	c.n++
}

// Clip gives back the spare capacity of the last block: a bounded copy
// of at most one block.
func (c *List[E]) Clip() {
	if k := len(c.blocks) - 1; k >= 0 {
		if b := c.blocks[k]; cap(b)-len(b) > len(b)/16 {
			c.blocks[k] = slices.Clone(b)
		}
	}
	c.blocks = slices.Clip(c.blocks)
}

// SortCompact sorts the list by cmp and drops entries equal (by cmp) to
// the one before, as slices.SortFunc and slices.CompactFunc would. Groups
// of sortGroup blocks are sorted in one buffer, then these runs of blocks
// are merged pairwise; a merge releases each input block as soon as it is
// used up, so at any time the list takes at most a few blocks and the
// buffer more than its size.
func (c *List[E]) SortCompact(cmp func(x, y E) int) {
	switch len(c.blocks) {
	case 0:
		return
	case 1:
		b := c.blocks[0]
		slices.SortFunc(b, cmp)
		c.blocks[0] = slices.CompactFunc(b, func(x, y E) bool { return cmp(x, y) == 0 })
		c.n = len(c.blocks[0])
		c.Clip()
		return
	}
	// Runs of up to sortGroup blocks are sorted in one buffer, so that
	// fewer merge passes follow.
	g := min(sortGroup, len(c.blocks))
	buf := make([]E, 0, g*BlockLen)
	var runs [][][]E
	for i := 0; i < len(c.blocks); i += g {
		run := c.blocks[i:min(i+g, len(c.blocks))]
		buf = buf[:0]
		for _, b := range run {
			buf = append(buf, b...)
		}
		slices.SortFunc(buf, cmp)
		buf = slices.CompactFunc(buf, func(x, y E) bool { return cmp(x, y) == 0 })
		// Back into the run's blocks, all full but its last.
		rest, used := buf, 0
		for len(rest) > 0 {
			b := run[used][:min(len(rest), BlockLen)]
			rest = rest[copy(b, rest):]
			run[used] = b
			used++
		}
		clear(run[used:])
		runs = append(runs, slices.Clip(run[:used]))
	}
	buf = nil
	c.blocks = nil
	for len(runs) > 1 {
		next := make([][][]E, 0, (len(runs)+1)/2)
		for i := 0; i < len(runs); i += 2 {
			if i+1 == len(runs) {
				next = append(next, runs[i])
				break
			}
			next = append(next, mergeRuns(runs[i], runs[i+1], cmp))
			runs[i], runs[i+1] = nil, nil
		}
		runs = next
	}
	c.blocks = runs[0]
	c.n = 0
	for _, b := range c.blocks {
		c.n += len(b)
	}
	c.Clip()
}

// mergeRuns merges the sorted runs a and b into one of full blocks (but
// the last), dropping duplicates; it clears the blocks of a and b as it
// uses them up.
func mergeRuns[E any](a, b [][]E, cmp func(x, y E) int) [][]E {
	out := make([][]E, 0, len(a)+len(b))
	var cur []E
	ai, bi, ap, bp := 0, 0, 0, 0
	for ai < len(a) || bi < len(b) {
		var e E
		if bi == len(b) || ai < len(a) && cmp(a[ai][ap], b[bi][bp]) <= 0 {
			e = a[ai][ap]
			if ap++; ap == len(a[ai]) {
				a[ai], ai, ap = nil, ai+1, 0
			}
		} else {
			e = b[bi][bp]
			if bp++; bp == len(b[bi]) {
				b[bi], bi, bp = nil, bi+1, 0
			}
		}
		if len(cur) > 0 && cmp(cur[len(cur)-1], e) == 0 ||
			len(cur) == 0 && len(out) > 0 && cmp(out[len(out)-1][BlockLen-1], e) == 0 {
			continue
		}
		if cur == nil {
			cur = make([]E, 0, BlockLen)
		}
		if cur = append(cur, e); len(cur) == BlockLen {
			out, cur = append(out, cur), nil
		}
	}
	if cur != nil {
		out = append(out, cur)
	}
	return out
}

// Search returns the smallest i in [0, n) for which below(at(i)) is false,
// or n, for a list sorted so that below is true for a prefix of it.
func (c *List[E]) Search(below func(E) bool) int {
	// The block, by its last entry, then the entry.
	lo, hi := 0, len(c.blocks)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if b := c.blocks[m]; below(b[len(b)-1]) {
			lo = m + 1
		} else {
			hi = m
		}
	}
	if lo == len(c.blocks) {
		return c.n
	}
	b := c.blocks[lo]
	i, j := 0, len(b)
	for i < j {
		m := int(uint(i+j) >> 1)
		if below(b[m]) {
			i = m + 1
		} else {
			j = m
		}
	}
	return lo*BlockLen + i
}

// Blocks returns the number of blocks the list takes.
func (c *List[E]) Blocks() int { return len(c.blocks) }

// LowerBound returns the first position in the sorted list c whose value
// is at least x (Search with below e < x, faster): the block by its last
// entry, then the entry in it.
func LowerBound(c *List[uint64], x uint64) int {
	lo, hi := 0, len(c.blocks)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if b := c.blocks[m]; b[len(b)-1] < x {
			lo = m + 1
		} else {
			hi = m
		}
	}
	if lo == len(c.blocks) {
		return c.n
	}
	return lo*BlockLen + lowerBound(c.blocks[lo], x)
}

// lowerBound returns the first position in the sorted a whose value is at
// least x: a binary search without branches in its loop, which is faster
// than slices.BinarySearch over the large arrays of a blocklist.
func lowerBound(a []uint64, x uint64) int {
	base, n := 0, len(a)
	for n > 1 {
		half := n / 2
		if a[base+half-1] < x {
			base += half
		}
		n -= half
	}
	if n == 1 && a[base] < x {
		base++
	}
	return base
}

package hostsrules

import "slices"

// chunkLen is the number of entries in a full block of a chunked list.
const chunkLen = 1 << 14

// sortGroup is how many blocks sortCompact sorts together before it
// merges: a buffer of 2 MiB of uint32 to 12 MiB of textEntry.
const sortGroup = 32

// chunked is a list kept in blocks of chunkLen entries (all full but the
// last), so that it never moves: appending to a long list allocates one
// more block instead of copying the list into one 1.25 times as big, and
// sorting it needs a few blocks more, not a second list. This is what
// keeps the peak memory of building a table bounded by what the table
// keeps (tcpwrapd runs under Dovecot's vsz_limit, where every 64 MiB heap
// arena counts). The first block grows as a slice does, so a short list
// costs no more than a slice.
type chunked[E any] struct {
	blocks [][]E
	n      int
}

// len returns the number of entries.
func (c *chunked[E]) len() int { return c.n }

// at returns entry i.
func (c *chunked[E]) at(i int) E { return c.blocks[i/chunkLen][i%chunkLen] }

// ref returns a pointer to entry i.
func (c *chunked[E]) ref(i int) *E { return &c.blocks[i/chunkLen][i%chunkLen] }

// push appends e.
func (c *chunked[E]) push(e E) {
	k := len(c.blocks) - 1
	switch {
	case k < 0:
		c.blocks = append(c.blocks, make([]E, 0, 8))
		k = 0
	case len(c.blocks[k]) == chunkLen:
		c.blocks = append(c.blocks, make([]E, 0, chunkLen))
		k++
	case len(c.blocks[k]) == cap(c.blocks[k]):
		b := make([]E, len(c.blocks[k]), min(2*cap(c.blocks[k]), chunkLen))
		copy(b, c.blocks[k])
		c.blocks[k] = b
	}
	c.blocks[k] = append(c.blocks[k], e)
	c.n++
}

// clip gives back the spare capacity of the last block: a bounded copy
// of at most one block.
func (c *chunked[E]) clip() {
	if k := len(c.blocks) - 1; k >= 0 {
		if b := c.blocks[k]; cap(b)-len(b) > len(b)/16 {
			c.blocks[k] = slices.Clone(b)
		}
	}
	c.blocks = slices.Clip(c.blocks)
}

// sortCompact sorts the list by cmp and drops entries equal (by cmp) to
// the one before, as slices.SortFunc and slices.CompactFunc would. Groups
// of sortGroup blocks are sorted in one buffer, then these runs of blocks
// are merged pairwise; a merge releases each input block as soon as it is
// used up, so at any time the list takes at most a few blocks and the
// buffer more than its size.
func (c *chunked[E]) sortCompact(cmp func(x, y E) int) {
	switch len(c.blocks) {
	case 0:
		return
	case 1:
		b := c.blocks[0]
		slices.SortFunc(b, cmp)
		c.blocks[0] = slices.CompactFunc(b, func(x, y E) bool { return cmp(x, y) == 0 })
		c.n = len(c.blocks[0])
		c.clip()
		return
	}
	// Runs of up to sortGroup blocks are sorted in one buffer, so that
	// fewer merge passes follow.
	g := min(sortGroup, len(c.blocks))
	buf := make([]E, 0, g*chunkLen)
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
			b := run[used][:min(len(rest), chunkLen)]
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
	c.clip()
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
			len(cur) == 0 && len(out) > 0 && cmp(out[len(out)-1][chunkLen-1], e) == 0 {
			continue
		}
		if cur == nil {
			cur = make([]E, 0, chunkLen)
		}
		if cur = append(cur, e); len(cur) == chunkLen {
			out, cur = append(out, cur), nil
		}
	}
	if cur != nil {
		out = append(out, cur)
	}
	return out
}

// search returns the smallest i in [0, n) for which below(at(i)) is false,
// or n, for a list sorted so that below is true for a prefix of it.
func (c *chunked[E]) search(below func(E) bool) int {
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
	return lo*chunkLen + i
}

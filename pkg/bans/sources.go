package bans

import "net/netip"

// sources is the failure counters: an LRU of at most max sources, kept in
// one slice linked by indices (no per-source allocation once warm), each
// with the hashes it failed with.
type sources struct {
	idx        map[netip.Prefix]int32
	ents       []source
	free       []int32
	head, tail int32 // most and least recently touched; -1 when empty
	max        int
}

// source is one tracked source.
type source struct {
	p          netip.Prefix
	prev, next int32
	slots      []slot // distinct hashes, at most Threshold+1 in a live window
}

// slot is one distinct failed hash and when it was last sent (Unix ns).
type slot struct {
	h  uint64
	at int64
}

func (s *sources) init(max int) {
	s.idx = make(map[netip.Prefix]int32)
	s.head, s.tail, s.max = -1, -1, max
}

// len returns the number of sources tracked.
func (s *sources) len() int { return len(s.idx) }

// touch returns p's entry, made the most recent; a new source takes a
// free entry, a new one, or the least recent source's.
func (s *sources) touch(p netip.Prefix) *source {
	if i, ok := s.idx[p]; ok {
		s.unlink(i)
		s.pushFront(i)
		return &s.ents[i]
	}
	var i int32
	switch {
	case len(s.free) > 0:
		i = s.free[len(s.free)-1]
		s.free = s.free[:len(s.free)-1]
	case len(s.ents) < s.max:
		s.ents = append(s.ents, source{})
		i = int32(len(s.ents) - 1)
	default:
		i = s.tail
		delete(s.idx, s.ents[i].p)
		s.unlink(i)
	}
	e := &s.ents[i]
	e.p, e.slots = p, e.slots[:0]
	s.idx[p] = i
	s.pushFront(i)
	return e
}

// remove forgets p.
func (s *sources) remove(p netip.Prefix) {
	i, ok := s.idx[p]
	if !ok {
		return
	}
	delete(s.idx, p)
	s.unlink(i)
	s.ents[i].slots = s.ents[i].slots[:0]
	s.free = append(s.free, i)
}

// removeOverlapping forgets every source overlapping prefix.
func (s *sources) removeOverlapping(prefix netip.Prefix) {
	for p := range s.idx {
		if p.Overlaps(prefix) {
			s.remove(p)
		}
	}
}

func (s *sources) unlink(i int32) {
	e := &s.ents[i]
	if e.prev >= 0 {
		s.ents[e.prev].next = e.next
	} else {
		s.head = e.next
	}
	if e.next >= 0 {
		s.ents[e.next].prev = e.prev
	} else {
		s.tail = e.prev
	}
	e.prev, e.next = -1, -1
}

func (s *sources) pushFront(i int32) {
	e := &s.ents[i]
	e.prev, e.next = -1, s.head
	if s.head >= 0 {
		s.ents[s.head].prev = i
	}
	s.head = i
	if s.tail < 0 {
		s.tail = i
	}
}

// record notes hash h sent at time at, forgets the hashes last sent
// before cutoff, and returns the number of distinct hashes left. The
// caller bans the source once that exceeds the threshold, so a source
// holds at most Threshold+1 slots.
func (e *source) record(h uint64, at, cutoff int64) int {
	kept := e.slots[:0]
	found := false
	for _, sl := range e.slots {
		if sl.h == h {
			sl.at, found = at, true
		}
		if sl.at >= cutoff {
			kept = append(kept, sl)
		}
	}
	if !found {
		kept = append(kept, slot{h, at})
	}
	e.slots = kept
	return len(kept)
}

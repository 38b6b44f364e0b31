package accessd

import (
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tcpwrapd/tcpwrapd/pkg/hostsrules"
)

// ErrKindCheckError is the Stats error kind of a decision that carried an
// error (option error, table error). The front ends count their own kinds
// (dovecotsock's ErrKind constants).
const ErrKindCheckError = "check_error"

// latencyRing is how many recent check durations Stats keeps for its
// percentiles.
const latencyRing = 4096

// Stats counts what the checks and their front ends do, for the admin socket's "stats". A nil
// *Stats ignores every call, so a Server without one pays nothing. All
// methods are safe for concurrent use.
type Stats struct {
	started time.Time

	checks, granted, refused, delegated atomic.Uint64

	mu     sync.Mutex
	errors map[string]uint64
	ring   [latencyRing]time.Duration
	n      int // durations recorded in total
}

// NewStats returns empty statistics that start now.
func NewStats() *Stats {
	return &Stats{started: time.Now(), errors: map[string]uint64{}}
}

// Decision records one answered check and how long the check took.
func (s *Stats) Decision(d *hostsrules.Decision, took time.Duration) {
	if s == nil {
		return
	}
	s.checks.Add(1)
	switch {
	case d.Delegated:
		s.delegated.Add(1)
	case d.Verdict == hostsrules.Granted && d.Err == nil:
		s.granted.Add(1)
	default:
		s.refused.Add(1)
	}
	s.mu.Lock()
	s.ring[s.n%latencyRing] = took
	s.n++
	if d.Err != nil {
		s.errors[ErrKindCheckError]++
	}
	s.mu.Unlock()
}

// Error counts one problem of the given kind (ErrKindCheckError or a
// front end's kind, such as dovecotsock.ErrKindInvalidRequest).
func (s *Stats) Error(kind string) {
	if s == nil {
		return
	}
	s.mu.Lock()
	s.errors[kind]++
	s.mu.Unlock()
}

// StatsSnapshot is a copy of the counters at one moment.
type StatsSnapshot struct {
	Started   time.Time `json:"started"`
	Checks    uint64    `json:"checks"`
	Granted   uint64    `json:"granted"`
	Refused   uint64    `json:"refused"`
	Delegated uint64    `json:"delegated"`
	// Errors counts problems by kind (see Error).
	Errors map[string]uint64 `json:"errors"`
	// Latency describes the most recent checks (at most 4096).
	Latency Latency `json:"latency"`
}

// Latency gives percentiles of recent check durations in microseconds.
type Latency struct {
	Samples int   `json:"samples"`
	P50us   int64 `json:"p50_us"`
	P99us   int64 `json:"p99_us"`
	MaxUs   int64 `json:"max_us"`
}

// Snapshot returns the current counters. A nil Stats gives a zero
// snapshot.
func (s *Stats) Snapshot() StatsSnapshot {
	if s == nil {
		return StatsSnapshot{Errors: map[string]uint64{}}
	}
	snap := StatsSnapshot{
		Started: s.started, Checks: s.checks.Load(), Granted: s.granted.Load(),
		Refused: s.refused.Load(), Delegated: s.delegated.Load(),
	}
	s.mu.Lock()
	snap.Errors = maps.Clone(s.errors)
	durs := slices.Clone(s.ring[:min(s.n, latencyRing)])
	s.mu.Unlock()
	slices.Sort(durs)
	snap.Latency = percentiles(durs)
	return snap
}

// percentiles computes p50, p99 and max of sorted durations (nearest rank).
func percentiles(sorted []time.Duration) Latency {
	l := Latency{Samples: len(sorted)}
	if len(sorted) == 0 {
		return l
	}
	rank := func(p int) time.Duration {
		i := (p*len(sorted)+99)/100 - 1
		return sorted[max(i, 0)]
	}
	l.P50us = rank(50).Microseconds()
	l.P99us = rank(99).Microseconds()
	l.MaxUs = sorted[len(sorted)-1].Microseconds()
	return l
}

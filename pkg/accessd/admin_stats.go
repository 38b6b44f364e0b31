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

	all verdicts

	mu        sync.Mutex
	errors    map[string]uint64
	frontEnds map[string]*frontEndStats

	// The latency ring is written without the mutex: a check takes a
	// slot with one atomic add.
	ring [latencyRing]atomic.Int64 // time.Duration
	n    atomic.Uint64             // durations recorded in total
}

// verdicts counts decisions.
type verdicts struct {
	checks, granted, refused, delegated atomic.Uint64
}

func (v *verdicts) add(d *hostsrules.Decision) {
	v.checks.Add(1)
	switch {
	case d.Delegated:
		v.delegated.Add(1)
	case d.Verdict == hostsrules.Granted && d.Err == nil:
		v.granted.Add(1)
	default:
		v.refused.Add(1)
	}
}

// frontEndStats are the counters of one front end (see FrontEnd); errors
// is guarded by Stats.mu.
type frontEndStats struct {
	verdicts
	errors map[string]uint64
}

// NewStats returns empty statistics that start now.
func NewStats() *Stats {
	return &Stats{started: time.Now(), errors: map[string]uint64{}, frontEnds: map[string]*frontEndStats{}}
}

// frontEnd returns the counters of the named front end, creating them;
// nil for a nil Stats.
func (s *Stats) frontEnd(name string) *frontEndStats {
	if s == nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	f := s.frontEnds[name]
	if f == nil {
		f = &frontEndStats{errors: map[string]uint64{}}
		s.frontEnds[name] = f
	}
	return f
}

// Decision records one answered check and how long the check took.
func (s *Stats) Decision(d *hostsrules.Decision, took time.Duration) { s.decision(nil, d, took) }

// decision records a check, also in fe's counters when fe is not nil.
func (s *Stats) decision(fe *frontEndStats, d *hostsrules.Decision, took time.Duration) {
	if s == nil {
		return
	}
	s.all.add(d)
	if fe != nil {
		fe.add(d)
	}
	i := s.n.Add(1) - 1
	s.ring[i%latencyRing].Store(int64(took))
	if d.Err != nil {
		s.error(fe, ErrKindCheckError)
	}
}

// Error counts one problem of the given kind (ErrKindCheckError or a
// front end's kind, such as dovecotsock.ErrKindInvalidRequest).
func (s *Stats) Error(kind string) { s.error(nil, kind) }

func (s *Stats) error(fe *frontEndStats, kind string) {
	if s == nil {
		return
	}
	s.mu.Lock()
	s.errors[kind]++
	if fe != nil {
		fe.errors[kind]++
	}
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
	// FrontEnds counts the same per front end (FrontEndAccess,
	// FrontEndAuthPolicy, FrontEndPostfix), for those that serve.
	FrontEnds map[string]FrontEndSnapshot `json:"front_ends,omitempty"`
}

// FrontEndSnapshot is a copy of one front end's counters.
type FrontEndSnapshot struct {
	Checks    uint64            `json:"checks"`
	Granted   uint64            `json:"granted"`
	Refused   uint64            `json:"refused"`
	Delegated uint64            `json:"delegated"`
	Errors    map[string]uint64 `json:"errors"`
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
		Started: s.started, Checks: s.all.checks.Load(), Granted: s.all.granted.Load(),
		Refused: s.all.refused.Load(), Delegated: s.all.delegated.Load(),
	}
	s.mu.Lock()
	snap.Errors = maps.Clone(s.errors)
	for name, f := range s.frontEnds {
		if snap.FrontEnds == nil {
			snap.FrontEnds = map[string]FrontEndSnapshot{}
		}
		snap.FrontEnds[name] = FrontEndSnapshot{Checks: f.checks.Load(), Granted: f.granted.Load(),
			Refused: f.refused.Load(), Delegated: f.delegated.Load(), Errors: maps.Clone(f.errors)}
	}
	s.mu.Unlock()
	durs := make([]time.Duration, min(s.n.Load(), latencyRing))
	for i := range durs {
		durs[i] = time.Duration(s.ring[i].Load())
	}
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

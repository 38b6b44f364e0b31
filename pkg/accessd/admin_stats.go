package accessd

import (
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tcpwrapd/tcpwrapd/pkg/hostsrules"
)

// Error kinds counted by Stats.
const (
	ErrKindInvalidRequest = "invalid_request" // the request was not "NAME\n"
	ErrKindReadTimeout    = "read_timeout"    // no request within ReadTimeout
	ErrKindEvictedIdle    = "evicted_idle"    // closed without a request to make room (MaxConns, EMFILE, ENFILE)
	ErrKindClientGone     = "client_gone"     // the client left before its request (EPIPE, ECONNRESET)
	ErrKindReadFailed     = "read_failed"     // reading the request failed otherwise
	ErrKindReplyGone      = "reply_gone"      // the client left before the reply (EPIPE)
	ErrKindWriteFailed    = "write_failed"    // writing the reply failed otherwise
	ErrKindNotUnix        = "not_unix"        // a connection that is not a unix socket
	ErrKindCheckError     = "check_error"     // the decision carried an error (option error, table error)
	// Requests refused ("0\n") because they do not carry exactly one
	// connected TCP socket, or a usable daemon name.
	ErrKindFDTruncated  = "fd_truncated"     // MSG_CTRUNC: the kernel could not pass the descriptor (our table full?)
	ErrKindNoFD         = "no_fd"            // no descriptor
	ErrKindManyFDs      = "many_fds"         // more than one descriptor
	ErrKindNotSocket    = "fd_not_socket"    // the descriptor is not a socket (a pipe, a file)
	ErrKindNotTCP       = "fd_not_tcp"       // a socket, but not TCP over IPv4 or IPv6 (UDP, AF_UNIX)
	ErrKindNotConnected = "fd_not_connected" // a TCP socket without a peer (a listener, never connected)
	ErrKindDaemonName   = "bad_daemon_name"  // the daemon name is not a plain name (wrapopts.CheckPlainName)
)

// latencyRing is how many recent check durations Stats keeps for its
// percentiles.
const latencyRing = 4096

// Stats counts what a Server does, for the admin socket's "stats". A nil
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

// Error counts one problem of the given kind (one of the ErrKind
// constants).
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
	// Errors counts problems by kind (see the ErrKind constants).
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

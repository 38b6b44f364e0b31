package resolve

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
	"github.com/tcpwrapd/tcpwrapd/pkg/hostsrules"
)

// Defaults used when a Config field is zero.
const (
	// DefaultMinTTL is the shortest time a DNS answer is cached.
	DefaultMinTTL = 5 * time.Second
	// DefaultMaxTTL is the longest time a DNS answer is cached.
	DefaultMaxTTL = time.Hour
	// DefaultNegativeTTL is how long a "no such name" or "no data"
	// answer without an SOA record in its authority section is cached.
	DefaultNegativeTTL = 30 * time.Second
	// DefaultFailureTTL is how long a failed lookup (SERVFAIL, REFUSED,
	// every server timed out or unreachable) is remembered, so that a
	// dead DNS server is asked once per FailureTTL, not once per check.
	DefaultFailureTTL = 5 * time.Second
	// DefaultMaxEntries bounds the number of cached answers.
	DefaultMaxEntries = 100000
	// DefaultFileCheckInterval is how often at most the hosts,
	// nsswitch.conf, resolv.conf and netgroup files are checked for
	// changes (a stat(2) each).
	DefaultFileCheckInterval = time.Second
)

// Errors returned by Resolver lookups, to be tested with errors.Is.
var (
	// ErrNotFound: the name or address has no answer of the requested
	// type (NXDOMAIN, or NOERROR with no usable record), in /etc/hosts
	// or DNS.
	ErrNotFound = errors.New("not found")
	// ErrClosed: the Resolver was closed.
	ErrClosed = errors.New("resolver closed")
)

// Config configures a Resolver. The zero value reads the system's files
// and uses the defaults above.
type Config struct {
	// ResolvConf is the resolv.conf(5) giving the nameservers, search
	// list, ndots, timeout and attempts. Empty means /etc/resolv.conf.
	// It is read again when it changes (see FileCheckInterval), and the
	// cache is then emptied. A missing file means nameserver 127.0.0.1,
	// no search list, ndots 1, timeout 5 s, 2 attempts.
	ResolvConf string
	// HostsFile is the hosts(5) file for the "files" source. Empty means
	// /etc/hosts. It is read again when it changes (see
	// FileCheckInterval); its answers are never cached otherwise.
	HostsFile string
	// NsswitchFile gives the order of the sources in its "hosts:" line;
	// only files and dns are used ("resolve" counts as dns). Empty means
	// /etc/nsswitch.conf; without it the order is files, dns.
	NsswitchFile string
	// Servers, if set, replaces the nameservers of ResolvConf; each is
	// "host:port" or a bare IP address (port 53).
	Servers []string
	// Timeout is the wait for one answer from one server; zero means
	// resolv.conf's "options timeout" (default 5 s). Attempts is how many
	// times every server is tried; zero means resolv.conf's "options
	// attempts" (default 2).
	Timeout  time.Duration
	Attempts int
	// MinTTL and MaxTTL clamp the TTL of DNS answers (the smallest TTL of
	// the records used, CNAMEs included). Zero means DefaultMinTTL,
	// DefaultMaxTTL.
	MinTTL, MaxTTL time.Duration
	// NegativeTTL is how long a negative answer is cached when it carries
	// no SOA record; with one, the RFC 2308 value min(SOA TTL, SOA
	// MINIMUM) clamped to [MinTTL, MaxTTL] is used. Zero means
	// DefaultNegativeTTL.
	NegativeTTL time.Duration
	// FailureTTL is how long a failed lookup is remembered; zero means
	// DefaultFailureTTL, a negative value disables it.
	FailureTTL time.Duration
	// FileCheckInterval is how often at most each file is checked for
	// changes with stat(2): an edit is seen by the first lookup at least
	// this long after the previous check. Zero means
	// DefaultFileCheckInterval; a negative value checks at every lookup.
	FileCheckInterval time.Duration
	// MaxEntries bounds the cache; zero means DefaultMaxEntries. When it
	// is full, expired entries are dropped, then arbitrary ones.
	MaxEntries int
}

// Resolver is a hostsrules.Resolver for a long-running service. It
// answers as glibc's getnameinfo(NI_NAMEREQD) and getaddrinfo(AI_CANONNAME)
// would for libwrap, consulting /etc/hosts and DNS in nsswitch.conf order,
// but it caches DNS answers, shares one upstream lookup among concurrent
// callers, and never makes a caller wait past its context's deadline.
//
// /etc/hosts answers are never cached: the file is read again whenever a
// stat shows it changed. DNS is asked directly (UDP, TCP when truncated)
// so that the raw PTR name reaches the double-reverse check: a numeric
// PTR record such as "198.51.100.99" is returned as is and the engine
// makes the host paranoid, as libwrap does (Go's net.Resolver would
// silently drop it). Names are returned in DNS presentation format
// without the trailing dot, as glibc's ns_name_ntop writes them:
// "a\;rm\032-rf.example.com" for a PTR target with ";" and a space.
//
// A lookup whose context ends first returns an error wrapping ctx.Err()
// at once; the shared upstream query goes on (bounded by Timeout,
// Attempts and the number of servers and search names) and fills the
// cache for later checks. Use New to make one. A Resolver is safe for
// concurrent use.
type Resolver struct {
	cfg      Config
	nsswitch *watchedFile[[]string]
	hosts    *watchedFile[*hostsFile]
	resolv   *watchedFile[*dns.ClientConfig]
	now      func() time.Time // injectable clock for tests
	base     context.Context  // parent of upstream lookups; Close cancels it
	cancel   context.CancelFunc
	wg       sync.WaitGroup

	mu       sync.Mutex
	closed   bool
	conf     *dns.ClientConfig // resolv.conf the cached answers came from
	entries  map[cacheKey]*entry
	inflight map[cacheKey]*call

	stats struct {
		hits, negHits, misses, joins, timeouts, queries, failures, files atomic.Uint64
	}
}

var _ hostsrules.Resolver = (*Resolver)(nil)

// New returns a Resolver configured by cfg. It starts no goroutine until
// a lookup needs DNS; Close stops the lookups still in flight.
func New(cfg Config) *Resolver {
	def := func(s *string, v string) {
		if *s == "" {
			*s = v
		}
	}
	def(&cfg.ResolvConf, "/etc/resolv.conf")
	def(&cfg.HostsFile, "/etc/hosts")
	def(&cfg.NsswitchFile, "/etc/nsswitch.conf")
	defDur := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	defDur(&cfg.MinTTL, DefaultMinTTL)
	defDur(&cfg.MaxTTL, DefaultMaxTTL)
	defDur(&cfg.NegativeTTL, DefaultNegativeTTL)
	defDur(&cfg.FailureTTL, DefaultFailureTTL)
	defDur(&cfg.FileCheckInterval, DefaultFileCheckInterval)
	if cfg.MaxTTL < cfg.MinTTL {
		cfg.MaxTTL = cfg.MinTTL
	}
	if cfg.MaxEntries <= 0 {
		cfg.MaxEntries = DefaultMaxEntries
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &Resolver{
		cfg:      cfg,
		now:      time.Now,
		base:     ctx,
		cancel:   cancel,
		entries:  map[cacheKey]*entry{},
		inflight: map[cacheKey]*call{},
	}
	now := func() time.Time { return r.now() }
	r.nsswitch = newWatched(cfg.NsswitchFile, cfg.FileCheckInterval, now, parseNsswitch)
	r.hosts = newWatched(cfg.HostsFile, cfg.FileCheckInterval, now, parseHosts)
	r.resolv = newWatched(cfg.ResolvConf, cfg.FileCheckInterval, now, parseResolvConf)
	return r
}

// Close cancels the DNS queries still in flight, waits for them to end
// and makes later lookups fail with ErrClosed. It returns nil.
func (r *Resolver) Close() error {
	r.mu.Lock()
	r.closed = true
	r.mu.Unlock()
	r.cancel()
	r.wg.Wait()
	return nil
}

// LookupAddr returns the reverse name of addr (an IPv4-mapped address is
// looked up as IPv4; a zone is ignored): the first name of the first
// /etc/hosts line with addr, or the first PTR record of the DNS answer,
// following CNAMEs (RFC 2317), in presentation format without the final
// dot. The name is not validated: checking it is the caller's business
// (hostsrules makes a numeric one paranoid). Errors wrap ErrNotFound
// when no source has a name, ctx.Err() when ctx ended first, or the DNS
// failure (for example "SERVFAIL from 127.0.0.1:53" or a network error).
func (r *Resolver) LookupAddr(ctx context.Context, addr netip.Addr) (string, error) {
	addr = addr.Unmap().WithZone("")
	var err error
	for _, src := range r.nsswitch.get() {
		switch src {
		case srcFiles:
			if n, ok := r.hosts.get().lookupAddr(ctx, addr); ok {
				r.stats.files.Add(1)
				return n, nil
			}
		case srcDNS:
			res := r.lookup(ctx, cacheKey{kind: kindPTR, addr: addr}, "")
			if res.err == nil {
				return res.name, nil
			}
			err = res.err
		}
	}
	if err == nil {
		err = fmt.Errorf("lookup %s: %w", addr, ErrNotFound)
	}
	return "", err
}

// LookupHost returns the canonical name and the addresses of name for
// network "ip4" (A records), "ip6" (AAAA) or "ip" (both). /etc/hosts
// answers with glibc's files semantics (hostsrules.HostsResolver). DNS
// applies resolv.conf's search list and ndots as res_search does; the
// canonical name is the name queried, or the last CNAME target in the
// answer that is a valid host name, without the final dot; addresses are
// the records of the final name. The returned slice must not be
// modified. Errors are as for LookupAddr; an unknown network is an error.
func (r *Resolver) LookupHost(ctx context.Context, network, name string) (string, []netip.Addr, error) {
	switch network {
	case "ip4", "ip6", "ip":
	default:
		return "", nil, fmt.Errorf("lookup %s: unknown network %q", name, network)
	}
	var err error
	for _, src := range r.nsswitch.get() {
		switch src {
		case srcFiles:
			if c, a, ok := r.hosts.get().lookupHost(ctx, network, name); ok {
				r.stats.files.Add(1)
				return c, a, nil
			}
		case srcDNS:
			res := r.lookup(ctx, cacheKey{kind: kindHost, network: network, name: strings.ToLower(name)}, name)
			if res.err == nil {
				return res.name, res.addrs, nil
			}
			err = res.err
		}
	}
	if err == nil {
		err = fmt.Errorf("lookup %s: %w", name, ErrNotFound)
	}
	return "", nil, err
}

// Stats counts what a Resolver did since New. Counters only grow.
type Stats struct {
	// Hits are DNS lookups answered from the cache with a positive answer.
	Hits uint64 `json:"hits"`
	// NegativeHits are DNS lookups answered from the cache with a
	// remembered negative answer or failure.
	NegativeHits uint64 `json:"negative_hits"`
	// Misses are DNS lookups that started an upstream lookup.
	Misses uint64 `json:"misses"`
	// Joins are DNS lookups that waited for an identical lookup already
	// in flight instead of starting their own.
	Joins uint64 `json:"joins"`
	// Timeouts are lookups that returned because their context ended
	// before the answer came.
	Timeouts uint64 `json:"timeouts"`
	// Queries are DNS messages sent (retries and TCP fallbacks included).
	Queries uint64 `json:"queries"`
	// Failures are upstream lookups that ended without an answer
	// (SERVFAIL, REFUSED, timeouts, unreachable servers).
	Failures uint64 `json:"failures"`
	// Files are lookups answered from the hosts file.
	Files uint64 `json:"files"`
	// Entries is the number of cached answers now (expired ones
	// included until they are dropped); InFlight the upstream lookups
	// running now.
	Entries  int `json:"entries"`
	InFlight int `json:"in_flight"`
}

// Stats returns the counters. It is cheap and safe for concurrent use.
func (r *Resolver) Stats() Stats {
	s := Stats{
		Hits:         r.stats.hits.Load(),
		NegativeHits: r.stats.negHits.Load(),
		Misses:       r.stats.misses.Load(),
		Joins:        r.stats.joins.Load(),
		Timeouts:     r.stats.timeouts.Load(),
		Queries:      r.stats.queries.Load(),
		Failures:     r.stats.failures.Load(),
		Files:        r.stats.files.Load(),
	}
	r.mu.Lock()
	s.Entries, s.InFlight = len(r.entries), len(r.inflight)
	r.mu.Unlock()
	return s
}

// Flush drops every cached answer (lookups in flight still complete and
// fill the cache).
func (r *Resolver) Flush() {
	r.mu.Lock()
	clear(r.entries)
	r.mu.Unlock()
}

// servers returns the nameserver addresses ("host:port") to ask.
func (r *Resolver) servers(cfg *dns.ClientConfig) []string {
	if len(r.cfg.Servers) > 0 {
		out := make([]string, 0, len(r.cfg.Servers))
		for _, s := range r.cfg.Servers {
			if _, _, err := net.SplitHostPort(s); err != nil {
				s = net.JoinHostPort(s, "53")
			}
			out = append(out, s)
		}
		return out
	}
	out := make([]string, 0, len(cfg.Servers))
	for _, s := range cfg.Servers {
		out = append(out, net.JoinHostPort(s, cfg.Port))
	}
	return out
}

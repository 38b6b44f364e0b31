package bans

import (
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"net/netip"
	"sort"
	"sync"
	"time"
)

// Defaults for the zero values of Config's fields.
const (
	// DefaultThreshold: the sixth distinct failed password within the
	// window bans the source.
	DefaultThreshold = 5
	// DefaultWindow is how far back failures count (fail2ban's findtime).
	DefaultWindow = 10 * time.Minute
	// DefaultBanFor is how long a ban lasts (fail2ban's bantime).
	DefaultBanFor = time.Hour
	// DefaultMaxSources caps the tracked sources, and separately the
	// bans held: about 25 MB in all with the default threshold (see
	// docs/authpolicy.md).
	DefaultMaxSources = 100_000
	// DefaultIPv4Prefix groups IPv4 clients: each address is a source.
	DefaultIPv4Prefix = 32
	// DefaultIPv6Prefix groups IPv6 clients: each /64 is a source.
	DefaultIPv6Prefix = 64
	// MaxThreshold bounds Threshold (each source keeps Threshold+1
	// hashes).
	MaxThreshold = 1000
)

// Config sets up a Bans. The zero value of each field means its default.
type Config struct {
	// Threshold is the most distinct failed password hashes a source may
	// send within Window: one more bans it. Zero means DefaultThreshold;
	// at most MaxThreshold.
	Threshold int
	// Window is how long a failure counts. Zero means DefaultWindow.
	Window time.Duration
	// BanFor is how long a ban lasts. Zero means DefaultBanFor.
	BanFor time.Duration
	// MaxSources caps the sources tracked at once (the least recently
	// failing one is forgotten first) and, separately, the bans held (the
	// ban expiring first is dropped to make room). Zero means
	// DefaultMaxSources.
	MaxSources int
	// IPv4Prefix and IPv6Prefix are the prefix lengths that group client
	// addresses into one source. Zero means DefaultIPv4Prefix (32) and
	// DefaultIPv6Prefix (64).
	IPv4Prefix, IPv6Prefix int
	// StateFile, when not empty, is where Save writes the bans and where
	// New loads them from.
	StateFile string
	// Now is the clock. Nil means time.Now.
	Now func() time.Time
	// Log receives one line per ban (Info), per ban dropped because the
	// set is full and per state file ignored (Warn). Nil discards.
	Log *slog.Logger
}

// Ban is one banned source.
type Ban struct {
	// Prefix is the source: an address grouped by IPv4Prefix or
	// IPv6Prefix.
	Prefix netip.Prefix `json:"prefix"`
	// Since is when the ban began, Until when it ends.
	Since time.Time `json:"since"`
	Until time.Time `json:"until"`
	// Count is the number of distinct failed password hashes within the
	// window that caused the ban.
	Count int `json:"count"`
}

// String describes the ban for logs and explanations, e.g.
// "192.0.2.7/32 banned until 2025-06-01T12:00:00Z after 6 distinct failed passwords".
func (b Ban) String() string {
	return fmt.Sprintf("%s banned until %s after %d distinct failed passwords",
		b.Prefix, b.Until.UTC().Format(time.RFC3339), b.Count)
}

// Bans is the deny set and the failure counters behind it. A nil *Bans
// is valid and empty: it bans nothing and ignores reports (bans are off
// by default). Its methods are safe for concurrent use.
type Bans struct {
	cfg  Config
	log  *slog.Logger
	seed maphash.Seed

	mu     sync.Mutex
	src    sources
	bans   map[netip.Prefix]Ban
	queue  []queued // bans in the order they expire (lazily: lifted or replaced entries stay until popped)
	qstart int
}

// queued is one entry of the expiry queue.
type queued struct {
	p     netip.Prefix
	until time.Time
}

// New returns an empty Bans for cfg, with the defaults filled in, and
// loads cfg.StateFile when set: a missing file is an empty set; a file
// that cannot be read or parsed is logged at Warn and ignored. The only
// error is an invalid Config (a negative value, a prefix length out of
// range, a Threshold over MaxThreshold).
func New(cfg Config) (*Bans, error) {
	if cfg.Threshold < 0 || cfg.Window < 0 || cfg.BanFor < 0 || cfg.MaxSources < 0 {
		return nil, errors.New("bans: negative threshold, window, ban time or source cap")
	}
	if cfg.Threshold > MaxThreshold {
		return nil, fmt.Errorf("bans: threshold %d over %d", cfg.Threshold, MaxThreshold)
	}
	if cfg.IPv4Prefix < 0 || cfg.IPv4Prefix > 32 || cfg.IPv6Prefix < 0 || cfg.IPv6Prefix > 128 {
		return nil, fmt.Errorf("bans: prefix lengths %d (IPv4, 1-32) and %d (IPv6, 1-128) out of range", cfg.IPv4Prefix, cfg.IPv6Prefix)
	}
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	def(&cfg.Threshold, DefaultThreshold)
	def(&cfg.MaxSources, DefaultMaxSources)
	def(&cfg.IPv4Prefix, DefaultIPv4Prefix)
	def(&cfg.IPv6Prefix, DefaultIPv6Prefix)
	if cfg.Window == 0 {
		cfg.Window = DefaultWindow
	}
	if cfg.BanFor == 0 {
		cfg.BanFor = DefaultBanFor
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	b := &Bans{cfg: cfg, log: cfg.Log, seed: maphash.MakeSeed(), bans: map[netip.Prefix]Ban{}}
	if b.log == nil {
		b.log = slog.New(slog.DiscardHandler)
	}
	b.src.init(cfg.MaxSources)
	if cfg.StateFile != "" {
		if err := b.Load(); err != nil {
			b.log.Warn("bans: state file ignored", "file", cfg.StateFile, "err", err)
		}
	}
	return b, nil
}

// Config returns the configuration in use, defaults filled in.
func (b *Bans) Config() Config { return b.cfg }

// Source returns the source addr belongs to: addr (IPv4-mapped addresses
// unmapped, zone dropped) masked to IPv4Prefix or IPv6Prefix bits. An
// invalid addr gives the zero Prefix.
func (b *Bans) Source(addr netip.Addr) netip.Prefix {
	if !addr.IsValid() {
		return netip.Prefix{}
	}
	addr = addr.Unmap().WithZone("")
	bits := b.cfg.IPv6Prefix
	if addr.Is4() {
		bits = b.cfg.IPv4Prefix
	}
	p, _ := addr.Prefix(bits) // bits is in range (New)
	return p
}

// ReportFailure counts one failed authentication from addr with Dovecot's
// pwhash (the empty pwhash counts as one value like any other), and bans
// the source when it has now failed with more than Threshold distinct
// hashes within Window. It returns the source's ban and true when the
// source is banned after the report (a failure from a banned source
// changes nothing). An invalid addr is ignored. O(1) amortized.
func (b *Bans) ReportFailure(addr netip.Addr, pwhash string) (Ban, bool) {
	if b == nil || !addr.IsValid() {
		return Ban{}, false
	}
	h := maphash.String(b.seed, pwhash)
	p := b.Source(addr)
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.cfg.Now()
	b.expire(now)
	if ban, ok := b.bans[p]; ok && now.Before(ban.Until) {
		return ban, true
	}
	s := b.src.touch(p)
	n := s.record(h, now.UnixNano(), now.Add(-b.cfg.Window).UnixNano())
	if n <= b.cfg.Threshold {
		return Ban{}, false
	}
	b.src.remove(p)
	ban := Ban{Prefix: p, Since: now, Until: now.Add(b.cfg.BanFor), Count: n}
	b.add(ban)
	b.log.Info("bans: banned", "source", p, "count", n, "until", ban.Until)
	return ban, true
}

// Banned reports whether addr's source is banned now, and the ban. O(1)
// amortized.
func (b *Bans) Banned(addr netip.Addr) (Ban, bool) {
	if b == nil || !addr.IsValid() {
		return Ban{}, false
	}
	p := b.Source(addr)
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.cfg.Now()
	b.expire(now)
	ban, ok := b.bans[p]
	if !ok || !now.Before(ban.Until) {
		return Ban{}, false
	}
	return ban, true
}

// List returns the bans in force, oldest first.
func (b *Bans) List() []Ban {
	if b == nil {
		return nil
	}
	b.mu.Lock()
	b.expire(b.cfg.Now())
	list := make([]Ban, 0, len(b.bans))
	for _, ban := range b.bans {
		list = append(list, ban)
	}
	b.mu.Unlock()
	sortBans(list)
	return list
}

func sortBans(list []Ban) {
	sort.Slice(list, func(i, j int) bool {
		if !list[i].Since.Equal(list[j].Since) {
			return list[i].Since.Before(list[j].Since)
		}
		return list[i].Prefix.String() < list[j].Prefix.String()
	})
}

// Lift ends every ban whose source overlaps prefix (an address as /32 or
// /128 lifts the ban of its source; 0.0.0.0/0 lifts every IPv4 ban) and
// forgets the failures counted for those sources, and returns the number
// of bans lifted. It takes time proportional to the sources tracked.
func (b *Bans) Lift(prefix netip.Prefix) int {
	if b == nil || !prefix.IsValid() {
		return 0
	}
	if a := prefix.Addr(); a.Is4In6() && prefix.Bits() >= 96 {
		prefix = netip.PrefixFrom(a.Unmap(), prefix.Bits()-96)
	}
	prefix = prefix.Masked()
	b.mu.Lock()
	defer b.mu.Unlock()
	n := 0
	for p := range b.bans {
		if p.Overlaps(prefix) {
			delete(b.bans, p) // its queue entry is dropped when popped
			n++
		}
	}
	b.src.removeOverlapping(prefix)
	return n
}

// add puts ban into the set and the expiry queue, dropping the ban that
// expires first when the set is full. b.mu is held.
func (b *Bans) add(ban Ban) {
	if _, ok := b.bans[ban.Prefix]; !ok {
		for len(b.bans) >= b.cfg.MaxSources && b.qstart < len(b.queue) {
			q := b.pop()
			if old, ok := b.bans[q.p]; ok && old.Until.Equal(q.until) {
				delete(b.bans, q.p)
				b.log.Warn("bans: ban set full; dropped the ban expiring first", "source", q.p, "until", q.until, "max", b.cfg.MaxSources)
			}
		}
	}
	b.bans[ban.Prefix] = ban
	b.queue = append(b.queue, queued{ban.Prefix, ban.Until})
}

// pop removes the front of the expiry queue, compacting it now and then.
func (b *Bans) pop() queued {
	q := b.queue[b.qstart]
	b.queue[b.qstart] = queued{}
	b.qstart++
	if b.qstart == len(b.queue) {
		b.queue, b.qstart = b.queue[:0], 0
	} else if b.qstart > 1024 && b.qstart > len(b.queue)/2 {
		b.queue = append(b.queue[:0], b.queue[b.qstart:]...)
		b.qstart = 0
	}
	return q
}

// expire drops the bans that ended by now. Bans enter the queue in the
// order they end (each lasts BanFor from its start, and loaded ones are
// sorted), so only the front is looked at; should the clock step back,
// a ban may stay in memory behind a later one, but Banned still checks
// Until. b.mu is held.
func (b *Bans) expire(now time.Time) {
	for b.qstart < len(b.queue) && !now.Before(b.queue[b.qstart].until) {
		q := b.pop()
		if ban, ok := b.bans[q.p]; ok && !now.Before(ban.Until) {
			delete(b.bans, q.p)
		}
	}
}

// Failures returns the source addr belongs to and the number of distinct
// failed password hashes counted for it within Window now (0 for a source
// not tracked, or banned: a ban forgets the counters). It does not make
// the source more recent. An invalid addr gives the zero Prefix and 0.
func (b *Bans) Failures(addr netip.Addr) (netip.Prefix, int) {
	if b == nil || !addr.IsValid() {
		return netip.Prefix{}, 0
	}
	p := b.Source(addr)
	b.mu.Lock()
	defer b.mu.Unlock()
	i, ok := b.src.idx[p]
	if !ok {
		return p, 0
	}
	cutoff := b.cfg.Now().Add(-b.cfg.Window).UnixNano()
	n := 0
	for _, sl := range b.src.ents[i].slots {
		if sl.at >= cutoff {
			n++
		}
	}
	return p, n
}

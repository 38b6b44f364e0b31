package bans

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// clock is a fake clock tests move by hand.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

var t0 = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func newBans(t testing.TB, cfg Config) (*Bans, *clock) {
	t.Helper()
	c := &clock{t: t0}
	cfg.Now = c.Now
	b, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return b, c
}

var a = netip.MustParseAddr

// failure is one step of a scenario: after advancing the clock by wait,
// addr fails with pwhash.
type failure struct {
	wait   time.Duration
	addr   string
	pwhash string
}

// repeat returns n failures from addr, every wait, with the hashes
// hash(i).
func repeat(n int, wait time.Duration, addr string, hash func(i int) string) []failure {
	f := make([]failure, n)
	for i := range f {
		f[i] = failure{wait, addr, hash(i)}
	}
	return f
}

func distinct(i int) string { return fmt.Sprintf("h%d", i) }
func same(int) string       { return "stale" }

func TestBans(t *testing.T) {
	tests := []struct {
		name     string
		cfg      Config
		failures []failure
		after    time.Duration // the clock moves on before the checks
		banned   []string      // addresses that must be banned
		free     []string      // addresses that must not be
	}{
		{name: "six distinct wrong passwords ban",
			failures: repeat(6, time.Second, "192.0.2.7", distinct),
			banned:   []string{"192.0.2.7", "::ffff:192.0.2.7"}, free: []string{"192.0.2.8"}},
		{name: "five distinct do not",
			failures: repeat(5, time.Second, "192.0.2.7", distinct),
			free:     []string{"192.0.2.7"}},
		{name: "one wrong password ten times does not",
			failures: repeat(10, time.Second, "192.0.2.7", same),
			free:     []string{"192.0.2.7"}},
		{name: "NAT: five users each retrying a stale password",
			failures: repeat(50, time.Second, "192.0.2.7", func(i int) string { return distinct(i % 5) }),
			free:     []string{"192.0.2.7"}},
		{name: "threshold 2",
			cfg:      Config{Threshold: 2},
			failures: repeat(3, time.Second, "192.0.2.7", distinct),
			banned:   []string{"192.0.2.7"}},
		{name: "ban expires",
			failures: repeat(6, time.Second, "192.0.2.7", distinct),
			after:    DefaultBanFor, free: []string{"192.0.2.7"}},
		{name: "ban in force just before it ends",
			failures: repeat(6, time.Second, "192.0.2.7", distinct),
			after:    DefaultBanFor - time.Nanosecond, banned: []string{"192.0.2.7"}},
		{name: "window slides: one failure every 2m30s never has six in 10m",
			failures: repeat(20, 150*time.Second, "192.0.2.7", distinct),
			free:     []string{"192.0.2.7"}},
		{name: "window: six within 10m ban",
			failures: repeat(6, 119*time.Second, "192.0.2.7", distinct),
			banned:   []string{"192.0.2.7"}},
		{name: "a repeated hash stays in the window",
			failures: append(repeat(5, 0, "192.0.2.7", distinct),
				failure{9 * time.Minute, "192.0.2.7", "h0"}, failure{2 * time.Minute, "192.0.2.7", "new"}),
			free: []string{"192.0.2.7"}}, // h1..h4 aged out: h0 and "new" are left
		{name: "IPv6 grouped by /64",
			failures: []failure{
				{0, "2001:db8:1:2::1", "a"}, {0, "2001:db8:1:2::2", "b"}, {0, "2001:db8:1:2:ffff::3", "c"},
				{0, "2001:db8:1:2::4", "d"}, {0, "2001:db8:1:2::5", "e"}, {0, "2001:db8:1:2::6", "f"}},
			banned: []string{"2001:db8:1:2::99", "2001:db8:1:2::1"}, free: []string{"2001:db8:1:3::1"}},
		{name: "IPv6 grouped by /128",
			cfg: Config{IPv6Prefix: 128},
			failures: []failure{
				{0, "2001:db8::1", "a"}, {0, "2001:db8::2", "b"}, {0, "2001:db8::3", "c"},
				{0, "2001:db8::4", "d"}, {0, "2001:db8::5", "e"}, {0, "2001:db8::6", "f"}},
			free: []string{"2001:db8::1", "2001:db8::6"}},
		{name: "IPv4 grouped by /24",
			cfg:      Config{IPv4Prefix: 24},
			failures: repeat(6, 0, "198.51.100.1", distinct),
			banned:   []string{"198.51.100.200"}, free: []string{"198.51.101.1"}},
		{name: "sources count apart",
			failures: append(repeat(3, 0, "192.0.2.1", distinct), repeat(3, 0, "192.0.2.2", distinct)...),
			free:     []string{"192.0.2.1", "192.0.2.2"}},
		{name: "empty pwhash counts as one value",
			failures: repeat(10, 0, "192.0.2.7", func(int) string { return "" }),
			free:     []string{"192.0.2.7"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, c := newBans(t, tt.cfg)
			for _, f := range tt.failures {
				c.Add(f.wait)
				b.ReportFailure(a(f.addr), f.pwhash)
			}
			c.Add(tt.after)
			for _, s := range tt.banned {
				if ban, ok := b.Banned(a(s)); !ok {
					t.Errorf("%s not banned", s)
				} else if ban.Count != b.Config().Threshold+1 || !ban.Until.Equal(ban.Since.Add(DefaultBanFor)) {
					t.Errorf("%s: ban %+v", s, ban)
				}
			}
			for _, s := range tt.free {
				if ban, ok := b.Banned(a(s)); ok {
					t.Errorf("%s banned: %v", s, ban)
				}
			}
		})
	}
}

func TestReportFailureReturnsBan(t *testing.T) {
	b, c := newBans(t, Config{})
	for i := range 5 {
		if ban, ok := b.ReportFailure(a("192.0.2.7"), distinct(i)); ok {
			t.Fatalf("failure %d banned: %v", i+1, ban)
		}
		c.Add(time.Second)
	}
	ban, ok := b.ReportFailure(a("192.0.2.7"), "h5")
	want := Ban{Prefix: netip.MustParsePrefix("192.0.2.7/32"), Since: t0.Add(5 * time.Second), Until: t0.Add(5*time.Second + time.Hour), Count: 6}
	if !ok || !cmp.Equal(ban, want, prefixes) {
		t.Fatalf("sixth failure: %v %v, want %v", ban, ok, want)
	}
	if got := ban.String(); got != "192.0.2.7/32 banned until 2025-06-01T13:00:05Z after 6 distinct failed passwords" {
		t.Errorf("String: %q", got)
	}
	// Failures while banned change nothing; after the ban the count
	// starts afresh.
	c.Add(time.Minute)
	if again, ok := b.ReportFailure(a("192.0.2.7"), "h9"); !ok || !cmp.Equal(again, want, prefixes) {
		t.Errorf("failure while banned: %v %v", again, ok)
	}
	c.Add(time.Hour)
	if got, ok := b.ReportFailure(a("192.0.2.7"), "h10"); ok {
		t.Errorf("first failure after the ban banned: %v", got)
	}
	if n := b.src.len(); n != 1 {
		t.Errorf("%d sources tracked, want 1", n)
	}
}

func TestNilBans(t *testing.T) {
	var b *Bans
	if _, ok := b.ReportFailure(a("192.0.2.1"), "x"); ok {
		t.Error("nil Bans banned")
	}
	if _, ok := b.Banned(a("192.0.2.1")); ok || b.List() != nil || b.Lift(netip.MustParsePrefix("0.0.0.0/0")) != 0 || b.Save() != nil || b.Load() != nil {
		t.Error("nil Bans is not empty")
	}
}

func TestNewErrors(t *testing.T) {
	for _, cfg := range []Config{{Threshold: -1}, {Threshold: MaxThreshold + 1}, {IPv4Prefix: 33}, {IPv6Prefix: 129}, {Window: -1}, {MaxSources: -1}} {
		if _, err := New(cfg); err == nil {
			t.Errorf("New(%+v) accepted", cfg)
		}
	}
}

// ban bans addr's source with Threshold+1 distinct failures.
func ban(t testing.TB, b *Bans, addr string) {
	t.Helper()
	for i := 0; i <= b.Config().Threshold; i++ {
		b.ReportFailure(a(addr), distinct(i))
	}
	if _, ok := b.Banned(a(addr)); !ok {
		t.Fatalf("%s not banned", addr)
	}
}

func TestListAndLift(t *testing.T) {
	b, c := newBans(t, Config{})
	for _, s := range []string{"192.0.2.1", "192.0.2.2", "198.51.100.1", "2001:db8:0:1::1", "2001:db8:0:2::1"} {
		ban(t, b, s)
		c.Add(time.Second)
	}
	b.ReportFailure(a("192.0.2.3"), "counted")
	var got []string
	for _, x := range b.List() {
		got = append(got, x.Prefix.String())
	}
	if want := []string{"192.0.2.1/32", "192.0.2.2/32", "198.51.100.1/32", "2001:db8:0:1::/64", "2001:db8:0:2::/64"}; !cmp.Equal(got, want) {
		t.Errorf("List: %v, want %v", got, want)
	}
	tests := []struct {
		lift string
		n    int
	}{
		{"192.0.2.1/32", 1},
		{"192.0.2.1/32", 0},
		{"::ffff:192.0.2.2/128", 1},
		{"2001:db8:0:1::abcd/128", 1}, // an address lifts its /64
		{"2001:db8::/32", 1},
		{"0.0.0.0/0", 1},
	}
	for _, tt := range tests {
		if n := b.Lift(netip.MustParsePrefix(tt.lift)); n != tt.n {
			t.Errorf("Lift(%s) = %d, want %d", tt.lift, n, tt.n)
		}
	}
	if l := b.List(); len(l) != 0 {
		t.Errorf("bans left: %v", l)
	}
	if n := b.src.len(); n != 0 {
		t.Errorf("Lift(0.0.0.0/0) left %d sources counted", n)
	}
	// A lifted source starts afresh; its stale queue entry does no harm.
	for i := range 5 {
		b.ReportFailure(a("192.0.2.1"), distinct(i))
	}
	if _, ok := b.Banned(a("192.0.2.1")); ok {
		t.Error("lifted source banned again by five failures")
	}
	b.ReportFailure(a("192.0.2.1"), "h5")
	c.Add(time.Hour - 10*time.Second) // the old entry (ending earlier) pops
	if _, ok := b.Banned(a("192.0.2.1")); !ok {
		t.Error("the new ban was dropped with the lifted one's queue entry")
	}
}

func TestBanSetCap(t *testing.T) {
	b, c := newBans(t, Config{MaxSources: 3})
	for _, s := range []string{"192.0.2.1", "192.0.2.2", "192.0.2.3", "192.0.2.4"} {
		ban(t, b, s)
		c.Add(time.Second)
	}
	if _, ok := b.Banned(a("192.0.2.1")); ok {
		t.Error("the ban expiring first was kept past the cap")
	}
	if l := b.List(); len(l) != 3 {
		t.Errorf("%d bans, want 3", len(l))
	}
}

// TestSpray: a million sprayed addresses (IPv4 and IPv6 /64s), each
// failing twice, leave at most MaxSources sources and bounded heap, and
// a guesser whose failures are fewer than MaxSources sources apart is
// still banned (one that fails less often is forgotten: the cap's price).
func TestSpray(t *testing.T) {
	if testing.Short() {
		t.Skip("sprays a million addresses")
	}
	const spray = 1_000_000
	heap := func() uint64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	before := heap()
	b, _ := newBans(t, Config{})
	guesser := a("203.0.113.9")
	for i := range spray {
		var addr netip.Addr
		if i%2 == 0 {
			addr = netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		} else {
			addr = netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, byte(i >> 24), byte(i >> 16), byte(i >> 8), byte(i), 15: 1})
		}
		b.ReportFailure(addr, "x")
		b.ReportFailure(addr, "y")
		if i >= spray-6*8000 && i%8000 == 0 { // six guesses while 48,000 others fail

			b.ReportFailure(guesser, distinct(i))
		}
	}
	after := heap()
	if n := b.src.len(); n != DefaultMaxSources {
		t.Errorf("%d sources tracked, want %d", n, DefaultMaxSources)
	}
	if _, ok := b.Banned(guesser); !ok {
		t.Error("the guesser hiding in the spray was not banned")
	}
	grown := int64(after) - int64(before)
	t.Logf("heap after spraying %d addresses: +%.1f MB (%d sources, %.0f B/source)",
		spray, float64(grown)/1e6, b.src.len(), float64(grown)/float64(b.src.len()))
	if grown > 40e6 {
		t.Errorf("heap grew %d bytes, want under 40 MB", grown)
	}
	runtime.KeepAlive(b)
}

func TestStateRoundTrip(t *testing.T) {
	file := filepath.Join(t.TempDir(), "bans.json")
	b, c := newBans(t, Config{StateFile: file})
	ban(t, b, "192.0.2.1")
	c.Add(time.Minute)
	ban(t, b, "2001:db8::1")
	b.ReportFailure(a("192.0.2.9"), "counters are not saved")
	if err := b.Save(); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(data), `{"version":1,"bans":[{"prefix":"192.0.2.1/32","since":"2025-06-01T12:00:00Z","until":"2025-06-01T13:00:00Z","count":6}`) {
		t.Errorf("state file:\n%s", data)
	}
	if fi, err := os.Stat(file); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("state file mode: %v %v", fi.Mode(), err)
	}
	if m, _ := filepath.Glob(filepath.Join(filepath.Dir(file), ".bans.json.*")); len(m) != 0 {
		t.Errorf("temporary files left: %v", m)
	}
	// A restart 30 minutes later finds both bans.
	c.Add(30 * time.Minute)
	b2, err := New(Config{StateFile: file, Now: c.Now})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(b.List(), b2.List(), prefixes); diff != "" {
		t.Errorf("bans after restart (-before +after):\n%s", diff)
	}
	// With a /48 grouping the /64 ban widens to its /48; with /128 it is
	// shorter than a source and dropped. With BanFor 10m the bans end at
	// most 10m from now.
	for _, tt := range []struct {
		bits int
		want []string
	}{{48, []string{"192.0.2.1/32", "2001:db8::/48"}}, {128, []string{"192.0.2.1/32"}}} {
		b3, _ := New(Config{StateFile: file, Now: c.Now, IPv6Prefix: tt.bits, BanFor: 10 * time.Minute})
		var got []string
		for _, x := range b3.List() {
			got = append(got, x.Prefix.String())
			if !x.Until.Equal(c.Now().Add(10*time.Minute)) || !x.Since.Before(c.Now()) || x.Count != 6 {
				t.Errorf("IPv6Prefix %d: %+v", tt.bits, x)
			}
		}
		if !cmp.Equal(got, tt.want) {
			t.Errorf("IPv6Prefix %d: bans %v, want %v", tt.bits, got, tt.want)
		}
	}
	// After the bans ended, nothing is loaded.
	c.Add(time.Hour)
	b4, _ := New(Config{StateFile: file, Now: c.Now})
	if l := b4.List(); len(l) != 0 {
		t.Errorf("ended bans loaded: %v", l)
	}
}

func TestStateFileBad(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name, content string
		corrupt       bool
	}{
		{"not json", "{", true},
		{"truncated", `{"version":1,"bans":[{"prefix":"192.0.2.1/32"`, true},
		{"other version", `{"version":2,"bans":[]}`, true},
		{"no version", `{"bans":[]}`, true},
		{"bad prefix", `{"version":1,"bans":[{"prefix":"192.0.2.300/32","since":"2025-06-01T12:00:00Z","until":"2025-06-01T13:00:00Z"}]}`, true},
		{"unmasked prefix", `{"version":1,"bans":[{"prefix":"192.0.2.1/24","since":"2025-06-01T12:00:00Z","until":"2025-06-01T13:00:00Z"}]}`, true},
		{"until before since", `{"version":1,"bans":[{"prefix":"192.0.2.1/32","since":"2025-06-01T12:00:00Z","until":"2025-06-01T11:00:00Z"}]}`, true},
		{"empty prefix", `{"version":1,"bans":[{"prefix":"","since":"2025-06-01T12:00:00Z","until":"2025-06-01T13:00:00Z"}]}`, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			file := filepath.Join(dir, "bans.json")
			if err := os.WriteFile(file, []byte(tt.content), 0o600); err != nil {
				t.Fatal(err)
			}
			var logs strings.Builder
			b, c := newBans(t, Config{StateFile: file, Log: logger(&logs)})
			if l := b.List(); len(l) != 0 {
				t.Errorf("bans loaded: %v", l)
			}
			if !strings.Contains(logs.String(), "bans: state file ignored") {
				t.Errorf("not logged: %q", logs.String())
			}
			ban(t, b, "192.0.2.1")
			if err := b.Load(); !errors.Is(err, ErrCorrupt) != !tt.corrupt {
				t.Errorf("Load: %v", err)
			}
			if _, ok := b.Banned(a("192.0.2.1")); !ok {
				t.Error("a failed Load changed the set")
			}
			_ = c
		})
	}
	// A missing file is an empty set, silently.
	var logs strings.Builder
	b, _ := newBans(t, Config{StateFile: filepath.Join(dir, "missing"), Log: logger(&logs)})
	if b.Load() != nil || logs.Len() != 0 {
		t.Errorf("missing file: %q", logs.String())
	}
	// Save into a missing directory fails and says where.
	b, _ = newBans(t, Config{StateFile: filepath.Join(dir, "no", "such", "bans.json")})
	if err := b.Save(); err == nil || !strings.Contains(err.Error(), "bans: save") {
		t.Errorf("Save into a missing directory: %v", err)
	}
}

// TestConcurrent: reports, checks, lists, lifts and saves from many
// goroutines (run with -race).
func TestConcurrent(t *testing.T) {
	b, c := newBans(t, Config{StateFile: filepath.Join(t.TempDir(), "bans.json"), MaxSources: 50})
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 2000 {
				addr := netip.AddrFrom4([4]byte{192, 0, 2, byte(i % 64)})
				b.ReportFailure(addr, distinct(i+g))
				b.Banned(addr)
				switch i % 500 {
				case 0:
					b.List()
					c.Add(time.Minute)
				case 1:
					b.Lift(netip.PrefixFrom(addr, 32))
				case 2:
					if err := b.Save(); err != nil {
						t.Error(err)
					}
				}
			}
		}()
	}
	wg.Wait()
}

func TestFailures(t *testing.T) {
	b, c := newBans(t, Config{})
	want := netip.MustParsePrefix("2001:db8:1:2::/64")
	if p, n := b.Failures(a("2001:db8:1:2::7")); p != want || n != 0 {
		t.Fatalf("untracked: %v %d", p, n)
	}
	for _, h := range []string{"x", "y", "x"} {
		b.ReportFailure(a("2001:db8:1:2::7"), h)
		c.Add(time.Minute)
	}
	if p, n := b.Failures(a("2001:db8:1:2::8")); p != want || n != 2 {
		t.Errorf("after x, y, x: %v %d, want %v 2", p, n, want)
	}
	c.Add(DefaultWindow - 90*time.Second) // "y" (sent 2 min ago then) is now outside the window
	if _, n := b.Failures(a("2001:db8:1:2::7")); n != 1 {
		t.Errorf("after the window moved: %d, want 1", n)
	}
	var nb *Bans
	if p, n := nb.Failures(a("192.0.2.1")); p.IsValid() || n != 0 {
		t.Errorf("nil Bans: %v %d", p, n)
	}
}

package resolve

import (
	"context"
	"errors"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/miekg/dns"
	"github.com/tcpwrapd/tcpwrapd/pkg/hostsrules"
)

// zone is the test DNS data; the comments say what the engine must make
// of each client.
var zone = []string{
	// good: PTR and A agree.
	ptrName("198.51.100.10") + " 300 IN PTR good.example.com.",
	"good.example.com. 300 IN A 198.51.100.10",
	// IPv6: PTR and AAAA agree.
	ptrName("2001:db8::10") + " 300 IN PTR v6.example.com.",
	"v6.example.com. 300 IN AAAA 2001:db8::10",
	// Case is kept from the PTR answer.
	ptrName("198.51.100.11") + " 300 IN PTR MiXeD.Example.COM.",
	"mixed.example.com. 300 IN A 198.51.100.11",
	// RFC 2317 classless delegation: the PTR query meets a CNAME.
	ptrName("198.51.100.20") + " 300 IN CNAME 20.0-63.100.51.198.in-addr.arpa.",
	"20.0-63.100.51.198.in-addr.arpa. 300 IN PTR classless.example.com.",
	"classless.example.com. 300 IN A 198.51.100.20",
	// The PTR name is an alias: canonical real.example.org differs.
	ptrName("198.51.100.21") + " 300 IN PTR www.example.com.",
	"www.example.com. 300 IN CNAME web.example.net.",
	"web.example.net. 300 IN CNAME real.example.org.",
	"real.example.org. 300 IN A 198.51.100.21",
	// Numeric PTR.
	ptrName("198.51.100.99") + " 300 IN PTR 198.51.100.99.",
	// Forward lookup gives another address.
	ptrName("198.51.100.40") + " 300 IN PTR liar.example.com.",
	"liar.example.com. 300 IN A 198.51.100.41",
	// Forward lookup fails (NXDOMAIN).
	ptrName("198.51.100.42") + " 300 IN PTR ghost.example.com.",
	// IPv6 client whose name has only an A record.
	ptrName("2001:db8::20") + " 300 IN PTR good.example.com.",
	// A PTR target no shell should see: ";", spaces, "/".
	ptrName("198.51.100.66") + ` 300 IN PTR a\;rm\032-rf\032/.example.com.`,
	// Underscores are valid for glibc.
	ptrName("198.51.100.67") + " 300 IN PTR under_score.example.com.",
	"under_score.example.com. 300 IN A 198.51.100.67",
	// Slow: answered only when the test says so.
	ptrName("198.51.100.70") + " 300 IN PTR slow.example.com.",
	"slow.example.com. 300 IN A 198.51.100.70",
	// A search-list name: "plainhost" is found as plainhost.example.com.
	ptrName("198.51.100.13") + " 300 IN PTR plainhost.",
	"plainhost.example.com. 300 IN A 198.51.100.13",
	// Many addresses: does not fit a 512-byte UDP answer.
	"big.example.com. 300 IN CNAME bigger.example.com.",
}

func init() {
	for i := 1; i <= 40; i++ {
		zone = append(zone, "bigger.example.com. 300 IN A 203.0.113."+itoa(i))
	}
}

func itoa(i int) string { return netip.AddrFrom4([4]byte{0, 0, 0, byte(i)}).String()[6:] }

// classes are the answers of the real engine for one client.
type classes struct {
	Name                             string // %n
	Domain, Known, Paranoid, Unknown bool   // rules .example.com, KNOWN, PARANOID, UNKNOWN
}

func classify(r hostsrules.Resolver, client string) classes {
	var c classes
	granted := func(allow string) bool {
		v, _ := checkName(r, allow, client, 5*time.Second)
		return v == hostsrules.Granted
	}
	_, c.Name = checkName(r, "imap: LOCALHOST\n", client, 5*time.Second)
	c.Domain = granted("imap: .example.com\n")
	c.Known = granted("imap: KNOWN\n")
	c.Paranoid = granted("imap: PARANOID\n")
	c.Unknown = granted("imap: UNKNOWN\n")
	return c
}

func TestEngineNames(t *testing.T) {
	ts := startServer(t, zone...)
	known := func(name string, domain bool) classes { return classes{Name: name, Domain: domain, Known: true} }
	paranoid := classes{Name: "paranoid", Paranoid: true}
	unknown := classes{Name: "unknown", Unknown: true}
	tests := []struct {
		name, client string
		want         classes
	}{
		{"ptr and A agree", "198.51.100.10", known("good.example.com", true)},
		{"ptr and AAAA agree", "2001:db8::10", known("v6.example.com", true)},
		{"mapped client looked up as IPv4", "::ffff:198.51.100.10", known("good.example.com", true)},
		{"case of the PTR answer kept", "198.51.100.11", known("MiXeD.Example.COM", true)},
		{"classless PTR via CNAME", "198.51.100.20", known("classless.example.com", true)},
		{"underscore", "198.51.100.67", known("under_score.example.com", true)},
		{"hosts file before DNS", "198.51.100.77", known("fromfile.example.com", true)},
		{"PTR name is an alias (CNAME chain)", "198.51.100.21", paranoid},
		{"numeric PTR", "198.51.100.99", paranoid},
		{"forward gives another address", "198.51.100.40", paranoid},
		{"forward NXDOMAIN", "198.51.100.42", paranoid},
		{"IPv6 client, name has only A", "2001:db8::20", paranoid},
		{"hostile PTR target", "198.51.100.66", paranoid},
		{"short PTR name expanded by search list", "198.51.100.13", paranoid},
		{"no PTR (NXDOMAIN)", "198.51.100.50", unknown},
		{"no PTR (IPv6)", "2001:db8::50", unknown},
	}
	r, _, _ := newResolver(t, Config{}, ts.Addr)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, classify(r, tt.client)); diff != "" {
				t.Errorf("client %s (-want +got):\n%s", tt.client, diff)
			}
		})
	}
	if got := ts.count(ptrName("198.51.100.77"), "PTR"); got != 0 {
		t.Errorf("hosts-file client: %d PTR queries, want 0", got)
	}
	// Each client made at most one PTR query although classify checks 5
	// times: the rest came from the cache.
	for _, tt := range tests {
		a := netip.MustParseAddr(tt.client).Unmap()
		if got := ts.count(ptrName(a.String()), "PTR"); got > 1 {
			t.Errorf("%s: %d PTR queries, want at most 1", tt.client, got)
		}
	}
}

func TestLookupAddrRaw(t *testing.T) {
	ts := startServer(t, zone...)
	r, _, _ := newResolver(t, Config{}, ts.Addr)
	tests := []struct {
		addr, want string
		err        error
	}{
		{"198.51.100.10", "good.example.com", nil},
		{"198.51.100.99", "198.51.100.99", nil},
		{"198.51.100.66", `a\;rm\032-rf\032/.example.com`, nil},
		{"198.51.100.20", "classless.example.com", nil},
		{"198.51.100.77", "fromfile.example.com", nil},
		{"198.51.100.50", "", ErrNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.addr, func(t *testing.T) {
			got, err := r.LookupAddr(context.Background(), netip.MustParseAddr(tt.addr))
			if got != tt.want || !errors.Is(err, tt.err) {
				t.Errorf("LookupAddr(%s) = %q, %v; want %q, %v", tt.addr, got, err, tt.want, tt.err)
			}
		})
	}
}

func TestLookupHost(t *testing.T) {
	ts := startServer(t, zone...)
	ts.add(t, "good.example.com. 300 IN AAAA 2001:db8::11")
	r, _, _ := newResolver(t, Config{}, ts.Addr)
	type answer struct {
		Canon string
		Addrs []netip.Addr
	}
	addrs := func(s ...string) []netip.Addr {
		var out []netip.Addr
		for _, a := range s {
			out = append(out, netip.MustParseAddr(a))
		}
		return out
	}
	tests := []struct {
		name, network, host string
		want                answer
		err                 error
	}{
		{"A", "ip4", "good.example.com", answer{"good.example.com", addrs("198.51.100.10")}, nil},
		{"trailing dot", "ip4", "good.example.com.", answer{"good.example.com", addrs("198.51.100.10")}, nil},
		{"AAAA", "ip6", "good.example.com", answer{"good.example.com", addrs("2001:db8::11")}, nil},
		{"both", "ip", "good.example.com", answer{"good.example.com", addrs("198.51.100.10", "2001:db8::11")}, nil},
		{"CNAME chain: canonical is the final name", "ip4", "www.example.com", answer{"real.example.org", addrs("198.51.100.21")}, nil},
		{"search list", "ip4", "plainhost", answer{"plainhost.example.com", addrs("198.51.100.13")}, nil},
		{"hosts file alias", "ip4", "fromfile", answer{"fromfile.example.com", addrs("198.51.100.77")}, nil},
		{"NXDOMAIN", "ip4", "ghost.example.com", answer{}, ErrNotFound},
		{"no data", "ip6", "liar.example.com", answer{}, ErrNotFound},
		{"not a host name: never asked", "ip4", `a\;rm\032-rf\032/.example.com`, answer{}, ErrNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, a, err := r.LookupHost(context.Background(), tt.network, tt.host)
			if diff := cmp.Diff(tt.want, answer{c, a}, cmp.Comparer(func(x, y netip.Addr) bool { return x == y })); diff != "" || !errors.Is(err, tt.err) {
				t.Errorf("LookupHost(%s, %s) err %v (want %v), answer (-want +got):\n%s", tt.network, tt.host, err, tt.err, diff)
			}
		})
	}
	if n := ts.count(`a\;rm\032-rf\032/.example.com`, "A"); n != 0 {
		t.Errorf("invalid host name was queried %d times", n)
	}
}

func TestTruncatedAnswerRetriedOverTCP(t *testing.T) {
	ts := startServer(t, zone...)
	ts.set("big.example.com", behaviour{truncUDP: true})
	r, _, _ := newResolver(t, Config{}, ts.Addr)
	c, a, err := r.LookupHost(context.Background(), "ip4", "big.example.com")
	if err != nil || c != "bigger.example.com" || len(a) != 40 {
		t.Fatalf("LookupHost = %q, %d addresses, %v; want bigger.example.com, 40, nil", c, len(a), err)
	}
	ts.mu.Lock()
	udp, tcp := ts.queries["big.example.com. A udp"], ts.queries["big.example.com. A tcp"]
	ts.mu.Unlock()
	if udp != 1 || tcp != 1 {
		t.Errorf("queries: udp %d, tcp %d; want 1, 1", udp, tcp)
	}
}

func TestNegativeCache(t *testing.T) {
	tests := []struct {
		name    string
		soa     string
		cfg     Config
		wantTTL time.Duration
	}{
		{"no SOA: NegativeTTL", "", Config{NegativeTTL: 30 * time.Second}, 30 * time.Second},
		{"SOA minimum", "100.51.198.in-addr.arpa. 3600 IN SOA ns. host. 1 7200 900 1209600 20", Config{}, 20 * time.Second},
		{"SOA TTL below minimum", "100.51.198.in-addr.arpa. 12 IN SOA ns. host. 1 7200 900 1209600 600", Config{}, 12 * time.Second},
		{"SOA clamped to MinTTL", "100.51.198.in-addr.arpa. 3600 IN SOA ns. host. 1 7200 900 1209600 1", Config{MinTTL: 10 * time.Second}, 10 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts := startServer(t, zone...)
			if tt.soa != "" {
				rr, err := dns.NewRR(tt.soa)
				if err != nil {
					t.Fatal(err)
				}
				ts.mu.Lock()
				ts.negSOA = rr
				ts.mu.Unlock()
			}
			r, clk, _ := newResolver(t, tt.cfg, ts.Addr)
			const client = "198.51.100.50"
			q := ptrName(client)
			for i, step := range []struct {
				advance time.Duration
				queries int
			}{
				{0, 1},                        // first check asks
				{0, 1},                        // second is a negative hit
				{tt.wantTTL - time.Second, 1}, // still cached
				{time.Second, 2},              // expired: asks again
			} {
				clk.Advance(step.advance)
				if v, n := checkName(r, "imap: UNKNOWN\n", client, 5*time.Second); v != hostsrules.Granted || n != "unknown" {
					t.Fatalf("step %d: %v %q, want granted unknown", i, v, n)
				}
				if got := ts.count(q, "PTR"); got != step.queries {
					t.Fatalf("step %d: %d PTR queries, want %d", i, got, step.queries)
				}
			}
			if s := r.Stats(); s.NegativeHits != 2 || s.Misses != 2 || s.Hits != 0 {
				t.Errorf("stats %+v, want 2 negative hits, 2 misses, 0 hits", s)
			}
		})
	}
}

func TestPositiveTTL(t *testing.T) {
	tests := []struct {
		name    string
		ttl     string
		cfg     Config
		wantTTL time.Duration
	}{
		{"record TTL", "60", Config{}, 60 * time.Second},
		{"raised to MinTTL", "1", Config{MinTTL: 10 * time.Second}, 10 * time.Second},
		{"zero TTL raised to default MinTTL", "0", Config{}, DefaultMinTTL},
		{"cut to MaxTTL", "86400", Config{MaxTTL: time.Hour}, time.Hour},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts := startServer(t,
				ptrName("198.51.100.10")+" "+tt.ttl+" IN PTR good.example.com.",
				"good.example.com. 3600 IN A 198.51.100.10",
			)
			r, clk, _ := newResolver(t, tt.cfg, ts.Addr)
			q := ptrName("198.51.100.10")
			for i, step := range []struct {
				advance time.Duration
				queries int
			}{
				{0, 1},
				{tt.wantTTL - time.Millisecond, 1},
				{time.Millisecond, 2},
			} {
				clk.Advance(step.advance)
				if v, n := checkName(r, "imap: KNOWN\n", "198.51.100.10", 5*time.Second); v != hostsrules.Granted || n != "good.example.com" {
					t.Fatalf("step %d: %v %q", i, v, n)
				}
				if got := ts.count(q, "PTR"); got != step.queries {
					t.Fatalf("step %d: %d PTR queries, want %d", i, got, step.queries)
				}
			}
		})
	}
}

// TestSlowAnswerDeadlineAndDedup: 20 checks of one client whose PTR answer
// is slow each return at their own deadline with the name unknown, and
// the server sees one query; once the answer comes it is cached.
func TestSlowAnswerDeadlineAndDedup(t *testing.T) {
	ts := startServer(t, zone...)
	gate := make(chan struct{})
	ts.set(ptrName("198.51.100.70"), behaviour{gate: gate})
	r, _, _ := newResolver(t, Config{Timeout: 10 * time.Second}, ts.Addr)

	const n = 20
	const deadline = 150 * time.Millisecond
	type got struct {
		Verdict hostsrules.Verdict
		Name    string
	}
	results := make([]got, n)
	took := make([]time.Duration, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			start := time.Now()
			v, name := checkName(r, "imap: .example.com\n", "198.51.100.70", deadline)
			results[i], took[i] = got{v, name}, time.Since(start)
		})
	}
	wg.Wait()
	for i := range n {
		if diff := cmp.Diff(got{hostsrules.Denied, "unknown"}, results[i]); diff != "" {
			t.Errorf("check %d (-want +got):\n%s", i, diff)
		}
		if took[i] < deadline || took[i] > deadline+time.Second {
			t.Errorf("check %d took %v, want about %v", i, took[i], deadline)
		}
	}
	if q := ts.count(ptrName("198.51.100.70"), "PTR"); q != 1 {
		t.Errorf("%d PTR queries upstream, want 1", q)
	}
	s := r.Stats()
	if s.Misses != 1 || s.Joins != n-1 || s.Timeouts != n || s.InFlight != 1 {
		t.Errorf("stats %+v; want 1 miss, %d joins, %d timeouts, 1 in flight", s, n-1, n)
	}

	close(gate) // the answer arrives; the shared query fills the cache
	waitFor(t, func() bool { return r.Stats().InFlight == 0 })
	if v, name := checkName(r, "imap: .example.com\n", "198.51.100.70", deadline); v != hostsrules.Granted || name != "slow.example.com" {
		t.Errorf("after the answer: %v %q, want granted slow.example.com", v, name)
	}
	if q := ts.count(ptrName("198.51.100.70"), "PTR"); q != 1 {
		t.Errorf("%d PTR queries upstream after the answer, want still 1", q)
	}
}

func waitFor(t testing.TB, cond func() bool) {
	t.Helper()
	for start := time.Now(); !cond(); time.Sleep(time.Millisecond) {
		if time.Since(start) > 5*time.Second {
			t.Fatal("condition not reached in 5 s")
		}
	}
}

// deadUDP returns a loopback UDP address with nothing listening (queries
// get ICMP port unreachable) and one that swallows every query.
func deadUDP(t testing.TB) (refused, blackhole string) {
	pc, err := netListenUDP()
	if err != nil {
		t.Fatal(err)
	}
	refused = pc.LocalAddr().String()
	pc.Close()
	bh, err := netListenUDP()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bh.Close() })
	return refused, bh.LocalAddr().String()
}

func TestFailingServers(t *testing.T) {
	ts := startServer(t, zone...)
	ts.set(ptrName("198.51.100.10"), behaviour{rcode: dns.RcodeServerFailure})
	refused, blackhole := deadUDP(t)
	tests := []struct {
		name     string
		servers  []string
		deadline time.Duration
		maxTook  time.Duration
	}{
		{"SERVFAIL", []string{ts.Addr}, 5 * time.Second, time.Second},
		{"nothing listening", []string{refused}, 5 * time.Second, time.Second},
		{"never answers", []string{blackhole}, 200 * time.Millisecond, 1200 * time.Millisecond},
		{"first server dead, second SERVFAIL", []string{refused, ts.Addr}, 5 * time.Second, time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, clk, _ := newResolver(t, Config{Timeout: 30 * time.Second, FailureTTL: 5 * time.Second}, tt.servers...)
			start := time.Now()
			v, name := checkName(r, "imap: .example.com\n", "198.51.100.10", tt.deadline)
			if took := time.Since(start); v != hostsrules.Denied || name != "unknown" || took > tt.maxTook {
				t.Fatalf("check: %v %q in %v; want denied unknown within %v", v, name, took, tt.maxTook)
			}
			if tt.name == "never answers" {
				return // the query is still in flight; Close ends it
			}
			waitFor(t, func() bool { return r.Stats().InFlight == 0 })
			before := r.Stats()
			if before.Failures != 1 {
				t.Errorf("stats %+v: want 1 failure", before)
			}
			// Within FailureTTL the failure is answered from the cache.
			clk.Advance(4 * time.Second)
			checkName(r, "imap: .example.com\n", "198.51.100.10", tt.deadline)
			if s := r.Stats(); s.Queries != before.Queries || s.NegativeHits != 1 {
				t.Errorf("stats %+v after %+v: want no new query and 1 negative hit", s, before)
			}
			clk.Advance(time.Second)
			checkName(r, "imap: .example.com\n", "198.51.100.10", tt.deadline)
			waitFor(t, func() bool { return r.Stats().InFlight == 0 })
			if s := r.Stats(); s.Queries == before.Queries {
				t.Errorf("stats %+v: want a new query once FailureTTL passed", s)
			}
		})
	}
}

// TestDeadServerDelaysOnlyNameChecks: while checks that need a name wait
// on a DNS server that never answers, address-only checks of the same
// policy run at full speed and send no query.
func TestDeadServerDelaysOnlyNameChecks(t *testing.T) {
	_, blackhole := deadUDP(t)
	r, _, _ := newResolver(t, Config{Timeout: 10 * time.Second}, blackhole)
	p := compile("imap: 192.0.2.1 198.51.100.0/255.255.255.0 : allow\nimap: .example.com\n")
	env := &hostsrules.Env{Resolver: r}
	const deadline = 500 * time.Millisecond

	var wg sync.WaitGroup
	nameDone := make(chan time.Duration, 10)
	start := time.Now()
	for i := range 10 {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), deadline)
			defer cancel()
			// Different clients: 10 distinct upstream lookups, all stuck.
			req := clientReq("203.0.113." + itoa(i+1))
			if d := p.Check(ctx, req, env); d.Verdict != hostsrules.Denied {
				t.Errorf("name check %d: %v, want denied", i, d.Verdict)
			}
			nameDone <- time.Since(start)
		})
	}
	waitFor(t, func() bool { return r.Stats().InFlight == 10 })

	const m = 10000
	addrStart := time.Now()
	var slowest time.Duration
	for i := range m {
		client := "192.0.2.1"
		if i%2 == 1 {
			client = "198.51.100." + itoa(i%250+1)
		}
		t0 := time.Now()
		d := p.Check(context.Background(), clientReq(client), env)
		slowest = max(slowest, time.Since(t0))
		if d.Verdict != hostsrules.Granted {
			t.Fatalf("address-only check %s: %v", client, d.Verdict)
		}
	}
	addrTook := time.Since(addrStart)
	if r.Stats().InFlight != 10 {
		t.Errorf("address-only checks finished after the name checks gave up; took %v", addrTook)
	}
	wg.Wait()
	close(nameDone)
	for d := range nameDone {
		if d < deadline || d > deadline+time.Second {
			t.Errorf("name check returned after %v, want about %v", d, deadline)
		}
	}
	if s := r.Stats(); s.Timeouts != 10 || s.Misses != 10 {
		t.Errorf("stats %+v: want 10 misses, 10 timeouts", s)
	}
	t.Logf("%d address-only checks in %v (%v each, slowest %v) while 10 name checks waited on a dead server",
		m, addrTook, addrTook/m, slowest)
	if slowest > 50*time.Millisecond {
		t.Errorf("slowest address-only check took %v", slowest)
	}
}

func TestCloseEndsInFlightQueries(t *testing.T) {
	_, blackhole := deadUDP(t)
	r, _, _ := newResolver(t, Config{Timeout: time.Minute}, blackhole)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := r.LookupAddr(ctx, netip.MustParseAddr("198.51.100.10")); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("LookupAddr error %v, want deadline exceeded", err)
	}
	start := time.Now()
	r.Close()
	if took := time.Since(start); took > time.Second {
		t.Errorf("Close took %v", took)
	}
	if _, err := r.LookupAddr(context.Background(), netip.MustParseAddr("198.51.100.11")); !errors.Is(err, ErrClosed) {
		t.Errorf("LookupAddr after Close: %v, want ErrClosed", err)
	}
}

func TestCacheBounded(t *testing.T) {
	ts := startServer(t, zone...)
	r, _, _ := newResolver(t, Config{MaxEntries: 10}, ts.Addr)
	for i := 1; i <= 50; i++ {
		r.LookupAddr(context.Background(), netip.MustParseAddr("203.0.113."+itoa(i)))
		if e := r.Stats().Entries; e > 10 {
			t.Fatalf("after %d lookups: %d entries, want at most 10", i, e)
		}
	}
}

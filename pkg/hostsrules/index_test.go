package hostsrules

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/tcpwrapd/tcpwrapd/pkg/hostsrules/internal/chunk"
	"github.com/tcpwrapd/tcpwrapd/pkg/hostsrules/internal/xgets"
)

// checkBoth evaluates req with the index and with a plain rule-by-rule scan.
func checkBoth(p *Policy, req Request) (indexed, linear Decision) {
	env := &Env{Resolver: ParseHosts([]byte("10.0.0.1 one.example\n2001:db8::1 six.example\n"))}
	r1, r2 := req, req
	c := p.newCheck(context.Background(), &r1, env)
	indexed = c.run()
	c = p.newCheck(context.Background(), &r2, env)
	c.linear = true
	linear = c.run()
	return indexed, linear
}

// randomRules builds a rule set from a small vocabulary so that index
// hits, EXCEPT, names, prefixes and mixed rules interleave.
func randomRules(rng *rand.Rand, n int) string {
	addrs := []string{"10.0.0.1", "10.0.0.2", "10.0.0.3", "010.0.0.1", "[2001:db8::1]", "[2001:db8::2]", "192.0.2.7"}
	other := []string{"10.0.0.", ".1", "10.0.0.0/24", "ALL", "one.example", "KNOWN", "UNKNOWN", "LOCAL", "10.0.0.*"}
	daemons := []string{"ALL", "imap", "pop3", "imap,pop3", "ALL EXCEPT pop3", "sshd", "0"}
	var b strings.Builder
	for i := 0; i < n; i++ {
		var cl []string
		k := 1 + rng.IntN(3)
		for j := 0; j < k; j++ {
			if rng.IntN(10) == 0 {
				cl = append(cl, other[rng.IntN(len(other))])
			} else {
				cl = append(cl, addrs[rng.IntN(len(addrs))])
			}
		}
		if rng.IntN(20) == 0 {
			cl = append(cl, "EXCEPT", addrs[rng.IntN(len(addrs))])
		}
		opt := ""
		if rng.IntN(8) == 0 {
			opt = []string{": allow", ": deny", ": severity info"}[rng.IntN(3)]
		}
		fmt.Fprintf(&b, "%s: %s%s\n", daemons[rng.IntN(len(daemons))], strings.Join(cl, " "), opt)
	}
	return b.String()
}

func randomRequest(rng *rand.Rand) Request {
	daemons := []string{"imap", "pop3", "sshd"}
	clients := []string{"10.0.0.1", "10.0.0.2", "10.0.0.9", "2001:db8::1", "2001:db8::9", "192.0.2.7", "::ffff:10.0.0.3"}
	a := netip.MustParseAddr(clients[rng.IntN(len(clients))])
	req := Request{Daemon: daemons[rng.IntN(len(daemons))], User: Unknown}
	req.Client.Addr = netip.AddrPortFrom(a, 40000)
	req.Server.Addr = netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), 143)
	if rng.IntN(4) == 0 {
		req.Client = Endpoint{AddrText: []string{"010.0.0.1", "10.0.0.1", "2001:DB8::1", "::FFFF:10.0.0.2"}[rng.IntN(4)], Name: Unknown}
	}
	return req
}

// FuzzIndex asserts that the address index and a plain rule-by-rule
// interpreter agree on random rule sets and clients.
func FuzzIndex(f *testing.F) {
	for _, seed := range []uint64{1, 2, 3, 42, 1000} {
		f.Add(seed, uint8(40))
	}
	f.Fuzz(func(t *testing.T, seed uint64, n uint8) {
		rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
		allow := randomRules(rng, int(n)%80)
		deny := randomRules(rng, int(n))
		p := Compile(Source{Name: "hosts.allow", Data: []byte(allow)}, Source{Name: "hosts.deny", Data: []byte(deny)})
		for k := 0; k < 20; k++ {
			req := randomRequest(rng)
			a, b := checkBoth(p, req)
			if diff := cmp.Diff(b, a, cmp.Comparer(func(x, y error) bool { return (x == nil) == (y == nil) })); diff != "" {
				t.Fatalf("index and interpreter disagree for %+v (-linear +indexed):\n%s\nallow:\n%s\ndeny:\n%s", req, diff, allow, deny)
			}
		}
	})
}

func TestIndexUsed(t *testing.T) {
	var b strings.Builder
	for i := 0; i < 100; i++ {
		fmt.Fprintf(&b, "ALL: 10.1.%d.%d\n", i/250, i%250)
	}
	p := Compile(Source{Name: "hosts.allow"}, Source{Name: "hosts.deny", Data: []byte(b.String())})
	if got := len(p.deny.segs); got != 1 || p.deny.segs[0].run == nil {
		t.Fatalf("want one indexed segment, got %+v", p.deny.segs)
	}
	req := Request{Daemon: "imap"}
	req.Client.Addr = netip.MustParseAddrPort("10.1.0.57:1234")
	d := p.Check(context.Background(), &req, nil)
	want := Decision{Verdict: Denied, File: "hosts.deny", Line: 58, Rule: "ALL: 10.1.0.57", Reason: "matched"}
	if diff := cmp.Diff(want, d); diff != "" {
		t.Errorf("decision (-want +got):\n%s", diff)
	}
}

// TestExplainIndexed: with Explain, an indexed run is one summary step
// followed by the rules actually evaluated.
func TestExplainIndexed(t *testing.T) {
	var b strings.Builder
	for i := 0; i < 1000; i++ {
		fmt.Fprintf(&b, "ALL: 10.1.%d.%d\n", i/250, i%250)
	}
	p := Compile(Source{Name: "hosts.allow"}, Source{Name: "hosts.deny", Data: []byte(b.String())})
	req := Request{Daemon: "imap"}
	req.Client.Addr = netip.MustParseAddrPort("10.1.2.7:1234")
	d := p.Check(context.Background(), &req, &Env{Explain: true})
	if len(d.Trace) != 2 || !d.Trace[0].Index || d.Trace[1].Line != 508 || !d.Trace[1].Matched {
		t.Errorf("trace %+v, want an index step then line 508 matched", d.Trace)
	}
}

// TestLoadStreams: Load, which compiles while reading a file in blocks,
// gives the policy Compile(ReadSource) gives, for a table larger than a
// block with continuations, comments, mixed and compact rules.
func TestLoadStreams(t *testing.T) {
	dir := t.TempDir()
	var b strings.Builder
	rng := rand.New(rand.NewPCG(7, 8))
	for b.Len() < 3*xgets.ReadChunk {
		switch rng.IntN(20) {
		case 0:
			b.WriteString("# comment\n\n")
		case 1:
			b.WriteString("imap: 10.0.0.1 \\\n 10.0.0.2: deny\n")
		default:
			b.WriteString(randomRules(rng, 1))
		}
	}
	b.WriteString("ALL: 192.0.2.1") // unterminated
	allow, deny := dir+"/hosts.allow", dir+"/hosts.deny"
	writeFile(t, allow, "sshd: 10.0.0.3\n")
	writeFile(t, deny, b.String())
	whole := Compile(ReadSource(allow), ReadSource(deny))
	streamed := Load(allow, deny)
	if diff := cmp.Diff(whole.Diagnostics(), streamed.Diagnostics()); diff != "" {
		t.Errorf("diagnostics (-whole +streamed):\n%s", diff)
	}
	if diff := cmp.Diff(whole.Files(), streamed.Files()); diff != "" {
		t.Errorf("files (-whole +streamed):\n%s", diff)
	}
	if a1, d1 := whole.Rules(); true {
		if a2, d2 := streamed.Rules(); a1 != a2 || d1 != d2 {
			t.Errorf("rules %d/%d streamed, %d/%d whole", a2, d2, a1, d1)
		}
	}
	for range 300 {
		req := randomRequest(rng)
		r1, r2 := req, req
		env := &Env{Explain: true}
		if diff := cmp.Diff(whole.Check(context.Background(), &r1, env), streamed.Check(context.Background(), &r2, env),
			cmp.Comparer(func(x, y error) bool { return (x == nil) == (y == nil) })); diff != "" {
			t.Fatalf("decision for %+v (-whole +streamed):\n%s", req, diff)
		}
	}
}

// keptRule is a rule as a table keeps it, rebuilt for comparison with
// ParseRules.
type keptRule struct {
	Line             int
	Text             string
	Daemons, Clients []string
	HasOpts          bool
	Opts             string
}

func keptFromRule(r *rule) keptRule {
	return keptRule{Line: int(r.line), Text: r.fullText(), Daemons: slices.Clone(r.daemons),
		Clients: slices.Clone(r.clients), HasOpts: r.hasOpts, Opts: strings.TrimSuffix(r.opts, "\n")}
}

func keptFromParsed(r Rule) keptRule {
	k := keptRule{Line: r.Line, Text: r.Text, HasOpts: r.HasOptions, Opts: r.Options}
	for _, t := range r.Daemons {
		k.Daemons = append(k.Daemons, t.Text)
	}
	for _, t := range r.Clients {
		k.Clients = append(k.Clients, t.Text)
	}
	return k
}

// keptRules rebuilds every rule of t in order, as the checks see them.
func keptRules(t *table) []keptRule {
	c := &check{}
	var out []keptRule
	var r rule
	for _, s := range t.segs {
		if s.run == nil {
			for i := s.base; i < s.base+s.end-s.start; i++ {
				c.toks = t.view(t.stored.Ref(i), c.toks, &r)
				out = append(out, keptFromRule(&r))
			}
			continue
		}
		addrs := s.run.Addrs()
		for k := range s.run.Len() {
			var tok string
			c.rule(t, &s, int32(k), &tok, addrs[k], &r)
			out = append(out, keptFromRule(&r))
		}
	}
	return out
}

// TestKeptRules checks that every rule of a compiled table, rebuilt from
// the compact form the table keeps (addresses, one or many per line,
// prefixes, text blocks, chunked lists of several blocks), is exactly the
// rule ParseRules reads.
func TestKeptRules(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	var b strings.Builder
	b.WriteString(randomRules(rng, 300))
	for i := range 3 * chunk.BlockLen {
		switch i % 5 {
		case 0, 1:
			fmt.Fprintf(&b, "ALL: 10.%d.%d.%d\n", i>>16&0xff, i>>8&0xff, i&0xff)
		case 2:
			fmt.Fprintf(&b, "imap, pop3:10.1.%d.%d 10.2.%d.%d\t10.3.0.1\n", i>>8&0xff, i&0xff, i>>8&0xff, i&0xff)
		case 3:
			fmt.Fprintf(&b, "ALL: 10.4.%d.%d 10.4.%d.%d 10.4.%d.%d\n", i>>8&0xff, i&0xff, i>>8&0xff, i&0xff, i>>7&0xff, i&0x7f)
		case 4:
			fmt.Fprintf(&b, "sshd: [2001:db8::%x] : severity auth.info\n", i)
		}
	}
	b.WriteString(randomRules(rng, 300))
	for i := range chunk.BlockLen + 10 {
		fmt.Fprintf(&b, "ALL: .h%d.example.com\n", i)
	}
	src := Source{Name: "hosts.deny", Data: []byte(b.String())}
	parsed, _ := ParseRules(src, false)
	var want []keptRule
	for _, r := range parsed {
		want = append(want, keptFromParsed(r))
	}
	p := Compile(Source{Name: "hosts.allow", State: FileMissing}, src)
	if diff := cmp.Diff(want, keptRules(p.deny), cmpopts.EquateEmpty()); diff != "" {
		t.Fatalf("kept rules differ from the parsed ones (-parsed +kept):\n%s", diff)
	}
	var multi, blocks int
	for _, s := range p.deny.segs {
		if s.run != nil {
			multi += s.run.Multi()
			blocks = max(blocks, s.run.V4Blocks())
		}
	}
	if multi < 2*chunk.BlockLen/5 || blocks < 3 {
		t.Errorf("%d rules kept as several addresses, %d blocks of IPv4 keys: the compact forms are not used", multi, blocks)
	}
	// The index over several blocks finds what the scan finds.
	for _, a := range []string{"10.0.0.0", "10.0.0.1", "10.0.191.255", "10.1.0.2", "10.2.100.7", "10.3.0.1", "10.4.3.4", "10.4.6.4", "10.9.9.9", "2001:db8::4"} {
		for _, d := range []string{"imap", "sshd"} {
			req := Request{Daemon: d, User: Unknown}
			req.Client.Addr = netip.AddrPortFrom(netip.MustParseAddr(a), 1)
			req.Server.Addr = netip.MustParseAddrPort("127.0.0.1:143")
			indexed, linear := checkBoth(p, req)
			if diff := cmp.Diff(linear, indexed); diff != "" {
				t.Errorf("%s from %s: index and scan differ (-scan +index):\n%s", d, a, diff)
			}
		}
	}
}

// TestShortRunAllocs: a check against a hosts.deny of one or a few
// address rules that do not list the client allocates nothing (the rules
// are indexed, not interpreted), and an explained check still shows each
// rule of a run under minExplainedRun.
func TestShortRunAllocs(t *testing.T) {
	for _, deny := range []string{"ALL: 127.0.0.2\n", "sshd: 192.0.2.1\nALL: 127.0.0.2 192.0.2.9\n"} {
		p := Compile(Source{Name: "hosts.allow", State: FileMissing}, Source{Name: "hosts.deny", Data: []byte(deny)})
		req := Request{Daemon: "smtpd", User: Unknown}
		req.Client.Addr = netip.MustParseAddrPort("127.0.0.1:40000")
		req.Client.Name = Unknown
		ctx := context.Background()
		allocs := testing.AllocsPerRun(100, func() {
			if d := p.Check(ctx, &req, nil); d.Verdict != Granted {
				t.Fatalf("%q: %+v", deny, d)
			}
		})
		if allocs != 0 {
			t.Errorf("%q: %v allocations per check, want 0", deny, allocs)
		}
		d := p.Check(ctx, &req, &Env{Explain: true})
		for _, st := range d.Trace {
			if st.Index {
				t.Errorf("%q: explained as an indexed run: %+v", deny, st)
			}
		}
		if want := strings.Count(deny, "\n"); len(d.Trace) != want {
			t.Errorf("%q: %d steps explained, want %d: %+v", deny, len(d.Trace), want, d.Trace)
		}
	}
}

package resolve

import (
	"context"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/tcpwrapd/tcpwrapd/pkg/hostsrules"
)

// BenchmarkLookupAddrCached is a DNS reverse lookup answered from the
// cache (after the hosts file was consulted: three stats and a map).
func BenchmarkLookupAddrCached(b *testing.B) {
	ts := startServer(b, zone...)
	r, _, _ := newResolver(b, Config{}, ts.Addr)
	a := netip.MustParseAddr("198.51.100.10")
	if n, err := r.LookupAddr(context.Background(), a); err != nil || n != "good.example.com" {
		b.Fatal(n, err)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			r.LookupAddr(context.Background(), a)
		}
	})
	if s := r.Stats(); s.Misses != 1 {
		b.Fatalf("stats %+v", s)
	}
}

// BenchmarkCheckCachedName is a whole check by the real engine whose rule
// needs the client's verified name (PTR and A both cached).
func BenchmarkCheckCachedName(b *testing.B) {
	ts := startServer(b, zone...)
	r, _, _ := newResolver(b, Config{}, ts.Addr)
	p := compile("imap: .example.com\n")
	env := &hostsrules.Env{Resolver: r}
	req := clientReq("198.51.100.10")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if d := p.Check(ctx, req, env); d.Verdict != hostsrules.Granted {
		b.Fatal(d)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			p.Check(ctx, req, env)
		}
	})
}

func BenchmarkInNetgroup(b *testing.B) {
	path := filepath.Join(b.TempDir(), "netgroup")
	writeFile(b, path, "trusted (a.example,,) (b.example,,) (good.example.com,,)\n")
	ng := NetgroupFile(path)
	b.ReportAllocs()
	for b.Loop() {
		if !ng.InNetgroup("trusted", "GOOD.example.com") {
			b.Fatal("not a member")
		}
	}
}

package hostsrules

import (
	"context"
	"fmt"
	"net/netip"
	"runtime"
	"strings"
	"testing"
)

// blocklist writes n address lines in DenyHosts ("sshd: a.b.c.d") or
// fail2ban ("ALL: a.b.c.d") format, addresses from 198.18.0.0/15 (the
// benchmarking range), none of them the benchmark's client.
func blocklist(format string, n int) []byte {
	var b strings.Builder
	b.WriteString("# generated blocklist\n")
	for i := 0; i < n; i++ {
		a := 198<<24 | 18<<16 | uint32(i+1)
		ip := fmt.Sprintf("%d.%d.%d.%d", a>>24, a>>16&0xff, a>>8&0xff, a&0xff)
		if format == "denyhosts" {
			fmt.Fprintf(&b, "sshd: %s\n", ip)
		} else {
			fmt.Fprintf(&b, "ALL: %s\n", ip)
		}
	}
	return []byte(b.String())
}

var benchSizes = []int{10, 10_000, 100_000, 1_000_000}

// BenchmarkCheck measures an address-only check of a client that is not
// listed in hosts.deny (the whole table is consulted) at several sizes.
func BenchmarkCheck(b *testing.B) {
	for _, format := range []string{"denyhosts", "fail2ban"} {
		for _, n := range benchSizes {
			b.Run(fmt.Sprintf("%s/%d", format, n), func(b *testing.B) {
				p := Compile(Source{Name: "hosts.allow", State: FileMissing},
					Source{Name: "hosts.deny", Data: blocklist(format, n)})
				req := Request{Daemon: "sshd"}
				req.Client.Addr = netip.MustParseAddrPort("127.0.0.1:40000")
				req.Server.Addr = netip.MustParseAddrPort("127.0.0.1:22")
				env := &Env{}
				ctx := context.Background()
				b.ReportAllocs()
				b.ResetTimer()
				for b.Loop() {
					if d := p.Check(ctx, &req, env); d.Verdict != Granted {
						b.Fatal("not granted")
					}
				}
			})
		}
	}
}

// BenchmarkCompile measures parsing and indexing a hosts.deny of n lines.
func BenchmarkCompile(b *testing.B) {
	for _, n := range []int{10_000, 100_000} {
		data := blocklist("fail2ban", n)
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				Compile(Source{Name: "hosts.allow", State: FileMissing}, Source{Name: "hosts.deny", Data: data})
			}
		})
	}
}

// BenchmarkPolicyMemory reports the heap a compiled policy keeps per
// address rule for a 1,000,000-line fail2ban hosts.deny.
func BenchmarkPolicyMemory(b *testing.B) {
	const n = 1_000_000
	data := blocklist("fail2ban", n)
	for b.Loop() {
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		p := Compile(Source{Name: "hosts.allow", State: FileMissing}, Source{Name: "hosts.deny", Data: data})
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/n, "bytes/rule")
		runtime.KeepAlive(p)
	}
}

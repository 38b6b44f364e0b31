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

// shapeLines writes n lines of one shape seen in big hosts.deny files:
// "all" (fail2ban's "ALL: a.b.c.d"), "denyhosts" ("sshd: a.b.c.d"),
// "cidr" ("ALL: a.b.c.0/24"), "v6" ("ALL: [2001:db8::x]") and "v6net"
// ("ALL: [2001:db8:x::]/64").
func shapeLines(shape string, n int) []byte {
	var b strings.Builder
	b.WriteString("# generated\n")
	for i := 0; i < n; i++ {
		a := 11<<24 | uint32(i)
		switch shape {
		case "all":
			fmt.Fprintf(&b, "ALL: %d.%d.%d.%d\n", a>>24, a>>16&0xff, a>>8&0xff, a&0xff)
		case "denyhosts":
			fmt.Fprintf(&b, "sshd: %d.%d.%d.%d\n", a>>24, a>>16&0xff, a>>8&0xff, a&0xff)
		case "cidr":
			fmt.Fprintf(&b, "ALL: %d.%d.%d.0/24\n", a>>16&0xff, a>>8&0xff, a&0xff)
		case "v6":
			fmt.Fprintf(&b, "ALL: [2001:db8::%x:%x]\n", i>>16, i&0xffff)
		case "v6net":
			fmt.Fprintf(&b, "ALL: [2001:db8:%x:%x::]/64\n", i>>16, i&0xffff)
		}
	}
	return []byte(b.String())
}

// BenchmarkPolicyMemory reports the heap a compiled policy keeps per rule
// for a 1,000,000-line hosts.deny of each shape, and how long Compile
// takes.
func BenchmarkPolicyMemory(b *testing.B) {
	const n = 1_000_000
	for _, shape := range []string{"all", "denyhosts", "cidr", "v6", "v6net"} {
		b.Run(shape, func(b *testing.B) {
			data := shapeLines(shape, n)
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
		})
	}
}

// BenchmarkCheckOneLine measures the check of a client listed nowhere
// against a 1-line hosts.deny ("ALL: 127.0.0.2"): the rule is evaluated
// (its daemon list matches), not skipped by the address index.
func BenchmarkCheckOneLine(b *testing.B) {
	p := Compile(Source{Name: "hosts.allow", State: FileMissing},
		Source{Name: "hosts.deny", Data: []byte("ALL: 127.0.0.2\n")})
	req := Request{Daemon: "smtpd", User: Unknown}
	req.Client.Addr = netip.MustParseAddrPort("127.0.0.1:40000")
	req.Client.Name = Unknown
	env := &Env{}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if d := p.Check(ctx, &req, env); d.Verdict != Granted {
			b.Fatal("not granted")
		}
	}
}

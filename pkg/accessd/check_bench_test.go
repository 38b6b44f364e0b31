package accessd

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/tcpwrapd/tcpwrapd/pkg/hostsrules"
)

// BenchmarkCheckNoClient measures one policy front end's check of a client
// listed nowhere against a 1-line hosts.deny, with the Env, Stats and
// logger of a live tcpwrapd (DefaultEnv, NewStats, Info level), next to
// the bare hostsrules.Policy.Check of the same rules: the difference is
// the Checker's own cost per check.
func BenchmarkCheckNoClient(b *testing.B) {
	dir := b.TempDir()
	allow, deny := filepath.Join(dir, "hosts.allow"), filepath.Join(dir, "hosts.deny")
	os.WriteFile(allow, nil, 0o644)
	os.WriteFile(deny, []byte("ALL: 127.0.0.2\n"), 0o644)
	c := &Checker{Rules: NewRules(allow, deny, nil), Stats: NewStats()}
	fe := c.FrontEnd(FrontEndPostfix)
	req := &hostsrules.Request{Daemon: "smtpd", User: hostsrules.Unknown,
		Client: hostsrules.Endpoint{Addr: netip.MustParseAddrPort("127.0.0.1:40000"), Name: hostsrules.Unknown}}
	ctx := context.Background()
	b.Run("checker", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if d := fe.CheckNoClient(ctx, req); d.Verdict != hostsrules.Granted || d.Err != nil {
				b.Fatalf("decision %+v", d)
			}
		}
	})
	// As the policy front ends call it: with their shorter deadline.
	b.Run("checker-deadline", func(b *testing.B) {
		dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		b.ReportAllocs()
		for b.Loop() {
			if d := fe.CheckNoClient(dctx, req); d.Verdict != hostsrules.Granted || d.Err != nil {
				b.Fatalf("decision %+v", d)
			}
		}
	})
	b.Run("policy", func(b *testing.B) {
		env := DefaultEnv()
		b.ReportAllocs()
		for b.Loop() {
			if d := c.Rules.Policy().Check(ctx, req, env); d.Verdict != hostsrules.Granted || d.Err != nil {
				b.Fatalf("decision %+v", d)
			}
		}
	})
}

package resolve_test

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"github.com/tcpwrapd/tcpwrapd/pkg/hostsrules"
	"github.com/tcpwrapd/tcpwrapd/pkg/resolve"
)

func Example() {
	dir, _ := os.MkdirTemp("", "resolve-example")
	defer os.RemoveAll(dir)
	os.WriteFile(filepath.Join(dir, "hosts"), []byte("198.51.100.10 mail.example.com\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "nsswitch.conf"), []byte("hosts: files\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "netgroup"), []byte("relays (mail.example.com,,)\n"), 0o644)

	r := resolve.New(resolve.Config{
		HostsFile:    filepath.Join(dir, "hosts"),
		NsswitchFile: filepath.Join(dir, "nsswitch.conf"),
	})
	defer r.Close()
	env := &hostsrules.Env{Resolver: r, Netgroups: resolve.NetgroupFile(filepath.Join(dir, "netgroup"))}
	policy := hostsrules.Compile(
		hostsrules.Source{Name: "hosts.allow", Data: []byte("smtp: @relays\nimap: .example.com\n")},
		hostsrules.Source{Name: "hosts.deny", Data: []byte("ALL: ALL\n")},
	)
	for _, q := range []struct{ daemon, client string }{
		{"imap", "198.51.100.10"},
		{"smtp", "198.51.100.10"},
		{"imap", "198.51.100.11"},
	} {
		// Each check bounds its lookups with its own deadline.
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		req := &hostsrules.Request{
			Daemon: q.daemon,
			Client: hostsrules.Endpoint{Addr: netip.AddrPortFrom(netip.MustParseAddr(q.client), 40000)},
		}
		d := policy.Check(ctx, req, env)
		cancel()
		fmt.Println(q.daemon, q.client, d.Verdict, d.File, d.Line)
	}
	s := r.Stats()
	fmt.Println("answered from the hosts file:", s.Files, "DNS queries:", s.Queries)
	// Output:
	// imap 198.51.100.10 granted hosts.allow 2
	// smtp 198.51.100.10 granted hosts.allow 1
	// imap 198.51.100.11 denied hosts.deny 1
	// answered from the hosts file: 4 DNS queries: 0
}

package hostsrules

import (
	"context"
	"net/netip"
	"testing"

	"github.com/tcpwrapd/tcpwrapd/pkg/hostsrules/internal/libwrapaddr"
)

// TestScopedIPv6Patterns: a "[addr%scope]" pattern is an address only
// where glibc's getaddrinfo accepts the scope (an existing interface for
// link-local and node/link-local multicast addresses, else a 32-bit
// decimal number); otherwise it never matches. The scope itself is not
// compared. Expected answers recorded from Debian 12's tcpdmatch (libwrap
// 7.6.q) on a host with interfaces lo and eth0; true = the hosts.deny rule
// matched (denied).
func TestScopedIPv6Patterns(t *testing.T) {
	saved := libwrapaddr.InterfaceExists
	libwrapaddr.InterfaceExists = func(name string) bool { return name == "lo" || name == "eth0" }
	t.Cleanup(func() { libwrapaddr.InterfaceExists = saved })
	tests := []struct {
		pattern, client string
		match           bool
	}{
		{"[fe80::1%e]", "fe80::1", false},
		{"[fe80::1%nosuch]", "fe80::1", false},
		{"[fe80::1%eth0]", "fe80::1", true},
		{"[fe80::1%lo]", "fe80::1", true},
		{"[fe80::1%LO]", "fe80::1", false}, // interface names are case-sensitive
		{"[fe80::1%1]", "fe80::1", true},
		{"[fe80::1%99]", "fe80::1", true}, // a number is not checked
		{"[fe80::1%0]", "fe80::1", true},
		{"[fe80::1%4294967296]", "fe80::1", false},
		{"[fe80::1%1x]", "fe80::1", false},
		{"[fe80::1%]", "fe80::1", false},
		{"[::1%lo]", "::1", false}, // not link-local: names are not tried
		{"[::1%1]", "::1", true},
		{"[::1%0x1]", "::1", false},
		{"[2001:db8::1%lo]", "2001:db8::1", false},
		{"[2001:db8::1%1]", "2001:db8::1", true},
		{"[ff02::1%lo]", "ff02::1", true},
		{"[ff05::1%lo]", "ff05::1", false},
		{"[fe80::1%e]/64", "fe80::1", false},
		{"[fe80::%zz]/64", "fe80::1", false},
		{"[fe80::%lo]/64", "fe80::1", true},
		{"[::1%x]/128", "::1", false},
	}
	for _, tt := range tests {
		p := Compile(Source{Name: "hosts.allow"}, Source{Name: "hosts.deny", Data: []byte("imap: " + tt.pattern + "\n")})
		req := Request{Daemon: "imap", Client: Endpoint{Addr: netip.AddrPortFrom(netip.MustParseAddr(tt.client), 1)}}
		got := p.Check(context.Background(), &req, nil).Verdict == Denied
		if got != tt.match {
			t.Errorf("hosts.deny imap: %s, client %s: matched %v, want %v (tcpdmatch)", tt.pattern, tt.client, got, tt.match)
		}
	}
}

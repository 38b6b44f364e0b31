package resolve

import (
	"context"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/tcpwrapd/tcpwrapd/pkg/hostsrules"
)

// fakeClock is the Resolver's injectable clock.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// env holds the files of one test resolver.
type env struct {
	dir                        string
	hosts, nsswitch, resolvcnf string
}

func writeFile(t testing.TB, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

// newResolver returns a Resolver asking servers (host:port) with a fake
// clock, files in a temporary directory (hosts: "127.0.0.1 localhost" and
// fromfile.example.com = 198.51.100.77; nsswitch "files dns"; resolv.conf
// with timeout 1 s, 1 attempt), closed when the test ends.
func newResolver(t testing.TB, cfg Config, servers ...string) (*Resolver, *fakeClock, env) {
	t.Helper()
	dir := t.TempDir()
	e := env{dir: dir, hosts: filepath.Join(dir, "hosts"), nsswitch: filepath.Join(dir, "nsswitch.conf"), resolvcnf: filepath.Join(dir, "resolv.conf")}
	writeFile(t, e.hosts, "127.0.0.1\tlocalhost\n198.51.100.77\tfromfile.example.com fromfile\n")
	writeFile(t, e.nsswitch, "hosts: files dns\n")
	writeFile(t, e.resolvcnf, "nameserver 192.0.2.53\nsearch example.com\noptions timeout:1 attempts:1\n")
	cfg.HostsFile, cfg.NsswitchFile, cfg.ResolvConf = e.hosts, e.nsswitch, e.resolvcnf
	cfg.Servers = servers
	r := New(cfg)
	clk := &fakeClock{t: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)}
	r.now = clk.Now
	t.Cleanup(func() { r.Close() })
	return r, clk, e
}

func compile(allow string) *hostsrules.Policy {
	return hostsrules.Compile(
		hostsrules.Source{Name: "hosts.allow", Data: []byte(allow)},
		hostsrules.Source{Name: "hosts.deny", Data: []byte("ALL: ALL\n")},
	)
}

func clientReq(addr string) *hostsrules.Request {
	return &hostsrules.Request{
		Daemon: "imap",
		Client: hostsrules.Endpoint{Addr: netip.AddrPortFrom(netip.MustParseAddr(addr), 40000)},
	}
}

// checkName runs the real engine on one check of client against allow
// (hosts.deny is "ALL: ALL") under timeout, and returns the verdict and
// the client name as %n expands it.
func checkName(r hostsrules.Resolver, allow, client string, timeout time.Duration) (hostsrules.Verdict, string) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	d, out := compile(allow).CheckExpand(ctx, clientReq(client), &hostsrules.Env{Resolver: r}, "%n")
	return d.Verdict, out[0]
}

func netListenUDP() (net.PacketConn, error) { return net.ListenPacket("udp", "127.0.0.1:0") }

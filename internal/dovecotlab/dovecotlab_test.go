package dovecotlab

import (
	"context"
	"crypto/sha256"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// etcHostsUnchanged fails the test if /etc/hosts.allow or /etc/hosts.deny
// differ at the end of the test from their state at the start.
func etcHostsUnchanged(t *testing.T) {
	t.Helper()
	sum := func() map[string][32]byte {
		m := map[string][32]byte{}
		for _, p := range []string{EtcHostsAllow, EtcHostsDeny} {
			b, err := os.ReadFile(p)
			if err != nil {
				b = []byte("missing: " + err.Error())
			}
			m[p] = sha256.Sum256(b)
		}
		return m
	}
	before := sum()
	t.Cleanup(func() {
		if diff := cmp.Diff(before, sum()); diff != "" {
			t.Errorf("/etc/hosts.allow or /etc/hosts.deny changed during the test (-before +after):\n%s", diff)
		}
	})
}

type probeCase struct {
	proto, src string
	want       Verdict
}

// probeAll runs every probe and compares the verdicts.
func probeAll(t *testing.T, d *Dovecot, cases []probeCase) {
	t.Helper()
	got := map[string]Verdict{}
	want := map[string]Verdict{}
	for _, c := range cases {
		key := c.proto + " from " + c.src
		want[key] = c.want
		res, err := Probe(context.Background(), c.proto, c.src, d.Addr(c.proto))
		if err != nil {
			t.Errorf("%s: %v", key, err)
			continue
		}
		got[key] = res.Verdict
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("verdicts (-want +got):\n%s\nlog:\n%s", diff, d.Log())
	}
}

func waitLog(t *testing.T, d *Dovecot, mark int64, substr string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := d.WaitLog(ctx, mark, substr); err != nil {
		t.Error(err)
	}
}

func TestConfigRender(t *testing.T) {
	text, err := Config{OwnTcpwrap: true, Protocols: []string{"pop3"}}.render("/l", "/l/run", "/l/state", "/l/log", "inst", map[string]int{"pop3": 2110})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"base_dir = /l/run\n", "instance_name = inst\n", "protocols = pop3\n",
		"login_access_sockets = tcpwrap\n", "port = 2110\n", "unix_listener login/tcpwrap {",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("config lacks %q:\n%s", want, text)
		}
	}
	if _, err := (Config{Protocols: []string{"smtp"}}).render("/l", "/l/run", "/l/state", "/l/log", "i", nil); err == nil {
		t.Error("render accepted protocol smtp")
	}
}

// TestOwnTcpwrap runs Dovecot's own tcpwrap with lab rules in a private
// mount namespace, and checks that an in-place rule edit takes effect.
func TestOwnTcpwrap(t *testing.T) {
	SkipIfUnavailable(t)
	etcHostsUnchanged(t)
	d := Start(t, Config{OwnTcpwrap: true, HostsDeny: "ALL: 127.0.0.2\n"})
	mark := d.LogMark()
	probeAll(t, d, []probeCase{
		{"imap", "127.0.0.1", Allowed},
		{"imap", "127.0.0.2", Refused},
		{"pop3", "127.0.0.1", Allowed},
		{"pop3", "127.0.0.2", Refused},
	})
	waitLog(t, d, mark, RefusedLine("imap", "tcpwrap", "127.0.0.2"))
	waitLog(t, d, mark, RefusedLine("pop3", "tcpwrap", "127.0.0.2"))

	if err := d.SetHosts("", "ALL: 127.0.0.1\n"); err != nil {
		t.Fatal(err)
	}
	probeAll(t, d, []probeCase{
		{"imap", "127.0.0.1", Refused},
		{"imap", "127.0.0.2", Allowed},
	})
}

// TestNoAccessCheck checks the probe and the lab without any access socket.
func TestNoAccessCheck(t *testing.T) {
	SkipIfUnavailable(t)
	d := Start(t, Config{NoAccessCheck: true})
	probeAll(t, d, []probeCase{
		{"imap", "127.0.0.2", Allowed},
		{"pop3", "127.0.0.2", Allowed},
	})
}

// denyIP is an AccessFunc that refuses one address and records requests.
type recorder struct {
	mu   sync.Mutex
	reqs []AccessRequest
	deny netip.Addr
}

func (r *recorder) decide(req AccessRequest) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.reqs = append(r.reqs, req)
	return req.Peer.Addr() != r.deny
}

func (r *recorder) names() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, q := range r.reqs {
		out = append(out, q.Name+" "+q.Peer.Addr().String())
	}
	return out
}

// TestExternalSocketBeforeStart puts a live external socket in
// base_dir/login/tcpwrapd/ before the master starts (the systemd
// ordering: socket unit first), and restarts Dovecot under it.
func TestExternalSocketBeforeStart(t *testing.T) {
	SkipIfUnavailable(t)
	d := New(t, Config{})
	dir, err := d.ExternalSocketDir("tcpwrapd")
	if err != nil {
		t.Fatal(err)
	}
	ln, err := ListenAccess(t, filepath.Join(dir, "access"), SocketPerm{})
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{deny: netip.MustParseAddr("127.0.0.2")}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go ServeAccess(ctx, ln, rec.decide)

	if err := d.Launch(); err != nil {
		t.Fatal(err)
	}
	checkLoginDir(t, d)
	mark := d.LogMark()
	cases := []probeCase{
		{"imap", "127.0.0.1", Allowed},
		{"imap", "127.0.0.2", Refused},
		{"pop3", "127.0.0.2", Refused},
	}
	probeAll(t, d, cases)
	waitLog(t, d, mark, RefusedLine("imap", DefaultAccessSocket, "127.0.0.2"))
	waitLog(t, d, mark, RefusedLine("pop3", DefaultAccessSocket, "127.0.0.2"))
	if diff := cmp.Diff([]string{"imap 127.0.0.1", "imap 127.0.0.2", "pop3 127.0.0.2"}, rec.names()); diff != "" {
		t.Errorf("requests seen by the access service (-want +got):\n%s", diff)
	}

	// A Dovecot restart must neither refuse to start nor delete the socket.
	if err := d.Restart(); err != nil {
		t.Fatal(err)
	}
	probeAll(t, d, cases)
}

// TestExternalSocketAfterStart creates the socket directory after the
// master has created base_dir/login.
func TestExternalSocketAfterStart(t *testing.T) {
	SkipIfUnavailable(t)
	d := Start(t, Config{})
	checkLoginDir(t, d)
	dir, err := d.ExternalSocketDir("tcpwrapd")
	if err != nil {
		t.Fatal(err)
	}
	ln, err := ListenAccess(t, filepath.Join(dir, "access"), SocketPerm{})
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{deny: netip.MustParseAddr("127.0.0.1")}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go ServeAccess(ctx, ln, rec.decide)
	probeAll(t, d, []probeCase{
		{"imap", "127.0.0.1", Refused},
		{"pop3", "127.0.0.2", Allowed},
	})
	rec.mu.Lock()
	defer rec.mu.Unlock()
	for _, r := range rec.reqs {
		if want := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(d.Port(r.Name))); r.Local != want {
			t.Errorf("%s request: passed fd local address %v, want %v", r.Name, r.Local, want)
		}
	}
}

// checkLoginDir checks base_dir/login is root:dovenull 0750, as the
// master makes it.
func checkLoginDir(t *testing.T, d *Dovecot) {
	t.Helper()
	st, err := os.Stat(d.LoginDir())
	if err != nil {
		t.Fatal(err)
	}
	_, gid, err := LookupIDs(LoginUser)
	if err != nil {
		t.Fatal(err)
	}
	sys := st.Sys().(*syscall.Stat_t)
	got := [3]uint32{uint32(st.Mode().Perm()), sys.Uid, sys.Gid}
	if want := [3]uint32{0o750, 0, uint32(gid)}; got != want {
		t.Errorf("%s: mode/uid/gid %o/%d/%d, want %o/%d/%d", d.LoginDir(), got[0], got[1], got[2], want[0], want[1], want[2])
	}
}

// TestStopLeavesNothing checks that Stop ends the master and all its
// children.
func TestStopLeavesNothing(t *testing.T) {
	SkipIfUnavailable(t)
	d := Start(t, Config{OwnTcpwrap: true})
	// A connection makes the master fork a login and a tcpwrap.
	if _, err := Probe(context.Background(), "imap", "127.0.0.1", d.Addr("imap")); err != nil {
		t.Fatal(err)
	}
	family := descendants(d.PID())
	if len(family) == 0 {
		t.Fatal("master has no children")
	}
	start := time.Now()
	if err := d.Stop(); err != nil {
		t.Errorf("stop: %v", err)
	}
	t.Logf("stop took %v; children were %v", time.Since(start), family)
	if alive := aliveOnly(append(family, groupMembers(d.PID())...)); len(alive) > 0 {
		t.Errorf("still alive after Stop: %v", alive)
	}
}

func TestConfigRenderTcpwrapExecutable(t *testing.T) {
	cfg := Config{
		TcpwrapExecutable: "/x/tcpwrapd --dovecot --allow-file /l/a",
		TcpwrapSettings:   []string{"client_limit = 4", "vsz_limit = 1G"},
		Protocols:         []string{"imap"},
	}
	text, err := cfg.render("/l", "/l/run", "/l/state", "/l/log", "inst", map[string]int{"imap": 2143})
	if err != nil {
		t.Fatal(err)
	}
	want := "service tcpwrap {\n  executable = /x/tcpwrapd --dovecot --allow-file /l/a\n  client_limit = 4\n  vsz_limit = 1G\n  unix_listener login/tcpwrap {"
	for _, w := range []string{"login_access_sockets = tcpwrap\n", want} {
		if !strings.Contains(text, w) {
			t.Errorf("config lacks %q:\n%s", w, text)
		}
	}
	if cfg.PrivateHosts {
		t.Error("TcpwrapExecutable must not imply PrivateHosts")
	}
}

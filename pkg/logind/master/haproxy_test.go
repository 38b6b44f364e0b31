package master

import (
	"bufio"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/pires/go-proxyproto"

	"github.com/tcpwrapd/tcpwrapd/internal/peertest"
	"github.com/tcpwrapd/tcpwrapd/internal/proxytest"
	dovecotconf "github.com/tcpwrapd/tcpwrapd/pkg/dovecot/conf"
	"github.com/tcpwrapd/tcpwrapd/pkg/logind/config"
	"github.com/tcpwrapd/tcpwrapd/pkg/logind/control"
	"github.com/tcpwrapd/tcpwrapd/pkg/logind/imap"
	"github.com/tcpwrapd/tcpwrapd/pkg/logind/ipc"
	"github.com/tcpwrapd/tcpwrapd/pkg/logind/master/worker"
)

// haproxyLab starts an imap-login lab whose service, besides the plain
// listener, has a haproxy = yes listener; the proxy may connect from
// 127.0.0.1, 127.0.0.2 and 127.0.1.0/24, and haproxy_timeout is 300ms.
// It returns the lab and the haproxy listener's port.
func haproxyLab(t *testing.T, global, conf string) (*lab, int) {
	t.Helper()
	hport := freePort(t)
	l := startLab(t, "imap-login", "haproxy_trusted_networks = 127.0.0.1, 127.0.0.2 127.0.1.0/24\nhaproxy_timeout = 300ms\n"+global,
		fmt.Sprintf("inet_listener imap-proxy {\n port = %d\n haproxy = yes\n}\n%s", hport, conf))
	waitPrefork(l, conf)
	return l, hport
}

// waitPrefork waits, in high-performance mode (conf with
// process_min_avail = 1), until the preforked process accepts by itself,
// so that the clients of the test go to it. (Otherwise the supervisor
// may accept a client on one listener and spawn a process for it, and
// that spawn's os.File.Fd on every listening socket races, for -race,
// with another listener's accept loop closing its os.File at shutdown:
// a supervisor race that any two high-performance listeners show, not
// one of haproxy's.)
func waitPrefork(l *lab, conf string) {
	if strings.Contains(conf, "process_min_avail = 1") {
		l.waitFor("one preforked process", func(s control.ServiceStatus) bool { return readyProcs(s) == 1 })
	}
}

// haproxyModes are the two modes every haproxy test runs in.
var haproxyModes = []struct{ name, conf string }{
	{"service_count=1", "service_count = 1"},
	{"service_count=0", "service_count = 0\nprocess_min_avail = 1"},
}

// drain reads until the server closes the connection; it returns the
// number of bytes that came and how long it took. A reset counts as a
// close (the server closes with the client's bytes unread).
func (c *tclient) drain() (int64, time.Duration) {
	c.t.Helper()
	start := time.Now()
	c.c.SetReadDeadline(start.Add(5 * time.Second))
	n, err := io.Copy(io.Discard, c.r)
	if err != nil && !errors.Is(err, syscall.ECONNRESET) {
		c.t.Fatalf("connection not closed by the server: %v (%d bytes)", err, n)
	}
	return n, time.Since(start)
}

// TestHAProxyForwarded: a trusted proxy's v1 and v2 headers replace the
// client's addresses (as the login process sees them: XADDR), LOCAL and
// UNKNOWN keep the real ones, a v2 SSL TLV is recorded, the greeting
// waits for the header, and what the client pipelined right after the
// header is served; the plain listener is unaffected. Both modes.
func TestHAProxyForwarded(t *testing.T) {
	for _, mode := range haproxyModes {
		t.Run(mode.name, func(t *testing.T) {
			l, hport := haproxyLab(t, "", mode.conf)
			t.Run("plain listener", func(t *testing.T) {
				c := l.dial("127.0.0.1")
				if g := c.line(); !strings.HasPrefix(g, "* OK [CAPABILITY") {
					t.Fatalf("greeting %q", g)
				}
				if got, want := c.cmd("x XADDR"), fmt.Sprintf("* XADDR %s 127.0.0.1:%d tls=no", c.c.LocalAddr(), l.port); got != want {
					t.Errorf("got %q, want %q", got, want)
				}
			})
			real := func(c *tclient) string { return fmt.Sprintf("%s 127.0.0.1:%d tls=no", c.c.LocalAddr(), hport) }
			for _, tc := range []struct {
				name   string
				header []byte
				want   func(*tclient) string // XADDR's addresses and tls
			}{
				{"v1 TCP4", []byte(proxytest.V1TCP4), func(*tclient) string { return "198.51.100.9:40001 203.0.113.1:143 tls=no" }},
				{"v1 TCP6", []byte("PROXY TCP6 2001:db8::9 2001:db8::1 40002 143\r\n"), func(*tclient) string { return "[2001:db8::9]:40002 [2001:db8::1]:143 tls=no" }},
				{"v1 UNKNOWN", []byte("PROXY UNKNOWN\r\n"), real},
				{"v2 TCP4", proxytest.V2TCP4(t), func(*tclient) string { return "198.51.100.4:40004 203.0.113.1:143 tls=no" }},
				{"v2 TCP6 SSL TLV", proxytest.V2TCP6SSL(t), func(*tclient) string { return "[2001:db8::5]:40005 [2001:db8::1]:993 tls=yes" }},
				{"v2 LOCAL", proxytest.V2Local(t), real},
			} {
				t.Run(tc.name, func(t *testing.T) {
					c := dialPort(t, hport, "127.0.0.1")
					c.c.Write(tc.header)
					if g := c.line(); !strings.HasPrefix(g, "* OK [CAPABILITY") {
						t.Fatalf("greeting %q", g)
					}
					if got, want := c.cmd("x XADDR"), "* XADDR "+tc.want(c); got != want {
						t.Errorf("got  %q\nwant %q", got, want)
					}
				})
			}
			t.Run("greeting waits for the header, pipelined bytes are kept", func(t *testing.T) {
				c := dialPort(t, hport, "127.0.0.1")
				c.c.SetReadDeadline(time.Now().Add(150 * time.Millisecond))
				if n, err := c.c.Read(make([]byte, 1)); n != 0 || !errors.Is(err, os.ErrDeadlineExceeded) {
					t.Fatalf("before the header: read %d bytes, %v", n, err)
				}
				c.c.Write([]byte(proxytest.V1TCP4 + "a CAPABILITY\r\nb XADDR\r\n"))
				got := []string{c.line(), c.line(), c.line(), c.line(), c.line()}
				want := []string{
					"* OK [CAPABILITY " + imap.Capabilities + " LOGINDISABLED] loginsvc ready.",
					"* CAPABILITY " + imap.Capabilities + " LOGINDISABLED",
					"a OK Pre-login capabilities listed, post-login capabilities have more.",
					"* XADDR 198.51.100.9:40001 203.0.113.1:143 tls=no",
					"b OK",
				}
				if d := cmp.Diff(want, got); d != "" {
					t.Errorf("(-want +got)\n%s", d)
				}
			})
		})
	}
}

// TestHAProxyRefused: an untrusted proxy, a missing, garbage, invalid or
// truncated header, or none at all: the connection is closed without a
// byte written, within haproxy_timeout, with Dovecot's log line naming
// the proxy's address. Both modes.
func TestHAProxyRefused(t *testing.T) {
	tcp4 := proxytest.V2TCP4(t)
	udp := proxytest.V2(t, proxyproto.PROXY, proxyproto.UDPv4, &net.UDPAddr{IP: net.IPv4(198, 51, 100, 1), Port: 1}, &net.UDPAddr{IP: net.IPv4(203, 0, 113, 1), Port: 2})
	tests := []struct {
		name    string
		send    []byte
		halfEnd bool   // close the sending side after send
		log     string // the line, without " (rip=...)"
		timeout bool   // closed only at haproxy_timeout
	}{
		{"no header", []byte("a CAPABILITY\r\n"), false, "haproxy: Client disconnected: Failed to read valid HAproxy data: no PROXY protocol signature", false},
		{"garbage", []byte("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"), false, "haproxy: Client disconnected: Failed to read valid HAproxy data: no PROXY protocol signature", false},
		{"v1 bad port", []byte("PROXY TCP4 198.51.100.1 203.0.113.1 080 143\r\na NOOP\r\n"), false, "haproxy: Client disconnected: Failed to read valid HAproxy data: invalid port number", false},
		{"v1 too long", []byte("PROXY " + strings.Repeat("x", 120)), false, "haproxy: Client disconnected: Failed to read valid HAproxy data: v1 header too long (more than 107 bytes)", false},
		{"v2 UDP", udp, false, "haproxy: Client disconnected: Failed to read valid HAproxy data: not TCP (family/protocol 0x12)", false},
		{"v2 truncated", tcp4[:20], false, "haproxy: Client timed out", true},
		{"v2 truncated, then closed", tcp4[:20], true, "haproxy: Client disconnected: Failed to read valid HAproxy data: connection closed after 20 bytes of the header", false},
		{"silence", nil, false, "haproxy: Client timed out", true},
		{"closed at once", nil, true, "haproxy: Client disconnected", false},
	}
	for _, mode := range haproxyModes {
		t.Run(mode.name, func(t *testing.T) {
			l, hport := haproxyLab(t, "", mode.conf)
			t.Run("untrusted proxy", func(t *testing.T) {
				c := dialPort(t, hport, "127.0.0.9")
				c.c.Write([]byte(proxytest.V1TCP4))
				if n, _ := c.drain(); n != 0 {
					t.Errorf("untrusted proxy read %d bytes", n)
				}
				if !l.hasLog("haproxy: Client not trusted (rip=127.0.0.9)") {
					t.Errorf("no warning in the log:\n%s", l.logs.String())
				}
			})
			for i, tc := range tests {
				t.Run(tc.name, func(t *testing.T) {
					src := "127.0.1." + strconv.Itoa(i+1) // a log line of its own
					c := dialPort(t, hport, src)
					start := time.Now()
					if tc.send != nil {
						c.c.Write(tc.send)
					}
					if tc.halfEnd {
						c.c.(*net.TCPConn).CloseWrite()
					}
					n, _ := c.drain()
					if n != 0 {
						t.Errorf("read %d bytes, want none", n)
					}
					if d := time.Since(start); tc.timeout && (d < 290*time.Millisecond || d > 3*time.Second) {
						t.Errorf("closed after %v, want haproxy_timeout (300ms)", d)
					}
					if want := tc.log + " (rip=" + src + ")"; !l.hasLog(want) {
						t.Errorf("no %q in the log:\n%s", want, l.logs.String())
					}
				})
			}
		})
	}
}

// TestHAProxyAccessCheckSeesTheProxy: login_access_sockets (tcpwrapd:
// imap allowed from 127.0.0.1 only) are asked with the socket, so they
// judge the proxy's address, not the forwarded one; the log line of a
// refusal names the forwarded client (Dovecot does both the same way).
func TestHAProxyAccessCheckSeesTheProxy(t *testing.T) {
	base := startTcpwrapd(t)
	for _, mode := range haproxyModes {
		t.Run(mode.name, func(t *testing.T) {
			l, hport := haproxyLab(t, "base_dir = "+base+"\nlogin_access_sockets = tcpwrapd/access", mode.conf)
			ok := dialPort(t, hport, "127.0.0.1")
			ok.c.Write([]byte("PROXY TCP4 198.51.100.7 203.0.113.1 40007 143\r\n"))
			if g := ok.line(); !strings.HasPrefix(g, "* OK") {
				t.Fatalf("client behind the allowed proxy: %q", g)
			}
			if got := ok.cmd("x XADDR"); got != "* XADDR 198.51.100.7:40007 203.0.113.1:143 tls=no" {
				t.Errorf("XADDR %q", got)
			}
			no := dialPort(t, hport, "127.0.0.2")
			no.c.Write([]byte("PROXY TCP4 198.51.100.8 203.0.113.1 40008 143\r\n"))
			if n, _ := no.drain(); n != 0 {
				t.Errorf("client behind the refused proxy read %d bytes", n)
			}
			if !l.hasLog(`access(tcpwrapd/access): Client refused (rip=198.51.100.8)`) {
				t.Errorf("no refusal line with the forwarded address:\n%s", l.logs.String())
			}
		})
	}
}

// TestHAProxyImplicitTLS: on a listener with ssl = yes and haproxy = yes
// the PROXY header comes first and the TLS handshake right after it.
func TestHAProxyImplicitTLS(t *testing.T) {
	hport := freePort(t)
	mode := "service_count = 0\nprocess_min_avail = 1"
	l, _, pool, _ := tlsLab(t, "imap-login", "haproxy_trusted_networks = 127.0.0.1\nhaproxy_timeout = 300ms",
		fmt.Sprintf("inet_listener imaps-proxy {\n port = %d\n ssl = yes\n haproxy = yes\n}\n%s", hport, mode))
	waitPrefork(l, mode)
	c := dialPort(t, hport, "127.0.0.1")
	c.c.Write([]byte(proxytest.V1TCP4))
	tc := tls.Client(c.c, tlsClientConfig(pool))
	tc.SetDeadline(time.Now().Add(10 * time.Second))
	if err := tc.Handshake(); err != nil {
		t.Fatalf("handshake after the header: %v", err)
	}
	c.c, c.r = tc, bufio.NewReader(tc)
	if g := c.line(); !strings.HasPrefix(g, "* OK [CAPABILITY") {
		t.Fatalf("greeting %q", g)
	}
	if got := c.cmd("x XADDR"); got != "* XADDR 198.51.100.9:40001 203.0.113.1:143 tls=no" {
		t.Errorf("XADDR %q", got)
	}
}

// TestHAProxyConfig: haproxy_trusted_networks and haproxy_timeout, their
// defaults, errors at their lines, -n output, and what the login
// processes of a service with a haproxy = yes listener get.
func TestHAProxyConfig(t *testing.T) {
	c, err := config.Parse("c.conf", nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.HAProxyTimeout != 3*time.Second || c.HAProxyTrustedNetworks != nil {
		t.Errorf("defaults: timeout %v, networks %v", c.HAProxyTimeout, c.HAProxyTrustedNetworks)
	}
	var all strings.Builder
	c.Print(&all, config.PrintAll)
	if !strings.Contains(all.String(), "\nhaproxy_timeout = 3 secs\nhaproxy_trusted_networks = \n") {
		t.Errorf("-a output lacks the defaults:\n%s", all.String())
	}

	conf := "haproxy_trusted_networks = 10.1.2.3/8, 192.0.2.1 ::ffff:198.51.100.1 2001:db8::/32\nhaproxy_timeout = 500ms\n" +
		"protocols = imap\nlisten = 127.0.0.1\nservice imap-login {\n inet_listener imap {\n  port = 143\n }\n inet_listener imap-proxy {\n  port = 10143\n  haproxy = yes\n }\n}\n"
	c, err = config.Parse("c.conf", []byte(conf))
	if err != nil {
		t.Fatal(err)
	}
	wantNets := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("192.0.2.1/32"), netip.MustParsePrefix("198.51.100.1/32"), netip.MustParsePrefix("2001:db8::/32")}
	if d := cmp.Diff(wantNets, c.HAProxyTrustedNetworks, cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); d != "" {
		t.Errorf("networks (-want +got)\n%s", d)
	}
	if c.HAProxyTimeout != 500*time.Millisecond {
		t.Errorf("timeout %v", c.HAProxyTimeout)
	}
	var n strings.Builder
	c.Print(&n, config.PrintNonDefault)
	wantN := "haproxy_timeout = 500ms\nhaproxy_trusted_networks = 10.1.2.3/8, 192.0.2.1 ::ffff:198.51.100.1 2001:db8::/32\nlisten = 127.0.0.1\nprotocols = imap\n" +
		"service imap-login {\n  inet_listener imap-proxy {\n    haproxy = yes\n    port = 10143\n  }\n}\n"
	if d := cmp.Diff(wantN, n.String()); d != "" {
		t.Errorf("-n (-want +got)\n%s", d)
	}
	if c2, err := config.Parse("printed.conf", []byte(n.String())); err != nil || c2.HAProxyTimeout != c.HAProxyTimeout || len(c2.HAProxyTrustedNetworks) != 4 {
		t.Errorf("-n output does not parse back the same: %v", err)
	}

	// What a login process gets, through the JSON of the init message.
	for _, svc := range []struct {
		name        string
		wantListen  []string
		wantTrusted int
	}{{"imap-login", []string{"127.0.0.1:10143"}, 4}, {"pop3-login", nil, 0}} {
		in, err := (&worker.ExecRunner{NoSandbox: true}).Settings(worker.Spec{Config: c, Service: c.Service(svc.name)})
		if err != nil {
			t.Fatal(err)
		}
		msg, _ := ipc.EncodeSettings(in)
		var got ipc.Settings
		if err := json.Unmarshal(msg[1:], &got); err != nil {
			t.Fatal(err)
		}
		if !cmp.Equal(svc.wantListen, got.HAProxyListen) || len(got.HAProxyTrusted) != svc.wantTrusted ||
			(svc.wantTrusted > 0 && (got.HAProxyTrusted[3] != wantNets[3] || got.HAProxyTimeout != 500*time.Millisecond)) {
			t.Errorf("%s: init HAProxyListen %v, HAProxyTrusted %v, HAProxyTimeout %v", svc.name, got.HAProxyListen, got.HAProxyTrusted, got.HAProxyTimeout)
		}
	}

	for _, tc := range []struct{ name, conf string }{
		{"errors at their lines", "\nhaproxy_trusted_networks = 10.0.0.0/33 bogus\nhaproxy_timeout = soon\nservice imap-login {\n inet_listener imap {\n  haproxy = maybe\n }\n}\n"},
		{"zero timeout", "haproxy_timeout = 0\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := config.Parse("c.conf", []byte(tc.conf))
			var got []string
			var el dovecotconf.ErrorList
			if errors.As(err, &el) {
				for _, e := range el {
					got = append(got, e.Error())
				}
			}
			want := map[string][]string{
				"errors at their lines": {
					`c.conf:2: haproxy_trusted_networks: invalid network "10.0.0.0/33"`,
					`c.conf:2: haproxy_trusted_networks: invalid network "bogus"`,
					`c.conf:3: haproxy_timeout: invalid time "soon"`,
					`c.conf:6: service imap-login: inet_listener imap: haproxy: invalid boolean "maybe" (use yes or no)`,
				},
				"zero timeout": {`c.conf:1: haproxy_timeout: invalid time "0"`},
			}[tc.name]
			if d := cmp.Diff(want, got); d != "" {
				t.Errorf("(-want +got)\n%s", d)
			}
		})
	}
}

// startHAProxy runs a real haproxy (Debian's package), in the
// foreground, in front of 127.0.0.1:backend: the returned ports speak
// send-proxy (v1) and send-proxy-v2 to it. It skips the test when the
// haproxy binary is missing; haproxy is stopped at the end of the test.
func startHAProxy(t *testing.T, backend int) (v1Port, v2Port int) {
	t.Helper()
	bin, err := exec.LookPath("haproxy")
	peertest.Require(t, "real-HAProxy (apt-get install haproxy)", err)
	v1Port, v2Port = freePort(t), freePort(t)
	cfg := filepath.Join(t.TempDir(), "haproxy.cfg")
	text := fmt.Sprintf(`global
    maxconn 100
defaults
    mode tcp
    timeout connect 5s
    timeout client 30s
    timeout server 30s
listen v1
    bind 127.0.0.1:%d
    server s 127.0.0.1:%d send-proxy
listen v2
    bind 127.0.0.1:%d
    server s 127.0.0.1:%d send-proxy-v2
`, v1Port, backend, v2Port, backend)
	if err := os.WriteFile(cfg, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-db", "-f", cfg)
	out := &syncBuf{}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	startStopped(t, cmd, 5*time.Second, "haproxy output", out)
	return v1Port, v2Port
}

// dialRetry connects to 127.0.0.1:port from src until the listener is
// up (at most 5 s).
func dialRetry(t *testing.T, port int, src string) *tclient {
	t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	for deadline := time.Now().Add(5 * time.Second); ; {
		c, err := d.Dial("tcp", "127.0.0.1:"+strconv.Itoa(port))
		if err == nil {
			t.Cleanup(func() { c.Close() })
			return &tclient{t: t, c: c, r: bufio.NewReader(c)}
		}
		if time.Now().After(deadline) {
			t.Fatalf("haproxy is not listening on %d: %v", port, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestHAProxyWithRealHAProxy puts a real haproxy (send-proxy and
// send-proxy-v2) in front of loginsvc: the login process sees the
// client's address and the port it connected to on haproxy. Both modes.
func TestHAProxyWithRealHAProxy(t *testing.T) {
	for _, mode := range haproxyModes {
		t.Run(mode.name, func(t *testing.T) {
			_, hport := haproxyLab(t, "", mode.conf)
			v1Port, v2Port := startHAProxy(t, hport)
			for _, tc := range []struct {
				name string
				port int
				src  string
			}{{"send-proxy", v1Port, "127.0.0.5"}, {"send-proxy-v2", v2Port, "127.0.0.6"}} {
				t.Run(tc.name, func(t *testing.T) {
					c := dialRetry(t, tc.port, tc.src)
					if g := c.line(); !strings.HasPrefix(g, "* OK [CAPABILITY") {
						t.Fatalf("greeting through haproxy: %q", g)
					}
					want := fmt.Sprintf("* XADDR %s 127.0.0.1:%d tls=no", c.c.LocalAddr(), tc.port)
					if got := c.cmd("x XADDR"); got != want {
						t.Errorf("got  %q\nwant %q", got, want)
					}
					if got := c.line(); got != "x OK" {
						t.Errorf("XADDR: %q", got)
					}
					if got := c.cmd("y LOGOUT"); got != "* BYE Logging out" {
						t.Errorf("LOGOUT: %q", got)
					}
				})
			}
		})
	}
}

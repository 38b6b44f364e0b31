package logind

import (
	"bufio"
	"bytes"
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
	"github.com/pires/go-proxyproto/tlvparse"

	dovecotconf "github.com/tcpwrapd/tcpwrapd/pkg/dovecot/conf"
	"github.com/tcpwrapd/tcpwrapd/pkg/logind/config"
)

// chunkSource is a headerSource over data that arrives chunk bytes at a
// time: peek delivers the next chunk only when everything that arrived
// has been consumed (as a real peek waits only then). After the last
// chunk, a peek that would wait gets io.EOF (eof: the peer closed) or
// os.ErrDeadlineExceeded (the read deadline passed). misuse records what
// a real socket would not allow: a Read of bytes that have not arrived
// (it would block past the deadline), a call after a peek failed, or a
// peek loop that makes no progress.
type chunkSource struct {
	data   []byte
	chunk  int
	eof    bool
	avail  int // bytes arrived
	off    int // bytes consumed
	peeks  int
	failed error
	misuse string
}

func (s *chunkSource) peek(p []byte) (int, error) {
	s.peeks++
	switch {
	case s.failed != nil:
		s.misuse = "peek after " + s.failed.Error()
		return 0, s.failed
	case s.peeks > len(s.data)+2:
		s.misuse = fmt.Sprintf("%d peeks for %d bytes", s.peeks, len(s.data))
		return 0, errors.New("spinning")
	case len(p) == 0:
		s.misuse = "peek with an empty buffer"
	}
	if s.off == s.avail {
		if s.avail == len(s.data) {
			s.failed = os.ErrDeadlineExceeded
			if s.eof {
				s.failed = io.EOF
			}
			return 0, s.failed
		}
		s.avail = min(len(s.data), s.avail+s.chunk)
	}
	return copy(p, s.data[s.off:s.avail]), nil
}

func (s *chunkSource) Read(p []byte) (int, error) {
	if s.off == s.avail {
		s.misuse = "Read of bytes that have not arrived"
		return 0, os.ErrDeadlineExceeded
	}
	n := copy(p, s.data[s.off:s.avail])
	s.off += n
	return n, nil
}

// v2 builds a v2 header with the library.
func v2(t testing.TB, cmd proxyproto.ProtocolVersionAndCommand, tp proxyproto.AddressFamilyAndProtocol, src, dst net.Addr, tlvs ...proxyproto.TLV) []byte {
	t.Helper()
	h := &proxyproto.Header{Version: 2, Command: cmd, TransportProtocol: tp, SourceAddr: src, DestinationAddr: dst}
	if err := h.SetTLVs(tlvs); err != nil {
		t.Fatal(err)
	}
	b, err := h.Format()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func tcp(s string) *net.TCPAddr {
	ap := netip.MustParseAddrPort(s)
	return net.TCPAddrFromAddrPort(ap)
}

// sslTLV is a PP2_TYPE_SSL TLV; client is its client bit field.
func sslTLV(t testing.TB, client uint8) proxyproto.TLV {
	t.Helper()
	tlv, err := tlvparse.PP2SSL{Client: client, TLV: []proxyproto.TLV{{Type: proxyproto.PP2_SUBTYPE_SSL_VERSION, Value: []byte("TLSv1.3")}}}.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return tlv
}

// headers used by several tests
func v2TCP4(t testing.TB) []byte {
	return v2(t, proxyproto.PROXY, proxyproto.TCPv4, tcp("198.51.100.4:40004"), tcp("203.0.113.1:143"))
}

func v2TCP6SSL(t testing.TB) []byte {
	return v2(t, proxyproto.PROXY, proxyproto.TCPv6, tcp("[2001:db8::5]:40005"), tcp("[2001:db8::1]:993"), sslTLV(t, tlvparse.PP2_BITFIELD_CLIENT_SSL))
}

func v2Local(t testing.TB) []byte {
	return v2(t, proxyproto.LOCAL, proxyproto.UNSPEC, nil, nil)
}

const v1TCP4 = "PROXY TCP4 198.51.100.9 203.0.113.1 40001 143\r\n"

// summarize renders what readProxyHeader and proxiedFrom make of a header.
func summarize(p proxied) string {
	s := "keep"
	if p.remote != nil {
		s = p.remote.String() + " " + p.local.String()
	}
	return fmt.Sprintf("%s tls=%v", s, p.tls)
}

// TestReadProxyHeader feeds headers in pieces (chunk bytes per arrival)
// followed by the client's first command, and checks what is made of
// them, that exactly the header was consumed, and the error otherwise.
func TestReadProxyHeader(t *testing.T) {
	const next = "a CAPABILITY\r\n"
	tcp4, tcp6SSL, local := v2TCP4(t), v2TCP6SSL(t), v2Local(t)
	truncated := tcp4[:20]
	tests := []struct {
		name  string
		in    string
		chunk int
		eof   bool
		want  string // summarize(), or "error: ..." (the error's text)
	}{
		{"v1 TCP4 in one piece", v1TCP4 + next, 1000, false, "198.51.100.9:40001 203.0.113.1:143 tls=false"},
		{"v1 TCP4 byte by byte", v1TCP4 + next, 1, false, "198.51.100.9:40001 203.0.113.1:143 tls=false"},
		{"v1 TCP6", "PROXY TCP6 2001:db8::9 2001:db8::1 40002 143\r\n" + next, 7, false, "[2001:db8::9]:40002 [2001:db8::1]:143 tls=false"},
		{"v1 UNKNOWN keeps the addresses", "PROXY UNKNOWN\r\n" + next, 1000, false, "keep tls=false"},
		{"v1 UNKNOWN with addresses", "PROXY UNKNOWN ffff:f::f ffff:f::f 65535 65535\r\n" + next, 1000, false, "keep tls=false"},
		{"v2 TCP4 in three pieces", string(tcp4) + next, 10, false, "198.51.100.4:40004 203.0.113.1:143 tls=false"},
		{"v2 TCP6 with SSL TLV", string(tcp6SSL) + next, 1000, false, "[2001:db8::5]:40005 [2001:db8::1]:993 tls=true"},
		{"v2 SSL TLV without the client-SSL bit", string(v2(t, proxyproto.PROXY, proxyproto.TCPv4, tcp("198.51.100.6:1"), tcp("203.0.113.1:143"), sslTLV(t, 0))), 1000, true, "198.51.100.6:1 203.0.113.1:143 tls=false"},
		{"v2 other TLVs", string(v2(t, proxyproto.PROXY, proxyproto.TCPv4, tcp("198.51.100.7:2"), tcp("203.0.113.1:143"),
			proxyproto.TLV{Type: proxyproto.PP2_TYPE_ALPN, Value: []byte("imap")}, proxyproto.TLV{Type: proxyproto.PP2_TYPE_AUTHORITY, Value: []byte("mail.example")}, proxyproto.TLV{Type: proxyproto.PP2_TYPE_NOOP})) + next,
			1000, false, "198.51.100.7:2 203.0.113.1:143 tls=false"},
		{"v2 LOCAL keeps the addresses", string(local) + next, 1000, false, "keep tls=false"},
		{"v2 AF_UNIX keeps the addresses", string(v2(t, proxyproto.PROXY, proxyproto.UnixStream, &net.UnixAddr{Net: "unix", Name: "/a"}, &net.UnixAddr{Net: "unix", Name: "/b"})), 1000, true, "keep tls=false"},
		{"v2 UDP", string(v2(t, proxyproto.PROXY, proxyproto.UDPv4, &net.UDPAddr{IP: net.IPv4(198, 51, 100, 1), Port: 1}, &net.UDPAddr{IP: net.IPv4(203, 0, 113, 1), Port: 2})), 1000, true, "error: invalid PROXY header: not TCP (family/protocol 0x12)"},
		{"v2 bad version", "\r\n\r\n\x00\r\nQUIT\n\x31\x11\x00\x0c" + strings.Repeat("\x01", 12), 1000, true, "error: invalid PROXY header: unsupported proxy protocol version and command"},
		{"v2 bad TLV", string(tcp4[:14]) + "\x00\x0e" + string(tcp4[16:]) + "\x20\x00", 1000, true, "error: invalid PROXY header: invalid TLV: truncated TLV"},
		{"v2 too long", "\r\n\r\n\x00\r\nQUIT\n\x21\x11\x05\xd0", 1000, false, "error: invalid PROXY header: v2 header too long (1504 bytes, at most 1500)"},
		{"v1 too long", "PROXY TCP4 " + strings.Repeat("1", 100) + "\r\n", 1000, false, "error: invalid PROXY header: v1 header too long (more than 107 bytes)"},
		{"v1 bad address", "PROXY TCP4 198.51.100.999 203.0.113.1 1 2\r\n", 1000, false, `error: invalid PROXY header: invalid address: ParseAddr("198.51.100.999"): IPv4 field has value >255`},
		{"v1 bad port", "PROXY TCP4 198.51.100.1 203.0.113.1 080 143\r\n", 1000, false, "error: invalid PROXY header: invalid port number"},
		{"v1 LF without CR", "PROXY UNKNOWN\n", 1000, false, "error: invalid PROXY header: version 1 header is invalid, must end with \\r\\n"},
		{"no header", next, 1000, false, "error: invalid PROXY header: no PROXY protocol signature"},
		{"almost v1", "PROXZ UNKNOWN\r\n", 3, false, "error: invalid PROXY header: no PROXY protocol signature"},
		{"truncated, then the deadline", string(truncated), 1000, false, "error: " + os.ErrDeadlineExceeded.Error()},
		{"truncated, then closed", string(truncated), 6, true, "error: invalid PROXY header: connection closed after 20 bytes of the header"},
		{"nothing, then closed", "", 1000, true, "error: EOF"},
		{"nothing, then the deadline", "", 1000, false, "error: " + os.ErrDeadlineExceeded.Error()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := &chunkSource{data: []byte(tt.in), chunk: tt.chunk, eof: tt.eof}
			h, err := readProxyHeader(src)
			var p proxied
			if err == nil {
				p, err = proxiedFrom(h)
			}
			got := summarize(p)
			if err != nil {
				got = "error: " + err.Error()
			}
			if got != tt.want {
				t.Errorf("got  %s\nwant %s", got, tt.want)
			}
			if src.misuse != "" {
				t.Errorf("misuse of the socket: %s", src.misuse)
			}
			wantRest := ""
			if strings.HasSuffix(tt.in, next) {
				wantRest = next
			}
			if rest := tt.in[src.off:]; err == nil && rest != wantRest {
				t.Errorf("left %q in the socket, want %q (the bytes after the header)", rest, wantRest)
			}
		})
	}
}

// libraryRead is the reference: proxyproto.Read on the whole input at
// once, and how many bytes it consumed.
func libraryRead(data []byte) (*proxyproto.Header, int, error) {
	r := bytes.NewReader(data)
	br := bufio.NewReader(r)
	h, err := proxyproto.Read(br)
	return h, len(data) - r.Len() - br.Buffered(), err
}

// FuzzHAProxyHeader: readProxyHeader never panics, never consumes a byte
// past the header, never waits after the deadline (or reads what would
// block), and agrees with the library reading the whole input at once:
// same header, same size, and every header within the size limits is
// accepted however it is cut into pieces.
//
// Seeds: testdata/fuzz/FuzzHAProxyHeader (input, chunk size, peer closes).
func FuzzHAProxyHeader(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte, chunk byte, eof bool) {
		src := &chunkSource{data: data, chunk: int(chunk)%64 + 1, eof: eof}
		h, err := readProxyHeader(src)
		if src.misuse != "" {
			t.Fatalf("misuse of the socket: %s", src.misuse)
		}
		want, size, wantErr := libraryRead(data)
		if err == nil {
			if wantErr != nil {
				t.Fatalf("accepted a header the library rejects: %v", wantErr)
			}
			if src.off != size {
				t.Fatalf("consumed %d bytes, the header has %d", src.off, size)
			}
			if !h.EqualsTo(want) {
				t.Fatalf("header %+v, library %+v", h, want)
			}
			proxiedFrom(h)
			return
		}
		if wantErr == nil && size <= haproxyMaxV2 && (want.Version == 2 || size <= haproxyMaxV1) {
			t.Fatalf("rejected a header the library reads (%d bytes): %v", size, err)
		}
		var bad *badHeaderError
		switch {
		case errors.As(err, &bad):
		case err == io.EOF && len(data) == 0 && eof:
		case errors.Is(err, os.ErrDeadlineExceeded) && !eof:
		default:
			t.Fatalf("unexpected error %v (eof %v, %d bytes)", err, eof, len(data))
		}
	})
}

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
		l.waitFor("one preforked process", func(s ServiceStatus) bool { return readyProcs(s) == 1 })
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
				{"v1 TCP4", []byte(v1TCP4), func(*tclient) string { return "198.51.100.9:40001 203.0.113.1:143 tls=no" }},
				{"v1 TCP6", []byte("PROXY TCP6 2001:db8::9 2001:db8::1 40002 143\r\n"), func(*tclient) string { return "[2001:db8::9]:40002 [2001:db8::1]:143 tls=no" }},
				{"v1 UNKNOWN", []byte("PROXY UNKNOWN\r\n"), real},
				{"v2 TCP4", v2TCP4(t), func(*tclient) string { return "198.51.100.4:40004 203.0.113.1:143 tls=no" }},
				{"v2 TCP6 SSL TLV", v2TCP6SSL(t), func(*tclient) string { return "[2001:db8::5]:40005 [2001:db8::1]:993 tls=yes" }},
				{"v2 LOCAL", v2Local(t), real},
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
				c.c.Write([]byte(v1TCP4 + "a CAPABILITY\r\nb XADDR\r\n"))
				got := []string{c.line(), c.line(), c.line(), c.line(), c.line()}
				want := []string{
					"* OK [CAPABILITY " + imapCaps + "] loginsvc ready.",
					"* CAPABILITY " + imapCaps,
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
	tcp4 := v2TCP4(t)
	udp := v2(t, proxyproto.PROXY, proxyproto.UDPv4, &net.UDPAddr{IP: net.IPv4(198, 51, 100, 1), Port: 1}, &net.UDPAddr{IP: net.IPv4(203, 0, 113, 1), Port: 2})
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
				c.c.Write([]byte(v1TCP4))
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
	c.c.Write([]byte(v1TCP4))
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
	if !strings.Contains(all.String(), "\nhaproxy_timeout = 3 secs\nhaproxy_trusted_networks = \nlisten = ") {
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
		in, err := (&ExecRunner{NoSandbox: true}).initFor(WorkerSpec{Config: c, Service: c.Service(svc.name)})
		if err != nil {
			t.Fatal(err)
		}
		msg, _ := encodeInit(in)
		var got workerInit
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
	if err != nil {
		t.Skip("haproxy not installed (apt-get install haproxy): skipping the test against a real HAProxy")
	}
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

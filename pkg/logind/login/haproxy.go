package login

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/pires/go-proxyproto"
	"github.com/pires/go-proxyproto/tlvparse"

	"github.com/tcpwrapd/tcpwrapd/pkg/logind/ipc"
)

// HAProxy's PROXY protocol on haproxy = yes listeners, as Dovecot 2.3
// does it (src/lib-master/master-service-haproxy.c; docs/loginsvc.md,
// "HAProxy (PROXY protocol)"): before the access checks and before any byte goes out, the peer
// (the proxy) must be in haproxy_trusted_networks, then a v1 or v2 header
// must arrive within haproxy_timeout. On success the client's remote and
// local addresses are the header's; on any failure the connection is
// closed without a byte written.
//
// Framing is ours, parsing is github.com/pires/go-proxyproto's: the
// library reads from a *bufio.Reader, and a bufio.Reader on the socket
// would take bytes past the header (the client's first command) out of
// the socket. So readProxyHeader peeks (recv MSG_PEEK), works out from
// the signature and the v1 line end or the v2 length field how many of
// the peeked bytes belong to the header, consumes exactly those, and
// hands the complete header, and nothing else, to proxyproto.Read.

// Size limits: a v1 line is at most 107 bytes, CRLF included (the
// protocol's own limit); a v2 header at most 1500 bytes, addresses and
// TLVs included (Dovecot's buffer).
const (
	haproxyMaxV1 = 107
	haproxyMaxV2 = 1500
)

var (
	haproxySigV1 = []byte("PROXY")
	haproxySigV2 = []byte("\r\n\r\n\x00\r\nQUIT\n")
)

// badHeaderError says why what the peer sent is not a valid PROXY
// header (as opposed to a timeout, or the peer leaving).
type badHeaderError struct{ why string }

func (e *badHeaderError) Error() string { return "invalid PROXY header: " + e.why }

func badHeader(format string, args ...any) error {
	return &badHeaderError{fmt.Sprintf(format, args...)}
}

// headerSource is a client socket as readProxyHeader reads it: Read
// consumes bytes; peek waits (at most until the read deadline) until
// there are unread bytes and copies as many as fit into p without
// consuming them, and returns io.EOF when the peer has closed and
// nothing is left.
type headerSource interface {
	io.Reader
	peek(p []byte) (int, error)
}

// proxyHeaderSize returns the size of the PROXY header that b, the first
// bytes of a connection, starts with: n > 0 when the header is complete
// in b (it is b[:n]); 0 when b is only the beginning of a header longer
// than len(b), so that all of b belongs to it; or a *badHeaderError when
// b cannot begin a header within the size limits.
func proxyHeaderSize(b []byte) (int, error) {
	switch {
	case startsLike(b, haproxySigV2):
		if len(b) < 16 {
			return 0, nil
		}
		n := 16 + int(binary.BigEndian.Uint16(b[14:16]))
		if n > haproxyMaxV2 {
			return 0, badHeader("v2 header too long (%d bytes, at most %d)", n, haproxyMaxV2)
		}
		if len(b) < n {
			return 0, nil
		}
		return n, nil
	case startsLike(b, haproxySigV1):
		i := bytes.IndexByte(b, '\n')
		switch {
		case i >= haproxyMaxV1 || (i < 0 && len(b) >= haproxyMaxV1):
			return 0, badHeader("v1 header too long (more than %d bytes)", haproxyMaxV1)
		case i < 0:
			return 0, nil
		}
		return i + 1, nil
	}
	return 0, badHeader("no PROXY protocol signature")
}

// startsLike reports whether b starts with sig, or is a beginning of it.
func startsLike(b, sig []byte) bool {
	if len(b) < len(sig) {
		return bytes.Equal(b, sig[:len(b)])
	}
	return bytes.HasPrefix(b, sig)
}

// readProxyHeader reads one PROXY header from src and parses it. It never
// consumes a byte past the header: what follows (the client's first
// protocol bytes) stays in src for the protocol reader. The header may
// arrive in pieces (Dovecot wants it in one read; waiting for the rest
// costs nothing here); src's read deadline bounds the wait. Errors: a
// *badHeaderError for anything that is not a valid header (including one
// cut short by the peer closing), io.EOF when the peer closed without
// sending a byte, and src's own errors (os.ErrDeadlineExceeded at the
// deadline).
func readProxyHeader(src headerSource) (*proxyproto.Header, error) {
	buf := make([]byte, haproxyMaxV2)
	have := 0 // consumed so far, all of it header
	for {
		n, err := src.peek(buf[have:])
		if err != nil {
			if err == io.EOF && have > 0 {
				err = badHeader("connection closed after %d bytes of the header", have)
			}
			return nil, err
		}
		size, err := proxyHeaderSize(buf[:have+n])
		if err != nil {
			return nil, err
		}
		take := n
		if size > 0 {
			take = size - have
		}
		if _, err := io.ReadFull(src, buf[have:have+take]); err != nil {
			return nil, err
		}
		have += take
		if size > 0 {
			return parseProxyHeader(buf[:size])
		}
	}
}

// parseProxyHeader parses hdr, exactly one complete header as
// proxyHeaderSize delimits it, with proxyproto.Read.
func parseProxyHeader(hdr []byte) (*proxyproto.Header, error) {
	br := bufio.NewReaderSize(bytes.NewReader(hdr), len(hdr))
	h, err := proxyproto.Read(br)
	if err != nil {
		return nil, &badHeaderError{strings.TrimPrefix(err.Error(), "proxyproto: ")}
	}
	if br.Buffered() != 0 {
		return nil, badHeader("%d bytes after the header", br.Buffered())
	}
	return h, nil
}

// proxied is what a valid header says about the client.
type proxied struct {
	// remote and local replace the socket's addresses; nil: keep them
	// (v2 LOCAL, v1 UNKNOWN, and AF_UNIX addresses, which Dovecot
	// ignores too).
	remote, local *net.TCPAddr
	// tls: the proxy terminated TLS for the client (v2 SSL TLV with the
	// client-SSL bit).
	tls bool
}

// proxiedFrom interprets a parsed header as Dovecot does: TCP over IPv4
// or IPv6 replaces the addresses, a datagram protocol is an error, and a
// v2 TLV vector must be well formed.
func proxiedFrom(h *proxyproto.Header) (proxied, error) {
	var p proxied
	switch t := h.TransportProtocol; {
	case h.Command.IsLocal():
	case t == proxyproto.TCPv4 || t == proxyproto.TCPv6:
		src, dst, ok := h.TCPAddrs()
		if !ok {
			return p, badHeader("no addresses")
		}
		p.remote, p.local = src, dst
	case t == proxyproto.UnixStream:
	default:
		return p, badHeader("not TCP (family/protocol %#02x)", byte(t))
	}
	if h.Version == 2 {
		tlvs, err := h.TLVs()
		if err != nil {
			return p, badHeader("invalid TLV: %s", strings.TrimPrefix(err.Error(), "proxyproto: "))
		}
		if ssl, ok := tlvparse.FindSSL(tlvs); ok {
			p.tls = ssl.ClientSSL()
		}
	}
	return p, nil
}

// proxyHeader is the first step for a client of a haproxy = yes
// listener: the peer must be in haproxy_trusted_networks, then the PROXY
// header is read, within haproxy_timeout from accept (and the pre-login
// deadline), and the client's addresses become the header's. Nothing is
// written to the client. On failure (a kill included) it logs Dovecot's line (with the
// proxy's address as rip) and returns why the client is closed; ok
// reports success.
func (cl *Client) proxyHeader(deadline time.Time) (reason ipc.CloseReason, ok bool) {
	peer := remoteIP(cl.c)
	if !inNetworks(cl.lp.in.HAProxyTrusted, remoteAddr(cl.c)) {
		logLine("WARN", "haproxy: Client not trusted (rip=%s)", peer)
		return ipc.CloseRefused, false
	}
	if d := cl.accepted.Add(cl.lp.in.HAProxyTimeout); d.Before(deadline) {
		deadline = d
	}
	cl.c.SetReadDeadline(deadline)
	if r, k := cl.killedReason(); k { // a kill before SetReadDeadline must not be lost
		return cl.proxyKilled(r, peer)
	}
	h, err := readProxyHeader(cl.c)
	var p proxied
	if err == nil {
		p, err = proxiedFrom(h)
	}
	if err != nil {
		if r, k := cl.killedReason(); k {
			return cl.proxyKilled(r, peer)
		}
		var bad *badHeaderError
		switch {
		case errors.As(err, &bad):
			logLine("ERROR", "haproxy: Client disconnected: Failed to read valid HAproxy data: %s (rip=%s)", bad.why, peer)
			return ipc.CloseError, false
		case errors.Is(err, os.ErrDeadlineExceeded):
			logLine("ERROR", "haproxy: Client timed out (rip=%s)", peer)
			return ipc.CloseTimeout, false
		case err == io.EOF:
			logLine("INFO", "haproxy: Client disconnected (rip=%s)", peer)
			return ipc.CloseNormal, false
		}
		logLine("INFO", "haproxy: Client disconnected (rip=%s): %v", peer, err)
		return ipc.CloseError, false
	}
	if p.remote != nil {
		// The proxy's connection stays the auth request's real_* (auth.go).
		cl.realRemote, cl.realLocal = addrPortOf(cl.c.RemoteAddr()), addrPortOf(cl.c.LocalAddr())
		cl.c.setAddrs(p.remote, p.local)
	}
	cl.haproxyTLS = p.tls
	return ipc.CloseNormal, true
}

// inNetworks reports whether ip (unmapped) is in one of nets.
func inNetworks(nets []netip.Prefix, ip netip.Addr) bool {
	ip = ip.Unmap()
	for _, n := range nets {
		if n.Contains(ip) {
			return true
		}
	}
	return false
}

// proxyKilled logs a client killed (shut down) while its PROXY header
// was awaited and returns r.
func (cl *Client) proxyKilled(r ipc.CloseReason, peer string) (ipc.CloseReason, bool) {
	logLine("INFO", "haproxy: Client disconnected (rip=%s): %s", peer, closeWhy(r))
	return r, false
}

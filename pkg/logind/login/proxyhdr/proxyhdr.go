// Package proxyhdr reads HAProxy's PROXY protocol header off a client
// socket as a loginsvc login process does on haproxy = yes listeners
// (pkg/logind/login/haproxy.go; docs/loginsvc.md, "HAProxy (PROXY
// protocol)"): exactly the header's bytes, v1 of at most 107 and v2 of
// at most 1500 bytes, interpreted as Dovecot 2.3 does.
package proxyhdr

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"strings"

	"github.com/pires/go-proxyproto"
	"github.com/pires/go-proxyproto/tlvparse"
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
// the socket. So Read peeks (recv MSG_PEEK), works out from
// the signature and the v1 line end or the v2 length field how many of
// the peeked bytes belong to the header, consumes exactly those, and
// hands the complete header, and nothing else, to proxyproto.Read.

// Size limits: a v1 line is at most 107 bytes, CRLF included (the
// protocol's own limit); a v2 header at most 1500 bytes, addresses and
// TLVs included (Dovecot's buffer).
const (
	MaxV1 = 107
	MaxV2 = 1500
)

var (
	sigV1 = []byte("PROXY")
	sigV2 = []byte("\r\n\r\n\x00\r\nQUIT\n")
)

// BadHeaderError says why what the peer sent is not a valid PROXY
// header (as opposed to a timeout, or the peer leaving).
type BadHeaderError struct {
	// Why is the reason, as Dovecot logs it.
	Why string
}

// Error is "invalid PROXY header: " and Why.
func (e *BadHeaderError) Error() string { return "invalid PROXY header: " + e.Why }

func badHeader(format string, args ...any) error {
	return &BadHeaderError{fmt.Sprintf(format, args...)}
}

// Source is a client socket as Read reads it: Read
// consumes bytes; Peek waits (at most until the read deadline) until
// there are unread bytes and copies as many as fit into p without
// consuming them, and returns io.EOF when the peer has closed and
// nothing is left.
type Source interface {
	io.Reader
	// Peek copies unread bytes into p without consuming them (MSG_PEEK).
	Peek(p []byte) (int, error)
}

// headerSize returns the size of the PROXY header that b, the first
// bytes of a connection, starts with: n > 0 when the header is complete
// in b (it is b[:n]); 0 when b is only the beginning of a header longer
// than len(b), so that all of b belongs to it; or a *BadHeaderError when
// b cannot begin a header within the size limits.
func headerSize(b []byte) (int, error) {
	switch {
	case startsLike(b, sigV2):
		if len(b) < 16 {
			return 0, nil
		}
		n := 16 + int(binary.BigEndian.Uint16(b[14:16]))
		if n > MaxV2 {
			return 0, badHeader("v2 header too long (%d bytes, at most %d)", n, MaxV2)
		}
		if len(b) < n {
			return 0, nil
		}
		return n, nil
	case startsLike(b, sigV1):
		i := bytes.IndexByte(b, '\n')
		switch {
		case i >= MaxV1 || (i < 0 && len(b) >= MaxV1):
			return 0, badHeader("v1 header too long (more than %d bytes)", MaxV1)
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

// Read reads one PROXY header from src and parses it. It never
// consumes a byte past the header: what follows (the client's first
// protocol bytes) stays in src for the protocol reader. The header may
// arrive in pieces (Dovecot wants it in one read; waiting for the rest
// costs nothing here); src's read deadline bounds the wait. Errors: a
// *BadHeaderError for anything that is not a valid header (including one
// cut short by the peer closing), io.EOF when the peer closed without
// sending a byte, and src's own errors (os.ErrDeadlineExceeded at the
// deadline).
func Read(src Source) (*proxyproto.Header, error) {
	buf := make([]byte, MaxV2)
	have := 0 // consumed so far, all of it header
	for {
		n, err := src.Peek(buf[have:])
		if err != nil {
			if err == io.EOF && have > 0 {
				err = badHeader("connection closed after %d bytes of the header", have)
			}
			return nil, err
		}
		size, err := headerSize(buf[:have+n])
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
			return parse(buf[:size])
		}
	}
}

// parse parses hdr, exactly one complete header as
// headerSize delimits it, with proxyproto.Read.
func parse(hdr []byte) (*proxyproto.Header, error) {
	br := bufio.NewReaderSize(bytes.NewReader(hdr), len(hdr))
	h, err := proxyproto.Read(br)
	if err != nil {
		return nil, &BadHeaderError{strings.TrimPrefix(err.Error(), "proxyproto: ")}
	}
	if br.Buffered() != 0 {
		return nil, badHeader("%d bytes after the header", br.Buffered())
	}
	return h, nil
}

// Proxied is what a valid header says about the client.
type Proxied struct {
	// remote and local replace the socket's addresses; nil: keep them
	// (v2 LOCAL, v1 UNKNOWN, and AF_UNIX addresses, which Dovecot
	// ignores too).
	Remote, Local *net.TCPAddr
	// tls: the proxy terminated TLS for the client (v2 SSL TLV with the
	// client-SSL bit).
	TLS bool
}

// Interpret interprets a parsed header as Dovecot does: TCP over IPv4
// or IPv6 replaces the addresses, a datagram protocol is an error, and a
// v2 TLV vector must be well formed.
func Interpret(h *proxyproto.Header) (Proxied, error) {
	var p Proxied
	switch t := h.TransportProtocol; {
	case h.Command.IsLocal():
	case t == proxyproto.TCPv4 || t == proxyproto.TCPv6:
		src, dst, ok := h.TCPAddrs()
		if !ok {
			return p, badHeader("no addresses")
		}
		p.Remote, p.Local = src, dst
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
			p.TLS = ssl.ClientSSL()
		}
	}
	return p, nil
}

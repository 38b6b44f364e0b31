package proxyhdr

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"testing"

	"github.com/pires/go-proxyproto"

	"github.com/tcpwrapd/tcpwrapd/internal/proxytest"
)

// chunkSource is a Source over data that arrives chunk bytes at a
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

func (s *chunkSource) Peek(p []byte) (int, error) {
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

// summarize renders what Read and Interpret make of a header.
func summarize(p Proxied) string {
	s := "keep"
	if p.Remote != nil {
		s = p.Remote.String() + " " + p.Local.String()
	}
	return fmt.Sprintf("%s tls=%v", s, p.TLS)
}

// TestReadProxyHeader feeds headers in pieces (chunk bytes per arrival)
// followed by the client's first command, and checks what is made of
// them, that exactly the header was consumed, and the error otherwise.
func TestReadProxyHeader(t *testing.T) {
	const next = "a CAPABILITY\r\n"
	tcp4, tcp6SSL, local := proxytest.V2TCP4(t), proxytest.V2TCP6SSL(t), proxytest.V2Local(t)
	truncated := tcp4[:20]
	tests := []struct {
		name  string
		in    string
		chunk int
		eof   bool
		want  string // summarize(), or "error: ..." (the error's text)
	}{
		{"v1 TCP4 in one piece", proxytest.V1TCP4 + next, 1000, false, "198.51.100.9:40001 203.0.113.1:143 tls=false"},
		{"v1 TCP4 byte by byte", proxytest.V1TCP4 + next, 1, false, "198.51.100.9:40001 203.0.113.1:143 tls=false"},
		{"v1 TCP6", "PROXY TCP6 2001:db8::9 2001:db8::1 40002 143\r\n" + next, 7, false, "[2001:db8::9]:40002 [2001:db8::1]:143 tls=false"},
		{"v1 UNKNOWN keeps the addresses", "PROXY UNKNOWN\r\n" + next, 1000, false, "keep tls=false"},
		{"v1 UNKNOWN with addresses", "PROXY UNKNOWN ffff:f::f ffff:f::f 65535 65535\r\n" + next, 1000, false, "keep tls=false"},
		{"v2 TCP4 in three pieces", string(tcp4) + next, 10, false, "198.51.100.4:40004 203.0.113.1:143 tls=false"},
		{"v2 TCP6 with SSL TLV", string(tcp6SSL) + next, 1000, false, "[2001:db8::5]:40005 [2001:db8::1]:993 tls=true"},
		{"v2 SSL TLV without the client-SSL bit", string(proxytest.V2(t, proxyproto.PROXY, proxyproto.TCPv4, proxytest.TCP("198.51.100.6:1"), proxytest.TCP("203.0.113.1:143"), proxytest.SSLTLV(t, 0))), 1000, true, "198.51.100.6:1 203.0.113.1:143 tls=false"},
		{"v2 other TLVs", string(proxytest.V2(t, proxyproto.PROXY, proxyproto.TCPv4, proxytest.TCP("198.51.100.7:2"), proxytest.TCP("203.0.113.1:143"),
			proxyproto.TLV{Type: proxyproto.PP2_TYPE_ALPN, Value: []byte("imap")}, proxyproto.TLV{Type: proxyproto.PP2_TYPE_AUTHORITY, Value: []byte("mail.example")}, proxyproto.TLV{Type: proxyproto.PP2_TYPE_NOOP})) + next,
			1000, false, "198.51.100.7:2 203.0.113.1:143 tls=false"},
		{"v2 LOCAL keeps the addresses", string(local) + next, 1000, false, "keep tls=false"},
		{"v2 AF_UNIX keeps the addresses", string(proxytest.V2(t, proxyproto.PROXY, proxyproto.UnixStream, &net.UnixAddr{Net: "unix", Name: "/a"}, &net.UnixAddr{Net: "unix", Name: "/b"})), 1000, true, "keep tls=false"},
		{"v2 UDP", string(proxytest.V2(t, proxyproto.PROXY, proxyproto.UDPv4, &net.UDPAddr{IP: net.IPv4(198, 51, 100, 1), Port: 1}, &net.UDPAddr{IP: net.IPv4(203, 0, 113, 1), Port: 2})), 1000, true, "error: invalid PROXY header: not TCP (family/protocol 0x12)"},
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
			h, err := Read(src)
			var p Proxied
			if err == nil {
				p, err = Interpret(h)
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

// FuzzHAProxyHeader: Read never panics, never consumes a byte
// past the header, never waits after the deadline (or reads what would
// block), and agrees with the library reading the whole input at once:
// same header, same size, and every header within the size limits is
// accepted however it is cut into pieces.
//
// Seeds: testdata/fuzz/FuzzHAProxyHeader (input, chunk size, peer closes).
func FuzzHAProxyHeader(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte, chunk byte, eof bool) {
		src := &chunkSource{data: data, chunk: int(chunk)%64 + 1, eof: eof}
		h, err := Read(src)
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
			Interpret(h)
			return
		}
		if wantErr == nil && size <= MaxV2 && (want.Version == 2 || size <= MaxV1) {
			t.Fatalf("rejected a header the library reads (%d bytes): %v", size, err)
		}
		var bad *BadHeaderError
		switch {
		case errors.As(err, &bad):
		case err == io.EOF && len(data) == 0 && eof:
		case errors.Is(err, os.ErrDeadlineExceeded) && !eof:
		default:
			t.Fatalf("unexpected error %v (eof %v, %d bytes)", err, eof, len(data))
		}
	})
}

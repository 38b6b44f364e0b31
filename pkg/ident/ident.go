// Package ident asks a client's identd who owns a TCP connection, as
// RFC 1413 (formerly RFC 931) describes and as libwrap's rfc931.c does it.
//
// The client is the remote end of a connection accepted by a server. Lookup
// connects from the server's local address (any port) to the client's
// address, port 113, sends "<client-port>,<server-port>\r\n" and reads one
// line. Only a reply of the form
//
//	<client-port> , <server-port> : USERID : <os> : <user>
//
// is accepted, exactly as libwrap's sscanf pattern
// "%u , %u : USERID :%*[^:]:%255s" accepts it: blanks around the port
// numbers, the commas and the first two colons are optional; the ports must
// equal the connection's; the operating system field (between the third and
// fourth colons) must not be empty; the user is the first blank-delimited
// word after the fourth colon (at most 255 bytes, then cut to 127 as libwrap
// stores it); and the line must end in LF before the identd closes the
// connection. ERROR replies, wrong ports, missing fields, a missing LF,
// refused connections and timeouts are all errors, after which libwrap's
// user name is "unknown".
//
// Differences from libwrap: the timeout is a per-call argument, not a
// process-global alarm, so one check's rfc931 option never changes the
// timeout of another; and the lookup is cancelled with its context.
package ident

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strconv"
	"time"
)

// Port is the identd port (RFC 1413).
const Port = 113

// DefaultTimeout is libwrap's RFC931_TIMEOUT: 10 seconds.
const DefaultTimeout = 10 * time.Second

// maxUser is libwrap's STRING_LENGTH (128) minus the terminating NUL.
const maxUser = 127

// maxLine is one less than libwrap's 512-byte fgets buffer.
const maxLine = 511

// port is the identd port Lookup dials; tests point it elsewhere.
var port = Port

// ErrBadReply is wrapped by the errors Lookup returns for a reply that
// libwrap would not accept (ERROR replies, wrong ports, an empty OS field,
// no user, no final LF).
var ErrBadReply = errors.New("bad ident reply")

// Lookup asks the identd on client's host which user owns the TCP
// connection from client to server (the server being our own end of an
// accepted connection) and returns the user name, at most 127 bytes, raw
// (callers that pass it to a shell must sanitise it, as hosts_access(5)
// %u does).
//
// timeout bounds the connect, the request and the reply together, as
// libwrap's alarm does; zero or negative means DefaultTimeout. ctx may
// cancel earlier. IPv4-mapped IPv6 addresses are used as IPv4; client and
// server must then be of the same family. The local port is chosen by the
// system.
//
// Errors: a connect, write or read failure (a timeout wraps both
// context.DeadlineExceeded and, once connected, os.ErrDeadlineExceeded; a
// cancellation wraps context.Canceled), or one wrapping ErrBadReply. Lookup is safe for concurrent use.
func Lookup(ctx context.Context, client, server netip.AddrPort, timeout time.Duration) (string, error) {
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	ca, sa := client.Addr().Unmap(), server.Addr().Unmap()
	if !ca.IsValid() || !sa.IsValid() || ca.Is4() != sa.Is4() {
		return "", fmt.Errorf("ident: client %v and server %v are not of one address family", client, server)
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	d := net.Dialer{LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(sa, 0))}
	remote := netip.AddrPortFrom(ca, uint16(port))
	c, err := d.DialContext(ctx, "tcp", remote.String())
	if err != nil {
		return "", fmt.Errorf("ident: %w", ctxErr(ctx, err))
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	if _, err := io.WriteString(c, query(client.Port(), server.Port())); err != nil {
		return "", fmt.Errorf("ident: send query to %v: %w", remote, ctxErr(ctx, err))
	}
	line, err := readLine(c)
	if err != nil {
		return "", fmt.Errorf("ident: read reply from %v: %w", remote, ctxErr(ctx, err))
	}
	user, err := ParseReply(line, client.Port(), server.Port())
	if err != nil {
		return "", fmt.Errorf("ident: reply from %v: %w", remote, err)
	}
	return user, nil
}

// ctxErr makes a timeout or cancellation recognisable with errors.Is as
// the context's error as well as the I/O error it caused.
func ctxErr(ctx context.Context, err error) error {
	if cerr := ctx.Err(); cerr != nil {
		return fmt.Errorf("%w (%w)", cerr, err)
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return fmt.Errorf("%w (%w)", context.DeadlineExceeded, err)
	}
	return err
}

// readLine reads as fgets with a 512-byte buffer: up to and including the
// first LF, or 511 bytes. Reaching end of file before either is an error
// (libwrap's feof test): the reply did not end in LF.
func readLine(c net.Conn) ([]byte, error) {
	buf := make([]byte, 0, maxLine)
	tmp := make([]byte, maxLine)
	for {
		n, err := c.Read(tmp[:maxLine-len(buf)])
		buf = append(buf, tmp[:n]...)
		if i := bytes.IndexByte(buf, '\n'); i >= 0 {
			return buf[:i+1], nil
		}
		if len(buf) >= maxLine {
			return buf, nil
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil, fmt.Errorf("%w: %q does not end in LF", ErrBadReply, buf)
			}
			return nil, err
		}
	}
}

// ParseReply checks one identd reply line (with its LF) against the
// connection's ports as libwrap does (see the package doc) and returns the
// user, cut to 127 bytes. Errors wrap ErrBadReply.
func ParseReply(line []byte, clientPort, serverPort uint16) (string, error) {
	s := line
	if i := bytes.IndexByte(s, 0); i >= 0 { // sscanf stops at a NUL
		s = s[:i]
	}
	p := scanner{s: s}
	rp, ok1 := p.uint()
	ok2 := ok1 && p.lit(",")
	lp, ok3 := p.uint()
	ok := ok2 && ok3 && p.lit(":") && p.lit("USERID") && p.lit(":") && p.notColon() && p.exact(':')
	var user []byte
	if ok {
		user, ok = p.word(255)
	}
	if !ok {
		return "", fmt.Errorf("%w: %q", ErrBadReply, line)
	}
	if rp != uint64(clientPort) || lp != uint64(serverPort) {
		return "", fmt.Errorf("%w: ports %d,%d, want %d,%d", ErrBadReply, rp, lp, clientPort, serverPort)
	}
	if i := bytes.IndexByte(user, '\r'); i >= 0 {
		user = user[:i]
	}
	if len(user) > maxUser {
		user = user[:maxUser]
	}
	return string(user), nil
}

// scanner follows sscanf's conversions over s.
type scanner struct {
	s []byte
	i int
}

func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r'
}

func (p *scanner) skipSpace() {
	for p.i < len(p.s) && isSpace(p.s[p.i]) {
		p.i++
	}
}

// lit matches a format literal preceded by a blank in the format: any
// white space, then the literal text.
func (p *scanner) lit(t string) bool {
	p.skipSpace()
	if !bytes.HasPrefix(p.s[p.i:], []byte(t)) {
		return false
	}
	p.i += len(t)
	return true
}

// exact matches one format character with no blank before it.
func (p *scanner) exact(c byte) bool {
	if p.i < len(p.s) && p.s[p.i] == c {
		p.i++
		return true
	}
	return false
}

// uint is %u: white space, an optional +, decimal digits. (A "-" makes
// strtoul negate and wrap; no port can match such a value, so it is
// refused here.)
func (p *scanner) uint() (uint64, bool) {
	p.skipSpace()
	if p.i < len(p.s) && p.s[p.i] == '+' {
		p.i++
	}
	start := p.i
	var n uint64
	for p.i < len(p.s) && p.s[p.i] >= '0' && p.s[p.i] <= '9' {
		if n < 1<<40 {
			n = n*10 + uint64(p.s[p.i]-'0')
		}
		p.i++
	}
	return n, p.i > start
}

// notColon is %*[^:]: at least one byte other than ':'.
func (p *scanner) notColon() bool {
	start := p.i
	for p.i < len(p.s) && p.s[p.i] != ':' {
		p.i++
	}
	return p.i > start
}

// word is %Ns: white space, then up to max non-blank bytes (at least one).
func (p *scanner) word(max int) ([]byte, bool) {
	p.skipSpace()
	start := p.i
	for p.i < len(p.s) && !isSpace(p.s[p.i]) && p.i-start < max {
		p.i++
	}
	return p.s[start:p.i], p.i > start
}

// query is the request line for the connection's ports.
func query(clientPort, serverPort uint16) string {
	return strconv.Itoa(int(clientPort)) + "," + strconv.Itoa(int(serverPort)) + "\r\n"
}

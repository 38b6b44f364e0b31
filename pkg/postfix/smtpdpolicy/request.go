package smtpdpolicy

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strconv"

	"github.com/tcpwrapd/tcpwrapd/pkg/hostsrules"
	"github.com/tcpwrapd/tcpwrapd/pkg/wrapopts"
)

// RequestType is the value of the "request" attribute of every SMTPD
// access policy request.
const RequestType = "smtpd_access_policy"

// DefaultDaemon is the daemon name of a request without policy_context
// when Server.Daemon is empty.
const DefaultDaemon = "smtpd"

// Request is one decoded policy request: the attributes tcpwrapd reads
// (Postfix sends about 30; the others are ignored). An absent attribute
// is "". Postfix 3.7 sends, in this order, request, protocol_state,
// protocol_name, client_address, client_name, client_port,
// reverse_client_name, server_address, server_port, helo_name, sender,
// recipient, ... and policy_context last.
type Request struct {
	// Request is the "request" attribute: RequestType.
	Request string
	// ProtocolState is the SMTP command being checked ("CONNECT",
	// "EHLO", "MAIL", "RCPT", "DATA", "END-OF-MESSAGE", "VRFY", "ETRN").
	ProtocolState string
	// ClientAddress and ClientPort are the SMTP client's IP address and
	// port; ClientAddress "unknown" (or absent) means Postfix does not
	// know it.
	ClientAddress, ClientPort string
	// ClientName is the client's verified host name: a name whose
	// forward lookup gives back ClientAddress, else "unknown".
	ClientName string
	// ReverseClientName is the client's reverse (PTR) name, verified or
	// not, else "unknown".
	ReverseClientName string
	// ServerAddress and ServerPort are the address and port the client
	// connected to (Postfix 3.2 and later).
	ServerAddress, ServerPort string
	// PolicyContext is the policy_context attribute (Postfix 3.1 and
	// later: smtpd_policy_service_policy_context, or the
	// check_policy_service { ..., policy_context = ... } form).
	PolicyContext string
	// Instance, Sender, Recipient and HeloName identify the transaction
	// in logs.
	Instance, Sender, Recipient, HeloName string
	// SASLUsername is the SMTP AUTH user name, if any.
	SASLUsername string
}

// Limits bound what ReadRequest accepts.
type Limits struct {
	// MaxBytes bounds one request block, lines and newlines included.
	MaxBytes int
	// MaxAttributes bounds the number of attribute lines in a block.
	MaxAttributes int
}

// ErrMalformed is wrapped by every error of ReadRequest about the input
// and of Request.HostsRequest.
var ErrMalformed = errors.New("malformed policy request")

// ErrTooLarge is wrapped by the errors of ReadRequest for a block over
// Limits.MaxBytes or Limits.MaxAttributes.
var ErrTooLarge = errors.New("policy request too large")

// ReadRequest reads one request block from r: lines "name=value" ended
// by "\n" (a "\r" before it is dropped), the block ended by an empty
// line. The name must not be empty; the value is the rest of the line
// and may contain "=". When a name occurs twice the last value counts
// (SMTPD_POLICY_README allows either). The "request" attribute must be
// RequestType. A block over lim, a line without "=", or input ending
// inside a block gives an error wrapping ErrTooLarge, ErrMalformed or
// io.ErrUnexpectedEOF; io.EOF before the first byte of a block is
// returned as is (the client closed the connection between requests).
// Errors from r are returned as they are. Zero fields of lim mean
// DefaultMaxRequestBytes and DefaultMaxAttributes.
func ReadRequest(r *bufio.Reader, lim Limits) (*Request, error) {
	req := new(Request)
	if err := readRequest(r, lim, req); err != nil {
		return nil, err
	}
	return req, nil
}

// readRequest is ReadRequest into req, which it overwrites. The values
// of the attributes kept are copied into one string (one allocation per
// block), the others are skipped without copying. A block that is whole
// in r's buffer (Postfix writes one at once) is parsed there, line by
// line, without a read call per line.
func readRequest(r *bufio.Reader, lim Limits, req *Request) error {
	if lim.MaxBytes <= 0 {
		lim.MaxBytes = DefaultMaxRequestBytes
	}
	if lim.MaxAttributes <= 0 {
		lim.MaxAttributes = DefaultMaxAttributes
	}
	// The kept values, in one buffer (on the stack unless a block's kept
	// values exceed it).
	var buf [1024]byte
	p := blockParser{lim: lim}
	vals, done, err := p.buffered(r, buf[:0])
	for !done && err == nil {
		var line []byte
		if line, err = readLine(r, p.total, lim.MaxBytes); err != nil {
			if err == io.EOF && p.total > 0 {
				err = fmt.Errorf("%w: connection closed inside a request", io.ErrUnexpectedEOF)
			}
			break
		}
		vals, done, err = p.line(vals, line)
	}
	if err != nil {
		return err
	}
	*req = Request{}
	fields := req.fields()
	all := string(vals)
	for i, sp := range p.spans {
		*fields[i] = all[sp.start:sp.end]
	}
	if req.Request != RequestType {
		return fmt.Errorf("%w: request=%q, want %s", ErrMalformed, truncate([]byte(req.Request)), RequestType)
	}
	return nil
}

// blockParser takes the lines of one request block.
type blockParser struct {
	lim      Limits
	total, n int // bytes and attribute lines so far
	// Where each field's value is in the kept values (line's vals).
	spans [len(keptAttrs)]struct{ start, end int }
}

// buffered parses the block if r's buffer holds all of it, consuming it
// (or, after an error, the lines read) and appending the kept values to
// vals; otherwise it consumes nothing and leaves p and vals as they were.
func (p *blockParser) buffered(r *bufio.Reader, vals []byte) ([]byte, bool, error) {
	n := len(vals)
	buf, _ := r.Peek(r.Buffered())
	off := 0
	for {
		i := bytes.IndexByte(buf[off:], '\n')
		if i < 0 { // the block goes on after buf: start again from r
			*p = blockParser{lim: p.lim}
			return vals[:n], false, nil
		}
		var done bool
		var err error
		vals, done, err = p.line(vals, buf[off:off+i+1])
		off += i + 1
		if done || err != nil {
			r.Discard(off)
			return vals, done, err
		}
	}
}

// line takes the next line of the block, with its "\n", appending the
// value of a kept attribute to vals; done is true after the empty line
// that ends the block.
func (p *blockParser) line(vals, line []byte) (_ []byte, done bool, err error) {
	if p.total += len(line); p.total > p.lim.MaxBytes {
		return vals, false, fmt.Errorf("%w: more than %d bytes", ErrTooLarge, p.lim.MaxBytes)
	}
	line = line[:len(line)-1]
	if k := len(line) - 1; k >= 0 && line[k] == '\r' {
		line = line[:k]
	}
	if len(line) == 0 {
		return vals, true, nil
	}
	if p.n++; p.n > p.lim.MaxAttributes {
		return vals, false, fmt.Errorf("%w: more than %d attributes", ErrTooLarge, p.lim.MaxAttributes)
	}
	eq := bytes.IndexByte(line, '=')
	if eq <= 0 {
		return vals, false, fmt.Errorf("%w: attribute %d: want name=value, got %q", ErrMalformed, p.n, truncate(line))
	}
	if i := attrIndex(line[:eq]); i >= 0 {
		p.spans[i].start = len(vals)
		vals = append(vals, line[eq+1:]...)
		p.spans[i].end = len(vals)
	}
	return vals, false, nil
}

// ParseRequest decodes one complete request block (a captured request,
// for replay): ReadRequest on b, which must hold nothing after the
// block's empty line. Errors are those of ReadRequest.
func ParseRequest(b []byte, lim Limits) (*Request, error) {
	r := bufio.NewReader(bytes.NewReader(b))
	req, err := ReadRequest(r, lim)
	if err != nil {
		if err == io.EOF {
			err = fmt.Errorf("%w: empty", ErrMalformed)
		}
		return nil, err
	}
	if r.Buffered() > 0 {
		return nil, fmt.Errorf("%w: data after the request's empty line", ErrMalformed)
	}
	return req, nil
}

// readLine returns the next line with its "\n", when used bytes of the
// block came before it, and the block may have at most max bytes.
func readLine(r *bufio.Reader, used, max int) ([]byte, error) {
	var line []byte
	for {
		frag, err := r.ReadSlice('\n')
		if used+len(line)+len(frag) > max {
			return nil, fmt.Errorf("%w: more than %d bytes", ErrTooLarge, max)
		}
		if err == nil && line == nil {
			return frag, nil // valid until the next read; set copies what it keeps
		}
		line = append(line, frag...)
		switch {
		case err == nil:
			return line, nil
		case err == bufio.ErrBufferFull:
			continue
		case err == io.EOF && len(line) > 0:
			return nil, fmt.Errorf("%w: connection closed inside a request", io.ErrUnexpectedEOF)
		default:
			return nil, err
		}
	}
}

// keptAttrs are the attributes a Request keeps, in the order of fields.
var keptAttrs = [...]string{"request", "protocol_state", "client_address", "client_port", "client_name",
	"reverse_client_name", "server_address", "server_port", "policy_context", "instance", "sender",
	"recipient", "helo_name", "sasl_username"}

// fields returns the fields of req in the order of keptAttrs.
func (req *Request) fields() [len(keptAttrs)]*string {
	return [...]*string{&req.Request, &req.ProtocolState, &req.ClientAddress, &req.ClientPort, &req.ClientName,
		&req.ReverseClientName, &req.ServerAddress, &req.ServerPort, &req.PolicyContext, &req.Instance, &req.Sender,
		&req.Recipient, &req.HeloName, &req.SASLUsername}
}

// attrIndex returns the index in keptAttrs of the attribute name, or -1
// for one the Request does not keep. (The switch on string(name) converts
// without allocating.)
func attrIndex(name []byte) int {
	switch string(name) {
	case "request":
		return 0
	case "protocol_state":
		return 1
	case "client_address":
		return 2
	case "client_port":
		return 3
	case "client_name":
		return 4
	case "reverse_client_name":
		return 5
	case "server_address":
		return 6
	case "server_port":
		return 7
	case "policy_context":
		return 8
	case "instance":
		return 9
	case "sender":
		return 10
	case "recipient":
		return 11
	case "helo_name":
		return 12
	case "sasl_username":
		return 13
	}
	return -1
}

// truncate bounds an input excerpt in an error message.
func truncate(b []byte) string {
	if len(b) > 64 {
		return string(b[:64]) + "..."
	}
	return string(b)
}

// HostsRequest returns the access question the request asks:
//
//   - Daemon is PolicyContext when it is not empty, else daemon, else
//     DefaultDaemon; it must be a plain name (wrapopts.CheckPlainName:
//     it names the banner file);
//   - Client is ClientAddress (an IPv4-mapped address unmapped) with
//     ClientPort; ClientAddress "" or "unknown" is libwrap's unknown
//     address and name;
//   - Client.Name follows libwrap's meaning: ClientName when Postfix
//     verified it; hostsrules.Paranoid when ClientName is "unknown" but
//     ReverseClientName is a name (the reverse name did not map back to
//     the address: libwrap's PARANOID); hostsrules.Unknown when both are
//     "unknown"; "" (the checker's resolver decides) when Postfix sent
//     neither attribute;
//   - Server is ServerAddress with ServerPort, or no address when
//     ServerAddress is "" or "unknown";
//   - User is hostsrules.Unknown: no ident lookup is made, tcpwrapd has
//     no connection to the SMTP client.
//
// A daemon name that is not plain, an address or port that does not
// parse, or a port without its address is an error wrapping
// ErrMalformed. It is safe for concurrent use.
func (req *Request) HostsRequest(daemon string) (*hostsrules.Request, error) {
	h := new(hostsrules.Request)
	if err := req.hostsRequest(daemon, h); err != nil {
		return nil, err
	}
	return h, nil
}

// hostsRequest is HostsRequest into h, which it overwrites.
func (req *Request) hostsRequest(daemon string, h *hostsrules.Request) error {
	switch {
	case req.PolicyContext != "":
		daemon = req.PolicyContext
	case daemon == "":
		daemon = DefaultDaemon
	}
	if err := wrapopts.CheckPlainName(daemon); err != nil {
		return fmt.Errorf("%w: daemon name: %v", ErrMalformed, err)
	}
	client, err := endpoint("client_address", req.ClientAddress, "client_port", req.ClientPort)
	if err != nil {
		return err
	}
	switch {
	case !client.Addr.IsValid():
		client = hostsrules.Endpoint{AddrText: hostsrules.Unknown, Name: hostsrules.Unknown}
	case req.ClientName != "" && req.ClientName != hostsrules.Unknown:
		if !plainHostName(req.ClientName) {
			return fmt.Errorf("%w: client_name: not a host name: %q", ErrMalformed, truncate([]byte(req.ClientName)))
		}
		client.Name = req.ClientName
	case req.ReverseClientName != "" && req.ReverseClientName != hostsrules.Unknown:
		client.Name = hostsrules.Paranoid
	case req.ClientName != "" || req.ReverseClientName != "":
		client.Name = hostsrules.Unknown
	}
	server, err := endpoint("server_address", req.ServerAddress, "server_port", req.ServerPort)
	if err != nil {
		return err
	}
	*h = hostsrules.Request{Daemon: daemon, Client: client, Server: server, User: hostsrules.Unknown}
	return nil
}

// endpoint parses an address attribute and its optional port attribute;
// "" and "unknown" are no address.
func endpoint(aname, addr, pname, port string) (hostsrules.Endpoint, error) {
	if addr == "" || addr == hostsrules.Unknown {
		if port != "" && port != "0" && port != hostsrules.Unknown {
			return hostsrules.Endpoint{}, fmt.Errorf("%w: %s %q without %s", ErrMalformed, pname, port, aname)
		}
		return hostsrules.Endpoint{}, nil
	}
	a, err := netip.ParseAddr(addr)
	if err != nil || a.Zone() != "" {
		return hostsrules.Endpoint{}, fmt.Errorf("%w: %s: not an IP address: %q", ErrMalformed, aname, truncate([]byte(addr)))
	}
	var p uint64
	if port != "" && port != hostsrules.Unknown {
		if p, err = strconv.ParseUint(port, 10, 16); err != nil {
			return hostsrules.Endpoint{}, fmt.Errorf("%w: %s: not a port: %q", ErrMalformed, pname, truncate([]byte(port)))
		}
	}
	return hostsrules.Endpoint{Addr: netip.AddrPortFrom(a.Unmap(), uint16(p))}, nil
}

// plainHostName reports whether s can be a host name as Postfix sends
// one: 1 to 255 bytes of letters, digits, '-', '.' and '_'.
func plainHostName(s string) bool {
	if len(s) == 0 || len(s) > 255 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '.' || c == '_') {
			return false
		}
	}
	return true
}

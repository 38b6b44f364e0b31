package login

import (
	"net/netip"
	"strconv"
	"strings"
)

// A peer in login_trusted_networks (webmail, a Dovecot proxy) may tell
// the login process who its client really is, as Dovecot 2.3 lets it:
// IMAP ID's x-originating-ip, x-originating-port, x-connected-ip,
// x-connected-port, x-proxy-ttl, x-session-id (x-session-ext-id) and
// x-forward-<name> (pkg/logind/imap), POP3 XCLIENT ADDR=, PORT=,
// SESSION=, TTL=, FORWARD= (pkg/logind/pop3). The protocol calls
// SetForwarded; everything after uses the forwarded values: the log
// lines' rip= and lip= and session=, the auth request (rip, lip, rport,
// lport, session, forward_fields; real_rip stays the peer's), the
// hand-off (remote and local address and port, session id). Whether the
// client is trusted and whether it is secured stay what the connection
// made them, as in Dovecot (2.3.19.1 and 2.4.1 decide both once, when
// the client is created): a client forwarded by a trusted webmail is
// "secured" because the webmail is trusted.

// DefaultProxyTTL is Dovecot's LOGIN_PROXY_TTL: the hops a proxied login
// may still take when no peer forwarded a TTL.
const DefaultProxyTTL = 5

// MaxSessionIDLen is the longest session id a peer may forward
// (Dovecot's LOGIN_MAX_SESSION_ID_LEN); a longer one is ignored.
const MaxSessionIDLen = 64

// Forwarded is what a trusted peer said about its client. Zero fields
// say nothing: SetForwarded keeps the client's current value for them.
type Forwarded struct {
	// RemoteIP and RemotePort are the client's address (x-originating-ip
	// and -port, XCLIENT ADDR= and PORT=).
	RemoteIP   netip.Addr
	RemotePort uint16
	// LocalIP and LocalPort are the address the client connected to at
	// the peer (x-connected-ip and -port).
	LocalIP   netip.Addr
	LocalPort uint16
	// ProxyTTL is the hops a proxied login may still take (x-proxy-ttl,
	// XCLIENT TTL=); 0 says nothing (a Dovecot proxy never forwards 0: it
	// stops proxying at 1).
	ProxyTTL int
	// SessionID replaces the client's session id (x-session-id,
	// x-session-ext-id, XCLIENT SESSION=); at most MaxSessionIDLen bytes.
	SessionID string
	// Fields are "name=value" fields for auth's forward_fields, not
	// escaped (IMAP: x-forward-<name>; POP3: XCLIENT FORWARD=, decoded).
	// A non-nil Fields replaces the client's; IMAP adds to them
	// (AddForwardField).
	Fields []string
}

// forward is a client's forwarded identity (forward.go); the zero value
// forwards nothing.
type forward struct {
	remote, local netip.AddrPort // a zero part: the connection's
	ttl           int            // 0: DefaultProxyTTL
	session       string
	fields        []string
}

// Trusted reports whether the client's peer is in
// login_trusted_networks (matched against the address of a PROXY header
// on a haproxy = yes listener): only such a peer may forward its
// client's identity.
func (cl *Client) Trusted() bool {
	return inNetworks(cl.lp.trusted, remoteAddr(cl.c))
}

// SetForwarded makes f's non-zero fields the client's from now on (the
// protocol has checked Trusted). Fields, when not nil, replace the
// forwarded fields.
func (cl *Client) SetForwarded(f Forwarded) {
	fw := &cl.fwd
	if f.RemoteIP.IsValid() {
		fw.remote = netip.AddrPortFrom(f.RemoteIP, fw.remote.Port())
	}
	if f.RemotePort != 0 {
		fw.remote = netip.AddrPortFrom(fw.remote.Addr(), f.RemotePort)
	}
	if f.LocalIP.IsValid() {
		fw.local = netip.AddrPortFrom(f.LocalIP, fw.local.Port())
	}
	if f.LocalPort != 0 {
		fw.local = netip.AddrPortFrom(fw.local.Addr(), f.LocalPort)
	}
	if f.ProxyTTL != 0 {
		fw.ttl = f.ProxyTTL
	}
	if f.SessionID != "" && len(f.SessionID) <= MaxSessionIDLen {
		fw.session = f.SessionID
	}
	if f.Fields != nil {
		fw.fields = append([]string(nil), f.Fields...)
	}
}

// AddForwardField adds one "name=value" forward field (IMAP ID's
// x-forward-<name>, which adds to the fields where XCLIENT FORWARD=
// replaces them).
func (cl *Client) AddForwardField(name, value string) {
	cl.fwd.fields = append(cl.fwd.fields, name+"="+value)
}

// identity is the client as the auth request, the hand-off and the log
// lines describe it: the connection's addresses (those of a PROXY
// header), each part replaced by what a trusted peer forwarded.
type identity struct {
	// Remote and Local: rip/rport and lip/lport. A part may be the zero
	// Addr or port 0 when unknown.
	Remote, Local netip.AddrPort
	// ProxyTTL: the hops a proxied login may still take.
	ProxyTTL int
	// Session: the session id (session=, the hand-off's).
	Session string
	// ForwardFields: "name=value" fields for forward_fields, not escaped.
	ForwardFields []string
}

// identity is the client's identity now (see type identity).
func (cl *Client) identity() identity {
	id := identity{
		Remote:        merge(addrPortOf(cl.c.RemoteAddr()), cl.fwd.remote),
		Local:         merge(addrPortOf(cl.c.LocalAddr()), cl.fwd.local),
		ProxyTTL:      cl.fwd.ttl,
		Session:       cl.fwd.session,
		ForwardFields: cl.fwd.fields,
	}
	if id.ProxyTTL == 0 {
		id.ProxyTTL = DefaultProxyTTL
	}
	if id.Session == "" {
		id.Session = cl.sessionID()
	}
	return id
}

// merge is conn with the parts fw sets replaced.
func merge(conn, fw netip.AddrPort) netip.AddrPort {
	ip, port := conn.Addr(), conn.Port()
	if fw.Addr().IsValid() {
		ip = fw.Addr()
	}
	if fw.Port() != 0 {
		port = fw.Port()
	}
	if !ip.IsValid() {
		return netip.AddrPort{}
	}
	return netip.AddrPortFrom(ip, port)
}

// ParseForwardedIP parses a forwarded address as Dovecot's net_addr2ip
// does: IPv6 (also in brackets; no zones) or IPv4 as glibc's inet_aton
// reads it, short and octal or hex forms included ("10.1" is 10.0.0.1,
// "0x7f.1" 127.0.0.1; Dovecot 2.3.19.1 takes them too).
func ParseForwardedIP(s string) (netip.Addr, bool) {
	if strings.Contains(s, ":") {
		if len(s) > 2 && s[0] == '[' && s[len(s)-1] == ']' {
			s = s[1 : len(s)-1]
		}
		a, err := netip.ParseAddr(s)
		if err != nil || !a.Is6() || a.Zone() != "" {
			return netip.Addr{}, false
		}
		return a, true
	}
	return inetAton(s)
}

// inetAton is glibc's inet_aton: one to four parts separated by dots,
// each decimal, octal (leading 0) or hex (0x), the last filling the
// remaining bytes; whitespace ends the address (what follows is
// ignored).
func inetAton(s string) (netip.Addr, bool) {
	if i := strings.IndexAny(s, " \t\n\v\f\r"); i >= 0 {
		s = s[:i]
	}
	parts := strings.Split(s, ".")
	if len(parts) > 4 {
		return netip.Addr{}, false
	}
	var v [4]uint64
	for i, p := range parts {
		base := 10
		switch {
		case len(p) > 1 && (p[:2] == "0x" || p[:2] == "0X"):
			base, p = 16, p[2:]
		case len(p) > 1 && p[0] == '0':
			base, p = 8, p[1:]
		}
		n, err := strconv.ParseUint(p, base, 32)
		if err != nil || p == "" && base != 16 || strings.ContainsAny(p, "+-_") {
			return netip.Addr{}, false
		}
		v[i] = n
	}
	last := len(parts) - 1
	for i := 0; i < last; i++ {
		if v[i] > 0xff {
			return netip.Addr{}, false
		}
	}
	if v[last] > 0xffffffff>>(8*last) {
		return netip.Addr{}, false
	}
	var ip uint32
	for i := 0; i < last; i++ {
		ip |= uint32(v[i]) << (24 - 8*i)
	}
	ip |= uint32(v[last])
	return netip.AddrFrom4([4]byte{byte(ip >> 24), byte(ip >> 16), byte(ip >> 8), byte(ip)}), true
}

// ParseForwardedPort parses a forwarded port as Dovecot's net_str2port
// does: decimal digits, 1 to 65535.
func ParseForwardedPort(s string) (uint16, bool) {
	n, err := strconv.ParseUint(s, 10, 16)
	if err != nil || n == 0 || !digits(s) {
		return 0, false
	}
	return uint16(n), true
}

// ParseProxyTTL parses a forwarded proxy TTL as Dovecot's str_to_uint
// does: decimal digits, at most 4294967295 (0 parses, and says nothing
// to SetForwarded).
func ParseProxyTTL(s string) (int, bool) {
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil || !digits(s) {
		return 0, false
	}
	return int(n), true
}

// digits reports whether s is one or more decimal digits (no sign).
func digits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

// Package forward is a login client's identity as a trusted peer
// forwarded it (Dovecot 2.3's login_trusted_networks): what IMAP ID's
// x-originating-ip, x-originating-port, x-connected-ip,
// x-connected-port, x-proxy-ttl, x-session-id (x-session-ext-id) and
// x-forward-<name> (pkg/logind/imap), and POP3 XCLIENT's ADDR=, PORT=,
// SESSION=, TTL= and FORWARD= (pkg/logind/pop3) say, parsed as Dovecot
// parses them, and kept in a State that replaces the parts of the
// connection's addresses it sets (login.Client.SetForwarded; the auth
// request, the hand-off and the log lines use the result,
// docs/loginsvc.md, "Trusted networks").
package forward

import (
	"net/netip"
	"strconv"
	"strings"
)

// DefaultProxyTTL is Dovecot's LOGIN_PROXY_TTL: the hops a proxied login
// may still take when no peer forwarded a TTL.
const DefaultProxyTTL = 5

// MaxSessionIDLen is the longest session id a peer may forward
// (Dovecot's LOGIN_MAX_SESSION_ID_LEN); a longer one is ignored.
const MaxSessionIDLen = 64

// Forwarded is what a trusted peer said about its client. Zero fields
// say nothing: State.Set keeps the current value for them.
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
	// A non-nil Fields replaces the State's; IMAP adds to them
	// (State.AddField).
	Fields []string
}

// State is a client's forwarded identity; the zero value forwards
// nothing.
type State struct {
	remote, local netip.AddrPort // a zero part: the connection's
	ttl           int            // 0: DefaultProxyTTL
	session       string
	fields        []string
}

// Set makes f's non-zero fields the State's. Fields, when not nil,
// replace the forwarded fields.
func (s *State) Set(f Forwarded) {
	if f.RemoteIP.IsValid() {
		s.remote = netip.AddrPortFrom(f.RemoteIP, s.remote.Port())
	}
	if f.RemotePort != 0 {
		s.remote = netip.AddrPortFrom(s.remote.Addr(), f.RemotePort)
	}
	if f.LocalIP.IsValid() {
		s.local = netip.AddrPortFrom(f.LocalIP, s.local.Port())
	}
	if f.LocalPort != 0 {
		s.local = netip.AddrPortFrom(s.local.Addr(), f.LocalPort)
	}
	if f.ProxyTTL != 0 {
		s.ttl = f.ProxyTTL
	}
	if f.SessionID != "" && len(f.SessionID) <= MaxSessionIDLen {
		s.session = f.SessionID
	}
	if f.Fields != nil {
		s.fields = append([]string(nil), f.Fields...)
	}
}

// AddField adds one "name=value" forward field (IMAP ID's
// x-forward-<name>, which adds to the fields where XCLIENT FORWARD=
// replaces them).
func (s *State) AddField(name, value string) {
	s.fields = append(s.fields, name+"="+value)
}

// Remote is the connection's remote address with the forwarded parts
// replaced; Local the same for the local one.
func (s *State) Remote(conn netip.AddrPort) netip.AddrPort { return merge(conn, s.remote) }

// Local: see Remote.
func (s *State) Local(conn netip.AddrPort) netip.AddrPort { return merge(conn, s.local) }

// ProxyTTL is the forwarded TTL, DefaultProxyTTL if none.
func (s *State) ProxyTTL() int {
	if s.ttl == 0 {
		return DefaultProxyTTL
	}
	return s.ttl
}

// Session is the forwarded session id, "" if none.
func (s *State) Session() string { return s.session }

// Fields are the forward fields ("name=value", not escaped).
func (s *State) Fields() []string { return s.fields }

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

// ParseIP parses a forwarded address as Dovecot's net_addr2ip
// does: IPv6 (also in brackets; no zones) or IPv4 as glibc's inet_aton
// reads it, short and octal or hex forms included ("10.1" is 10.0.0.1,
// "0x7f.1" 127.0.0.1; Dovecot 2.3.19.1 takes them too).
func ParseIP(s string) (netip.Addr, bool) {
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

// ParsePort parses a forwarded port as Dovecot's net_str2port
// does: decimal digits, 1 to 65535.
func ParsePort(s string) (uint16, bool) {
	n, err := strconv.ParseUint(s, 10, 16)
	if err != nil || n == 0 || !digits(s) {
		return 0, false
	}
	return uint16(n), true
}

// ParseTTL parses a forwarded proxy TTL as Dovecot's str_to_uint
// does: decimal digits, at most 4294967295 (0 parses, and says nothing
// to State.Set).
func ParseTTL(s string) (int, bool) {
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

package login

import (
	"net/netip"

	"github.com/tcpwrapd/tcpwrapd/pkg/logind/login/forward"
)

// A trusted peer's forwarded identity (package forward) is used by
// everything after SetForwarded: the log lines, the auth request (but
// real_rip) and the hand-off; trusted and secured stay what the
// connection made them, as in Dovecot (docs/loginsvc.md, "Trusted
// networks").

// Forwarded is what a trusted peer said about its client (zero fields
// say nothing; see forward.Forwarded).
type Forwarded = forward.Forwarded

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
func (cl *Client) SetForwarded(f Forwarded) { cl.fwd.Set(f) }

// AddForwardField adds one "name=value" forward field (IMAP ID's
// x-forward-<name>; XCLIENT FORWARD= replaces them instead).
func (cl *Client) AddForwardField(name, value string) { cl.fwd.AddField(name, value) }

// identity is the client as the auth request, the hand-off and the log
// lines describe it: the connection's addresses (those of a PROXY
// header), each part replaced by what a trusted peer forwarded.
type identity struct {
	// Remote and Local: rip/rport and lip/lport. A part may be the zero
	// Addr or port 0 when unknown.
	Remote, Local netip.AddrPort
	ProxyTTL      int      // the hops a proxied login may still take
	Session       string   // the session id (session=, the hand-off's)
	ForwardFields []string // "name=value" fields for forward_fields, not escaped
}

// identity is the client's identity now (see type identity).
func (cl *Client) identity() identity {
	id := identity{
		Remote:        cl.fwd.Remote(addrPortOf(cl.c.RemoteAddr())),
		Local:         cl.fwd.Local(addrPortOf(cl.c.LocalAddr())),
		ProxyTTL:      cl.fwd.ProxyTTL(),
		Session:       cl.fwd.Session(),
		ForwardFields: cl.fwd.Fields(),
	}
	if id.Session == "" {
		id.Session = cl.sessionID()
	}
	return id
}

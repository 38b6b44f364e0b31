package imap

import (
	"strings"

	"github.com/tcpwrapd/tcpwrapd/pkg/logind/login"
	"github.com/tcpwrapd/tcpwrapd/pkg/logind/login/forward"
)

// IMAP ID from a trusted peer (imap-login's imap-login-cmd-id.c in
// Dovecot 2.3.19.1): a client in login_trusted_networks (webmail, a
// Dovecot proxy) forwards its own client's identity with these keys
// (case-insensitive), and everything after uses it (login.Forwarded):
//
//	x-originating-ip, x-originating-port   the client's address (rip, rport)
//	x-connected-ip, x-connected-port       the address it connected to (lip, lport)
//	x-proxy-ttl                            the proxy hops left
//	x-session-id, x-session-ext-id         the session id (at most 64 bytes)
//	x-forward-<name>                       a forward_fields field <name>=<value>
//
// As in Dovecot: only a trusted client's fields count, and only until an
// ID command has completed (the first ID counts; one answered "BAD
// Invalid ID parameters" does not complete, but the pairs read before
// its error count); a NIL value and a value that does not parse (an
// address, a port of 0 or over 65535, a TTL that is not a number) are
// ignored; an untrusted client's x-* fields are ignored without a word.
// Every client gets the same reply, Dovecot's default imap_id_send =
// "name *": * ID ("name" "Dovecot"). ID is not logged (imap_id_log is
// empty by default).

// IDReply is the untagged ID reply (Dovecot 2.3's imap_id_send default,
// "name *").
const IDReply = `* ID ("name" "Dovecot")` + "\r\n"

// idPair is one key-value pair of an ID list; nil: the value was NIL.
type idPair struct {
	key, value string
	nil        bool
}

// id answers an ID command (its pairs were applied by forward).
func (s *session) id(tag string, cmd *imapCommand) string {
	if cmd.idInvalid {
		return tag + " BAD Invalid ID parameters\r\n"
	}
	s.idDone = true
	return IDReply + tag + " OK ID completed.\r\n"
}

// forward applies an ID command's x-* pairs when the client is trusted
// and no ID has completed yet.
func (s *session) forward(pairs []idPair) {
	if len(pairs) == 0 || s.idDone || !s.c.Trusted() {
		return
	}
	for _, p := range pairs {
		if p.nil {
			continue
		}
		var f login.Forwarded
		switch k := strings.ToLower(p.key); {
		case k == "x-originating-ip":
			f.RemoteIP, _ = forward.ParseIP(p.value)
		case k == "x-originating-port":
			f.RemotePort, _ = forward.ParsePort(p.value)
		case k == "x-connected-ip":
			f.LocalIP, _ = forward.ParseIP(p.value)
		case k == "x-connected-port":
			f.LocalPort, _ = forward.ParsePort(p.value)
		case k == "x-proxy-ttl":
			f.ProxyTTL, _ = forward.ParseTTL(p.value)
		case k == "x-session-id" || k == "x-session-ext-id":
			f.SessionID = p.value
		case strings.HasPrefix(k, "x-forward-"):
			s.c.AddForwardField(p.key[len("x-forward-"):], p.value)
			continue
		default:
			continue
		}
		s.c.SetForwarded(f)
	}
}

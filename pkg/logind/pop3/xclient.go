package pop3

import (
	"encoding/base64"
	"strings"

	"github.com/tcpwrapd/tcpwrapd/pkg/dovecot/authclient"
	"github.com/tcpwrapd/tcpwrapd/pkg/logind/login"
	"github.com/tcpwrapd/tcpwrapd/pkg/logind/login/forward"
)

// POP3 XCLIENT from a trusted peer (pop3-login's cmd_xclient in Dovecot
// 2.3.19.1): a client in login_trusted_networks (a Dovecot proxy,
// webmail) forwards its own client's identity, and everything after
// uses it (login.Forwarded):
//
//	XCLIENT ADDR=<ip> PORT=<port> SESSION=<id> TTL=<n> FORWARD=<base64>
//
// Parameters are separated by single spaces, their names
// case-insensitive, others ignored. ADDR and PORT are the client's
// address (rip, rport), SESSION the session id (ignored if longer than
// 64 bytes), TTL the proxy hops left, FORWARD the forward_fields
// (base64 of tab-separated name=value fields, tab-escaped) replacing any
// before. The reply is "+OK Updated"; "-ERR Invalid parameters" if an
// ADDR, PORT, TTL or FORWARD does not parse (the parameters before it
// stay applied, as in Dovecot). XCLIENT may be repeated. An untrusted
// client gets "+OK You are not from trusted IP - ignoring" and nothing
// changes. "XOIP <ip>" is "XCLIENT ADDR=<ip>" (Zimbra's nginx). A
// trusted client's greeting starts with "[XCLIENT] " (Dovecot's hint, so
// that a proxy needs no CAPA), and, unlike Dovecot, its CAPA lists
// XCLIENT too.

// xclientGreeting is the greeting's prefix: "[XCLIENT] " for a trusted
// client.
func xclientGreeting(c *login.Client) string {
	if c.Trusted() {
		return "[XCLIENT] "
	}
	return ""
}

// xclientCapa is CAPA's XCLIENT line, for a trusted client.
func xclientCapa(c *login.Client) string {
	if c.Trusted() {
		return "XCLIENT\r\n"
	}
	return ""
}

// xclient runs XCLIENT (cmd "XCLIENT") or XOIP with its arguments.
func xclient(c *login.Client, cmd, args string) string {
	if !c.Trusted() {
		return "+OK You are not from trusted IP - ignoring\r\n"
	}
	if cmd == "XOIP" {
		args = "ADDR=" + args
	}
	ok := true
	for _, p := range strings.Split(args, " ") {
		name, value, _ := strings.Cut(p, "=")
		var f login.Forwarded
		valid := true
		switch strings.ToUpper(name) {
		case "ADDR":
			f.RemoteIP, valid = forward.ParseIP(value)
		case "PORT":
			f.RemotePort, valid = forward.ParsePort(value)
		case "SESSION":
			f.SessionID = value
		case "TTL":
			f.ProxyTTL, valid = forward.ParseTTL(value)
		case "FORWARD":
			f.Fields, valid = forwardFields(value)
		default:
			continue
		}
		ok = ok && valid
		c.SetForwarded(f)
	}
	if !ok {
		return "-ERR Invalid parameters\r\n"
	}
	return "+OK Updated\r\n"
}

// forwardFields decodes FORWARD=: base64 of Dovecot's forward_fields,
// "name=value" fields tab-escaped and joined by tabs. Not ok if it is
// not base64; an empty value gives no fields (and replaces those
// before, as in Dovecot).
func forwardFields(b64 string) ([]string, bool) {
	b, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return nil, false
	}
	fields := []string{}
	if len(b) == 0 {
		return fields, true
	}
	for _, f := range strings.Split(string(b), "\t") {
		fields = append(fields, authclient.TabUnescape(f))
	}
	return fields, true
}

package login

import (
	"encoding/base64"
	"encoding/binary"
	"net"
	"net/netip"
	"time"

	"github.com/tcpwrapd/tcpwrapd/pkg/logind/ipc"
)

// A login process logs one line, at info level, for every client that
// goes away before authentication, as Dovecot 2.3's imap-login and
// pop3-login do (texts from Dovecot 2.3.19.1):
//
//	Disconnected: WHY (no auth attempts in N secs): user=<>, rip=IP, lip=IP[, secured|, TLS], session=<ID>
//
// WHY is "Aborted login by logging out" (LOGOUT, QUIT), "Connection
// closed" (end of stream; with ": read(size=1026) failed: ERROR" after a
// read error), "Inactivity" (pre-login deadline), "Too many invalid
// commands" (IMAP; POP3: "Disconnected: Too many bad commands"),
// "Connection queue full" (evicted), "Shutting down", "Input buffer
// full", "Literal size too large" or "Authentication response too
// large". N is whole seconds since accept. rip and lip are the client's
// addresses (those of a PROXY header on a haproxy listener); "TLS" when
// TLS is on, "secured" when the connection counts as secured (docs/loginsvc.md:
// the proxy terminated TLS, the client is in login_trusted_networks, or
// rip == lip on a direct connection). session is a per-connection id.
//
// Clients refused by an access check, or that failed the PROXY header
// or the TLS handshake, are not clients yet: they have their own lines
// and no "Disconnected" line, as in Dovecot.

// closeWhy is Dovecot's disconnect reason for a client closed by the
// process (kill) or the deadline.
func closeWhy(r ipc.CloseReason) string {
	switch r {
	case ipc.CloseEvicted:
		return "Connection queue full"
	case ipc.CloseShutdown:
		return "Shutting down"
	case ipc.CloseTimeout:
		return "Inactivity"
	}
	return "Connection closed"
}

// logDisconnect logs the client's disconnect line with reason why and,
// unless the hand-off failed, Dovecot's parenthesised extra reason
// ("(no auth attempts in N secs)", "(auth failed, 2 attempts in 5
// secs)", ...; sasl.State.ExtraReason).
func (cl *Client) logDisconnect(why string) {
	if !cl.auth.noExtra {
		why += " " + cl.auth.st.ExtraReason(cl.accepted, time.Now(), true)
	}
	logLine("INFO", "Disconnected: %s: %s", why, cl.elements(0))
}

// sessionID is the client's session id for log lines: 12 bytes in
// base64 (16 characters), like Dovecot's, here the accept time in
// microseconds (low 32 bits) and the connection id, which the supervisor
// never gives twice.
func (cl *Client) sessionID() string {
	var b [12]byte
	binary.BigEndian.PutUint32(b[:4], uint32(cl.accepted.UnixMicro()))
	binary.BigEndian.PutUint64(b[4:], cl.id)
	return base64.StdEncoding.EncodeToString(b[:])
}

// addrOf is a's IP address, unmapped; the zero Addr if a is not TCP.
func addrOf(a net.Addr) netip.Addr {
	if t, ok := a.(*net.TCPAddr); ok {
		return t.AddrPort().Addr().Unmap()
	}
	return netip.Addr{}
}

// ipString is a as logged after "rip=" and "lip=" ("?" if unknown).
func ipString(a netip.Addr) string {
	if a.IsValid() {
		return a.String()
	}
	return "?"
}

// capitalize upper-cases the first letter of an error text, as strerror
// writes it ("Connection reset by peer").
func capitalize(s string) string {
	if s != "" && s[0] >= 'a' && s[0] <= 'z' {
		return string(s[0]-'a'+'A') + s[1:]
	}
	return s
}

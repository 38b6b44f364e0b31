// Package login is loginsvc's login process (Dovecot's login-common):
// Main reads its settings from the supervisor (pkg/logind/ipc),
// sandboxes itself, and serves clients handed over or accepted itself:
// the PROXY header, the access checks (login_access_sockets), TLS, the
// pre-login deadline and the disconnect line are the protocol-free
// Client's; the protocol is a Session of the service's Protocol. It
// never imports the supervisor, the configuration or a protocol.
//
// # TLS
//
// TLS is done by the login processes, after the access checks: on an
// ssl = yes listener the handshake follows the check and precedes the
// greeting; on the others IMAP offers STARTTLS and POP3 STLS while ssl
// is not no. The key reaches a login process in a sealed memfd sent with
// its settings, is parsed before the sandbox and then lives only in that
// process's memory (ipc.NewKeyMemfd, docs/loginsvc.md). The process sandboxes itself (Sandbox;
// docs/loginsvc.md, "Sandbox") before it serves.
//
// # Pre-login protocol
//
// The protocols are not here: each is a package implementing Protocol
// and Session (pkg/logind/imap, pop3, submission, managesieve; their
// list is cmd/loginsvc's), answering as Dovecot 2.3's login processes
// do. A Session asks its Client to queue and
// flush replies, whether TLS is offered or active, to start TLS (a
// TLSGreeter also speaks once its handshake is done), whether the
// connection is secured, to authenticate (auth.go; through the
// Authenticator seam, which the protocols' transcript tests fill with
// logintest.FakeAuth) and to report a state, and nothing of the
// process. The Client reads input through an input.Buffer of
// input.MaxLine bytes (package input: Dovecot's 1026-byte login
// buffer). Every client that goes away before authentication is logged
// in Dovecot's words (disconnect.go):
//
//	Disconnected: Aborted login by logging out (no auth attempts in 0 secs): user=<>, rip=IP, lip=IP, secured, session=<ID>
//
// # Authentication
//
// Each login process has one connection to Dovecot's auth
// (login_socket_path, opened after the sandbox; authconn.go), and holds
// a client's greeting until it is up. A Session authenticates with
// Client.Authenticate or LoginPlain (auth.go): the mechanism checks, the
// AUTH request, the challenges through the protocol's AuthIO, CANCEL when
// the client aborts, leaves while its response is read, or runs out of
// time (no watch on the client while auth answers, as in Dovecot), and
// the reply read as
// Dovecot reads it (package sasl). On OK the client is handed off to the
// post-login service (handoff.go, package masterauth): its own socket in
// plaintext, over TLS a socketpair whose other end the process relays
// for the whole session (relay.go). The protocol words its reply from
// the AuthOutcome; the Login and Disconnected lines are the Client's
// (docs/loginsvc.md, "Authentication").
//
// # HAProxy
//
// On an inet_listener with haproxy = yes, a PROXY protocol header comes
// first, as in Dovecot (haproxy.go): before the access checks and before
// any byte is written, the peer (the proxy) must be in
// haproxy_trusted_networks (else the warning "haproxy: Client not
// trusted (rip=PROXY)" and close), and a v1 (at most 107 bytes) or v2
// (at most 1500 bytes, TLVs included) header must arrive within
// haproxy_timeout of accept. TCP over IPv4 or IPv6 replaces the client's
// remote and local addresses; v1 UNKNOWN, v2 LOCAL and v2 AF_UNIX keep
// the connection's own; UDP and malformed TLVs are errors; a v2 SSL TLV
// with the client-SSL bit is recorded as TLS terminated by the proxy. On
// any failure the connection is closed without a byte written, logging
// "haproxy: Client disconnected: Failed to read valid HAproxy data:
// WHY", "haproxy: Client timed out" or "haproxy: Client disconnected"
// with the proxy as rip. Unlike Dovecot, the header may arrive in
// several reads; like it, nothing after the header is read (a command
// pipelined behind it is served). Afterwards every "rip=" is the
// forwarded client's address.
//
// Deployment note: the login_access_sockets are asked with the client
// socket itself (passed as SCM_RIGHTS, Dovecot's wire protocol has no
// address field), so tcpwrap judges the proxy's address, not the
// forwarded one, exactly as with Dovecot: hosts.allow must allow the
// proxies, and per-client rules do not apply to proxied clients (the
// "Client refused" log line still names the forwarded client).
//
// # Trusted networks
//
// A peer in login_trusted_networks (Client.Trusted) may forward its
// client's identity: the protocols parse IMAP ID's x-* fields and POP3
// XCLIENT and call Client.SetForwarded (forward.go); from then on the
// log lines, the auth request and the hand-off use the forwarded
// addresses, session id, proxy TTL and forward fields, while trusted and
// secured stay what the connection made them, as in Dovecot.
package login

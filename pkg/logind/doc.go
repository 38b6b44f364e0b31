// Package logind implements loginsvc, a supervisor of login processes in
// the manner of Dovecot 2.3's master for its type = login services
// (imap-login, pop3-login, submission-login, managesieve-login), with the
// high-security (service_count = 1) and high-performance (service_count =
// 0) modes, and the login processes themselves up to the point where a
// client would authenticate.
//
// # Configuration
//
// The configuration is a subset of dovecot.conf syntax (Parse, ParseFile):
//
//	key = value            # comment (a '#' after white space, outside quotes)
//	key = "quoted \"value\""
//	key = <file            # the file's contents, read by the parser (root)
//	key = $other_setting   # a global setting's current value
//	!include conf.d/*.conf # relative to the including file; !include_try
//	protocol imap { login_access_sockets = ... login_greeting = ... login_trusted_networks = ... }
//	service imap-login {
//	  inet_listener imap { address = 127.0.0.1  port = 143  ssl = no  haproxy = no  reuse_port = no }
//	  service_count process_min_avail process_limit client_limit vsz_limit idle_kill user chroot
//	}
//
// Global settings: base_dir, default_client_limit (1000),
// default_process_limit (100), default_vsz_limit (256M),
// default_idle_kill (1 min), default_login_user (dovenull),
// haproxy_trusted_networks (none), haproxy_timeout (3 secs), listen,
// login_access_sockets, login_greeting, login_trusted_networks,
// protocols (imap pop3), shutdown_clients (yes), ssl (no, yes, required),
// ssl_cert, ssl_key (PEM, normally "<file"), ssl_min_protocol (TLSv1.2;
// TLSv1, TLSv1.1, TLSv1.3), login_prelogin_timeout (3 mins; Dovecot's fixed 180 s pre-login
// deadline made settable), and login_prelogin_ip_limit (1000; 0 = none)
// and login_prelogin_ipv6_prefix (64), the places one source may hold
// and what makes IPv6 clients one source (see evict.go). Limits are computed as Dovecot's master does
// them (spec §2.1): process_limit/client_limit 0 mean the defaults, and
// client_limit is clamped to service_count when that is non-zero.
//
// Errors are collected, not just the first, and each is printed as
// FILE:LINE: MESSAGE. Config.Print writes the effective non-default
// (loginsvc -n) or all (loginsvc -a) settings.
//
// # Differences from Dovecot
//
// Only login services exist; any other service section is an error.
// With ssl = no, an
// ssl = yes listener is not opened (as Dovecot's master does). With ssl
// = yes or required, ssl_cert and ssl_key must be set and form a key
// pair (checked when parsing). Only crypto/tls's protocols exist: no
// SSLv3, no ssl_cipher_list, no ssl_key_password, no SNI (local_name).
//
// At process_limit the supervisor, which knows every client's state,
// chooses the victims: the oldest logging-in client, exactly one per
// waiting connection, also when the clients become evictable only after
// the connections arrived (a burst), with no timers (docs/loginsvc.md).
// An access socket that cannot be asked at all (connect or fd_send
// fails) closes the client as in Dovecot, but is logged with rip= and
// counted as an access error (Counters.AccessErrors), not as a refusal.
// A login process's RLIMIT_NOFILE allows a second descriptor per client
// when there are login_access_sockets, and is clamped, with a warning,
// to the hard limit the supervisor has.
//
// # TLS
//
// TLS is done by the login processes, after the access checks: on an
// ssl = yes listener the handshake follows the check and precedes the
// greeting; on the others IMAP offers STARTTLS and POP3 STLS while ssl
// is not no. The key reaches a login process in a sealed memfd sent with
// its settings, is parsed before the sandbox and then lives only in that
// process's memory (see tls.go and docs/loginsvc.md). vsz_limit is RLIMIT_DATA
// plus the Go memory limit, not RLIMIT_AS, and must be at least 16M (see
// the Sandbox section of the supervisor documentation).
//
// # Pre-login protocol
//
// The login processes answer as Dovecot 2.3's do, authentication apart
// (LOGIN and AUTHENTICATE answer NO [UNAVAILABLE]): the same replies,
// limits and bad-command counting. IMAP commands are read as Dovecot's
// imap-login reads them (imapcmd.go: literals, synchronizing and
// LITERAL+, a 1026-byte input buffer, 8192 bytes per command, Dovecot's
// error texts, tags never echoed when invalid); POP3, submission and
// ManageSieve read lines. Every client that goes away before
// authentication is logged in Dovecot's words (disconnect.go):
//
//	Disconnected: Aborted login by logging out (no auth attempts in 0 secs): user=<>, rip=IP, lip=IP, secured, session=<ID>
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
package logind

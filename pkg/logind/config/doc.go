// Package config is loginsvc's configuration: the settings of
// docs/loginsvc.md bound from a dovecot.conf tree (pkg/dovecot/conf) to
// Config, Service and Listener, with defaults, checks (each error at the
// line that set the value) and printing (loginsvc -n, -a).
//
// # Configuration
//
// The configuration is a subset of dovecot.conf syntax (pkg/dovecot/conf),
// read by Parse and ParseFile:
//
//	key = value            # comment (a '#' after white space, outside quotes)
//	key = "quoted \"value\""
//	key = <file            # the file's contents, read by the parser (root)
//	key = $other_setting   # a global setting's current value
//	!include conf.d/*.conf # relative to the including file; !include_try
//	protocol imap { login_access_sockets = ... login_greeting = ... login_trusted_networks = ... disable_plaintext_auth = ... }
//	service imap-login {
//	  inet_listener imap { address = 127.0.0.1  port = 143  ssl = no  haproxy = no  reuse_port = no }
//	  service_count process_min_avail process_limit client_limit vsz_limit idle_kill user chroot
//	  postlogin_socket
//	}
//
// Global settings, with their defaults (the table globalDefaults;
// docs/loginsvc.md, "Configuration"): base_dir (/run/loginsvc),
// default_client_limit (1000), default_process_limit (100),
// default_vsz_limit (256M), default_idle_kill (1 min),
// default_login_user (dovenull), haproxy_trusted_networks (none),
// haproxy_timeout (3 secs), listen (*, ::), login_access_sockets (none),
// login_greeting (loginsvc ready.), login_trusted_networks (none),
// protocols (imap pop3), shutdown_clients (yes), ssl (no; yes,
// required), ssl_cert, ssl_key (PEM, normally "<file"), ssl_min_protocol
// (TLSv1.2; TLSv1, TLSv1.1, TLSv1.3), ssl_curve_list (empty: Go's
// key exchanges), login_prelogin_timeout (3 mins;
// Dovecot's fixed 180 s pre-login deadline made settable),
// login_prelogin_ip_limit (1000; 0 = none) and login_prelogin_ipv6_prefix
// (64), the places one source may hold and what makes IPv6 clients one
// source (see pkg/logind/master), login_socket_path (login: Dovecot's auth
// socket, relative to the chroot), disable_plaintext_auth (yes) or its
// inverse auth_allow_cleartext (no), also per protocol; login_log_path
// (empty: off; syslog, or a unix datagram socket's absolute path),
// instance_name (dovecot) and syslog_facility (mail): the login
// processes' lines in Dovecot's own syslog format (docs/loginsvc.md, "Log
// lines for ban tools"). Per service: service_count (1),
// process_min_avail (0), process_limit and client_limit (0: the
// defaults), vsz_limit ($default_vsz_limit), idle_kill (0:
// default_idle_kill), user ($default_login_user), chroot (login) and
// postlogin_socket (empty: the protocol's name, Dovecot's post-login
// socket). Limits are computed as Dovecot's master does them:
// client_limit is clamped to service_count when that is non-zero.
//
// Errors are collected, not just the first, and each is printed as
// FILE:LINE: MESSAGE. Config.Print writes the effective non-default
// (loginsvc -n) or all (loginsvc -a) settings; Config.PrintDovecot
// writes Dovecot's side of them (loginsvc --dovecot-conf: Dovecot's login
// listeners off, base_dir and default_login_user as loginsvc has them;
// docs/loginsvc.md, "In front of Dovecot").
package config

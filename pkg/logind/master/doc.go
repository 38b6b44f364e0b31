// Package master is loginsvc's supervisor, in the manner of Dovecot
// 2.3's master for its type = login services (imap-login, pop3-login,
// submission-login, managesieve-login), with the high-security
// (service_count = 1) and high-performance (service_count = 0) modes:
// it owns the listening sockets, starts login processes (ExecRunner
// re-executes the loginsvc binary, which then runs pkg/logind/login),
// hands them clients or lets them accept, tracks every client's state
// through their reports (pkg/logind/ipc), which it checks since a login
// process is not trusted, and applies the spawn, eviction, throttle and
// idle-kill policy. It never imports the login process or a protocol.
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
// chooses the victims: the oldest logging-in client of the source holding
// the most places, exactly one per waiting connection, also when the
// clients become evictable only after the connections arrived (a burst).
// A process whose last client has gone and which is exiting holds no
// place an arrival evicts for, and a waiting connection evicts only after
// evictGrace (50 ms), so a client that reconnects at once never makes the
// service look full (docs/loginsvc.md; evict.go).
// An access socket that cannot be asked at all (connect or fd_send
// fails) closes the client as in Dovecot, but is logged with rip= and
// counted as an access error (Counters.AccessErrors), not as a refusal.
// A login process's RLIMIT_NOFILE allows a second descriptor per client
// when there are login_access_sockets, and is clamped, with a warning,
// to the hard limit the supervisor has.
//
// # Login processes
//
// A login process's RLIMIT_NOFILE allows a second descriptor per client
// when there are login_access_sockets, and is clamped, with a warning,
// to the hard limit the supervisor has. vsz_limit is RLIMIT_DATA plus
// the Go memory limit, not RLIMIT_AS, and must be at least 16M
// (docs/loginsvc.md, "Sandbox"). Its stderr lines are relayed to the
// supervisor's log, bounded in rate and length.
//
// # Who is logged in
//
// Login processes report each client that logged in and was handed to
// a mail process, and each failed authentication (ipc.MsgLogin,
// ipc.MsgAuthFailed; checked like every report). Supervisor.Who lists
// the logged-in clients the processes still hold (TLS clients, relayed
// for their whole session) and, on request, each service's last
// RecentHandoffs plaintext clients, which left loginsvc at the hand-off
// (who.go; loginctl who, docs/loginsvc.md "Who is logged in"). A client
// that has logged in is never evicted and no longer counts for
// login_prelogin_ip_limit.
//
// # Reload and shutdown
//
// shutdown_clients applies as in Dovecot (docs/loginsvc.md, "Reload and
// shutdown"): with yes, the old processes of a reload are shut down
// ReloadShutdownDelay after it and every process at a stop
// (ipc.StopShutdown: pre-login clients and TLS relays end); with no, a
// reload's old processes drain, and at a stop processes that relay
// logged-in sessions detach (ipc.StopDetach, ipc.MsgDetached) and
// outlive the supervisor, which forgets them.
package master

// Package accessd implements tcpwrapd, a drop-in replacement for Dovecot
// 2.3's tcpwrap service (src/util/tcpwrap.c): the unix socket that login
// processes consult through login_access_sockets before they greet a
// client. It answers with hosts_access(5) rules compiled by package
// hostsrules.
//
// The package is the access-check core and the daemon around it: Rules
// and the Reloader that keeps them in step with the files
// (docs/reloading.md), the Checker (Check(ctx, request) Decision, with
// rule options carried out on the client's socket, ClientEffects), the
// statistics and the admin socket (AdminServer), and Run, which wires
// them to the front ends, each a FrontEnd of one Checker over the same
// rules: package dovecotsock (the protocol of Dovecot's login access
// sockets), package dovecot/authpolicy (Dovecot's HTTP auth policy,
// docs/authpolicy.md) and package postfix/smtpdpolicy (Postfix's policy
// service, docs/postfix.md), the last two without a client socket (see
// FrontEnd.CheckNoClient); and to systemd (socket activation by
// FileDescriptorName, ActivationSockets; sd_notify).
// RunDovecot runs the same daemon as a Dovecot service
// (docs/dovecot-managed.md, package dovecot/service).
//
// # Differences from Dovecot's tcpwrap
//
//   - One long-running process answers every check concurrently, instead of
//     a fork and exec per check with client_limit = 1.
//   - The rules are compiled once and reloaded when a file changes (stat
//     polling) or on SIGHUP, instead of being read for every check. The
//     Reloader swaps policies atomically: a check uses one consistent pair of
//     tables. A reload waits until the files are quiet (SettleTime,
//     TornSettleTime) and keeps the previous policy while they are being
//     written, where libwrap would read a half-written file.
//   - Rule options act on the passed client socket (DefaultEnv sets
//     ClientEffects; see wrapopts.Service), but as fits a long-running
//     service: spawn and twist commands run in the background, bounded in
//     number and time, and never delay a verdict; twist does not replace
//     the service, its command gets the client socket and the check is
//     answered by closing the connection, which the login treats as a
//     refusal, as when libwrap's twist replaces tcpwrap; setenv, umask,
//     nice, user and group apply to the check's commands only; severity
//     and rfc931 timeouts apply to one check, never to later ones.
//   - Diagnostics of the rule files, refusals and invalid requests are
//     logged with log/slog (keys daemon, client_addr, server_addr, file,
//     line, rule), not to syslog by libwrap. Dovecot's tcpwrap logs no
//     refusals at all.
//   - The passed socket is never kept after the decision, so a refused
//     client sees the close at once.
//   - A request is checked only with exactly one connected TCP socket and
//     a plain daemon name, else refused; Dovecot's tcpwrap checks a
//     missing, dropped (MSG_CTRUNC) or non-inet descriptor as libwrap's
//     unknown client, which a deny list lets in, uses the first of several,
//     and libwrap opens banners files for any name, "../" included. See
//     dovecotsock.Server.
//   - When accept fails with EMFILE or ENFILE (or connections come within
//     64 of the open-file limit), the server keeps two descriptors free
//     for the sockets requests pass, closing the oldest connection that
//     has sent nothing for 50 ms (never one whose request is waiting in
//     its buffer), and otherwise waits for a connection to end: idle
//     connections cannot starve checks (pkg/accessd/dovecotsock).
//
// # Deployment
//
// Run Dovecot-style under systemd with socket activation (ActivationSockets;
// FileDescriptorName=authpolicy and =postfix name the policy front ends)
// or let tcpwrapd create its socket (Listen), for example
// /run/dovecot/login/ext/access with login_access_sockets = ext/access:
// the socket must be inside the login chroot, in a sub-directory so that
// Dovecot's start-up scan of base_dir/login leaves it alone. Run implements
// the whole daemon including sd_notify(3) messages (Notifier).
package accessd

// Package e2e holds end-to-end tests that run tcpwrapd against a real
// Dovecot 2.3 master (see internal/dovecotlab): real imap-login and
// pop3-login processes ask tcpwrapd, started through systemd socket
// activation, whether real TCP clients from 127.0.0.1 and 127.0.0.2 may
// connect, and the same scenario is replayed against Dovecot's own
// libwrap-based tcpwrap to show that the verdicts agree.
//
// The tests need root and the Debian packages dovecot-core, dovecot-imapd,
// dovecot-pop3d, tcpd and systemd (for systemd-socket-activate), and
// fail2ban for TestFail2banHostsDeny (a private fail2ban-server writing
// the hosts.deny tcpwrapd serves); without them they skip with the
// reason, except under CI=true, where they fail.
// Run them, as root, with
//
//	go test -count=1 -v ./e2e ./internal/dovecotlab
package e2e

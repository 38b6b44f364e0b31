// Package dovecotlab starts a real, throwaway Dovecot 2.3 master for tests
// of the login access-check protocol (login_access_sockets,
// docs/dovecot-managed.md, "The login access-check protocol").
//
// A lab Dovecot is started with [Start], or with [New] followed by
// [Dovecot.Launch] when base_dir must be prepared first. It runs `/usr/sbin/dovecot -F -c
// CONF` as a child of the test process, with a configuration generated
// into the test's temporary directory:
//
//   - base_dir, state_dir, log_path and mail homes all live in that
//     directory; instance_name is unique per lab;
//   - imap and pop3 listen on 127.0.0.1 on free high ports chosen by the
//     harness ([Dovecot.Port]); ssl = no; a static passdb/userdb so that
//     auth starts;
//   - login_access_sockets is [Config.AccessSockets] (default
//     "tcpwrapd/access", i.e. base_dir/login/tcpwrapd/access);
//   - with [Config.OwnTcpwrap] Dovecot's own /usr/lib/dovecot/tcpwrap is
//     configured as the documented `service tcpwrap` with a login/tcpwrap
//     listener; with [Config.TcpwrapExecutable] the same block runs
//     another executable (tcpwrapd --dovecot, docs/dovecot-managed.md), with
//     [Config.TcpwrapSettings] such as client_limit and vsz_limit.
//
// Dovecot's own tcpwrap uses libwrap, which always reads /etc/hosts.allow
// and /etc/hosts.deny. The harness never writes those files. With
// [Config.PrivateHosts] (implied by OwnTcpwrap) the master runs in a
// private mount namespace (unshare -m) in which the lab's own
// hosts.allow/hosts.deny ([Dovecot.HostsAllow], [Dovecot.HostsDeny]) are
// bind-mounted over the /etc files. [Dovecot.SetHosts] rewrites them in
// place, so the mounts see the new contents at once.
//
// An external access daemon (tcpwrapd) must put its socket in a
// sub-directory of base_dir/login: the login processes are chrooted there,
// and Dovecot's start-up scan deletes or trips over sockets placed directly
// in base_dir/login, but does not descend into sub-directories (docs/dovecot-managed.md).
// [Dovecot.ExternalSocketDir] creates such a directory with the right
// ownership; [StartSocketActivated] runs a daemon under
// systemd-socket-activate on a socket there and makes the socket
// connectable by the login user.
//
// Ordering, as verified by this package's tests: the socket directory and
// a live socket in it may exist before the master starts (the master keeps
// a pre-created base_dir/login, correcting its mode to root:dovenull 0750
// if needed, and leaves sub-directories alone), or may be created after
// it; both work, and the socket survives [Dovecot.Restart]. What fails is
// permissions: a socket the login user cannot write (for example
// systemd-socket-activate's root:root 0644) or a directory it cannot
// traverse makes every login fail closed with "connect(ENTRY) failed:
// Permission denied" and no "Client refused" line.
//
// Every process the harness starts is stopped by a t.Cleanup: SIGTERM
// first, then SIGKILL for the process and any descendant still alive after
// a grace period ([Process.Stop]).
//
// All of this needs root and an installed Dovecot 2.3 ([Available],
// [SkipIfUnavailable]).
package dovecotlab

// Package accessbench measures Dovecot 2.3 login access-check services
// (the `login_access_sockets` protocol served by Dovecot's tcpwrap, by
// tcpwrapd and by the null responder) from the client side, exactly as an
// imap-login process talks to them.
//
// One check is, per the protocol (docs/dovecot-managed.md, "The login
// access-check protocol"):
//
//	socket(AF_UNIX, SOCK_STREAM) + connect(path)
//	one sendmsg: data "<name>\n", one SCM_RIGHTS cmsg carrying one fd
//	one read of at most 3 bytes; exactly "1\n" = allow, "0\n" = deny
//	close
//
// The passed fd is the accepted, server-side end of a loopback TCP
// connection whose peer is the configured client address, so the service
// sees getpeername = client and getsockname = our listener, as with a real
// login. By default every worker pre-establishes one such connection and
// passes (a dup of) its fd on every check: a service only calls
// getpeername/getsockname on it, so reusing it changes nothing for the
// service while keeping TCP setup out of the driver's CPU budget. Fresh mode
// (Config.Fresh) dials and accepts a new connection before every check
// instead; the TCP setup is not timed.
//
// The client side uses raw blocking system calls (no netpoller) so that the
// driver adds as little CPU as possible on a small machine. A check's latency
// is measured from socket() to the return of the read.
//
// The package also holds the null responder (ServeNull), a service that
// answers "1\n" to every well-formed request without evaluating anything: it
// is the floor against which services are compared; and Report, which turns
// the JSON result lines of several runs into side-by-side tables.
package accessbench

// Package dovecotsock is tcpwrapd's front end for Dovecot 2.3's login
// access sockets (login_access_sockets, the protocol of Dovecot's tcpwrap
// service, src/util/tcpwrap.c): Server reads each request from a unix
// socket, asks a Checker (accessd.Checker: the rules) and answers.
//
// # Protocol
//
// A login connects (AF_UNIX, SOCK_STREAM) and makes one sendmsg of
// "<name>\n" (imap, pop3, submission, sieve, imap-urlauth) carrying its
// accepted client TCP socket as one SCM_RIGHTS descriptor, then reads once
// up to 3 bytes: "1\n" admits the client, "0\n" or end of file refuses it.
// Server reads the request with one recvmsg of at most 1024 bytes, decides
// with Daemon = name, Client = getpeername and Server = getsockname of the
// passed socket, closes the passed descriptor and writes the answer in one
// write. See Server for the treatment of invalid requests, timeouts and
// requests without exactly one TCP socket; DecodeRequest for the validity
// rule.
//
// The package knows nothing of the rules: it imports no part of accessd,
// and other front ends (an HTTP policy responder, a Postfix policy
// service) are its siblings, each a Server with Serve(ctx, ln) over the
// same Checker.
package dovecotsock

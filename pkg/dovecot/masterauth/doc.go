// Package masterauth is the login process's side of Dovecot's hand-off to
// a post-login service (imap, pop3, submission, sieve): after auth said
// OK, the login process connects to the service's socket
// (base_dir/login/<service>), sends a binary request together with the
// client's socket as SCM_RIGHTS, and reads a 12-byte reply. See
// docs/dovecot-auth.md.
//
// The request is a C struct in the host's native layout: Dovecot 2.3's
// struct master_auth_request (src/lib-master/master-auth.h, 96 bytes on
// 64-bit Linux) or Dovecot 2.4's struct login_request
// (src/lib-login/login-interface.h, 104 bytes: 2.4's struct ip_addr grew
// a 4-byte scope_id). Its flag bits differ too ([Flags]). The request is
// followed by data_size bytes of data ([Data]): the session id and a NUL,
// the protocol's prefix ([IMAPPrefix] for IMAP; none for POP3), and every
// byte of client input the login process had buffered but not used. The
// receiving side reads the struct and the data with one read each, so
// [Send] writes both with one sendmsg.
//
// The reply (struct master_auth_reply, struct login_reply) is {tag,
// status, mail pid}, 12 bytes. The post-login side writes the protocol's
// success reply to the client itself (IMAP "a OK [CAPABILITY …] Logged
// in", POP3 "+OK Logged in."); on failure the login process tells the
// client [InternalFailureText].
//
// This package supports 64-bit Linux only (ino_t and the struct padding
// are those of x86-64 and arm64).
package masterauth

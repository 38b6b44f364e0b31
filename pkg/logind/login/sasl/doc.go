// Package sasl is the protocol-free part of a login process's
// authentication, as Dovecot 2.3's login-common does it (sasl-server.c,
// client-common-auth.c, client-common.c): which mechanisms are
// advertised, how auth's OK and FAIL fields become a Result and the
// client's text, the per-client counters that word the disconnect
// reason ("auth failed, 2 attempts in 5 secs"), and the log elements of
// the Login and Disconnected lines. It does no I/O; pkg/logind/login
// drives the exchange with Dovecot's auth (docs/dovecot-auth.md).
package sasl

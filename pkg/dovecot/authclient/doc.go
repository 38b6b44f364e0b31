// Package authclient speaks Dovecot's auth-client protocol: the protocol
// a login process (imap-login, pop3-login, submission-login,
// managesieve-login) speaks to Dovecot's auth service on base_dir/login/login
// (2.3) or the auth-client socket (2.4). See docs/dovecot-auth.md.
//
// The protocol is line based. Every line is a list of fields separated by
// TAB and ends with LF; inside a field the bytes 0x01, TAB, CR and LF are
// written as 0x01 followed by '1', 't', 'r' and 'n' ([TabEscape]). A line
// is at most [MaxLineLength] bytes.
//
// Handshake (the client may send its lines before reading the server's):
//
//	C: VERSION 1 <minor>      1.2 for Dovecot 2.3, 1.3 for Dovecot 2.4
//	C: CPID <pid>             unique per connection; the post-login side
//	                          finds this connection by it
//	S: VERSION 1 <minor>
//	S: MECH <name> [flags]    one per mechanism
//	S: SPID <pid> / CUID <n> / COOKIE <32 hex> / DONE
//
// Requests, multiplexed over the connection by id:
//
//	C: AUTH <id> <mech> service=|protocol= [fields] [resp=<base64>]
//	S: CONT <id> <base64>     C: CONT <id> <base64>
//	S: OK <id> user=… [fields]  |  S: FAIL <id> [fields]
//	C: CANCEL <id>
//
// A [Client] keeps one connection open for the life of the login
// process, reconnecting with a back-off when it breaks, as Dovecot's
// lib-auth does. [Client.Begin] starts an authentication and returns an
// [Auth]; its Next, Continue and Cancel methods drive it. A successful
// Auth carries what the hand-off to the post-login service needs (its
// id, the auth server's pid and the connection's cookie; see package
// masterauth).
//
// Versions: the client reads the server's VERSION line before it sends its
// own when [Config.Version] is zero, and then speaks 1.2 to a 1.2 server
// and 1.3 to a 1.3 (or newer minor) server. The differences it handles:
// 1.3 names the protocol "protocol=" instead of "service=", always sends
// "final-resp-ok", sends ssl_ja3_hash, and reports a lost connection as
// "code=temp_fail" instead of "temp".
//
// Passwords and SASL responses are [Secret]s: they log as REDACTED.
package authclient

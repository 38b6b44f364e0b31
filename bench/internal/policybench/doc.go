// Package policybench measures policy services over persistent
// connections from the client side, as their real clients talk to them:
//
//   - Dovecot's auth policy (docs/authpolicy.md): HTTP/1.1 keep-alive,
//     one "POST /?command=allow" at a time per connection, with the headers
//     and the JSON body Dovecot 2.3.19 sends (captured from the real
//     Dovecot, default auth_policy_request_attributes; see DovecotRequest).
//     The reply must be a 200 with a Content-Length body.
//   - Postfix's SMTPD policy delegation (docs/postfix.md): one attribute
//     block (Postfix 3.7's RCPT block, see PostfixRequest) at a time per
//     connection, answered by "action=...\n\n".
//
// Each worker owns one connection and has one request in flight (a closed
// loop, like a Dovecot auth process's or an smtpd's connection). The
// client side writes a prepared request and parses the reply with a
// bufio.Reader: no net/http client, so that the driver's own CPU stays
// small on a small machine. Every request's latency (write to the end of
// the reply) is kept; p50, p90 and p99 are exact (nearest rank).
//
// The package also holds the null responders (ServeNullHTTP,
// ServeNullPostfix), services that answer without looking, built on the
// same stacks as tcpwrapd's front ends (net/http with the same server
// settings; net with a goroutine and a bufio.Reader per connection), and
// Report, which prints the side-by-side tables with ratios.
package policybench

// Package authpolicy is tcpwrapd's answer to Dovecot's HTTP auth policy
// protocol (auth_policy_server_url; Dovecot 2.3 and 2.4): the sibling of
// the login access-socket front end for Dovecot 2.4, which has no access
// sockets, over the same compiled hosts.allow/hosts.deny rules. The
// protocol, the Dovecot settings of both versions and the tarpit
// extension are documented in docs/authpolicy.md.
//
// Dovecot's auth process sends, for every authentication, an HTTP/1.1
// keep-alive request
//
//	POST <auth_policy_server_url>?command=allow    before the passdb, and again after a success
//	POST <auth_policy_server_url>?command=report   after every authentication
//
// whose body is one JSON object built from auth_policy_request_attributes
// (every value a string) plus "tls" (and, for report, "success" and
// "policy_reject"; 2.4 adds "fail_type"). A [Server] turns an allow
// request into a [hostsrules.Request] (see [Request.HostsRequest]: daemon
// = "protocol", client = "remote", with the optional "remote_port",
// "local" and "local_port"), asks its [CheckFunc], and answers:
//
//	{"status":0}                 granted: Dovecot continues
//	{"status":N}                 granted by a rule with the tarpit extension (see [StatusOption]): Dovecot waits N s first
//	{"status":-1,"msg":"TEXT"}   denied: the client sees "NO [ALERT] TEXT" (IMAP)
//
// TEXT is the first line of the deciding rule's banners file
// (DIR/<protocol>, %-expanded) or [Server.DenyMessage]. A report request
// is answered 200 with an empty body. Anything else (a malformed or
// oversized body, a missing API header, a slow client) gets an HTTP error
// status or a closed connection: Dovecot counts that as "no verdict" and
// lets the login proceed unless auth_policy_reject_on_fail = yes.
//
// Two optional hooks connect failure-driven bans (pkg/bans): every report
// request goes, parsed into a [Report], to [Server.OnReport], and every
// allow request first asks [Server.Banned] about its client, which a ban
// denies with [Server.BanMessage] before the rules are read.
//
// The password hash attribute "pwhash" is kept in a [Secret], which never
// appears in logs.
package authpolicy

// Package smtpdpolicy is tcpwrapd's answer to Postfix's SMTPD access
// policy delegation (check_policy_service, Postfix 2.1 and later): the
// sibling of the Dovecot front ends, over the same compiled
// hosts.allow/hosts.deny rules, so that Postfix, which never had a
// hosts_access hook, obeys them. The Postfix settings, the listeners and
// when the verdict shows are documented in docs/postfix.md.
//
// Postfix's smtpd keeps one connection (a unix socket or TCP) open and
// sends, for every restriction check_policy_service is part of, a block
// of "name=value" lines ended by an empty line:
//
//	request=smtpd_access_policy
//	protocol_state=RCPT
//	client_address=192.0.2.7
//	client_name=unknown
//	client_port=41234
//	reverse_client_name=mx.example.net
//	server_address=198.51.100.1
//	server_port=25
//	...
//	policy_context=
//
// A [Server] reads it with [ReadRequest] (bounded in bytes, attributes
// and time), turns it into a [hostsrules.Request] (see
// [Request.HostsRequest]: daemon = policy_context, else the listener's
// [Server.Daemon], else "smtpd"; client = client_address with libwrap's
// unknown/paranoid name from client_name and reverse_client_name; server
// = server_address), asks its [CheckFunc], and answers one block:
//
//	action=DUNNO           granted: Postfix goes on with the restriction list
//	action=REJECT TEXT     denied: 554 5.7.1 <name[addr]>: Client host rejected: TEXT
//	action=521 5.7.1 TEXT  denied, with Server.RejectCode "521 5.7.1": Postfix replies and disconnects
//
// TEXT is the first line of the deciding rule's banners file
// (DIR/<daemon>, %-expanded) or [Server.DenyMessage]. A grant is never
// "OK", which would skip the restrictions after the policy check.
//
// A request that cannot be answered (a malformed or oversized block, a
// slow client, a check that times out, a decision forced by an error in
// the rules) gets no reply: the connection is closed, as
// SMTPD_POLICY_README asks of a policy server in trouble, and Postfix
// applies smtpd_policy_service_default_action (451 4.3.5: the SMTP client
// retries later).
package smtpdpolicy

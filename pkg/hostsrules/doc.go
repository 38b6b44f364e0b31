// Package hostsrules implements the TCP wrappers access control language of
// hosts_access(5) and hosts_options(5) exactly as Debian 12's libwrap
// 7.6.q-32 evaluates it, in pure Go: parse, compile, then evaluate many
// times.
//
// # Grammar
//
// A table (hosts.allow, hosts.deny) is read in logical lines: a backslash
// immediately before a newline joins the next physical line (inserting
// nothing); a logical line holds at most 2046 characters plus its newline.
// A line whose first character is "#" is a comment; a line of blanks is
// skipped. Every other line is a rule:
//
//	daemon_list : client_list [ : option : option ... ]
//
// The first ":" outside brackets ends the daemon list, the next one the
// client list. Lists are split at blanks and commas. A list is a sequence
// of patterns, where "a EXCEPT b EXCEPT c" means a EXCEPT (b EXCEPT c).
//
// Daemon patterns: a name (case-insensitive), ALL, KNOWN, "*" and "?"
// wildcards, ".suffix", "prefix.", a server port number ("143", "+0"), and
// daemon@host, which also matches the server endpoint against a host
// pattern.
//
// Client patterns: host patterns and user@host. Host patterns are ALL,
// KNOWN, UNKNOWN, LOCAL, PARANOID, ".domain" (suffix), "net." (prefix),
// n.n.n.n/m.m.m.m, n.n.n.n/len, [v6addr], [v6net]/len, wildcards, "/file"
// (a file of whitespace-separated host patterns), "@netgroup", and names
// or addresses compared case-insensitively. Names come from a Resolver
// with libwrap's double-reverse check; a host that fails it is "paranoid".
//
// Options (hosts_options(5)): allow, deny, spawn, twist, aclexec (Debian),
// banners, setenv, umask, user, group, nice, linger, keepalive, rfc931 and
// severity. The policy validates them with libwrap's rules when their rule
// matches (an invalid option denies) and decides allow and deny itself;
// other side effects are carried out by an Effects implementation.
//
// # Evaluation
//
// Policy.Check asks hosts.allow, then hosts.deny; the first matching rule
// decides, and no match grants. A missing table counts as empty; an
// unreadable hosts.deny, an unterminated last line or an over-long line in
// hosts.deny denies (Debian's fail-closed patches). Runs of address-only
// rules, as blocklists consist of (even a run of one), are indexed by
// address at compile time, so a check costs the same at 1 and at 1,000,000
// lines while the first-match order is kept exactly.
//
// # Memory
//
// A compiled policy keeps an address rule ("ALL: 192.0.2.1") as its
// address, rule number and line number, about 12.5 bytes, and a line of
// several IPv4 addresses as 12 bytes per address, and rebuilds the text
// when a decision or an explanation shows it; every other rule is kept as
// its text, in blocks of 64 KiB, plus 12 bytes. Load compiles a table
// while reading it in blocks of 64 KiB, so a file is never in memory
// whole, and every list it builds is kept in fixed-size blocks and sorted
// by merging them, so building a table takes only a few MiB more than
// the table keeps.
//
// # Differences from tcpd
//
// The reference is the behaviour of the Debian binaries, recorded in a
// differential corpus of tcpdmatch(8) answers (testdata/oracle). Where a
// live libwrap daemon and tcpdmatch differ, this package gives the live
// daemon's answer: names are matched raw (tcpdmatch sanitises them before
// matching), the user and group options never change the checking
// process's ids, and aclexec is run (through Effects). Because tcpwrapd is
// a long-running service, state that libwrap keeps per process (the
// aclexec flag, the rfc931 timeout, severities) lasts for one check only.
// A /file list that includes itself stops at a nesting depth of 32 instead
// of crashing. /file lists are read when the policy is compiled, so a
// change to one takes effect when the policy is rebuilt (tcpwrapd watches
// them).
//
// # Layout
//
// This package parses, compiles and evaluates; the pieces of libwrap and
// glibc it rests on are sub-packages under internal/, which import only
// the standard library and each other: ctext (the C locale's ctype,
// strcasecmp, sscanf, split_at and strtok), libwrapaddr (inet_addr,
// dot_quad_addr, numeric IPv6 with glibc's scope rules, masked_match),
// strmatch (string_match), xgets (reading logical lines), hostsopts (the
// options field's syntax and checks), hostsfiles (hosts(5) and
// netgroup(5)), chunk (the block lists and text blocks of a compiled
// table) and addrindex (the index of runs of address-only rules).
package hostsrules

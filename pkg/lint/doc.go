// Package lint checks hosts.allow and hosts.deny files the way tcpdchk(8)
// does, and finds what tcpdchk never reported: rules that can never match,
// rules that are never reached, comments that are really rules, and daemon
// names that Dovecot's login processes never send.
//
// Lint reads each table leniently (like tcpdchk: an over-long or
// unterminated line is reported and the rest of the file is still read)
// and reports every problem as a Diagnostic with file, line, column, a
// Severity and a stable Code. Severities:
//
//   - error: the file does not do what it says. A rule or pattern can never
//     match, a line is ignored, an option makes libwrap deny at once, or
//     libwrap stops reading the file.
//   - warning: libwrap (or tcpdchk) would warn, or the rule works in a way
//     the author probably did not mean.
//   - info: worth knowing, not a problem.
//
// A hint that is an edit ("write [2001:db8::]/32", "did you mean ALL?") also
// comes as a Fix (Old text at the diagnostic's column, New text): applied,
// the rule does what the admin meant, which the package's tests check by
// applying each Fix, linting again and evaluating the result.
//
// Codes (stable; tcpdchk's message is quoted where it has one):
//
//	cannot-open            error    the table or a /file list cannot be read
//	file-missing           info     a table does not exist (counts as empty)
//	not-a-file             warning  a table is a directory (counts as empty)
//	world-writable         warning  "<path>: world writable"
//	missing-newline        error    the last line has no newline: libwrap stops there
//	line-too-long          error    a logical line over 2046 characters: libwrap stops there
//	continuation-at-end    error    the last line ends in a backslash: libwrap reads it as a line
//	                                without newline and stops there
//	comment-continuation   error    a comment ending in a backslash swallows the next line
//	broken-continuation    error    a backslash followed by blanks does not continue the line
//	crlf-continuation      error    a backslash before CR-LF does not continue the line (plain
//	                                CR-LF line endings are fine: CR separates like a blank)
//	missing-separator      error    `missing ":" separator`: the line is skipped
//	indented-comment       error    a "#" line with leading blanks is a rule, not a comment
//	                       warning  (the same line without ":" is skipped, so harmless)
//	comment-in-rule        warning  "#" after a rule: the words after it are list items
//	                       error    (when a word after it is ALL or KNOWN)
//	bare-ipv6              error    an IPv6 address without brackets is cut at its first ":"
//	empty-list             error    "daemon list is empty" / "client list is empty": never matches
//	leading-except         error    a list starting with EXCEPT never matches
//	trailing-except        warning  "... ends in EXCEPT": the EXCEPT does nothing
//	fail-keyword           error    "FAIL is no longer recognized (use EXCEPT or DENY instead)"
//	reserved-word          warning  "daemon name may be reserved word" (KNOWN, LOCAL, PARANOID),
//	                                "user name may be reserved word" (LOCAL, PARANOID)
//	daemon-name            warning  daemon name begins with "@", "/" or a dot, or ends in a dot
//	user-name              warning  user name begins with "@", "/" or a dot, or ends in a dot
//	dovecot-daemon-name    warning  a name no Dovecot login process sends (imaps, imap-login,
//	                                managesieve, dovecot ...): they send imap, pop3,
//	                                submission, sieve
//	misspelt-wildcard      warning  one slip from a wildcard (ALLL, LOCALL, PARANIOD): did you mean
//	                                ALL...? libwrap compares it as a literal name (no DNS check follows)
//	misspelt-daemon        warning  one slip from a Dovecot daemon name (imapp, submision); classic
//	                                inetd names ending in "d" (imapd, ipop3d) are left alone
//	unknown-wildcard       warning  an all-capitals word that is no wildcard (BLOCKED): a literal name
//	empty-host             error    "user@" with no host part never matches
//	unknown-netgroup       warning  "<g>: unknown or empty netgroup"
//	missing-file-list      warning  a /file list that does not exist matches nothing
//	file-list-word         warning  a word in a /file list that is not what it looks like
//	                                (a comma list, a "#" comment, EXCEPT, user@host)
//	file-list-loop         error    a /file list that names itself (libwrap recurses until it crashes)
//	bad-netmask            error    "<net>/<mask>: bad net/mask pattern": never matches
//	netmask-host-bits      error    the net has bits outside the mask (10.1.2.3/8): never matches
//	netmask-all-ones       error    mask 255.255.255.255 is invalid in libwrap (use /32): never matches
//	netmask-zero           error    prefix /0 is invalid in libwrap (use 0.0.0.0/0.0.0.0 or ALL)
//	netmask-atoi           warning  a prefix length with trailing text ("/8x" is read as /8)
//	netmask-noncontiguous  warning  a mask such as 255.0.255.0
//	nondecimal-address     warning  an octal or hex part (010.0.0.0 is 8.0.0.0)
//	bad-ipv6               error    "[...]" that is not an IPv6 address: never matches
//	bad-ipv6-scope         error    "[fe80::1%nosuch]", "[::1%lo]": a scope glibc's getaddrinfo refuses
//	                                on this host (not an interface of it, or a name on an address
//	                                that is not link-local): never matches
//	incomplete-address     error    a partial address without a final dot ("192.168") never matches
//	bad-address            error    an address with parts over 255 or leading zeros never matches
//	numeric-begins-with-dot warning "network number begins with dot"
//	name-ends-in-dot       warning  "domain or host name ends in dot"
//	host-not-found         warning  "<h>: host not found" (DNS check)
//	host-alias             warning  "<h>: hostname alias (official name: <c>)" (DNS check)
//	no-reverse-name        info     "host address <a>->name lookup failed" (only with ReverseLookups)
//	bad-option             error    any options error (libwrap denies when the rule matches)
//	unknown-percent        warning  "unrecognized %<c>" in an option value
//	banners-missing        warning  a banners directory that does not exist
//	privilege-option       info     user/group options: no-ops in Debian's tcpd
//	aclexec-decided        warning  allow or deny after aclexec decides whatever aclexec returns
//	                                (a failed aclexec does not make the rule fall through)
//	bad-policy-status      warning  setenv TCPWRAPD_POLICY_STATUS with a value that is not a whole
//	                                number of seconds from 1: the auth policy front end grants
//	                                without a tarpit (docs/authpolicy.md)
//	policy-tarpit-denied   warning  the tarpit option in a rule that denies: a denial never tarpits
//	policy-tarpit          info     the tarpit option: the auth policy answers {"status":N}
//	                                (N capped at 30)
//	unreachable-rules      warning  a rule that matches every request: every rule after it is dead
//	shadowed-rule          warning  an earlier rule always matches first: this rule is never used
//
// Differences from tcpdchk, on purpose: inetd.conf is not read (Dovecot has
// none); options are validated, never executed; wildcard patterns are not
// looked up in DNS; words after a mid-line "#" are reported once as a
// comment, not each as an unknown host; every token of a client list is
// checked (tcpdchk skips those after a /file); literal addresses are
// reverse-looked-up only with Options.ReverseLookups.
package lint

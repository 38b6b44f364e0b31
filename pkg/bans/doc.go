// Package bans is tcpwrapd's failure-driven deny set: what fail2ban
// learns from log files, learned from the failed logins Dovecot reports
// to its auth policy server (docs/authpolicy.md, "Failure-driven bans").
//
// A source is a client address grouped by prefix: an IPv4 address is its
// own source (/32, [Config.IPv4Prefix]), an IPv6 client is its /64
// ([Config.IPv6Prefix]), because one host owns a whole /64. Every failed
// authentication the front end reports ([Bans.ReportFailure]) carries
// Dovecot's pwhash, a truncated hash of nonce, login and password. A source
// that fails with more than [Config.Threshold] distinct pwhash values
// within [Config.Window] is banned for [Config.BanFor]: [Bans.Banned]
// then says so, and the front end denies before it consults the rule
// files.
//
// Distinct, not total: a user whose phone retries one stale password
// every minute sends the same pwhash every time and is never banned, nor
// are the other users behind the same NAT address, until the number of
// different passwords (or logins) tried from the address within the
// window exceeds the threshold. A guesser tries a new password (or a new
// login) every time. A success resets nothing: a guesser that owns one
// account could otherwise log in between guesses to wipe its count, and
// a success from one user behind a NAT says nothing about another.
//
// Memory is bounded under address spraying: at most [Config.MaxSources]
// sources are tracked (least recently failed first out), each with at most
// Threshold+1 hashes (kept as 64-bit keyed hashes of pwhash, never the
// value itself), and at most MaxSources bans are held (the one expiring
// first makes room). Every report and check is O(1) amortized; bans
// expire lazily, without a goroutine or timer per ban.
//
// With [Config.StateFile] set the bans (not the counters) survive a
// restart: [Bans.Save] writes them atomically as versioned JSON, and
// [New] loads them; a missing file is an empty set, a corrupt one is
// logged and ignored.
package bans

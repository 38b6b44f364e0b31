// Package resolve looks host names up for tcpwrapd's long-running access
// service the way Debian's libwrap does through glibc, but cached,
// shared and bounded in time.
//
// [Resolver] implements [hostsrules.Resolver]: the rules engine calls it
// only when a rule needs a client's name, and itself performs libwrap's
// double-reverse check: the PTR name is looked up forward in
// the client's address family, and the host becomes "paranoid" when the
// reverse answer is numeric, the forward lookup fails, the canonical name
// differs, or the address is not among the answers; it stays "unknown"
// when there is no reverse answer at all.
//
// Sources follow the "hosts:" line of /etc/nsswitch.conf (files and dns
// only). "files" is /etc/hosts with glibc's semantics
// ([hostsrules.HostsResolver]), read again whenever it changes. "dns" is
// asked directly with github.com/miekg/dns, using the nameservers, search
// list, ndots, timeout and attempts of /etc/resolv.conf (read again when
// it changes), and answers are read as glibc 2.36's nss_dns reads them:
// CNAMEs are followed, the canonical name is the last valid CNAME target,
// PTR targets are returned raw (numeric ones included, so that they make
// the host paranoid as in libwrap, where Go's resolver would drop them).
//
// DNS answers are cached: positive ones for the records' TTL clamped to
// [MinTTL, MaxTTL], negative ones (NXDOMAIN, no data) for the SOA minimum
// or NegativeTTL, failures (SERVFAIL, timeouts) for FailureTTL. Concurrent
// lookups of the same name share one upstream query. A lookup returns as
// soon as the caller's context ends (the name then becomes unknown, or
// paranoid for a forward lookup, as a DNS timeout does in libwrap); the
// shared query goes on and fills the cache. So a dead DNS server delays
// only the checks that need a name, each by at most its own deadline,
// and only until the failure is cached.
//
// [NetgroupFile] gives @netgroup patterns an /etc/netgroup that is read
// again when it changes.
//
// Differences from glibc: nsswitch actions such as [NOTFOUND=return]
// and other sources (myhostname, mdns) are ignored; without "search" or
// "domain" in resolv.conf the search list is empty (glibc derives it from
// the host name); "options rotate", "edns0" and "single-request" have no
// effect; A and AAAA for network "ip" are asked one after the other.
package resolve

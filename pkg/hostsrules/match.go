package hostsrules

import (
	"context"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/tcpwrapd/tcpwrapd/pkg/hostsrules/internal/ctext"
	"github.com/tcpwrapd/tcpwrapd/pkg/hostsrules/internal/libwrapaddr"
	"github.com/tcpwrapd/tcpwrapd/pkg/hostsrules/internal/strmatch"
)

// host is the lazily evaluated view of one endpoint (libwrap's host_info).
type host struct {
	ep       *Endpoint
	addr     string
	addrDone bool
	name     string
	nameDone bool
}

// check is the state of one Check call: the request with its lazily
// evaluated fields, the environment, and the sticky aclexec flag.
type check struct {
	ctx    context.Context
	p      *Policy
	env    *Env
	req    *Request
	daemon string
	user   string
	// userDone: the user field is evaluated (given, looked up or unknown).
	userDone       bool
	client, server host
	aclexecFailed  bool
	listDepth      int
	explain        bool
	why            []string
	trace          []Step
	// toks holds the tokens of the rule being evaluated.
	toks []string
	// linear disables the address index (tests compare both paths).
	linear bool
	// identSecs is the RFC 931 timeout; 0 means the default of 10 s.
	identSecs int
}

func truncate(s string) string {
	if len(s) > maxField {
		return s[:maxField]
	}
	return s
}

// hostAddr is eval_hostaddr: the numeric address text, or "unknown".
func (c *check) hostAddr(h *host) string {
	if !h.addrDone {
		h.addrDone = true
		switch {
		case h.ep.AddrText != "":
			h.addr = truncate(h.ep.AddrText)
		case h.ep.Addr.IsValid():
			h.addr = h.ep.Addr.Addr().String()
		default:
			h.addr = Unknown
		}
	}
	return h.addr
}

// hostName is eval_hostname: the verified host name, "unknown" or
// "paranoid". It starts the lookup on first use.
func (c *check) hostName(h *host) string {
	if !h.nameDone {
		h.nameDone = true
		switch {
		case h.ep.Name != "":
			h.name = truncate(h.ep.Name)
		case h.ep.Addr.IsValid() && c.env.Resolver != nil:
			h.name = verifiedName(c.ctx, c.env.Resolver, h.ep.Addr.Addr(), c.logf)
		default:
			h.name = Unknown
		}
	}
	return h.name
}

// hostInfo is eval_hostinfo: the name if it was already evaluated and is
// known, else the address. It never starts a lookup.
func (c *check) hostInfo(h *host) string {
	if h.nameDone && knownName(h.name) {
		return h.name
	}
	return c.hostAddr(h)
}

// userName is eval_user: the client user, looked up by ident on first use.
func (c *check) userName() string {
	if !c.userDone {
		c.userDone = true
		c.user = Unknown
		if c.req.User != "" {
			c.user = truncate(c.req.User)
		} else if c.env.Ident != nil {
			cl, sv := c.req.Client.Addr, c.req.Server.Addr
			if cl.IsValid() && sv.IsValid() && cl.Addr().Unmap().Is4() == sv.Addr().Unmap().Is4() {
				if u, err := c.env.Ident(c.ctx, cl, sv, c.identTimeout()); err == nil && u != "" {
					c.user = truncate(u)
				}
			}
		}
	}
	return c.user
}

// identTimeout is the ident timeout: 10 s (RFC931_TIMEOUT) unless an
// rfc931 option set another.
func (c *check) identTimeout() time.Duration {
	if c.identSecs > 0 {
		return time.Duration(c.identSecs) * time.Second
	}
	return 10 * time.Second
}

func (c *check) logf(format string, args ...any) {
	if c.env.Logf != nil {
		c.env.Logf(format, args...)
	}
}

func knownName(s string) bool {
	return !ctext.EqualFold(s, Unknown) && !ctext.EqualFold(s, Paranoid)
}

// listMatch is libwrap's list_match: the first token that matches decides,
// unless it is followed by EXCEPT and the exception list matches.
func (c *check) listMatch(toks []string, clients bool) bool {
	for i, t := range toks {
		if ctext.EqualFold(t, "EXCEPT") {
			return false
		}
		var m bool
		if clients {
			m = c.clientMatch(t)
		} else {
			m = c.serverMatch(t)
		}
		if !m {
			continue
		}
		for j := i + 1; j < len(toks); j++ {
			if ctext.EqualFold(toks[j], "EXCEPT") {
				if c.explain { // the call boxes t even when note does nothing
					c.note("%q matched, EXCEPT [", t)
				}
				n := len(c.why)
				if c.listMatch(toks[j+1:], clients) {
					c.note("] matched too, so excluded")
					return false
				}
				if len(c.why) == n {
					c.note("nothing")
				}
				c.note("] did not match")
				return true
			}
		}
		if c.explain {
			c.note("%q matched", t)
		}
		return true
	}
	return false
}

// note adds an explanation when the check explains itself. Its callers
// with arguments test c.explain first: boxing the arguments allocates.
func (c *check) note(format string, args ...any) {
	if c.explain {
		c.why = append(c.why, sprintf(format, args...))
	}
}

// serverMatch matches one daemon-list token (server_match with Debian's
// port patterns).
func (c *check) serverMatch(tok string) bool {
	daemonPat, hostPat, isAt := ctext.SplitAtFrom1(tok, '@')
	if !c.daemonMatch(daemonPat) {
		return false
	}
	if !isAt {
		return true
	}
	return c.hostMatch(hostPat, &c.server)
}

// daemonMatch matches the daemon part: a port number pattern against the
// server port, otherwise string_match against the daemon name.
func (c *check) daemonMatch(pat string) bool {
	if port, ok := portPattern(pat); ok {
		sv := c.req.Server.Addr
		return sv.IsValid() && uint32(sv.Port()) == port
	}
	return strmatch.Match(pat, c.daemon)
}

// portPattern reports whether pat reads as sscanf("%u%c") with exactly one
// conversion (optional sign, decimal digits, nothing after) with a value of
// at most 65535 after reduction modulo 2^32.
func portPattern(pat string) (uint32, bool) {
	neg, mag, ok := ctext.ScanNumber(pat, 10)
	if !ok {
		return 0, false
	}
	u := uint32(min(mag, 0xffffffff)) // strtoul saturates at ULONG_MAX
	if neg {
		u = -u
	}
	return u, u <= 65535
}

// clientMatch matches one client-list token (client_match).
func (c *check) clientMatch(tok string) bool {
	userPat, hostPat, isAt := ctext.SplitAtFrom1(tok, '@')
	if !isAt {
		return c.hostMatch(tok, &c.client)
	}
	return c.hostMatch(hostPat, &c.client) && strmatch.Match(userPat, c.userName())
}

// hostMatch is libwrap's host_match for one host pattern.
func (c *check) hostMatch(tok string, h *host) bool {
	switch {
	case strings.HasPrefix(tok, "@"):
		name := c.hostName(h)
		return c.env.Netgroups != nil && c.env.Netgroups.InNetgroup(tok[1:], name)
	case strings.HasPrefix(tok, "/"):
		return c.fileMatch(tok, h)
	case ctext.EqualFold(tok, "KNOWN"):
		name := c.hostName(h)
		return !ctext.EqualFold(c.hostAddr(h), Unknown) && knownName(name)
	case ctext.EqualFold(tok, "LOCAL"):
		name := c.hostName(h)
		return !strings.Contains(name, ".") && knownName(name)
	}
	if netTok, maskTok, ok := ctext.SplitAt(tok, '/'); ok {
		return libwrapaddr.MaskedMatch(netTok, maskTok, c.hostAddr(h))
	}
	if strmatch.Match(tok, c.hostAddr(h)) {
		return true
	}
	return notInAddr(tok) && strmatch.Match(tok, c.hostName(h))
}

// notInAddr is NOT_INADDR: the token has a character other than digits,
// dots and slashes, so it may be a name.
func notInAddr(tok string) bool {
	for i := 0; i < len(tok); i++ {
		c := tok[i]
		if !ctext.IsDigit(c) && c != '.' && c != '/' {
			return true
		}
	}
	return false
}

// maxListDepth bounds /file list nesting; libwrap recurses until it runs
// out of file descriptors or stack, we treat deeper nesting as no match.
const maxListDepth = 32

// fileMatch is hostfile_match: any word of the file that host_match
// accepts makes the file match.
func (c *check) fileMatch(path string, h *host) bool {
	if c.listDepth >= maxListDepth {
		c.logf("open %s: nesting too deep (a /file list includes itself?)", path)
		return false
	}
	fl := c.p.fileList(path, c.env)
	if fl.err != nil {
		c.logf("open %s: %s", path, strerror(fl.err))
		return false
	}
	c.listDepth++
	defer func() { c.listDepth-- }()
	for _, w := range fl.words {
		if c.hostMatch(w, h) {
			return true
		}
	}
	return false
}

// fileList is a preloaded /file pattern list.
type fileList struct {
	info  FileInfo
	words []string
	err   error // a non-ENOENT open error: warn and do not match
}

func (p *Policy) fileList(path string, env *Env) *fileList {
	if fl, ok := p.lists[path]; ok {
		return fl
	}
	read := os.ReadFile
	if env.ReadFile != nil {
		read = env.ReadFile
	}
	return loadFileList(path, read)
}

// ValidScope reports whether libwrap reads "[a%scope]" as an address:
// whether glibc's getaddrinfo accepts the scope (inet6_scopeid_pton), the
// name of an existing interface for a link-local or node- or link-local
// multicast address, else a decimal number up to 2^32-1. Tools that check
// rules (pkg/lint) use it.
func ValidScope(a netip.Addr, scope string) bool { return libwrapaddr.ValidScope(a, scope) }

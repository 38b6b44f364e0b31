package lint

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/tcpwrapd/tcpwrapd/pkg/hostsrules"
)

// Shadowing: rule B is never used when, for every pair of a daemon token and
// a client token of B (before EXCEPT), an earlier rule that always decides
// matches every request that pair matches. Only the simple decidable cases
// count as covering: ALL, an identical token (names without regard to case),
// an address or net inside an earlier net or numeric prefix, a name inside
// an earlier ".domain" suffix, and a user@host whose host is covered.
// Earlier rules with EXCEPT cover nothing, nor do rules with aclexec unless
// allow, deny or twist follows it (the rule then decides anyway).

// ref names a rule.
type ref struct {
	t   *parsedTable
	idx int
}

func (r ref) rule() *hostsrules.Rule { return &r.t.rules[r.idx] }

// seqRef is a rule with the order in which its entry was added to a cover:
// when several entries cover a token, the first added one is reported.
type seqRef struct {
	seq int
	r   ref
}

// cover holds what earlier rules cover for one daemon key. Everything is
// kept in maps so that a lookup costs the same however many rules came
// before (a fail2ban blocklist has one rule per address): nets maps each
// address or net (masked) to the first entry for it, and the lookup tries
// only the prefix lengths in use; suffixes maps each ".domain" to the first
// entry for it, and the lookup tries each dot of the name.
type cover struct {
	all      *ref
	exact    map[string]ref
	nets     map[netip.Prefix]seqRef
	lens4    [33]bool  // prefix lengths in nets, IPv4
	lens6    [129]bool // prefix lengths in nets, IPv6
	suffixes map[string]seqRef
	seq      int
}

type shadowIndex map[string]*cover

func (ix shadowIndex) get(key string) *cover {
	c := ix[key]
	if c == nil {
		c = &cover{exact: map[string]ref{}, nets: map[netip.Prefix]seqRef{}, suffixes: map[string]seqRef{}}
		ix[key] = c
	}
	return c
}

// daemonKey is the index key of a daemon token.
func daemonKey(tok string) string {
	if _, _, ok := hostsrules.SplitAtFrom1(tok, '@'); ok {
		return "tok:" + strings.ToLower(tok)
	}
	return strings.ToLower(tok)
}

// norm normalises a client token for identity: names are case-insensitive,
// /file paths and netgroups are not.
func norm(tok string) string {
	if strings.HasPrefix(tok, "/") || strings.HasPrefix(tok, "@") {
		return tok
	}
	return strings.ToLower(tok)
}

// hostPrefix returns the address set of a numeric host pattern, if it is
// one of the simple forms.
func hostPrefix(tok string) (netip.Prefix, bool) {
	if before, _, ok := hostsrules.SplitAt(tok, '/'); ok {
		i := len(before)
		net, mask := tok[:i], tok[i+1:]
		if strings.HasPrefix(net, "[") {
			a, err := netip.ParseAddr(strings.TrimSuffix(net[1:], "]"))
			n, clean := atoi(mask)
			if err != nil || !a.Is6() || !clean || n < 0 || n > 128 || a.Zone() != "" {
				return netip.Prefix{}, false
			}
			return netip.PrefixFrom(a, n).Masked(), true
		}
		nv, ok, dec := dotQuad(net)
		if !ok || !dec {
			return netip.Prefix{}, false
		}
		bits := -1
		if mv, ok, dec := dotQuad(mask); ok && dec {
			for b := 0; b <= 32; b++ {
				if b < 32 && mv == ^uint32(0)<<(32-b) || b == 32 && mv == ^uint32(0) {
					bits = b
				}
			}
		} else if n, clean := atoi(mask); clean && n >= 1 && n <= 32 {
			bits = n
		}
		if bits < 0 {
			return netip.Prefix{}, false
		}
		var mv uint32
		if bits > 0 {
			mv = ^uint32(0) << (32 - bits)
		}
		if nv&^mv != 0 {
			return netip.Prefix{}, false
		}
		return netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(nv >> 24), byte(nv >> 16), byte(nv >> 8), byte(nv)}), bits), true
	}
	if strings.HasPrefix(tok, "[") && strings.HasSuffix(tok, "]") {
		a, err := netip.ParseAddr(tok[1 : len(tok)-1])
		if err != nil || !a.Is6() || a.Zone() != "" {
			return netip.Prefix{}, false
		}
		return netip.PrefixFrom(a, 128), true
	}
	if !isNumeric(tok) || strings.HasPrefix(tok, ".") {
		return netip.Prefix{}, false
	}
	parts := strings.Split(strings.TrimSuffix(tok, "."), ".")
	prefix := strings.HasSuffix(tok, ".")
	if prefix && len(parts) > 3 || !prefix && len(parts) != 4 {
		return netip.Prefix{}, false
	}
	var b [4]byte
	for i, part := range parts {
		// part is all digits (isNumeric): decimal 0-255 without leading zeros.
		if part == "" || len(part) > 3 || len(part) > 1 && part[0] == '0' {
			return netip.Prefix{}, false
		}
		n := 0
		for j := 0; j < len(part); j++ {
			n = n*10 + int(part[j]-'0')
		}
		if n > 255 {
			return netip.Prefix{}, false
		}
		b[i] = byte(n)
	}
	return netip.PrefixFrom(netip.AddrFrom4(b), 8*len(parts)), true
}

// add records what client token tok of rule r covers under daemon key dk.
func (ix shadowIndex) add(dk, tok string, r ref) {
	c := ix.get(dk)
	switch {
	case strings.EqualFold(tok, "ALL"):
		if c.all == nil {
			rr := r
			c.all = &rr
		}
		return
	}
	if _, ok := c.exact[norm(tok)]; !ok {
		c.exact[norm(tok)] = r
	}
	if _, _, ok := hostsrules.SplitAtFrom1(tok, '@'); ok {
		return
	}
	if p, ok := hostPrefix(tok); ok {
		p = p.Masked()
		c.seq++
		if _, ok := c.nets[p]; !ok {
			c.nets[p] = seqRef{c.seq, r}
		}
		if p.Addr().Is4() {
			c.lens4[p.Bits()] = true
		} else {
			c.lens6[p.Bits()] = true
		}
		return
	}
	if strings.HasPrefix(tok, ".") && !hasWildcard(tok) && !isNumeric(tok) && len(tok) > 1 {
		s := strings.ToLower(tok)
		c.seq++
		if _, ok := c.suffixes[s]; !ok {
			c.suffixes[s] = seqRef{c.seq, r}
		}
	}
}

// covered finds an earlier rule under c that matches everything client
// token tok matches.
func (c *cover) covered(tok string) (ref, bool) {
	if c == nil {
		return ref{}, false
	}
	if c.all != nil {
		return *c.all, true
	}
	if r, ok := c.exact[norm(tok)]; ok {
		return r, true
	}
	host := tok
	if _, h, ok := hostsrules.SplitAtFrom1(tok, '@'); ok {
		host = h
		if r, ok := c.exact[norm(host)]; ok {
			return r, true
		}
		if strings.EqualFold(host, "ALL") {
			return ref{}, false
		}
	}
	var best seqRef
	consider := func(e seqRef, ok bool) {
		if ok && (best.seq == 0 || e.seq < best.seq) {
			best = e
		}
	}
	if p, ok := hostPrefix(host); ok {
		// An entry covers p when it is p's address masked to one of the
		// entry lengths up to p's own.
		lens := c.lens4[:]
		if !p.Addr().Is4() {
			lens = c.lens6[:]
		}
		for bits := 0; bits <= p.Bits() && bits < len(lens); bits++ {
			if !lens[bits] {
				continue
			}
			if q, err := p.Addr().Prefix(bits); err == nil {
				e, ok := c.nets[q]
				consider(e, ok)
			}
		}
		return best.r, best.seq > 0
	}
	if !isNumeric(host) && !hasWildcard(host) && !strings.HasPrefix(host, "@") && !strings.HasPrefix(host, "/") && !strings.HasPrefix(host, "[") && len(c.suffixes) > 0 {
		// A ".domain" entry covers a longer name that ends in it, so it
		// is what follows one of the name's dots (not the first byte).
		h := strings.ToLower(host)
		for i := 1; i < len(h); i++ {
			if h[i] == '.' {
				e, ok := c.suffixes[h[i:]]
				consider(e, ok)
			}
		}
	}
	return best.r, best.seq > 0
}

// analysable reports whether a rule's lists have the simple shape the
// analysis understands.
func analysable(r *hostsrules.Rule) bool {
	return len(r.Daemons) > 0 && len(r.Clients) > 0 && !isExcept(r.Daemons[0].Text) && !isExcept(r.Clients[0].Text)
}

func hasExcept(list []hostsrules.Token) bool {
	return slices.ContainsFunc(list, func(t hostsrules.Token) bool { return isExcept(t.Text) })
}

func isCatchAll(r *hostsrules.Rule) bool {
	if hasExcept(r.Daemons) || hasExcept(r.Clients) {
		return false
	}
	all := func(t hostsrules.Token) bool { return strings.EqualFold(t.Text, "ALL") }
	return slices.ContainsFunc(r.Daemons, all) && slices.ContainsFunc(r.Clients, all)
}

// shadows runs the analysis over tables read in order.
func (l *linter) shadows(tables []*parsedTable) {
	ix := shadowIndex{}
	var catchAll *ref
	var dead []ref // rules after the catch-all
	for _, t := range tables {
		for i := range t.rules {
			r := &t.rules[i]
			me := ref{t, i}
			if t.broken[i] || !analysable(r) {
				continue
			}
			if catchAll != nil {
				dead = append(dead, me)
				continue
			}
			if by, ok := ix.shadowedBy(r); ok {
				l.reportShadow(me, by)
				continue
			}
			if !t.decisive[i] || hasExcept(r.Daemons) || hasExcept(r.Clients) {
				continue
			}
			if isCatchAll(r) {
				catchAll = &me
			}
			for _, d := range r.Daemons {
				for _, c := range r.Clients {
					ix.add(daemonKey(d.Text), c.Text, me)
				}
			}
		}
	}
	if catchAll != nil && len(dead) > 0 {
		l.reportCatchAll(*catchAll, dead)
	}
}

// shadowedBy returns the earlier rules that together cover r, in order.
func (ix shadowIndex) shadowedBy(r *hostsrules.Rule) ([]ref, bool) {
	var by []ref
	for _, d := range positive(r.Daemons) {
		keys := []string{"all"}
		if !strings.EqualFold(d.Text, "ALL") {
			keys = append(keys, daemonKey(d.Text))
			if name, _, ok := hostsrules.SplitAtFrom1(d.Text, '@'); ok {
				keys = append(keys, strings.ToLower(name))
			}
		}
		for _, c := range positive(r.Clients) {
			found := false
			for _, k := range keys {
				if e, ok := ix[k].covered(c.Text); ok {
					found = true
					if !slices.Contains(by, e) {
						by = append(by, e)
					}
					break
				}
			}
			if !found {
				return nil, false
			}
		}
	}
	slices.SortFunc(by, func(a, b ref) int {
		if a.t != b.t {
			if a.t.role == RoleAllow {
				return -1
			}
			return 1
		}
		return a.idx - b.idx
	})
	return by, len(by) > 0
}

func (l *linter) where(from *parsedTable, r ref) string {
	rr := r.rule()
	if r.t == from {
		return fmt.Sprintf("line %d", ruleLine(rr))
	}
	return fmt.Sprintf("%s line %d", r.t.path, ruleLine(rr))
}

func (l *linter) reportShadow(me ref, by []ref) {
	r := me.rule()
	if len(by) == 1 {
		a := by[0].rule()
		if sameLists(a, r) {
			l.addf(me.t.path, ruleLine(r), 0, Warning, "shadowed-rule", "remove it",
				"rule is never used: it repeats the daemons and clients of %s (%q), which decides first", l.where(me.t, by[0]), strings.TrimSpace(a.Text))
			return
		}
		l.addf(me.t.path, ruleLine(r), 0, Warning, "shadowed-rule", "remove it, or move it before the broader rule",
			"rule is never used: %s (%q) matches every request it matches and decides first", l.where(me.t, by[0]), strings.TrimSpace(a.Text))
		return
	}
	var ws []string
	for _, b := range by {
		ws = append(ws, l.where(me.t, b))
	}
	l.addf(me.t.path, ruleLine(r), 0, Warning, "shadowed-rule", "remove it, or move it before the broader rules",
		"rule is never used: %s together match every request it matches and decide first", strings.Join(ws, ", "))
}

func sameLists(a, b *hostsrules.Rule) bool {
	eq := func(x, y []hostsrules.Token) bool {
		return slices.EqualFunc(x, y, func(p, q hostsrules.Token) bool { return norm(p.Text) == norm(q.Text) })
	}
	return eq(a.Daemons, b.Daemons) && eq(a.Clients, b.Clients)
}

func (l *linter) reportCatchAll(ca ref, dead []ref) {
	counts := map[*parsedTable][]int{}
	var order []*parsedTable
	for _, d := range dead {
		if _, ok := counts[d.t]; !ok {
			order = append(order, d.t)
		}
		counts[d.t] = append(counts[d.t], ruleLine(d.rule()))
	}
	var parts []string
	for _, t := range order {
		lines := counts[t]
		what := fmt.Sprintf("%d rule", len(lines))
		if len(lines) > 1 {
			what += "s"
		}
		span := fmt.Sprintf("line %d", lines[0])
		if len(lines) > 1 {
			span = fmt.Sprintf("lines %d-%d", lines[0], lines[len(lines)-1])
		}
		if t == ca.t {
			parts = append(parts, fmt.Sprintf("the %s after it (%s)", what, span))
		} else {
			parts = append(parts, fmt.Sprintf("all %s of %s (%s)", what, t.path, span))
		}
	}
	r := ca.rule()
	l.addf(ca.t.path, ruleLine(r), 0, Warning, "unreachable-rules", "move this rule to the end, or remove it",
		"this rule matches every request, so %s are never used", strings.Join(parts, " and "))
}

package resolve

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// fetchPTR asks DNS for the PTR record of addr, as glibc's getanswer_ptr
// reads the answer: CNAMEs are followed (RFC 2317 classless delegation),
// the first PTR record owned by the expected name wins, and an owner
// name that is not a valid host name gives no answer.
func (r *Resolver) fetchPTR(ctx context.Context, addr netip.Addr) (result, time.Duration) {
	qname, err := dns.ReverseAddr(addr.String())
	if err != nil {
		return result{err: fmt.Errorf("lookup %s: %w", addr, err)}, 0
	}
	resp, err := r.query(ctx, r.resolv.get(), qname, dns.TypePTR)
	if err != nil {
		return r.failed(fmt.Errorf("lookup %s: %w", addr, err))
	}
	if resp.Rcode == dns.RcodeSuccess {
		if name, ttl, ok := parsePTR(resp, qname); ok {
			return result{name: name}, r.clamp(ttl)
		}
	}
	return result{err: fmt.Errorf("lookup %s: %w", addr, ErrNotFound)}, r.negativeTTL(resp)
}

// fetchHost asks DNS for the addresses of name in network, trying the
// names of resolv.conf's search list in res_search's order. The first
// name with addresses wins.
func (r *Resolver) fetchHost(ctx context.Context, network, name string) (result, time.Duration) {
	conf := r.resolv.get()
	var qtypes []uint16
	switch network {
	case "ip4":
		qtypes = []uint16{dns.TypeA}
	case "ip6":
		qtypes = []uint16{dns.TypeAAAA}
	default:
		qtypes = []uint16{dns.TypeA, dns.TypeAAAA}
	}
	var failure error
	neg := time.Duration(math.MaxInt64)
	for _, qname := range conf.NameList(name) {
		if !hnok(qname) {
			neg = min(neg, r.cfg.NegativeTTL)
			continue
		}
		var canon string
		var addrs []netip.Addr
		ttl := uint32(math.MaxUint32)
		for _, qt := range qtypes {
			resp, err := r.query(ctx, conf, qname, qt)
			if err != nil {
				failure = err
				if ctx.Err() != nil {
					return r.failed(fmt.Errorf("lookup %s: %w", name, err))
				}
				continue
			}
			c, a, t := parseAddrs(resp, qname, qt)
			if resp.Rcode != dns.RcodeSuccess || len(a) == 0 {
				neg = min(neg, r.negativeTTL(resp))
				continue
			}
			if canon == "" {
				canon = c
			}
			addrs = append(addrs, a...)
			ttl = min(ttl, t)
		}
		if len(addrs) > 0 {
			return result{name: canon, addrs: addrs}, r.clamp(ttl)
		}
	}
	if failure != nil {
		return r.failed(fmt.Errorf("lookup %s: %w", name, failure))
	}
	return result{err: fmt.Errorf("lookup %s: %w", name, ErrNotFound)}, neg
}

// failed counts a failed upstream lookup and says how long to remember it.
func (r *Resolver) failed(err error) (result, time.Duration) {
	r.stats.failures.Add(1)
	return result{err: err}, max(r.cfg.FailureTTL, 0)
}

// clamp turns a record TTL in seconds into a cache lifetime within
// [MinTTL, MaxTTL].
func (r *Resolver) clamp(ttl uint32) time.Duration {
	d := time.Duration(ttl) * time.Second
	return min(max(d, r.cfg.MinTTL), r.cfg.MaxTTL)
}

// negativeTTL is the RFC 2308 lifetime of a negative answer: min(SOA TTL,
// SOA MINIMUM) from the authority section, clamped, or NegativeTTL when
// there is no SOA.
func (r *Resolver) negativeTTL(resp *dns.Msg) time.Duration {
	if resp != nil {
		for _, rr := range resp.Ns {
			if soa, ok := rr.(*dns.SOA); ok {
				return r.clamp(min(soa.Hdr.Ttl, soa.Minttl))
			}
		}
	}
	return r.cfg.NegativeTTL
}

// query sends qname/qtype to each server in turn, Attempts times, and
// returns the first answer that is NOERROR or NXDOMAIN. SERVFAIL,
// REFUSED and other codes, timeouts and network errors move on to the
// next server; the last of them is returned when none answers. ctx ending
// stops at once.
func (r *Resolver) query(ctx context.Context, conf *dns.ClientConfig, qname string, qtype uint16) (*dns.Msg, error) {
	timeout := r.cfg.Timeout
	if timeout <= 0 {
		timeout = time.Duration(max(conf.Timeout, 1)) * time.Second
	}
	attempts := r.cfg.Attempts
	if attempts <= 0 {
		attempts = max(conf.Attempts, 1)
	}
	last := errors.New("no nameserver")
	for range attempts {
		for _, srv := range r.servers(conf) {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			resp, err := r.exchange(ctx, srv, qname, qtype, timeout)
			if err != nil {
				last = err
				continue
			}
			if resp.Rcode == dns.RcodeSuccess || resp.Rcode == dns.RcodeNameError {
				return resp, nil
			}
			last = fmt.Errorf("%s %s: %s from %s", strings.TrimSuffix(qname, "."), dns.TypeToString[qtype], dns.RcodeToString[resp.Rcode], srv)
		}
	}
	return nil, last
}

// exchange sends one query over UDP, and again over TCP when the answer
// is truncated, and checks that the answer is for the question asked.
func (r *Resolver) exchange(ctx context.Context, srv, qname string, qtype uint16, timeout time.Duration) (*dns.Msg, error) {
	m := new(dns.Msg)
	m.SetQuestion(qname, qtype)
	m.RecursionDesired = true
	resp, err := r.exchangeOver(ctx, "udp", srv, m, timeout)
	if err == nil && resp.Truncated {
		m.Id = dns.Id()
		resp, err = r.exchangeOver(ctx, "tcp", srv, m, timeout)
	}
	if err != nil {
		return nil, err
	}
	if len(resp.Question) != 1 || resp.Question[0].Qtype != qtype || !strings.EqualFold(resp.Question[0].Name, qname) {
		return nil, fmt.Errorf("%s %s: answer from %s is for another question", strings.TrimSuffix(qname, "."), dns.TypeToString[qtype], srv)
	}
	return resp, nil
}

func (r *Resolver) exchangeOver(ctx context.Context, network, srv string, m *dns.Msg, timeout time.Duration) (*dns.Msg, error) {
	r.stats.queries.Add(1)
	c := &dns.Client{Net: network, Timeout: timeout}
	conn, err := c.DialContext(ctx, srv)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	resp, _, err := c.ExchangeWithConnContext(ctx, m, conn)
	if err != nil && ctx.Err() != nil {
		err = ctx.Err()
	}
	return resp, err
}

// parsePTR reads a PTR answer for qname as glibc's getanswer_ptr does. It
// returns the name without its final dot and the smallest TTL of the
// records read.
func parsePTR(resp *dns.Msg, qname string) (name string, ttl uint32, ok bool) {
	expected := qname
	ttl = math.MaxUint32
	for _, rr := range resp.Answer {
		h := rr.Header()
		if h.Class != dns.ClassINET {
			continue
		}
		switch v := rr.(type) {
		case *dns.CNAME:
			ttl = min(ttl, h.Ttl)
			expected = v.Target
		case *dns.PTR:
			ttl = min(ttl, h.Ttl)
			if !strings.EqualFold(h.Name, expected) {
				continue
			}
			if !hnok(expected) {
				return "", 0, false
			}
			return trimDot(v.Ptr), ttl, true
		}
	}
	return "", 0, false
}

// parseAddrs reads an A or AAAA answer for qname as glibc's
// gaih_getanswer_slice does: CNAMEs move the expected owner name, the
// canonical name is the last CNAME target that is a valid host name (or
// qname), and only records owned by the expected name count.
func parseAddrs(resp *dns.Msg, qname string, qtype uint16) (canon string, addrs []netip.Addr, ttl uint32) {
	expected, canon := qname, qname
	ttl = math.MaxUint32
	for _, rr := range resp.Answer {
		h := rr.Header()
		if h.Class != dns.ClassINET {
			continue
		}
		var a netip.Addr
		switch v := rr.(type) {
		case *dns.CNAME:
			ttl = min(ttl, h.Ttl)
			expected = v.Target
			if hnok(v.Target) {
				canon = v.Target
			}
			continue
		case *dns.A:
			if qtype != dns.TypeA {
				continue
			}
			a, _ = netip.AddrFromSlice(v.A.To4())
		case *dns.AAAA:
			if qtype != dns.TypeAAAA {
				continue
			}
			a, _ = netip.AddrFromSlice(v.AAAA.To16())
		default:
			continue
		}
		if !a.IsValid() || !strings.EqualFold(h.Name, expected) {
			continue
		}
		ttl = min(ttl, h.Ttl)
		addrs = append(addrs, a)
	}
	return trimDot(canon), addrs, ttl
}

// trimDot returns a name from a DNS message as glibc's ns_name_ntop
// writes it: without the final dot (the root is "."), the characters
// . " ; \ ( ) @ $ inside a label escaped with a backslash, and bytes
// outside 0x21-0x7e as \DDD (a space is "\032"). A name that does not
// pack is returned without its final dot.
func trimDot(name string) string {
	var buf [256]byte
	n, err := dns.PackDomainName(dns.Fqdn(name), buf[:], 0, nil, false)
	if err != nil {
		return strings.TrimSuffix(name, ".")
	}
	wire := buf[:n]
	if len(wire) == 1 {
		return "."
	}
	var b strings.Builder
	for i := 0; i < len(wire); {
		l := int(wire[i])
		i++
		if l == 0 || i+l > len(wire) {
			break
		}
		if b.Len() > 0 {
			b.WriteByte('.')
		}
		for _, c := range wire[i : i+l] {
			switch {
			case strings.IndexByte(`.";\()@$`, c) >= 0:
				b.WriteByte('\\')
				b.WriteByte(c)
			case c <= 0x20 || c >= 0x7f:
				fmt.Fprintf(&b, "\\%03d", c)
			default:
				b.WriteByte(c)
			}
		}
		i += l
	}
	return b.String()
}

// hnok reports whether name (presentation format) is a valid host name
// for glibc's res_binary_hnok: every label byte is a letter, digit, '-'
// or '_', and the name does not start with '-'.
func hnok(name string) bool {
	var buf [256]byte
	n, err := dns.PackDomainName(dns.Fqdn(name), buf[:], 0, nil, false)
	if err != nil {
		return false
	}
	wire := buf[:n]
	if len(wire) > 1 && wire[1] == '-' {
		return false
	}
	for i := 0; i < len(wire); {
		l := int(wire[i])
		i++
		if l == 0 || i+l > len(wire) {
			break
		}
		for _, c := range wire[i : i+l] {
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
		i += l
	}
	return true
}

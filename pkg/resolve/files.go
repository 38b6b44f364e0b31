package resolve

import (
	"bytes"
	"context"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"

	"github.com/tcpwrapd/tcpwrapd/internal/filestamp"
	"github.com/tcpwrapd/tcpwrapd/pkg/hostsrules"
)

// watchedFile holds the parsed contents of a file. It checks the file
// with stat(2) at most once per interval (every time when interval <= 0)
// and reads it again when it changed. A missing or unreadable file
// parses as nil data.
type watchedFile[T any] struct {
	path     string
	parse    func([]byte) T
	interval time.Duration
	now      func() time.Time

	cur atomic.Pointer[snapshot[T]]
	mu  sync.Mutex // serialises refreshes
}

type snapshot[T any] struct {
	id      filestamp.Stamp
	val     T
	checked time.Time
}

func newWatched[T any](path string, interval time.Duration, now func() time.Time, parse func([]byte) T) *watchedFile[T] {
	return &watchedFile[T]{path: path, parse: parse, interval: interval, now: now}
}

func (w *watchedFile[T]) fresh(s *snapshot[T], now time.Time) bool {
	return s != nil && w.interval > 0 && !now.Before(s.checked) && now.Sub(s.checked) < w.interval
}

// get returns the parsed contents, re-reading the file when it changed.
// The stat is taken before the read, so a change racing with the read is
// seen again at the next check.
func (w *watchedFile[T]) get() T {
	now := w.now()
	if s := w.cur.Load(); w.fresh(s, now) {
		return s.val
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	s := w.cur.Load()
	if w.fresh(s, now) {
		return s.val
	}
	id := filestamp.Of(w.path)
	if s != nil && id == s.id {
		w.cur.Store(&snapshot[T]{id: id, val: s.val, checked: now})
		return s.val
	}
	var data []byte
	if id.Exists() {
		data, _ = os.ReadFile(w.path)
	}
	v := w.parse(data)
	w.cur.Store(&snapshot[T]{id: id, val: v, checked: now})
	return v
}

// Name service sources this package implements (nsswitch.conf "hosts:").
const (
	srcFiles = "files"
	srcDNS   = "dns"
)

// parseNsswitch returns the sources of the "hosts:" line, keeping only
// files and dns ("resolve", systemd-resolved, counts as dns). Without a
// file or a hosts line the order is files, dns, as in glibc.
func parseNsswitch(data []byte) []string {
	for line := range strings.SplitSeq(string(data), "\n") {
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		rest, ok := strings.CutPrefix(strings.TrimSpace(line), "hosts:")
		if !ok {
			continue
		}
		var out []string
		seen := map[string]bool{}
		for _, f := range strings.Fields(rest) {
			if f == "resolve" {
				f = srcDNS
			}
			if (f == srcFiles || f == srcDNS) && !seen[f] {
				seen[f] = true
				out = append(out, f)
			}
		}
		return out
	}
	return []string{srcFiles, srcDNS}
}

// parseResolvConf reads resolv.conf(5) text: nameservers, search list,
// ndots, timeout and attempts. With no nameserver line the server is
// 127.0.0.1, as in glibc.
func parseResolvConf(data []byte) *dns.ClientConfig {
	cfg, err := dns.ClientConfigFromReader(bytes.NewReader(data))
	if err != nil {
		cfg, _ = dns.ClientConfigFromReader(bytes.NewReader(nil))
	}
	if len(cfg.Servers) == 0 {
		cfg.Servers = []string{"127.0.0.1"}
	}
	return cfg
}

// hostsFile is a parsed hosts(5) file with an index of what it holds, so
// that a lookup of a name or address it does not list costs a map probe.
type hostsFile struct {
	h     *hostsrules.HostsResolver
	addrs map[netip.Addr]bool
	names map[string]bool // lower case
}

// parseHosts parses hosts(5) text with hostsrules.ParseHosts and indexes
// the same lines ParseHosts keeps (the index may only be a superset).
func parseHosts(data []byte) *hostsFile {
	f := &hostsFile{h: hostsrules.ParseHosts(data), addrs: map[netip.Addr]bool{}, names: map[string]bool{}}
	for line := range strings.SplitSeq(string(data), "\n") {
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		fields := strings.Fields(line)
		if len(fields) < 2 {
			continue
		}
		a, err := netip.ParseAddr(fields[0])
		if err != nil {
			continue
		}
		f.addrs[a.Unmap()] = true
		for _, n := range fields[1:] {
			f.names[strings.ToLower(n)] = true
		}
	}
	return f
}

// lookupAddr is HostsResolver.LookupAddr, skipped when the index says
// the address is not there.
func (f *hostsFile) lookupAddr(ctx context.Context, addr netip.Addr) (string, bool) {
	if !f.addrs[addr.Unmap()] {
		return "", false
	}
	n, err := f.h.LookupAddr(ctx, addr)
	return n, err == nil
}

// lookupHost is HostsResolver.LookupHost, skipped when the index says
// the name is not there. Names outside ASCII always go through.
func (f *hostsFile) lookupHost(ctx context.Context, network, name string) (string, []netip.Addr, bool) {
	if isASCII(name) && !f.names[strings.ToLower(name)] {
		return "", nil, false
	}
	c, a, err := f.h.LookupHost(ctx, network, name)
	return c, a, err == nil
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

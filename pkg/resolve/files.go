package resolve

import (
	"bytes"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/miekg/dns"
	"github.com/tcpwrapd/tcpwrapd/pkg/hostsrules"
)

// fileID identifies one version of a file: a change of any field means
// the file must be read again. Inode and ctime catch an atomic rename and
// an in-place rewrite that keeps the size and mtime.
type fileID struct {
	exists bool
	mtime  time.Time
	size   int64
	dev    uint64
	ino    uint64
	ctime  syscall.Timespec
}

func statID(path string) fileID {
	st, err := os.Stat(path)
	if err != nil {
		return fileID{}
	}
	id := fileID{exists: true, mtime: st.ModTime(), size: st.Size()}
	if sys, ok := st.Sys().(*syscall.Stat_t); ok {
		id.dev, id.ino, id.ctime = uint64(sys.Dev), sys.Ino, sys.Ctim
	}
	return id
}

// watchedFile holds the parsed contents of a file, read again when a stat
// shows it changed. A missing or unreadable file parses as nil data.
type watchedFile[T any] struct {
	path  string
	parse func([]byte) T

	mu     sync.Mutex
	loaded bool
	id     fileID
	val    T
}

func newWatched[T any](path string, parse func([]byte) T) *watchedFile[T] {
	return &watchedFile[T]{path: path, parse: parse}
}

// get returns the parsed contents, re-reading the file when it changed.
// The stat is taken before the read, so a change racing with the read is
// seen again at the next call.
func (w *watchedFile[T]) get() T {
	id := statID(w.path)
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.loaded && id == w.id {
		return w.val
	}
	var data []byte
	if id.exists {
		data, _ = os.ReadFile(w.path)
	}
	w.val, w.id, w.loaded = w.parse(data), id, true
	return w.val
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

func parseHosts(data []byte) *hostsrules.HostsResolver { return hostsrules.ParseHosts(data) }

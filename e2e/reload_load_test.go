package e2e

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/tcpwrapd/tcpwrapd/pkg/accessd"
	"github.com/tcpwrapd/tcpwrapd/pkg/hostsrules"
)

// Live reload under load (issue 3 item 9).
//
// A load driver sends access checks through the real protocol (one
// sendmsg with an SCM_RIGHTS TCP socket, one read) to an in-process
// tcpwrapd daemon (accessd.Run) from 16 goroutines, while a writer walks
// the rule files through a sequence of states, changing one file per step
// in one of these ways: renamed into place, edited in place (truncate,
// then one write), truncated, deleted, replaced by a symlink loop (ELOOP,
// unreadable even for root, which ignores permission bits) or by a
// directory. Every state is a complete, distinct version of the pair of
// files, designed so that the verdict names it:
//
//	hosts.allow of version k: comments, then "ALL: 127.0.1.k" last
//	hosts.deny  of version k: "ALL: 127.0.2.0/255.255.255.0 EXCEPT 127.0.2.k",
//	                          comments, "ALL: 127.0.9.9", "ALL: 127.0.1.0/255.255.255.0"
//
// so 127.0.1.k is allowed only under allow version k, 127.0.2.k only
// under deny version k, and the canary 127.0.9.9 is denied whenever a
// deny file was read to its end. The expected verdict of every client
// address in every state is computed from the files on disk right after
// the step (hostsrules.Load), while nothing changes them.
//
// Each check records when it started and ended. It must be answered ("1\n"
// or "0\n", never an error or EOF), and its verdict must equal the
// expected verdict of a state that was on disk at some time in [start -
// lag, end], lag covering the reload poll interval and the time a reload
// waits for the files to be quiet (accessd.SettleTime). A check that lies
// wholly inside one state (after lag) must match that state exactly.
func TestReloadUnderLoad(t *testing.T) {
	const (
		versions       = 6
		workers        = 16
		reloadInterval = 10 * time.Millisecond
		maxShort       = 80 * time.Millisecond // longest short hold
		// A reload adopts the files only once they have been quiet for
		// accessd.SettleTime, so after a short state the policy may still
		// be the one of the state before it.
		lag = accessd.SettleTime + maxShort + 3*reloadInterval + 100*time.Millisecond
	)
	duration := 2 * time.Second // at least one round of each kind of mutation runs anyway
	if testing.Short() {
		duration = 2 * time.Second
	}
	dir := t.TempDir()
	allow, deny := filepath.Join(dir, "hosts.allow"), filepath.Join(dir, "hosts.deny")
	sock := filepath.Join(shortTemp(t), "access")

	// Client addresses: 127.0.1.k, 127.0.2.k and the canary.
	var srcs []string
	for k := range versions {
		srcs = append(srcs, fmt.Sprintf("127.0.1.%d", k), fmt.Sprintf("127.0.2.%d", k))
	}
	srcs = append(srcs, "127.0.9.9")
	fds := clientSockets(t, srcs)

	w := &ruleWriter{t: t, allow: allow, deny: deny, srcs: srcs, fds: fds}
	w.step("initial v0", func() error {
		if err := os.WriteFile(allow, []byte(allowVersion(0)), 0o644); err != nil {
			return err
		}
		return os.WriteFile(deny, []byte(denyVersion(0)), 0o644)
	})

	var reloads atomic.Int64
	log := slog.New(countHandler{msg: "rules loaded", n: &reloads})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- accessd.Run(ctx, accessd.Config{
			Listen: sock, AllowFile: allow, DenyFile: deny,
			ReloadInterval: reloadInterval, Env: &hostsrules.Env{}, Logger: log,
		})
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("accessd.Run: %v", err)
		}
	}()
	waitSocket(t, sock)

	// Load driver.
	var (
		mu      sync.Mutex
		results []checkResult
		stop    atomic.Bool
		wg      sync.WaitGroup
	)
	for i := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(i), 7))
			var mine []checkResult
			for !stop.Load() {
				a := r.IntN(len(srcs))
				start := time.Now()
				reply, err := accessCheck(sock, "imap", fds[a])
				mine = append(mine, checkResult{addr: a, start: start, end: time.Now(), reply: reply, err: err})
			}
			mu.Lock()
			results = append(results, mine...)
			mu.Unlock()
		}()
	}

	// Writer: cycle through the mutations until the time is up.
	deadline := time.Now().Add(duration)
	// Every state is held long enough to be served by its own policy,
	// except the intermediate (truncated) moment of an in-place edit,
	// which is held only briefly: a reload may or may not see it.
	hold := func(name string) time.Duration {
		if strings.Contains(name, "intermediate") {
			return time.Duration(20+rand.IntN(60)) * time.Millisecond
		}
		return lag + 300*time.Millisecond
	}
	time.Sleep(hold("initial"))
	for v := 1; v <= 3 || time.Now().Before(deadline); v++ {
		for _, m := range mutations(allow, deny, v%versions) {
			w.step(m.name, m.do)
			time.Sleep(hold(m.name))
		}
	}
	time.Sleep(lag + 100*time.Millisecond)
	w.markEnd()
	stop.Store(true)
	wg.Wait()

	// Verify.
	type counts struct{ allowed, denied int }
	strict := make([]counts, len(w.states))
	var transitional, bad int
	for _, r := range results {
		if r.err != nil || (r.reply != "1\n" && r.reply != "0\n") {
			bad++
			if bad <= 5 {
				t.Errorf("check from %s at %v: reply %q, err %v", srcs[r.addr], r.start.Format(time.StampMicro), r.reply, r.err)
			}
			continue
		}
		got := r.reply == "1\n"
		cands := w.candidates(r.start.Add(-lag), r.end)
		ok := false
		for _, j := range cands {
			if w.states[j].want[r.addr] == got {
				ok = true
				break
			}
		}
		if !ok {
			bad++
			if bad <= 5 {
				var names []string
				for _, j := range cands {
					names = append(names, fmt.Sprintf("%q (want %v)", w.states[j].name, w.states[j].want[r.addr]))
				}
				t.Errorf("check from %s [%v, %v]: allowed=%v matches none of the states on disk: %s",
					srcs[r.addr], r.start.Format(time.StampMicro), r.end.Format(time.StampMicro), got, strings.Join(names, ", "))
			}
			continue
		}
		if len(cands) == 1 {
			if got {
				strict[cands[0]].allowed++
			} else {
				strict[cands[0]].denied++
			}
		} else {
			transitional++
		}
	}
	if bad > 0 {
		t.Errorf("%d of %d checks failed", bad, len(results))
	}
	// Every long-held state must have been served by its own policy.
	perKind := map[string]*counts{}
	for j, st := range w.states {
		c := strict[j]
		key := st.kind()
		if perKind[key] == nil {
			perKind[key] = &counts{}
		}
		perKind[key].allowed += c.allowed
		perKind[key].denied += c.denied
		if st.held() >= lag+150*time.Millisecond && c.allowed+c.denied == 0 {
			t.Errorf("state %q held %v got no check wholly inside it", st.name, st.held())
		}
	}
	var kinds []string
	for k := range perKind {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	t.Logf("%d checks (%d workers, %v), all answered: %d wholly inside one state, %d across a change; %d states written, %d policy reloads",
		len(results), workers, duration, len(results)-transitional, transitional, len(w.states), reloads.Load())
	for _, k := range kinds {
		t.Logf("  states %-28s verdicts inside: %5d allowed, %5d denied", k, perKind[k].allowed, perKind[k].denied)
	}
}

// checkResult is one check of the load driver.
type checkResult struct {
	addr       int
	start, end time.Time
	reply      string
	err        error
}

// ruleState is one version of the files on disk.
type ruleState struct {
	name       string
	begin, end time.Time // on disk from begin (mutation started) to end
	want       []bool    // allowed, per client address
}

// kind is the name without its version number, for the summary.
func (s ruleState) kind() string {
	n, _, _ := strings.Cut(s.name, " v")
	return n
}

func (s ruleState) held() time.Duration { return s.end.Sub(s.begin) }

// ruleWriter applies mutations and records the states.
type ruleWriter struct {
	t           *testing.T
	allow, deny string
	srcs        []string
	fds         []int
	states      []ruleState
}

// step applies do and records the resulting state with the verdict of
// every client address, computed from the files now on disk.
func (w *ruleWriter) step(name string, do func() error) {
	w.t.Helper()
	begin := time.Now()
	if n := len(w.states); n > 0 {
		w.states[n-1].end = begin
	}
	if err := do(); err != nil {
		w.t.Fatalf("%s: %v", name, err)
	}
	pol := hostsrules.Load(w.allow, w.deny)
	st := ruleState{name: name, begin: begin}
	for _, src := range w.srcs {
		req := &hostsrules.Request{Daemon: "imap",
			Client: hostsrules.Endpoint{Addr: netip.AddrPortFrom(netip.MustParseAddr(src), 40000)},
			Server: hostsrules.Endpoint{Addr: netip.MustParseAddrPort("127.0.0.1:143")}}
		d := pol.Check(context.Background(), req, &hostsrules.Env{})
		st.want = append(st.want, d.Verdict == hostsrules.Granted && d.Err == nil && !d.Delegated)
	}
	w.states = append(w.states, st)
}

func (w *ruleWriter) markEnd() { w.states[len(w.states)-1].end = time.Now() }

// candidates returns the states on disk at some time in [from, to].
func (w *ruleWriter) candidates(from, to time.Time) []int {
	var c []int
	for j, st := range w.states {
		if !st.begin.After(to) && !st.end.Before(from) {
			c = append(c, j)
		}
	}
	return c
}

type mutation struct {
	name string
	do   func() error
}

// mutations returns one round of changes that ends with version k in
// both files.
func mutations(allow, deny string, k int) []mutation {
	inPlace := func(what, path, text string) []mutation {
		var f *os.File
		return []mutation{
			{what + " edited in place: truncated (intermediate) v" + fmt.Sprint(k), func() error {
				var err error
				f, err = os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
				return err
			}},
			{what + " edited in place: written v" + fmt.Sprint(k), func() error {
				_, err := f.Write([]byte(text)) // one write(2)
				if cerr := f.Close(); err == nil {
					err = cerr
				}
				return err
			}},
		}
	}
	rename := func(what, path, text string) mutation {
		return mutation{what + " renamed into place v" + fmt.Sprint(k), func() error {
			tmp := path + ".new"
			if err := os.WriteFile(tmp, []byte(text), 0o644); err != nil {
				return err
			}
			return os.Rename(tmp, path)
		}}
	}
	loop := func(what, path string) mutation {
		return mutation{what + " symlink loop (ELOOP)", func() error {
			tmp := path + ".new"
			if err := os.Symlink(filepath.Base(path), tmp); err != nil { // points at itself once renamed
				return err
			}
			return os.Rename(tmp, path)
		}}
	}
	var ms []mutation
	switch k % 3 {
	case 0:
		ms = append(ms, rename("allow", allow, allowVersion(k)), rename("deny", deny, denyVersion(k)))
	case 1:
		ms = append(ms, inPlace("allow", allow, allowVersion(k))...)
		ms = append(ms, inPlace("deny", deny, denyVersion(k))...)
	case 2:
		ms = append(ms,
			mutation{"deny truncated", func() error { return os.Truncate(deny, 0) }},
			mutation{"allow deleted", func() error { return os.Remove(allow) }},
			loop("deny", deny),
			rename("allow", allow, allowVersion(k)),
			mutation{"deny deleted", func() error { return os.Remove(deny) }},
			mutation{"deny is a directory", func() error { return os.Mkdir(deny, 0o755) }},
			mutation{"deny directory removed", func() error { return os.Remove(deny) }},
			rename("deny", deny, denyVersion(k)),
			loop("allow", allow),
			rename("allow", allow, allowVersion(k)),
		)
	}
	return ms
}

func allowVersion(k int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# hosts.allow version %d\n", k)
	for i := range 40 {
		fmt.Fprintf(&b, "# padding %d of version %d: a torn read would lose the last line\n", i, k)
	}
	fmt.Fprintf(&b, "ALL: 127.0.1.%d\n", k)
	return b.String()
}

func denyVersion(k int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# hosts.deny version %d\n", k)
	fmt.Fprintf(&b, "ALL: 127.0.2.0/255.255.255.0 EXCEPT 127.0.2.%d\n", k)
	for i := range 40 {
		fmt.Fprintf(&b, "# padding %d of version %d\n", i, k)
	}
	b.WriteString("ALL: 127.0.9.9\nALL: 127.0.1.0/255.255.255.0\n")
	return b.String()
}

// clientSockets returns, for each source address, the server side of a
// TCP connection from it to a local listener: the descriptor a login
// would pass. They are closed at the end of the test.
func clientSockets(t *testing.T, srcs []string) []int {
	t.Helper()
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var fds []int
	for _, src := range srcs {
		c, err := net.DialTCP("tcp", &net.TCPAddr{IP: net.ParseIP(src)}, ln.Addr().(*net.TCPAddr))
		if err != nil {
			t.Fatal(err)
		}
		s, err := ln.AcceptTCP()
		if err != nil {
			t.Fatal(err)
		}
		f, err := s.File()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close(); s.Close(); f.Close() })
		fds = append(fds, int(f.Fd()))
	}
	return fds
}

// accessCheck makes one access check as imap-login does: connect, one
// sendmsg of name+"\n" with fd, one read of at most 3 bytes.
func accessCheck(sock, name string, fd int) (string, error) {
	c, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, _, err := c.WriteMsgUnix([]byte(name+"\n"), syscall.UnixRights(fd), nil); err != nil {
		return "", err
	}
	b := make([]byte, 3)
	n, err := c.Read(b)
	if n > 0 {
		err = nil
	}
	return string(b[:n]), err
}

// countHandler is a slog.Handler that counts records with message msg.
type countHandler struct {
	msg string
	n   *atomic.Int64
}

func (h countHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h countHandler) Handle(_ context.Context, r slog.Record) error {
	if r.Message == h.msg {
		h.n.Add(1)
	}
	return nil
}
func (h countHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h countHandler) WithGroup(string) slog.Handler      { return h }

// shortTemp returns a temporary directory with a short path for unix
// sockets.
func shortTemp(t *testing.T) string {
	t.Helper()
	d, err := os.MkdirTemp("", "rl")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

// waitSocket waits until something accepts on the unix socket sock.
func waitSocket(t *testing.T, sock string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := net.Dial("unix", sock)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("socket %s: %v", sock, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

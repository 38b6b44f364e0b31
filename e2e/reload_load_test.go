package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
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

// Live reload under load (issue 3 item 9; issue 10 item 10).
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
// Nothing is judged by the clock: the daemon reports each load
// (Config.RulesLoaded, called once checks use the new policy) and the test
// orders checks by those events. Each check records when it started and
// ended; it must be answered ("1\n" or "0\n", never an error or EOF) with
// the verdict of a generation that can have been current at some time in
// [start, end]: generation g replaced g-1 after the report of g-1 and
// before its own report, so a check that started after the report of g
// sees g or a later one, and one that ended before the report of g-1 saw
// an earlier one. Each generation must hold a state that was on disk
// while it was loaded and had been left alone for accessd.SettleTime. The
// writer waits for the load of each complete state and for checks that
// it answers before it takes the next step (with generous deadlines: a
// busy machine makes the test slower, never wrong); only the truncated
// moment of an in-place edit is held briefly, and a reload may or may not
// see it.
func TestReloadUnderLoad(t *testing.T) {
	const (
		versions       = 6
		workers        = 16
		reloadInterval = 10 * time.Millisecond
		// eventWait bounds each wait for an event; reaching it means a
		// reload or check did not happen at all.
		eventWait = 60 * time.Second
	)
	duration := 2 * time.Second // at least one round of each kind of mutation runs anyway
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

	loads := &loadLog{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- accessd.Run(ctx, accessd.Config{
			Listen: sock, AllowFile: allow, DenyFile: deny,
			ReloadInterval: reloadInterval, Env: &hostsrules.Env{},
			RulesLoaded: func(n uint64, p *hostsrules.Policy) { loads.add(n, policyVerdicts(p, srcs)) },
		})
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("accessd.Run: %v", err)
		}
	}()
	waitSocket(t, sock)

	// Load driver. served counts the checks that started after
	// servedAfter (UnixNano), for the writer.
	var (
		mu          sync.Mutex
		results     []checkResult
		stop        atomic.Bool
		wg          sync.WaitGroup
		servedAfter atomic.Int64
		served      atomic.Int64
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
				if start.UnixNano() > servedAfter.Load() {
					served.Add(1)
				}
			}
			mu.Lock()
			results = append(results, mine...)
			mu.Unlock()
		}()
	}
	// await waits until the daemon has loaded the state just written and
	// has answered checks that started after that load.
	await := func() {
		st := &w.states[len(w.states)-1]
		g := loads.await(t, st, eventWait)
		served.Store(0)
		servedAfter.Store(g.at.UnixNano())
		deadline := time.Now().Add(eventWait)
		for served.Load() <= workers { // one check per worker may have been counted against the previous mark
			if time.Now().After(deadline) {
				t.Fatalf("state %q: no checks answered within %v of its load", st.name, eventWait)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}

	// Writer: cycle through the mutations until the time is up. Every
	// state is held until it has been loaded and served, except the
	// intermediate (truncated) moment of an in-place edit, which is held
	// only briefly.
	await()
	deadline := time.Now().Add(duration)
	for v := 1; v <= 3 || time.Now().Before(deadline); v++ {
		for _, m := range mutations(allow, deny, v%versions) {
			w.step(m.name, m.do)
			if strings.Contains(m.name, "intermediate") {
				time.Sleep(time.Duration(20+rand.IntN(60)) * time.Millisecond)
				continue
			}
			await()
		}
	}
	w.markEnd()
	stop.Store(true)
	wg.Wait()
	gens := loads.all()

	// Each generation holds a state that was on disk while it was loaded
	// and was left alone long enough to be adopted. The truncated moment
	// of an in-place edit is shorter than that unless the writer stalled;
	// a state that was on disk for less than SettleTime (less the clock
	// granularity of file times) must never be adopted.
	// A generation became current after the report of the one before it,
	// and after the state it holds had been on disk for SettleTime (a
	// reload adopts only files left alone that long): lower is the later
	// of the two.
	const grain = 20 * time.Millisecond
	for i := range gens {
		g := &gens[i]
		var from time.Time
		if i > 0 {
			from = gens[i-1].at
		}
		g.lower = from
		var names []string
		ok := false
		for _, j := range w.candidates(from, g.at) {
			st := w.states[j]
			if !slices.Equal(st.want, g.want) {
				continue
			}
			names = append(names, fmt.Sprintf("%q (on disk at most %v)", st.name, st.held()))
			if st.held() >= accessd.SettleTime-grain {
				if settled := st.begin.Add(accessd.SettleTime - grain); !ok && settled.After(g.lower) {
					g.lower = settled
				}
				ok = true
			}
		}
		if !ok {
			t.Errorf("generation %d (reported at %v) holds no state that was on disk for SettleTime while it was loaded; same verdicts: %s",
				g.n, g.at.Format(time.StampMicro), strings.Join(names, ", "))
		}
	}

	// Every check is answered by a generation that can have been current
	// while it ran.
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
		cands := possible(gens, r.start, r.end)
		ok := false
		for _, i := range cands {
			ok = ok || gens[i].want[r.addr] == got
		}
		if !ok {
			bad++
			if bad <= 5 {
				var names []string
				for _, i := range cands {
					names = append(names, fmt.Sprintf("generation %d (want %v)", gens[i].n, gens[i].want[r.addr]))
				}
				t.Errorf("check from %s [%v, %v]: allowed=%v matches none of the generations current then: %s",
					srcs[r.addr], r.start.Format(time.StampMicro), r.end.Format(time.StampMicro), got, strings.Join(names, ", "))
			}
			continue
		}
		if len(cands) > 1 {
			transitional++
		}
	}
	if bad > 0 {
		t.Errorf("%d of %d checks failed", bad, len(results))
	}
	// Every complete state was served by its own policy: checks that
	// started after its load and ended before the next step.
	type counts struct{ allowed, denied int }
	perKind := map[string]*counts{}
	var delays []time.Duration // from a step to the report of its load
	for j, st := range w.states {
		if strings.Contains(st.name, "intermediate") {
			continue
		}
		g := loads.first(st, gens)
		if g >= 0 {
			delays = append(delays, gens[g].at.Sub(st.begin))
		}
		c := counts{}
		for _, r := range results {
			if g >= 0 && r.start.After(gens[g].at) && r.end.Before(st.end) && r.err == nil {
				if r.reply == "1\n" {
					c.allowed++
				} else {
					c.denied++
				}
			}
		}
		if c.allowed+c.denied == 0 {
			t.Errorf("state %d %q got no check after its load", j, st.name)
		}
		key := st.kind()
		if perKind[key] == nil {
			perKind[key] = &counts{}
		}
		perKind[key].allowed += c.allowed
		perKind[key].denied += c.denied
	}
	slices.Sort(delays)
	if len(delays) > 0 {
		t.Logf("load reported %v after a step (median; poll %v, SettleTime %v), at most %v",
			delays[len(delays)/2].Round(time.Millisecond), reloadInterval, accessd.SettleTime, delays[len(delays)-1].Round(time.Millisecond))
	}
	var kinds []string
	for k := range perKind {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	t.Logf("%d checks (%d workers), all answered: %d by the one generation current, %d across a reload; %d states written, %d policy loads",
		len(results), workers, len(results)-transitional, transitional, len(w.states), len(gens))
	for _, k := range kinds {
		t.Logf("  states %-28s verdicts after their load: %5d allowed, %5d denied", k, perKind[k].allowed, perKind[k].denied)
	}
}

// loaded is one load reported by the daemon: its generation, when it was
// reported, the verdict of every client address under it, and the
// earliest time it can have become current (see TestReloadUnderLoad).
type loaded struct {
	n         uint64
	at, lower time.Time
	want      []bool
}

// loadLog collects the daemon's load reports.
type loadLog struct {
	mu    sync.Mutex
	loads []loaded
}

func (l *loadLog) add(n uint64, want []bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.loads = append(l.loads, loaded{n: n, at: time.Now(), want: want})
}

func (l *loadLog) all() []loaded {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.loads)
}

// await waits up to limit for a load reported after st was written that
// has st's verdicts, and returns it.
func (l *loadLog) await(t *testing.T, st *ruleState, limit time.Duration) loaded {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		gens := l.all()
		if i := l.first(*st, gens); i >= 0 {
			return gens[i]
		}
		if time.Now().After(deadline) {
			t.Fatalf("state %q not loaded within %v", st.name, limit)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// first returns the index of the first load in gens reported after st
// began with st's verdicts, or -1.
func (l *loadLog) first(st ruleState, gens []loaded) int {
	for i, g := range gens {
		if g.at.After(st.begin) && slices.Equal(g.want, st.want) {
			return i
		}
	}
	return -1
}

// possible returns the generations that can have decided a check running
// from start to end: generation i became current after its lower bound
// and stopped being current before the report of i+1.
func possible(gens []loaded, start, end time.Time) []int {
	var c []int
	for i := range gens {
		if !gens[i].lower.Before(end) {
			break
		}
		if i+1 < len(gens) && !gens[i+1].at.After(start) {
			continue
		}
		c = append(c, i)
	}
	return c
}

// policyVerdicts returns whether p allows each of srcs to connect to imap.
func policyVerdicts(p *hostsrules.Policy, srcs []string) []bool {
	var want []bool
	for _, src := range srcs {
		req := &hostsrules.Request{Daemon: "imap",
			Client: hostsrules.Endpoint{Addr: netip.AddrPortFrom(netip.MustParseAddr(src), 40000)},
			Server: hostsrules.Endpoint{Addr: netip.MustParseAddrPort("127.0.0.1:143")}}
		d := p.Check(context.Background(), req, &hostsrules.Env{})
		want = append(want, d.Verdict == hostsrules.Granted && d.Err == nil && !d.Delegated)
	}
	return want
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
	begin, end time.Time // on disk at most from begin (its mutation started) to end (the next one ended)
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
// every client address, computed from the files now on disk. The previous
// state counts as on disk until do has returned.
func (w *ruleWriter) step(name string, do func() error) {
	w.t.Helper()
	begin := time.Now()
	if err := do(); err != nil {
		w.t.Fatalf("%s: %v", name, err)
	}
	if n := len(w.states); n > 0 {
		w.states[n-1].end = time.Now()
	}
	w.states = append(w.states, ruleState{name: name, begin: begin, want: policyVerdicts(hostsrules.Load(w.allow, w.deny), w.srcs)})
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

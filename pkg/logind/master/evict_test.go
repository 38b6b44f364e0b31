package master

import (
	"bufio"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tcpwrapd/tcpwrapd/pkg/logind/config"
	"github.com/tcpwrapd/tcpwrapd/pkg/logind/control"
	"github.com/tcpwrapd/tcpwrapd/pkg/logind/ipc"
	"github.com/tcpwrapd/tcpwrapd/pkg/logind/master/worker"
)

// flood runs conc attackers from src against 127.0.0.1:port until stop
// is closed or max connections were made: each connects, reads until
// the server closes (evicted), and connects again at once. It returns
// when every attacker has stopped, with the number of connections made.
func flood(port int, src string, conc, max int, stop <-chan struct{}) (wait func() int) {
	var made atomic.Int64
	var wg sync.WaitGroup
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
			buf := make([]byte, 512)
			for made.Add(1) <= int64(max) {
				select {
				case <-stop:
					return
				default:
				}
				c, err := d.Dial("tcp", "127.0.0.1:"+strconv.Itoa(port))
				if err != nil {
					time.Sleep(10 * time.Millisecond)
					continue
				}
			read:
				for {
					c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
					_, err := c.Read(buf)
					if ne, ok := err.(net.Error); ok && ne.Timeout() {
						select {
						case <-stop:
							break read
						default:
							continue
						}
					}
					if err != nil {
						break
					}
				}
				c.Close()
			}
		}()
	}
	return func() int { wg.Wait(); return int(min(made.Load(), int64(max))) }
}

// honestLogin is one honest pre-login exchange from src: greeting, a
// pause, then CAPABILITY and LOGOUT (proto "imap") or CAPA and QUIT
// ("pop3"). It returns "" on success, else what went wrong.
func honestLogin(port int, proto, src string, pause time.Duration) string {
	d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	c, err := d.Dial("tcp", "127.0.0.1:"+strconv.Itoa(port))
	if err != nil {
		return err.Error()
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(15 * time.Second))
	r := bufio.NewReader(c)
	line := func() string {
		s, err := r.ReadString('\n')
		if err != nil && s == "" {
			return "EOF"
		}
		return strings.TrimRight(s, "\r\n")
	}
	// Each command and the lines that must start its reply, the last
	// one ending it.
	steps := []struct{ cmd, want string }{
		{"", "* OK"},
		{"a CAPABILITY", "* CAPABILITY "}, {"", "a OK "},
		{"b LOGOUT", "* BYE Logging out"}, {"", "b OK "},
	}
	if proto == "pop3" {
		steps = []struct{ cmd, want string }{
			{"", "+OK"},
			{"CAPA", "+OK"}, {"", "CAPA"}, {"", "TOP"}, {"", "UIDL"}, {"", "RESP-CODES"}, {"", "PIPELINING"}, {"", "AUTH-RESP-CODE"}, {"", "."},
			{"QUIT", "+OK Logging out"},
		}
	}
	what := "greeting"
	for i, st := range steps {
		if st.cmd != "" {
			if i == 1 {
				time.Sleep(pause)
			}
			what = st.cmd
			c.Write([]byte(st.cmd + "\r\n"))
		}
		s := line()
		// CAPA's end: USER (where plaintext authentication is allowed)
		// and SASL come before it.
		for n := 0; st.want == "." && n < 2 && (s == "USER" || strings.HasPrefix(s, "SASL")); n++ {
			s = line()
		}
		if !strings.HasPrefix(s, st.want) {
			return what + ": " + s
		}
	}
	return ""
}

// TestEvictionFloodFromOneSourceSparesOthers: the attack, in
// high-security mode with process_limit = 10: 30 connections from
// 127.0.0.2 reconnect as soon as they are evicted, so that every
// arrival evicts someone. An honest client from 127.0.0.1 connects,
// reads the greeting, waits 300 ms (the attack evicted honest clients
// 0.1–0.3 s after their greeting) and does CAPABILITY and LOGOUT: each of
// its 8 logins must succeed, because the victims are the clients of the
// source that holds the most places (evict.go). With Dovecot's rule
// (the oldest logging-in client, whoever holds it) the honest client,
// soon the oldest, is evicted in nearly every round.
func TestEvictionFloodFromOneSourceSparesOthers(t *testing.T) {
	l := startLab(t, "imap-login", "", "service_count = 1\nprocess_limit = 10")
	stop := make(chan struct{})
	done := flood(l.port, "127.0.0.2", 30, 20000, stop)
	defer func() {
		close(stop)
		t.Logf("attacker connections: %d", done())
	}()
	l.waitFor("the flood evicting", func(s control.ServiceStatus) bool { return s.Counters.Evicted >= 30 })
	const rounds = 8
	var failed []string
	var took []string
	for i := range rounds {
		start := time.Now()
		if why := honestLogin(l.port, "imap", "127.0.0.1", 300*time.Millisecond); why != "" {
			failed = append(failed, strconv.Itoa(i)+": "+why)
		}
		took = append(took, time.Since(start).Round(time.Millisecond).String())
	}
	t.Logf("each login took %s", strings.Join(took, " "))
	st := l.status()
	t.Logf("honest logins under the flood: %d of %d succeeded; evicted %d, dropped %d", rounds-len(failed), rounds, st.Counters.Evicted, st.Counters.Dropped)
	if len(failed) > 0 {
		t.Errorf("honest logins failed under the flood:\n%s", strings.Join(failed, "\n"))
	}
	if len(st.Procs) > 10 {
		t.Errorf("%d processes over process_limit 10", len(st.Procs))
	}
}

// churn runs conc clients from src against 127.0.0.1:port until stop
// is closed: each connects, reads the greeting, closes (with reset: a
// TCP reset, SO_LINGER 0) and connects again at once, so each holds at
// most one connection at a time. made counts the connections made, bad
// those whose first read was not a greeting alone (evicted, dropped);
// seen returns what the first few of those read.
func churn(port int, src string, conc int, reset bool, made, bad *atomic.Int64, stop <-chan struct{}) (wait func(), seen func() []string) {
	var wg sync.WaitGroup
	var badMu sync.Mutex
	var badSeen []string
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
			buf := make([]byte, 512)
			for {
				select {
				case <-stop:
					return
				default:
				}
				c, err := d.Dial("tcp", "127.0.0.1:"+strconv.Itoa(port))
				if err != nil {
					time.Sleep(10 * time.Millisecond)
					continue
				}
				made.Add(1)
				c.SetReadDeadline(time.Now().Add(5 * time.Second))
				n, err := c.Read(buf)
				if g := string(buf[:n]); !strings.HasPrefix(g, "* OK") && !strings.HasPrefix(g, "+OK") || strings.Contains(g, "queue full") {
					bad.Add(1)
					badMu.Lock()
					if len(badSeen) < 3 {
						badSeen = append(badSeen, fmt.Sprintf("%q (%v)", g, err))
					}
					badMu.Unlock()
				}
				if reset {
					c.(*net.TCPConn).SetLinger(0)
				}
				c.Close()
			}
		}()
	}
	return wg.Wait, func() []string { badMu.Lock(); defer badMu.Unlock(); return badSeen }
}

// evictedFrom counts the clients from src that the login processes
// logged as evicted ("Connection queue full").
func (l *lab) evictedFrom(src string) int {
	n := 0
	for _, line := range strings.Split(l.logs.String(), "\n") {
		if strings.Contains(line, "Connection queue full") && strings.Contains(line, "rip="+src+",") {
			n++
		}
	}
	return n
}

// TestEvictionFastReconnectSparesHonest: the tester's fast reconnecting
// churner (issue 10 item 3). In high-security mode with process_limit =
// 3 and an access check (clients spend a moment being checked, not
// evictable), clients from 127.0.0.2 connect, read the greeting and
// close (or reset) in a loop, each holding at most one connection,
// while an honest client from 127.0.0.1 reads the greeting, waits and
// does CAPABILITY and LOGOUT (CAPA and QUIT in POP3). There are never
// more live clients than process_limit, so no live client may be
// evicted or dropped, the honest one least of all: a process whose
// client has gone holds no place a new arrival must evict for, whether
// it has reported the client gone and is exiting (outgoing) or has not
// read the end of the stream yet (evictGrace). Before the fix the
// supervisor counted such processes against process_limit, the
// churner's source then held as many places as the honest one, and
// oldest-first chose the honest client (POP3: 1 of 8 succeeded).
func TestEvictionFastReconnectSparesHonest(t *testing.T) {
	tests := []struct {
		svc      string
		minAvail int
		churners int
		reset    bool
		pause    time.Duration
	}{
		{svc: "imap-login", minAvail: 0, churners: 1, pause: 300 * time.Millisecond},
		{svc: "imap-login", minAvail: 0, churners: 2, pause: 300 * time.Millisecond},
		{svc: "imap-login", minAvail: 1, churners: 1, reset: true, pause: 300 * time.Millisecond},
		{svc: "pop3-login", minAvail: 1, churners: 1, pause: 300 * time.Millisecond},
		{svc: "pop3-login", minAvail: 1, churners: 1, reset: true, pause: 300 * time.Millisecond},
		{svc: "pop3-login", minAvail: 1, churners: 1, pause: time.Second},
		{svc: "pop3-login", minAvail: 0, churners: 2, pause: 300 * time.Millisecond},
	}
	for _, tc := range tests {
		name := fmt.Sprintf("%s/process_min_avail=%d/churners=%d/reset=%v/pause=%s", tc.svc, tc.minAvail, tc.churners, tc.reset, tc.pause)
		t.Run(name, func(t *testing.T) {
			_, base := startHeldAccess(t)
			l := startLab(t, tc.svc, "base_dir = "+base+"\nlogin_access_sockets = held",
				fmt.Sprintf("service_count = 1\nprocess_limit = 3\nprocess_min_avail = %d", tc.minAvail))
			proto := strings.TrimSuffix(tc.svc, "-login")
			var made, bad atomic.Int64
			stop := make(chan struct{})
			wait, seen := churn(l.port, "127.0.0.2", tc.churners, tc.reset, &made, &bad, stop)
			stopped := false
			stopChurn := func() {
				if !stopped {
					stopped = true
					close(stop)
					wait()
				}
			}
			defer stopChurn()
			l.waitFor("the churner connecting", func(control.ServiceStatus) bool { return made.Load() >= 20 })
			rounds := max(4, int(3*time.Second/(tc.pause+50*time.Millisecond)))
			var failed []string
			for i := range rounds {
				if why := honestLogin(l.port, proto, "127.0.0.1", tc.pause); why != "" {
					failed = append(failed, strconv.Itoa(i)+": "+why)
				}
			}
			stopChurn()
			st := l.status()
			honestEvicted, churnEvicted := l.evictedFrom("127.0.0.1"), l.evictedFrom("127.0.0.2")
			t.Logf("honest exchanges: %d of %d succeeded; churner connections %d, %d of them not greeted alone %v; evicted %d (logged: 127.0.0.1 %d, 127.0.0.2 %d), dropped %d, refused %d, access errors %d",
				rounds-len(failed), rounds, made.Load(), bad.Load(), seen(), st.Counters.Evicted, honestEvicted, churnEvicted, st.Counters.Dropped, st.Counters.Refused, st.Counters.AccessErrors)
			if len(failed) > 0 {
				t.Errorf("honest exchanges failed beside %d churner(s):\n%s", tc.churners, strings.Join(failed, "\n"))
			}
			if honestEvicted > 0 {
				t.Errorf("the honest client was evicted %d times", honestEvicted)
			}
			if bad.Load() > 0 {
				t.Errorf("%d churner connections evicted or dropped with at most %d live clients, process_limit = 3: %v", bad.Load(), tc.churners+1, seen())
			}
		})
	}
}

// evictions lists what the pool told the fake workers about evictions
// and hand-overs, in worker order ("give N", "evict N", "evict N (ip
// limit)").
func evictions(r *fakeRunner) []string {
	var out []string
	for _, w := range r.told() {
		out = append(out, w...)
	}
	return out
}

// playSteps plays steps against p: "A ADDR" a connection from ADDR
// reaches the supervisor; "L N", "P N", "C N" client N becomes logging
// in, proxying, closed (reported by the worker it was given to); "X W"
// worker W exits; "D ID ADDR [AGO]" worker 0 accepted client ID itself
// from ADDR (high-performance), AGO (a time.Duration) before its report,
// logging in.
func playSteps(t *testing.T, p *pool, r *fakeRunner, steps []string) {
	t.Helper()
	workerOf := func(id string) *fakeWorker {
		for i := range r.n() {
			for _, s := range r.w(i).got() {
				if s == "give "+id {
					return r.w(i)
				}
			}
		}
		t.Fatalf("client %s was given to no worker", id)
		return nil
	}
	for _, s := range steps {
		f := strings.Fields(s)
		n, _ := strconv.ParseUint(f[1], 10, 64)
		switch f[0] {
		case "A":
			p.arrive(-1, netip.AddrPortFrom(netip.MustParseAddr(f[1]), 1))
			pastEvictGrace() // its eviction, if any, before the next step
		case "L", "P", "C":
			ev := worker.Event{Kind: worker.EventState, Conn: n, State: map[string]ipc.ConnState{"L": ipc.StateLoggingIn, "P": ipc.StateProxying}[f[0]]}
			if f[0] == "C" {
				ev = worker.Event{Kind: worker.EventClosed, Conn: n}
			}
			workerOf(f[1]).emit(ev)
		case "X":
			r.w(int(n)).emit(worker.Event{Kind: worker.EventExit})
		case "D":
			// A direct accept of the first process (Seq 1): its own ids
			// are 1<<32|n; evictions print n.
			acc := ipc.Accept{Remote: netip.AddrPortFrom(netip.MustParseAddr(f[2]), 1), At: time.Now().UnixNano()}
			if len(f) > 3 {
				ago, err := time.ParseDuration(f[3])
				if err != nil {
					t.Fatalf("bad step %q: %v", s, err)
				}
				acc.At -= int64(ago)
			}
			r.w(0).emit(worker.Event{Kind: worker.EventAccepted, Conn: 1<<32 | n, State: ipc.StateLoggingIn, Accept: acc})
		default:
			t.Fatalf("bad step %q", s)
		}
	}
}

// TestVictimBySource: at the limit the victim is the oldest logging-in
// client of the source that holds the most places; with one client per
// source, the oldest (Dovecot's rule); never one of a source holding
// fewer places than the waiting connection's; places come back to the
// waiting connection of the source holding the fewest.
func TestVictimBySource(t *testing.T) {
	hs := func(limit int, extra string) string {
		return extra + "service imap-login {\n service_count = 1\n process_limit = " + strconv.Itoa(limit) + "\n}\n"
	}
	tests := []struct {
		name    string
		conf    string
		steps   []string
		want    []string // evictions and hand-overs, in worker order
		waiting int
		from    map[uint64]string // client id -> its address
	}{
		{
			name:  "one client per source: the oldest",
			conf:  hs(3, ""),
			steps: []string{"A 10.0.0.1", "A 10.0.0.2", "A 10.0.0.3", "A 10.0.0.4"},
			want:  []string{"give 1", "evict 1", "give 2", "give 3"}, waiting: 1,
		},
		{
			name:  "the source with the most places, not the oldest client",
			conf:  hs(3, ""),
			steps: []string{"A 10.0.0.1", "A 10.0.0.2", "A 10.0.0.2", "A 10.0.0.3"},
			want:  []string{"give 1", "give 2", "evict 2", "give 3"}, waiting: 1,
		},
		{
			name:  "the arrival's own source when it holds the most",
			conf:  hs(3, ""),
			steps: []string{"A 10.0.0.1", "A 10.0.0.2", "A 10.0.0.2", "A 10.0.0.2"},
			want:  []string{"give 1", "give 2", "evict 2", "give 3"}, waiting: 1,
		},
		{
			name:  "proxying clients hold no place and are never victims",
			conf:  hs(3, ""),
			steps: []string{"A 10.0.0.1", "A 10.0.0.2", "A 10.0.0.2", "P 2", "A 10.0.0.3"},
			want:  []string{"give 1", "evict 1", "give 2", "give 3"}, waiting: 1,
		},
		{
			name:  "an IPv6 /64 is one source",
			conf:  hs(3, ""),
			steps: []string{"A 10.0.0.1", "A 2001:db8::1", "A 2001:db8::2", "A 10.0.0.3"},
			want:  []string{"give 1", "give 2", "evict 2", "give 3"}, waiting: 1,
		},
		{
			name:  "login_prelogin_ipv6_prefix = 128: each address is a source",
			conf:  hs(3, "login_prelogin_ipv6_prefix = 128\n"),
			steps: []string{"A 10.0.0.1", "A 2001:db8::1", "A 2001:db8::2", "A 10.0.0.3"},
			want:  []string{"give 1", "evict 1", "give 2", "give 3"}, waiting: 1,
		},
		{
			// 10.0.0.2's clients are being access-checked: not
			// evictable. Its two waiting connections give it 3 places:
			// they do not evict 10.0.0.1's single client, they wait.
			name:  "never a source with fewer places than the waiting one's",
			conf:  hs(2, "login_access_sockets = tcpwrap\n"),
			steps: []string{"A 10.0.0.1", "L 1", "A 10.0.0.2", "A 10.0.0.2", "A 10.0.0.2"},
			want:  []string{"give 1", "give 2"}, waiting: 2,
		},
		{
			// A third source's connection (1 place) may evict
			// 10.0.0.1's client (1 place), and gets the place first,
			// before 10.0.0.2's older waiting connections.
			name:  "places go first to the source with the fewest",
			conf:  hs(2, "login_access_sockets = tcpwrap\n"),
			steps: []string{"A 10.0.0.1", "L 1", "A 10.0.0.2", "A 10.0.0.2", "A 10.0.0.2", "A 10.0.0.3", "X 0"},
			want:  []string{"give 1", "evict 1", "give 2", "give 3"}, waiting: 2,
			from: map[uint64]string{3: "10.0.0.3"}, // ids are given at hand-over
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				p, r := testPool(t, tc.conf)
				playSteps(t, p, r, tc.steps)
				if d := cmp.Diff(tc.want, evictions(r)); d != "" {
					t.Errorf("evictions and hand-overs (-want +got)\n%s", d)
				}
				if _, _, waiting := p.snapshot(); waiting != tc.waiting {
					t.Errorf("%d waiting, want %d", waiting, tc.waiting)
				}
				for id, addr := range tc.from {
					p.mu.Lock()
					c := p.conns[id]
					p.mu.Unlock()
					if c == nil || c.remote.Addr().String() != addr {
						t.Errorf("client %d: %v, want one from %s", id, c, addr)
					}
				}
			})
		})
	}
}

// TestPreloginIPLimit: a source holds at most login_prelogin_ip_limit
// places; a connection beyond evicts the source's own oldest logging-in
// client (its slot not kept for the supervisor in high-performance
// mode), or is closed if the source has none; 0 means no limit.
func TestPreloginIPLimit(t *testing.T) {
	tests := []struct {
		name    string
		conf    string
		steps   []string
		want    []string
		dropped uint64
	}{
		{
			name:  "the source's own oldest, not another's",
			conf:  "login_prelogin_ip_limit = 2\nservice imap-login {\n service_count = 1\n process_limit = 10\n}\n",
			steps: []string{"A 10.0.0.9", "A 10.0.0.1", "A 10.0.0.1", "A 10.0.0.1"},
			want:  []string{"give 1", "give 2", "evict 2 (ip limit)", "give 3", "give 4"},
		},
		{
			name:  "0: no limit",
			conf:  "login_prelogin_ip_limit = 0\nservice imap-login {\n service_count = 1\n process_limit = 10\n}\n",
			steps: []string{"A 10.0.0.1", "A 10.0.0.1", "A 10.0.0.1"},
			want:  []string{"give 1", "give 2", "give 3"},
		},
		{
			name:  "nothing of the source to evict: closed",
			conf:  "login_prelogin_ip_limit = 2\nlogin_access_sockets = tcpwrap\nservice imap-login {\n service_count = 1\n process_limit = 10\n}\n",
			steps: []string{"A 10.0.0.1", "A 10.0.0.1", "A 10.0.0.1", "A 10.0.0.2"},
			want:  []string{"give 1", "give 2", "give 3"}, dropped: 1, // ids are given at hand-over
		},
		{
			name:  "a source's places end with its pre-login",
			conf:  "login_prelogin_ip_limit = 2\nservice imap-login {\n service_count = 1\n process_limit = 10\n}\n",
			steps: []string{"A 10.0.0.1", "A 10.0.0.1", "P 1", "C 2", "A 10.0.0.1", "A 10.0.0.1"},
			want:  []string{"give 1", "give 2", "give 3", "give 4"},
		},
		{
			name:  "high-performance direct accepts, by the reported address",
			conf:  "login_prelogin_ip_limit = 2\nservice imap-login {\n service_count = 0\n client_limit = 10\n process_limit = 1\n process_min_avail = 1\n}\n",
			steps: []string{"D 11 10.0.0.1", "D 12 10.0.0.1", "D 13 10.0.0.2", "D 14 10.0.0.1"},
			want:  []string{"evict 4294967307 (ip limit)"}, // 1<<32 | 11
		},
		{
			// Direct accepts are reported in batches, up to 20 ms late:
			// age counts from the accept the report carries.
			name:  "high-performance direct accepts, oldest by accept time",
			conf:  "login_prelogin_ip_limit = 2\nservice imap-login {\n service_count = 0\n client_limit = 10\n process_limit = 1\n process_min_avail = 1\n}\n",
			steps: []string{"D 11 10.0.0.1 1ms", "D 12 10.0.0.1 15ms", "D 13 10.0.0.1"},
			want:  []string{"evict 4294967308 (ip limit)"}, // 1<<32 | 12
		},
		{
			name:  "high-performance direct accepts, never later than reported",
			conf:  "login_prelogin_ip_limit = 2\nservice imap-login {\n service_count = 0\n client_limit = 10\n process_limit = 1\n process_min_avail = 1\n}\n",
			steps: []string{"D 11 10.0.0.1 -1h", "D 12 10.0.0.1", "D 13 10.0.0.1"},
			want:  []string{"evict 4294967307 (ip limit)"}, // 11 and 12 equally old: the lower id
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				p, r := testPool(t, tc.conf, fakeListener(t))
				playSteps(t, p, r, tc.steps)
				if d := cmp.Diff(tc.want, evictions(r)); d != "" {
					t.Errorf("evictions and hand-overs (-want +got)\n%s", d)
				}
				if _, ctr, _ := p.snapshot(); ctr.Dropped != tc.dropped {
					t.Errorf("dropped %d, want %d", ctr.Dropped, tc.dropped)
				}
			})
		})
	}
}

// TestAcceptedReportCarriesAddress: an 'A' report carries the client's
// address (unmapped), port and accept time, alone or in a batch between
// 10-byte records; an unknown address stays unknown.
func TestAcceptedReportCarriesAddress(t *testing.T) {
	for _, remote := range []string{"127.0.0.2:40001", "[2001:db8::7]:143", "[::ffff:192.0.2.1]:5", ""} {
		var want netip.AddrPort
		if remote != "" {
			want = netip.MustParseAddrPort(remote)
			want = netip.AddrPortFrom(want.Addr().Unmap(), want.Port())
		}
		b := ipc.AppendReport([]byte{ipc.MsgBatch}, ipc.MsgState, 7, uint8(ipc.StateLoggingIn), ipc.Accept{})
		b = ipc.AppendReport(b, ipc.MsgAccepted, 1<<32|1, uint8(ipc.StateChecking), ipc.Accept{Remote: want, At: -1 << 62})
		b = ipc.AppendReport(b, ipc.MsgClosed, 9, uint8(ipc.CloseNormal), ipc.Accept{})
		var got []string
		for r := b[1:]; len(r) >= 10; r = r[ipc.ReportLen(r[0]):] {
			a := ipc.ReportAccept(r[:ipc.ReportLen(r[0])])
			got = append(got, fmt.Sprintf("%c %s %d", r[0], a.Remote, a.At))
		}
		if d := cmp.Diff([]string{"T invalid AddrPort 0", fmt.Sprintf("A %s %d", want, -1<<62), "X invalid AddrPort 0"}, got); d != "" {
			t.Errorf("%q (-want +got)\n%s", remote, d)
		}
	}
}

// TestPreloginIPSettings: defaults, values and errors of
// login_prelogin_ip_limit and login_prelogin_ipv6_prefix.
func TestPreloginIPSettings(t *testing.T) {
	tests := []struct {
		conf          string
		limit, prefix int
		err           string
	}{
		{conf: "", limit: config.DefaultPreloginIPLimit, prefix: 64},
		{conf: "login_prelogin_ip_limit = 0\nlogin_prelogin_ipv6_prefix = /56\n", limit: 0, prefix: 56},
		{conf: "login_prelogin_ip_limit = 20\nlogin_prelogin_ipv6_prefix = 128\n", limit: 20, prefix: 128},
		{conf: "login_prelogin_ip_limit = -1\n", err: `t.conf:2: login_prelogin_ip_limit: invalid number "-1"`},
		{conf: "\nlogin_prelogin_ipv6_prefix = 129\n", err: `t.conf:3: login_prelogin_ipv6_prefix: invalid prefix length "129" (1 to 128)`},
	}
	for _, tc := range tests {
		cfg, err := config.Parse("t.conf", []byte("base_dir = /tmp/x\n"+tc.conf))
		if tc.err != "" {
			if err == nil || err.Error() != tc.err {
				t.Errorf("%q: error %v, want %s", tc.conf, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%q: %v", tc.conf, err)
		}
		if cfg.PreloginIPLimit != tc.limit || cfg.PreloginIPv6Prefix != tc.prefix {
			t.Errorf("%q: limit %d, prefix %d; want %d, %d", tc.conf, cfg.PreloginIPLimit, cfg.PreloginIPv6Prefix, tc.limit, tc.prefix)
		}
	}
}

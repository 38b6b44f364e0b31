package master

import (
	"bufio"
	"net"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tcpwrapd/tcpwrapd/pkg/logind/control"
)

// burstClient is one connection of a burst and what it was sent.
type burstClient struct {
	c        net.Conn
	r        *bufio.Reader
	dialed   time.Time
	greeting string
	greetIn  time.Duration // from dial to greeting
}

// burst connects n clients to 127.0.0.1:port one after the other without
// waiting for anything (each connect completes in the kernel, so all n
// are in the listen queue, in this order, within a millisecond or so),
// then reads every greeting at once, waiting at most wait for each.
func burst(t *testing.T, port, n int, wait time.Duration) []*burstClient {
	t.Helper()
	cs := make([]*burstClient, n)
	for i := range cs {
		c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(port), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		cs[i] = &burstClient{c: c, r: bufio.NewReader(c), dialed: time.Now()}
	}
	var wg sync.WaitGroup
	for _, bc := range cs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			bc.c.SetReadDeadline(bc.dialed.Add(wait))
			s, err := bc.r.ReadString('\n')
			bc.greetIn = time.Since(bc.dialed)
			if err != nil && s == "" {
				s = "EOF"
			}
			bc.greeting = strings.TrimRight(s, "\r\n")
		}()
	}
	wg.Wait()
	return cs
}

// next reads bc's next line within wait ("EOF" at the end of the stream,
// "TIMEOUT" if nothing came).
func (bc *burstClient) next(wait time.Duration) string {
	bc.c.SetReadDeadline(time.Now().Add(wait))
	s, err := bc.r.ReadString('\n')
	if err != nil && s == "" {
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			return "TIMEOUT"
		}
		return "EOF"
	}
	return strings.TrimRight(s, "\r\n")
}

// TestBurstAtTheLimitEvictsOncePerArrival: clients connect at once to
// a service with fewer free slots (the tester's case: 8 at once,
// high-security, process_limit 3). Each one is greeted within seconds
// (none waits for DropTimeout), and each arrival beyond the free slots
// evicts exactly one client, never a proxying one: a victim gets the
// greeting, then POP3's "-ERR Connection queue full" and EOF; the others
// answer a command; nothing is dropped. Clients that were logging in
// before the burst ("old") go first. Without access checks a client is
// logging in from the moment it is handed to a process, started or not,
// so the victims are exactly the oldest clients of the burst. With
// access checks (tcpwrapd) the clients of the first processes are being
// checked, not evictable, when the rest arrive: the evictions happen as
// clients become logging-in, and which of several clients checked at the
// same moment is logging in first is up to the processes, so only the
// number of victims is checked then.
func TestBurstAtTheLimitEvictsOncePerArrival(t *testing.T) {
	for _, tt := range []struct {
		name     string
		conf     string
		checked  bool // login_access_sockets = tcpwrapd (allows 127.0.0.1)
		capacity int  // process_limit x client_limit
		proxying bool // one client proxying before the burst
		old      int  // logging-in clients before the burst (after the proxying one)
		n        int  // clients in the burst
		direct   int  // clients the processes accept by themselves
	}{
		{name: "high-security", conf: "service_count = 1\nprocess_limit = 3", capacity: 3, n: 8},
		{name: "high-security-prefork", conf: "service_count = 1\nprocess_limit = 3\nprocess_min_avail = 3", capacity: 3, n: 8},
		{name: "high-security-old-clients", conf: "service_count = 1\nprocess_limit = 4", capacity: 4, proxying: true, old: 2, n: 6},
		{name: "high-security-checked", conf: "service_count = 1\nprocess_limit = 3", checked: true, capacity: 3, n: 8},
		{name: "high-performance", conf: "service_count = 0\nclient_limit = 2\nprocess_limit = 2\nprocess_min_avail = 2", capacity: 4, n: 8, direct: 4},
		{name: "high-performance-on-demand", conf: "service_count = 0\nclient_limit = 2\nprocess_limit = 2\nprocess_min_avail = 0", capacity: 4, n: 8},
		{name: "high-performance-old-clients", conf: "service_count = 0\nclient_limit = 2\nprocess_limit = 2\nprocess_min_avail = 2", capacity: 4, proxying: true, old: 1, n: 6},
		{name: "high-performance-checked", conf: "service_count = 0\nclient_limit = 2\nprocess_limit = 2\nprocess_min_avail = 2", checked: true, capacity: 4, n: 8, direct: 4},
	} {
		t.Run(tt.name, func(t *testing.T) {
			global := ""
			if tt.checked {
				global = "base_dir = " + startTcpwrapd(t) + "\nlogin_access_sockets = tcpwrapd/access"
			}
			l := startLab(t, "pop3-login", global, tt.conf)
			l.waitFor("preforked processes", func(s control.ServiceStatus) bool { return readyProcs(s) == s.ProcessMinAvail })
			var before []*tclient
			held := 0
			if tt.proxying {
				c := l.dial("")
				c.line()
				if r := c.cmd("XPROXY"); r != "+OK" {
					t.Fatalf("XPROXY: %q", r)
				}
				before = append(before, c)
				held++
			}
			for i := 0; i < tt.old; i++ {
				c := l.dial("")
				c.line()
				before = append(before, c)
				held++
			}
			l.waitFor("clients before the burst", func(s control.ServiceStatus) bool {
				n, proxying := 0, 0
				for _, p := range s.Procs {
					n += p.LoggingIn
					proxying += p.Proxying
				}
				return n == tt.old && proxying == held-tt.old
			})
			start := l.status().Counters

			cs := burst(t, l.port, tt.n, DropTimeout/2)
			var got, want []string
			for i, bc := range cs {
				want = append(want, "+OK loginsvc ready.")
				got = append(got, bc.greeting)
				if bc.greetIn >= DropTimeout/2 {
					t.Errorf("client %d waited %v for its greeting", i, bc.greetIn)
				}
			}
			if d := cmp.Diff(want, got); d != "" {
				t.Fatalf("greetings (-want +got)\n%s\nstatus %+v", d, l.status())
			}
			evictions := tt.n - (tt.capacity - held)
			st := l.waitFor("evictions", func(s control.ServiceStatus) bool {
				n := 0
				for _, p := range s.Procs {
					n += p.LoggingIn + p.Proxying
				}
				return s.Counters.Evicted-start.Evicted >= uint64(evictions) && n == tt.capacity && s.Pending == 0
			})

			// The old logging-in clients went first; the proxying one stays.
			for i, c := range before {
				want := "-ERR Connection queue full"
				if tt.proxying && i == 0 {
					want = "+OK"
					c.c.Write([]byte("CAPA\r\n"))
				}
				if got := c.line(); got != want {
					t.Errorf("client %d from before the burst: got %q, want %q", i, got, want)
				}
			}
			// The burst: a victim gets the notice and EOF, a survivor
			// nothing (for half a second), then answers a command.
			victims := evictions - tt.old
			outcome := make([]string, len(cs))
			var wg sync.WaitGroup
			for i, bc := range cs {
				wg.Add(1)
				go func() {
					defer wg.Done()
					if line := bc.next(500 * time.Millisecond); line != "TIMEOUT" {
						outcome[i] = line + " | " + bc.next(time.Second)
						return
					}
					bc.c.Write([]byte("CAPA\r\n"))
					outcome[i] = "alive: " + bc.next(time.Second)
				}()
			}
			wg.Wait()
			want = nil
			for i := range cs {
				if i < victims {
					want = append(want, "-ERR Connection queue full | EOF")
				} else {
					want = append(want, "alive: +OK")
				}
			}
			if tt.checked {
				sort.Strings(outcome)
				sort.Strings(want)
			}
			if d := cmp.Diff(want, outcome); d != "" {
				t.Errorf("burst clients after it (-want +got)\n%s", d)
			}
			for _, p := range st.Procs {
				if n := p.Checking + p.LoggingIn + p.Proxying; n > st.ClientLimit {
					t.Errorf("process %d holds %d clients, client_limit %d", p.PID, n, st.ClientLimit)
				}
			}
			ct := st.Counters
			ct.Accepted -= start.Accepted
			ct.Direct -= start.Direct
			ct.Evicted -= start.Evicted
			if ct.Evicted != uint64(evictions) || ct.Dropped != 0 || ct.Accepted != uint64(tt.n) {
				t.Errorf("burst counters %+v: want %d evicted, 0 dropped, %d accepted", ct, evictions, tt.n)
			}
			if tt.direct > 0 && ct.Direct != uint64(tt.direct) {
				t.Errorf("%d accepted directly, want %d", ct.Direct, tt.direct)
			}
		})
	}
}

package master

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/tcpwrapd/tcpwrapd/pkg/logind/control"
)

// heldAccess is a login_access_sockets entry that allows every client,
// at once unless hold is set: then it reports each request on asked and
// answers only when release is signalled (a client can reset while its
// access check is in progress).
type heldAccess struct {
	hold    atomic.Bool
	asked   chan struct{}
	release chan struct{}
}

// startHeldAccess serves a heldAccess on BASE/login/held, BASE a new
// temporary directory meant as the lab's base_dir (the socket is then
// "held" inside the chroot); it returns the server and BASE.
func startHeldAccess(t *testing.T) (*heldAccess, string) {
	t.Helper()
	base := t.TempDir()
	os.MkdirAll(filepath.Join(base, "login"), 0o755)
	path := filepath.Join(base, "login", "held")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(path, 0o666) // the login user connects
	t.Cleanup(func() { ln.Close() })
	h := &heldAccess{asked: make(chan struct{}, 1), release: make(chan struct{}, 1)}
	go func() {
		for {
			c, err := ln.AcceptUnix()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				buf := make([]byte, 64)
				oob := make([]byte, syscall.CmsgSpace(4))
				_, oobn, _, _, err := c.ReadMsgUnix(buf, oob)
				if msgs, perr := syscall.ParseSocketControlMessage(oob[:oobn]); perr == nil {
					for _, m := range msgs {
						fds, _ := syscall.ParseUnixRights(&m)
						for _, fd := range fds {
							syscall.Close(fd)
						}
					}
				}
				if err != nil {
					return
				}
				if h.hold.Load() {
					h.asked <- struct{}{}
					select {
					case <-h.release:
					case <-time.After(10 * time.Second):
					}
				}
				c.Write([]byte("1\n"))
			}()
		}
	}()
	return h, base
}

// resetStage is a moment at which a client resets its connection: it
// connects to the listener (plain, ssl or haproxy), runs before and
// resets (SO_LINGER 0, close).
type resetStage struct {
	name     string
	listener string
	n        int // resets
	before   func(c *tclient, h *heldAccess)
}

var (
	// resetStagesPlain run without access checks.
	resetStagesPlain = []resetStage{
		{"at once", "plain", 20, nil},
		{"after the greeting", "plain", 4, func(c *tclient, _ *heldAccess) { c.line() }},
		{"mid-command", "plain", 4, func(c *tclient, _ *heldAccess) { c.line(); c.c.Write([]byte("a NOO")) }},
		{"during the TLS handshake", "ssl", 4, func(c *tclient, _ *heldAccess) { c.c.Write([]byte{0x16, 0x03, 0x01, 0x00, 0xa0, 0x01}) }},
		{"waiting for the PROXY header", "haproxy", 4, func(c *tclient, _ *heldAccess) { c.c.Write([]byte("PROXY TCP4 ")) }},
	}
	// resetStagesAccess run with an access check.
	resetStagesAccess = []resetStage{
		{"at once, access check", "plain", 20, nil},
		{"during the access check", "plain", 4, func(c *tclient, h *heldAccess) {
			select {
			case <-h.asked:
			case <-time.After(10 * time.Second):
				c.t.Error("no access check")
			}
		}},
	}
)

// ripLines returns the login processes' lines that name a client
// address ("rip="): exactly one per client that ended.
func (l *lab) ripLines() []string {
	var out []string
	for _, line := range strings.Split(l.logs.String(), "\n") {
		if strings.Contains(line, "rip=") {
			out = append(out, line)
		}
	}
	return out
}

// TestClientResetAtEveryStage: clients that reset their connection at
// any moment (at once after connect, after the greeting, in a command,
// in the TLS handshake, while the PROXY header or the access check is
// awaited) each free their slot, are logged once with their real
// address (rip=127.0.0.1, never "rip=?") and are counted; with
// process_limit 3, after all of them an honest client is greeted at
// once, and no login process is left that has served its clients and
// stays without one. Both protocols, high-security (with and without
// preforked processes) and high-performance.
func TestClientResetAtEveryStage(t *testing.T) {
	modes := []struct{ name, conf string }{
		{"high-security", "service_count = 1\nprocess_limit = 3"},
		{"high-security prefork", "service_count = 1\nprocess_limit = 3\nprocess_min_avail = 2"},
		{"high-performance", "service_count = 0\nprocess_limit = 3\nclient_limit = 3\nprocess_min_avail = 1"},
	}
	for _, svc := range []string{"imap-login", "pop3-login"} {
		proto := strings.TrimSuffix(svc, "-login")
		for _, mode := range modes {
			for _, access := range []bool{false, true} {
				name := svc + "/" + mode.name
				stages := resetStagesPlain
				if access {
					name += "/access check"
					stages = resetStagesAccess
				}
				t.Run(name, func(t *testing.T) {
					testResets(t, svc, proto, mode.conf, access, stages)
				})
			}
		}
	}
}

func testResets(t *testing.T, svc, proto, conf string, access bool, stages []resetStage) {
	dir := t.TempDir()
	certPath, keyPath, _ := testCert(t, dir)
	sport, hport := freePort(t), freePort(t)
	global := fmt.Sprintf("ssl = yes\nssl_cert = <%s\nssl_key = <%s\nhaproxy_trusted_networks = 127.0.0.1\n", certPath, keyPath)
	var h *heldAccess
	if access {
		var base string
		h, base = startHeldAccess(t)
		global += "base_dir = " + base + "\nlogin_access_sockets = held\n"
	}
	l := startLab(t, svc, global, fmt.Sprintf("inet_listener %ss {\n port = %d\n ssl = yes\n}\ninet_listener %s-proxy {\n port = %d\n haproxy = yes\n}\n%s",
		proto, sport, proto, hport, conf))
	waitPrefork(l, conf)
	ports := map[string]int{"plain": l.port, "ssl": sport, "haproxy": hport}
	total := 0
	for _, st := range stages {
		for range st.n {
			if h != nil {
				h.hold.Store(st.before != nil)
			}
			c := dialPort(t, ports[st.listener], "127.0.0.1")
			if st.before != nil {
				st.before(c, h)
			}
			reset(c)
			if h != nil && h.hold.Load() {
				h.release <- struct{}{}
			}
		}
		total += st.n
		deadline := time.Now().Add(10 * time.Second)
		for len(l.ripLines()) < total && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		if got := len(l.ripLines()); got != total {
			t.Errorf("%s: %d lines with rip= after %d resets; status %+v", st.name, got, total, l.status())
		}
	}
	if h != nil {
		h.hold.Store(false)
	}
	for _, line := range l.ripLines() {
		if !strings.Contains(line, "rip=127.0.0.1") {
			t.Errorf("not the client's address: %s", line)
		}
	}
	honest := l.dial("127.0.0.1")
	if g := honest.line(); !strings.HasPrefix(g, map[string]string{"imap": "* OK", "pop3": "+OK"}[proto]) {
		t.Fatalf("honest client after %d resets: %q", total, g)
	}
	st := l.waitFor("every ended client counted, no used-up process without a client", func(s control.ServiceStatus) bool {
		clients := 0
		for _, p := range s.Procs {
			n := p.Checking + p.LoggingIn + p.Proxying
			clients += n
			if n == 0 && s.ServiceCount > 0 && p.Served >= s.ServiceCount {
				return false
			}
		}
		return clients == 1 && s.Counters.Accepted == uint64(total+1) && s.Counters.Closed == uint64(total)
	})
	if c := st.Counters; c.Dropped != 0 || c.Lost != 0 || c.Refused != 0 || c.AccessErrors != 0 {
		t.Errorf("counters %+v", c)
	}
}

// TestReloadStormGreetsEveryClient: clients connect one after another,
// without pause, from several goroutines while the configuration is
// reloaded (SIGHUP) over and over; every one of them is greeted, and the
// supervisor counts each (accepted, then closed). A high-performance
// process told to drain (or to stop idle) used to exit while its accept
// loop held a client it had just accepted and not yet counted: the client
// was closed without a greeting, logged nowhere and counted nowhere.
func TestReloadStormGreetsEveryClient(t *testing.T) {
	for _, mode := range []struct{ name, conf string }{
		{"high-performance", "service_count = 0\nprocess_min_avail = 2\nclient_limit = 4"},
		{"high-security", "service_count = 1\nprocess_min_avail = 2"},
	} {
		t.Run(mode.name, func(t *testing.T) {
			l := startLab(t, "imap-login", "shutdown_clients = no", mode.conf)
			waitPrefork(l, mode.conf)
			stop := make(chan struct{})
			var clients atomic.Int64
			errs := make(chan string, 100)
			var wg sync.WaitGroup
			for range 3 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for {
						select {
						case <-stop:
							return
						default:
						}
						c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(l.port), 5*time.Second)
						if err != nil {
							errs <- err.Error()
							return
						}
						clients.Add(1)
						c.SetDeadline(time.Now().Add(10 * time.Second))
						r := bufio.NewReader(c)
						g, err := r.ReadString('\n')
						if !strings.HasPrefix(g, "* OK") {
							errs <- fmt.Sprintf("client %d: greeting %q (%v)", clients.Load(), g, err)
						}
						c.Close()
					}
				}()
			}
			for i := 0; i < 30; i++ {
				if err := l.sup.Reload(l.cfg); err != nil {
					t.Fatal(err)
				}
				time.Sleep(10 * time.Millisecond)
			}
			close(stop)
			wg.Wait()
			close(errs)
			n := 0
			for e := range errs {
				if n++; n <= 5 {
					t.Error(e)
				}
			}
			if n > 0 {
				t.Errorf("%d of %d clients not greeted", n, clients.Load())
			}
			l.waitFor("every client accepted and closed", func(s control.ServiceStatus) bool {
				return s.Counters.Accepted == uint64(clients.Load()) && s.Counters.Closed == uint64(clients.Load())
			})
		})
	}
}

// TestHighPerformanceResetBurstsStayWithinClientLimit sends bursts of
// connections that reset at once to a full high-performance service
// (process_limit 2 × client_limit 4): the supervisor takes arrivals
// while both processes are full and hands them the slots their
// departing clients free, while the processes accept from the same
// listeners themselves. No process may end up over client_limit + 1
// (killed as a protocol violation, its clients lost), and every client
// ends counted.
func TestHighPerformanceResetBurstsStayWithinClientLimit(t *testing.T) {
	l := startLab(t, "imap-login", "", "service_count = 0\nprocess_limit = 2\nclient_limit = 4\nprocess_min_avail = 1")
	waitPrefork(l, "process_min_avail = 1")
	d := net.Dialer{Timeout: 5 * time.Second}
	addr := "127.0.0.1:" + strconv.Itoa(l.port)
	for round := range 4 {
		var cs []*net.TCPConn
		for range 300 {
			c, err := d.Dial("tcp", addr)
			if err != nil {
				t.Fatalf("round %d: %v", round, err)
			}
			cs = append(cs, c.(*net.TCPConn))
		}
		for _, c := range cs {
			c.SetLinger(0)
			c.Close()
		}
	}
	st := l.waitFor("every client ended and counted", func(s control.ServiceStatus) bool {
		c := s.Counters
		return c.Accepted > 0 && c.Accepted == c.Closed+c.Dropped+c.Lost && s.Pending == 0
	})
	if c := st.Counters; c.Violations != 0 || c.Lost != 0 {
		t.Errorf("violations %d, lost %d (want 0, 0); counters %+v", c.Violations, c.Lost, c)
	}
	if lines := l.logs.String(); strings.Contains(lines, "broke the protocol") {
		for _, line := range strings.Split(lines, "\n") {
			if strings.Contains(line, "broke the protocol") {
				t.Error(line)
			}
		}
	}
}

package logind

import (
	"bufio"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
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
// pause, CAPABILITY, LOGOUT. It returns "" on success, else what went
// wrong.
func honestLogin(port int, src string, pause time.Duration) string {
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
	if g := line(); !strings.HasPrefix(g, "* OK") {
		return "greeting: " + g
	}
	time.Sleep(pause)
	c.Write([]byte("a CAPABILITY\r\n"))
	for _, want := range []string{"* CAPABILITY ", "a OK "} {
		if s := line(); !strings.HasPrefix(s, want) {
			return "CAPABILITY: " + s
		}
	}
	c.Write([]byte("b LOGOUT\r\n"))
	for _, want := range []string{"* BYE Logging out", "b OK "} {
		if s := line(); !strings.HasPrefix(s, want) {
			return "LOGOUT: " + s
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
	l.waitFor("the flood evicting", func(s ServiceStatus) bool { return s.Counters.Evicted >= 30 })
	const rounds = 8
	var failed []string
	var took []string
	for i := range rounds {
		start := time.Now()
		if why := honestLogin(l.port, "127.0.0.1", 300*time.Millisecond); why != "" {
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

package accessd

import (
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tcpwrapd/tcpwrapd/pkg/accessd/dovecotsock"
)

// TestGrantedRefused checks verdicts with real rule semantics.
func TestGrantedRefused(t *testing.T) {
	requireEngine(t)
	tests := []struct {
		name        string
		allow, deny string
		daemon      string
		client      string
		want        string
	}{
		{"deny .2, from .1", "", "ALL: 127.0.0.2\n", "imap", "127.0.0.1", "1\n"},
		{"deny .2, from .2", "", "ALL: 127.0.0.2\n", "imap", "127.0.0.2", "0\n"},
		{"allow .1 first", "ALL: 127.0.0.1\n", "ALL: ALL\n", "pop3", "127.0.0.1", "1\n"},
		{"daemon name imap", "", "imap: 127.0.0.1\n", "imap", "127.0.0.1", "0\n"},
		{"daemon name pop3 unaffected", "", "imap: 127.0.0.1\n", "pop3", "127.0.0.1", "1\n"},
		{"names case-insensitive", "", "IMAP: 127.0.0.1\n", "imap", "127.0.0.1", "0\n"},
		{"managesieve never matches", "", "managesieve: ALL\n", "sieve", "127.0.0.1", "1\n"},
		{"host name localhost", "", "ALL: localhost\n", "imap", "127.0.0.1", "0\n"},
		{"host name other", "", "ALL: localhost\n", "imap", "127.0.0.2", "1\n"},
		{"option deny in allow", "imap: 127.0.0.2: DENY\nALL: ALL: ALLOW\n", "", "imap", "127.0.0.2", "0\n"},
		{"option allow in allow", "imap: 127.0.0.2: DENY\nALL: ALL: ALLOW\n", "", "imap", "127.0.0.1", "1\n"},
		{"empty files grant", "", "", "submission", "127.0.0.2", "1\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts := startServer(t, tt.allow, tt.deny, nil)
			got, p := askAccess(t, ts.sock, tt.daemon, tt.client)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("reply (-want +got):\n%s", diff)
			}
			expectEOF(t, p)
			if tt.want == "0\n" {
				waitFor(t, "refusal log", func() bool {
					return count(ts.log.String(), `msg="access refused"`, "daemon=", "client_addr="+tt.client+":", "file="+ts.dir, "line=1") == 1
				})
			}
		})
	}
}

// TestProtocol checks the wire behaviour that does not depend on the rules:
// with empty rule files every valid request is granted.
func TestProtocol(t *testing.T) {
	ts := startServer(t, "", "", nil)
	t.Run("valid", func(t *testing.T) {
		got, p := askAccess(t, ts.sock, "imap", "127.0.0.1")
		if got != "1\n" {
			t.Errorf("reply = %q, want %q", got, "1\n")
		}
		expectEOF(t, p)
	})
	t.Run("log of a request", func(t *testing.T) {
		waitFor(t, "grant log", func() bool {
			return count(ts.log.String(), `msg="access granted"`, "daemon=imap", "client_addr=127.0.0.1:", "server_addr=127.0.0.1:") > 0
		})
	})
}

// TestInvalidRequests sends each invalid request (docs/dovecot-managed.md):
// no reply, as Dovecot's tcpwrap does, the connection is closed, the passed fd is not kept, a log line
// is written, and the server goes on serving.
func TestInvalidRequests(t *testing.T) {
	tests := []struct {
		name  string
		parts []string // written one after another with a pause
	}{
		{"no newline", []string{"imap"}},
		{"newline only", []string{"\n"}},
		{"1024 bytes", []string{strings.Repeat("a", 1023) + "\n"}},
		{"longer than buffer", []string{strings.Repeat("a", 2000) + "\n"}},
		{"split write", []string{"im", "ap\n"}},
		{"trailing data", []string{"imap\nextra"}},
	}
	ts := startServer(t, "", "", nil)
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := dialLoopback(t, "127.0.0.1")
			f := fileOf(t, p.accepted)
			c := dialAccess(t, ts.sock)
			sendRequest(t, c, []byte(tt.parts[0]), int(f.Fd()))
			f.Close()
			for _, part := range tt.parts[1:] {
				time.Sleep(300 * time.Millisecond)
				c.Write([]byte(part)) // may fail: the server may have closed already
			}
			if got := readReply(t, c); got != "" {
				t.Errorf("reply = %q, want none", got)
			}
			expectEOF(t, p)
			waitFor(t, "invalid request log", func() bool {
				return count(ts.log.String(), `msg="invalid request, closing without reply"`) == i+1
			})
		})
	}
	t.Run("still serving", func(t *testing.T) {
		if got, _ := askAccess(t, ts.sock, "imap", "127.0.0.1"); got != "1\n" {
			t.Errorf("reply = %q, want %q", got, "1\n")
		}
	})
}

// TestReadTimeout checks that a silent connection is closed without reply
// and without a log line above debug level.
func TestReadTimeout(t *testing.T) {
	ts := startServer(t, "", "", func(s *server) { s.ReadTimeout = 200 * time.Millisecond })
	start := time.Now() // before the connection: the server's timer starts at its accept
	c := dialAccess(t, ts.sock)
	if got := readReply(t, c); got != "" {
		t.Errorf("reply = %q, want none", got)
	}
	if el := time.Since(start); el < 200*time.Millisecond || el > 3*time.Second {
		t.Errorf("closed after %v, want about 200ms", el)
	}
	waitFor(t, "timeout log", func() bool { return count(ts.log.String(), "level=DEBUG", "no request before timeout") == 1 })
	if n := count(ts.log.String(), "level=WARN"); n != 0 {
		t.Errorf("%d warnings logged:\n%s", n, ts.log)
	}
}

// TestClientVanishes checks that clients that disappear before the reply
// (EPIPE, ECONNRESET) do no harm.
func TestClientVanishes(t *testing.T) {
	ts := startServer(t, "", "", nil)
	for range 20 {
		p := dialLoopback(t, "127.0.0.1")
		f := fileOf(t, p.accepted)
		c := dialAccess(t, ts.sock)
		sendRequest(t, c, []byte("imap\n"), int(f.Fd()))
		f.Close()
		c.Close()
		expectEOF(t, p)
	}
	if got, _ := askAccess(t, ts.sock, "imap", "127.0.0.1"); got != "1\n" {
		t.Errorf("reply after vanished clients = %q, want %q", got, "1\n")
	}
	if n := count(ts.log.String(), "level=WARN"); n != 0 {
		t.Errorf("%d warnings logged:\n%s", n, ts.log)
	}
}

// TestConcurrent runs many checks in parallel through a small MaxConns.
func TestConcurrent(t *testing.T) {
	ts := startServer(t, "", "", func(s *server) { s.MaxConns = 8 })
	const n = 200
	var wg sync.WaitGroup
	replies := make([]string, n)
	for i := range n {
		wg.Go(func() {
			ip := "127.0.0.1"
			if i%2 == 1 {
				ip = "127.0.0.2"
			}
			replies[i], _ = askAccess(t, ts.sock, "imap", ip)
		})
	}
	wg.Wait()
	want := make([]string, n)
	for i := range want {
		want[i] = "1\n"
	}
	if diff := cmp.Diff(want, replies); diff != "" {
		t.Errorf("replies (-want +got):\n%s", diff)
	}
}

// TestConcurrentRefusals is TestConcurrent with real rule semantics.
func TestConcurrentRefusals(t *testing.T) {
	requireEngine(t)
	ts := startServer(t, "", "ALL: 127.0.0.2\n", nil)
	const n = 100
	var wg sync.WaitGroup
	got := make([]string, n)
	want := make([]string, n)
	for i := range n {
		ip, w := "127.0.0.1", "1\n"
		if i%2 == 1 {
			ip, w = "127.0.0.2", "0\n"
		}
		want[i] = w
		wg.Go(func() { got[i], _ = askAccess(t, ts.sock, "imap", ip) })
	}
	wg.Wait()
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("replies (-want +got):\n%s", diff)
	}
}

// TestDrain checks that a connection accepted before shutdown still gets
// its answer, and that a connection that never sends a request is closed
// after dovecotsock.StopGrace instead of holding the shutdown for the drain timeout.
func TestDrain(t *testing.T) {
	ts := startServer(t, "", "", func(s *server) { s.DrainTimeout = 2 * time.Second })
	busy := dialAccess(t, ts.sock)
	idle := dialAccess(t, ts.sock)
	time.Sleep(100 * time.Millisecond) // both accepted
	ts.cancel()
	time.Sleep(100 * time.Millisecond)
	// The listener is closed: new connections fail.
	if c, err := net.Dial("unix", ts.sock); err == nil {
		c.Close()
		t.Error("dial after shutdown succeeded")
	}
	p := dialLoopback(t, "127.0.0.1")
	f := fileOf(t, p.accepted)
	sendRequest(t, busy, []byte("imap\n"), int(f.Fd()))
	f.Close()
	if got := readReply(t, busy); got != "1\n" {
		t.Errorf("in-flight reply = %q, want %q", got, "1\n")
	}
	start := time.Now()
	if got := readReply(t, idle); got != "" {
		t.Errorf("idle reply = %q, want none", got)
	}
	if el := time.Since(start); el > dovecotsock.StopGrace+time.Second {
		t.Errorf("idle connection closed after %v", el)
	}
	ts.stop(t)
	if strings.Contains(ts.log.String(), "drain timeout") {
		t.Errorf("an idle connection held the shutdown until the drain timeout:\n%s", ts.log)
	}
}

// TestRunStopsOnCancel checks that cancelling stops Run with a nil error
// and removes the socket file.
func TestRunStopsOnCancel(t *testing.T) {
	ts := startServer(t, "", "", nil)
	ts.stop(t)
	if _, err := os.Stat(ts.sock); !os.IsNotExist(err) {
		t.Errorf("socket file after stop: %v", err)
	}
}

// TestSilentConnectionsCannotStarve: at MaxConns, the connection that has
// waited longest for its request (at least dovecotsock.SilentAfter) is closed to make
// room for a real check.
func TestSilentConnectionsCannotStarve(t *testing.T) {
	ts := startServer(t, "", "ALL: 127.0.0.2\n", func(s *server) { s.MaxConns = 2; s.ReadTimeout = time.Minute })
	first := dialAccess(t, ts.sock)
	time.Sleep(50 * time.Millisecond)
	dialAccess(t, ts.sock)
	time.Sleep(dovecotsock.SilentAfter + 100*time.Millisecond)
	start := time.Now()
	if r, _ := askAccess(t, ts.sock, "imap", "127.0.0.2"); r != "0\n" {
		t.Errorf("check at the limit answered %q, want %q", r, "0\n")
	}
	if el := time.Since(start); el > 2*time.Second {
		t.Errorf("check at the limit took %v", el)
	}
	if r := readReply(t, first); r != "" {
		t.Errorf("oldest silent connection got %q, want it closed", r)
	}
	if !strings.Contains(ts.log.String(), "connection limit reached") {
		t.Errorf("no log line about the closed connection:\n%s", ts.log)
	}
}

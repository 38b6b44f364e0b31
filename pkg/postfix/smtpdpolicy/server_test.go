package smtpdpolicy

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tcpwrapd/tcpwrapd/pkg/hostsrules"
)

// TestServe: the replies to Postfix 3.7's own request block, several
// requests on one connection, for each way of answering.
func TestServe(t *testing.T) {
	banners := t.TempDir()
	if err := os.WriteFile(filepath.Join(banners, "smtpd"), []byte("No mail from %a, see\thttps://example.org/\n2nd line\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	deny := "smtpd: 127.0.0.2\n" +
		"smtpd: 127.0.0.3 : banners " + banners + "\n" +
		"smtpd: PARANOID\n" +
		"submission: 127.0.0.4\n" +
		"smtpd@127.0.0.9: 127.0.0.5\n"
	type ask struct {
		name, block, want string
	}
	tests := []struct {
		name string
		s    *Server
		asks []ask
	}{
		{"reject", &Server{}, []ask{
			{"allowed", rcpt(t, "127.0.0.1", "localhost", "localhost"), "action=DUNNO\n\n"},
			{"denied", rcpt(t, "127.0.0.2", "unknown", "unknown"), "action=REJECT Access denied\n\n"},
			{"banner", rcpt(t, "127.0.0.3", "unknown", "unknown"), "action=REJECT No mail from 127.0.0.3, see https://example.org/\n\n"},
			{"paranoid", rcpt(t, "192.0.2.1", "unknown", "forged.example"), "action=REJECT Access denied\n\n"},
			{"verified name", rcpt(t, "192.0.2.1", "mx.example", "mx.example"), "action=DUNNO\n\n"},
			{"other daemon by policy_context", rcpt(t, "127.0.0.4", "unknown", "unknown", "policy_context=submission"), "action=REJECT Access denied\n\n"},
			{"not denied for smtpd", rcpt(t, "127.0.0.4", "unknown", "unknown"), "action=DUNNO\n\n"},
			{"daemon@host is server_address", rcpt(t, "127.0.0.5", "unknown", "unknown", "server_address=127.0.0.9"), "action=REJECT Access denied\n\n"},
			{"daemon@host other server", rcpt(t, "127.0.0.5", "unknown", "unknown"), "action=DUNNO\n\n"},
		}},
		{"521 and a message", &Server{RejectCode: "521 5.7.1", DenyMessage: "Go away\r\n"}, []ask{
			{"denied", rcpt(t, "127.0.0.2", "unknown", "unknown"), "action=521 5.7.1 Go away\n\n"},
			{"banner", rcpt(t, "127.0.0.3", "unknown", "unknown"), "action=521 5.7.1 No mail from 127.0.0.3, see https://example.org/\n\n"},
			{"allowed", rcpt(t, "127.0.0.1", "localhost", "localhost"), "action=DUNNO\n\n"},
		}},
		{"listener daemon name", &Server{Daemon: "submission"}, []ask{
			{"denied for submission", rcpt(t, "127.0.0.4", "unknown", "unknown"), "action=REJECT Access denied\n\n"},
			{"smtpd rules do not apply", rcpt(t, "127.0.0.2", "unknown", "unknown"), "action=DUNNO\n\n"},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			logs := &logBuffer{}
			tt.s.Check, tt.s.Log = compile("", deny), testLogger(logs)
			c := dialPolicy(t, "tcp", serve(t, tt.s))
			for _, a := range tt.asks {
				got, err := c.ask(a.block)
				if err != nil || got != a.want {
					t.Errorf("%s: got %q, %v; want %q", a.name, got, err, a.want)
				}
			}
			if t.Failed() {
				t.Logf("log:\n%s", logs)
			}
		})
	}
}

// TestNoReply: a request that cannot be answered gets no reply and a
// closed connection, with the reason logged; the server goes on serving
// other connections.
func TestNoReply(t *testing.T) {
	blocking := func(ctx context.Context, req *hostsrules.Request) hostsrules.Decision {
		if req.Client.Addr.Addr().String() == "127.0.0.7" {
			<-ctx.Done()
		}
		return hostsrules.Decision{Verdict: hostsrules.Granted}
	}
	deny := "smtpd: 127.0.0.6 : nosuchoption\n"
	rulesCheck := compile("", deny)
	check := func(ctx context.Context, req *hostsrules.Request) hostsrules.Decision {
		if req.Client.Addr.Addr().String() == "127.0.0.7" {
			return blocking(ctx, req)
		}
		return rulesCheck(ctx, req)
	}
	tests := []struct {
		name, block, log, kind string
	}{
		{"no =", "request=smtpd_access_policy\nclient_address\n\n", "want name=value", ErrKindBadRequest},
		{"not a policy request", "request=junk\n\n", `want smtpd_access_policy`, ErrKindBadRequest},
		{"too many attributes", "request=smtpd_access_policy\n" + strings.Repeat("a=b\n", 40) + "\n", "more than 40 attributes", ErrKindBadRequest},
		{"too large", "request=smtpd_access_policy\nsender=" + strings.Repeat("x", 3000) + "\n\n", "more than 2048 bytes", ErrKindBadRequest},
		{"bad address", rcpt(t, "127.0.0.300", "unknown", "unknown"), "not an IP address", ErrKindBadRequest},
		{"bad policy_context", rcpt(t, "127.0.0.1", "unknown", "unknown", "policy_context=a/b"), "daemon name", ErrKindBadRequest},
		{"rules error", rcpt(t, "127.0.0.6", "unknown", "unknown"), "rules error", ErrKindNoVerdict},
		{"check timeout", rcpt(t, "127.0.0.7", "unknown", "unknown"), "deadline exceeded", ErrKindNoVerdict},
	}
	logs := &logBuffer{}
	var mu sync.Mutex
	kinds := map[string]int{}
	count := func(kind string) { mu.Lock(); kinds[kind]++; mu.Unlock() }
	addr := serve(t, &Server{Check: check, Log: testLogger(logs), MaxAttributes: 40, MaxRequestBytes: 2048, Timeout: 500 * time.Millisecond, Error: count})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := dialPolicy(t, "tcp", addr)
			if got, err := c.ask(rcpt(t, "127.0.0.1", "localhost", "localhost")); got != "action=DUNNO\n\n" {
				t.Fatalf("first request: %q, %v", got, err)
			}
			got, err := c.ask(tt.block)
			if err != io.EOF || got != "" {
				t.Errorf("got %q, %v; want no reply and EOF", got, err)
			}
			if !strings.Contains(logs.String(), tt.log) {
				t.Errorf("log has no %q:\n%s", tt.log, logs)
			}
			mu.Lock()
			defer mu.Unlock()
			if kinds[tt.kind] != 1 || len(kinds) != 1 {
				t.Errorf("Error counted %v, want %s once", kinds, tt.kind)
			}
			clear(kinds)
		})
	}
}

// TestTimeouts: a client that stops inside a request is closed after
// Timeout, one silent since it connected after Timeout (the read timeout
// of the first block) too.
func TestTimeouts(t *testing.T) {
	logs := &logBuffer{}
	addr := serve(t, &Server{Check: compile("", ""), Log: testLogger(logs), Timeout: 300 * time.Millisecond, IdleTimeout: 600 * time.Millisecond})
	for _, tt := range []struct {
		name, partial string
		min           time.Duration
	}{
		{"inside a request", "request=smtpd_access_policy\nclient_add", 300 * time.Millisecond},
		{"silent", "", 300 * time.Millisecond},
	} {
		t.Run(tt.name, func(t *testing.T) {
			// From before the connection: the server's timers start at
			// the earliest when it accepts, which may be before dial
			// returns here (a busy machine runs the server first).
			start := time.Now()
			c := dialPolicy(t, "tcp", addr)
			got, err := c.ask(tt.partial)
			if err != io.EOF || got != "" {
				t.Fatalf("got %q, %v; want EOF", got, err)
			}
			if el := time.Since(start); el < tt.min {
				t.Errorf("closed after %v, before %v", el, tt.min)
			}
		})
	}
}

// TestUnixSocket: a unix socket listener, as in Postfix's private/
// directory.
func TestUnixSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tcpwrapd")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	serveOn(t, &Server{Check: compile("", "smtpd: 127.0.0.2\n")}, ln)
	c := dialPolicy(t, "unix", path)
	for client, want := range map[string]string{"127.0.0.2": "action=REJECT Access denied\n\n", "127.0.0.1": "action=DUNNO\n\n"} {
		if got, err := c.ask(rcpt(t, client, "unknown", "unknown")); got != want {
			t.Errorf("%s: got %q, %v; want %q", client, got, err, want)
		}
	}
}

// TestServeStops: cancelling the context returns nil and closes the
// listener and idle connections, and a request in progress still gets
// its reply.
func TestServeStops(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	entered, release := make(chan struct{}), make(chan struct{})
	check := func(ctx context.Context, req *hostsrules.Request) hostsrules.Decision {
		if req.Client.Addr.Addr().String() == "127.0.0.8" {
			close(entered)
			<-release
		}
		return hostsrules.Decision{Verdict: hostsrules.Granted}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- (&Server{Check: check}).Serve(ctx, ln) }()
	idle := dialPolicy(t, "tcp", ln.Addr().String())
	if got, err := idle.ask(rcpt(t, "127.0.0.1", "unknown", "unknown")); err != nil {
		t.Fatalf("got %q, %v", got, err)
	}
	busy := dialPolicy(t, "tcp", ln.Addr().String())
	reply := make(chan string, 1)
	go func() {
		got, err := busy.ask(rcpt(t, "127.0.0.8", "unknown", "unknown"))
		if err != nil {
			got += " " + err.Error()
		}
		reply <- got
	}()
	<-entered
	cancel()
	if got, err := idle.ask(""); err != io.EOF {
		t.Errorf("idle connection after cancel: %q, %v; want EOF", got, err)
	}
	close(release)
	if got := <-reply; got != "action=DUNNO\n\n" {
		t.Errorf("request in progress: got %q", got)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Serve: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Serve did not return")
	}
	if c, err := net.Dial("tcp", ln.Addr().String()); err == nil {
		c.Close()
		t.Error("listener still accepts after Serve returned")
	}
}

// TestMaxConnections: with every slot held by connections idle between
// blocks, or silent since they connected, a new client's request is
// answered at once, and one held connection was closed to make room.
func TestMaxConnections(t *testing.T) {
	const max = 8
	for _, tt := range []struct {
		name      string
		sendFirst bool
	}{{"idle between blocks", true}, {"silent", false}} {
		t.Run(tt.name, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			var mu sync.Mutex
			errs := map[string]int{}
			serveOn(t, &Server{Check: compile("", ""), MaxConnections: max, Error: func(k string) {
				mu.Lock()
				errs[k]++
				mu.Unlock()
			}}, ln)
			var held []*policyClient
			for i := range max {
				p := dialPolicy(t, "tcp", ln.Addr().String())
				if tt.sendFirst {
					if got, err := p.ask(rcpt(t, "127.0.0.1", "unknown", "unknown")); err != nil {
						t.Fatalf("holder %d: %q, %v", i, got, err)
					}
				}
				held = append(held, p)
			}
			p := dialPolicy(t, "tcp", ln.Addr().String())
			start := time.Now()
			p.c.SetDeadline(start.Add(time.Second))
			io.WriteString(p.c, rcpt(t, "127.0.0.1", "unknown", "unknown"))
			got, err := p.r.ReadString('\n')
			if err != nil || got != "action=DUNNO\n" {
				t.Fatalf("new client after %v: %q, %v (want an answer within 1s)", time.Since(start), got, err)
			}
			closed := 0
			for _, h := range held {
				h.c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
				if _, err := h.c.Read(make([]byte, 1)); err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
					closed++
				}
			}
			if closed != 1 {
				t.Errorf("%d held connections closed, want 1", closed)
			}
			mu.Lock()
			defer mu.Unlock()
			if errs[ErrKindEvictedIdle] != 1 || errs[ErrKindReadFailed] != 0 {
				t.Errorf("errors counted: %v, want %s once", errs, ErrKindEvictedIdle)
			}
		})
	}
}

// TestSilentConnectionClosed: a connection that sends no block is
// closed after ReadTimeout, not IdleTimeout.
func TestSilentConnectionClosed(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	kinds := make(chan string, 10)
	serveOn(t, &Server{Check: compile("", ""), ReadTimeout: 200 * time.Millisecond, IdleTimeout: time.Hour,
		Error: func(k string) { kinds <- k }}, ln)
	start := time.Now() // before the connection: the server's timer starts at its accept
	p := dialPolicy(t, "tcp", ln.Addr().String())
	p.c.SetReadDeadline(start.Add(20 * time.Second))
	if _, err := p.c.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("silent connection not closed after %v: %v", time.Since(start), err)
	}
	if el := time.Since(start); el < 200*time.Millisecond {
		t.Errorf("closed after %v, before the read timeout", el)
	}
	select {
	case k := <-kinds:
		if k != ErrKindReadTimeout {
			t.Errorf("counted %q, want %q", k, ErrKindReadTimeout)
		}
	case <-time.After(10 * time.Second):
		t.Errorf("%s not counted", ErrKindReadTimeout)
	}
}

// TestServeBadConfig: an invalid setting is an error before anything is
// accepted, and the listener is closed.
func TestServeBadConfig(t *testing.T) {
	for _, s := range []*Server{
		{Check: compile("", ""), RejectCode: "OK"},
		{Check: compile("", ""), Daemon: "a/b"},
		{},
	} {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Serve(context.Background(), ln); err == nil {
			t.Errorf("%+v: Serve returned nil", s)
		}
		if _, err := ln.Accept(); !errors.Is(err, net.ErrClosed) {
			t.Errorf("listener not closed: %v", err)
		}
	}
}

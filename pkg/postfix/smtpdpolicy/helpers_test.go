package smtpdpolicy

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/tcpwrapd/tcpwrapd/internal/policytest"
)

// compile returns a CheckFunc over hosts.allow and hosts.deny texts (as
// tcpwrapd will: the compiled policy, dry-run options).
func compile(allow, deny string) CheckFunc { return policytest.Compile(allow, deny) }

// logBuffer is a concurrency-safe log sink for tests.
type logBuffer = policytest.LogBuffer

func testLogger(buf io.Writer) *slog.Logger { return policytest.Logger(buf) }

// serveOn starts s on ln; the server is stopped (and Serve's return
// checked) at cleanup.
func serveOn(t testing.TB, s *Server, ln net.Listener) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(20 * time.Second):
			t.Errorf("Serve did not return after cancel")
		}
	})
}

// serve starts s on a loopback TCP listener and returns its address.
func serve(t testing.TB, s *Server) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	serveOn(t, s, ln)
	return ln.Addr().String()
}

// policyClient talks to a Server as Postfix's smtpd does.
type policyClient struct {
	t testing.TB
	c net.Conn
	r *bufio.Reader
}

func dialPolicy(t testing.TB, network, addr string) *policyClient {
	t.Helper()
	c, err := net.DialTimeout(network, addr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &policyClient{t: t, c: c, r: bufio.NewReader(c)}
}

// ask sends one block and returns the reply block, or the read error
// (io.EOF: closed without a reply).
func (p *policyClient) ask(block string) (string, error) {
	p.t.Helper()
	p.c.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := io.WriteString(p.c, block); err != nil {
		return "", err
	}
	var b strings.Builder
	for {
		line, err := p.r.ReadString('\n')
		b.WriteString(line)
		if err != nil {
			return b.String(), err
		}
		if line == "\n" {
			return b.String(), nil
		}
	}
}

// block builds a request block from name=value lines.
func block(attrs ...string) string {
	return strings.Join(attrs, "\n") + "\n\n"
}

// rcpt is a request as Postfix 3.7 sends it at RCPT TO (see
// testdata/postfix37-rcpt.txt), with the client's attributes replaced.
func rcpt(t testing.TB, client, name, reverse string, extra ...string) string {
	t.Helper()
	b, err := os.ReadFile("testdata/postfix37-rcpt.txt")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(string(b), "\n\n"), "\n")
	for i, l := range lines {
		switch {
		case strings.HasPrefix(l, "client_address="):
			lines[i] = "client_address=" + client
		case strings.HasPrefix(l, "client_name="):
			lines[i] = "client_name=" + name
		case strings.HasPrefix(l, "reverse_client_name="):
			lines[i] = "reverse_client_name=" + reverse
		}
	}
	return block(append(lines, extra...)...)
}

package authpolicy

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
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

// serve starts s on a loopback listener and returns the base URL; the
// server is stopped (and Serve's return checked) at cleanup.
func serve(t testing.TB, s *Server) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
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
	return "http://" + ln.Addr().String() + "/"
}

// post sends one request and returns the status code and body.
func post(t testing.TB, c *http.Client, url, body string, hdr ...string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("POST %s: reading body: %v", url, err)
	}
	return resp.StatusCode, string(b)
}

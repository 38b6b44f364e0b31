package accessd

import (
	"context"
	"net/netip"
	"testing"

	"github.com/tcpwrapd/tcpwrapd/pkg/hostsrules"
)

// gateResolver blocks name lookups until release is closed, so a test can
// make the client vanish while its check is in progress.
type gateResolver struct {
	started chan struct{}
	release chan struct{}
}

func (g *gateResolver) LookupAddr(ctx context.Context, addr netip.Addr) (string, error) {
	select {
	case g.started <- struct{}{}:
	default:
	}
	select {
	case <-g.release:
	case <-ctx.Done():
	}
	return "localhost", nil
}

func (g *gateResolver) LookupHost(ctx context.Context, network, name string) (string, []netip.Addr, error) {
	return name, []netip.Addr{netip.MustParseAddr("127.0.0.1")}, nil
}

// TestReplyEPIPE makes the login go away while the check runs: the reply
// then fails with EPIPE, which is logged at debug level only, and the
// server goes on.
func TestReplyEPIPE(t *testing.T) {
	requireEngine(t)
	g := &gateResolver{started: make(chan struct{}, 1), release: make(chan struct{})}
	ts := startServer(t, "", "ALL: localhost\n", func(s *server) {
		s.Env = &hostsrules.Env{Resolver: g}
	})
	p := dialLoopback(t, "127.0.0.1")
	f := fileOf(t, p.accepted)
	c := dialAccess(t, ts.sock)
	sendRequest(t, c, []byte("imap\n"), int(f.Fd()))
	f.Close()
	<-g.started
	c.Close()
	close(g.release)
	waitFor(t, "client gone log", func() bool {
		return count(ts.log.String(), "level=DEBUG", `msg="client gone before reply"`, "broken pipe") == 1
	})
	expectEOF(t, p)
	if n := count(ts.log.String(), "level=WARN"); n != 0 {
		t.Errorf("%d warnings:\n%s", n, ts.log)
	}
	if got, _ := askAccess(t, ts.sock, "imap", "127.0.0.2"); got != "1\n" {
		t.Errorf("next reply = %q, want %q", got, "1\n")
	}
}

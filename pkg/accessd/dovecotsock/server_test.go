package dovecotsock

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tcpwrapd/tcpwrapd/pkg/hostsrules"
)

// fakeChecker grants the daemon "imap" and refuses the rest, and records
// what it was asked and the problems counted.
type fakeChecker struct {
	mu      sync.Mutex
	daemons []string
	kinds   []string
}

func (f *fakeChecker) Check(_ context.Context, req *hostsrules.Request, fd int) hostsrules.Decision {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.daemons = append(f.daemons, req.Daemon+" "+req.Client.Addr.Addr().String())
	if req.Daemon == "imap" && fd >= 0 {
		return hostsrules.Decision{Verdict: hostsrules.Granted}
	}
	return hostsrules.Decision{Verdict: hostsrules.Denied}
}

func (f *fakeChecker) Error(kind string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.kinds = append(f.kinds, kind)
}

// TestServeFakeChecker serves the protocol with a Checker that is not
// tcpwrapd's rules: the front end needs nothing else.
func TestServeFakeChecker(t *testing.T) {
	dir, err := os.MkdirTemp("", "dvs")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "access")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	fc := &fakeChecker{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- (&Server{Checker: fc, ReadTimeout: 5 * time.Second}).Serve(ctx, ln) }()

	tl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer tl.Close()
	ask := func(request string) string {
		t.Helper()
		tc, err := net.Dial("tcp", tl.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer tc.Close()
		f, err := tc.(*net.TCPConn).File()
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		c, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: sock, Net: "unix"})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, _, err := c.WriteMsgUnix([]byte(request), syscall.UnixRights(int(f.Fd())), nil); err != nil {
			t.Fatal(err)
		}
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		b := make([]byte, 3)
		n, _ := c.Read(b)
		return string(b[:n])
	}
	got := []string{ask("imap\n"), ask("pop3\n"), ask("imap")}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Serve: %v", err)
	}
	if diff := cmp.Diff([]string{"1\n", "0\n", ""}, got); diff != "" {
		t.Errorf("replies (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"imap 127.0.0.1", "pop3 127.0.0.1"}, fc.daemons); diff != "" {
		t.Errorf("checks (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{ErrKindInvalidRequest}, fc.kinds); diff != "" {
		t.Errorf("problems (-want +got):\n%s", diff)
	}
}

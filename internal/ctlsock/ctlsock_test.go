package ctlsock

import (
	"bufio"
	"context"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestPermitted(t *testing.T) {
	for _, tt := range []struct {
		owner, uid int
		want       bool
	}{{0, 0, true}, {1000, 0, true}, {1000, 1000, true}, {1000, 1001, false}, {-1, 1000, false}, {-1, 0, true}} {
		s := &Server{OwnerUID: tt.owner}
		if got := s.Permitted(tt.uid); got != tt.want {
			t.Errorf("owner %d, uid %d: %v, want %v", tt.owner, tt.uid, got, tt.want)
		}
	}
}

// serve starts s on a socket in a temporary directory and returns a
// function that dials it.
func serve(t *testing.T, s *Server) (dial func() (net.Conn, *bufio.Reader)) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "ctl")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return func() (net.Conn, *bufio.Reader) {
		c, err := net.Dial("unix", path)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		c.SetDeadline(time.Now().Add(10 * time.Second))
		return c, bufio.NewReader(c)
	}
}

// TestServe: lines in, one JSON line out each, a nil answer writes
// nothing, the peer is the test process; OneRequest closes after one
// answer; a refused peer gets Refused's answer and end of file.
func TestServe(t *testing.T) {
	var peers []Peer
	handle := func(_ context.Context, p Peer, line []byte) any {
		peers = append(peers, p)
		if len(line) == 0 {
			return nil
		}
		return map[string]string{"echo": string(line)}
	}
	dial := serve(t, &Server{OwnerUID: os.Geteuid(), Handle: handle})
	c, r := dial()
	c.Write([]byte("status\n\n{\"op\":1}\n"))
	var got []string
	for range 2 {
		l, err := r.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, l)
	}
	if diff := cmp.Diff([]string{"{\"echo\":\"status\"}\n", "{\"echo\":\"{\\\"op\\\":1}\"}\n"}, got); diff != "" {
		t.Errorf("replies (-want +got):\n%s", diff)
	}
	if want := (Peer{PID: os.Getpid(), UID: os.Geteuid()}); len(peers) == 0 || peers[0] != want {
		t.Errorf("peer %v, want %v", peers, want)
	}

	dial = serve(t, &Server{OwnerUID: os.Geteuid(), Handle: handle, OneRequest: true})
	c, r = dial()
	c.Write([]byte("status\n"))
	r.ReadString('\n')
	if l, err := r.ReadString('\n'); err == nil {
		t.Errorf("OneRequest: second line %q, want end of file", l)
	}

	if os.Geteuid() == 0 {
		return // root is always permitted
	}
	dial = serve(t, &Server{OwnerUID: -1, Handle: handle, Refused: func(p Peer) any { return "no" }})
	c, r = dial()
	c.Write([]byte("status\n"))
	if l, _ := r.ReadString('\n'); l != "\"no\"\n" {
		t.Errorf("refused peer read %q", l)
	}
}

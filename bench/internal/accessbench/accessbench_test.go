package accessbench

import (
	"bytes"
	"context"
	"net"
	"net/netip"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestPercentile(t *testing.T) {
	ms := func(ns ...int) []time.Duration {
		var out []time.Duration
		for _, n := range ns {
			out = append(out, time.Duration(n)*time.Millisecond)
		}
		return out
	}
	tests := []struct {
		name string
		in   []time.Duration
		p    float64
		want time.Duration
	}{
		{"empty", nil, 50, 0},
		{"one", ms(7), 99, 7 * time.Millisecond},
		{"median of four", ms(1, 2, 3, 4), 50, 2 * time.Millisecond},
		{"p99 of 100", ms(seq(100)...), 99, 99 * time.Millisecond},
		{"p99 of 101", ms(seq(101)...), 99, 100 * time.Millisecond},
		{"max", ms(1, 2, 3), 100, 3 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Percentile(tt.in, tt.p); got != tt.want {
				t.Errorf("Percentile(%v) = %v, want %v", tt.p, got, tt.want)
			}
		})
	}
}

func seq(n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = i + 1
	}
	return out
}

// startNull serves the null responder on a socket in t.TempDir().
func startNull(t testing.TB) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "null.sock")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ServeNull(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("ServeNull: %v", err)
		}
	})
	return path
}

// startScripted serves a responder that writes reply to every connection
// (nil: close without writing).
func startScripted(t *testing.T, reply []byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "s.sock")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.AcceptUnix()
			if err != nil {
				return
			}
			buf, oob := make([]byte, 1024), make([]byte, 64)
			_, oobn, _, _, _ := c.ReadMsgUnix(buf, oob)
			closeRights(oob[:oobn])
			if reply != nil {
				c.Write(reply)
			}
			c.Close()
		}
	}()
	return path
}

func TestCheckReplies(t *testing.T) {
	tests := []struct {
		name     string
		reply    []byte
		want     Outcome
		wantKind string
	}{
		{"allow", []byte("1\n"), Allow, ""},
		{"deny", []byte("0\n"), Deny, ""},
		{"eof", nil, Failed, "eof"},
		{"no newline", []byte("1"), Failed, "invalid"},
		{"crlf", []byte("1\r\n"), Failed, "invalid"},
		{"two", []byte("2\n"), Failed, "invalid"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ck := NewChecker(startScripted(t, tt.reply), "imap", 5*time.Second)
			got, err := ck.Check(-1)
			if got != tt.want {
				t.Fatalf("Check = %v (%v), want %v", got, err, tt.want)
			}
			if tt.wantKind == "" {
				if err != nil {
					t.Fatalf("err = %v", err)
				}
				return
			}
			ce, ok := err.(*CheckError)
			if !ok || ce.Kind != tt.wantKind {
				t.Fatalf("err = %#v, want kind %q", err, tt.wantKind)
			}
		})
	}
}

func TestCheckNoSocket(t *testing.T) {
	ck := NewChecker(filepath.Join(t.TempDir(), "missing"), "imap", time.Second)
	got, err := ck.Check(-1)
	if ce, ok := err.(*CheckError); got != Failed || !ok || ce.Kind != "connect" {
		t.Fatalf("Check = %v, %v; want Failed connect", got, err)
	}
}

func TestCheckTimeout(t *testing.T) {
	path := filepath.Join(t.TempDir(), "hang.sock")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close() // never accepted: the request waits in the backlog
	got, err := NewChecker(path, "imap", 100*time.Millisecond).Check(-1)
	if ce, ok := err.(*CheckError); got != Failed || !ok || ce.Kind != "timeout" {
		t.Fatalf("Check = %v, %v; want Failed timeout", got, err)
	}
}

func TestRunAgainstNull(t *testing.T) {
	for _, fresh := range []bool{false, true} {
		name := "reuse"
		if fresh {
			name = "fresh"
		}
		t.Run(name, func(t *testing.T) {
			sock := startNull(t)
			r, err := Run(context.Background(), Config{
				Socket: sock, Target: "null", Rules: 1, Workers: 3, Count: 300, Fresh: fresh,
				Source: netip.MustParseAddr("127.0.0.2"),
			})
			if err != nil {
				t.Fatal(err)
			}
			if r.Checks != 300 || r.Allowed != 300 || r.Errors != 0 {
				t.Fatalf("result %+v", r)
			}
			if r.Rate <= 0 || r.P50US <= 0 || r.P99US < r.P50US || r.MaxUS < r.P99US {
				t.Fatalf("bad figures %+v", r)
			}
			if r.Source != "127.0.0.2" || r.Schema != SchemaVersion {
				t.Fatalf("labels %+v", r)
			}
		})
	}
}

// TestPassedFD checks that the service receives the accepted server-side
// socket: its peer is the configured client, its local end our listener.
func TestPassedFD(t *testing.T) {
	path := filepath.Join(t.TempDir(), "peer.sock")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	type seen struct {
		peer, local netip.AddrPort
		err         error
	}
	ch := make(chan seen, 1)
	go func() {
		c, err := ln.AcceptUnix()
		if err != nil {
			ch <- seen{err: err}
			return
		}
		defer c.Close()
		buf, oob := make([]byte, 1024), make([]byte, 64)
		_, oobn, _, _, err := c.ReadMsgUnix(buf, oob)
		if err != nil {
			ch <- seen{err: err}
			return
		}
		msgs, _ := syscall.ParseSocketControlMessage(oob[:oobn])
		fds, err := syscall.ParseUnixRights(&msgs[0])
		if err != nil {
			ch <- seen{err: err}
			return
		}
		var s seen
		p, _ := syscall.Getpeername(fds[0])
		l, _ := syscall.Getsockname(fds[0])
		s.peer = netip.AddrPortFrom(netip.AddrFrom4(p.(*syscall.SockaddrInet4).Addr), uint16(p.(*syscall.SockaddrInet4).Port))
		s.local = netip.AddrPortFrom(netip.AddrFrom4(l.(*syscall.SockaddrInet4).Addr), uint16(l.(*syscall.SockaddrInet4).Port))
		syscall.Close(fds[0])
		c.Write([]byte("1\n"))
		ch <- s
	}()
	src, err := newTCPSource(netip.MustParseAddr("127.0.0.3"))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	p, err := src.pair()
	if err != nil {
		t.Fatal(err)
	}
	defer p.close()
	if out, err := NewChecker(path, "imap", 5*time.Second).Check(p.fd); out != Allow {
		t.Fatalf("Check = %v, %v", out, err)
	}
	s := <-ch
	if s.err != nil {
		t.Fatal(s.err)
	}
	if s.peer != p.client.LocalAddr().(*net.TCPAddr).AddrPort() || s.peer.Addr() != netip.MustParseAddr("127.0.0.3") {
		t.Errorf("peer = %v, want %v", s.peer, p.client.LocalAddr())
	}
	if s.local != src.ln.Addr().(*net.TCPAddr).AddrPort() {
		t.Errorf("local = %v, want %v", s.local, src.ln.Addr())
	}
}

func TestServeNullRaw(t *testing.T) {
	path := filepath.Join(t.TempDir(), "raw.sock")
	lfd, err := syscall.Socket(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Bind(lfd, &syscall.SockaddrUnix{Name: path}); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Listen(lfd, 64); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ServeNullRaw(ctx, lfd, 2) }()
	r, err := Run(context.Background(), Config{Socket: path, Workers: 2, Count: 100})
	if err != nil || r.Allowed != 100 {
		t.Fatalf("Run = %+v, %v", r, err)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("ServeNullRaw did not stop")
	}
}

func TestReport(t *testing.T) {
	in := `noise line
{"schema":1,"target":"null","rules":1000,"checks":100,"checks_per_sec":30000,"p50_us":100,"p99_us":900,"max_us":2000}
{"schema":1,"target":"tcpwrapd","rules":1000,"checks":100,"checks_per_sec":28500,"p50_us":120,"p99_us":950,"max_us":3000}
{"schema":1,"target":"dovecot","rules":1000,"checks":10,"checks_per_sec":300,"p50_us":9000,"p99_us":15000,"max_us":16000}
{"schema":1,"target":"null","rules":100000,"checks":100,"checks_per_sec":30000,"p50_us":100,"p99_us":900,"max_us":2000}
{"schema":1,"target":"tcpwrapd","rules":100000,"checks":100,"checks_per_sec":15000,"p50_us":220,"p99_us":1500,"max_us":3000}
`
	rs, err := ReadResults(strings.NewReader(in))
	if err != nil || len(rs) != 5 {
		t.Fatalf("ReadResults = %d, %v", len(rs), err)
	}
	var b bytes.Buffer
	if err := Report(&b, rs); err != nil {
		t.Fatal(err)
	}
	// compare with runs of blanks squeezed, not the exact column widths
	squeeze := func(s string) string { return strings.Join(strings.Fields(s), " ") }
	out := squeeze(b.String())
	for _, want := range []string{
		"hosts.deny: 1000 lines",
		"ours/null = 0.95x, ours/dovecot = 95x",
		"hosts.deny: 100000 lines",
		"ours/null = 0.50x",
		"1000 0.95x 95x 950µs 900µs 0 PASS",
		"100000 0.50x - 1.50ms 900µs 0 FAIL",
	} {
		if !strings.Contains(out, squeeze(want)) {
			t.Errorf("report lacks %q:\n%s", want, b.String())
		}
	}
}

// BenchmarkCheckNull measures one access check round trip (client side of
// this package + the in-process null responder), with GOMAXPROCS
// goroutines in parallel.
func BenchmarkCheckNull(b *testing.B) {
	sock := startNull(b)
	src, err := newTCPSource(netip.MustParseAddr("127.0.0.1"))
	if err != nil {
		b.Fatal(err)
	}
	defer src.Close()
	ck := NewChecker(sock, "imap", 10*time.Second)
	b.RunParallel(func(pb *testing.PB) {
		p, err := src.pair()
		if err != nil {
			b.Error(err)
			return
		}
		defer p.close()
		for pb.Next() {
			if out, err := ck.Check(p.fd); out != Allow {
				b.Errorf("Check = %v, %v", out, err)
				return
			}
		}
	})
}

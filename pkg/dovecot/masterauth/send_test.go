package masterauth

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestMain runs the test binary as an answering post-login service
// (serviceMain) when MASTERAUTH_TEST_SERVICE names its socket.
func TestMain(m *testing.M) {
	if path := os.Getenv("MASTERAUTH_TEST_SERVICE"); path != "" {
		serviceMain(path)
		return
	}
	os.Exit(m.Run())
}

// serviceMain is a post-login service in a process of its own: every
// request on path gets an OK reply with its tag (and mail pid 4242);
// it says "ready" on stdout once listening and ends when stdin closes.
// Out of the test's process, its allocations are not counted with
// Send's (TestSendAllocs).
func serviceMain(path string) {
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		fmt.Println(err)
		os.Exit(1)
	}
	go func() {
		var b [1]byte
		os.Stdin.Read(b[:])
		os.Exit(0)
	}()
	fmt.Println("ready")
	for {
		c, err := ln.AcceptUnix()
		if err != nil {
			os.Exit(1)
		}
		go func() {
			defer c.Close()
			hdr := make([]byte, 4096)
			oob := make([]byte, unix.CmsgSpace(4))
			n, oobn, _, _, err := c.ReadMsgUnix(hdr, oob)
			if err != nil || n < 4 {
				return
			}
			closeRights(oob[:oobn])
			rep, _ := Reply{Tag: binary.NativeEndian.Uint32(hdr), Status: StatusOK, MailPID: 4242}.MarshalBinary()
			c.Write(rep)
		}()
	}
}

// closeRights closes the descriptors passed in the control messages oob.
func closeRights(oob []byte) {
	msgs, _ := unix.ParseSocketControlMessage(oob)
	for _, m := range msgs {
		fds, _ := unix.ParseUnixRights(&m)
		for _, fd := range fds {
			unix.Close(fd)
		}
	}
}

// startService starts serviceMain and returns its socket.
func startService(tb testing.TB) string {
	tb.Helper()
	path := filepath.Join(tb.TempDir(), "imap")
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), "MASTERAUTH_TEST_SERVICE="+path)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		tb.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		stdin.Close()
		cmd.Wait()
	})
	if line, err := bufio.NewReader(stdout).ReadString('\n'); err != nil || line != "ready\n" {
		tb.Fatalf("service: %q %v", line, err)
	}
	return path
}

// TestSendAllocs: a hand-off allocates what the request and reply need
// and the netpoller's os.File, not a net.Dialer's dial (addresses,
// netFD, the dial's context watch). Send allocated 21 times per call
// with net.Dialer, 9 with raw system calls.
func TestSendAllocs(t *testing.T) {
	path := startService(t)
	f := clientFile(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req := &Request{AuthPID: 1, AuthID: 2, ClientPID: 3, Data: Data("s1", IMAPPrefix(false, "a"), []byte("b NOOP\r\n"))}
	var err error
	allocs := testing.AllocsPerRun(200, func() {
		if _, e := Send(ctx, path, Dovecot23, req, f, Options{}); e != nil {
			err = e
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%.1f allocations per Send", allocs)
	if allocs > 12 {
		t.Errorf("%.1f allocations per Send, want at most 12", allocs)
	}
}

// BenchmarkSend is a whole hand-off to a service in another process.
func BenchmarkSend(b *testing.B) {
	path := startService(b)
	f := clientFile(b)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req := &Request{AuthPID: 1, AuthID: 2, ClientPID: 3, Data: Data("s1", IMAPPrefix(false, "a"), []byte("b NOOP\r\n"))}
	b.ReportAllocs()
	cpu0 := processCPU(b)
	for b.Loop() {
		if _, err := Send(ctx, path, Dovecot23, req, f, Options{}); err != nil {
			b.Fatal(err)
		}
	}
	// This process's CPU time (user and system), not the service's: a
	// figure that the machine's load does not stretch as it does ns/op.
	b.ReportMetric(float64(processCPU(b)-cpu0)/float64(b.N), "cpu-ns/op")
}

// processCPU is the CPU time (user and system) this process has used.
func processCPU(tb testing.TB) time.Duration {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// openFDs is the number of this process's open descriptors.
func openFDs(t *testing.T) int {
	t.Helper()
	des, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(des)
}

// fullBacklog is a unix socket whose listen backlog is full (listen(0)
// and one connection waiting to be accepted): a new connect fails with
// EAGAIN until accept is called. accept takes the waiting connection
// (and closes it) and returns the listener, for the next one.
func fullBacklog(t *testing.T) (path string, accept func() *net.UnixListener) {
	t.Helper()
	path = filepath.Join(t.TempDir(), "full")
	lfd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Bind(lfd, &unix.SockaddrUnix{Name: path}); err != nil {
		t.Fatal(err)
	}
	if err := unix.Listen(lfd, 0); err != nil {
		t.Fatal(err)
	}
	lf := os.NewFile(uintptr(lfd), "full")
	fl, err := net.FileListener(lf) // a dup of the same socket
	lf.Close()
	if err != nil {
		t.Fatal(err)
	}
	ln := fl.(*net.UnixListener)
	t.Cleanup(func() { ln.Close() })
	waiting, e := connectNow(path)
	if e != 0 {
		t.Fatalf("first connect: %v", e)
	}
	if fd, e := connectNow(path); e != unix.EAGAIN {
		if e == 0 {
			unix.Close(fd)
		}
		t.Fatalf("second connect: %v, want EAGAIN (backlog full)", e)
	}
	return path, func() *net.UnixListener {
		c, err := ln.Accept()
		if err != nil {
			t.Error(err)
		} else {
			c.Close()
		}
		unix.Close(waiting)
		return ln
	}
}

// connectNow is one non-blocking connect to path.
func connectNow(path string) (int, syscall.Errno) {
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, err.(syscall.Errno)
	}
	if err := unix.Connect(fd, &unix.SockaddrUnix{Name: path}); err != nil {
		unix.Close(fd)
		return -1, err.(syscall.Errno)
	}
	return fd, 0
}

// serveOne answers one request on ln as answer says (nil: close).
func serveOne(t *testing.T, ln *net.UnixListener, l Layout, answer func(Request) []byte) {
	c, err := ln.AcceptUnix()
	if err != nil {
		t.Error(err)
		return
	}
	defer c.Close()
	b := make([]byte, l.Size()+MaxDataSize)
	oob := make([]byte, unix.CmsgSpace(4))
	n, oobn, _, _, err := c.ReadMsgUnix(b, oob)
	if err != nil {
		t.Error(err)
		return
	}
	closeRights(oob[:oobn])
	req, err := ParseRequest(l, b[:n])
	if err != nil {
		t.Error(err)
		return
	}
	if a := answer(req); a != nil {
		c.Write(a)
	}
}

// TestSendConnectRetry: a full backlog is retried (Dovecot's
// net_connect_unix_with_retries) until the service accepts, for up to
// ConnectRetry, then it is a connect error wrapping EAGAIN.
func TestSendConnectRetry(t *testing.T) {
	path, accept := fullBacklog(t)
	retried := make(chan struct{}, 100)
	connectRetried = func() {
		select {
		case retried <- struct{}{}:
		default:
		}
	}
	defer func() { connectRetried = nil }()
	done := make(chan error, 1)
	go func() {
		_, err := Send(context.Background(), path, Dovecot23, &Request{}, clientFile(t), Options{})
		done <- err
	}()
	<-retried
	ln := accept()
	serveOne(t, ln, Dovecot23, func(r Request) []byte {
		b, _ := Reply{Tag: r.Tag, Status: StatusOK}.MarshalBinary()
		return b
	})
	if err := <-done; err != nil {
		t.Fatalf("Send after a full backlog: %v", err)
	}

	// Never accepted: a connect error after ConnectRetry.
	connectRetried = nil
	path, _ = fullBacklog(t)
	start := time.Now()
	_, err := Send(context.Background(), path, Dovecot23, &Request{}, clientFile(t), Options{})
	var he *Error
	if !errors.As(err, &he) || he.Op != "connect" || !errors.Is(err, syscall.EAGAIN) {
		t.Fatalf("Send to a full backlog = %v, want a connect error wrapping EAGAIN", err)
	}
	if d := time.Since(start); d < ConnectRetry {
		t.Errorf("gave up after %v, before ConnectRetry", d)
	}
}

// TestSendFailuresCloseDescriptors: whatever way a hand-off fails, Send
// returns the error it did before and leaves no descriptor open.
func TestSendFailuresCloseDescriptors(t *testing.T) {
	okReply := func(r Request) []byte {
		b, _ := Reply{Tag: r.Tag, Status: StatusOK}.MarshalBinary()
		return b
	}
	closedFile := func(t *testing.T) *os.File {
		f, err := os.Open(os.DevNull)
		if err != nil {
			t.Fatal(err)
		}
		f.Close()
		return f
	}
	for _, tc := range []struct {
		name string
		// serve answers one request, on ln's socket (nil: none
		// accepted); ctx is Send's, cancel ends it.
		serve  func(t *testing.T, ln *net.UnixListener, cancel func())
		req    Request
		l      Layout
		client func(t *testing.T) *os.File
		path   func(t *testing.T, ln *net.UnixListener) string
		opt    Options
		op     string
		want   error
	}{
		{name: "ok", serve: func(t *testing.T, ln *net.UnixListener, _ func()) { serveOne(t, ln, Dovecot23, okReply) }},
		{name: "no such socket", path: func(t *testing.T, _ *net.UnixListener) string { return filepath.Join(t.TempDir(), "nosuch") },
			op: "connect", want: syscall.ENOENT},
		{name: "path too long", path: func(*testing.T, *net.UnixListener) string { return "/" + string(make([]byte, 200)) },
			op: "connect", want: syscall.EINVAL},
		{name: "full backlog", path: func(t *testing.T, _ *net.UnixListener) string { p, _ := fullBacklog(t); return p },
			op: "connect", want: syscall.EAGAIN},
		{name: "cancelled before", serve: func(_ *testing.T, _ *net.UnixListener, cancel func()) { cancel() },
			op: "connect", want: context.Canceled},
		{name: "data too large", req: Request{Data: make([]byte, MaxDataSize+1)}, op: "send", want: ErrDataTooLarge},
		{name: "unknown layout", l: Layout(99), op: "send"},
		{name: "closed client", client: closedFile, op: "send"},
		{name: "remote closed", serve: func(t *testing.T, ln *net.UnixListener, _ func()) {
			serveOne(t, ln, Dovecot23, func(Request) []byte { return nil })
		}, op: "read", want: ErrRemoteClosed},
		{name: "closed at once", serve: func(t *testing.T, ln *net.UnixListener, _ func()) {
			c, err := ln.Accept()
			if err == nil {
				c.Close() // before the request is read: EPIPE, ECONNRESET or EOF
			}
		}, want: errAny},
		{name: "short reply", serve: func(t *testing.T, ln *net.UnixListener, _ func()) {
			serveOne(t, ln, Dovecot23, func(r Request) []byte { return okReply(r)[:5] })
		}, op: "read", want: ErrRemoteClosed},
		{name: "timeout", opt: Options{Timeout: 50 * time.Millisecond}, serve: func(t *testing.T, ln *net.UnixListener, _ func()) {
			c, err := ln.Accept()
			if err == nil {
				defer c.Close()
				c.Read(make([]byte, 4096))
				c.Read(make([]byte, 1)) // until Send closes
			}
		}, op: "read", want: ErrTimeout},
		{name: "cancelled while waiting", serve: func(t *testing.T, ln *net.UnixListener, cancel func()) {
			c, err := ln.Accept()
			if err == nil {
				defer c.Close()
				c.Read(make([]byte, 4096))
				cancel()
				c.Read(make([]byte, 1)) // until Send closes
			}
		}, op: "read", want: context.Canceled},
		{name: "tag mismatch", serve: func(t *testing.T, ln *net.UnixListener, _ func()) {
			serveOne(t, ln, Dovecot23, func(r Request) []byte { r.Tag++; return okReply(r) })
		}, op: "reply", want: ErrTagMismatch},
		{name: "internal error", serve: func(t *testing.T, ln *net.UnixListener, _ func()) {
			serveOne(t, ln, Dovecot23, func(r Request) []byte {
				b, _ := Reply{Tag: r.Tag, Status: StatusInternalError}.MarshalBinary()
				return b
			})
		}, op: "reply", want: ErrInternal},
		{name: "bad status", serve: func(t *testing.T, ln *net.UnixListener, _ func()) {
			serveOne(t, ln, Dovecot23, func(r Request) []byte {
				b, _ := Reply{Tag: r.Tag, Status: 7}.MarshalBinary()
				return b
			})
		}, op: "reply"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: filepath.Join(t.TempDir(), "imap"), Net: "unix"})
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			path := ln.Addr().String()
			if tc.path != nil {
				path = tc.path(t, ln)
			}
			client := clientFile(t)
			if tc.client != nil {
				client = tc.client(t)
			}
			l := tc.l
			if l == 0 {
				l = Dovecot23
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			served := make(chan struct{})
			before := openFDs(t)
			go func() {
				defer close(served)
				if tc.serve != nil {
					tc.serve(t, ln, cancel)
				}
			}()
			if tc.name == "cancelled before" {
				<-served
			}
			req := tc.req
			_, err = Send(ctx, path, l, &req, client, tc.opt)
			var he *Error
			switch {
			case tc.op == "" && tc.want == nil:
				if err != nil {
					t.Fatalf("Send = %v", err)
				}
			case !errors.As(err, &he):
				t.Fatalf("Send = %v, want an *Error", err)
			case tc.op != "" && he.Op != tc.op:
				t.Errorf("Send = %v, want op %q", err, tc.op)
			}
			if tc.want != nil && tc.want != errAny && !errors.Is(err, tc.want) {
				t.Errorf("Send = %v, want %v", err, tc.want)
			}
			ln.Close()
			<-served
			// The service's and the listener's descriptors are closed
			// now; the netpoller's goroutines may take a moment.
			// before counted ln's descriptor, closed since.
			deadline := time.Now().Add(10 * time.Second)
			for openFDs(t) > before-1 && time.Now().Before(deadline) {
				time.Sleep(5 * time.Millisecond)
			}
			if n := openFDs(t); n > before-1 {
				t.Errorf("%d descriptors open after Send, %d before (the listener's closed since)", n, before)
			}
		})
	}
}

// errAny: any *Error will do (the case can fail in more than one way).
var errAny = errors.New("any")

func TestCmsgRightsSpace(t *testing.T) {
	if cmsgRightsSpace != unix.CmsgSpace(4) {
		t.Errorf("cmsgRightsSpace = %d, CmsgSpace(4) = %d", cmsgRightsSpace, unix.CmsgSpace(4))
	}
}

// TestSendAbstractSocket: a path with a leading '@' is an abstract
// socket, as net.Dial names it.
func TestSendAbstractSocket(t *testing.T) {
	name := fmt.Sprintf("@tcpwrapd-masterauth-test-%d", os.Getpid())
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: name, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		serveOne(t, ln, Dovecot24, func(r Request) []byte {
			b, _ := Reply{Tag: r.Tag, Status: StatusOK, MailPID: 7}.MarshalBinary()
			return b
		})
	}()
	rep, err := Send(context.Background(), name, Dovecot24, &Request{}, clientFile(t), Options{})
	<-done
	if err != nil || rep.MailPID != 7 {
		t.Fatalf("Send to %s = %+v, %v", name, rep, err)
	}
}

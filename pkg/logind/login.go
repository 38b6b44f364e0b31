package logind

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/tcpwrapd/tcpwrapd/pkg/accessclient"
)

// testHooks enables the XALLOC and XPROXY pre-login commands; only this
// package's test binary sets it (it is the login process in tests).
var testHooks bool

// LoginProcessMain is the login process: called by a binary started with
// LoginProcessEnv=1 by ExecRunner, it reads its settings from the control
// socket on fd 3, sandboxes itself (see Sandbox in the package doc),
// reports ready and then serves the client sockets the supervisor sends:
// access checks, then the pre-login protocol. It returns the exit status:
// 0 after a normal stop (service_count reached, idle, drain, shutdown,
// supervisor gone), 89 on a fatal set-up error (Dovecot's FATAL_DEFAULT).
func LoginProcessMain() int {
	f := os.NewFile(3, "login-ctl")
	fc, err := net.FileConn(f)
	f.Close()
	if err != nil {
		logLine("ERROR", "control socket: %v", err)
		return 89
	}
	uc, ok := fc.(*net.UnixConn)
	if !ok {
		logLine("ERROR", "control socket: not a unix socket")
		return 89
	}
	buf := make([]byte, 1<<16)
	oob := make([]byte, syscall.CmsgSpace(4*4))
	pk, err := readPacket(uc, buf, oob)
	if err != nil || pk.typ != msgInit {
		logLine("ERROR", "no settings from the supervisor: %v", err)
		return 89
	}
	var in workerInit
	if err := json.Unmarshal(pk.json, &in); err != nil {
		logLine("ERROR", "settings: %v", err)
		return 89
	}
	if err := sandbox(&in); err != nil {
		logLine("ERROR", "sandbox: %v", err)
		return 89
	}
	lp := &loginProc{in: &in, c: uc, clients: map[uint64]*client{}, proto: protocolFor(in.Protocol), host: hostname()}
	for _, s := range in.TrustedNetworks {
		if p, err := parseNetwork(s); err == nil {
			lp.trusted = append(lp.trusted, p)
		}
	}
	if err := lp.send([]byte{msgReady}); err != nil {
		return 0
	}
	return lp.run(buf, oob)
}

// logLine writes one "LEVEL text" line to stderr, which the supervisor
// logs with the service name and pid.
func logLine(level, format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s %s\n", level, fmt.Sprintf(format, args...))
}

type loginProc struct {
	in      *workerInit
	c       *net.UnixConn
	proto   protocol
	host    string
	trusted []netipPrefix

	mu       sync.Mutex
	wmu      sync.Mutex
	clients  map[uint64]*client
	served   int
	draining bool
	exit     chan int
}

func (lp *loginProc) send(b []byte) error {
	lp.wmu.Lock()
	defer lp.wmu.Unlock()
	_, _, err := lp.c.WriteMsgUnix(b, nil, nil)
	return err
}

func (lp *loginProc) report(typ byte, id uint64, arg uint8) {
	var b [10]byte
	b[0] = typ
	binary.LittleEndian.PutUint64(b[1:], id)
	b[9] = arg
	lp.send(b[:])
}

// run is the control loop; it returns the exit status. Packets are
// handled by the goroutine that reads them (a client socket is greeted
// without a hand-off to another goroutine); the exit status comes back
// on lp.exit.
func (lp *loginProc) run(buf, oob []byte) int {
	lp.exit = make(chan int, 1)
	go func() {
		for {
			pk, err := readPacket(lp.c, buf, oob)
			if err != nil || pk.closed {
				// The supervisor is gone: say goodbye and stop.
				lp.shutdown()
				lp.stop(0)
				return
			}
			if code, stop := lp.handle(pk); stop {
				lp.stop(code)
				return
			}
		}
	}()
	return <-lp.exit
}

func (lp *loginProc) stop(code int) {
	select {
	case lp.exit <- code:
	default:
	}
}

// handle acts on one packet from the supervisor; stop reports that the
// process must exit with code.
func (lp *loginProc) handle(pk packet) (code int, stop bool) {
	switch pk.typ {
	case msgConn:
		lp.accept(pk.id, pk.fd)
	case msgEvict:
		lp.mu.Lock()
		cl := lp.clients[pk.id]
		lp.mu.Unlock()
		if cl != nil {
			cl.kill(CloseEvicted)
		}
	case msgStop:
		switch StopMode(pk.arg) {
		case StopIdle:
			lp.mu.Lock()
			idle := len(lp.clients) == 0
			lp.mu.Unlock()
			return 0, idle
		case StopDrain:
			lp.mu.Lock()
			lp.draining = true
			idle := len(lp.clients) == 0
			lp.mu.Unlock()
			return 0, idle
		case StopShutdown:
			lp.shutdown()
			return 0, true
		}
	default:
		if pk.fd >= 0 {
			syscall.Close(pk.fd)
		}
	}
	return 0, false
}

// shutdown tells every client goodbye and waits (at most 2 s) for them.
func (lp *loginProc) shutdown() {
	lp.mu.Lock()
	lp.draining = true
	var wg sync.WaitGroup
	for _, cl := range lp.clients {
		wg.Add(1)
		cl.done = &wg
		cl.kill(CloseShutdown)
	}
	lp.mu.Unlock()
	ch := make(chan struct{})
	go func() { wg.Wait(); close(ch) }()
	select {
	case <-ch:
	case <-time.After(2 * time.Second):
	}
}

func (lp *loginProc) accept(id uint64, fd int) {
	if fd < 0 {
		lp.report(msgClosed, id, uint8(CloseError))
		return
	}
	// Without access checks the greeting goes out at once, from this
	// goroutine, with one write(2) on the (non-blocking) socket; the
	// client goroutine then only reads commands.
	greeted := false
	if len(lp.in.AccessSockets) == 0 {
		g := lp.proto.greeting(lp)
		if n, err := syscall.Write(fd, []byte(g)); err == nil && n == len(g) {
			greeted = true
			lp.report(msgState, id, uint8(StateLoggingIn))
		} else if err == nil || err != syscall.EAGAIN {
			syscall.Close(fd)
			lp.report(msgClosed, id, uint8(CloseError))
			return
		}
	}
	f := os.NewFile(uintptr(fd), "client")
	nc, err := net.FileConn(f)
	f.Close()
	if err != nil {
		logLine("ERROR", "client socket: %v", err)
		lp.report(msgClosed, id, uint8(CloseError))
		return
	}
	tc, ok := nc.(*net.TCPConn)
	if !ok {
		nc.Close()
		lp.report(msgClosed, id, uint8(CloseError))
		return
	}
	cl := &client{id: id, lp: lp, c: tc, accepted: time.Now(), greeted: greeted}
	lp.mu.Lock()
	lp.clients[id] = cl
	lp.served++
	lp.mu.Unlock()
	go cl.serve()
}

// finished is called once per client when it is gone.
func (lp *loginProc) finished(cl *client, reason CloseReason) {
	lp.report(msgClosed, cl.id, uint8(reason))
	lp.mu.Lock()
	delete(lp.clients, cl.id)
	done := len(lp.clients) == 0 && (lp.draining || (lp.in.ServiceCount > 0 && lp.served >= lp.in.ServiceCount))
	if cl.done != nil {
		cl.done.Done()
	}
	lp.mu.Unlock()
	if done {
		select {
		case lp.exit <- 0:
		default:
		}
	}
}

// access asks every login_access_sockets entry in order, as Dovecot's
// login does (src/login-common/access-lookup.c), logging the same lines.
// It reports whether all of them allowed the client.
func (cl *client) access() bool {
	in := cl.lp.in
	for _, entry := range in.AccessSockets {
		v, err := accessclient.Ask(context.Background(), entry, cl.lp.proto.name(), cl.c, in.AccessTimeout)
		if v == accessclient.Allowed {
			continue
		}
		rip := remoteIP(cl.c)
		switch {
		case errors.Is(err, accessclient.ErrInvalidInput):
			logLine("ERROR", "access(%s): Invalid input", entry)
		case errors.Is(err, accessclient.ErrTimeout):
			logLine("ERROR", "access(%s): Timed out while waiting for reply", entry)
		case err != nil:
			// connect()/fd_send() failures: no "Client refused" line.
			logLine("ERROR", "%v", err)
			if !isReadErr(err) {
				return false
			}
		}
		logLine("INFO", "access(%s): Client refused (rip=%s)", entry, rip)
		return false
	}
	return true
}

func isReadErr(err error) bool {
	return err != nil && len(err.Error()) > 5 && err.Error()[:5] == "read("
}

func remoteIP(c net.Conn) string {
	if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		return a.AddrPort().Addr().Unmap().String()
	}
	return "?"
}

func hostname() string {
	h, err := os.Hostname()
	if err != nil {
		return "localhost"
	}
	return h
}

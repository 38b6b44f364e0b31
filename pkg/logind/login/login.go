package login

import (
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tcpwrapd/tcpwrapd/internal/sockfd"
	"github.com/tcpwrapd/tcpwrapd/pkg/dovecot/authclient"
	"github.com/tcpwrapd/tcpwrapd/pkg/logind/ipc"
	"github.com/tcpwrapd/tcpwrapd/pkg/logind/login/access"
	"github.com/tcpwrapd/tcpwrapd/pkg/logind/login/listenopt"
	"github.com/tcpwrapd/tcpwrapd/pkg/logind/login/report"
	"github.com/tcpwrapd/tcpwrapd/pkg/logind/login/sandbox"
	"github.com/tcpwrapd/tcpwrapd/pkg/logind/login/workpool"
)

// Main is the login process: called by a binary started with
// ipc.LoginProcessEnv=1 by the supervisor, it reads its settings from the
// control socket on fd 3, sandboxes itself (Sandbox), reports ready and
// then serves the client sockets the supervisor sends, and those it
// accepts itself: access checks, then the pre-login protocol of its
// service, which must be one of protocols (by Name). It returns the exit
// status: 0 after a normal stop (service_count reached, idle, drain,
// shutdown, supervisor gone), ipc.ExitFatal on a fatal set-up error.
func Main(protocols ...Protocol) int {
	startPPID = os.Getppid()
	defer processLog.Flush()
	f := os.NewFile(3, "login-ctl")
	fc, err := net.FileConn(f)
	f.Close()
	if err != nil {
		logLine("ERROR", "control socket: %v", err)
		return ipc.ExitFatal
	}
	uc, ok := fc.(*net.UnixConn)
	if !ok {
		logLine("ERROR", "control socket: not a unix socket")
		return ipc.ExitFatal
	}
	buf := make([]byte, 1<<16)
	oob := make([]byte, syscall.CmsgSpace(4*4))
	pk, err := ipc.ReadPacket(uc, buf, oob)
	if err != nil || pk.Type != ipc.MsgInit {
		logLine("ERROR", "no settings from the supervisor: %v", err)
		return ipc.ExitFatal
	}
	var in ipc.Settings
	if err := json.Unmarshal(pk.JSON, &in); err != nil {
		if pk.FD >= 0 {
			syscall.Close(pk.FD)
		}
		logLine("ERROR", "settings: %v", err)
		return ipc.ExitFatal
	}
	// TLS before the sandbox (Dovecot's main_preinit): the key comes in
	// a sealed memfd that is read, parsed and closed here (tls.go).
	var tlsConf *tls.Config
	if in.SSL != "" && in.SSL != "no" {
		if pk.FD < 0 {
			logLine("ERROR", "ssl = %s but no key from the supervisor", in.SSL)
			return ipc.ExitFatal
		}
		cert, err := ipc.LoadKeyMemfd(pk.FD, in.TLSCertLen)
		if err != nil {
			logLine("ERROR", "%v", err)
			return ipc.ExitFatal
		}
		tlsConf = serverTLSConfig(cert, in.SSLMinProtocol, in.SSLCurves)
	} else if pk.FD >= 0 {
		syscall.Close(pk.FD)
	}
	var proto Protocol
	for _, p := range protocols {
		if p.Name() == in.Protocol {
			proto = p
		}
	}
	if proto == nil {
		if pk.FD >= 0 && tlsConf == nil {
			syscall.Close(pk.FD)
		}
		logLine("ERROR", "settings: protocol %q is not one this binary serves", in.Protocol)
		return ipc.ExitFatal
	}
	if err := Sandbox(&in); errors.Is(err, ErrSupervisorGone) {
		return 0
	} else if err != nil {
		logLine("ERROR", "sandbox: %v", err)
		return ipc.ExitFatal
	}
	lp := &loginProc{in: &in, c: uc, rep: report.New(uc), clients: map[uint64]*Client{}, proto: proto, host: hostname(),
		tls: tlsConf, listen: listenopt.New(in.SSLListen, in.HAProxyListen), exit: make(chan int, 1)}
	lp.workers.MaxIdle, lp.workers.IdleTimeout = workerBounds(&in)
	lp.trusted = in.TrustedNetworks
	lp.auth = startAuth(&in)
	if err := lp.rep.Send([]byte{ipc.MsgReady}); err != nil {
		return 0
	}
	// Batched reports go out before the process exits, or the
	// supervisor would never learn of the last clients' accepts and
	// closes.
	defer lp.rep.Flush()
	if code, stop := lp.takeQueued(buf, oob); stop {
		return code
	}
	lp.startAccepting()
	return lp.run(buf, oob)
}

// takeQueued handles the packets already waiting on the control socket
// when the process starts, before it accepts from the listeners itself:
// a high-performance process that the supervisor spawned for a client
// finds that client queued there, and must count it before its first
// direct accept, or the two together could exceed client_limit. stop
// reports that a queued packet asked the process to exit with code.
func (lp *loginProc) takeQueued(buf, oob []byte) (code int, stop bool) {
	if lp.in.Listeners == 0 {
		return 0, false // the run loop takes them
	}
	rc, err := lp.c.SyscallConn()
	if err != nil {
		return 0, false
	}
	for {
		queued := 0
		rc.Control(func(fd uintptr) { queued, _ = unix.IoctlGetInt(int(fd), unix.SIOCINQ) })
		if queued <= 0 {
			return 0, false
		}
		pk, err := ipc.ReadPacket(lp.c, buf, oob)
		if err != nil || pk.Closed {
			lp.shutdown(true)
			return 0, true
		}
		if code, stop := lp.handle(pk); stop {
			return code, true
		}
	}
}

// logLine writes one "LEVEL text" line to stderr, which the supervisor
// logs with the service name and pid. INFO lines (one per client that
// goes away, on the hot path) are batched for up to logDelay, so that
// the supervisor reads and logs them in batches instead of being woken
// for every one; other levels go out at once, after the batch (order is
// kept). The batch is written when the process ends normally; a crash
// may lose the last logDelay of INFO lines.
func logLine(level, format string, args ...any) {
	processLog.Add(level, fmt.Sprintf(format, args...))
}

// processLog is the login process's stderr (logLine).
var processLog = &ipc.LineLog{W: os.Stderr}

type loginProc struct {
	in      *ipc.Settings
	c       *net.UnixConn
	proto   Protocol
	host    string
	trusted []netip.Prefix
	tls     *tls.Config        // nil: ssl = no
	auth    *authclient.Client // nil: no auth socket (auth.go)
	listen  listenopt.Set      // local addresses of the ssl = yes and haproxy = yes listeners

	rep *report.Sender // nil: no supervisor (ServeConn)

	mu       sync.Mutex
	clients  map[uint64]*Client
	served   int
	draining bool
	exit     chan int // the exit status, once (see stop); made before any client

	// Direct accept (Listeners > 0), guarded by mu.
	listeners []*sockfd.Acceptor
	bound     map[int]*net.TCPAddr // the local address of a listener bound to one (sockfd.BoundAddrs)
	nextLocal uint64               // last local id (ids are Seq<<32 | n)
	reserved  int                  // slots of evicted clients kept for the supervisor's next client
	starting  int                  // clients being set up by accept, not yet in clients
	slotFree  chan struct{}        // closed (and replaced) when a slot may have become free
	accepting sync.WaitGroup       // running accept loops
	unlisten  bool                 // closeListeners has run (ipc.MsgUnlistened is on its way)

	// workers runs the clients' goroutines (serve, the TLS relay's
	// second direction) on reused goroutines whose stacks have grown.
	workers workpool.Pool

	// detached: the process outlives the supervisor (detach).
	detached atomic.Bool
	onMain   chan func() // work for the main goroutine (main), made by run
}

// count is the number of clients, those being set up included (an idle
// or drain stop must not end a process that is greeting one). mu is held.
func (lp *loginProc) count() int { return len(lp.clients) + lp.starting }

// fullWith reports whether the process is full with extra more clients.
// mu is held.
func (lp *loginProc) fullWith(extra int) bool {
	return lp.count()+lp.reserved+extra >= lp.in.ClientLimit
}

// run is the control loop; it returns the exit status. Packets are
// handled by the goroutine that reads them (a client socket is greeted
// without a hand-off to another goroutine); the exit status comes back
// on lp.exit.
func (lp *loginProc) run(buf, oob []byte) int {
	lp.onMain = make(chan func())
	go func() {
		for {
			pk, err := ipc.ReadPacket(lp.c, buf, oob)
			if err != nil || pk.Closed {
				if orphan.Load() {
					select {} // a test: only the parent-death signal ends it
				}
				if lp.detached.Load() {
					return // the last relayed session's end stops it (gone)
				}
				// The supervisor is gone: say goodbye and stop.
				lp.shutdown(true)
				lp.stop(0)
				return
			}
			if code, stop := lp.handle(pk); stop {
				lp.stop(code)
				return
			}
		}
	}()
	for {
		select {
		case code := <-lp.exit:
			return code
		case f := <-lp.onMain:
			f()
		}
	}
}

// main runs f on the process's main goroutine (Main's, which the
// sandbox locks to the thread that holds the parent-death signal when
// the runtime cannot set it on every thread) and waits for it; before
// run, the caller is that goroutine.
func (lp *loginProc) main(f func()) {
	if lp.onMain == nil {
		f()
		return
	}
	done := make(chan struct{})
	lp.onMain <- func() { f(); close(done) }
	<-done
}

func (lp *loginProc) stop(code int) {
	select {
	case lp.exit <- code:
	default:
	}
}

// handle acts on one packet from the supervisor; stop reports that the
// process must exit with code.
func (lp *loginProc) handle(pk ipc.Packet) (code int, stop bool) {
	switch pk.Type {
	case ipc.MsgConn:
		// The reserved slot becomes this client's in one step: the
		// accept loop never sees it free in between.
		lp.mu.Lock()
		if lp.reserved > 0 {
			lp.reserved--
		}
		lp.starting++
		lp.mu.Unlock()
		if pk.FD >= 0 {
			syscall.SetNonblock(pk.FD, true) // it is (accept4 with SOCK_NONBLOCK); sockfd.NewConn needs it
		}
		var remote *net.TCPAddr
		if pk.Remote.IsValid() {
			remote = net.TCPAddrFromAddrPort(pk.Remote)
		}
		lp.accept(pk.ID, pk.FD, remote, nil, 0)
	case ipc.MsgEvict:
		lp.mu.Lock()
		cl := lp.clients[pk.ID]
		if cl != nil && len(lp.listeners) > 0 && pk.Arg != 0 {
			// The supervisor sends the client that replaces it next:
			// the victim's slot is not for a direct accept.
			lp.reserved++
		}
		lp.mu.Unlock()
		if cl != nil {
			cl.kill(ipc.CloseEvicted)
		}
	case ipc.MsgStop:
		switch ipc.StopMode(pk.Arg) {
		case ipc.StopIdle, ipc.StopDrain:
			// An idle stop drains too: the supervisor sent it because,
			// as far as it knew, the process had no client, and it will
			// give the process none again; a client the process accepted
			// meanwhile is served first.
			lp.mu.Lock()
			lp.draining = true
			lp.closeListeners()
			idle := lp.count() == 0
			lp.mu.Unlock()
			return 0, idle && lp.idleAfterAccepts()
		case ipc.StopShutdown:
			// shutdown_clients = yes (a stop, or ReloadShutdownDelay
			// after a reload): every client ends, the TLS relays of
			// logged-in ones too, as Dovecot's master SIGTERMs every
			// process of the old configuration.
			lp.shutdown(true)
			return 0, lp.idle()
		case ipc.StopDetach:
			// A stop with shutdown_clients = no: pre-login clients end,
			// logged-in sessions stay, and the process outlives the
			// supervisor until the last one ends.
			lp.shutdown(false)
			if lp.idle() {
				return 0, true
			}
			if err := lp.detach(); err != nil {
				logLine("ERROR", "cannot outlive the supervisor, ending the relayed sessions: %v", err)
				lp.shutdown(true)
				return 0, lp.idle()
			}
		}
	default:
		if pk.FD >= 0 {
			syscall.Close(pk.FD)
		}
	}
	return 0, false
}

// idle reports whether the process has no client left.
func (lp *loginProc) idle() bool {
	lp.mu.Lock()
	defer lp.mu.Unlock()
	return lp.count() == 0
}

// detach makes the process independent of the supervisor, which is
// stopping with shutdown_clients = no (ipc.StopDetach): it clears its
// parent-death signal, ignores SIGPIPE (its stderr is a pipe to the
// supervisor, which is going away: the lines written after that are
// lost), goes on when the control socket ends, and tells the
// supervisor (ipc.MsgDetached), which then forgets it. The process
// exits when its last client has gone (it is draining).
func (lp *loginProc) detach() error {
	var err error
	lp.main(func() { err = sandbox.ClearPdeathsig() })
	if err != nil {
		return err
	}
	signal.Ignore(syscall.SIGPIPE)
	lp.detached.Store(true)
	lp.rep.Now(ipc.MsgDetached, 0, 0, ipc.Accept{})
	return nil
}

// shutdown tells every pre-login client goodbye, ends the TLS relays of
// logged-in clients if relays is set, and waits (at most 2 s) for them.
func (lp *loginProc) shutdown(relays bool) {
	deadline := time.After(2 * time.Second)
	lp.mu.Lock()
	lp.draining = true
	lp.closeListeners()
	lp.mu.Unlock()
	// A client being set up by the accept loop (greeted, not yet in
	// clients) must get its goodbye too: let the loop finish first.
	loops := make(chan struct{})
	go func() { lp.accepting.Wait(); close(loops) }()
	select {
	case <-loops:
	case <-deadline:
	}
	lp.mu.Lock()
	var wg sync.WaitGroup
	for _, cl := range lp.clients {
		if cl.relaying.Load() && !relays {
			continue
		}
		wg.Add(1)
		cl.done = &wg
		cl.kill(ipc.CloseShutdown)
	}
	lp.mu.Unlock()
	ch := make(chan struct{})
	go func() { wg.Wait(); close(ch) }()
	select {
	case <-ch:
	case <-deadline:
	}
}

// startAccepting starts the accept loop over the listening sockets passed
// by the supervisor (fds 4, 5, ...; none in high-security mode): one loop
// for all of them, so that the process takes one client at a time.
func (lp *loginProc) startAccepting() {
	if lp.in.Listeners == 0 {
		return
	}
	lp.mu.Lock()
	defer lp.mu.Unlock()
	lp.slotFree = make(chan struct{})
	fds := make([]int, lp.in.Listeners)
	for i := range fds {
		fds[i] = 4 + i
	}
	// Raw fds, never *os.File: that would register the (non-blocking)
	// sockets with the netpoller, which would then wake this process for
	// every connection, even when it is full. The Acceptor's epoll set
	// is in the netpoller instead, with the sockets in it only while the
	// process has a free slot (acceptLoop pauses it).
	a, err := sockfd.NewPolledAcceptor(fds)
	if err != nil {
		logLine("ERROR", "listeners: %v", err)
		for _, fd := range fds {
			unix.Close(fd)
		}
		return
	}
	lp.listeners = append(lp.listeners, a)
	lp.bound = sockfd.BoundAddrs(fds)
	lp.accepting.Add(1)
	go lp.acceptLoop(a)
}

// closeListeners stops the accept loops (drain, shutdown). mu is held.
// Once the loops have ended (and reported what they accepted), the
// supervisor is told with ipc.MsgUnlistened: its Reload waits for that, so
// that no client is accepted by an old generation after a reload.
func (lp *loginProc) closeListeners() {
	for _, a := range lp.listeners {
		a.Stop()
	}
	if len(lp.listeners) > 0 && !lp.unlisten {
		lp.unlisten = true
		go func() {
			lp.accepting.Wait()
			lp.rep.Now(ipc.MsgUnlistened, 0, 0, ipc.Accept{})
		}()
	}
	lp.listeners = nil
	if lp.slotFree != nil {
		close(lp.slotFree)
		lp.slotFree = make(chan struct{})
	}
}

// canAccept reports whether a direct accept may take a slot. mu is held.
// The accept loop asks before it waits and takes one client at a time
// from all listeners, so a process holds at most client_limit clients;
// the one exception is a moment after an eviction, when the supervisor's
// replacement client can arrive while the accept loop takes a client it
// was already woken for and the victim is still closing, or a client
// the supervisor handed over for a slot that the loop filled meanwhile
// (one over: the supervisor hands the next only once this one is
// reported, see accept).
func (lp *loginProc) canAccept() bool {
	return !lp.draining && len(lp.listeners) > 0 && lp.count()+lp.reserved < lp.in.ClientLimit
}

// acceptLoop accepts clients from the listening sockets (shared with the
// supervisor and the service's other processes, see sockfd.Acceptor) while the
// process has a free slot; when it is full, it stops waiting on them
// until a client leaves. It closes the sockets when it ends (drain,
// shutdown).
func (lp *loginProc) acceptLoop(a *sockfd.Acceptor) {
	defer lp.accepting.Done()
	defer func() {
		for _, fd := range a.Listeners() {
			unix.Close(fd)
		}
	}()
	defer a.Release()
	for {
		lp.mu.Lock()
		for !lp.canAccept() {
			if lp.draining || len(lp.listeners) == 0 {
				lp.mu.Unlock()
				return
			}
			ch := lp.slotFree
			lp.mu.Unlock()
			a.Pause() // full: no wake-ups for connections meanwhile
			<-ch
			lp.mu.Lock()
		}
		lp.mu.Unlock()
		// No second look at canAccept once woken: a client left in the
		// queue would wait for the next arrival to wake another process.
		nfd, sa, err := a.Next(nil)
		switch err {
		case nil:
		case sockfd.ErrClosed:
			return
		case unix.EMFILE, unix.ENFILE, unix.ENOBUFS, unix.ENOMEM:
			time.Sleep(10 * time.Millisecond)
			continue
		default:
			logLine("ERROR", "accept: %v", err)
			return
		}
		lp.mu.Lock()
		lp.nextLocal++
		id := lp.in.Seq<<32 | lp.nextLocal
		lp.starting++
		lp.mu.Unlock()
		lp.accept(id, nfd, net.TCPAddrFromAddrPort(sockfd.AddrPort(sa)), lp.bound[a.From()], ipc.MsgAccepted)
	}
}

// accept serves client socket fd under id. remote is the client's
// address from accept (nil if unknown), local the socket's own if known
// from its listener (else nil: asked when needed). announce is 0 for a
// client the supervisor handed over, ipc.MsgAccepted for one the process
// accepted itself (the supervisor learns about it from that report). The caller
// has counted the client in lp.starting. Every client, whatever happens
// to it from here on, ends in lp.gone, exactly once: that reports it
// closed, counts it against service_count and ends the process when it
// has served its clients (a client that reset its connection before its
// greeting too).
func (lp *loginProc) accept(id uint64, fd int, remote, local *net.TCPAddr, announce byte) {
	// ipc.MsgAccepted: the source (evict.go; unknown behind haproxy)
	// and when it was accepted (the supervisor learns of it up to 20 ms
	// later, in a batch, and orders clients by this for eviction).
	var acc ipc.Accept
	if announce != 0 {
		acc.At = time.Now().UnixNano()
	}
	state := func(s ipc.ConnState) {
		if announce != 0 {
			lp.mu.Lock()
			lazy := s == ipc.StateLoggingIn && !lp.fullWith(0) // this one counted (in clients)
			lp.mu.Unlock()
			if lazy {
				lp.rep.Lazy(announce, id, uint8(s), acc)
			} else {
				lp.rep.Now(announce, id, uint8(s), acc)
			}
			announce = 0
		} else if s != ipc.StateChecking {
			lp.rep.Now(ipc.MsgState, id, uint8(s), ipc.Accept{})
		} else if lp.in.Listeners > 0 {
			// A process that accepts by itself reports every client
			// handed to it at once, in the state the supervisor gave
			// it: the supervisor hands it the next one only then
			// (master's canGive), so that the two never fill one free
			// slot twice over.
			lp.rep.Now(ipc.MsgState, id, uint8(lp.handedState()), ipc.Accept{})
		}
	}
	if fd < 0 {
		// No socket came with the packet (the process is out of
		// descriptors): nothing to serve, but the client was handed
		// over and is accounted for.
		logLine("ERROR", "Disconnected: the client's socket did not arrive (rip=%s)", ipString(addrOf(remote)))
		lp.mu.Lock()
		lp.starting--
		lp.served++
		lp.mu.Unlock()
		lp.gone(id, ipc.CloseError, nil)
		return
	}
	// Without access checks the greeting goes out at once, from this
	// goroutine, with one write(2) on the (non-blocking) socket (a raw
	// system call, see sockfd.RawWrite); the client goroutine then only
	// reads commands. A client of an ssl = yes
	// listener is greeted after its TLS handshake, one of a haproxy = yes
	// listener after its PROXY header, in serve. If the write fails (the
	// client has already reset the connection), serve logs and closes it
	// like any client whose greeting could not be written.
	greeted, greetFailed := false, false
	var known netip.AddrPort
	if local != nil {
		known = local.AddrPort()
	}
	flags, looked := lp.listen.Lookup(fd, known)
	implicitTLS := lp.tls != nil && flags&listenopt.SSL != 0
	haproxy := flags&listenopt.HAProxy != 0
	if !haproxy && remote != nil {
		acc.Remote = netip.AddrPortFrom(remote.AddrPort().Addr().Unmap(), remote.AddrPort().Port())
	}
	tc := sockfd.NewConn(fd, remote)
	// The local address known, not asked of the kernel again.
	if local == nil && looked.IsValid() {
		local = net.TCPAddrFromAddrPort(looked)
	}
	if local != nil {
		tc.SetLocalAddr(local)
	}
	// The greeting may ask about the connection (IMAP's capabilities:
	// secured, the mechanisms), so the socket is the Client's first.
	cl := &Client{id: id, lp: lp, implicitTLS: implicitTLS, haproxy: haproxy, c: tc, conn: tc}
	cl.session = lp.proto.NewSession(cl)
	ready := lp.authReady()
	if len(lp.in.AccessSockets) == 0 && !implicitTLS && !haproxy && ready {
		g := cl.session.Greeting()
		n, err := sockfd.RawWrite(fd, []byte(g))
		switch {
		case err == 0 && n == len(g):
			greeted = true
		case err == syscall.EAGAIN:
		default: // an error, or a part of the greeting written
			greeted, greetFailed = true, true
		}
	}
	cl.accepted, cl.greeted, cl.greetFailed = time.Now(), greeted, greetFailed
	// A client of an ssl = yes listener with no check to wait for goes
	// into its TLS handshake at once: logging in from now, and reported
	// so here, lazily like a greeted one, not a second time by serve.
	cl.reportedLoggingIn = greeted || implicitTLS && !haproxy && len(lp.in.AccessSockets) == 0
	cl.auth.st.AuthReady = ready
	lp.mu.Lock()
	lp.starting--
	lp.clients[id] = cl
	lp.served++
	lp.mu.Unlock()
	// Reported only now that an eviction (ipc.MsgEvict, which the report
	// can prompt at once) finds the client in lp.clients.
	if cl.reportedLoggingIn {
		state(ipc.StateLoggingIn)
	} else {
		state(ipc.StateChecking)
	}
	lp.workers.Go(cl.serve)
}

// Worker pool bounds (workerBounds): a process keeps at most
// maxIdleWorkers goroutines waiting for a next client, each for at
// most workerIdleTimeout.
const (
	maxIdleWorkers    = 16
	workerIdleTimeout = 5 * time.Second
)

// workerBounds are the bounds of the pool of a login process's client
// goroutines (loginProc.workers, package workpool): a goroutine whose
// client has gone serves the next one, its stack already grown by a
// login, instead of a new one growing it again, copying it each time.
// A process that serves one client (service_count = 1) keeps none: it
// exits after its client. The zero pool (ServeConn, tests) keeps none
// either.
func workerBounds(in *ipc.Settings) (maxIdle int, idleTimeout time.Duration) {
	if in.ServiceCount == 1 {
		return 0, 0
	}
	return maxIdleWorkers, workerIdleTimeout
}

// handedState is the state the supervisor counts a client handed over
// in until it is reported (master's checksFirst): checking where
// something comes before the greeting (login_access_sockets, a haproxy
// = yes listener), else logging-in.
func (lp *loginProc) handedState() ipc.ConnState {
	if len(lp.in.AccessSockets) > 0 || len(lp.in.HAProxyListen) > 0 {
		return ipc.StateChecking
	}
	return ipc.StateLoggingIn
}

// finished is called once per client when it is gone.
func (lp *loginProc) finished(cl *Client, reason ipc.CloseReason) {
	lp.gone(cl.id, reason, cl)
}

// gone reports client id closed for reason, forgets it (cl, if it was
// in lp.clients) and ends the process when it has no client left and
// is draining or has served service_count clients. The client was
// counted in lp.served.
func (lp *loginProc) gone(id uint64, reason ipc.CloseReason, cl *Client) {
	lp.mu.Lock()
	lazy := len(lp.listeners) > 0 && !lp.fullWith(0)
	lp.mu.Unlock()
	if lazy {
		lp.rep.Lazy(ipc.MsgClosed, id, uint8(reason), ipc.Accept{})
	} else {
		lp.rep.Now(ipc.MsgClosed, id, uint8(reason), ipc.Accept{})
	}
	lp.mu.Lock()
	if cl != nil {
		delete(lp.clients, id)
		if cl.done != nil {
			cl.done.Done()
		}
	}
	if lp.slotFree != nil {
		close(lp.slotFree)
		lp.slotFree = make(chan struct{})
	}
	done := lp.count() == 0 && (lp.draining || (lp.in.ServiceCount > 0 && lp.served >= lp.in.ServiceCount))
	lp.mu.Unlock()
	if done && lp.idleAfterAccepts() {
		lp.stop(0)
	}
}

// idleAfterAccepts is called when the process has no client and is to
// exit (draining, or service_count served): it waits for the accept
// loops, which end once the listeners are closed (closeListeners, at
// the drain), and reports whether the process still has no client. A
// loop may hold a socket it has just accepted and not yet counted in
// lp.starting; exiting then would close that client without a greeting,
// unlogged and unreported. A client found here is served, and its
// departure asks again. mu is not held.
func (lp *loginProc) idleAfterAccepts() bool {
	lp.accepting.Wait()
	lp.mu.Lock()
	defer lp.mu.Unlock()
	return lp.count() == 0
}

// access runs the access checks (package access) on the client; ok
// reports that every socket allowed it, else reason says why it is
// closed.
func (cl *Client) access() (reason ipc.CloseReason, ok bool) {
	in := cl.lp.in
	r := access.Check(in.AccessSockets, cl.lp.proto.Name(), cl.c, in.AccessTimeout, remoteIP(cl.c), logLine)
	return r, r == ipc.CloseNormal
}

// remoteAddr is c's remote IP address, unmapped; the zero Addr if c is
// not TCP.
func remoteAddr(c net.Conn) netip.Addr { return addrOf(c.RemoteAddr()) }

// remoteIP is remoteAddr as logged after "rip=" ("?" if unknown).
func remoteIP(c net.Conn) string { return ipString(remoteAddr(c)) }

func hostname() string {
	h, err := os.Hostname()
	if err != nil {
		return "localhost"
	}
	return h
}

// orphan: the process ignores the end of its control socket
// (IgnoreSupervisorEnd).
var orphan atomic.Bool

// IgnoreSupervisorEnd makes the login process go on when its control
// socket ends, so that only the parent-death signal ends it when the
// supervisor dies. It exists for the tests of that signal
// (pkg/logind/login/logintest's XORPHAN).
func IgnoreSupervisorEnd() { orphan.Store(true) }

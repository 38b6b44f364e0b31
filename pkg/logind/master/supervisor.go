package master

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tcpwrapd/tcpwrapd/internal/ctlsock"
	"github.com/tcpwrapd/tcpwrapd/internal/sockfd"
	"github.com/tcpwrapd/tcpwrapd/pkg/logind/config"
	"github.com/tcpwrapd/tcpwrapd/pkg/logind/control"
	"github.com/tcpwrapd/tcpwrapd/pkg/logind/ipc"
	"github.com/tcpwrapd/tcpwrapd/pkg/logind/master/worker"
)

// DefaultShutdownGrace is how long Supervisor.Run waits on shutdown for
// login processes to say goodbye to their clients and exit before it
// kills them.
const DefaultShutdownGrace = 5 * time.Second

// Supervisor is loginsvc's master: it owns the listening sockets and the
// login processes. In high-security mode (and service_count = N) it
// accepts every connection itself and hands it to a login process over
// that process's control socket; in high-performance mode the processes
// accept from the shared listening sockets themselves while they have a
// free slot and report each client, and the supervisor accepts only
// while none of them can (to spawn, or at the limit to evict). Either
// way it knows every connection's state (see docs/loginsvc.md for the
// policy). Create one, then call Run.
type Supervisor struct {
	// Runner starts login processes; nil means a worker.ExecRunner re-executing
	// the running binary with Logger.
	Runner worker.Runner
	// Logger receives the supervisor's log; nil discards.
	Logger *slog.Logger
	// ShutdownGrace: see DefaultShutdownGrace (0 means that).
	ShutdownGrace time.Duration
	// OnReady, if set, is called once the listeners are open and the
	// first processes were started (e.g. to send READY=1).
	OnReady func()

	mu      sync.Mutex
	cfg     *config.Config
	gen     uint64
	pools   map[string]*pool
	lns     map[string]*listener
	started time.Time
	seq     atomic.Uint64
	nextID  atomic.Uint64
	ctx     context.Context
	ctl     net.Listener
	pidFile *os.File // base_dir/loginsvc.pid, flock'ed while running
}

type listener struct {
	key  string   // "tcp4 127.0.0.1:143"
	ln   *os.File // the listening socket (non-blocking, not in the netpoller)
	acc  *sockfd.Acceptor
	pool atomic.Pointer[pool]
	done chan struct{} // closed when the accept loop has ended
	shut atomic.Bool
	// haproxy: the listener is haproxy = yes (set by apply).
	haproxy atomic.Bool
	qch     chan struct{}
	qmu     sync.Mutex
}

// quit returns a channel closed by close.
func (l *listener) quit() chan struct{} {
	l.qmu.Lock()
	defer l.qmu.Unlock()
	if l.qch == nil {
		l.qch = make(chan struct{})
	}
	return l.qch
}

// close stops the accept loop, which then closes the socket (login
// processes keep their own copies until they drain).
func (l *listener) close() {
	if l.shut.Swap(true) {
		return
	}
	close(l.quit())
	l.acc.Stop()
	if l.pool.Load() == nil { // no accept loop was started
		l.acc.Release()
		l.ln.Close()
	}
}

func (s *Supervisor) log() *slog.Logger {
	if s.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return s.Logger
}

// Run prepares base_dir, opens the listeners of cfg's enabled services,
// starts the login processes and the control socket, and serves until
// ctx is cancelled; then it closes the listeners, shuts the login
// processes down (see ShutdownGrace) and returns nil. It returns an error
// if it cannot start (a listener that cannot be opened, a base_dir that
// cannot be made).
func (s *Supervisor) Run(ctx context.Context, cfg *config.Config) error {
	if s.Runner == nil {
		s.Runner = &worker.ExecRunner{Logger: s.Logger}
	}
	s.ctx = ctx
	s.started = time.Now()
	if err := prepareBaseDir(cfg); err != nil {
		return err
	}
	pf, err := lockPIDFile(cfg.PIDFile())
	if err != nil {
		return err
	}
	s.pidFile = pf
	defer func() {
		os.Remove(pf.Name())
		pf.Close()
	}()
	s.mu.Lock()
	s.pools = map[string]*pool{}
	s.lns = map[string]*listener{}
	err = s.apply(cfg)
	s.mu.Unlock()
	if err != nil {
		s.stopAll(context.Background())
		return err
	}
	if err := s.startControl(cfg); err != nil {
		s.stopAll(context.Background())
		return err
	}
	s.log().Info("loginsvc started", "services", len(s.pools), "listeners", len(s.lns))
	if s.OnReady != nil {
		s.OnReady()
	}
	<-ctx.Done()
	s.log().Info("shutting down")
	s.stopAll(context.Background())
	return nil
}

// Reload switches to cfg (a new generation): new listeners are opened and
// removed ones closed (unchanged ones are kept, so no connection is
// refused), new clients go to processes of the new generation, and old
// processes are drained (and with shutdown_clients = yes shut down after
// ReloadShutdownDelay), as Dovecot's master does on SIGHUP. On error (a
// listener that cannot be opened, a login user that does not exist) the
// running configuration stays in force, whole, and the error says what
// failed.
//
// Reload returns once no high-performance process of an older
// generation accepts clients any more (each reports when its accept
// loops have ended; at most ReloadSettleTimeout): every client that
// connects after Reload returns is served with cfg. Dovecot's master
// returns at once, and old processes go on accepting until they have
// handled its SIGQUIT.
func (s *Supervisor) Reload(cfg *config.Config) error {
	if err := prepareBaseDir(cfg); err != nil {
		return err
	}
	s.mu.Lock()
	err := s.apply(cfg)
	pools := maps.Clone(s.pools)
	s.mu.Unlock()
	deadline := time.Now().Add(ReloadSettleTimeout)
	for name, p := range pools {
		for p.oldListening() {
			if time.Now().After(deadline) {
				s.log().Warn("reload: old login processes still accepting", "service", name, "waited", ReloadSettleTimeout)
				return err
			}
			time.Sleep(2 * time.Millisecond)
		}
	}
	return err
}

// ReloadSettleTimeout bounds how long Reload waits for the old
// generation's high-performance processes to stop accepting.
const ReloadSettleTimeout = 2 * time.Second

// apply opens/keeps/closes listeners and creates/reconfigures pools for
// cfg. s.mu is held.
func (s *Supervisor) apply(cfg *config.Config) error {
	// Listeners first, all or nothing: every new one is opened before
	// anything changes, and if one cannot be, those opened here are
	// closed again and the running configuration stays whole (as
	// Dovecot's master keeps its old configuration when listening fails).
	type serviceListeners struct {
		svc *config.Service
		lns []*listener
	}
	var plan []serviceListeners
	want := map[string]*config.Service{}
	opened := map[string]*listener{}
	var errs []error
	for _, svc := range cfg.Enabled() {
		var lns []*listener
		for _, l := range svc.Listeners {
			for _, e := range l.Endpoints() {
				key := e.Network + " " + e.Addr
				want[key] = svc
				ln := s.lns[key]
				if ln == nil {
					ln = opened[key]
				}
				if ln == nil {
					var err error
					if ln, err = s.listen(e.Network, e.Addr, l.ReusePort); err != nil {
						errs = append(errs, fmt.Errorf("service %s: inet_listener %s: %w", svc.Name, l.Name, err))
						continue
					}
					ln.key = key
					opened[key] = ln
				}
				lns = append(lns, ln)
			}
		}
		plan = append(plan, serviceListeners{svc, lns})
	}
	if len(errs) > 0 {
		for _, ln := range opened {
			ln.close()
		}
		return errors.Join(errs...)
	}
	maps.Copy(s.lns, opened)
	s.gen++
	gen := s.gen
	for _, sl := range plan {
		svc, lns := sl.svc, sl.lns
		for _, l := range svc.Listeners {
			for _, e := range l.Endpoints() {
				if ln := s.lns[e.Network+" "+e.Addr]; ln != nil {
					ln.haproxy.Store(l.HAProxy)
				}
			}
			if l.Disabled {
				s.log().Warn("not listening: inet_listener has ssl = yes but ssl = no", "service", svc.Name, "listener", l.Name)
			}
			if l.HAProxy && l.Port != 0 && !l.Disabled && len(cfg.HAProxyTrustedNetworks) == 0 {
				s.log().Warn("inet_listener has haproxy = yes but haproxy_trusted_networks is empty: every connection to it will be closed", "service", svc.Name, "listener", l.Name)
			}
		}
		files := make([]*os.File, len(lns))
		for i, ln := range lns {
			files[i] = ln.ln
		}
		s.warnNoFile(svc, cfg.SSL, len(files))
		p := s.pools[svc.Name]
		if p == nil {
			p = newPool(s.ctx, s.log(), s.Runner, cfg, svc, gen, &s.seq, &s.nextID, files)
			s.pools[svc.Name] = p
		} else {
			p.reconfigure(cfg, svc, gen, files)
		}
		for _, ln := range lns {
			started := ln.pool.Load() != nil
			ln.pool.Store(p)
			if !started {
				go s.acceptLoop(ln)
			}
		}
	}
	// Pools that go away stop spawning before any listener is closed: a
	// spawn duplicates its pool's listening sockets (ExecRunner.Start),
	// and must never meet one being closed. Pools that stay were
	// reconfigured above and no longer spawn with removed listeners.
	var gone []*pool
	for name, p := range s.pools {
		if cfg.Service(name) == nil || !slices.Contains(enabledNames(cfg), name) {
			delete(s.pools, name)
			p.stopSpawning()
			gone = append(gone, p)
		}
	}
	for key, ln := range s.lns {
		if want[key] == nil {
			ln.close()
			delete(s.lns, key)
		}
	}
	for _, p := range gone {
		go p.shutdown(context.Background(), s.grace(), ipc.StopShutdown)
	}
	s.cfg = cfg
	return errors.Join(errs...)
}

// warnNoFile warns (at start and at every reload) when the login
// processes of svc, given listeners listening sockets, cannot hold
// client_limit clients because the hard open-file limit is lower than
// they need (see worker.NoFileNeed): they then run with the hard limit, and
// when a descriptor is missing ("too many open files") an access check
// fails (the client is closed, counted as an access error) or a
// direct accept waits until one is free. Dovecot's master warns
// likewise.
func (s *Supervisor) warnNoFile(svc *config.Service, ssl string, listeners int) {
	hard := worker.HardNoFile()
	need := worker.NoFileNeed(svc, ssl, listeners)
	if hard == 0 || need <= hard {
		return
	}
	fit := uint64(0) // clients that fit when all are being checked at once
	if fixed := worker.NoFileReserve + uint64(listeners); hard > fixed {
		fit = (hard - fixed) / worker.NoFilePerClient(ssl)
	}
	s.log().Warn("fd limit (ulimit -n) is lower than required under max. load: login processes get the hard limit and hold fewer clients than client_limit; raise the hard limit (LimitNOFILE= in the systemd unit) or lower client_limit",
		"service", svc.Name, "client_limit", svc.ClientLimit, "access_sockets", len(svc.AccessSockets), "required", need, "hard_limit", hard, "clients_that_fit", fit)
}

func enabledNames(cfg *config.Config) []string {
	var n []string
	for _, s := range cfg.Enabled() {
		n = append(n, s.Name)
	}
	return n
}

func (s *Supervisor) grace() time.Duration {
	if s.ShutdownGrace > 0 {
		return s.ShutdownGrace
	}
	return DefaultShutdownGrace
}

func (s *Supervisor) listen(network, addr string, reusePort bool) (*listener, error) {
	f, err := sockfd.Listen(network, addr, reusePort)
	if err != nil {
		return nil, err
	}
	a, err := sockfd.NewAcceptor([]int{int(f.Fd())})
	if err != nil {
		f.Close()
		return nil, err
	}
	return &listener{ln: f, acc: a, done: make(chan struct{})}, nil
}

// acceptLoop accepts with accept4 directly (no Go netFD per client: the
// socket only passes through) and hands each socket to its pool. In
// high-performance mode it accepts only while no login process can (see
// pool.updateGate). It closes the listening socket when stopped.
func (s *Supervisor) acceptLoop(ln *listener) {
	defer close(ln.done)
	defer ln.ln.Close()
	defer ln.acc.Release()
	for {
		select {
		case <-ln.pool.Load().acceptGate():
		case <-ln.quit():
			return
		}
		// Woken while waiting, the gate may have closed meanwhile (a
		// process got a free slot): then leave the client to it.
		nfd, sa, err := ln.acc.Next(func() bool {
			select {
			case <-ln.pool.Load().acceptGate():
				return true
			default:
				return false
			}
		})
		if err == sockfd.ErrClosed {
			return
		}
		if err == sockfd.ErrNotNow {
			continue
		}
		if err != nil {
			if err == unix.EMFILE || err == unix.ENFILE || err == unix.ENOBUFS || err == unix.ENOMEM {
				s.log().Error("accept failed", "listener", ln.key, "err", err)
				time.Sleep(10 * time.Millisecond)
				continue
			}
			s.log().Error("accept loop stopped", "listener", ln.key, "err", err)
			return
		}
		// Behind haproxy the peer is the proxy, not the client's source
		// (see evict.go): the client is a source of its own.
		ln.pool.Load().arriveVia(nfd, sockfd.AddrPort(sa), ln.haproxy.Load())
	}
}

func (s *Supervisor) stopAll(ctx context.Context) {
	s.mu.Lock()
	// No spawn may be duplicating a listening socket while it is closed
	// (see apply).
	for _, p := range s.pools {
		p.stopSpawning()
	}
	for _, ln := range s.lns {
		ln.close()
	}
	s.lns = nil
	pools := s.pools
	s.pools = nil
	// shutdown_clients = no: logged-in sessions relayed over TLS
	// outlive the supervisor, as Dovecot's do its master's stop.
	mode := ipc.StopShutdown
	if s.cfg != nil && !s.cfg.ShutdownClients {
		mode = ipc.StopDetach
	}
	if s.ctl != nil {
		s.ctl.Close()
	}
	s.mu.Unlock()
	var wg sync.WaitGroup
	for _, p := range pools {
		wg.Add(1)
		go func() { defer wg.Done(); p.shutdown(ctx, s.grace(), mode) }()
	}
	wg.Wait()
}

// lockPIDFile opens path, takes an exclusive flock on it (held while the
// file stays open; the kernel drops it when the process dies) and writes
// this process's pid into it. If another process holds the lock, it fails
// with "loginsvc is already running with PID N", as Dovecot's master does
// for one base_dir.
func lockPIDFile(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("pid file: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		b, _ := io.ReadAll(io.LimitReader(f, 32))
		f.Close()
		if err == unix.EWOULDBLOCK {
			return nil, fmt.Errorf("loginsvc is already running with PID %s (%s)", strings.TrimSpace(string(b)), path)
		}
		return nil, fmt.Errorf("pid file %s: flock: %w", path, err)
	}
	if err := f.Truncate(0); err == nil {
		_, err = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("pid file: %w", err)
	}
	return f, nil
}

// prepareBaseDir makes base_dir (0755 root) and the login chroot of each
// enabled service, owned by root and group of the login user, mode 0750:
// the login processes can enter it but not write to it (docs/loginsvc.md,
// "Sandbox").
func prepareBaseDir(cfg *config.Config) error {
	if err := os.MkdirAll(cfg.BaseDir, 0o755); err != nil {
		return fmt.Errorf("base_dir: %w", err)
	}
	dirs := map[string]string{filepath.Join(cfg.BaseDir, "login"): cfg.DefaultLoginUser}
	for _, svc := range cfg.Enabled() {
		if svc.Chroot != "" {
			dirs[svc.Chroot] = svc.User
		}
	}
	if os.Geteuid() == 0 {
		// As Dovecot's master, refuse to start (or reload) with a login
		// user that does not exist, rather than fail every connection.
		for _, svc := range cfg.Enabled() {
			if _, err := user.Lookup(svc.User); err != nil {
				return fmt.Errorf("service %s: user %s doesn't exist (user, default_login_user)", svc.Name, svc.User)
			}
		}
	}
	for dir, who := range dirs {
		if err := os.MkdirAll(dir, 0o750); err != nil {
			return fmt.Errorf("login directory: %w", err)
		}
		if os.Geteuid() != 0 {
			continue
		}
		gid := 0
		if u, err := user.Lookup(who); err == nil {
			gid, _ = strconv.Atoi(u.Gid)
		}
		if err := os.Chown(dir, 0, gid); err != nil {
			return fmt.Errorf("login directory: %w", err)
		}
		if err := os.Chmod(dir, 0o750); err != nil {
			return fmt.Errorf("login directory: %w", err)
		}
	}
	return nil
}

// Status returns the current state of every service, in configuration
// order. It is safe for concurrent use.
func (s *Supervisor) Status() control.Status {
	s.mu.Lock()
	st := control.Status{Version: control.StatusSchemaVersion, PID: os.Getpid(), Started: s.started, Generation: s.gen}
	s.mu.Unlock()
	for _, p := range s.poolList() {
		procs, ctr, pending := p.snapshot()
		p.mu.Lock()
		svc := p.svc
		p.mu.Unlock()
		st.Services = append(st.Services, control.ServiceStatus{
			Name: svc.Name, Mode: svc.Mode(), ServiceCount: svc.ServiceCount, ProcessLimit: svc.ProcessLimit,
			ClientLimit: svc.ClientLimit, ProcessMinAvail: svc.ProcessMinAvail, Pending: pending, Counters: ctr, Procs: procs,
		})
	}
	order := map[string]int{}
	for i, n := range config.LoginServiceNames() {
		order[n] = i
	}
	sort.Slice(st.Services, func(i, j int) bool { return order[st.Services[i].Name] < order[st.Services[j].Name] })
	return st
}

// poolList is the services' pools, in no order.
func (s *Supervisor) poolList() []*pool {
	s.mu.Lock()
	defer s.mu.Unlock()
	var pools []*pool
	for _, p := range s.pools {
		pools = append(pools, p)
	}
	return pools
}

// startControl serves the control socket (Config.ControlSocket, mode
// 0600) with internal/ctlsock: a client writes "status\n" and reads one
// JSON Status, or "who\n" ("who recent\n") and reads one JSON Who. Only
// root and the supervisor's own uid are answered (SO_PEERCRED); one
// request per connection, 5 s to send it.
func (s *Supervisor) startControl(cfg *config.Config) error {
	path := cfg.ControlSocket()
	os.Remove(path)
	ln, err := net.Listen("unix", path)
	if err != nil {
		return fmt.Errorf("control socket: %w", err)
	}
	os.Chmod(path, 0o600)
	s.ctl = ln
	srv := &ctlsock.Server{
		OwnerUID: os.Geteuid(), OneRequest: true, IdleTimeout: 5 * time.Second,
		Name: "control socket", Logger: s.log(),
		Handle: func(_ context.Context, _ ctlsock.Peer, line []byte) any {
			switch string(line) + "\n" {
			case control.StatusRequest:
				return s.Status()
			case control.WhoRequest:
				return s.Who(false)
			case control.WhoRecentRequest:
				return s.Who(true)
			}
			return map[string]string{"error": "unknown command"}
		},
	}
	go srv.Serve(context.Background(), ln) // ends when stopAll closes ln
	return nil
}

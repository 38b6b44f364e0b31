package master

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"sort"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/tcpwrapd/tcpwrapd/pkg/logind/config"
	"github.com/tcpwrapd/tcpwrapd/pkg/logind/control"
	"github.com/tcpwrapd/tcpwrapd/pkg/logind/ipc"
	"github.com/tcpwrapd/tcpwrapd/pkg/logind/master/worker"
)

// Policy constants, named after Dovecot's where they exist (docs/loginsvc.md,
// "How it works").
const (
	// FirstStatusTimeout: a login process must report ready within this
	// time or it is killed (SERVICE_FIRST_STATUS_TIMEOUT_SECS).
	FirstStatusTimeout = 30 * time.Second
	// ThrottleMin and ThrottleMax bound the start-up failure throttle,
	// which doubles from ThrottleMin (SERVICE_STARTUP_FAILURE_THROTTLE_*).
	ThrottleMin = 2 * time.Second
	ThrottleMax = 60 * time.Second
	// MaxExitFailuresInSec: before the first clean exit, more failures
	// than this within one second throttle the service.
	MaxExitFailuresInSec = 10
	// DropTimeout: a connection waiting for a slot when nothing can be
	// evicted is closed after this long (SERVICE_DROP_TIMEOUT_MSECS).
	DropTimeout = 10 * time.Second
	// ReloadShutdownDelay: with shutdown_clients = yes, processes of an
	// old configuration are told to shut down this long after a reload.
	ReloadShutdownDelay = 6 * time.Second
	// idleCheckInterval is how often idle processes are looked at.
	idleCheckInterval = time.Second
)

// pool runs one login service: its processes, their clients, pending
// connections and the spawn/evict/throttle policy. All fields are guarded
// by mu; Worker methods are called with mu held.
type pool struct {
	mu     sync.Mutex
	ctx    context.Context
	log    *slog.Logger
	runner worker.Runner
	cfg    *config.Config
	svc    *config.Service
	gen    uint64
	seq    *atomic.Uint64 // shared process counter

	procs    map[*proc]struct{}
	conns    map[uint64]*conn
	nextID   *atomic.Uint64
	pending  []*pendingConn // waiting connections by arrival, given ones (gone) not yet removed
	waiting  int            // of those, the ones still waiting
	waitSeq  uint64         // arrivals queued so far (pendingConn.seq)
	outgoing int            // processes without a client that are exiting (noteOutgoing): places coming back

	throttleUntil time.Time
	throttleDur   time.Duration
	throttleTimer *time.Timer
	hadSuccess    bool
	failSec       time.Time
	failCount     int
	lastLimitLog  time.Time
	dropTimer     *time.Timer
	evictTimer    *time.Timer // ends the evictGrace of the oldest waiting connection
	idleTicker    *time.Ticker
	idleQuit      chan struct{}
	replenish     bool        // an ensureMinAvail is deferred (replenishSoon)
	replenishT    *time.Timer // its deadline

	// lnFiles are the service's listening sockets, passed to processes
	// in high-performance mode (direct accept). gate is closed while the
	// supervisor itself should accept from them: always, except in
	// direct-accept mode while some process can take a client.
	lnFiles  []*os.File
	gate     chan struct{}
	gateOpen bool
	stopping bool
	done     chan struct{} // closed when stopping and no process is left

	counters control.Counters

	// srcs indexes the clients by source for the choice of victims and
	// login_prelogin_ip_limit (evict.go).
	srcs           sources
	lastIPLimitLog time.Time

	// recent are the last RecentHandoffs logins whose client left
	// loginsvc at the hand-off (who.go), oldest first.
	recent []control.Session
}

type proc struct {
	w         worker.Worker
	pid       int
	seq       uint64
	gen       uint64
	svc       *config.Service
	started   time.Time
	ready     bool
	exited    bool
	conns     map[uint64]*conn
	served    int
	idleSince time.Time
	stopSent  ipc.StopMode // highest stop mode sent, 0 = none
	listening bool         // accepts from the listeners itself (until worker.EventUnlistened or exit)
	outgoing  bool         // counted in pool.outgoing
	unacked   int          // clients handed to it while listening, not yet reported on (canGive)
	readyT    *time.Timer

	// What the supervisor knows of the process, to check its reports
	// against (see check).
	direct     bool                // was given the listeners
	unlistened bool                // reported worker.EventUnlistened
	lastLocal  uint32              // n of its last direct accept (ids seq<<32 | n)
	evicted    map[uint64]struct{} // clients evicted, whose close it has not reported yet
	liar       bool                // killed for breaking the protocol; its reports are ignored
	logins     int                 // clients it reported logged in
}

// PID is the process id (the runner may fork after Start returns).
func (pr *proc) PID() int {
	if pr.pid == 0 {
		pr.pid = pr.w.PID()
	}
	return pr.pid
}

type conn struct {
	id       uint64
	p        *proc
	state    ipc.ConnState
	accepted time.Time
	remote   netip.AddrPort
	src      *source // see evict.go
	inAt     int     // index in src.in, -1 if not logging in
	counted  bool    // holds a place of src (pre-login)

	login     *ipc.Login // reported logged in (who.go); nil before
	loginAt   time.Time  // when the report came
	authFails uint8      // failed authentications reported
	unacked   bool       // handed to a listening process, not yet reported on (canGive)
}

type pendingConn struct {
	fd       int
	remote   netip.AddrPort
	srcAddr  netip.Addr // the source's address; invalid behind a proxy
	deadline time.Time
	src      *source // holds a place of it while waiting
	seq      uint64  // arrival order
	gone     bool    // given or closed
}

func newPool(ctx context.Context, log *slog.Logger, r worker.Runner, cfg *config.Config, svc *config.Service, gen uint64, seq, nextID *atomic.Uint64, lns []*os.File) *pool {
	p := &pool{
		ctx: ctx, log: log.With("service", svc.Name), runner: r, cfg: cfg, svc: svc, gen: gen,
		seq: seq, nextID: nextID, procs: map[*proc]struct{}{}, conns: map[uint64]*conn{},
		throttleDur: ThrottleMin, done: make(chan struct{}), lnFiles: lns, gate: make(chan struct{}),
	}
	p.srcs = newSources(cfg.PreloginIPv6Prefix)
	p.idleTicker = time.NewTicker(idleCheckInterval)
	p.idleQuit = make(chan struct{})
	go p.idleLoop(p.idleTicker, p.idleQuit)
	p.mu.Lock()
	p.ensureMinAvail()
	p.updateGate()
	p.mu.Unlock()
	return p
}

// direct reports whether the processes accept clients themselves
// (high-performance mode with listeners). mu is held.
func (p *pool) direct() bool { return p.svc.ServiceCount == 0 && len(p.lnFiles) > 0 }

// updateGate opens the supervisor's accept gate when it must accept
// (not direct-accept mode, stopping, or no process can take a client:
// then it spawns or evicts) and closes it otherwise, as Dovecot's master
// listens only while no process is available. mu is held.
func (p *pool) updateGate() {
	open := !p.direct() || p.stopping || p.roomy() == nil
	switch {
	case open && !p.gateOpen:
		close(p.gate)
		p.gateOpen = true
	case !open && p.gateOpen:
		p.gate = make(chan struct{})
		p.gateOpen = false
	}
}

// acceptGate returns a channel that is closed while the supervisor
// should accept from the service's listeners.
func (p *pool) acceptGate() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.gate
}

// canTake reports whether pr has room for one more client.
func (p *pool) canTake(pr *proc) bool {
	return p.canTakeMore(pr) && len(pr.conns) < pr.svc.ClientLimit
}

// canGive reports whether pr may be handed one more client now: it has
// room, and if it accepts from the listeners itself, it has reported on
// every client handed to it before. Such a process fills a free slot by
// itself as soon as a client leaves, while the supervisor hands the same
// slot to a waiting connection; with one handed client unacknowledged
// at a time the two together stay within client_limit + 1 (the
// process's direct accepts count every client it has received), where
// several in flight at once took it to 2 × client_limit (a burst of
// resets at the limit: the process was killed as a liar, its clients
// lost). The process reports a handed client at once (loginProc.accept),
// so the next one goes there within milliseconds. mu is held.
func (p *pool) canGive(pr *proc) bool {
	return p.canTake(pr) && !(pr.listening && pr.unacked > 0)
}

// canTakeMore reports whether pr may be given clients at all (canTake
// without the client_limit). mu is held.
func (p *pool) canTakeMore(pr *proc) bool {
	return !pr.exited && pr.stopSent == 0 && pr.gen == p.gen && (pr.svc.ServiceCount == 0 || pr.served < pr.svc.ServiceCount)
}

// pick returns the process to give the next client: among those that can
// be given one (canGive), ready before starting, then the fewest clients,
// then the oldest (balanced, unlike Dovecot's wake-up lottery).
func (p *pool) pick() *proc { return p.best(p.canGive) }

// roomy is pick among the processes with room (canTake), whether or not
// they can be given a client at this moment: one that waits only for its
// report on a handed client takes the next within milliseconds, so the
// supervisor neither accepts, spawns nor evicts for it.
func (p *pool) roomy() *proc { return p.best(p.canTake) }

func (p *pool) best(ok func(*proc) bool) *proc {
	var best *proc
	for pr := range p.procs {
		if !ok(pr) {
			continue
		}
		if best == nil || (pr.ready && !best.ready) ||
			(pr.ready == best.ready && (len(pr.conns) < len(best.conns) ||
				(len(pr.conns) == len(best.conns) && pr.seq < best.seq))) {
			best = pr
		}
	}
	return best
}

// acked notes that the process of c has reported on c (or c is gone
// from it), if c was handed to it unacknowledged (canGive). mu is held.
func (p *pool) acked(c *conn) {
	if c != nil && c.unacked {
		c.unacked = false
		c.p.unacked--
	}
}

func (p *pool) throttled(now time.Time) bool { return now.Before(p.throttleUntil) }

// arrive takes a newly accepted client socket (the pool owns fd from now
// on and closes it).
func (p *pool) arrive(fd int, remote netip.AddrPort) { p.arriveVia(fd, remote, false) }

// arriveVia is arrive for a connection from the peer remote; proxied
// says the peer is a proxy (a haproxy = yes listener), whose clients
// are each a source of their own (evict.go): the login process still
// gets remote, to check the proxy against haproxy_trusted_networks.
func (p *pool) arriveVia(fd int, remote netip.AddrPort, proxied bool) {
	srcAddr := remote.Addr()
	if proxied {
		srcAddr = netip.Addr{}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	defer p.updateGate()
	p.counters.Accepted++
	now := time.Now()
	if p.stopping {
		syscall.Close(fd)
		p.counters.Dropped++
		return
	}
	if !p.admit(p.srcs.peek(srcAddr), nil) {
		syscall.Close(fd) // login_prelogin_ip_limit, and nothing of the source to evict
		p.counters.Dropped++
		return
	}
	if p.waiting == 0 {
		if pr := p.pick(); pr != nil {
			p.give(pr, fd, remote, srcAddr, now)
			// A preforked process took the client: its replacement is
			// started once the client is greeted (or gone), not now, so
			// that a starting Go runtime does not compete for the CPU
			// with the greeting (see replenishAfter).
			p.replenishSoon()
			return
		}
		// A process with room that awaits its report on a handed
		// client (canGive) takes this one too, in a moment (queued).
		if p.roomy() == nil {
			if pr := p.spawnIfAllowed(now); pr != nil {
				p.give(pr, fd, remote, srcAddr, now)
				p.replenishSoon()
				return
			}
		}
	}
	if p.throttled(now) && len(p.procs) == 0 {
		syscall.Close(fd)
		p.counters.Dropped++
		return
	}
	p.queue(fd, remote, srcAddr, now)
	p.armDropTimer()
	if len(p.procs)-p.outgoing >= p.svc.ProcessLimit && now.Sub(p.lastLimitLog) >= time.Second {
		p.lastLimitLog = now
		p.log.Warn("process_limit reached, evicting per new connection the oldest logging-in client of the source holding the most places", "process_limit", p.svc.ProcessLimit, "client_limit", p.svc.ClientLimit)
	}
	p.dispatch(now) // evicts for it at the limit (evictForWaiting)
}

// spawnIfAllowed starts a process if the limit and throttle allow.
func (p *pool) spawnIfAllowed(now time.Time) *proc {
	if p.stopping || len(p.procs) >= p.svc.ProcessLimit || p.throttled(now) {
		return nil
	}
	return p.spawn(now)
}

func (p *pool) spawn(now time.Time) *proc {
	pr := &proc{seq: p.seq.Add(1), gen: p.gen, svc: p.svc, started: now, conns: map[uint64]*conn{}, idleSince: now}
	spec := worker.Spec{Config: p.cfg, Service: p.svc, Generation: p.gen, Seq: pr.seq}
	if p.direct() {
		spec.Listeners = p.lnFiles
	}
	w, err := p.runner.Start(p.ctx, spec, func(ev worker.Event) { p.event(pr, ev) })
	if err != nil {
		p.counters.SpawnFailures++
		p.log.Error("cannot start login process", "err", err)
		p.throttle(now, "start failed")
		return nil
	}
	pr.w = w // pid: pr.PID(), once forked
	pr.listening = spec.Listeners != nil
	pr.direct = pr.listening
	p.procs[pr] = struct{}{}
	p.counters.Spawned++
	pr.readyT = time.AfterFunc(FirstStatusTimeout, func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		if !pr.ready && !pr.exited {
			p.log.Error("login process not ready in time, killing it", "pid", pr.PID(), "timeout", FirstStatusTimeout)
			pr.w.Kill()
		}
	})
	return pr
}

func (p *pool) give(pr *proc, fd int, remote netip.AddrPort, srcAddr netip.Addr, now time.Time) {
	id := p.nextID.Add(1)
	err := pr.w.Give(id, fd, remote)
	syscall.Close(fd)
	if err != nil {
		p.log.Error("cannot hand a client to a login process, killing it", "pid", pr.PID(), "err", err)
		pr.w.Kill()
		pr.stopSent = ipc.StopShutdown
		p.noteOutgoing(pr)
		p.counters.Lost++
		return
	}
	state := ipc.StateChecking
	if !checksFirst(pr.svc) {
		state = ipc.StateLoggingIn
	}
	c := &conn{id: id, p: pr, state: state, accepted: now, remote: remote}
	if pr.listening {
		c.unacked = true
		pr.unacked++
	}
	p.srcs.track(c, srcAddr)
	pr.conns[id] = c
	pr.served++
	p.conns[id] = c
}

// checksFirst reports whether svc's clients go through something before
// their greeting that an eviction must not cut short: the
// login_access_sockets, or a PROXY header on a haproxy = yes listener.
// Without either, a client handed to a login process is in the
// pre-login protocol from that moment (its greeting is the first thing
// the process does with it, once started), so it counts as logging in
// (evictable, by its age) at once: a burst at the limit then evicts
// strictly the oldest clients, whichever of their processes happens to
// start first.
func checksFirst(svc *config.Service) bool {
	if len(svc.AccessSockets) > 0 {
		return true
	}
	for _, l := range svc.Listeners {
		if l.HAProxy {
			return true
		}
	}
	return false
}

// evictForWaiting evicts one client for the next waiting connection
// (sources.nextWaiting) that no place coming back is already meant for,
// if the service is at process_limit (otherwise a process can be
// spawned, now or once a throttle ends) and some client can be evicted
// for it (victim, in evict.go). It reports whether it evicted. dispatch
// calls it after every change that can make a client evictable or a connection wait: an arrival, a client
// that becomes logging-in, a client or process that goes away. So a
// connection that arrives while every client is still being greeted or
// checked (a burst: the processes spawned for the first clients have not
// started yet) is not left waiting for DropTimeout: it gets its eviction
// as soon as a client is logging in. At most one eviction per waiting
// connection, and none while places are coming back: p.outgoing counts
// the processes that have no client left and are exiting (a victim's,
// or one whose client has gone: noteOutgoing), each of which gives back
// its place under process_limit when it is reaped, milliseconds later.
// So live clients below process_limit never make an arrival evict
// anyone, however fast clients come and go: neither a process already
// reported without a client (outgoing), nor, within evictGrace of the
// arrival, one whose client has just gone and that has not reported it
// yet. mu is held.
func (p *pool) evictForWaiting(now time.Time) bool {
	if p.stopping || p.waiting <= p.outgoing || len(p.procs) < p.svc.ProcessLimit || p.roomy() != nil {
		return false
	}
	if graceEnd := p.pending[0].deadline.Add(evictGrace - DropTimeout); now.Before(graceEnd) {
		p.armEvictTimer(graceEnd)
		return false
	}
	c := p.victim(p.srcs.nextWaiting().src)
	if c == nil {
		return false
	}
	p.evict(c, true)
	return true
}

// evictionFrees reports whether evicting c makes room for a new client:
// either c's process can take another client once c is gone (a
// high-performance process of the current generation: the new client
// gets the slot at once, and the process keeps it for the supervisor
// rather than for a direct accept), or c is the last client of a
// process that then exits (service_count reached, as always in
// high-security mode, or draining after a reload), which gives back its
// place under process_limit. Evicting any other client (one of several
// of a process that has reached its service_count, say) would not help
// the connection it is evicted for. mu is held.
func (p *pool) evictionFrees(c *conn) bool {
	pr := c.p
	if pr.exited {
		return false
	}
	if p.canTakeMore(pr) && len(pr.conns)-1 < pr.svc.ClientLimit {
		return true
	}
	return len(pr.conns) == 1 && exitsWhenIdle(pr)
}

// exitsWhenIdle reports whether pr exits once it has no client: it has
// served service_count clients, or it was told to stop (idle, drain or
// shutdown: an idle one that accepted a client meanwhile serves it and
// exits after it).
func exitsWhenIdle(pr *proc) bool {
	return pr.stopSent != 0 || (pr.svc.ServiceCount > 0 && pr.served >= pr.svc.ServiceCount)
}

// noteOutgoing keeps pr.outgoing and p.outgoing true to pr after a
// change of its clients or of its stop state: a process is outgoing
// from the moment it has no client left and exits for that
// (exitsWhenIdle, or killed for breaking the protocol) until its exit
// is reported. Its place under process_limit is as good as free then:
// it comes back within milliseconds, when the process is reaped. A
// client that connects again at once after its last one left (a
// reconnecting churner) must not find the service full and evict
// someone for it; it waits that moment (evictForWaiting). mu is held.
func (p *pool) noteOutgoing(pr *proc) {
	l := !pr.exited && len(pr.conns) == 0 && (pr.liar || exitsWhenIdle(pr))
	if l == pr.outgoing {
		return
	}
	pr.outgoing = l
	if l {
		p.outgoing++
	} else {
		p.outgoing--
	}
}

// dispatch hands waiting connections to processes that can take them,
// spawning where allowed, closes those past their deadline, and at the
// limit evicts for the others (evictForWaiting). mu is held.
func (p *pool) dispatch(now time.Time) {
	for {
		p.giveWaiting(now)
		if !p.evictForWaiting(now) {
			break
		}
	}
	p.ensureMinAvail()
	p.updateGate()
}

// evictGrace is how long the oldest waiting connection waits before
// anyone is evicted for it. A client that closes and connects again at
// once (a reconnecting churner) arrives before its previous login
// process has read the end of the stream and reported the client gone:
// the supervisor would see one client too many and evict one (the
// departed one, or a live one beside it). Within evictGrace the report
// comes (a read and a packet, milliseconds even on a busy machine), the
// process becomes outgoing and no one is evicted; at the limit for real,
// the eviction comes evictGrace later, still exactly one per waiting
// connection. Dovecot's master evicts only at its next status round
// (about 2 s at the limit, see docs/loginsvc.md).
const evictGrace = 50 * time.Millisecond

// armEvictTimer runs dispatch at t (the end of an evictGrace) unless a
// run is already due. mu is held.
func (p *pool) armEvictTimer(t time.Time) {
	if p.evictTimer != nil {
		return
	}
	p.evictTimer = time.AfterFunc(time.Until(t), func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		p.evictTimer = nil
		p.dispatch(time.Now())
	})
}

// replenishAfter is how long the replacement of a preforked process that
// took a client waits at most for that client's greeting.
const replenishAfter = 5 * time.Millisecond

// replenishSoon arranges for ensureMinAvail to run when the next client
// is greeted, or after replenishAfter at the latest. mu is held.
func (p *pool) replenishSoon() {
	if p.replenish {
		return
	}
	p.replenish = true
	p.replenishT = time.AfterFunc(replenishAfter, func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		if p.replenish {
			p.replenishNow()
		}
	})
}

// replenishNow runs the deferred ensureMinAvail. mu is held.
func (p *pool) replenishNow() {
	p.replenish = false
	if p.replenishT != nil {
		p.replenishT.Stop()
		p.replenishT = nil
	}
	p.ensureMinAvail()
}

// ensureMinAvail keeps process_min_avail processes able to take a client
// (Dovecot counts partly used high-performance processes too).
func (p *pool) ensureMinAvail() {
	if p.stopping {
		return
	}
	now := time.Now()
	avail := 0
	for pr := range p.procs {
		if p.canTake(pr) {
			avail++
		}
	}
	for avail < p.svc.ProcessMinAvail && len(p.procs) < p.svc.ProcessLimit && !p.throttled(now) {
		if p.spawn(now) == nil {
			return
		}
		avail++
	}
}

// throttle stops spawning for throttleDur (doubling up to ThrottleMax).
func (p *pool) throttle(now time.Time, why string) {
	if p.throttled(now) {
		return
	}
	p.counters.Throttles++
	d := p.throttleDur
	p.throttleUntil = now.Add(d)
	p.throttleDur = min(2*d, ThrottleMax)
	p.log.Error("command startup failed, throttling", "reason", why, "for", d)
	if len(p.procs) == 0 {
		p.dropPending()
	}
	if p.throttleTimer != nil {
		p.throttleTimer.Stop()
	}
	p.throttleTimer = time.AfterFunc(d, func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		p.dispatch(time.Now())
	})
}

// acceptedAt is the supervisor's time, seen now, for a client that a
// process reports it accepted at at (ipc.Accept.At): the client's age
// counts from its accept, not from its report, which may come up to
// 20 ms later and after a later client's of another process. Never
// after now (a wall-clock step, a lying process: an older time only
// makes that process's own client the first victim); now if unknown.
func acceptedAt(at int64, now time.Time) time.Time {
	if d := time.Duration(now.UnixNano() - at); at != 0 && d > 0 {
		return now.Add(-d)
	}
	return now
}

// event handles one report from a login process.
func (p *pool) event(pr *proc, ev worker.Event) {
	p.mu.Lock()
	defer p.mu.Unlock()
	defer p.updateGate()
	now := time.Now()
	if ev.Kind != worker.EventExit {
		if pr.liar {
			return
		}
		if what := p.check(pr, ev); what != "" {
			p.violation(pr, what)
			return
		}
		// Any report on a client handed to a listening process
		// acknowledges it: the next waiting connection may go there.
		if c := pr.conns[ev.Conn]; c != nil && c.unacked {
			p.acked(c)
			if p.waiting > 0 {
				defer p.dispatch(now)
			}
		}
	}
	switch ev.Kind {
	case worker.EventAccepted:
		p.counters.Accepted++
		p.counters.Direct++
		if pr.exited {
			break
		}
		pr.lastLocal = uint32(ev.Conn)
		c := &conn{id: ev.Conn, p: pr, state: ev.State, accepted: acceptedAt(ev.Accept.At, now), remote: ev.Accept.Remote}
		p.srcs.track(c, ev.Accept.Remote.Addr())
		pr.conns[ev.Conn] = c
		pr.served++
		p.conns[ev.Conn] = c
		p.noteOutgoing(pr) // a stopped process serves what it accepted meanwhile
		p.admit(c.src, c)
		if !p.canTake(pr) {
			p.ensureMinAvail() // full: keep process_min_avail with a free slot
		}
		if ev.State == ipc.StateLoggingIn && p.waiting > 0 {
			p.dispatch(now) // it may be evicted for a waiting connection
		}
	case worker.EventReady:
		pr.ready = true
		if pr.readyT != nil {
			pr.readyT.Stop()
		}
	case worker.EventState:
		if c := pr.conns[ev.Conn]; c != nil {
			p.srcs.setState(c, ev.State)
		}
		if ev.State == ipc.StateLoggingIn {
			if p.replenish {
				p.replenishNow()
			}
			if p.waiting > 0 {
				p.dispatch(now) // it may be evicted for a waiting connection
			}
		}
	case worker.EventLogin, worker.EventAuthFailed:
		p.noteLogin(pr, ev, now)
	case worker.EventClosed:
		p.counters.Closed++
		switch ev.Reason {
		case ipc.CloseRefused:
			p.counters.Refused++
		case ipc.CloseAccessError:
			p.counters.AccessErrors++
		}
		delete(pr.evicted, ev.Conn)
		if c := pr.conns[ev.Conn]; c != nil {
			p.noteHandoff(c)
			p.srcs.untrack(c)
			delete(pr.conns, ev.Conn)
			delete(p.conns, ev.Conn)
			if len(pr.conns) == 0 {
				pr.idleSince = now
			}
			p.noteOutgoing(pr)
		}
		p.dispatch(now)
	case worker.EventUnlistened:
		pr.listening = false
		pr.unlistened = true
	case worker.EventDetached:
		// It outlives the supervisor with its relayed sessions
		// (shutdown_clients = no): forgotten as if it had exited, never
		// killed.
		p.log.Info("login process left running with its logged-in sessions (shutdown_clients = no)", "pid", pr.PID(), "sessions", len(pr.conns))
		p.exited(pr, worker.Event{Kind: worker.EventExit}, now)
	case worker.EventExit:
		p.exited(pr, ev, now)
	}
}

// maxUnclosedEvictions bounds the clients a process may have been told to
// evict without reporting them closed (it closes them at once; the
// reports can lag behind only as far as the socket buffers go).
const maxUnclosedEvictions = 1 << 16

// check validates one report of pr against what the supervisor knows,
// since a login process is not trusted (it parses what clients send):
// it returns what is wrong, or "". The reports, by message (proto.go):
//
//   - R (EventReady): once.
//   - A (EventAccepted): only from a process given the listeners, before
//     it reported U; the id must be the process's own, Seq<<32 | n with
//     its Seq and n above that of its previous direct accept (so never
//     a duplicate, nor anyone else's id); the state is checking or
//     logging-in; and the process may then hold at most client_limit + 1
//     clients as the supervisor counts them (one more than client_limit
//     for a moment after an eviction, or with a handed client on its
//     way, see canGive and loginProc.canAccept).
//   - T (EventState): a client the process holds (handed to it, or
//     accepted by it and reported) or was told to evict; a known state,
//     never back to an earlier one (checking, logging-in, proxying).
//   - X (EventClosed): likewise a client it holds or was told to evict
//     (so never one closed before: a second close is a lie); a known
//     reason.
//   - L (EventLogin): a client it holds or was told to evict, past its
//     access check (logging-in or proxying), once; the report itself
//     (user, mechanism, mail pid, flags) is checked by ipc.ParseLogin.
//   - F (EventAuthFailed): a client it holds or was told to evict, that
//     is logging in and has not logged in, with n one more than its
//     previous failure's.
//   - U (EventUnlistened): once, from a process given the listeners.
//   - D (EventDetached): from a process told ipc.StopDetach (once: the
//     process is forgotten then).
//   - B, and everything about the packets themselves (sizes, types,
//     descriptors), is checked by the runner (EventInvalid).
//
// mu is held.
func (p *pool) check(pr *proc, ev worker.Event) string {
	_, wasEvicted := pr.evicted[ev.Conn]
	c := pr.conns[ev.Conn]
	switch ev.Kind {
	case worker.EventInvalid:
		return fmt.Sprint(ev.Err)
	case worker.EventReady:
		if pr.ready {
			return "reported ready twice"
		}
	case worker.EventAccepted:
		switch {
		case !pr.direct:
			return fmt.Sprintf("reported accepting client %#x itself, but it has no listeners", ev.Conn)
		case pr.unlistened:
			return fmt.Sprintf("reported accepting client %#x after it had closed its listeners", ev.Conn)
		case ev.Conn>>32 != pr.seq:
			return fmt.Sprintf("reported accepting client %#x, which is not one of its ids (%#x<<32 | n)", ev.Conn, pr.seq)
		case uint32(ev.Conn) <= pr.lastLocal:
			return fmt.Sprintf("reported accepting client %#x again or out of order (after %#x)", ev.Conn, pr.seq<<32|uint64(pr.lastLocal))
		case ev.State != ipc.StateChecking && ev.State != ipc.StateLoggingIn:
			return fmt.Sprintf("reported accepting client %#x in an invalid state (%s)", ev.Conn, ev.State)
		case len(pr.conns)+1 > pr.svc.ClientLimit+1:
			return fmt.Sprintf("reported more clients than client_limit (%d) allows: %d", pr.svc.ClientLimit, len(pr.conns)+1)
		}
	case worker.EventState:
		switch {
		case c == nil && !wasEvicted:
			return fmt.Sprintf("reported a state for client %#x, which it does not have", ev.Conn)
		case ev.State < ipc.StateChecking || ev.State > ipc.StateProxying:
			return fmt.Sprintf("reported client %#x in an invalid state (%s)", ev.Conn, ev.State)
		case c != nil && ev.State < c.state:
			return fmt.Sprintf("reported client %#x back from %s to %s", ev.Conn, c.state, ev.State)
		}
	case worker.EventClosed:
		switch {
		case c == nil && !wasEvicted:
			return fmt.Sprintf("reported client %#x closed, which it does not have (never had, or closed before)", ev.Conn)
		case ev.Reason > ipc.CloseAccessError:
			return fmt.Sprintf("reported client %#x closed for an invalid reason (%s)", ev.Conn, ev.Reason)
		}
	case worker.EventLogin, worker.EventAuthFailed:
		if c == nil && !wasEvicted {
			return fmt.Sprintf("reported a login or failed authentication of client %#x, which it does not have", ev.Conn)
		}
		if c != nil {
			return checkLogin(c, ev)
		}
	case worker.EventUnlistened:
		switch {
		case !pr.direct:
			return "reported closing its listeners, but it has none"
		case pr.unlistened:
			return "reported closing its listeners twice"
		}
	case worker.EventDetached:
		if pr.stopSent != ipc.StopDetach {
			return "reported detaching, but it was not told to"
		}
	default:
		return fmt.Sprintf("unknown event %d", ev.Kind)
	}
	return ""
}

// violation kills pr for breaking the protocol (see check), logging it
// once with what it did. Its clients are released, and it is replaced,
// when its exit is reported (see exited). mu is held.
func (p *pool) violation(pr *proc, what string) {
	if pr.liar || pr.exited {
		return
	}
	pr.liar = true
	p.noteOutgoing(pr)
	p.counters.Violations++
	p.log.Error("login process broke the protocol, killing it", "pid", pr.PID(), "what", what, "clients", len(pr.conns))
	pr.w.Kill()
}

// oldListening reports whether a process of a generation before the
// pool's current one still accepts clients from the listeners itself.
func (p *pool) oldListening() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for pr := range p.procs {
		if pr.listening && pr.gen != p.gen && !pr.exited {
			return true
		}
	}
	return false
}

func (p *pool) exited(pr *proc, ev worker.Event, now time.Time) {
	if pr.exited {
		return
	}
	pr.exited = true
	pr.listening = false
	if pr.readyT != nil {
		pr.readyT.Stop()
	}
	delete(p.procs, pr)
	p.noteOutgoing(pr)
	lost := len(pr.conns)
	for id, c := range pr.conns {
		p.noteHandoff(c)
		p.srcs.untrack(c)
		delete(p.conns, id)
	}
	clean := ev.ExitCode == 0 && ev.Signal == ""
	switch {
	case pr.liar:
		// Logged once, when it was caught (violation). One that had not
		// served a client yet throttles the service, as any failure of a
		// process that handled no connection does in Dovecot: a login
		// binary that lies from the start is not respawned in a loop.
		p.counters.Lost += uint64(lost)
		if pr.served == 0 {
			p.throttle(now, "killed before serving a client (protocol violation)")
		}
	case clean:
		p.hadSuccess = true
		p.throttleDur = ThrottleMin
	case !pr.ready:
		p.counters.SpawnFailures++
		p.log.Error("login process failed before it was ready", "pid", pr.PID(), "status", ev.ExitCode, "signal", ev.Signal, "err", ev.Err)
		p.throttle(now, "startup failure")
	default:
		killedByUs := pr.stopSent >= ipc.StopShutdown && ev.Signal == "killed"
		if !killedByUs {
			p.counters.Crashes++
			p.counters.Lost += uint64(lost)
			p.log.Error("login process died", "pid", pr.PID(), "status", ev.ExitCode, "signal", ev.Signal, "clients_lost", lost, "err", ev.Err)
		}
		if !p.hadSuccess {
			if now.Sub(p.failSec) >= time.Second {
				p.failSec, p.failCount = now, 0
			}
			p.failCount++
			if p.failCount > MaxExitFailuresInSec {
				p.throttle(now, "too many failures")
			}
		}
	}
	p.closeDoneIfIdle()
	p.dispatch(now)
}

// closeDoneIfIdle closes p.done once the pool is stopping and has no
// process left. It may get there more than once (a process can exit
// between stopSpawning and shutdown), so it closes only once. mu is held.
func (p *pool) closeDoneIfIdle() {
	if !p.stopping || len(p.procs) > 0 {
		return
	}
	select {
	case <-p.done:
	default:
		close(p.done)
	}
}

// idleLoop applies idle_kill: a process without clients for IdleKill is
// stopped while more than process_min_avail processes can take clients.
func (p *pool) idleLoop(t *time.Ticker, quit chan struct{}) {
	for {
		select {
		case <-quit:
			return
		case <-t.C:
		}
		p.mu.Lock()
		if p.stopping {
			p.mu.Unlock()
			return
		}
		p.idleCheck(time.Now())
		p.mu.Unlock()
	}
}

func (p *pool) idleCheck(now time.Time) {
	if p.svc.IdleKill <= 0 {
		return
	}
	avail := 0
	var idle []*proc
	for pr := range p.procs {
		if p.canTake(pr) {
			avail++
			if pr.ready && len(pr.conns) == 0 && now.Sub(pr.idleSince) >= p.svc.IdleKill {
				idle = append(idle, pr)
			}
		}
	}
	sort.Slice(idle, func(i, j int) bool { return idle[i].idleSince.Before(idle[j].idleSince) })
	for _, pr := range idle {
		if avail <= p.svc.ProcessMinAvail {
			break
		}
		pr.stopSent = ipc.StopIdle
		pr.w.Stop(ipc.StopIdle)
		p.noteOutgoing(pr)
		avail--
	}
}

// reconfigure switches the pool to a new generation: processes of the
// old one get no new clients and are told to drain; with
// shutdown_clients they are shut down after ReloadShutdownDelay.
func (p *pool) reconfigure(cfg *config.Config, svc *config.Service, gen uint64, lns []*os.File) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cfg, p.svc, p.gen, p.lnFiles = cfg, svc, gen, lns
	p.srcs.v6Bits = cfg.PreloginIPv6Prefix // for new clients
	var old []*proc
	for pr := range p.procs {
		if pr.gen != gen && pr.stopSent < ipc.StopDrain {
			pr.stopSent = ipc.StopDrain
			pr.w.Stop(ipc.StopDrain)
			p.noteOutgoing(pr)
			old = append(old, pr)
		}
	}
	if cfg.ShutdownClients && len(old) > 0 {
		time.AfterFunc(ReloadShutdownDelay, func() {
			p.mu.Lock()
			defer p.mu.Unlock()
			for _, pr := range old {
				if !pr.exited && pr.stopSent < ipc.StopShutdown {
					pr.stopSent = ipc.StopShutdown
					pr.w.Stop(ipc.StopShutdown)
					p.noteOutgoing(pr)
				}
			}
		})
	}
	p.dispatch(time.Now())
}

// shutdown stops the pool: pending connections are closed and every
// process is told to stop with mode: ipc.StopShutdown ends every client
// (shutdown_clients = yes), ipc.StopDetach leaves the logged-in
// sessions relayed over TLS running in processes that outlive the
// supervisor (shutdown_clients = no; they are forgotten once they
// report it). After grace, the survivors are killed. It returns when
// every process has exited (or detached) or ctx is done.
func (p *pool) shutdown(ctx context.Context, grace time.Duration, mode ipc.StopMode) {
	p.mu.Lock()
	p.stopIdle()
	p.dropPending()
	for pr := range p.procs {
		pr.stopSent = mode
		pr.w.Stop(mode)
		p.noteOutgoing(pr)
	}
	p.closeDoneIfIdle()
	p.updateGate()
	p.mu.Unlock()
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-p.done:
		return
	case <-t.C:
	case <-ctx.Done():
	}
	p.mu.Lock()
	for pr := range p.procs {
		p.log.Warn("login process did not stop in time, killing it", "pid", pr.PID())
		pr.w.Kill()
	}
	p.mu.Unlock()
	select {
	case <-p.done:
	case <-time.After(2 * time.Second):
	}
}

// stopSpawning makes the pool start no more processes (the first step of
// shutdown); a spawn in progress has finished when it returns.
func (p *pool) stopSpawning() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stopIdle()
}

// stopIdle sets stopping and ends the idle loop; mu is held.
func (p *pool) stopIdle() {
	if !p.stopping {
		p.stopping = true
		p.idleTicker.Stop()
		close(p.idleQuit)
	}
}

func (p *pool) snapshot() ([]control.ProcInfo, control.Counters, int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []control.ProcInfo
	for pr := range p.procs {
		pi := control.ProcInfo{PID: pr.PID(), Service: p.svc.Name, Mode: pr.svc.Mode(), Generation: pr.gen, Started: pr.started, Ready: pr.ready, Served: pr.served, Logins: pr.logins}
		if pr.stopSent != 0 {
			pi.Stopping = [...]string{"", "idle", "drain", "shutdown", "detach"}[pr.stopSent]
		}
		for _, c := range pr.conns {
			switch c.state {
			case ipc.StateChecking:
				pi.Checking++
			case ipc.StateLoggingIn:
				pi.LoggingIn++
			case ipc.StateProxying:
				pi.Proxying++
			}
		}
		out = append(out, pi)
	}
	sort.Slice(out, func(i, j int) bool {
		return out[i].Started.Before(out[j].Started) || (out[i].Started.Equal(out[j].Started) && out[i].PID < out[j].PID)
	})
	return out, p.counters, p.waiting
}

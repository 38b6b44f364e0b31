// Package worker starts loginsvc's login processes and talks to them for
// the supervisor (pkg/logind/master): the Runner and Worker interfaces
// the supervisor's policy uses (tests run it with fake workers),
// ExecRunner, which re-executes the loginsvc binary as a login process
// with its settings, listeners and sealed key (pkg/logind/ipc), reads
// its reports and checks every packet (a login process is not trusted),
// and relays its stderr lines to the supervisor's log, bounded in rate,
// length and crash output. The resource limits a login process gets
// (RLIMIT_NOFILE, RLIMIT_NPROC) are computed here.
package worker

import (
	"context"
	"fmt"
	"net/netip"
	"os"

	"github.com/tcpwrapd/tcpwrapd/pkg/logind/config"
	"github.com/tcpwrapd/tcpwrapd/pkg/logind/ipc"
)

// Runner starts login processes. The supervisor's policy (when to spawn,
// whom to evict, throttling, idle kill) talks only to this interface, so
// tests can run it with in-process fake workers (see the package's
// tests); ExecRunner is the real one.
type Runner interface {
	// Start starts one login process for spec. Events about it (ready,
	// client state changes, exit) must be delivered to events, in order,
	// from any goroutine; EventExit must be the last one and must come
	// exactly once, also when Start's process dies early. Start returns
	// an error only if nothing was started.
	Start(ctx context.Context, spec Spec, events func(Event)) (Worker, error)
}

// Spec is what a login process is started for.
type Spec struct {
	Config     *config.Config
	Service    *config.Service
	Generation uint64 // configuration generation (1 at start, +1 per reload)
	Seq        uint64 // per-supervisor process sequence number
	// Listeners are the service's listening sockets, set in
	// high-performance mode: the process accepts from them itself while
	// it has a free slot and reports each client with EventAccepted. The
	// runner must not close them.
	Listeners []*os.File
}

// Worker is a started login process as the supervisor sees it. Methods
// are called with the supervisor's pool lock held and must not block for
// long; they are not called after EventExit was delivered.
type Worker interface {
	// PID is the process id (a fake number for fake workers); it may
	// wait until the process is forked, and is 0 if that failed.
	PID() int
	// Give hands the client socket fd (the supervisor's copy; Give
	// duplicates it as needed and does not close it) to the process under
	// the connection id, with the client's address as accept returned it
	// (the process cannot ask the kernel for it once the client has
	// reset the connection).
	Give(id uint64, fd int, remote netip.AddrPort) error
	// Evict asks the process to drop client id with the protocol's
	// "Connection queue full" notice. reserve: the client's slot is kept
	// for the next client the supervisor gives the process (an eviction
	// for a waiting connection), not for a direct accept; false for an
	// eviction at login_prelogin_ip_limit.
	Evict(id uint64, reserve bool) error
	// Stop asks the process to stop (see ipc.StopMode).
	Stop(mode ipc.StopMode) error
	// Kill kills the process (SIGKILL), and anything it started.
	Kill() error
}

// EventKind tells what a Event reports.
type EventKind int

const (
	// EventReady: the process is sandboxed and serving.
	EventReady EventKind = iota + 1
	// EventState: client Conn changed to State.
	EventState
	// EventClosed: client Conn is gone, for Reason.
	EventClosed
	// EventExit: the process exited with ExitCode (-1 if killed by a
	// signal, then Signal is set); Err describes it for logs.
	EventExit
	// EventAccepted: the process accepted client Conn from a listener
	// itself (Spec.Listeners); it is in State.
	EventAccepted
	// EventUnlistened: a process that accepted from Spec.Listeners
	// has stopped doing so for good (after Stop); every client it
	// accepted was reported before this event.
	EventUnlistened
	// EventInvalid: the process sent something the protocol does not
	// allow (a malformed or oversized packet, an unknown message type, a
	// descriptor) or stopped talking without exiting; Err says what. The
	// runner reads nothing more from it, and the pool kills it.
	EventInvalid
	// EventLogin: client Conn logged in and was handed to a mail
	// process (Login; ipc.MsgLogin, checked by ipc.ParseLogin).
	EventLogin
	// EventAuthFailed: client Conn failed its Attempt-th authentication.
	EventAuthFailed
	// EventDetached: after Stop(ipc.StopDetach), the process runs on
	// without the supervisor, relaying its logged-in sessions
	// (ipc.MsgDetached).
	EventDetached
)

// Event is one report about a login process.
type Event struct {
	Kind  EventKind
	Conn  uint64
	State ipc.ConnState
	// Accept is, for EventAccepted, the client's address (the zero
	// AddrPort if unknown: then the client is a source of its own) and
	// when the process accepted it (ipc.Accept).
	Accept   ipc.Accept
	Reason   ipc.CloseReason
	Login    ipc.Login // EventLogin
	Attempt  uint8     // EventAuthFailed: 1, 2, ...
	ExitCode int
	Signal   string
	Err      error
}

// String describes e for logs and test failures ("ready", "conn 3
// logging-in", ...).
func (e Event) String() string {
	switch e.Kind {
	case EventReady:
		return "ready"
	case EventState:
		return fmt.Sprintf("conn %d %s", e.Conn, e.State)
	case EventClosed:
		return fmt.Sprintf("conn %d closed (%s)", e.Conn, e.Reason)
	case EventExit:
		return fmt.Sprintf("exit %d %s", e.ExitCode, e.Signal)
	case EventAccepted:
		return fmt.Sprintf("conn %d accepted (%s)", e.Conn, e.State)
	case EventUnlistened:
		return "unlistened"
	case EventDetached:
		return "detached"
	case EventInvalid:
		return fmt.Sprintf("invalid: %v", e.Err)
	case EventLogin:
		return fmt.Sprintf("conn %d logged in (%s)", e.Conn, e.Login.Mech)
	case EventAuthFailed:
		return fmt.Sprintf("conn %d auth failed (%d)", e.Conn, e.Attempt)
	}
	return "?"
}

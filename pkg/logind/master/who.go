package master

import (
	"fmt"
	"sort"
	"time"

	"github.com/tcpwrapd/tcpwrapd/pkg/logind/control"
	"github.com/tcpwrapd/tcpwrapd/pkg/logind/ipc"
	"github.com/tcpwrapd/tcpwrapd/pkg/logind/master/worker"
)

// The admin view (loginctl who, docs/loginsvc.md "Who is logged in"):
// a login process reports each client that logged in and was handed to
// a mail process (ipc.MsgLogin) and each failed authentication
// (ipc.MsgAuthFailed). A client that speaks TLS stays in its login
// process, which relays it (proxying) for the whole session: it is
// listed as long as it lasts. A plaintext client leaves loginsvc at the
// hand-off (its socket now belongs to the mail process): loginsvc
// cannot know when that session ends, so it keeps the last
// RecentHandoffs of those per service as recent hand-offs, never as
// live sessions.

// RecentHandoffs is how many logins whose client left loginsvc at the
// hand-off (plaintext) each service keeps for loginctl who --recent.
const RecentHandoffs = 256

// checkLogin checks a login or failed-authentication report about
// client c, which the process holds (see pool.check): a login comes
// once, after the access check; a failed authentication comes while c
// is logging in and has not logged in, numbered one after the previous.
// mu is held.
func checkLogin(c *conn, ev worker.Event) string {
	switch {
	case c.login != nil && ev.Kind == worker.EventLogin:
		return fmt.Sprintf("reported client %#x logged in twice", ev.Conn)
	case c.login != nil:
		return fmt.Sprintf("reported a failed authentication of client %#x after its login", ev.Conn)
	case c.state == ipc.StateChecking:
		return fmt.Sprintf("reported a login or failed authentication of client %#x before its access check", ev.Conn)
	case ev.Kind == worker.EventAuthFailed && c.state != ipc.StateLoggingIn:
		return fmt.Sprintf("reported a failed authentication of client %#x while it was %s", ev.Conn, c.state)
	case ev.Kind == worker.EventAuthFailed && ev.Attempt != c.authFails+1:
		return fmt.Sprintf("reported failed authentication %d of client %#x after %d", ev.Attempt, ev.Conn, c.authFails)
	}
	return ""
}

// noteLogin records a checked login or failed-authentication report of
// pr. A client that was evicted meanwhile (the report crossed the
// eviction) is only counted. mu is held.
func (p *pool) noteLogin(pr *proc, ev worker.Event, now time.Time) {
	c := pr.conns[ev.Conn]
	if ev.Kind == worker.EventAuthFailed {
		p.counters.AuthFailures++
		if c != nil {
			c.authFails = ev.Attempt
		}
		return
	}
	p.counters.Logins++
	pr.logins++
	if c != nil {
		l := ev.Login
		c.login, c.loginAt = &l, now
		p.srcs.loggedIn(c)
	}
}

// noteHandoff keeps client c, which is gone, as a recent hand-off if it
// logged in and was not relayed (a plaintext client, whose socket went
// to the mail process). mu is held.
func (p *pool) noteHandoff(c *conn) {
	if c.login == nil || c.state == ipc.StateProxying {
		return
	}
	if len(p.recent) >= RecentHandoffs {
		n := copy(p.recent, p.recent[len(p.recent)-RecentHandoffs+1:])
		p.recent = p.recent[:n]
	}
	p.recent = append(p.recent, p.session(c, control.StateHandedOff))
}

// session describes logged-in client c. mu is held.
func (p *pool) session(c *conn, state string) control.Session {
	l := c.login
	return control.Session{
		User: l.User, Service: p.svc.Name, Protocol: p.svc.Protocol, Mech: l.Mech,
		RemoteIP: l.Remote.Addr(), RemotePort: l.Remote.Port(), Since: c.loginAt, TLS: l.TLS,
		PID: c.p.PID(), MailPID: l.MailPID, State: state,
	}
}

// who lists the service's logged-in clients that its login processes
// still hold (proxying, or on their way out of the process), and, with
// recent, its recent hand-offs. mu is not held.
func (p *pool) who(recent bool) []control.Session {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]control.Session, 0, len(p.conns)+len(p.recent))
	for _, c := range p.conns {
		if c.login != nil {
			out = append(out, p.session(c, c.state.String()))
		}
	}
	if recent {
		out = append(out, p.recent...)
	}
	return out
}

// Who lists the logged-in clients of every service (see pool.who), by
// login time. It is safe for concurrent use.
func (s *Supervisor) Who(recent bool) control.Who {
	w := control.Who{Version: control.WhoSchemaVersion, Sessions: []control.Session{}}
	for _, p := range s.poolList() {
		w.Sessions = append(w.Sessions, p.who(recent)...)
	}
	sort.SliceStable(w.Sessions, func(i, j int) bool {
		a, b := w.Sessions[i], w.Sessions[j]
		return a.Since.Before(b.Since) || a.Since.Equal(b.Since) && a.PID < b.PID
	})
	return w
}

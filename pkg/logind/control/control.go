// Package control is loginsvc's control socket as its clients see it
// (loginctl procs, loginctl login-status, loginctl who): the Status and
// the Who a running supervisor reports, and QueryStatus and QueryWho,
// which ask for them. The socket is
// base_dir/loginsvc.ctl, mode 0600, answered for root and the
// supervisor's own user only (pkg/logind/master serves it).
package control

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"
)

// StatusRequest is the one request: a client writes it and reads one
// JSON Status.
const StatusRequest = "status\n"

// StatusSchemaVersion is the version of Status's JSON shape.
const StatusSchemaVersion = 1

// Status is what the control socket reports (loginctl procs,
// loginctl login-status).
type Status struct {
	Version    int             `json:"version"` // StatusSchemaVersion
	PID        int             `json:"pid"`
	Started    time.Time       `json:"started"`
	Generation uint64          `json:"generation"` // 1 + number of reloads
	Services   []ServiceStatus `json:"services"`
}

// ServiceStatus is one login service's limits, counters and processes.
type ServiceStatus struct {
	Name            string     `json:"name"`
	Mode            string     `json:"mode"`
	ServiceCount    int        `json:"service_count"`
	ProcessLimit    int        `json:"process_limit"`
	ClientLimit     int        `json:"client_limit"`
	ProcessMinAvail int        `json:"process_min_avail"`
	Pending         int        `json:"pending"` // connections waiting for a slot
	Counters        Counters   `json:"counters"`
	Procs           []ProcInfo `json:"procs"`
}

// Counters are a service's totals since the supervisor started.
type Counters struct {
	Accepted      uint64 `json:"accepted"`        // connections accepted from the listeners
	Direct        uint64 `json:"accepted_direct"` // of those, accepted by login processes themselves (high-performance mode)
	Refused       uint64 `json:"refused"`         // refused by an access check
	AccessErrors  uint64 `json:"access_errors"`   // closed because an access socket could not be asked (connect or send failed)
	Evicted       uint64 `json:"evicted"`         // evicted at the limit (oldest logging-in)
	Dropped       uint64 `json:"dropped"`         // closed unserved (nothing evictable for DropTimeout, or throttled with no process)
	Lost          uint64 `json:"lost"`            // clients of login processes that died abnormally
	Closed        uint64 `json:"closed"`          // clients that ended in a login process, for any reason (each is logged with its address)
	Spawned       uint64 `json:"spawned"`         // login processes started
	SpawnFailures uint64 `json:"spawn_failures"`  // starts that failed, or processes that died before ready
	Crashes       uint64 `json:"crashes"`         // processes that exited abnormally after ready
	Throttles     uint64 `json:"throttles"`       // times the service was throttled
	Violations    uint64 `json:"violations"`      // processes killed for breaking the protocol (see pkg/logind/master)
	Logins        uint64 `json:"logins"`          // clients that logged in and were handed to a mail process
	AuthFailures  uint64 `json:"auth_failures"`   // failed authentications (each attempt)
}

// ProcInfo describes one login process for loginctl procs.
type ProcInfo struct {
	PID        int       `json:"pid"`
	Service    string    `json:"service"`
	Mode       string    `json:"mode"` // high-security, high-performance, service_count=N
	Generation uint64    `json:"generation"`
	Started    time.Time `json:"started"`
	Ready      bool      `json:"ready"`
	Stopping   string    `json:"stopping,omitempty"`
	Served     int       `json:"served"`
	Checking   int       `json:"checking"`
	LoggingIn  int       `json:"logging_in"`
	Proxying   int       `json:"proxying"`
	Logins     int       `json:"logins"` // clients it reported logged in
}

// QueryStatus asks the supervisor listening on the control socket path
// for its Status. Errors: the socket cannot be reached (loginsvc not
// running, or no permission), or the answer is not a Status.
func QueryStatus(ctx context.Context, path string) (*Status, error) {
	var st Status
	if err := query(ctx, path, StatusRequest, &st, &st.Version, StatusSchemaVersion); err != nil {
		return nil, err
	}
	return &st, nil
}

// query sends req to the control socket path and decodes the answer into
// v, whose schema version (read into version) must be want.
func query(ctx context.Context, path, req string, v any, version *int, want int) error {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return err
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	} else {
		c.SetDeadline(time.Now().Add(5 * time.Second))
	}
	if _, err := c.Write([]byte(req)); err != nil {
		return err
	}
	what := strings.Fields(req)[0]
	if err := json.NewDecoder(c).Decode(v); err != nil {
		return fmt.Errorf("read %s from %s: %w", what, path, err)
	}
	if *version == 0 {
		return fmt.Errorf("%s from %s: not answered (a loginsvc older than this loginctl?)", what, path)
	}
	if *version != want {
		return fmt.Errorf("%s from %s: unknown schema version %d", what, path, *version)
	}
	return nil
}

// WhoRequest asks for the logged-in clients that loginsvc holds (a JSON
// Who); WhoRecentRequest adds the recent hand-offs.
const (
	WhoRequest       = "who\n"
	WhoRecentRequest = "who recent\n"
)

// WhoSchemaVersion is the version of Who's JSON shape.
const WhoSchemaVersion = 1

// Who is what the control socket reports for loginctl who: the
// logged-in clients, by login time.
type Who struct {
	Version  int       `json:"version"`  // WhoSchemaVersion
	Sessions []Session `json:"sessions"` // by Since, oldest first
}

// Session states beyond the connection states (ipc.ConnState's names:
// "proxying" while the login process relays the client's TLS session,
// "logging-in" for a moment between the login and the relay or the
// hand-off).
const (
	// StateHandedOff: a plaintext client whose socket went to the mail
	// process at Since; loginsvc does not know whether the session still
	// lasts (a recent hand-off, not a live session).
	StateHandedOff = "handed-off"
)

// Session is one client that logged in.
type Session struct {
	User       string     `json:"user"`     // the user auth logged in (Dovecot's %u), as the login line gives it
	Service    string     `json:"service"`  // imap-login, ...
	Protocol   string     `json:"protocol"` // imap, pop3, submission, sieve
	Mech       string     `json:"mech"`     // SASL mechanism (PLAIN for IMAP LOGIN, POP3 USER/PASS)
	RemoteIP   netip.Addr `json:"rip"`      // as the log lines give it (PROXY header, trusted forwarding); "" if unknown
	RemotePort uint16     `json:"rport"`    // the client's port (Dovecot's %{rport}); 0 if unknown
	Since      time.Time  `json:"since"`    // when it logged in
	TLS        bool       `json:"tls"`      // TLS with the login process (implicit or STARTTLS)
	PID        int        `json:"pid"`      // the login process
	MailPID    uint32     `json:"mail_pid"` // the post-login mail process (Dovecot's mpid=); 0 if unknown
	State      string     `json:"state"`    // proxying, logging-in, StateHandedOff
}

// QueryWho asks the supervisor listening on the control socket path for
// the logged-in clients (with recent, the recent hand-offs too).
func QueryWho(ctx context.Context, path string, recent bool) (*Who, error) {
	req := WhoRequest
	if recent {
		req = WhoRecentRequest
	}
	var w Who
	if err := query(ctx, path, req, &w, &w.Version, WhoSchemaVersion); err != nil {
		return nil, err
	}
	return &w, nil
}

// Package control is loginsvc's control socket as its clients see it
// (loginctl procs, loginctl login-status): the Status a running
// supervisor reports, and QueryStatus, which asks for it. The socket is
// base_dir/loginsvc.ctl, mode 0600, answered for root and the
// supervisor's own user only (pkg/logind/master serves it).
package control

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
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
}

// QueryStatus asks the supervisor listening on the control socket path
// for its Status. Errors: the socket cannot be reached (loginsvc not
// running, or no permission), or the answer is not a Status.
func QueryStatus(ctx context.Context, path string) (*Status, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	} else {
		c.SetDeadline(time.Now().Add(5 * time.Second))
	}
	if _, err := c.Write([]byte(StatusRequest)); err != nil {
		return nil, err
	}
	var st Status
	if err := json.NewDecoder(c).Decode(&st); err != nil {
		return nil, fmt.Errorf("read status from %s: %w", path, err)
	}
	if st.Version != StatusSchemaVersion {
		return nil, fmt.Errorf("status from %s: unknown schema version %d", path, st.Version)
	}
	return &st, nil
}

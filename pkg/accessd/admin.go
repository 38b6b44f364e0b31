package accessd

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/tcpwrapd/tcpwrapd/internal/ctlsock"
	"github.com/tcpwrapd/tcpwrapd/pkg/hostsrules"
)

// DefaultAdminSocket is where `loginctl status` looks for tcpwrapd's admin
// socket. tcpwrapd only creates an admin socket when --admin-socket is
// given; packages pass this path.
const DefaultAdminSocket = "/run/tcpwrapd/admin"

// AdminSchema is the schema version of admin socket replies.
const AdminSchema = "tcpwrapd/admin/v1"

// adminIdleTimeout closes an admin connection that sends nothing.
const adminIdleTimeout = 60 * time.Second

// maxAdminLine bounds one admin request line.
const maxAdminLine = 64 << 10

// AdminRequest is one line of the admin protocol: a JSON object with Op
// "check", "stats" or "reload".
type AdminRequest struct {
	Op string `json:"op"`
	// Daemon, Client, Server and User are the operands of "check". Client
	// is an address or a host name (one result per address); Server, if
	// set, is an address or a host name with exactly one address; User is
	// the client user name (empty: unknown).
	Daemon string `json:"daemon,omitempty"`
	Client string `json:"client,omitempty"`
	Server string `json:"server,omitempty"`
	User   string `json:"user,omitempty"`
}

// AdminReply is the answer to one request, one JSON line.
type AdminReply struct {
	Schema string `json:"schema"`
	OK     bool   `json:"ok"`
	Error  string `json:"error,omitempty"`
	// Results answers "check": one per client address.
	Results []AdminCheckResult `json:"results,omitempty"`
	// Stats answers "stats" and "reload" (after the reload).
	Stats *AdminStats `json:"stats,omitempty"`
}

// AdminCheckResult is the decision for one client address. The check is a
// dry run: options are validated, allow and deny decide, nothing is
// executed.
type AdminCheckResult struct {
	Daemon   string              `json:"daemon"`
	Client   string              `json:"client"`
	Server   string              `json:"server,omitempty"`
	Access   string              `json:"access"` // granted, denied or delegated
	Decision hostsrules.Decision `json:"decision"`
	// Error is the decision's error (option error, table error), if any.
	Error string `json:"error,omitempty"`
}

// AdminStats is the reply to "stats".
type AdminStats struct {
	StatsSnapshot
	UptimeSeconds float64     `json:"uptime_seconds"`
	Rules         RulesStatus `json:"rules"`
}

// RulesStatus describes the loaded policy.
type RulesStatus struct {
	Generation  uint64                  `json:"generation"`
	LoadedAt    time.Time               `json:"loaded_at"`
	Reason      string                  `json:"reason"`
	AllowRules  int                     `json:"allow_rules"`
	DenyRules   int                     `json:"deny_rules"`
	Files       []hostsrules.FileInfo   `json:"files"`
	Diagnostics []hostsrules.Diagnostic `json:"diagnostics"`
}

// AdminServer serves tcpwrapd's admin socket: a line-delimited JSON
// protocol (AdminRequest in, AdminReply out, any number per connection)
// to check arbitrary requests against the live policy with a full trace,
// read statistics and trigger a reload.
//
// Only root and the owner of the socket file (by SO_PEERCRED, checked on
// each connection) may use it; others are told so and disconnected.
type AdminServer struct {
	// Reloader holds the live policy and reloads it for "reload",
	// bounded by the request's context (the daemon's stop ends the
	// wait). Required.
	Reloader *Reloader
	// Stats is read by "stats"; usually the Server's Stats.
	Stats *Stats
	// Env is used for "check" (copied; Explain is set and Effects
	// removed). Nil means DefaultEnv().
	Env *hostsrules.Env
	// CheckTimeout bounds one "check"; zero means DefaultCheckTimeout.
	CheckTimeout time.Duration
	// Logger receives refused peers and failures. Nil discards.
	Logger *slog.Logger
	// OwnerUID is the uid allowed besides root; -1 allows root only.
	OwnerUID int
}

// Run serves ln until ctx is cancelled, then closes ln and the open
// connections and returns nil; it returns an Accept error otherwise.
func (a *AdminServer) Run(ctx context.Context, ln net.Listener) error {
	log := a.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	srv := &ctlsock.Server{
		OwnerUID: a.OwnerUID,
		MaxLine:  maxAdminLine, IdleTimeout: adminIdleTimeout,
		Refused: func(p ctlsock.Peer) any {
			return AdminReply{Schema: AdminSchema, Error: fmt.Sprintf("permission denied: uid %d may not use the admin socket (root or uid %d only)", p.UID, a.OwnerUID)}
		},
		Handle: func(ctx context.Context, p ctlsock.Peer, line []byte) any {
			line = bytes.TrimSpace(line)
			if len(line) == 0 {
				return nil
			}
			var req AdminRequest
			var rep AdminReply
			dec := json.NewDecoder(bytes.NewReader(line))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&req); err != nil {
				rep = AdminReply{Error: "invalid request: " + err.Error()}
			} else {
				rep = a.Handle(ctx, req)
				log.Debug("admin request", "op", req.Op, "peer_uid", p.UID, "ok", rep.OK)
			}
			rep.Schema = AdminSchema
			return rep
		},
		Name: "admin socket", Logger: log,
	}
	return srv.Serve(ctx, ln)
}

// Handle answers one request. It is safe for concurrent use.
func (a *AdminServer) Handle(ctx context.Context, req AdminRequest) AdminReply {
	switch req.Op {
	case "check":
		res, err := a.check(ctx, req)
		if err != nil {
			return AdminReply{Error: err.Error()}
		}
		return AdminReply{OK: true, Results: res}
	case "stats":
		st := a.stats()
		return AdminReply{OK: true, Stats: &st}
	case "reload":
		if err := a.Reloader.Reload(ctx, "admin"); err != nil {
			return AdminReply{Error: "reload abandoned: " + err.Error()}
		}
		st := a.stats()
		return AdminReply{OK: true, Stats: &st}
	case "":
		return AdminReply{Error: `invalid request: missing "op" (check, stats or reload)`}
	}
	return AdminReply{Error: fmt.Sprintf("invalid request: unknown op %q (check, stats or reload)", req.Op)}
}

func (a *AdminServer) stats() AdminStats {
	p := a.Reloader.Rules().Policy()
	at, reason := a.Reloader.Rules().Loaded()
	allow, deny := p.Rules()
	snap := a.Stats.Snapshot()
	st := AdminStats{
		StatsSnapshot: snap,
		Rules: RulesStatus{
			Generation: a.Reloader.Rules().Generation(), LoadedAt: at, Reason: reason,
			AllowRules: allow, DenyRules: deny,
			Files:       append([]hostsrules.FileInfo{}, p.Files()...),
			Diagnostics: append([]hostsrules.Diagnostic{}, p.Diagnostics()...),
		},
	}
	if !snap.Started.IsZero() {
		st.UptimeSeconds = time.Since(snap.Started).Round(time.Millisecond).Seconds()
	}
	return st
}

func (a *AdminServer) env() *hostsrules.Env {
	base := a.Env
	if base == nil {
		base = DefaultEnv()
	}
	e := *base
	e.Explain = true
	e.Effects = nil
	e.Ident = nil
	return &e
}

// resolveHost returns the addresses of s: s itself when it is an address,
// otherwise its IPv4 and IPv6 addresses.
func resolveHost(ctx context.Context, r hostsrules.Resolver, s string) ([]netip.Addr, error) {
	if a, err := netip.ParseAddr(strings.Trim(s, "[]")); err == nil {
		return []netip.Addr{a.Unmap()}, nil
	}
	if r == nil {
		return nil, fmt.Errorf("%s: not an address, and there is no resolver", s)
	}
	var out []netip.Addr
	for _, network := range []string{"ip4", "ip6"} {
		if _, addrs, err := r.LookupHost(ctx, network, s); err == nil {
			out = append(out, addrs...)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: host not found", s)
	}
	return out, nil
}

func (a *AdminServer) check(ctx context.Context, req AdminRequest) ([]AdminCheckResult, error) {
	if req.Daemon == "" {
		return nil, errors.New(`invalid request: "check" needs "daemon"`)
	}
	if req.Client == "" {
		return nil, errors.New(`invalid request: "check" needs "client"`)
	}
	env := a.env()
	ctx, cancel := context.WithTimeout(ctx, durOr(a.CheckTimeout, DefaultCheckTimeout))
	defer cancel()
	var server hostsrules.Endpoint
	if req.Server != "" {
		addrs, err := resolveHost(ctx, env.Resolver, req.Server)
		if err != nil {
			return nil, fmt.Errorf("server %w", err)
		}
		if len(addrs) != 1 {
			return nil, fmt.Errorf("server %s has more than one address; give an address", req.Server)
		}
		server.Addr = netip.AddrPortFrom(addrs[0], 0)
	}
	clients, err := resolveHost(ctx, env.Resolver, req.Client)
	if err != nil {
		return nil, fmt.Errorf("client %w", err)
	}
	p := a.Reloader.Rules().Policy()
	var out []AdminCheckResult
	for _, addr := range clients {
		r := &hostsrules.Request{
			Daemon: req.Daemon,
			Client: hostsrules.Endpoint{Addr: netip.AddrPortFrom(addr, 0)},
			Server: server,
			User:   req.User,
		}
		if r.User == "" {
			r.User = hostsrules.Unknown
		}
		d := p.Check(ctx, r, env)
		res := AdminCheckResult{Daemon: req.Daemon, Client: addr.String(), Access: d.Verdict.String(), Decision: d}
		if server.Addr.IsValid() {
			res.Server = server.Addr.Addr().String()
		}
		if d.Delegated {
			res.Access = "delegated"
		}
		if d.Err != nil {
			res.Error = d.Err.Error()
			res.Access = "denied"
		}
		out = append(out, res)
	}
	return out, nil
}

// ListenAdmin creates the admin socket at path (mode 0600, see Listen),
// creating its directory (mode 0755) if needed, and returns the listener
// and the uid that owns the socket file.
func ListenAdmin(path string) (*net.UnixListener, int, error) {
	if dir := dirOf(path); dir != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, -1, fmt.Errorf("admin socket: %w", err)
		}
	}
	ln, err := Listen(path, 0o600, -1, -1)
	if err != nil {
		return nil, -1, fmt.Errorf("admin socket: %w", err)
	}
	owner := os.Geteuid()
	if fi, err := os.Stat(path); err == nil {
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			owner = int(st.Uid)
		}
	}
	return ln, owner, nil
}

func dirOf(path string) string {
	i := strings.LastIndexByte(path, '/')
	if i <= 0 {
		return ""
	}
	return path[:i]
}

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
	"github.com/tcpwrapd/tcpwrapd/internal/defaults"
	"github.com/tcpwrapd/tcpwrapd/pkg/bans"
	"github.com/tcpwrapd/tcpwrapd/pkg/dovecot/authpolicy"
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
// "check", "stats", "reload", or, with failure-driven bans on (Config.Bans),
// "bans" (list them), "ban-explain" (the ban or the failures of Client's
// source) and "ban-lift" (lift the bans overlapping Prefix).
type AdminRequest struct {
	Op string `json:"op"`
	// Prefix is the operand of "ban-lift": an address (its source's ban)
	// or a prefix (every ban overlapping it).
	Prefix string `json:"prefix,omitempty"`
	// Daemon, Client, Server and User are the operands of "check"; Client
	// (an address) is also that of "ban-explain". Client
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
	// Bans answers "bans": the bans in force, oldest first.
	Bans []bans.Ban `json:"bans,omitempty"`
	// Lifted answers "ban-lift": the number of bans lifted.
	Lifted int `json:"lifted,omitempty"`
	// BanExplain answers "ban-explain".
	BanExplain *AdminBanExplain `json:"ban_explain,omitempty"`
}

// AdminBanExplain is the reply to "ban-explain": the source of an address
// and its ban, or the distinct failed passwords counted for it.
type AdminBanExplain struct {
	Client string `json:"client"`
	Source string `json:"source"`
	// Ban is the source's ban; nil when it is not banned.
	Ban *bans.Ban `json:"ban,omitempty"`
	// Failures is the number of distinct failed passwords counted for
	// the source within Window (0 while banned); one more than
	// Threshold bans it.
	Failures      int     `json:"failures"`
	Threshold     int     `json:"threshold"`
	WindowSeconds float64 `json:"window_seconds"`
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
	// Ban is the failure-driven ban of the client's source, when it has
	// one: the auth policy front end then denies before the rules, and
	// Decision says so (no rule, Reason "banned: ...").
	Ban *bans.Ban `json:"ban,omitempty"`
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
	// Bans are the daemon's failure-driven bans (Config.Bans); nil when
	// off.
	Bans *bans.Bans
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
	case "bans", "ban-explain", "ban-lift":
		return a.handleBans(req)
	case "":
		return AdminReply{Error: `invalid request: missing "op" (` + adminOps + `)`}
	}
	return AdminReply{Error: fmt.Sprintf("invalid request: unknown op %q (%s)", req.Op, adminOps)}
}

// adminOps lists the admin socket's ops for error messages.
const adminOps = "check, stats, reload, bans, ban-explain or ban-lift"

// handleBans answers the ops of failure-driven bans.
func (a *AdminServer) handleBans(req AdminRequest) AdminReply {
	if a.Bans == nil {
		return AdminReply{Error: "failure-driven bans are off (tcpwrapd --bans)"}
	}
	switch req.Op {
	case "bans":
		return AdminReply{OK: true, Bans: a.Bans.List()}
	case "ban-explain":
		addr, err := netip.ParseAddr(strings.Trim(req.Client, "[]"))
		if err != nil {
			return AdminReply{Error: `invalid request: "ban-explain" needs "client", an address`}
		}
		cfg := a.Bans.Config()
		src, n := a.Bans.Failures(addr)
		ex := &AdminBanExplain{Client: addr.String(), Source: src.String(), Failures: n,
			Threshold: cfg.Threshold, WindowSeconds: cfg.Window.Seconds()}
		if ban, ok := a.Bans.Banned(addr); ok {
			ex.Ban = &ban
		}
		return AdminReply{OK: true, BanExplain: ex}
	}
	p, err := ParseBanPrefix(req.Prefix)
	if err != nil {
		return AdminReply{Error: `invalid request: "ban-lift": ` + err.Error()}
	}
	n := a.Bans.Lift(p)
	if a.Logger != nil {
		a.Logger.Info("bans: lifted by the admin socket", "prefix", p, "lifted", n)
	}
	return AdminReply{OK: true, Lifted: n}
}

// ParseBanPrefix parses the operand of "ban-lift": an address (as a /32
// or /128) or a prefix.
func ParseBanPrefix(s string) (netip.Prefix, error) {
	s = strings.Trim(s, "[]")
	if p, err := netip.ParsePrefix(s); err == nil {
		return p, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is neither an address nor a prefix", s)
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
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
	ctx, cancel := context.WithTimeout(ctx, defaults.Positive(a.CheckTimeout, DefaultCheckTimeout))
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
		var d hostsrules.Decision
		ban, banned := a.Bans.Banned(addr)
		if banned {
			d = hostsrules.Decision{Verdict: hostsrules.Denied, Reason: authpolicy.BannedReason + ": " + ban.String()}
		} else {
			d = p.Check(ctx, r, env)
		}
		res := AdminCheckResult{Daemon: req.Daemon, Client: addr.String(), Access: d.Verdict.String(), Decision: d}
		if banned {
			res.Ban = &ban
		}
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

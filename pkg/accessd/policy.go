package accessd

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/netip"
	"strings"

	"github.com/coreos/go-systemd/v22/activation"

	"github.com/tcpwrapd/tcpwrapd/pkg/bans"
	"github.com/tcpwrapd/tcpwrapd/pkg/dovecot/authpolicy"
	"github.com/tcpwrapd/tcpwrapd/pkg/postfix/smtpdpolicy"
)

// PostfixListener is one listener of the Postfix policy front end
// (docs/postfix.md) with its settings.
type PostfixListener struct {
	Listener net.Listener
	// Daemon and RejectCode are the smtpdpolicy.Server fields: the
	// daemon name of requests without policy_context ("" means smtpd)
	// and how a denial is answered ("" means REJECT; "521 5.7.1" ...).
	Daemon, RejectCode string
}

// ListenPolicy creates the listener of a policy front end at addr: a
// unix stream socket when addr is an absolute path, created as Listen
// creates it (a stale socket replaced, the socket owned by uid and gid,
// -1 leaving either as created, with mode), else a TCP listener on
// HOST:PORT, where HOST must be a loopback address or "localhost": the
// policy protocols carry no authentication (Dovecot's API header is sent
// in clear), so they are not offered to the network.
func ListenPolicy(addr string, mode fs.FileMode, uid, gid int) (net.Listener, error) {
	if strings.HasPrefix(addr, "/") {
		return Listen(addr, mode, uid, gid)
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("%q: want HOST:PORT on loopback or a socket path: %w", addr, err)
	}
	if a, err := netip.ParseAddr(host); host != "localhost" && (err != nil || !a.IsLoopback()) {
		return nil, fmt.Errorf("%q: not a loopback address (127.0.0.1, [::1], localhost) or a socket path", addr)
	}
	return net.Listen("tcp", addr)
}

// ActivatedSockets are the listeners passed by socket activation, by
// front end, as their FileDescriptorName= (LISTEN_FDNAMES) says.
type ActivatedSockets struct {
	// Access are the Dovecot login access sockets: every name other
	// than the two below (FileDescriptorName=access, or none: systemd
	// then names the descriptor after the socket unit). They must be
	// unix stream sockets.
	Access []net.Listener
	// AuthPolicy are named "authpolicy" (FrontEndAuthPolicy), Postfix
	// "postfix" (FrontEndPostfix): unix or TCP stream sockets.
	AuthPolicy, Postfix []net.Listener
}

// Len returns the number of listeners.
func (a ActivatedSockets) Len() int { return len(a.Access) + len(a.AuthPolicy) + len(a.Postfix) }

// Close closes every listener.
func (a ActivatedSockets) Close() {
	for _, l := range [][]net.Listener{a.Access, a.AuthPolicy, a.Postfix} {
		for _, ln := range l {
			ln.Close()
		}
	}
}

// ActivationSockets returns the listeners passed by systemd socket
// activation (sd_listen_fds(3)), in order within each front end, or none
// when LISTEN_PID is not this process or LISTEN_FDS is unset. It unsets
// LISTEN_PID, LISTEN_FDS and LISTEN_FDNAMES in any case, so no child
// inherits them. A descriptor that is not a listening stream socket of
// the kind its front end takes is an error; all of them are then closed.
func ActivationSockets() (ActivatedSockets, error) {
	var a ActivatedSockets
	var err error
	for i, f := range activation.Files(true) {
		ln, ferr := net.FileListener(f)
		f.Close()
		var dst *[]net.Listener
		switch f.Name() {
		case FrontEndAuthPolicy:
			dst = &a.AuthPolicy
		case FrontEndPostfix:
			dst = &a.Postfix
		default:
			dst = &a.Access
			if ferr == nil {
				if _, ok := ln.(*net.UnixListener); !ok {
					ln.Close()
					ferr = errors.New("not a unix socket (the access front end takes ListenStream= with a path)")
				}
			}
		}
		if ferr != nil {
			err = errors.Join(err, fmt.Errorf("socket activation: fd %d (%s): %w", 3+i, f.Name(), ferr))
			continue
		}
		*dst = append(*dst, ln)
	}
	if err != nil {
		a.Close()
		return ActivatedSockets{}, err
	}
	return a, nil
}

// policyServer is one policy front end on one listener, for Run.
type policyServer struct {
	name  string
	ln    net.Listener
	serve func(ctx context.Context, ln net.Listener) error
}

// policyServers builds the policy front ends of cfg over checker.
func policyServers(cfg *Config, checker *Checker, log *slog.Logger) []policyServer {
	var out []policyServer
	if len(cfg.PolicyListeners) > 0 {
		fe := checker.FrontEnd(FrontEndAuthPolicy)
		for _, ln := range cfg.PolicyListeners {
			s := &authpolicy.Server{Check: fe.CheckNoClient, Log: log, APIHeader: cfg.PolicyAPIHeader, Error: fe.Error,
				ReadTimeout: cfg.ReadTimeout, MaxConnections: cfg.MaxConns}
			if cfg.Bans != nil {
				s.OnReport, s.Banned = banHooks(cfg.Bans)
			}
			out = append(out, policyServer{FrontEndAuthPolicy, ln, s.Serve})
		}
	}
	if len(cfg.PostfixListeners) > 0 {
		fe := checker.FrontEnd(FrontEndPostfix)
		for _, pl := range cfg.PostfixListeners {
			s := &smtpdpolicy.Server{Check: fe.CheckNoClient, Log: log, Daemon: pl.Daemon, RejectCode: pl.RejectCode, Error: fe.Error,
				ReadTimeout: cfg.ReadTimeout, MaxConnections: cfg.MaxConns}
			out = append(out, policyServer{FrontEndPostfix, pl.Listener, s.Serve})
		}
	}
	return out
}

// banHooks returns the authpolicy.Server hooks that feed b with the
// password failures of report requests and deny b's banned clients.
// b logs each new ban.
func banHooks(b *bans.Bans) (func(context.Context, authpolicy.Report), func(netip.Addr) (string, bool)) {
	onReport := func(_ context.Context, r authpolicy.Report) {
		if r.PasswordFailure() {
			b.ReportFailure(r.Remote, string(r.Pwhash))
		}
	}
	banned := func(addr netip.Addr) (string, bool) {
		ban, ok := b.Banned(addr)
		if !ok {
			return "", false
		}
		return ban.String(), true
	}
	return onReport, banned
}

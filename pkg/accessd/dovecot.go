package accessd

import (
	"context"
	"net"
	"time"

	"github.com/tcpwrapd/tcpwrapd/internal/defaults"
	"github.com/tcpwrapd/tcpwrapd/pkg/accessd/dovecotsock"
	"github.com/tcpwrapd/tcpwrapd/pkg/dovecot/service"
)

// RunDovecot runs the daemon of Run(ctx, cfg) as the Dovecot service svc
// (`service tcpwrap { executable = tcpwrapd --dovecot }`,
// docs/dovecot-managed.md) until svc.Run returns: cfg.Listeners are the
// master's listeners, cfg.MaxConns is CLIENT_LIMIT and cfg.ConnHook
// reports the free client slots to the master. On the master's idle kill
// (idle closed) every check in flight is finished, each bounded by
// ReadTimeout and CheckTimeout; on SIGTERM (ctx cancelled) or the
// master's death, RunDovecot waits up to cfg.DrainTimeout (zero:
// dovecotsock.DefaultDrainTimeout) and returns nil: the caller exits, which closes
// whatever is still open, and the logins see end of file (a refusal).
func RunDovecot(ctx context.Context, svc *service.Service, idle <-chan struct{}, cfg Config) error {
	drain := defaults.Positive(cfg.DrainTimeout, dovecotsock.DefaultDrainTimeout)
	cfg.Listen = ""
	// The server itself waits for every check: an idle exit must not cut
	// one short. Shutdown's shorter limit is svc.Run's drain.
	cfg.DrainTimeout = 2*defaults.Positive(cfg.ReadTimeout, dovecotsock.DefaultReadTimeout) + defaults.Positive(cfg.CheckTimeout, DefaultCheckTimeout) + time.Second
	return svc.Run(ctx, idle, drain, cfg.Logger, func(ctx context.Context, ls []net.Listener, maxConns int, connHook func(int)) error {
		cfg.Listeners, cfg.MaxConns, cfg.ConnHook = ls, maxConns, connHook
		return Run(ctx, cfg)
	})
}

package accessd

import (
	"context"
	"log/slog"
	"sync"

	"github.com/tcpwrapd/tcpwrapd/pkg/hostsrules"
	"github.com/tcpwrapd/tcpwrapd/pkg/wrapopts"
)

// ClientEffects, set as the Effects of a Checker's Env, makes the Checker
// carry out rule options for real on each check's client socket (the
// descriptor the login passed): for every check the Checker replaces it by
// Runner.Service(fd, log), a wrapopts.Service bound to that socket, so
// spawn, twist, aclexec, banners, setenv, umask, nice, user, group,
// keepalive, linger and severity all act (see wrapopts.Service). The
// decision is then logged at the level of the check's severity option, if
// it had one (wrapopts.SlogLevel), with the attribute severity.
//
// DefaultEnv sets it. Outside a Checker (a Policy.Check with this Env),
// Apply does nothing: a dry run.
type ClientEffects struct {
	// Runner runs the commands and bounds them. Nil means one Runner with
	// default limits shared by every ClientEffects with a nil Runner.
	Runner *wrapopts.Runner
}

// defaultRunner serves ClientEffects without a Runner.
var defaultRunner = &wrapopts.Runner{}

// Apply accepts every option without effect (keep=true, nil); the Checker
// never calls it, it calls a per-check wrapopts.Service instead.
func (*ClientEffects) Apply(context.Context, hostsrules.Option, *hostsrules.Expander) (bool, error) {
	return true, nil
}

func (e *ClientEffects) runner() *wrapopts.Runner {
	if e.Runner == nil {
		return defaultRunner
	}
	return e.Runner
}

// checkEnv returns the Env for the check of req whose client socket is fd
// (-1: none) and the lazily built Service that carries out its options, or
// c.env and nil when the Env's Effects is not a *ClientEffects.
func (c *Checker) checkEnv(fd int, req *hostsrules.Request) (*hostsrules.Env, *lazyService) {
	ce, ok := c.env.Effects.(*ClientEffects)
	if !ok || ce == nil {
		return c.env, nil
	}
	ls := lazyServicePool.Get().(*lazyService)
	ls.c, ls.ce, ls.fd, ls.req = c, ce, fd, req
	ls.env = *c.env
	ls.env.Effects = ls
	return &ls.env, ls
}

// lazyServicePool recycles the lazyServices of checks: a check allocates
// none.
var lazyServicePool = sync.Pool{New: func() any { return new(lazyService) }}

// release returns l to the pool once its check is over and logged.
func (l *lazyService) release() {
	if l == nil {
		return
	}
	*l = lazyService{}
	lazyServicePool.Put(l)
}

// lazyService builds a check's wrapopts.Service (and its logger) only when
// the matched rule has an option to carry out, so that the common check,
// whose rule has no options, allocates nothing for it.
type lazyService struct {
	c   *Checker
	ce  *ClientEffects
	fd  int
	req *hostsrules.Request
	env hostsrules.Env
	svc *wrapopts.Service
}

// Apply builds the Service on first use and hands opt to it.
func (l *lazyService) Apply(ctx context.Context, opt hostsrules.Option, x *hostsrules.Expander) (bool, error) {
	if l.svc == nil {
		log := l.c.log.With("daemon", l.req.Daemon, "client_addr", addrString(l.req.Client))
		l.svc = l.ce.runner().Service(l.fd, log)
	}
	return l.svc.Apply(ctx, opt, x)
}

// service returns the Service if one was built.
func (l *lazyService) service() *wrapopts.Service {
	if l == nil {
		return nil
	}
	return l.svc
}

// decisionLevel returns the level to log a decision at: def, or the
// level of the check's severity option (then with a severity attribute
// appended to attrs).
func decisionLevel(svc *wrapopts.Service, def slog.Level, attrs []any) (slog.Level, []any) {
	if svc == nil {
		return def, attrs
	}
	p, ok := svc.Severity()
	if !ok {
		return def, attrs
	}
	return wrapopts.SlogLevel(p.Level), append(attrs, "severity", wrapopts.FormatPriority(p))
}

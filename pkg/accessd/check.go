package accessd

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/tcpwrapd/tcpwrapd/internal/defaults"
	"github.com/tcpwrapd/tcpwrapd/internal/lazyctx"
	"github.com/tcpwrapd/tcpwrapd/pkg/hostsrules"
	"github.com/tcpwrapd/tcpwrapd/pkg/ident"
	"github.com/tcpwrapd/tcpwrapd/pkg/resolve"
	"github.com/tcpwrapd/tcpwrapd/pkg/wrapopts"
)

// DefaultCheckTimeout bounds one rule check (DNS, ident): 50 s, inside
// the 60 s a Dovecot login waits for the reply.
const DefaultCheckTimeout = 50 * time.Second

// Checker decides access requests with the current rules: the core that
// every front end shares (dovecotsock.Server answers Dovecot's login
// access sockets with it). It carries out the matched rule's options on
// the client's socket (see ClientEffects), counts the decision in Stats
// and logs it.
//
// The exported fields must not change once Check has been called. It is
// safe for concurrent use.
type Checker struct {
	// Rules supplies the policy. Required.
	Rules *Rules
	// Env is passed to every check. Nil means DefaultEnv(). A nil
	// Env.Logf is replaced by one that logs warnings to Logger.
	Env *hostsrules.Env
	// Logger receives refusals (Info) and grants (Debug), decisions of
	// rules with a severity option at that level (see ClientEffects), and
	// what options do. Nil discards.
	Logger *slog.Logger
	// CheckTimeout limits one policy check; zero means DefaultCheckTimeout.
	CheckTimeout time.Duration
	// Stats, if set, counts checks, verdicts, errors by kind and check
	// latency for the admin socket (see AdminServer). Nil counts nothing.
	Stats *Stats

	once sync.Once
	env  *hostsrules.Env
	log  *slog.Logger
}

func (c *Checker) init() {
	c.once.Do(func() {
		c.log = c.Logger
		if c.log == nil {
			c.log = slog.New(slog.DiscardHandler)
		}
		env := c.Env
		if env == nil {
			env = DefaultEnv()
		}
		e := *env
		if e.Logf == nil {
			log := c.log
			e.Logf = func(format string, args ...any) { log.Warn(fmt.Sprintf(format, args...)) }
		}
		c.env = &e
	})
}

// Check decides req with the current policy within CheckTimeout.
// clientFD is the client's socket (-1: none), on which the matched rule's
// options act when Env.Effects is a *ClientEffects; the caller keeps it
// open until Check returns and closes it. The decision is counted and
// logged: a refusal at Info, a grant at Debug, or at the level of the
// rule's severity option. A front end answers the client: granted when
// d.Verdict is Granted and d.Err is nil, nothing when d.Delegated (a
// twist command has the client), else refused.
func (c *Checker) Check(ctx context.Context, req *hostsrules.Request, clientFD int) hostsrules.Decision {
	return c.check(ctx, nil, req, clientFD)
}

// check is Check for the front end fe (nil: none named).
func (c *Checker) check(ctx context.Context, fe *FrontEnd, req *hostsrules.Request, clientFD int) hostsrules.Decision {
	c.init()
	env, svc := c.checkEnv(clientFD, req)
	defer svc.release()
	start := time.Now()
	// The check's own deadline, unless ctx already ends as soon (the
	// policy front ends give each request a shorter one).
	cctx := ctx
	if timeout := defaults.Positive(c.CheckTimeout, DefaultCheckTimeout); !endsBy(ctx, start.Add(timeout)) {
		lc := lazyctx.WithTimeout(ctx, timeout)
		defer lc.Release()
		cctx = lc
	}
	d := c.Rules.Policy().Check(cctx, req, env)
	c.Stats.decision(fe.stats(), &d, time.Since(start))

	// The log attributes are built only when the record will be written:
	// a granted check is logged at debug level and costs nothing otherwise.
	attrs := func() []any {
		a := []any{
			"daemon", req.Daemon, "client_addr", addrString(req.Client), "server_addr", addrString(req.Server),
			"file", d.File, "line", d.Line, "rule", d.Rule, "reason", d.Reason,
		}
		if d.Err != nil {
			a = append(a, "err", d.Err)
		}
		if fe != nil {
			a = append(a, "front_end", fe.name)
		}
		return a
	}
	msg, def := "access refused", slog.LevelInfo
	switch {
	case d.Delegated:
		msg = "access delegated to twist, closing without reply"
	case d.Verdict == hostsrules.Granted && d.Err == nil:
		msg, def = "access granted", slog.LevelDebug
	}
	if level, sev := decisionLevel(svc.service(), def, nil); c.log.Enabled(ctx, level) {
		c.log.Log(ctx, level, msg, append(attrs(), sev...)...)
	}
	return d
}

// endsBy reports whether ctx has a deadline no later than t.
func endsBy(ctx context.Context, t time.Time) bool {
	dl, ok := ctx.Deadline()
	return ok && !dl.After(t)
}

// Error counts one problem of a front end (see Stats.Error).
func (c *Checker) Error(kind string) { c.Stats.Error(kind) }

// addrString formats an endpoint for logs: "ip:port", or "unknown".
func addrString(e hostsrules.Endpoint) string {
	if !e.Addr.IsValid() {
		return hostsrules.Unknown
	}
	return e.Addr.String()
}

// DefaultEnv returns the Env a live tcpwrapd uses for checks: host names
// resolved as libwrap does in Dovecot's unchrooted tcpwrap (/etc/hosts,
// then DNS, in nsswitch.conf order) by one process-wide resolve.Resolver,
// which caches DNS answers, shares concurrent lookups and gives up at each
// check's deadline; @netgroups from /etc/netgroup, read again when it
// changes (resolve.NetgroupFile); RFC 1413 user names from the client's
// identd (ident.Lookup, made only when a rule needs the user), and rule
// options carried out for real on the client socket (ClientEffects with a
// Runner of default limits).
func DefaultEnv() *hostsrules.Env {
	return &hostsrules.Env{
		Resolver:  defaultResolver(),
		Netgroups: defaultNetgroups(),
		Ident:     ident.Lookup,
		Effects:   &ClientEffects{Runner: &wrapopts.Runner{}},
	}
}

// The resolver and netgroups of DefaultEnv, shared by every Env it returns
// so that all checks of the process use one cache.
var (
	defaultResolver  = sync.OnceValue(func() *resolve.Resolver { return resolve.New(resolve.Config{}) })
	defaultNetgroups = sync.OnceValue(func() *resolve.Netgroups { return resolve.NetgroupFile("/etc/netgroup") })
)

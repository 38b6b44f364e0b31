package accessd

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/tcpwrapd/tcpwrapd/internal/defaults"
	"github.com/tcpwrapd/tcpwrapd/internal/sdnotify"
	"github.com/tcpwrapd/tcpwrapd/pkg/accessd/dovecotsock"
	"github.com/tcpwrapd/tcpwrapd/pkg/bans"
	"github.com/tcpwrapd/tcpwrapd/pkg/hostsrules"
)

// Default paths and intervals of Config.
const (
	DefaultAllowFile      = "/etc/hosts.allow"
	DefaultDenyFile       = "/etc/hosts.deny"
	DefaultReloadInterval = time.Second
	DefaultSocketMode     = fs.FileMode(0o600)
)

// ErrNoListener is returned by Run when there is neither a listener from
// socket activation nor a Listen path nor a policy listener.
var ErrNoListener = errors.New("no listener: use --listen PATH, --policy-listen, --postfix-listen or systemd socket activation")

// Config configures a whole tcpwrapd daemon for Run. The zero value of
// each field means its default.
type Config struct {
	// Listeners are ready listeners of the Dovecot access-socket front
	// end (ActivatedSockets.Access). If empty, Run creates one at
	// Listen.
	Listeners []net.Listener
	// Listen is the socket path to create when Listeners is empty. With
	// neither, the access-socket front end does not serve.
	Listen string
	// SocketMode is the mode of the created socket; zero means 0600.
	SocketMode fs.FileMode
	// SocketUID and SocketGID own the created socket; -1 leaves it as
	// created (root). Zero means uid or gid 0. Use LookupUser/LookupGroup.
	SocketUID, SocketGID int

	// PolicyListeners serve Dovecot's HTTP auth policy
	// (auth_policy_server_url; package dovecot/authpolicy,
	// docs/authpolicy.md) over the same rules: from ListenPolicy or
	// ActivatedSockets.AuthPolicy.
	PolicyListeners []net.Listener
	// PolicyAPIHeader is authpolicy.Server.APIHeader: Dovecot's
	// auth_policy_server_api_header, required of every request when set.
	PolicyAPIHeader string
	// PostfixListeners serve Postfix's SMTPD policy service
	// (check_policy_service; package postfix/smtpdpolicy,
	// docs/postfix.md) over the same rules, each with its settings.
	PostfixListeners []PostfixListener
	// Bans, when set, are the failure-driven bans of the auth policy
	// front end (docs/authpolicy.md, "Failure-driven bans"): its password
	// failures feed them, a banned client's allow requests are denied
	// before the rules, and the admin socket lists, explains and lifts
	// them. With a StateFile they are saved on stop and every
	// BanSaveInterval when they changed. Nil: no bans (the default).
	Bans *bans.Bans

	// AllowFile and DenyFile are the tables; empty means /etc/hosts.allow
	// and /etc/hosts.deny.
	AllowFile, DenyFile string
	// ReloadInterval is how often the files are polled for changes; zero
	// means 1 s, negative disables polling (SIGHUP still reloads).
	ReloadInterval time.Duration
	// Hangup receives a value for each reload request (SIGHUP). May be nil.
	Hangup <-chan os.Signal

	// CheckTimeout is the Checker field of the same name; ReadTimeout,
	// MaxConns and DrainTimeout are the dovecotsock.Server fields.
	ReadTimeout, CheckTimeout time.Duration
	MaxConns                  int
	DrainTimeout              time.Duration
	// ConnHook is the dovecotsock.Server field of the same name.
	ConnHook func(delta int)
	// Env is passed to every check; nil means DefaultEnv().
	Env *hostsrules.Env

	// AdminSocket, if set, is the path of the admin socket (see
	// AdminServer): created with mode 0600, usable by root and its owner.
	// Empty means no admin socket.
	AdminSocket string

	// RulesLoaded, if set, is called after each load of the rules, the
	// first one included, with the generation number (as in
	// Rules.Generation, counting from 1) and the new policy, once checks
	// use it. The policy replaced the previous one after the previous
	// call and before this one: a check that starts after this call is
	// decided by this policy or a later one, and one that ended before
	// the previous call by an earlier one. Calls come one at a time, in
	// generation order, and a slow call delays the next reload. It lets
	// tests and embedders wait for a reload instead of for a time.
	RulesLoaded func(generation uint64, p *hostsrules.Policy)

	// Logger receives all logs; nil discards.
	Logger *slog.Logger
	// Notifier receives READY=1, RELOADING=1, STOPPING=1 and STATUS=
	// messages; nil sends none.
	Notifier *sdnotify.Notifier
}

// Run runs the daemon until ctx is cancelled: it loads the rules, creates
// the access socket if needed, serves every listener of every front end
// (the Dovecot access socket, the auth policy, the Postfix policy service)
// with one Checker over the same rules, reloads the rules on Hangup and
// when a file changes (for all front ends at once), and sends sd_notify
// messages. When ctx is cancelled it sends STOPPING=1, drains in-flight
// checks (dovecotsock.Server.DrainTimeout; the policy front ends finish
// theirs within their Timeout) and returns nil. It returns an error if
// the access socket cannot be created (ErrNoListener if no front end has
// a listener) or a listener fails. Run closes every listener it serves.
func Run(ctx context.Context, cfg Config) error {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	warnFDLimit(log, cfg.MaxConns)
	allow, deny := cfg.AllowFile, cfg.DenyFile
	if allow == "" {
		allow = DefaultAllowFile
	}
	if deny == "" {
		deny = DefaultDenyFile
	}
	lns := cfg.Listeners
	closePolicy := func() {
		for _, ln := range cfg.PolicyListeners {
			ln.Close()
		}
		for _, pl := range cfg.PostfixListeners {
			pl.Listener.Close()
		}
	}
	if len(lns) == 0 && cfg.Listen != "" {
		mode := cfg.SocketMode
		if mode == 0 {
			mode = DefaultSocketMode
		}
		ln, err := Listen(cfg.Listen, mode, cfg.SocketUID, cfg.SocketGID)
		if err != nil {
			closePolicy()
			return err
		}
		lns = []net.Listener{ln}
	} else if cfg.Listen != "" {
		log.Info("socket activation in use, ignoring --listen", "listen", cfg.Listen)
	}
	closeAll := func() {
		for _, ln := range lns {
			ln.Close()
		}
		closePolicy()
	}
	if len(lns) == 0 && len(cfg.PolicyListeners) == 0 && len(cfg.PostfixListeners) == 0 {
		return ErrNoListener
	}

	rl, err := NewReloader(ctx, ReloaderConfig{AllowFile: allow, DenyFile: deny, Logger: log,
		Loaded: cfg.RulesLoaded, Notifier: cfg.Notifier})
	if err != nil { // stopped while the rule files were being written
		closeAll()
		return nil
	}
	rules := rl.Rules()
	checker := &Checker{Rules: rules, Env: cfg.Env, Logger: log, CheckTimeout: cfg.CheckTimeout}
	if cfg.AdminSocket != "" {
		checker.Stats = NewStats()
	}
	notify := func(state string) {
		if _, err := cfg.Notifier.Notify(state); err != nil {
			log.Warn("sd_notify failed", "state", state, "err", err)
		}
	}

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	policy := policyServers(&cfg, checker, log)
	errc := make(chan error, len(lns)+len(policy))
	var adminDone chan struct{}
	if cfg.AdminSocket != "" {
		aln, owner, err := ListenAdmin(cfg.AdminSocket)
		if err != nil {
			closeAll()
			return err
		}
		admin := &AdminServer{Reloader: rl, Stats: checker.Stats, Env: cfg.Env, Logger: log, OwnerUID: owner,
			CheckTimeout: cfg.CheckTimeout, Bans: cfg.Bans}
		adminDone = make(chan struct{})
		log.Info("admin socket listening", "addr", cfg.AdminSocket, "owner_uid", owner)
		go func() {
			defer close(adminDone)
			if err := admin.Run(runCtx, aln); err != nil {
				log.Error("admin socket failed", "err", err)
			}
		}()
	}
	if len(lns) > 0 {
		// Only a serving front end appears in the statistics.
		srv := &dovecotsock.Server{
			Checker: checker.FrontEnd(FrontEndAccess), Logger: log,
			ReadTimeout: cfg.ReadTimeout, MaxConns: cfg.MaxConns, DrainTimeout: cfg.DrainTimeout,
			ConnHook: cfg.ConnHook,
		}
		for _, ln := range lns {
			log.Info("listening", "front_end", FrontEndAccess, "addr", ln.Addr().String())
			go func() { errc <- srv.Serve(runCtx, ln) }()
		}
	}
	for _, p := range policy {
		log.Info("listening", "front_end", p.name, "addr", p.ln.Addr().String())
		go func() {
			err := p.serve(runCtx, p.ln)
			if err != nil {
				err = fmt.Errorf("%s front end: %w", p.name, err)
			}
			errc <- err
		}()
	}
	served := len(lns) + len(policy)
	notify(sdnotify.Ready + "\n" + rules.status())

	interval := cfg.ReloadInterval
	if interval == 0 {
		interval = DefaultReloadInterval
	}
	var wg sync.WaitGroup
	wg.Go(func() { rl.Watch(runCtx, cfg.Hangup, interval) })
	if cfg.Bans != nil && cfg.Bans.Config().StateFile != "" {
		wg.Go(func() { saveBans(runCtx, cfg.Bans, BanSaveInterval, log) })
	}

	select {
	case <-ctx.Done():
	case err = <-errc:
		served-- // one Serve has returned already
		// A front end returns nil only when its context ends: when ctx
		// ended too, the select found both ready (a busy machine ran
		// this goroutine late), and this is the stop, not a failure.
		if err != nil || ctx.Err() == nil {
			log.Error("listener failed", "err", err)
			if err == nil {
				err = errors.New("a front end stopped serving")
			}
		}
	}
	notify(sdnotify.Stopping)
	log.Info("stopping, draining checks")
	cancel()
	for range served {
		if e := <-errc; e != nil && err == nil {
			err = e
		}
	}
	wg.Wait()
	if adminDone != nil {
		<-adminDone
	}
	waitCommands(checker, defaults.Positive(cfg.DrainTimeout, dovecotsock.DefaultDrainTimeout), log)
	log.Info("stopped")
	return err
}

// BanSaveInterval is how often Run saves Config.Bans to their state file
// when they changed.
const BanSaveInterval = 5 * time.Minute

// saveBans saves b every interval when its bans changed since the last
// save, and once more when ctx ends.
func saveBans(ctx context.Context, b *bans.Bans, interval time.Duration, log *slog.Logger) {
	last := b.List() // as loaded
	save := func() {
		now := b.List()
		if sameBans(now, last) {
			return
		}
		if err := b.Save(); err != nil {
			log.Error("bans: saving the state file failed", "file", b.Config().StateFile, "err", err)
			return
		}
		last = now
		log.Debug("bans: state file saved", "file", b.Config().StateFile, "bans", len(now))
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			save()
			return
		case <-t.C:
			save()
		}
	}
}

// sameBans reports whether two lists (bans.Bans.List) hold the same bans.
func sameBans(x, y []bans.Ban) bool {
	if len(x) != len(y) {
		return false
	}
	for i := range x {
		if x[i].Prefix != y[i].Prefix || !x[i].Since.Equal(y[i].Since) || !x[i].Until.Equal(y[i].Until) || x[i].Count != y[i].Count {
			return false
		}
	}
	return true
}

// waitCommands gives spawn and twist commands still running a moment
// (at most limit, and no more than a second) to finish, then kills their
// process groups: no command outlives the daemon unsupervised.
func waitCommands(c *Checker, limit time.Duration, log *slog.Logger) {
	c.init()
	ce, ok := c.env.Effects.(*ClientEffects)
	if !ok || ce == nil {
		return
	}
	r := ce.runner()
	if r.Running() == 0 {
		return
	}
	done := make(chan struct{})
	go func() { r.Wait(); close(done) }()
	select {
	case <-done:
		return
	case <-time.After(min(limit, time.Second)):
	}
	log.Info("stopping option commands still running", "commands", r.Running())
	r.Stop()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		log.Warn("option commands did not exit after SIGKILL", "commands", r.Running())
	}
}

// warnFDLimit warns when maxConns connections (each holding its own socket
// and, briefly, the passed client socket) cannot fit under the open-file
// limit: accept would then fail with EMFILE while checks wait.
func warnFDLimit(log *slog.Logger, maxConns int) {
	if maxConns <= 0 {
		maxConns = dovecotsock.DefaultMaxConns
	}
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return
	}
	if need := uint64(2*maxConns + 64); lim.Cur < need {
		log.Warn("open-file limit too low for --max-conns: lower --max-conns or raise LimitNOFILE",
			"max_conns", maxConns, "nofile", lim.Cur, "needed", need)
	}
}

package accessd

import (
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/tcpwrapd/tcpwrapd/internal/sdnotify"
	"github.com/tcpwrapd/tcpwrapd/pkg/accessd/dovecotsock"
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
// socket activation nor a Listen path.
var ErrNoListener = errors.New("no listener: use --listen PATH or systemd socket activation")

// Config configures a whole tcpwrapd daemon for Run. The zero value of
// each field means its default.
type Config struct {
	// Listeners are ready listeners (from ActivationListeners). If empty,
	// Run creates one at Listen.
	Listeners []net.Listener
	// Listen is the socket path to create when Listeners is empty.
	Listen string
	// SocketMode is the mode of the created socket; zero means 0600.
	SocketMode fs.FileMode
	// SocketUID and SocketGID own the created socket; -1 leaves it as
	// created (root). Zero means uid or gid 0. Use LookupUser/LookupGroup.
	SocketUID, SocketGID int

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
// the listener if needed, serves every listener, reloads the rules on
// Hangup and when a file changes, and sends sd_notify messages. When ctx is
// cancelled it sends STOPPING=1, drains in-flight checks (dovecotsock.Server.DrainTimeout)
// and returns nil. It returns an error if the listener cannot be created
// (ErrNoListener if there is none to create) or a listener fails. Run
// closes every listener it serves.
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
	if len(lns) == 0 {
		if cfg.Listen == "" {
			return ErrNoListener
		}
		mode := cfg.SocketMode
		if mode == 0 {
			mode = DefaultSocketMode
		}
		ln, err := Listen(cfg.Listen, mode, cfg.SocketUID, cfg.SocketGID)
		if err != nil {
			return err
		}
		lns = []net.Listener{ln}
	} else if cfg.Listen != "" {
		log.Info("socket activation in use, ignoring --listen", "listen", cfg.Listen)
	}

	rl, err := NewReloader(ctx, ReloaderConfig{AllowFile: allow, DenyFile: deny, Logger: log,
		Loaded: cfg.RulesLoaded, Notifier: cfg.Notifier})
	if err != nil { // stopped while the rule files were being written
		for _, ln := range lns {
			ln.Close()
		}
		return nil
	}
	rules := rl.Rules()
	checker := &Checker{Rules: rules, Env: cfg.Env, Logger: log, CheckTimeout: cfg.CheckTimeout}
	srv := &dovecotsock.Server{
		Checker: checker, Logger: log,
		ReadTimeout: cfg.ReadTimeout, MaxConns: cfg.MaxConns, DrainTimeout: cfg.DrainTimeout,
		ConnHook: cfg.ConnHook,
	}
	notify := func(state string) {
		if _, err := cfg.Notifier.Notify(state); err != nil {
			log.Warn("sd_notify failed", "state", state, "err", err)
		}
	}

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, len(lns))
	var adminDone chan struct{}
	if cfg.AdminSocket != "" {
		aln, owner, err := ListenAdmin(cfg.AdminSocket)
		if err != nil {
			for _, ln := range lns {
				ln.Close()
			}
			return err
		}
		checker.Stats = NewStats()
		admin := &AdminServer{Reloader: rl, Stats: checker.Stats, Env: cfg.Env, Logger: log, OwnerUID: owner,
			CheckTimeout: cfg.CheckTimeout}
		adminDone = make(chan struct{})
		log.Info("admin socket listening", "addr", cfg.AdminSocket, "owner_uid", owner)
		go func() {
			defer close(adminDone)
			if err := admin.Run(runCtx, aln); err != nil {
				log.Error("admin socket failed", "err", err)
			}
		}()
	}
	for _, ln := range lns {
		log.Info("listening", "addr", ln.Addr().String())
		go func() { errc <- srv.Serve(runCtx, ln) }()
	}
	notify(sdnotify.Ready + "\n" + rules.status())

	interval := cfg.ReloadInterval
	if interval == 0 {
		interval = DefaultReloadInterval
	}
	var wg sync.WaitGroup
	wg.Go(func() { rl.Watch(runCtx, cfg.Hangup, interval) })

	select {
	case <-ctx.Done():
	case err = <-errc:
		log.Error("listener failed", "err", err)
		lns = lns[1:] // one Run has returned already
	}
	notify(sdnotify.Stopping)
	log.Info("stopping, draining checks")
	cancel()
	for range len(lns) {
		if e := <-errc; e != nil && err == nil {
			err = e
		}
	}
	wg.Wait()
	if adminDone != nil {
		<-adminDone
	}
	waitCommands(checker, durOr(cfg.DrainTimeout, dovecotsock.DefaultDrainTimeout), log)
	log.Info("stopped")
	return err
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

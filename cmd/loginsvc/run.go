package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"log/syslog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/tcpwrapd/tcpwrapd/internal/sdnotify"
	"github.com/tcpwrapd/tcpwrapd/pkg/logind/config"
	"github.com/tcpwrapd/tcpwrapd/pkg/logind/master"
	"github.com/tcpwrapd/tcpwrapd/pkg/logind/master/worker"
	"github.com/tcpwrapd/tcpwrapd/pkg/version"
)

// Exit statuses of loginsvc (a login process has its own: ipc.ExitFatal).
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
)

const daemonizedEnv = "LOGINSVC_DAEMONIZED"

// run is the loginsvc command: loginsvc [-F] [-c FILE] [-n | -a |
// -dovecot-conf VERSION], like Dovecot's master. -version (or --version)
// prints "loginsvc version V" (pkg/version) and exits. -n and -a print the
// effective non-default or all settings and exit; -dovecot-conf prints
// the Dovecot side of the configuration (config.PrintDovecot) and exits;
// otherwise it supervises (having executed itself once more with
// worker.SysmonNoDeepSleep in GODEBUG): in the foreground with -F
// (logging to stderr), else detached into the background (logging to
// syslog). SIGHUP reloads the configuration (kept if it does not parse;
// the reload runs beside the signal handling, so that a SIGTERM during
// it is not delayed), SIGTERM and SIGINT shut down (a second one exits
// at once, with status 1: the login processes die with the supervisor,
// see Pdeathsig in pkg/logind/master), SIGPIPE is ignored. It returns the
// exit status.
func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("loginsvc", flag.ContinueOnError)
	fs.SetOutput(stderr)
	foreground := fs.Bool("F", false, "stay in the foreground and log to stderr")
	confPath := fs.String("c", config.DefaultConfigFile, "configuration `FILE`")
	printN := fs.Bool("n", false, "print the non-default settings and exit")
	printA := fs.Bool("a", false, "print all settings and exit")
	dovecotConf := fs.String("dovecot-conf", "", "print Dovecot `VERSION`'s side of the configuration (2.3, 2.4, or dovecot --version's output), for "+config.DovecotConfFile+", and exit")
	logLevel := fs.String("log-level", "info", "`LEVEL`: debug, info, warn or error")
	showVersion := fs.Bool("version", false, "print the version and exit")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: loginsvc [-F] [-c FILE] [-log-level LEVEL] [-n | -a | --dovecot-conf VERSION] | -version")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	if *showVersion {
		fmt.Fprintf(stdout, "loginsvc version %s\n", version.Version)
		return exitOK
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "loginsvc: unexpected argument %q\n", fs.Arg(0))
		fs.Usage()
		return exitUsage
	}
	if *printN && *printA || (*printN || *printA) && *dovecotConf != "" {
		fmt.Fprintln(stderr, "loginsvc: -n, -a and -dovecot-conf cannot be used together")
		return exitUsage
	}
	if *dovecotConf != "" {
		if _, err := config.DovecotRelease(*dovecotConf); err != nil {
			fmt.Fprintf(stderr, "loginsvc: -dovecot-conf: %v\n", err)
			return exitUsage
		}
	}
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(*logLevel)); err != nil {
		fmt.Fprintf(stderr, "loginsvc: -log-level: %v\n", err)
		return exitUsage
	}
	// Absolute, so that a reload (SIGHUP) finds it whatever the working
	// directory (a daemon's is /).
	if abs, err := filepath.Abs(*confPath); err == nil {
		*confPath = abs
	}
	cfg, err := config.ParseFile(*confPath)
	if err != nil {
		fmt.Fprintf(stderr, "loginsvc: %v\n", err)
		return exitFailure
	}
	if *printN || *printA {
		mode := config.PrintNonDefault
		if *printA {
			mode = config.PrintAll
		}
		fmt.Fprintf(stdout, "# loginsvc: %s\n", *confPath)
		cfg.PrintDovecotSockets(stdout)
		cfg.Print(stdout, mode)
		return exitOK
	}
	if *dovecotConf != "" {
		if err := cfg.PrintDovecot(stdout, *dovecotConf); err != nil {
			fmt.Fprintf(stderr, "loginsvc: %v\n", err)
			return exitFailure
		}
		return exitOK
	}
	// The supervisor's sysmon sleeps as a high-performance login
	// process's does (worker.SysmonNoDeepSleep), set before the runtime
	// starts: loginsvc executes itself (by its path, so that its process
	// name stays; the same pid and descriptors) once more with it. It
	// goes on without it if it cannot.
	if env, ok := worker.WithSysmonNoDeepSleep(os.Environ()); ok {
		exe, err := os.Executable()
		if err == nil {
			err = syscall.Exec(exe, args, env)
		}
		fmt.Fprintf(stderr, "loginsvc: executing itself with %s: %v; going on without it\n", worker.SysmonNoDeepSleep, err)
	}
	if !*foreground && os.Getenv(daemonizedEnv) == "" {
		return daemonize(args, stderr)
	}
	// The service manager's address, taken once: no login process ever
	// sees NOTIFY_SOCKET.
	notifier := sdnotify.FromEnv()
	// A daemonized child reports how its start went on fd 3 (daemonize).
	var started *os.File
	if !*foreground && os.Getenv(daemonizedEnv) != "" {
		syscall.CloseOnExec(3)
		started = os.NewFile(3, "start-status")
		os.Chdir("/")
	}
	var logw io.Writer = stderr
	// On stderr the lines relayed from the login processes go out in
	// batches (worker.LogBatch); syslog takes one message per line.
	var batch *worker.LogBatch
	if !*foreground {
		if w, err := syslog.New(syslog.LOG_MAIL|syslog.LOG_INFO, "loginsvc"); err == nil {
			logw = w
		}
	}
	if logw == stderr {
		batch = &worker.LogBatch{W: stderr}
		logw = batch
	}
	log := slog.New(slog.NewTextHandler(logw, &slog.HandlerOptions{Level: lvl}))
	signal.Ignore(syscall.SIGPIPE)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	hup := make(chan os.Signal, 1) // a SIGHUP during a reload makes one more
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	sup := &master.Supervisor{Logger: log, Runner: &worker.ExecRunner{Logger: log, LogBatch: batch}, OnReady: func() {
		notifier.Notify(sdnotify.Ready)
		if started != nil {
			fmt.Fprintln(started, startedOK)
			started.Close()
		}
	}}
	go reloads(ctx, hup, sup, *confPath, notifier, log)
	done := make(chan error, 1)
	go func() { done <- sup.Run(ctx, cfg) }()
	select {
	case err = <-done: // it could not start
	case <-ctx.Done():
		// The first SIGTERM or SIGINT: shut down. A second one, while
		// the login processes say goodbye, exits at once.
		notifier.Notify(sdnotify.Stopping)
		second := make(chan os.Signal, 1)
		signal.Notify(second, syscall.SIGTERM, syscall.SIGINT)
		defer signal.Stop(second)
		select {
		case err = <-done:
		case sig := <-second:
			log.Warn("second signal, exiting now", "signal", sig.String())
			return exitFailure
		}
	}
	if err != nil {
		log.Error("cannot start", "err", err)
		fmt.Fprintf(stderr, "loginsvc: %v\n", err)
		if started != nil {
			fmt.Fprintf(started, "loginsvc: %v\n", err)
		}
		return exitFailure
	}
	return exitOK
}

// reloads reloads the configuration file path into sup at each SIGHUP
// (hup), until ctx is done; a file that does not parse or a
// configuration that cannot be applied leaves the running one in force.
func reloads(ctx context.Context, hup <-chan os.Signal, sup *master.Supervisor, path string, notifier *sdnotify.Notifier, log *slog.Logger) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
		}
		notifier.Notify(sdnotify.Reloading())
		ncfg, err := config.ParseFile(path)
		if err == nil {
			err = sup.Reload(ncfg)
		}
		if err != nil {
			log.Error("reload failed, keeping the running configuration", "err", err)
		} else {
			log.Info("configuration reloaded", "file", path)
		}
		if ctx.Err() == nil {
			notifier.Notify(sdnotify.Ready)
		}
	}
}

// startedOK is what a daemonized loginsvc writes on its start-status pipe
// once it serves.
const startedOK = "started"

// daemonStartTimeout bounds how long the starting command waits for the
// daemon's report.
const daemonStartTimeout = 60 * time.Second

// daemonize re-runs loginsvc detached (new session, stdio on /dev/null,
// working directory / once it has read its configuration) and waits for
// it to report on a pipe (fd 3) that it serves: it returns exitOK then,
// and exitFailure with the daemon's error (a listener in use, a missing
// login user, ...) if it could not start, as Dovecot's master does.
func daemonize(args []string, stderr io.Writer) int {
	exe, err := os.Executable()
	if err != nil {
		fmt.Fprintf(stderr, "loginsvc: %v\n", err)
		return exitFailure
	}
	null, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		fmt.Fprintf(stderr, "loginsvc: %v\n", err)
		return exitFailure
	}
	defer null.Close()
	r, w, err := os.Pipe()
	if err != nil {
		fmt.Fprintf(stderr, "loginsvc: %v\n", err)
		return exitFailure
	}
	defer r.Close()
	cwd, _ := os.Getwd()
	p, err := os.StartProcess(exe, args, &os.ProcAttr{
		Dir:   cwd,
		Env:   append(os.Environ(), daemonizedEnv+"=1"),
		Files: []*os.File{null, null, null, w},
		Sys:   &syscall.SysProcAttr{Setsid: true},
	})
	w.Close()
	if err != nil {
		fmt.Fprintf(stderr, "loginsvc: %v\n", err)
		return exitFailure
	}
	p.Release()
	r.SetReadDeadline(time.Now().Add(daemonStartTimeout))
	msg, err := io.ReadAll(io.LimitReader(r, 4096))
	switch {
	case strings.TrimSpace(string(msg)) == startedOK:
		return exitOK
	case len(msg) > 0:
		stderr.Write(msg)
	case err != nil:
		fmt.Fprintf(stderr, "loginsvc: no start-up report from the daemon within %v (pid %d): %v\n", daemonStartTimeout, p.Pid, err)
	default:
		fmt.Fprintln(stderr, "loginsvc: the daemon exited during start-up (see the mail log in syslog)")
	}
	return exitFailure
}

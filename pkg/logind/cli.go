package logind

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

	"github.com/coreos/go-systemd/v22/daemon"

	"github.com/tcpwrapd/tcpwrapd/pkg/logind/config"
	"github.com/tcpwrapd/tcpwrapd/pkg/version"
)

// Exit statuses of loginsvc.
const (
	ExitOK      = 0
	ExitFailure = 1
	ExitUsage   = 2
)

const daemonizedEnv = "LOGINSVC_DAEMONIZED"

// Main is the loginsvc command: loginsvc [-F] [-c FILE] [-n | -a], like
// Dovecot's master. -version (or --version) prints "loginsvc version V"
// (pkg/version) and exits. -n and -a print the effective non-default or
// all settings and exit; otherwise it supervises: in the foreground with -F
// (logging to stderr), else detached into the background (logging to
// syslog). SIGHUP reloads the configuration (kept if it does not parse),
// SIGTERM and SIGINT shut down (a second one exits at once), SIGPIPE is
// ignored. It returns the exit status.
func Main(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("loginsvc", flag.ContinueOnError)
	fs.SetOutput(stderr)
	foreground := fs.Bool("F", false, "stay in the foreground and log to stderr")
	confPath := fs.String("c", config.DefaultConfigFile, "configuration `FILE`")
	printN := fs.Bool("n", false, "print the non-default settings and exit")
	printA := fs.Bool("a", false, "print all settings and exit")
	logLevel := fs.String("log-level", "info", "`LEVEL`: debug, info, warn or error")
	showVersion := fs.Bool("version", false, "print the version and exit")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: loginsvc [-F] [-c FILE] [-log-level LEVEL] [-n | -a] | -version")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return ExitOK
		}
		return ExitUsage
	}
	if *showVersion {
		fmt.Fprintf(stdout, "loginsvc version %s\n", version.Version)
		return ExitOK
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "loginsvc: unexpected argument %q\n", fs.Arg(0))
		fs.Usage()
		return ExitUsage
	}
	if *printN && *printA {
		fmt.Fprintln(stderr, "loginsvc: -n and -a cannot be used together")
		return ExitUsage
	}
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(*logLevel)); err != nil {
		fmt.Fprintf(stderr, "loginsvc: -log-level: %v\n", err)
		return ExitUsage
	}
	// Absolute, so that a reload (SIGHUP) finds it whatever the working
	// directory (a daemon's is /).
	if abs, err := filepath.Abs(*confPath); err == nil {
		*confPath = abs
	}
	cfg, err := config.ParseFile(*confPath)
	if err != nil {
		fmt.Fprintf(stderr, "loginsvc: %v\n", err)
		return ExitFailure
	}
	if *printN || *printA {
		mode := config.PrintNonDefault
		if *printA {
			mode = config.PrintAll
		}
		fmt.Fprintf(stdout, "# loginsvc: %s\n", *confPath)
		cfg.Print(stdout, mode)
		return ExitOK
	}
	if !*foreground && os.Getenv(daemonizedEnv) == "" {
		return daemonize(args, stderr)
	}
	// A daemonized child reports how its start went on fd 3 (daemonize).
	var started *os.File
	if !*foreground && os.Getenv(daemonizedEnv) != "" {
		syscall.CloseOnExec(3)
		started = os.NewFile(3, "start-status")
		os.Chdir("/")
	}
	var logw io.Writer = stderr
	if !*foreground {
		if w, err := syslog.New(syslog.LOG_MAIL|syslog.LOG_INFO, "loginsvc"); err == nil {
			logw = w
		}
	}
	log := slog.New(slog.NewTextHandler(logw, &slog.HandlerOptions{Level: lvl}))
	signal.Ignore(syscall.SIGPIPE)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	sup := &Supervisor{Logger: log, Runner: &ExecRunner{Logger: log}, OnReady: func() {
		daemon.SdNotify(false, daemon.SdNotifyReady)
		if started != nil {
			fmt.Fprintln(started, startedOK)
			started.Close()
		}
	}}
	go func() {
		stopping := false
		for sig := range sigs {
			switch {
			case sig == syscall.SIGHUP:
				daemon.SdNotify(false, daemon.SdNotifyReloading)
				ncfg, err := config.ParseFile(*confPath)
				if err != nil {
					log.Error("reload failed, keeping the running configuration", "err", err)
				} else if err := sup.Reload(ncfg); err != nil {
					log.Error("reload failed, keeping the running configuration", "err", err)
				} else {
					log.Info("configuration reloaded", "file", *confPath)
				}
				daemon.SdNotify(false, daemon.SdNotifyReady)
			case stopping:
				log.Warn("second signal, exiting now", "signal", sig.String())
				os.Exit(ExitFailure) // login processes die with us (Pdeathsig)
			default:
				stopping = true
				daemon.SdNotify(false, daemon.SdNotifyStopping)
				cancel()
			}
		}
	}()
	if err := sup.Run(ctx, cfg); err != nil {
		log.Error("cannot start", "err", err)
		fmt.Fprintf(stderr, "loginsvc: %v\n", err)
		if started != nil {
			fmt.Fprintf(started, "loginsvc: %v\n", err)
		}
		return ExitFailure
	}
	return ExitOK
}

// startedOK is what a daemonized loginsvc writes on its start-status pipe
// once it serves.
const startedOK = "started"

// daemonStartTimeout bounds how long the starting command waits for the
// daemon's report.
const daemonStartTimeout = 60 * time.Second

// daemonize re-runs loginsvc detached (new session, stdio on /dev/null,
// working directory / once it has read its configuration) and waits for
// it to report on a pipe (fd 3) that it serves: it returns ExitOK then,
// and ExitFailure with the daemon's error (a listener in use, a missing
// login user, ...) if it could not start, as Dovecot's master does.
func daemonize(args []string, stderr io.Writer) int {
	exe, err := os.Executable()
	if err != nil {
		fmt.Fprintf(stderr, "loginsvc: %v\n", err)
		return ExitFailure
	}
	null, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		fmt.Fprintf(stderr, "loginsvc: %v\n", err)
		return ExitFailure
	}
	defer null.Close()
	r, w, err := os.Pipe()
	if err != nil {
		fmt.Fprintf(stderr, "loginsvc: %v\n", err)
		return ExitFailure
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
		return ExitFailure
	}
	p.Release()
	r.SetReadDeadline(time.Now().Add(daemonStartTimeout))
	msg, err := io.ReadAll(io.LimitReader(r, 4096))
	switch {
	case strings.TrimSpace(string(msg)) == startedOK:
		return ExitOK
	case len(msg) > 0:
		stderr.Write(msg)
	case err != nil:
		fmt.Fprintf(stderr, "loginsvc: no start-up report from the daemon within %v (pid %d): %v\n", daemonStartTimeout, p.Pid, err)
	default:
		fmt.Fprintln(stderr, "loginsvc: the daemon exited during start-up (see the mail log in syslog)")
	}
	return ExitFailure
}

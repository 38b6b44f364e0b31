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
	"syscall"

	"github.com/coreos/go-systemd/v22/daemon"

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
	confPath := fs.String("c", DefaultConfigFile, "configuration `FILE`")
	printN := fs.Bool("n", false, "print the non-default settings and exit")
	printA := fs.Bool("a", false, "print all settings and exit")
	logLevel := fs.String("log-level", "info", "`LEVEL`: debug, info, warn or error")
	showVersion := fs.Bool("version", false, "print the version and exit")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: loginsvc [-F] [-c FILE] [-n | -a] | -version")
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
	if fs.NArg() > 0 || (*printN && *printA) {
		fs.Usage()
		return ExitUsage
	}
	cfg, err := ParseFile(*confPath)
	if err != nil {
		fmt.Fprintf(stderr, "loginsvc: %v\n", err)
		return ExitFailure
	}
	if *printN || *printA {
		mode := PrintNonDefault
		if *printA {
			mode = PrintAll
		}
		fmt.Fprintf(stdout, "# loginsvc: %s\n", *confPath)
		cfg.Print(stdout, mode)
		return ExitOK
	}
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(*logLevel)); err != nil {
		fmt.Fprintf(stderr, "loginsvc: -log-level: %v\n", err)
		return ExitUsage
	}
	if !*foreground && os.Getenv(daemonizedEnv) == "" {
		return daemonize(args, stderr)
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
	sup := &Supervisor{Logger: log, Runner: &ExecRunner{Logger: log}, OnReady: func() { daemon.SdNotify(false, daemon.SdNotifyReady) }}
	go func() {
		stopping := false
		for sig := range sigs {
			switch {
			case sig == syscall.SIGHUP:
				daemon.SdNotify(false, daemon.SdNotifyReloading)
				ncfg, err := ParseFile(*confPath)
				if err != nil {
					log.Error("reload failed, keeping the running configuration", "err", err)
				} else if err := sup.Reload(ncfg); err != nil {
					log.Error("reload partly failed", "err", err)
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
		return ExitFailure
	}
	return ExitOK
}

// daemonize re-runs loginsvc detached (new session, stdio on /dev/null)
// and returns at once.
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
	p, err := os.StartProcess(exe, args, &os.ProcAttr{
		Dir:   "/",
		Env:   append(os.Environ(), daemonizedEnv+"=1"),
		Files: []*os.File{null, null, null},
		Sys:   &syscall.SysProcAttr{Setsid: true},
	})
	if err != nil {
		fmt.Fprintf(stderr, "loginsvc: %v\n", err)
		return ExitFailure
	}
	p.Release()
	return ExitOK
}

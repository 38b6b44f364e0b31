package main

import (
	"errors"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/urfave/cli/v2"

	"github.com/tcpwrapd/tcpwrapd/pkg/accessd"
	"github.com/tcpwrapd/tcpwrapd/pkg/dovecot/service"
)

// dovecotFatal marks a start-up failure in --dovecot mode: it is written
// as a Fatal line in the log-pipe format and exits service.FatalDefault
// (89), as Dovecot's own services do.
type dovecotFatal struct{ error }

// runDovecot is the --dovecot mode: take over the master's descriptors,
// drop privileges, then serve until SIGINT (once idle), SIGTERM or the
// master's death.
func runDovecot(c *cli.Context, level slog.Level) error {
	for _, f := range []string{"listen", "socket-mode", "socket-user", "socket-group", "max-conns"} {
		if c.IsSet(f) {
			return usageError{errors.New("--" + f + " cannot be used with --dovecot (the master owns the socket and CLIENT_LIMIT caps connections)")}
		}
	}
	for _, f := range append([]string{"policy-listen", "postfix-listen", "policy-api-header", "bans"}, banFlags...) {
		if c.IsSet(f) {
			return usageError{errors.New("--" + f + " cannot be used with --dovecot (run the policy front ends in a tcpwrapd of their own, or under systemd)")}
		}
	}
	svc, err := service.Take()
	if err != nil {
		if errors.Is(err, service.ErrNotDovecot) {
			return usageError{err}
		}
		return dovecotFatal{err}
	}
	var h slog.Handler = service.NewLogHandler(c.App.ErrWriter, level)
	if !svc.Env.LogService {
		h = slog.NewTextHandler(c.App.ErrWriter, &slog.HandlerOptions{Level: level})
	}
	log := slog.New(h)
	// SIGINT and SIGTERM must not kill us before the handlers are set.
	idleSig := make(chan os.Signal, 1)
	signal.Notify(idleSig, syscall.SIGINT)
	defer signal.Stop(idleSig)
	ctx, stop := stopContext(syscall.SIGTERM)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	asRoot, err := svc.DropPrivileges()
	if err != nil {
		return dovecotFatal{err}
	}
	attrs := []any{"service", svc.Env.ServiceName, "pid", os.Getpid(), "uid", os.Getuid(), "gid", os.Getgid(),
		"client_limit", svc.Env.ClientLimit, "listeners", len(svc.Listeners), "generation", svc.Env.Generation}
	if asRoot {
		log.Warn("running as root: RESTRICT_SETUID is not set; put `user = dovecot` (or another unprivileged user) in the service block", attrs...)
	} else {
		log.Info("started as a Dovecot service", attrs...)
	}

	idle := make(chan struct{})
	go func() {
		select {
		case <-idleSig:
			close(idle)
		case <-ctx.Done():
		}
	}()
	reload := c.Duration("reload-interval")
	if reload == 0 {
		reload = -1
	}
	err = accessd.RunDovecot(ctx, svc, idle, accessd.Config{
		AllowFile: c.String("allow-file"), DenyFile: c.String("deny-file"),
		ReloadInterval: reload, Hangup: hup,
		ReadTimeout: c.Duration("read-timeout"), CheckTimeout: c.Duration("check-timeout"),
		DrainTimeout: c.Duration("drain-timeout"),
		Logger:       log,
	})
	if err != nil {
		return dovecotFatal{err}
	}
	log.Debug("exiting")
	return nil
}

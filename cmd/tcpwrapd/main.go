// Command tcpwrapd answers Dovecot 2.3 login access checks
// (login_access_sockets) with hosts.allow/hosts.deny rules, as a drop-in for
// Dovecot's tcpwrap service that runs as one long-lived process, and, over
// the same rules in the same process, Dovecot 2.3's and 2.4's auth policy
// requests (--policy-listen, docs/authpolicy.md) and Postfix's policy
// service (--postfix-listen, docs/postfix.md). See package
// github.com/tcpwrapd/tcpwrapd/pkg/accessd.
//
// Exit status: 0 after a clean stop (SIGTERM, SIGINT), 1 on failure, 2 on
// bad usage, 89 (Dovecot's FATAL_DEFAULT, service.FatalDefault) when
// RLIMIT_AS (Dovecot's vsz_limit) is below 1 GiB (2 GiB for a cgo build,
// see service.MinAddressSpaceCgo) and on a start-up failure with
// --dovecot. A
// second SIGTERM or SIGINT during the drain exits at once. SIGHUP reloads
// the rules.
//
// With --dovecot, tcpwrapd is a Dovecot service process
// (`service tcpwrap { executable = /usr/sbin/tcpwrapd --dovecot }`): it
// serves the master's listeners on fd 7 onwards, reports its free slots
// on fd 5, drops to RESTRICT_SETUID/RESTRICT_SETGID, logs in the master's
// log-pipe format on fd 2, exits once idle on SIGINT, shuts down on
// SIGTERM or when the master dies. See docs/dovecot-managed.md.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"syscall"

	"github.com/urfave/cli/v2"

	"github.com/tcpwrapd/tcpwrapd/internal/sdnotify"
	"github.com/tcpwrapd/tcpwrapd/pkg/accessd"
	"github.com/tcpwrapd/tcpwrapd/pkg/accessd/dovecotsock"
	"github.com/tcpwrapd/tcpwrapd/pkg/bans"
	"github.com/tcpwrapd/tcpwrapd/pkg/clidoc"
	"github.com/tcpwrapd/tcpwrapd/pkg/dovecot/authpolicy"
	"github.com/tcpwrapd/tcpwrapd/pkg/dovecot/service"
	"github.com/tcpwrapd/tcpwrapd/pkg/version"
)

func main() { os.Exit(run(os.Args)) }

// init refuses to run under an RLIMIT_AS the Go runtime cannot work with,
// and sets the Go memory limit from it (setMemoryLimit).
// Below about 730 MiB the runtime dies before init runs; vszEntry
// (entry_linux_amd64.s) catches those when linked in.
func init() {
	if err := service.CheckAddressSpace(); err != nil {
		if os.Getenv("LOG_SERVICE") == "1" {
			service.Fatal(os.Stderr, err.Error())
		} else {
			fmt.Fprintf(os.Stderr, "tcpwrapd: %v\n", err)
		}
		os.Exit(service.FatalDefault)
	}
	setMemoryLimit()
}

// usageError marks errors that exit with status 2.
type usageError struct{ error }

func run(args []string) int {
	// Take the systemd environment first, so no child ever sees it.
	activated, lnErr := accessd.ActivationSockets()
	notifier := sdnotify.FromEnv()
	signal.Ignore(syscall.SIGPIPE)

	app := &cli.App{
		Name:      "tcpwrapd",
		Version:   version.Version,
		Usage:     "answer Dovecot login access checks, Dovecot auth policy and Postfix policy requests with hosts.allow/hosts.deny",
		UsageText: "tcpwrapd [--listen PATH] [--policy-listen ADDR] [--postfix-listen ADDR]... [options]   (or started by systemd socket activation)",
		// --postfix-listen values carry their options after commas.
		DisableSliceFlagSeparator: true,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "listen", Usage: "create and serve the unix socket at `PATH` (ignored under socket activation)"},
			&cli.StringFlag{Name: "socket-mode", Value: "0600", Usage: "octal `MODE` of the --listen socket"},
			&cli.StringFlag{Name: "socket-user", Usage: "`USER` (name or uid) owning the --listen socket"},
			&cli.StringFlag{Name: "socket-group", Usage: "`GROUP` (name or gid) owning the --listen socket"},
			&cli.StringSliceFlag{Name: "policy-listen", Usage: "serve Dovecot's auth policy (auth_policy_server_url) on `ADDR`: HOST:PORT on loopback, or a socket path[,user=USER][,group=GROUP][,mode=OCTAL]; repeatable"},
			&cli.StringFlag{Name: "policy-api-header", Usage: "require Dovecot's auth_policy_server_api_header `HEADER` (\"Name: value\", or a bare value for X-API-Key) on every auth policy request"},
			&cli.StringSliceFlag{Name: "postfix-listen", Usage: "serve Postfix's policy service (check_policy_service) on `ADDR`: HOST:PORT on loopback, or a socket path[,user=USER][,group=GROUP][,mode=OCTAL]; options [,daemon=NAME] (without policy_context; default smtpd), [,reject=CODE] (e.g. \"521 5.7.1\"; default REJECT); repeatable"},
			&cli.BoolFlag{Name: "bans", Usage: "failure-driven bans (docs/authpolicy.md): deny the auth policy's allow requests from a client that failed with too many distinct passwords; needs --policy-listen or an authpolicy socket"},
			&cli.IntFlag{Name: "ban-threshold", Value: bans.DefaultThreshold, Usage: "with --bans: the most distinct failed passwords `N` a client may send within --ban-window; one more bans it"},
			&cli.DurationFlag{Name: "ban-window", Value: bans.DefaultWindow, Usage: "with --bans: how long a failure counts (`DURATION`)"},
			&cli.DurationFlag{Name: "ban-time", Value: bans.DefaultBanFor, Usage: "with --bans: how long a ban lasts (`DURATION`)"},
			&cli.IntFlag{Name: "ban-max-sources", Value: bans.DefaultMaxSources, Usage: "with --bans: track at most `N` failing clients, and hold at most N bans"},
			&cli.IntFlag{Name: "ban-ipv6-prefix", Value: bans.DefaultIPv6Prefix, Usage: "with --bans: group IPv6 clients by their /`N` prefix"},
			&cli.StringFlag{Name: "ban-state", Usage: "with --bans: keep the bans across restarts in `FILE` (loaded at start, written atomically on stop and every 5 minutes when changed)"},
			&cli.StringFlag{Name: "allow-file", Value: accessd.DefaultAllowFile, Usage: "hosts.allow `FILE`"},
			&cli.StringFlag{Name: "deny-file", Value: accessd.DefaultDenyFile, Usage: "hosts.deny `FILE`"},
			&cli.DurationFlag{Name: "reload-interval", Value: accessd.DefaultReloadInterval, Usage: "poll the rule files for changes every `DURATION` (0 disables; SIGHUP always reloads)"},
			&cli.DurationFlag{Name: "read-timeout", Value: dovecotsock.DefaultReadTimeout, Usage: "close a connection that sends no request within `DURATION`"},
			&cli.DurationFlag{Name: "check-timeout", Value: accessd.DefaultCheckTimeout, Usage: "limit one rule check (DNS lookups) to `DURATION`"},
			&cli.IntFlag{Name: "max-conns", Value: dovecotsock.DefaultMaxConns, Usage: "serve at most `N` connections at once"},
			&cli.DurationFlag{Name: "drain-timeout", Value: dovecotsock.DefaultDrainTimeout, Usage: "on stop, wait `DURATION` for in-flight checks"},
			&cli.StringFlag{Name: "log-level", Value: "info", Usage: "`LEVEL`: debug, info, warn or error"},
			&cli.StringFlag{Name: "admin-socket", Usage: "serve the admin socket (loginctl status, query --admin-socket) at `PATH`, e.g. " + accessd.DefaultAdminSocket + "; root and the socket's owner only"},
			&cli.BoolFlag{Name: "dovecot", Usage: "run as a Dovecot service process (service tcpwrap { executable = tcpwrapd --dovecot }): listeners on fd 7.., status on fd 5, Dovecot log format on stderr"},
		},
		HideHelpCommand: true,
		Commands:        []*cli.Command{clidoc.Command(8)},
		OnUsageError: func(_ *cli.Context, err error, _ bool) error {
			return usageError{err}
		},
		ExitErrHandler: func(*cli.Context, error) {},
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return usageError{fmt.Errorf("unexpected argument %q", c.Args().First())}
			}
			var level slog.Level
			if err := level.UnmarshalText([]byte(c.String("log-level"))); err != nil {
				return usageError{fmt.Errorf("--log-level: %w", err)}
			}
			if c.Bool("dovecot") {
				return runDovecot(c, level)
			}
			log := slog.New(slog.NewTextHandler(c.App.ErrWriter, &slog.HandlerOptions{Level: level}))
			if lnErr != nil {
				return lnErr
			}
			mode, err := strconv.ParseUint(c.String("socket-mode"), 8, 32)
			if err != nil || mode > 0o777 {
				return usageError{fmt.Errorf("--socket-mode: invalid octal mode %q", c.String("socket-mode"))}
			}
			uid, err := accessd.LookupUser(c.String("socket-user"))
			if err != nil {
				return usageError{fmt.Errorf("--socket-user: %w", err)}
			}
			gid, err := accessd.LookupGroup(c.String("socket-group"))
			if err != nil {
				return usageError{fmt.Errorf("--socket-group: %w", err)}
			}
			if err := authpolicy.CheckAPIHeader(c.String("policy-api-header")); err != nil {
				return usageError{fmt.Errorf("--policy-api-header: %w", err)}
			}
			reload := c.Duration("reload-interval")
			if reload == 0 {
				reload = -1
			}
			auth, postfix, err := policyListeners(c.StringSlice("policy-listen"), c.StringSlice("postfix-listen"), activated)
			if err != nil {
				activated.Close()
				return err
			}
			if len(activated.Access) == 0 && c.String("listen") == "" && len(auth) == 0 && len(postfix) == 0 {
				return usageError{accessd.ErrNoListener}
			}
			b, err := banSet(c, len(auth) > 0, log)
			if err != nil {
				for _, ln := range auth {
					ln.Close()
				}
				for _, p := range postfix {
					p.Listener.Close()
				}
				activated.Close()
				return err
			}

			ctx, stop := stopContext(syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			hup := make(chan os.Signal, 1)
			signal.Notify(hup, syscall.SIGHUP)
			defer signal.Stop(hup)

			return accessd.Run(ctx, accessd.Config{
				Listeners: activated.Access, Listen: c.String("listen"),
				PolicyListeners: auth, PolicyAPIHeader: c.String("policy-api-header"), PostfixListeners: postfix, Bans: b,
				SocketMode: os.FileMode(mode), SocketUID: uid, SocketGID: gid,
				AllowFile: c.String("allow-file"), DenyFile: c.String("deny-file"),
				ReloadInterval: reload, Hangup: hup,
				ReadTimeout: c.Duration("read-timeout"), CheckTimeout: c.Duration("check-timeout"),
				MaxConns: c.Int("max-conns"), DrainTimeout: c.Duration("drain-timeout"),
				Logger: log, Notifier: notifier, AdminSocket: c.String("admin-socket"),
			})
		},
	}
	err := app.Run(args)
	var ue usageError
	var fe dovecotFatal
	switch {
	case err == nil:
		return 0
	case errors.As(err, &fe):
		service.Fatal(app.ErrWriter, "tcpwrapd: "+fe.Error())
		return service.FatalDefault
	case errors.As(err, &ue):
		fmt.Fprintf(app.ErrWriter, "tcpwrapd: %v\n", err)
		fmt.Fprintln(app.ErrWriter, "Run 'tcpwrapd --help' for usage.")
		return 2
	default:
		fmt.Fprintf(app.ErrWriter, "tcpwrapd: %v\n", err)
		return 1
	}
}

// stopContext returns a context cancelled by the first of sigs. Once it
// is cancelled the signals get their default action again, so a second
// one, during the drain, ends the process at once.
func stopContext(sigs ...os.Signal) (context.Context, context.CancelFunc) {
	ctx, stop := signal.NotifyContext(context.Background(), sigs...)
	context.AfterFunc(ctx, stop)
	return ctx, stop
}
